//! serve() and forward() on loopback, against a fake upstream written here (named as such): raw bytes in, parsed
//! responses out. Every test is bounded in time.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use smol::net::{TcpListener, TcpStream};
use smol::{LocalExecutor, Timer};

use super::*;
use crate::forward::ForwardPlan;
use crate::http::body::BodyReader;
use crate::http::conn::{Conn, HeadLimits};
use crate::http::{framing, ResponseHead};
use crate::pool::{Pool, PoolLimits};
use crate::reply::Reply;
use crate::route::Upstream;

/// Forwards everything to one upstream, except `/reply*` which it answers itself.
struct TestHandler {
    upstream: Rc<Upstream>,
    timeout: Duration,
}

impl Handler for TestHandler {
    fn handle<'a>(&'a self, req: &'a Request) -> Pin<Box<dyn Future<Output = Decision> + 'a>> {
        Box::pin(async move {
            if req.head.target.starts_with("/reply") {
                return Decision {
                    action: Action::Reply(Reply::text(200, "postern says hi\n")),
                    user: None,
                };
            }
            let plan = ForwardPlan {
                own_cookie: std::rc::Rc::from("_pomerium"),
                upstream: self.upstream.clone(),
                method: req.head.method.clone(),
                target: req.head.target.clone(),
                headers: req.head.headers.clone(),
                timeout: self.timeout,
                idle_timeout: Some(Duration::from_secs(60)),
                websocket: crate::forward::wants_websocket(&req.head),
                session_expires: None,
            };
            Decision {
                action: Action::Forward(plan),
                user: Some("alice@example.com".into()),
            }
        })
    }

    fn error_page(&self, _req: Option<&Request>, status: u16, detail: &str) -> Reply {
        Reply::text(status, format!("error {status}: {detail}\n"))
    }
}

/// The fake upstream: a hand-made HTTP/1.1 server whose behaviour is chosen by the request path.
async fn fake_upstream(
    listener: TcpListener,
    accepts: Rc<Cell<usize>>,
    ex: Rc<LocalExecutor<'static>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        accepts.set(accepts.get() + 1);
        let n = accepts.get();
        ex.spawn(fake_upstream_connection(stream, n)).detach();
    }
}

