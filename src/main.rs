mod authn;
mod client;
mod http;
mod reply;
mod seal;
mod session;

fn main() {}
