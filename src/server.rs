//! Listeners and connections: accepts (plain or TLS), enforces connection limits and timeouts, reads each request
//! head, asks the `Handler` what to do, writes the reply or hands the request to the forwarder, decides keep-alive,
//! and writes one access log line per request.
//!
//! Everything runs on one `LocalExecutor`: one task per connection, requests on a connection strictly in order (so
//! pipelined requests are answered in order). A bad request closes only its own connection.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::rustls::ServerConfig;
use futures_rustls::TlsAcceptor;
use smol::io::{AsyncRead, AsyncWrite};
use smol::net::{TcpListener, TcpStream};
use smol::{LocalExecutor, Timer};

use crate::forward::{forward, ForwardPlan};
use crate::http::body::BodyReader;
use crate::http::conn::{Conn, HeadLimits};
use crate::http::{date, encode, framing, Headers, Request, RequestHead, ResponseHead, Version};
use crate::pool::Pool;
use crate::reply::Reply;

/// What the request path decides for one request.
pub trait Handler {
    fn handle<'a>(&'a self, req: &'a Request) -> Pin<Box<dyn Future<Output = Decision> + 'a>>;
    /// A page for errors the wire layer finds itself (400, 408, 431, 502, 504...).
    fn error_page(&self, req: Option<&Request>, status: u16, detail: &str) -> Reply;
}

/// The handler's answer, and who made the request (for the access log).
#[derive(Debug)]
pub struct Decision {
    pub action: Action,
    pub user: Option<String>,
}

#[derive(Debug)]
#[allow(dead_code)] // constructed by handle.rs
pub enum Action {
    Reply(Reply),
    Forward(ForwardPlan),
}

/// Bounds that keep one connection (or many) from taking more than its share.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub head: HeadLimits,
    /// From the first byte of a request (or the accept) to the end of its head.
    pub head_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request; also bounds each body read or write.
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Connections served at once; more get a 503 and are closed.
    pub max_connections: usize,
    /// Unread request body bytes read and dropped to keep a connection alive after a response; more closes it.
    pub drain_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head: HeadLimits::default(),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
            drain_max: 64 * 1024,
        }
    }
}

/// How the server runs.
#[derive(Debug)]
pub struct ServerOptions {
    pub limits: Limits,
    /// HEADERS: added to every response that does not already carry them.
    pub security_headers: Vec<(String, String)>,
    /// Upstream connections, shared by every connection (and listener) using these options.
    pub pool: Rc<Pool>,
}

/// Excess connections being answered 503 at once; beyond this they are dropped without a word.
const MAX_OVERFLOW: usize = 64;

/// How long connections busy at shutdown get to finish before the process ends anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Accepts connections forever, one task per connection on `ex`.
#[cfg(test)]
pub async fn serve<'a, H: Handler + 'a>(
    ex: &LocalExecutor<'a>,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    handler: Rc<H>,
    opts: Rc<ServerOptions>,
) {
    serve_until(ex, listener, tls, handler, opts, std::future::pending()).await
}

/// Accepts connections, one task per connection on `ex`, until `shutdown` completes; then stops accepting and
/// gives the connections still open up to `DRAIN_LIMIT` to finish (idle keep-alive ones count too).
pub async fn serve_until<'a, H: Handler + 'a>(
    ex: &LocalExecutor<'a>,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    handler: Rc<H>,
    opts: Rc<ServerOptions>,
    shutdown: impl Future<Output = ()>,
) {
    let active = Rc::new(Cell::new(0usize));
    smol::future::or(
        accept_loop(ex, listener, tls, handler, opts, &active),
        shutdown,
    )
    .await;
    let deadline = Instant::now() + DRAIN_LIMIT;
    while active.get() > 0 && Instant::now() < deadline {
        Timer::after(Duration::from_millis(50)).await;
    }
    if active.get() > 0 {
        log::info!(
            "{} connection(s) still open after {}s: closing them",
            active.get(),
            DRAIN_LIMIT.as_secs()
        );
    }
}

