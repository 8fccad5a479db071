mod http;
mod reply;
mod seal;

fn main() {}
