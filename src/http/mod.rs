//! postern's own HTTP/1.1 codec, built on `httparse`.
//!
//! One codec serves both legs: the client → postern connection (request heads in, response heads out) and the
//! postern → upstream connection (request heads out, response heads in). Bodies are never held whole: they are
//! decoded and re-encoded as they stream. async-h1 was measured and set aside (see README, design notes).

pub mod body;
pub mod conn;
pub mod date;
pub mod encode;
pub mod framing;
mod headers;

#[allow(unused_imports)] // short paths for client.rs and handle.rs
pub use body::{BodyError, BodyReader};
#[allow(unused_imports)] // short paths for client.rs and handle.rs
pub use conn::{Conn, HeadError, HeadLimits};
#[allow(unused_imports)] // short paths for client.rs and handle.rs
pub use framing::{BodyKind, FramingError};
pub use headers::Headers;

/// The protocol version of a message on the wire. HTTP/1.0 is accepted (nginx's default `proxy_http_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A parsed request head. `target` is the raw request-target as sent (origin-form, or absolute-form).
#[derive(Clone, Debug)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    pub version: Version,
    pub headers: Headers,
}

/// A parsed or to-be-written response head.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
}

/// A request as the request path sees it: its head and who sent it.
#[derive(Debug)]
pub struct Request {
    pub head: RequestHead,
    pub peer: std::net::SocketAddr,
}