async fn accept_loop<'a, H: Handler + 'a>(
    ex: &LocalExecutor<'a>,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    handler: Rc<H>,
    opts: Rc<ServerOptions>,
    active: &Rc<Cell<usize>>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let overflow = Rc::new(Cell::new(0usize));
    ex.spawn(sweep_pool(Rc::downgrade(&opts.pool))).detach();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, usually: wait instead of spinning.
                log::warn!("accepting a connection: {e}");
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if active.get() >= opts.limits.max_connections {
            if overflow.get() < MAX_OVERFLOW {
                let guard = Counted::new(&overflow);
                let (acceptor, handler, opts) = (acceptor.clone(), handler.clone(), opts.clone());
                ex.spawn(async move {
                    let _guard = guard;
                    refuse_busy(stream, peer, acceptor, &*handler, &opts).await;
                })
                .detach();
            }
            continue;
        }
        let guard = Counted::new(active);
        let (handler, opts) = (handler.clone(), opts.clone());
        // Two kinds of task, so a plain connection's task is sized for the plain state machine alone: one future
        // for both would make every plain connection carry room for the TLS states (a rustls connection inline),
        // idle or not (`make memory-profile`, conns-plain).
        match acceptor.clone() {
            None => ex.spawn(async move {
                let _guard = guard;
                connection(Conn::new(stream), peer, &*handler, &opts).await
            }),
            Some(acceptor) => ex.spawn(async move {
                let _guard = guard;
                match timeout(opts.limits.handshake_timeout, acceptor.accept(stream)).await {
                    Some(Ok(tls)) => connection(Conn::new(tls), peer, &*handler, &opts).await,
                    Some(Err(e)) => log::debug!("TLS handshake with {peer}: {e}"),
                    None => log::debug!("TLS handshake with {peer} timed out"),
                }
            }),
        }
        .detach();
    }
}

/// Drops expired idle upstream connections now and then, so they do not hold sockets while no request comes.
async fn sweep_pool(pool: Weak<Pool>) {
    loop {
        let every = match pool.upgrade() {
            Some(p) => p.limits().idle_time.max(Duration::from_secs(1)),
            None => return,
        };
        Timer::after(every).await;
        match pool.upgrade() {
            Some(p) => p.sweep(),
            None => return,
        }
    }
}

/// Increments a counter for as long as it lives.
struct Counted(Rc<Cell<usize>>);

