mod config;
mod http;
mod reply;
mod route;
mod tls;

fn main() {}