async fn fake_upstream_connection<S: AsyncRead + AsyncWrite + Unpin>(stream: S, n: usize) {
    let mut conn = Conn::new(stream);
    let mut die_next = false;
    while let Ok(Some(head)) = conn.read_request_head(&HeadLimits::default()).await {
        if die_next {
            return; // a request on a connection this upstream meant to close: dropped unanswered
        }
        // Answers given before (or instead of) reading the request body.
        match head.target.as_str() {
            "/too-large" => {
                // Refuses at once, body unread, and closes (a 413 from an upload limit).
                let _ = conn
                    .write_all(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large")
                    .await;
                let _ = conn.flush().await;
                Timer::after(Duration::from_millis(100)).await;
                return;
            }
            "/expect-100" if head.headers.has_token("expect", "100-continue") => {
                let _ = conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            }
            "/ws" => {
                // A WebSocket server: 101 and a first message in one write, then an echo of every byte.
                let key = head
                    .headers
                    .get("sec-websocket-key")
                    .unwrap_or("-")
                    .to_string();
                let upgrade = head.headers.get("upgrade").unwrap_or("-").to_string();
                let reply = format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: for-{key}\r\n\r\nhi! upgrade={upgrade};");
                if conn.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                loop {
                    match conn.read_some(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        let kind = framing::request_body(&head).expect("fake upstream: bad framing");
        let mut reader = BodyReader::new(kind);
        let body = reader
            .read_to_end(&mut conn, 1 << 24)
            .await
            .expect("fake upstream: bad body");
        if head.target == "/trailers" {
            // Says which request trailers arrived, and sends its own (one of them a framing field).
            let got: Vec<String> = reader
                .take_trailers()
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            let text = format!("{} bytes; trailers {}", body.len(), got.join(" "));
            let reply = format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n{:x}\r\n{text}\r\n0\r\nx-checksum: abc\r\ncontent-length: 7\r\n\r\n",
                text.len()
            );
            if conn.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        die_next = head.target.starts_with("/die-next");
        let reply: Vec<u8> = match head.target.as_str() {
            "/slow" => {
                Timer::after(Duration::from_secs(30)).await;
                return;
            }
            "/head" => b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\nx-up: head\r\n\r\n".to_vec(),
            "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"
                .to_vec(),
            "/close" => {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil close").await;
                return;
            }
            "/garbled" => {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab").await;
                return;
            }
            _ => {
                let mut text = format!(
                    "{} {} conn={n} te={} cl={} host={} expect={} conn-hdr={}\n",
                    head.method,
                    head.target,
                    head.headers.get("transfer-encoding").unwrap_or("-"),
                    head.headers.get("content-length").unwrap_or("-"),
                    head.headers.get("host").unwrap_or("-"),
                    head.headers.get("expect").unwrap_or("-"),
                    head.headers.get("connection").unwrap_or("-"),
                )
                .into_bytes();
                text.extend_from_slice(&body);
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nkeep-alive: timeout=30\r\nconnection: keep-alive\r\n\r\n",
                    text.len()
                )
                .into_bytes();
                r.extend_from_slice(&text);
                r
            }
        };
        if conn.write_all(&reply).await.is_err() {
            return;
        }
    }
}

struct Env {
    addr: SocketAddr,
    upstream_accepts: Rc<Cell<usize>>,
    pool: Rc<Pool>,
}

/// Runs postern (serve) and the fake upstream on one LocalExecutor, then `test`, within 10 s.
fn run<F, Fut>(upstream_reachable: bool, upstream_timeout: Duration, test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let ex = Rc::new(LocalExecutor::new());
    smol::block_on(ex.run(async {
        let up_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let up_port = up_listener.local_addr().expect("upstream addr").port();
        let accepts = Rc::new(Cell::new(0));
        if upstream_reachable {
            ex.spawn(fake_upstream(up_listener, accepts.clone(), ex.clone()))
                .detach();
        } else {
            drop(up_listener); // nothing listens on that port any more
        }
        let upstream = Rc::new(Upstream {
            authority: format!("127.0.0.1:{up_port}"),
            ..Upstream::new(false, "127.0.0.1".into(), up_port, String::new())
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind postern");
        let addr = listener.local_addr().expect("postern addr");
        let pool = Rc::new(Pool::new(PoolLimits::default(), None));
        let opts = Rc::new(ServerOptions {
            limits: Limits {
                head_timeout: Duration::from_secs(2),
                ..Limits::default()
            },
            security_headers: vec![("x-frame-options".into(), "SAMEORIGIN".into())],
            pool: pool.clone(),
        });
        let handler = Rc::new(TestHandler {
            upstream,
            timeout: upstream_timeout,
        });
        let env = Env {
            addr,
            upstream_accepts: accepts,
            pool,
        };
        let server = async {
            serve(&ex, listener, None, handler, opts).await;
            panic!("serve returned");
        };
        let test = async {
            if timeout(Duration::from_secs(10), test(env)).await.is_none() {
                panic!("test did not finish within 10 s");
            }
        };
        smol::future::or(server, test).await;
    }));
}

async fn connect(addr: SocketAddr, bytes: &[u8]) -> Conn<TcpStream> {
    let mut conn = Conn::new(TcpStream::connect(addr).await.expect("connect to postern"));
    conn.write_all(bytes).await.expect("send");
    conn
}

async fn response(conn: &mut Conn<TcpStream>, method: &str) -> (ResponseHead, String) {
    let head = conn
        .read_response_head(&HeadLimits::default())
        .await
        .expect("response head");
    let kind = framing::response_body(method, &head).expect("response framing");
    let body = BodyReader::new(kind)
        .read_to_end(conn, 1 << 24)
        .await
        .expect("response body");
    (head, String::from_utf8(body).expect("utf-8 body"))
}

async fn closed(conn: &mut Conn<TcpStream>) -> bool {
    matches!(
        timeout(Duration::from_secs(3), conn.fill(1 << 16)).await,
        Some(Ok(0)) | Some(Err(_))
    )
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    run(true, Duration::from_secs(5), |env| async move {
        let mut c = connect(
            env.addr,
            b"GET /a HTTP/1.1\r\nHost: app\r\n\r\nGET /reply HTTP/1.1\r\nHost: app\r\n\r\nGET /c HTTP/1.1\r\nHost: app\r\n\r\n",
        )
        .await;
        let (h1, b1) = response(&mut c, "GET").await;
        let (h2, b2) = response(&mut c, "GET").await;
        let (h3, b3) = response(&mut c, "GET").await;
        assert_eq!((h1.status, h2.status, h3.status), (200, 200, 200));
        assert!(b1.starts_with("GET /a conn=1 "), "{b1}");
        assert_eq!(b2, "postern says hi\n");
        assert!(b3.starts_with("GET /c conn=1 "), "{b3}");
        for h in [&h1, &h2, &h3] {
            assert!(h.headers.contains("date"));
            assert!(h.headers.contains("content-length"));
            assert_eq!(h.headers.get("x-frame-options"), Some("SAMEORIGIN"));
            assert_eq!(
                h.headers.get("keep-alive"),
                None,
                "hop-by-hop from upstream must not pass"
            );
        }
        assert!(
            b1.contains("conn-hdr=-"),
            "client hop-by-hop must not pass: {b1}"
        );
    });
}

#[test]
fn http10_request_is_answered_and_closed() {
    run(true, Duration::from_secs(5), |env| async move {
        let mut c = connect(env.addr, b"GET /old HTTP/1.0\r\n\r\n").await;
        let (h, b) = response(&mut c, "GET").await;
        assert_eq!(h.status, 200);
        assert!(b.starts_with("GET /old conn=1 "), "{b}");
        assert!(
            b.contains(&format!("host=127.0.0.1:{}", env_port(&b))),
            "{b}"
        );
        assert_eq!(h.headers.get("connection"), Some("close"));
        assert!(closed(&mut c).await);

        // HTTP/1.0 with keep-alive stays open; a chunked upstream body is sent close-delimited.
        let mut c = connect(
            env.addr,
            b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        )
        .await;
        let (h, _) = response(&mut c, "GET").await;
        assert_eq!(h.headers.get("connection"), Some("keep-alive"));
        c.write_all(b"GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let (h, b) = response(&mut c, "GET").await;
        assert_eq!((h.status, b.as_str()), (200, "hello world"));
        assert_eq!(h.headers.get("transfer-encoding"), None);
        assert!(closed(&mut c).await);
    });
}

fn env_port(body: &str) -> String {
    body.split("host=127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or("")
        .to_string()
}

#[test]
fn chunked_upload_arrives_intact() {
    run(true, Duration::from_secs(5), |env| async move {
        let mut payload = Vec::new();
        let mut req =
            b"POST /upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for i in 0..50u32 {
            let piece: Vec<u8> = (0..1000u32).map(|j| b'a' + ((i + j) % 26) as u8).collect();
            req.extend_from_slice(format!("{:x};ext={i}\r\n", piece.len()).as_bytes());
            req.extend_from_slice(&piece);
            req.extend_from_slice(b"\r\n");
            payload.extend_from_slice(&piece);
        }
        req.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
        let mut c = connect(env.addr, &req).await;
        let (h, b) = response(&mut c, "POST").await;
        assert_eq!(h.status, 200);
        let (first, rest) = b.split_once('\n').unwrap();
        assert!(first.contains("te=chunked cl=-"), "{first}");
        assert_eq!(rest.as_bytes(), &payload[..]);

        // A sized upload with Expect: 100-continue gets the interim response, then the final one.
        let mut c = connect(
            env.addr,
            b"PUT /sized HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await;
        let interim = c.read_response_head(&HeadLimits::default()).await.unwrap();
        assert_eq!(interim.status, 100);
        c.write_all(b"hello").await.unwrap();
        let (h, b) = response(&mut c, "PUT").await;
        assert_eq!(h.status, 200);
        // The expectation went upstream; this upstream stayed silent, so postern let the body through itself.
        assert!(
            b.starts_with("PUT /sized conn=")
                && b.contains("te=- cl=5")
                && b.contains("expect=100-continue"),
            "{b}"
        );
        assert!(b.ends_with("\nhello"), "{b}");
    });
}

#[test]
fn expect_continue_follows_the_upstream() {
    run(true, Duration::from_secs(5), |env| async move {
        // The upstream says 100 at once: the client hears it without postern's one-second wait.
        let started = std::time::Instant::now();
        let mut c = connect(
            env.addr,
            b"PUT /expect-100 HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await;
        let interim = c.read_response_head(&HeadLimits::default()).await.unwrap();
        assert_eq!(interim.status, 100);
        assert!(started.elapsed() < Duration::from_millis(800));
        c.write_all(b"hello").await.unwrap();
        let (h, b) = response(&mut c, "PUT").await;
        assert_eq!(h.status, 200);
        assert!(b.ends_with("\nhello"), "{b}");

        // B23 (c): the upstream answers 413 before the body: that is the client's answer, with no 100 first, and
        // the connection closes (the body was never sent).
        let mut c = connect(
            env.addr,
            b"PUT /too-large HTTP/1.1\r\nHost: app\r\nContent-Length: 1048576\r\nExpect: 100-continue\r\n\r\n",
        )
        .await;
        let (h, b) = response(&mut c, "PUT").await;
        assert_eq!((h.status, b.as_str()), (413, "too large"));
        assert_eq!(h.headers.get("connection"), Some("close"));
        assert!(closed(&mut c).await);
    });
}

#[test]
fn trailers_pass_both_ways_filtered() {
    run(true, Duration::from_secs(5), |env| async move {
        let mut c = connect(
            env.addr,
            b"POST /trailers HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Pomerium-Claim-Email: admin@example.com\r\nTransfer-Encoding: gzip\r\n\r\n",
        )
        .await;
        let head = c.read_response_head(&HeadLimits::default()).await.unwrap();
        assert_eq!(head.headers.get("transfer-encoding"), Some("chunked"));
        let mut reader = BodyReader::new(framing::response_body("POST", &head).unwrap());
        let body = reader.read_to_end(&mut c, 1 << 16).await.unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "3 bytes; trailers x-sum=1"
        );
        assert_eq!(
            reader.take_trailers(),
            [("x-checksum".to_string(), "abc".to_string())]
        );
        // The connection stays in step after the trailers.
        c.write_all(b"GET /after HTTP/1.1\r\nHost: app\r\n\r\n")
            .await
            .unwrap();
        let (h, b) = response(&mut c, "GET").await;
        assert_eq!(h.status, 200);
        assert!(b.starts_with("GET /after "), "{b}");
    });
}

#[test]
fn early_answer_during_an_upload_reaches_the_client() {
    run(true, Duration::from_secs(5), |env| async move {
        // No Expect: the client sends 1 MiB; the upstream refuses after the head and closes. The client gets the
        // 413, not a 502.
        let mut req =
            b"PUT /too-large HTTP/1.1\r\nHost: app\r\nContent-Length: 1048576\r\n\r\n".to_vec();
        req.extend(std::iter::repeat(b'x').take(1 << 20));
        let c = TcpStream::connect(env.addr).await.unwrap();
        let mut c = Conn::new(c);
        let writer = {
            let mut w = c.get_ref().clone();
            async move {
                use smol::io::AsyncWriteExt;
                let _ = w.write_all(&req).await;
            }
        };
        let reader = async { response(&mut c, "PUT").await };
        let ((h, b), ()) = smol::future::zip(reader, writer).await;
        assert_eq!((h.status, b.as_str()), (413, "too large"));
    });
}

#[test]
fn websocket_handshake_opens_a_tunnel() {
    run(true, Duration::from_secs(5), |env| async move {
        // B05: `Connection` as a token list, `Upgrade` in another case; a first frame sent with the handshake.
        let mut c = connect(
            env.addr,
            b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Key: k1\r\nSec-WebSocket-Version: 13\r\n\r\nEARLY",
        )
        .await;
        let h = c.read_response_head(&HeadLimits::default()).await.unwrap();
        assert_eq!(h.status, 101);
        assert_eq!(h.headers.get("upgrade"), Some("websocket"));
        assert!(h.headers.has_token("connection", "upgrade"));
        assert_eq!(h.headers.get("sec-websocket-accept"), Some("for-k1"));
        assert_eq!(h.headers.get("content-length"), None);
        let want = b"hi! upgrade=websocket;EARLY";
        let mut got = Vec::new();
        while got.len() < want.len() {
            let mut buf = [0u8; 64];
            let n = c.read_some(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "tunnel closed early: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, want);
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        let mut n = 0;
        while n < 4 {
            n += c.read_some(&mut buf[n..]).await.unwrap();
        }
        assert_eq!(&buf, b"ping");
        // The client closes: the upstream sees the end and closes too, and so does postern.
        c.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
        assert!(closed(&mut c).await);
        // A handshake the handler did not mark as a WebSocket (HTTP/1.0) is a plain request.
        let mut c = connect(
            env.addr,
            b"GET /plain HTTP/1.0\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await;
        let (h, b) = response(&mut c, "GET").await;
        assert_eq!(h.status, 200);
        assert!(
            b.contains("conn-hdr=-"),
            "no upgrade headers go upstream: {b}"
        );
    });
}

#[test]
fn reply_never_sends_100_continue() {
    run(true, Duration::from_secs(5), |env| async move {
        let mut c = connect(
            env.addr,
            b"POST /reply HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await;
        let (h, b) = response(&mut c, "POST").await;
        assert_eq!((h.status, b.as_str()), (200, "postern says hi\n"));
        assert_eq!(h.headers.get("connection"), Some("close"));
    });
}

#[test]
fn unreachable_upstream_is_502() {
    run(false, Duration::from_secs(5), |env| async move {
        let mut c = connect(env.addr, b"GET /x HTTP/1.1\r\nHost: app\r\n\r\n").await;
        let (h, b) = response(&mut c, "GET").await;
        assert_eq!(h.status, 502, "{b}");
        assert!(b.contains("could not connect"), "{b}");
        // The connection is still usable.
        c.write_all(b"GET /reply HTTP/1.1\r\nHost: app\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(response(&mut c, "GET").await.0.status, 200);
        // A client still waiting for 100 Continue gets the 502 and a closed connection, not a wait for its body.
        let req =
            b"POST /x HTTP/1.1\r\nHost: app\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n";
        c.write_all(req).await.unwrap();
        let (h, _) = response(&mut c, "POST").await;
        assert_eq!(
            (h.status, h.headers.get("connection")),
            (502, Some("close"))
        );
        assert!(closed(&mut c).await);
    });
}

#[test]
fn garbled_upstream_response_is_502() {
    run(true, Duration::from_secs(5), |env| async move {
        let mut c = connect(env.addr, b"GET /garbled HTTP/1.1\r\nHost: app\r\n\r\n").await;
        let (h, b) = response(&mut c, "GET").await;
        assert_eq!(h.status, 502, "{b}");
    });
}

#[test]
fn silent_upstream_is_504() {
    run(true, Duration::from_millis(300), |env| async move {
        let started = std::time::Instant::now();
        let mut c = connect(env.addr, b"GET /slow HTTP/1.1\r\nHost: app\r\n\r\n").await;
        let (h, b) = response(&mut c, "GET").await;
        assert_eq!(h.status, 504, "{b}");
        assert!(started.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn head_keeps_content_length() {
    run(true, Duration::from_secs(5), |env| async move {
        let mut c = connect(
            env.addr,
            b"HEAD /head HTTP/1.1\r\nHost: app\r\n\r\nHEAD /reply HTTP/1.1\r\nHost: app\r\n\r\nGET /after HTTP/1.1\r\nHost: app\r\n\r\n",
        )
        .await;
        let (h, b) = response(&mut c, "HEAD").await;
        assert_eq!(
            (h.status, h.headers.get("content-length"), b.as_str()),
            (200, Some("1234"), "")
        );
        let (h, b) = response(&mut c, "HEAD").await;
        assert_eq!(
            (h.status, h.headers.get("content-length"), b.as_str()),
            (200, Some("16"), "")
        );
        let (h, b) = response(&mut c, "GET").await;
        assert_eq!(h.status, 200);
        assert!(
            b.starts_with("GET /after "),
            "no stray body bytes may precede this response: {b}"
        );
    });
}

#[test]
fn upstream_connections_are_reused() {
    run(true, Duration::from_secs(5), |env| async move {
        for i in 0..3 {
            let mut c = connect(
                env.addr,
                format!("GET /r{i} HTTP/1.1\r\nHost: app\r\n\r\n").as_bytes(),
            )
            .await;
            let (h, b) = response(&mut c, "GET").await;
            assert_eq!(h.status, 200);
            assert!(b.contains("conn=1 "), "{b}");
        }
        assert_eq!(env.upstream_accepts.get(), 1);
        assert_eq!(env.pool.connects(), 1);
        assert_eq!(env.pool.idle_count(), 1);
        // A close-delimited response leaves nothing to reuse.
        let mut c = connect(env.addr, b"GET /close HTTP/1.1\r\nHost: app\r\n\r\n").await;
        let (h, b) = response(&mut c, "GET").await;
        assert_eq!(
            (h.status, b.as_str(), h.headers.get("transfer-encoding")),
            (200, "until close", Some("chunked"))
        );
        assert_eq!(env.pool.idle_count(), 0);
    });
}

#[test]
fn bad_requests_get_pages_and_do_not_disturb_others() {
    run(true, Duration::from_secs(5), |env| async move {
        let mut good = connect(env.addr, b"GET /one HTTP/1.1\r\nHost: app\r\n\r\n").await;
        assert_eq!(response(&mut good, "GET").await.0.status, 200);
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\nHost: app\n\n", 400),
            (b"POST / HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        ];
        for (input, status) in cases {
            let mut c = connect(env.addr, input).await;
            let (h, _) = response(&mut c, "GET").await;
            assert_eq!(h.status, *status, "{:?}", String::from_utf8_lossy(input));
            assert!(closed(&mut c).await);
        }
        let mut big = b"GET / HTTP/1.1\r\nHost: app\r\nX: ".to_vec();
        big.extend(std::iter::repeat(b'a').take(20_000));
        let mut c = connect(env.addr, &big).await;
        assert_eq!(response(&mut c, "GET").await.0.status, 431);
        good.write_all(b"GET /two HTTP/1.1\r\nHost: app\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(response(&mut good, "GET").await.0.status, 200);
    });
}

#[test]
fn idle_client_connection_holds_no_read_buffer() {
    // The server side's buffer is not observable from here; check the same Conn logic the server uses.
    run(true, Duration::from_secs(5), |env| async move {
        let mut c = connect(env.addr, b"GET /reply HTTP/1.1\r\nHost: app\r\n\r\n").await;
        let _ = response(&mut c, "GET").await;
        c.release_if_empty();
        assert_eq!(c.buffer_capacity(), 0);
    });
}

#[test]
fn stale_reused_connection_is_retried_once_for_get_but_never_for_post() {
    run(true, Duration::from_secs(5), |env| async move {
        let mut c = connect(env.addr, b"GET /die-next HTTP/1.1\r\nHost: app\r\n\r\n").await;
        assert!(response(&mut c, "GET").await.1.contains("conn=1 "));
        assert_eq!(env.pool.idle_count(), 1);
        // The pooled connection looks alive, but the upstream drops the next request: replayed on a fresh one.
        c.write_all(b"GET /die-next HTTP/1.1\r\nHost: app\r\n\r\n")
            .await
            .unwrap();
        let (h, b) = response(&mut c, "GET").await;
        assert_eq!(h.status, 200);
        assert!(b.contains("conn=2 "), "{b}");
        assert_eq!(env.pool.connects(), 2);
        // A POST with a body is never sent twice.
        c.write_all(b"POST /x HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\n\r\nhi")
            .await
            .unwrap();
        let (h, b) = response(&mut c, "POST").await;
        assert_eq!(h.status, 502, "{b}");
        assert_eq!(env.upstream_accepts.get(), 2);
    });
}

#[test]
fn busy_server_refuses_politely() {
    let ex = Rc::new(LocalExecutor::new());
    smol::block_on(ex.run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Rc::new(Upstream {
            authority: "x".into(),
            ..Upstream::new(false, "127.0.0.1".into(), 9, String::new())
        });
        let opts = Rc::new(ServerOptions {
            limits: Limits {
                max_connections: 1,
                ..Limits::default()
            },
            security_headers: Vec::new(),
            pool: Rc::new(Pool::new(PoolLimits::default(), None)),
        });
        let handler = Rc::new(TestHandler {
            upstream,
            timeout: Duration::from_secs(1),
        });
        let server = async {
            serve(&ex, listener, None, handler, opts).await;
        };
        let test = async {
            let mut first = connect(addr, b"").await;
            Timer::after(Duration::from_millis(50)).await;
            let mut second = connect(addr, b"").await;
            let (h, _) = response(&mut second, "GET").await;
            assert_eq!(h.status, 503);
            first
                .write_all(b"GET /reply HTTP/1.1\r\nHost: app\r\n\r\n")
                .await
                .unwrap();
            assert_eq!(response(&mut first, "GET").await.0.status, 200);
        };
        assert!(
            timeout(Duration::from_secs(10), smol::future::or(server, test))
                .await
                .is_some()
        );
    }));
}

#[test]
fn connection_task_is_small() {
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let upstream = Rc::new(Upstream {
            authority: "x".into(),
            ..Upstream::new(false, "127.0.0.1".into(), 9, String::new())
        });
        let handler = TestHandler {
            upstream,
            timeout: Duration::from_secs(1),
        };
        let opts = ServerOptions {
            limits: Limits::default(),
            security_headers: Vec::new(),
            pool: Rc::new(Pool::new(PoolLimits::default(), None)),
        };
        let peer = client.local_addr().unwrap();
        let fut = connection(Conn::new(client), peer, &handler, &opts);
        let size = std::mem::size_of_val(&fut);
        eprintln!("connection future: {size} bytes");
        // About 1.9 KB with rustc 1.95; the budget for a whole idle connection is about 8 KB.
        assert!(size < 3072, "connection future is {size} bytes");
    }));
}

/// TLS material for tests only: a self-signed P-256 certificate for `localhost` and `127.0.0.1` (100 years).
fn test_tls() -> (Arc<ServerConfig>, Arc<futures_rustls::rustls::ClientConfig>) {
    use futures_rustls::rustls::pki_types::pem::PemObject;
    use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use futures_rustls::rustls::{crypto, ClientConfig, RootCertStore};
    let cert =
        CertificateDer::from_pem_slice(include_bytes!("testdata/cert.pem")).expect("test cert");
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/key.pem")).expect("test key");
    let provider = Arc::new(crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

#[test]
fn tls_on_both_legs() {
    use futures_rustls::rustls::pki_types::ServerName;
    use futures_rustls::{TlsAcceptor, TlsConnector};
    let (server_cfg, client_cfg) = test_tls();
    let ex = Rc::new(LocalExecutor::new());
    smol::block_on(ex.run(async {
        // The fake upstream, over TLS.
        let up_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_port = up_listener.local_addr().unwrap().port();
        let acceptor = TlsAcceptor::from(server_cfg.clone());
        let accepts = Rc::new(Cell::new(0usize));
        let (ex2, accepts2) = (ex.clone(), accepts.clone());
        ex.spawn(async move {
            while let Ok((tcp, _)) = up_listener.accept().await {
                accepts2.set(accepts2.get() + 1);
                let n = accepts2.get();
                let acceptor = acceptor.clone();
                ex2.spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        fake_upstream_connection(tls, n).await;
                    }
                })
                .detach();
            }
        })
        .detach();

        let upstream = Rc::new(Upstream {
            authority: format!("127.0.0.1:{up_port}"),
            ..Upstream::new(true, "127.0.0.1".into(), up_port, String::new())
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Rc::new(Pool::new(PoolLimits::default(), Some(client_cfg.clone())));
        let opts = Rc::new(ServerOptions {
            limits: Limits::default(),
            security_headers: Vec::new(),
            pool: pool.clone(),
        });
        let handler = Rc::new(TestHandler {
            upstream,
            timeout: Duration::from_secs(5),
        });
        let server = async {
            serve(&ex, listener, Some(server_cfg.clone()), handler, opts).await;
        };
        let test = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let tls = TlsConnector::from(client_cfg.clone())
                .connect(name, tcp)
                .await
                .expect("client handshake");
            let mut c = Conn::new(tls);
            for i in 0..2 {
                c.write_all(format!("GET /tls{i} HTTP/1.1\r\nHost: app\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                c.flush().await.unwrap();
                let head = c.read_response_head(&HeadLimits::default()).await.unwrap();
                let kind = framing::response_body("GET", &head).unwrap();
                let body = BodyReader::new(kind)
                    .read_to_end(&mut c, 1 << 20)
                    .await
                    .unwrap();
                let body = String::from_utf8(body).unwrap();
                assert_eq!(head.status, 200, "{body}");
                assert!(body.starts_with(&format!("GET /tls{i} conn=1 ")), "{body}");
            }
            c.write_all(b"GET /chunked HTTP/1.1\r\nHost: app\r\n\r\n")
                .await
                .unwrap();
            c.flush().await.unwrap();
            let head = c.read_response_head(&HeadLimits::default()).await.unwrap();
            let body = BodyReader::new(framing::response_body("GET", &head).unwrap())
                .read_to_end(&mut c, 1 << 20)
                .await
                .unwrap();
            assert_eq!(body, b"hello world");
            assert_eq!((accepts.get(), pool.connects()), (1, 1));
        };
        assert!(
            timeout(Duration::from_secs(10), smol::future::or(server, test))
                .await
                .is_some()
        );
    }));
}

#[test]
fn https_upstream_without_tls_client_is_502() {
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Rc::new(Upstream {
            authority: "x".into(),
            ..Upstream::new(true, "127.0.0.1".into(), 9, String::new())
        });
        let opts = Rc::new(ServerOptions {
            limits: Limits::default(),
            security_headers: Vec::new(),
            pool: Rc::new(Pool::new(PoolLimits::default(), None)),
        });
        let handler = Rc::new(TestHandler {
            upstream,
            timeout: Duration::from_secs(1),
        });
        let server = async {
            serve(&ex, listener, None, handler, opts).await;
        };
        let test = async {
            let mut c = connect(addr, b"GET /x HTTP/1.1\r\nHost: app\r\n\r\n").await;
            let (h, b) = response(&mut c, "GET").await;
            assert_eq!(h.status, 502);
            assert!(b.contains("TLS client configuration"), "{b}");
        };
        assert!(
            timeout(Duration::from_secs(10), smol::future::or(server, test))
                .await
                .is_some()
        );
    }));
}

#[test]
fn access_line_drops_the_query_and_escapes() {
    let mut headers = crate::http::Headers::default();
    headers.append("host", "app.example");
    let head = RequestHead {
        method: "GET".into(),
        target: "/oauth2/callback?code=SECRET&state=x".into(),
        version: crate::http::Version::Http11,
        headers,
    };
    let req = Request {
        head,
        peer: "10.0.0.1:5000".parse().unwrap(),
    };
    let outcome = Outcome {
        status: 302,
        bytes: 12,
        keep_alive: true,
    };
    let line = access_line(
        &req,
        &outcome,
        Some("alice@example.com"),
        Duration::from_millis(7),
    );
    assert_eq!(
        line,
        "10.0.0.1:5000 app.example GET /oauth2/callback 302 12 7ms alice@example.com"
    );
    let line = access_line(&req, &outcome, Some("evil\n1.2.3.4 forged"), Duration::ZERO);
    assert!(line.ends_with(r"evil\n1.2.3.4\x20forged"), "{line}");
    assert!(!line.contains("SECRET"));
}

#[test]
fn slow_head_gets_408() {
    run(true, Duration::from_secs(5), |env| async move {
        let started = std::time::Instant::now();
        let mut c = connect(env.addr, b"GET /x HTTP/1.1\r\nHost: a").await;
        let (h, _) = response(&mut c, "GET").await;
        assert_eq!(h.status, 408);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(closed(&mut c).await);
    });
}

#[test]
fn tls_handshake_times_out() {
    let (server_cfg, _) = test_tls();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Rc::new(Upstream {
            authority: "x".into(),
            ..Upstream::new(false, "127.0.0.1".into(), 9, String::new())
        });
        let opts = Rc::new(ServerOptions {
            limits: Limits {
                handshake_timeout: Duration::from_millis(200),
                ..Limits::default()
            },
            security_headers: Vec::new(),
            pool: Rc::new(Pool::new(PoolLimits::default(), None)),
        });
        let handler = Rc::new(TestHandler {
            upstream,
            timeout: Duration::from_secs(1),
        });
        let server = async {
            serve(&ex, listener, Some(server_cfg), handler, opts).await;
        };
        let test = async {
            let mut c = connect(addr, b"").await;
            assert!(closed(&mut c).await);
        };
        assert!(
            timeout(Duration::from_secs(10), smol::future::or(server, test))
                .await
                .is_some()
        );
    }));
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Measurement, not a check: `cargo test --release measure_idle -- --ignored --nocapture`. Both ends of each
/// connection live in this process, so the figure is an upper bound for postern's side.
#[test]
#[ignore]
fn measure_idle_keep_alive_memory() {
    run(true, Duration::from_secs(5), |env| async move {
        let mut warm = connect(env.addr, b"GET /reply HTTP/1.1\r\nHost: app\r\n\r\n").await;
        let _ = response(&mut warm, "GET").await;
        let before = rss_kb();
        let mut conns = Vec::new();
        for _ in 0..1000 {
            let mut c = connect(env.addr, b"GET /reply HTTP/1.1\r\nHost: app\r\n\r\n").await;
            let _ = response(&mut c, "GET").await;
            c.release_if_empty();
            conns.push(c);
        }
        Timer::after(Duration::from_millis(200)).await;
        let after = rss_kb();
        eprintln!(
            "idle keep-alive connections: {} bytes each (both ends)",
            (after - before) * 1024 / 1000
        );
    });
}