impl Counted {
    fn new(counter: &Rc<Cell<usize>>) -> Self {
        counter.set(counter.get() + 1);
        Counted(counter.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

async fn refuse_busy<H: Handler + ?Sized>(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    handler: &H,
    opts: &ServerOptions,
) {
    log::warn!(
        "refusing a connection from {peer}: {} connections already open",
        opts.limits.max_connections
    );
    let page = handler.error_page(None, 503, "the server is busy; try again in a moment");
    let respond = Respond::new(
        &opts.security_headers,
        false,
        false,
        Version::Http11,
        Duration::from_secs(2),
    );
    match acceptor {
        None => {
            let _ = write_reply(&mut Conn::new(stream), page, &respond).await;
        }
        Some(acceptor) => {
            if let Some(Ok(tls)) = timeout(Duration::from_secs(2), acceptor.accept(stream)).await {
                let mut conn = Conn::new(tls);
                let _ = write_reply(&mut conn, page, &respond).await;
                let _ = timeout(Duration::from_secs(1), conn.close()).await;
            }
        }
    }
}

/// Serves the requests of one connection, in order, until it closes, times out, or must not be reused.
async fn connection<S, H>(mut conn: Conn<S>, peer: SocketAddr, handler: &H, opts: &ServerOptions)
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler + ?Sized,
{
    let limits = &opts.limits;
    let mut first = true;
    loop {
        // Idle: no buffer held while waiting for the next request's first byte.
        conn.release_if_empty();
        if conn.buffered().is_empty() {
            let wait = if first {
                limits.head_timeout
            } else {
                limits.idle_timeout
            };
            match timeout(wait, conn.fill(limits.head.max_bytes + 4)).await {
                Some(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
        first = false;
        let started = Instant::now();
        let head = match timeout(limits.head_timeout, conn.read_request_head(&limits.head)).await {
            Some(Ok(Some(head))) => head,
            Some(Ok(None)) => return,
            Some(Err(e)) => {
                if let Some(status) = e.status() {
                    log::debug!("bad request from {peer}: {e}");
                    reject(
                        &mut conn,
                        handler,
                        opts,
                        peer,
                        status,
                        &e.to_string(),
                        started,
                    )
                    .await;
                } else {
                    log::debug!("connection from {peer}: {e}");
                }
                return;
            }
            None => {
                let detail = "the request head did not arrive in time";
                reject(&mut conn, handler, opts, peer, 408, detail, started).await;
                return;
            }
        };
        let body_kind = framing::request_body(&head);
        let req = Request { head, peer };
        let body_kind = match body_kind {
            Ok(kind) => kind,
            Err(e) => {
                log::debug!("bad request framing from {peer}: {e}");
                let page = handler.error_page(Some(&req), e.status(), &e.to_string());
                let respond = Respond::for_request(&req.head, false, opts);
                let outcome = write_reply(&mut conn, page, &respond).await;
                access_log(&req, &outcome, None, started);
                return;
            }
        };
        let mut body = BodyReader::new(body_kind);
        let decision = handler.handle(&req).await;
        let respond = Respond::for_request(&req.head, client_keep_alive(&req.head), opts);
        let outcome = match decision.action {
            Action::Reply(reply) => {
                // A client waiting for 100 Continue that never comes may still send its body later; do not guess.
                let keep_alive = respond.keep_alive && !awaits_continue(&req.head, &body);
                write_reply(
                    &mut conn,
                    reply,
                    &Respond {
                        keep_alive,
                        ..respond
                    },
                )
                .await
            }
            Action::Forward(plan) => {
                // Boxed: the forwarder's state is large and is only needed while forwarding, not while idle.
                Box::pin(forward(
                    &opts.pool, plan, &req, &mut conn, &mut body, handler, &respond,
                ))
                .await
            }
        };
        let mut keep_alive = outcome.keep_alive;
        if keep_alive && !body.is_done() {
            let drained =
                timeout(limits.head_timeout, body.drain(&mut conn, limits.drain_max)).await;
            keep_alive = matches!(drained, Some(Ok(true)));
        }
        access_log(&req, &outcome, decision.user.as_deref(), started);
        if !keep_alive {
            let _ = timeout(Duration::from_secs(1), conn.close()).await;
            if !body.is_done() {
                Box::pin(linger(&mut conn)).await;
            }
            return;
        }
    }
}

/// Bytes of an unwanted request body read and dropped after the response, before the connection is closed.
const LINGER_BYTES: u64 = 4 << 20;
/// How long that may take.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// A client still sending a body when postern answered and closed (an early 413) would get a reset that can destroy
/// the answer before it is read; reading what it still sends for a moment lets the answer arrive (as nginx's
/// lingering close does).
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<S>) {
    use smol::io::AsyncReadExt;
    let mut sink = vec![0u8; 4096]; // on the heap: this runs rarely, and the connection task stays small
    let mut dropped = conn.buffered().len() as u64;
    conn.consume(conn.buffered().len());
    let drain = async {
        while dropped < LINGER_BYTES {
            match conn.get_mut().read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => dropped += n as u64,
            }
        }
    };
    let _ = timeout(LINGER_TIME, drain).await;
}

/// Answers a request whose head could not be read, and logs it.
async fn reject<S, H>(
    conn: &mut Conn<S>,
    handler: &H,
    opts: &ServerOptions,
    peer: SocketAddr,
    status: u16,
    detail: &str,
    started: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler + ?Sized,
{
    let page = handler.error_page(None, status, detail);
    let respond = Respond::new(
        &opts.security_headers,
        false,
        false,
        Version::Http11,
        opts.limits.head_timeout,
    );
    let outcome = write_reply(conn, page, &respond).await;
    let _ = timeout(Duration::from_secs(1), conn.close()).await;
    log::info!(
        target: "access",
        "{peer} - - - {} {} {}ms -",
        outcome.status,
        outcome.bytes,
        started.elapsed().as_millis()
    );
}

/// The request's client wants the connection kept open after the response.
pub fn client_keep_alive(head: &RequestHead) -> bool {
    match head.version {
        Version::Http11 => !head.headers.has_token("connection", "close"),
        Version::Http10 => head.headers.has_token("connection", "keep-alive"),
    }
}

/// The client asked for `100 Continue` and has not been sent one (no body byte read): it may send its body later or
/// never, so the connection cannot be reused after a final response.
pub fn awaits_continue(head: &RequestHead, body: &BodyReader) -> bool {
    head.version == Version::Http11
        && head.headers.has_token("expect", "100-continue")
        && !body.is_done()
        && body.bytes_read() == 0
}

/// How a response was written, for keep-alive and the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: u16,
    /// Body bytes written.
    pub bytes: u64,
    /// The connection can carry another request.
    pub keep_alive: bool,
}

/// What every response on this request shares: headers added if absent, keep-alive, HEAD, the client's version.
#[derive(Clone, Copy, Debug)]
pub struct Respond<'a> {
    pub security_headers: &'a [(String, String)],
    pub keep_alive: bool,
    /// A HEAD request: headers only.
    pub head_only: bool,
    pub version: Version,
    /// Bounds each write to the client.
    pub io_timeout: Duration,
}

impl<'a> Respond<'a> {
    pub fn new(
        security_headers: &'a [(String, String)],
        keep_alive: bool,
        head_only: bool,
        version: Version,
        io_timeout: Duration,
    ) -> Self {
        Respond {
            security_headers,
            keep_alive,
            head_only,
            version,
            io_timeout,
        }
    }

    fn for_request(head: &RequestHead, keep_alive: bool, opts: &'a ServerOptions) -> Self {
        let head_only = head.method.eq_ignore_ascii_case("HEAD");
        Respond::new(
            &opts.security_headers,
            keep_alive,
            head_only,
            head.version,
            opts.limits.idle_timeout,
        )
    }

    /// Adds Date, the security headers (where absent) and the connection header.
    pub fn finish_headers(&self, headers: &mut Headers, keep_alive: bool) {
        if !headers.contains("date") {
            headers.append("date", date::now());
        }
        for (name, value) in self.security_headers {
            if !headers.contains(name) {
                headers.append(name, value.clone());
            }
        }
        headers.remove("connection");
        if !keep_alive {
            headers.append("connection", "close");
        } else if self.version == Version::Http10 {
            headers.append("connection", "keep-alive");
        }
    }
}

/// Writes a reply postern made itself: Content-Length always, no body for HEAD, 1xx, 204 and 304.
pub async fn write_reply<S>(conn: &mut Conn<S>, reply: Reply, respond: &Respond<'_>) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Reply {
        status,
        mut headers,
        body,
    } = reply;
    headers.remove("transfer-encoding");
    headers.remove("content-length");
    let no_body = status < 200 || status == 204 || status == 304;
    if status >= 200 && status != 204 {
        headers.append("content-length", body.len().to_string());
    }
    respond.finish_headers(&mut headers, respond.keep_alive);
    let head = ResponseHead {
        version: Version::Http11,
        status,
        reason: String::new(),
        headers,
    };
    let mut bytes = Vec::with_capacity(256 + body.len());
    encode::response_head(&head, &mut bytes);
    let send_body = !(respond.head_only || no_body);
    if send_body {
        bytes.extend_from_slice(&body);
    }
    let write = async {
        conn.write_all(&bytes).await?;
        conn.flush().await
    };
    match timeout(respond.io_timeout, write).await {
        Some(Ok(())) => Outcome {
            status,
            bytes: if send_body { body.len() as u64 } else { 0 },
            keep_alive: respond.keep_alive,
        },
        _ => Outcome {
            status,
            bytes: 0,
            keep_alive: false,
        },
    }
}

/// One line per request. The path is logged without its query: queries carry codes and tokens.
fn access_log(req: &Request, outcome: &Outcome, user: Option<&str>, started: Instant) {
    log::info!(target: "access", "{}", access_line(req, outcome, user, started.elapsed()));
}

/// `peer host method path status bytes duration user`; empty host or user as `-`.
fn access_line(req: &Request, outcome: &Outcome, user: Option<&str>, elapsed: Duration) -> String {
    let host = req.head.headers.get("host").unwrap_or("-");
    let path = req.head.target.split(['?', '#']).next().unwrap_or("");
    format!(
        "{} {} {} {} {} {} {}ms {}",
        req.peer,
        Escaped(host),
        req.head.method,
        Escaped(path),
        outcome.status,
        outcome.bytes,
        elapsed.as_millis(),
        Escaped(user.unwrap_or("-"))
    )
}

/// Log-safe text: no spaces or control characters that could forge a log line.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c == ' ' {
                f.write_str("\\x20")?;
            } else if c.is_control() || c == '"' || c == '\\' {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Runs `fut` for at most `limit`. (A plain fn, not `async fn`: that would store `fut` twice in every task.)
pub fn timeout<T>(
    limit: Duration,
    fut: impl Future<Output = T>,
) -> impl Future<Output = Option<T>> {
    smol::future::or(async move { Some(fut.await) }, async move {
        Timer::after(limit).await;
        None
    })
}

#[cfg(test)]
mod tests;
