//! Outbound HTTP(S) for the identity provider (discovery, JWKS, token endpoint), on postern's own HTTP/1.1 codec.
//!
//! One request per connection (`Connection: close`): IdP calls happen once per sign-in, so pooling would only hold
//! memory. HTTPS uses the built-in trust roots plus SSL_CERT_FILE; plain http is allowed only to loopback hosts (a
//! local test IdP), so a typo in IDP_PROVIDER_URL cannot send the client secret in clear over a network.

use std::fmt;

/// The whole exchange (connect, TLS, request, response) must finish within this.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Larger IdP responses are refused (a JWKS or token response is a few KB).
pub const MAX_BODY: usize = 1024 * 1024;

/// Why an outbound request failed. Display names the host and the step.
#[derive(Debug)]
pub enum ClientError {
    BadUrl(String),
    /// `http://` to a host that is not loopback.
    PlainHttpNotLoopback(String),
    Connect {
        host: String,
        error: std::io::Error,
    },
    Tls {
        host: String,
        error: std::io::Error,
    },
    Timeout {
        host: String,
    },
    Io {
        host: String,
        error: std::io::Error,
    },
    BadResponse {
        host: String,
        detail: String,
    },
    BodyTooLarge {
        host: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::BadUrl(u) => write!(f, "cannot request {u:?}: not an http(s) URL with a host"),
            ClientError::PlainHttpNotLoopback(h) => write!(
                f,
                "refusing plain http to {h}: the identity provider must use https (http only for 127.0.0.1, ::1, localhost)"
            ),
            ClientError::Connect { host, error } => write!(f, "cannot connect to {host}: {error}"),
            ClientError::Tls { host, error } => write!(f, "TLS with {host} failed: {error}"),
            ClientError::Timeout { host } => {
                write!(f, "{host} did not answer within {} seconds", TIMEOUT.as_secs())
            }
            ClientError::Io { host, error } => write!(f, "connection to {host} failed: {error}"),
            ClientError::BadResponse { host, detail } => write!(f, "{host} sent a response postern cannot read: {detail}"),
            ClientError::BodyTooLarge { host } => {
                write!(f, "{host} sent a response body over {} bytes; refused", MAX_BODY)
            }
        }
    }
}

impl std::error::Error for ClientError {}
