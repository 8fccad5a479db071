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

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::rustls::ClientConfig;
use futures_rustls::TlsConnector;
use oauth2::{HttpRequest, HttpResponse};
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use url::{Host, Url};

use crate::authn::oidc::Transport;

/// Response heads larger than this are refused.
const MAX_HEAD: usize = 64 * 1024;

/// A response from the IdP, read whole (it is small and capped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    pub status: u16,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The IdP transport for `authn`: each call is one HTTPS (or loopback http) request on a fresh connection.
pub fn transport(tls: Arc<ClientConfig>) -> Transport {
    Rc::new(move |req| {
        let tls = tls.clone();
        Box::pin(async move { send_oauth2(&tls, req).await })
    })
}

/// oauth2's request type in, oauth2's response type out (its async client is any such function).
pub async fn send_oauth2(
    tls: &Arc<ClientConfig>,
    req: HttpRequest,
) -> Result<HttpResponse, ClientError> {
    let uri = req.uri().to_string();
    let url = Url::parse(&uri).map_err(|_| ClientError::BadUrl(uri.clone()))?;
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let resp = send(tls, req.method().as_str(), &url, &headers, req.body()).await?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let mut b = oauth2::http::Response::builder().status(resp.status);
    for (n, v) in &resp.headers {
        b = b.header(n.as_str(), v.as_str());
    }
    b.body(resp.body).map_err(|e| ClientError::BadResponse {
        host,
        detail: e.to_string(),
    })
}

/// Sends one request and reads the whole response, within [`TIMEOUT`].
pub async fn send(
    tls: &Arc<ClientConfig>,
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<ClientResponse, ClientError> {
    send_within(tls, TIMEOUT, method, url, headers, body).await
}

async fn send_within(
    tls: &Arc<ClientConfig>,
    timeout: Duration,
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<ClientResponse, ClientError> {
    let host = url.host_str().unwrap_or_default().to_owned();
    let work = exchange(tls, method, url, headers, body);
    let timer = async {
        smol::Timer::after(timeout).await;
        Err(ClientError::Timeout { host: host.clone() })
    };
    smol::future::or(work, timer).await
}

/// Where to connect, decided from the URL alone.
struct Endpoint {
    https: bool,
    host: String,
    /// `Host` header value.
    authority: String,
    addr: Option<SocketAddr>,
    port: u16,
}

fn endpoint(url: &Url) -> Result<Endpoint, ClientError> {
    let bad = || ClientError::BadUrl(url.to_string());
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err(bad()),
    };
    let port = url.port_or_known_default().ok_or_else(bad)?;
    let (host, addr, loopback) = match url.host() {
        Some(Host::Ipv4(ip)) => (
            ip.to_string(),
            Some(SocketAddr::new(IpAddr::V4(ip), port)),
            ip.is_loopback(),
        ),
        Some(Host::Ipv6(ip)) => (
            ip.to_string(),
            Some(SocketAddr::new(IpAddr::V6(ip), port)),
            ip.is_loopback(),
        ),
        Some(Host::Domain(d)) if !d.is_empty() => {
            (d.to_owned(), None, d.eq_ignore_ascii_case("localhost"))
        }
        _ => return Err(bad()),
    };
    if !https && !loopback {
        return Err(ClientError::PlainHttpNotLoopback(host));
    }
    let authority = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err(bad()),
    };
    Ok(Endpoint {
        https,
        host,
        authority,
        addr,
        port,
    })
}

/// The request head, or `None` when a method, header name or value could break the message framing.
fn request_head(
    method: &str,
    url: &Url,
    authority: &str,
    headers: &[(String, String)],
    body_len: usize,
) -> Option<Vec<u8>> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let value_ok = |s: &str| s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    if !token(method) {
        return None;
    }
    let mut target = url.path().to_owned();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let mut out =
        format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    let mut has_ua = false;
    for (n, v) in headers {
        if !token(n) || !value_ok(v) {
            return None;
        }
        let lower = n.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding" | "te" | "upgrade"
        ) {
            continue;
        }
        has_ua |= lower == "user-agent";
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !has_ua {
        out.push_str(concat!(
            "User-Agent: postern/",
            env!("CARGO_PKG_VERSION"),
            "\r\n"
        ));
    }
    if body_len > 0 || matches!(method, "POST" | "PUT" | "PATCH") {
        out.push_str(&format!("Content-Length: {body_len}\r\n"));
    }
    out.push_str("\r\n");
    Some(out.into_bytes())
}

async fn exchange(
    tls: &Arc<ClientConfig>,
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<ClientResponse, ClientError> {
    let ep = endpoint(url)?;
    let head = request_head(method, url, &ep.authority, headers, body.len()).ok_or_else(|| {
        ClientError::BadResponse {
            host: ep.host.clone(),
            detail: "request has a method or header postern will not send".into(),
        }
    })?;
    let connect_err = |error| ClientError::Connect {
        host: ep.host.clone(),
        error,
    };
    let tcp = match ep.addr {
        Some(a) => smol::net::TcpStream::connect(a)
            .await
            .map_err(connect_err)?,
        None => smol::net::TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(connect_err)?,
    };
    let is_head = method == "HEAD";
    if ep.https {
        let name = ServerName::try_from(ep.host.clone())
            .map_err(|_| ClientError::BadUrl(url.to_string()))?;
        let stream = TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|error| ClientError::Tls {
                host: ep.host.clone(),
                error,
            })?;
        round_trip(stream, &ep.host, &head, body, is_head).await
    } else {
        round_trip(tcp, &ep.host, &head, body, is_head).await
    }
}

