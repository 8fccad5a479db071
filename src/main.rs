#[allow(dead_code)] // wired by handle.rs and main.rs on main
mod authn;
#[allow(dead_code)] // wired by handle.rs and main.rs on main
mod client;
mod http;
mod reply;
#[allow(dead_code)] // wired by handle.rs and main.rs on main
mod seal;
#[allow(dead_code)] // wired by handle.rs and main.rs on main
mod session;

fn main() {}
