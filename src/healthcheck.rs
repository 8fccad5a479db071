//! `postern healthcheck`: asks the running postern for `/ping` and says whether it answered 200.
//!
//! For `HEALTHCHECK` in the scratch image (no shell, no curl there) and for scripts. It reads the same
//! configuration as the server, so it knows the listening address and whether it speaks TLS; it connects to the
//! loopback address when postern listens on every address, and does not check the certificate (the name on it is
//! the public one, and the question is only "is it serving"). The request goes through postern's own client.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::Url;

use crate::client::{self, ClientError};
use crate::http::Headers;
use crate::tls;

/// The whole probe (connect, TLS, request, response) must finish within this; Docker's default check timeout
/// is 30 s, but a proxy that needs more than 3 s to answer `/ping` on loopback is not healthy.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Why postern is not healthy. Display is the one line `postern healthcheck` prints.
#[derive(Debug)]
pub enum HealthError {
    /// The request did not complete.
    Request { url: String, error: ClientError },
    /// It answered, but not 200.
    Status { url: String, status: u16 },
}

impl fmt::Display for HealthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // ClientError's own text names the IdP call's longer limit.
            HealthError::Request {
                url,
                error: ClientError::Timeout { .. },
            } => write!(
                f,
                "unhealthy: {url} did not answer within {} seconds",
                TIMEOUT.as_secs()
            ),
            HealthError::Request { url, error } => write!(f, "unhealthy: GET {url}: {error}"),
            HealthError::Status { url, status } => {
                write!(f, "unhealthy: GET {url} answered {status}, not 200")
            }
        }
    }
}

impl std::error::Error for HealthError {}

/// The URL to probe for a listener on `address`: the same port, on loopback when the listener takes every
/// address (0.0.0.0 → 127.0.0.1; [::] → [::1], which a [::] listener accepts even when it is IPv6-only).
pub fn ping_url(address: SocketAddr, tls: bool) -> Result<Url, url::ParseError> {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    Url::parse(&format!(
        "{scheme}://{}/ping",
        SocketAddr::new(ip, address.port())
    ))
}

/// Requests `url` once within `timeout`; Ok when the answer is 200. TLS certificates are not checked.
pub fn probe(url: &Url, timeout: Duration) -> Result<(), HealthError> {
    let tls = tls::upstream_client_config(&[], true);
    let result = smol::block_on(client::send_within(
        &tls,
        timeout,
        "GET",
        url,
        Headers::default(),
        b"",
        None,
    ));
    match result {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(HealthError::Status {
            url: url.to_string(),
            status: r.status,
        }),
        Err(error) => Err(HealthError::Request {
            url: url.to_string(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn ping_url_table() {
        let cases = [
            ("0.0.0.0:443", true, "https://127.0.0.1/ping"),
            ("0.0.0.0:8443", true, "https://127.0.0.1:8443/ping"),
            ("0.0.0.0:80", false, "http://127.0.0.1/ping"),
            ("0.0.0.0:8080", false, "http://127.0.0.1:8080/ping"),
            ("[::]:443", true, "https://[::1]/ping"),
            ("127.0.0.1:8443", true, "https://127.0.0.1:8443/ping"),
            ("192.168.1.5:8443", true, "https://192.168.1.5:8443/ping"),
            ("[fd00::5]:8080", false, "http://[fd00::5]:8080/ping"),
        ];
        for (addr, tls, want) in cases {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(
                ping_url(addr, tls).unwrap().as_str(),
                want,
                "{addr} tls={tls}"
            );
        }
    }

    /// A loopback listener that answers one connection with `response` (after reading the head), or never
    /// answers when `response` is None. Returns its /ping URL.
    fn serve_once(response: Option<&'static str>) -> Url {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            match response {
                Some(r) => {
                    let _ = s.write_all(r.as_bytes());
                }
                None => std::thread::sleep(Duration::from_secs(5)),
            }
        });
        Url::parse(&format!("http://127.0.0.1:{port}/ping")).unwrap()
    }

    #[test]
    fn ok_on_200() {
        let url = serve_once(Some("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nOK\n"));
        probe(&url, TIMEOUT).unwrap();
    }

    #[test]
    fn other_status_is_unhealthy() {
        let url = serve_once(Some("HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n"));
        let e = probe(&url, TIMEOUT).unwrap_err();
        assert!(matches!(e, HealthError::Status { status: 503, .. }), "{e}");
        assert!(e.to_string().contains("answered 503, not 200"), "{e}");
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        // Bind then drop: the port is very likely free for the moment of the test.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/ping")).unwrap();
        let e = probe(&url, TIMEOUT).unwrap_err();
        assert!(e.to_string().contains("cannot connect to 127.0.0.1"), "{e}");
    }

    #[test]
    fn silent_server_times_out_in_bounded_time() {
        let url = serve_once(None);
        let t0 = std::time::Instant::now();
        let e = probe(&url, Duration::from_millis(300)).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert!(e.to_string().contains("did not answer within"), "{e}");
    }
}
