mod http;
mod reply;

fn main() {}
