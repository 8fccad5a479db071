//! Outbound HTTP(S) for the identity provider (discovery, JWKS, token and userinfo endpoints), on postern's own
//! HTTP/1.1 codec (`crate::http`).
//!
//! One request per connection (`Connection: close`): IdP calls happen once per sign-in, so pooling would only hold
//! memory. HTTPS uses the built-in trust roots plus SSL_CERT_FILE; plain http is allowed only to loopback hosts (a
//! local test IdP), so a typo in IDP_PROVIDER_URL cannot send the client secret in clear over a network.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::rustls::ClientConfig;
use futures_rustls::TlsConnector;
use oauth2::{HttpRequest, HttpResponse};
use smol::io::{AsyncRead, AsyncWrite};
use url::{Host, Url};

use crate::authn::oidc::Transport;
use crate::http::{
    encode, framing, BodyError, BodyReader, Conn, HeadError, HeadLimits, Headers, RequestHead,
    ResponseHead, Version,
};

/// The whole exchange (connect, TLS, request, response) must finish within this.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Larger IdP responses are refused (a JWKS or token response is a few KB).
pub const MAX_BODY: usize = 1024 * 1024;

/// Why an outbound request failed. Display names the host and the step.
#[derive(Debug)]
pub enum ClientError {
    BadUrl(String),
    /// `http://` to a host that is not loopback.
    PlainHttpNotLoopback(String),
    /// A method or header postern will not put on the wire.
    BadRequest(String),
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
            ClientError::BadUrl(u) => {
                write!(f, "cannot request {u:?}: not an http(s) URL with a host")
            }
            ClientError::PlainHttpNotLoopback(h) => write!(
                f,
                "refusing plain http to {h}: the identity provider must use https \
                 (http only for 127.0.0.1, ::1, localhost)"
            ),
            ClientError::BadRequest(what) => write!(f, "request not sent: {what}"),
            ClientError::Connect { host, error } => write!(f, "cannot connect to {host}: {error}"),
            ClientError::Tls { host, error } => write!(f, "TLS with {host} failed: {error}"),
            ClientError::Timeout { host } => {
                write!(
                    f,
                    "{host} did not answer within {} seconds",
                    TIMEOUT.as_secs()
                )
            }
            ClientError::Io { host, error } => write!(f, "connection to {host} failed: {error}"),
            ClientError::BadResponse { host, detail } => {
                write!(f, "{host} sent a response postern cannot read: {detail}")
            }
            ClientError::BodyTooLarge { host } => {
                write!(
                    f,
                    "{host} sent a response body over {MAX_BODY} bytes; refused"
                )
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// A response from the IdP, read whole (it is small and capped).
#[derive(Debug, Clone)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: Headers,
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
    let mut headers = Headers::with_capacity(req.headers().len());
    for (n, v) in req.headers() {
        let v = v
            .to_str()
            .map_err(|_| ClientError::BadRequest(format!("header {n} is not text")))?;
        headers.append(n.as_str(), v);
    }
    let resp = send(tls, req.method().as_str(), &url, headers, req.body()).await?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let mut b = oauth2::http::Response::builder().status(resp.status);
    for (n, v) in resp.headers.iter() {
        b = b.header(n, v);
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
    headers: Headers,
    body: &[u8],
) -> Result<ClientResponse, ClientError> {
    send_within(tls, TIMEOUT, method, url, headers, body, None).await
}

/// [`send`] with another time limit and, with `via`, another address to connect to than the URL's host (tests:
/// a TLS name on a loopback listener). `postern healthcheck` uses a shorter limit than the IdP calls.
pub async fn send_within(
    tls: &Arc<ClientConfig>,
    timeout: Duration,
    method: &str,
    url: &Url,
    headers: Headers,
    body: &[u8],
    via: Option<SocketAddr>,
) -> Result<ClientResponse, ClientError> {
    let host = url.host_str().unwrap_or_default().to_owned();
    let work = exchange(tls, method, url, headers, body, via);
    let timer = async {
        smol::Timer::after(timeout).await;
        Err(ClientError::Timeout { host: host.clone() })
    };
    smol::future::or(work, timer).await
}

/// Where to connect, decided from the URL alone.
struct Endpoint {
    https: bool,
    /// For errors, SNI and DNS (no brackets).
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

/// The request head: the caller's headers minus the ones postern owns here (Host, framing, connection handling).
fn request_head(
    method: &str,
    url: &Url,
    authority: &str,
    mut headers: Headers,
    body_len: usize,
) -> Result<RequestHead, ClientError> {
    let token = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(ClientError::BadRequest(format!(
            "method {method:?} is not a token"
        )));
    }
    let mut target = url.path().to_owned();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    for h in [
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "te",
        "upgrade",
        "keep-alive",
    ] {
        headers.remove(h);
    }
    let mut out = Headers::with_capacity(headers.len() + 4);
    out.append("host", authority);
    out.append("connection", "close");
    for (n, v) in headers.iter() {
        out.append(n, v);
    }
    if !out.contains("user-agent") {
        out.append("user-agent", concat!("postern/", env!("CARGO_PKG_VERSION")));
    }
    if body_len > 0 || matches!(method, "POST" | "PUT" | "PATCH") {
        out.append("content-length", body_len.to_string());
    }
    Ok(RequestHead {
        method: method.to_owned(),
        target,
        version: Version::Http11,
        headers: out,
    })
}

/// `via` connects to another address than the URL's host (tests: a TLS name on a loopback listener).
async fn exchange(
    tls: &Arc<ClientConfig>,
    method: &str,
    url: &Url,
    headers: Headers,
    body: &[u8],
    via: Option<SocketAddr>,
) -> Result<ClientResponse, ClientError> {
    let ep = endpoint(url)?;
    let head = request_head(method, url, &ep.authority, headers, body.len())?;
    let connect_err = |error| ClientError::Connect {
        host: ep.host.clone(),
        error,
    };
    let tcp = match via.or(ep.addr) {
        Some(a) => smol::net::TcpStream::connect(a)
            .await
            .map_err(connect_err)?,
        None => smol::net::TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(connect_err)?,
    };
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
        round_trip(Conn::new(stream), &ep.host, &head, body).await
    } else {
        round_trip(Conn::new(tcp), &ep.host, &head, body).await
    }
}

async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: Conn<S>,
    host: &str,
    head: &RequestHead,
    body: &[u8],
) -> Result<ClientResponse, ClientError> {
    let io = |error| ClientError::Io {
        host: host.to_owned(),
        error,
    };
    let bad = |detail: String| ClientError::BadResponse {
        host: host.to_owned(),
        detail,
    };
    let mut out = Vec::with_capacity(512 + body.len());
    encode::request_head(head, &mut out);
    out.extend_from_slice(body);
    conn.write_all(&out).await.map_err(io)?;
    conn.flush().await.map_err(io)?;

    let limits = HeadLimits {
        max_bytes: 64 * 1024,
        max_headers: 100,
        max_line: 8 * 1024,
    };
    let resp: ResponseHead = loop {
        let h = conn
            .read_response_head(&limits)
            .await
            .map_err(|e| match e {
                HeadError::Io(error) => io(error),
                HeadError::Eof => bad("the connection closed before a response".into()),
                HeadError::TooLarge(_) => bad("response head too large".into()),
                HeadError::Malformed(m) => bad(format!("malformed response head: {m}")),
            })?;
        // Interim responses (we never ask for one, but a server may send 100 or 103): skip them.
        if !(100..200).contains(&h.status) {
            break h;
        }
    };
    let kind = framing::response_body(&head.method, &resp).map_err(|e| bad(e.to_string()))?;
    let body = BodyReader::new(kind)
        .read_to_end(&mut conn, MAX_BODY)
        .await
        .map_err(|e| match e {
            BodyError::TooLong(_) => ClientError::BodyTooLarge {
                host: host.to_owned(),
            },
            BodyError::Io(error) => io(error),
            other => bad(other.to_string()),
        })?;
    Ok(ClientResponse {
        status: resp.status,
        headers: resp.headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::io::{AsyncReadExt, AsyncWriteExt};
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

    /// Serves one canned response on loopback, holds the connection open for `hold`, and returns (base URL, a task
    /// giving the request it received).
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
        let url = Url::parse(url).unwrap();
        smol::block_on(send_within(
            &tls(),
            timeout,
            "GET",
            &url,
            Headers::default(),
            b"",
            None,
        ))
    }

    #[test]
    fn content_length_chunked_and_close_framings() {
        let cases: Vec<(&[u8], &[u8])> = vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3;x=1\r\nllo\r\n0\r\nT: 1\r\n\r\n",
                b"hello",
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nuntil close", b"until close"),
            (b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n", b""),
        ];
        for (resp, want) in cases {
            // Hold framed responses open: the client must not wait for the close.
            let framed = !want.starts_with(b"until");
            let hold = if framed {
                Duration::from_secs(5)
            } else {
                Duration::ZERO
            };
            let (url, task) = serve_once(resp.to_vec(), hold);
            let r = get(&format!("{url}/x?y=1"), Duration::from_secs(3)).unwrap();
            assert_eq!(r.body, want);
            if framed {
                drop(task);
            } else {
                let req = String::from_utf8(smol::block_on(task)).unwrap();
                assert!(
                    req.starts_with("GET /x?y=1 HTTP/1.1\r\nhost: 127.0.0.1:"),
                    "{req}"
                );
                assert!(req.contains("\r\nconnection: close\r\n"), "{req}");
            }
        }
    }

    #[test]
    fn refusals() {
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec();
        let (url, _t) = serve_once(short, Duration::ZERO);
        let e = get(&url, Duration::from_secs(3)).unwrap_err();
        assert!(
            matches!(e, ClientError::BadResponse { .. } | ClientError::Io { .. }),
            "{e}"
        );
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let (url, _t) = serve_once(
            [big.as_bytes(), &vec![b'x'; MAX_BODY + 1]].concat(),
            Duration::ZERO,
        );
        assert!(matches!(
            get(&url, Duration::from_secs(3)),
            Err(ClientError::BodyTooLarge { .. })
        ));
        let (url, _t) = serve_once(b"HTTP/1.1 200 OK\r\n".to_vec(), Duration::from_secs(5));
        let e = get(&url, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
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
            let e = get(u, Duration::from_secs(1)).unwrap_err();
            assert!(
                matches!(e, ClientError::PlainHttpNotLoopback(_)),
                "{u}: {e}"
            );
        }
        let e = get("ftp://127.0.0.1/", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, ClientError::BadUrl(_)));
        let e = get("http://127.0.0.1:1/", Duration::from_secs(3)).unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    }

    #[test]
    fn request_head_is_safe() {
        let url = Url::parse("https://idp.example.com:8443/token?a=b").unwrap();
        let mut h = Headers::default();
        h.append("Accept", "application/json");
        h.append("Host", "evil");
        h.append("X-Bad", "a\r\nEvil: 1");
        let head = request_head("POST", &url, "idp.example.com:8443", h, 3).unwrap();
        let mut out = Vec::new();
        encode::request_head(&head, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "POST /token?a=b HTTP/1.1\r\nhost: idp.example.com:8443\r\nconnection: close\r\n"
        ));
        assert!(
            text.contains("accept: application/json\r\n") && text.contains("content-length: 3\r\n")
        );
        assert!(!text.contains("evil") && !text.contains("Evil"), "{text}");
        assert!(request_head("GE T", &url, "h", Headers::default(), 0).is_err());
    }

    #[test]
    fn https_verifies_the_server_name() {
        use futures_rustls::TlsAcceptor;
        let certs = crate::tls::parse_certs(include_bytes!("testdata/leaf.crt")).unwrap();
        let key = crate::tls::parse_key(include_bytes!("testdata/leaf.key")).unwrap();
        let server = crate::tls::server_config(certs, key).unwrap();
        let ca = crate::tls::parse_certs(include_bytes!("testdata/ca.crt")).unwrap();
        let (client, problem) = crate::tls::client_config_with(None, &ca);
        assert!(problem.is_none());
        let serve = |server: Arc<futures_rustls::rustls::ServerConfig>| {
            let listener = smol::block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
            let addr = listener.local_addr().unwrap();
            let task = smol::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let Ok(mut s) = TlsAcceptor::from(server).accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                let _ = s.flush().await;
                smol::Timer::after(Duration::from_secs(2)).await;
            });
            (addr, task)
        };
        let (addr, _t) = serve(server.clone());
        let url = Url::parse(&format!("https://backend.internal:{}/", addr.port())).unwrap();
        let r = smol::block_on(send_within(
            &client,
            TIMEOUT,
            "GET",
            &url,
            Headers::default(),
            b"",
            Some(addr),
        ));
        assert_eq!(r.unwrap().body, b"ok");
        // Another name on the same certificate: refused by verification.
        let (addr, _t) = serve(server);
        let url = Url::parse(&format!("https://other.internal:{}/", addr.port())).unwrap();
        let e = smol::block_on(send_within(
            &client,
            TIMEOUT,
            "GET",
            &url,
            Headers::default(),
            b"",
            Some(addr),
        ));
        assert!(matches!(e, Err(ClientError::Tls { .. })), "{e:?}");
    }

    #[test]
    fn oauth2_adapter_round_trip() {
        let resp =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let (url, task) = serve_once(resp.to_vec(), Duration::ZERO);
        let req = oauth2::http::Request::builder()
            .method("POST")
            .uri(format!("{url}/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(b"a=b".to_vec())
            .unwrap();
        let r = smol::block_on(send_oauth2(&tls(), req)).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers().get("content-type").unwrap(), "application/json");
        assert_eq!(r.body(), b"{}");
        let sent = String::from_utf8(smol::block_on(task)).unwrap();
        assert!(sent.contains("content-length: 3\r\n"), "{sent}");
    }
}
