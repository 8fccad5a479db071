mod authn;
mod http;
mod reply;
mod seal;
mod session;

fn main() {}
