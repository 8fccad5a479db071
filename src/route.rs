// stand-in; the config helper's route.rs replaces it at merge
//! Where a route forwards to (stand-in holding only what the wire layer reads).

/// An upstream (`to`) of a route.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub authority: String,
}
