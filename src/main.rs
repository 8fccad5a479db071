mod forward;
mod http;
mod reply;
mod route;
mod server;

fn main() {}