async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    head: &[u8],
    body: &[u8],
    is_head: bool,
) -> Result<ClientResponse, ClientError> {
    let io = |error| ClientError::Io {
        host: host.to_owned(),
        error,
    };
    s.write_all(head).await.map_err(io)?;
    s.write_all(body).await.map_err(io)?;
    s.flush().await.map_err(io)?;
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut chunk = [0u8; 8 * 1024];
    loop {
        let eof = match s.read(&mut chunk).await {
            Ok(0) => true,
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                false
            }
            // Many servers close TLS without close_notify; the framing below decides whether that lost anything.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => true,
            Err(e) => return Err(io(e)),
        };
        if let Some(resp) = parse_response(&buf, eof, is_head, host)? {
            return Ok(resp);
        }
        if eof {
            return Err(ClientError::BadResponse {
                host: host.into(),
                detail: "connection closed mid-response".into(),
            });
        }
        if buf.len() > MAX_HEAD + MAX_BODY + 64 * 1024 {
            return Err(ClientError::BodyTooLarge { host: host.into() });
        }
    }
}

/// A complete response from `buf`, `None` when more bytes are needed.
fn parse_response(
    buf: &[u8],
    eof: bool,
    is_head: bool,
    host: &str,
) -> Result<Option<ClientResponse>, ClientError> {
    let bad = |detail: &str| ClientError::BadResponse {
        host: host.into(),
        detail: detail.into(),
    };
    let mut start = 0;
    loop {
        let rest = buf.get(start..).unwrap_or_default();
        let mut hdrs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hdrs);
        let n = match r.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if rest.len() > MAX_HEAD => {
                return Err(bad("response head too large"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(bad(&format!("malformed response head: {e}"))),
        };
        let status = r.code.unwrap_or(0);
        if (100..200).contains(&status) {
            // Interim response (we never ask for one, but a server may send it): skip it.
            start += n;
            continue;
        }
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let body_bytes = rest.get(n..).unwrap_or_default();
        let body = if is_head || status == 204 || status == 304 {
            Some(Vec::new())
        } else if header_values(&headers, "transfer-encoding")
            .any(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            decode_chunked(body_bytes).map_err(bad)?
        } else if let Some(cl) = header_values(&headers, "content-length").next() {
            let cl: usize = cl
                .trim()
                .parse()
                .map_err(|_| bad("invalid Content-Length"))?;
            if header_values(&headers, "content-length").any(|v| v.trim() != cl.to_string()) {
                return Err(bad("conflicting Content-Length headers"));
            }
            if cl > MAX_BODY {
                return Err(ClientError::BodyTooLarge { host: host.into() });
            }
            body_bytes.get(..cl).map(<[u8]>::to_vec)
        } else if eof {
            Some(body_bytes.to_vec())
        } else {
            None
        };
        return match body {
            Some(b) if b.len() > MAX_BODY => Err(ClientError::BodyTooLarge { host: host.into() }),
            Some(body) => Ok(Some(ClientResponse {
                status,
                headers,
                body,
            })),
            None if body_bytes.len() > MAX_BODY + 64 * 1024 => {
                Err(ClientError::BodyTooLarge { host: host.into() })
            }
            None => Ok(None),
        };
    }
}

/// Decodes a complete chunked body; `Ok(None)` when more bytes are needed.
fn header_values<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn decode_chunked(mut b: &[u8]) -> Result<Option<Vec<u8>>, &'static str> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return if b.len() > 1024 {
                Err("chunk size line too long")
            } else {
                Ok(None)
            };
        };
        let line =
            std::str::from_utf8(b.get(..eol).unwrap_or_default()).map_err(|_| "bad chunk size")?;
        let size_s = line.split(';').next().unwrap_or("").trim();
        if size_s.is_empty() || size_s.len() > 8 {
            return Err("bad chunk size");
        }
        let size = usize::from_str_radix(size_s, 16).map_err(|_| "bad chunk size")?;
        b = b.get(eol + 2..).unwrap_or_default();
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                if eol == 0 {
                    return Ok(Some(out));
                }
                b = b.get(eol + 2..).unwrap_or_default();
            }
        }
        if out.len() + size > MAX_BODY {
            return Err("chunked body over the size limit");
        }
        let Some(data) = b.get(..size) else {
            return Ok(None);
        };
        match b.get(size..size + 2) {
            Some(b"\r\n") => {}
            Some(_) => return Err("chunk not followed by CRLF"),
            None => return Ok(None),
        }
        out.extend_from_slice(data);
        b = b.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::net::TcpListener;

    fn tls() -> Arc<ClientConfig> {
        let roots = futures_rustls::rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Arc::new(
            ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// Serves one canned response on loopback and returns (url, the request it received).
    fn serve_once(response: Vec<u8>, hold: Duration) -> (String, smol::Task<Vec<u8>>) {
        let listener = smol::block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = smol::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(&response).await.unwrap();
            smol::Timer::after(hold).await;
            req
        });
        (format!("http://127.0.0.1:{port}"), task)
    }

    fn get(url: &str, timeout: Duration) -> Result<ClientResponse, ClientError> {
        smol::block_on(send_within(
            &tls(),
            timeout,
            "GET",
            &Url::parse(url).unwrap(),
            &[],
            b"",
        ))
    }

    #[test]
    fn content_length_chunked_and_close_framings() {
        let cases: Vec<(&[u8], &[u8])> = vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3;x=1\r\nllo\r\n0\r\nT: 1\r\n\r\n", b"hello"),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nuntil close", b"until close"),
            (b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n", b""),
        ];
        for (resp, want) in cases {
            // Hold the connection open for framed responses: the client must not wait for EOF.
            let framed = !want.starts_with(b"until");
            let (url, task) = serve_once(
                resp.to_vec(),
                if framed {
                    Duration::from_secs(5)
                } else {
                    Duration::ZERO
                },
            );
            let r = get(&format!("{url}/x?y=1"), Duration::from_secs(3)).unwrap();
            assert_eq!(r.body, want);
            if framed {
                drop(task);
            } else {
                let req = String::from_utf8(smol::block_on(task)).unwrap();
                assert!(
                    req.starts_with("GET /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:"),
                    "{req}"
                );
                assert!(req.contains("\r\nConnection: close\r\n"));
            }
        }
    }

    #[test]
    fn refusals() {
        let (url, _t) = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec(),
            Duration::ZERO,
        );
        assert!(matches!(
            get(&url, Duration::from_secs(3)),
            Err(ClientError::BadResponse { .. })
        ));
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        )
        .into_bytes();
        let (url, _t) = serve_once(big, Duration::ZERO);
        assert!(matches!(
            get(&url, Duration::from_secs(3)),
            Err(ClientError::BodyTooLarge { .. })
        ));
        let (url, _t) = serve_once(b"HTTP/1.1 200 OK\r\n".to_vec(), Duration::from_secs(5));
        assert!(matches!(
            get(&url, Duration::from_millis(300)),
            Err(ClientError::Timeout { .. })
        ));
        let (url, _t) = serve_once(b"garbage\r\n\r\n".to_vec(), Duration::ZERO);
        assert!(matches!(
            get(&url, Duration::from_secs(3)),
            Err(ClientError::BadResponse { .. })
        ));
        for u in [
            "http://idp.example.com/",
            "http://10.0.0.1/",
            "http://[fe80::1]/",
        ] {
            assert!(
                matches!(
                    get(u, Duration::from_secs(1)),
                    Err(ClientError::PlainHttpNotLoopback(_))
                ),
                "{u}"
            );
        }
        assert!(matches!(
            get("ftp://127.0.0.1/", Duration::from_secs(1)),
            Err(ClientError::BadUrl(_))
        ));
        let e = get("http://127.0.0.1:1/", Duration::from_secs(3)).unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    }

    #[test]
    fn request_head_is_safe() {
        let url = Url::parse("https://idp.example.com:8443/token?a=b").unwrap();
        let h = vec![
            ("Accept".to_string(), "application/json".to_string()),
            ("Host".into(), "evil".into()),
        ];
        let head =
            String::from_utf8(request_head("POST", &url, "idp.example.com:8443", &h, 3).unwrap())
                .unwrap();
        assert!(head.starts_with(
            "POST /token?a=b HTTP/1.1\r\nHost: idp.example.com:8443\r\nConnection: close\r\n"
        ));
        assert!(
            head.contains("Accept: application/json\r\n") && head.contains("Content-Length: 3\r\n")
        );
        assert!(!head.contains("evil"));
        let inject = vec![("X".to_string(), "a\r\nEvil: 1".to_string())];
        assert!(request_head("GET", &url, "h", &inject, 0).is_none());
        assert!(request_head("GE T", &url, "h", &[], 0).is_none());
    }

    #[test]
    fn chunked_decoder_edges() {
        assert_eq!(decode_chunked(b"0\r\n\r\n"), Ok(Some(vec![])));
        assert_eq!(decode_chunked(b"5\r\nhel"), Ok(None));
        assert_eq!(
            decode_chunked(b"5\r\nhelloXX"),
            Err("chunk not followed by CRLF")
        );
        assert_eq!(decode_chunked(b"zz\r\n"), Err("bad chunk size"));
        assert_eq!(decode_chunked(b"fffffffff\r\n"), Err("bad chunk size"));
        assert_eq!(
            decode_chunked(b"200000\r\n"),
            Err("chunked body over the size limit")
        );
    }
}
