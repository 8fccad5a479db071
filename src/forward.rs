//! The streaming forwarder: sends one request to its upstream and streams the response back.
//!
//! It owns the upstream leg: the hop-by-hop rewrite of both heads, body framing on each side (bodies stream through
//! one bounded buffer, never held whole), retrying a stale pooled connection, and the mapping of upstream failures
//! to 502/504 pages. Connections come from pool.rs. handle.rs has already rewritten the end-to-end headers (identity, cookies,
//! X-Forwarded-*, Host) in the `ForwardPlan`.
//!
//! Timeouts (see README, "Timeouts"): connecting and waiting for the response head are bounded by the route's
//! `timeout`; after that only idleness counts: a body or tunnel that moves no byte for the route's `idle_timeout`
//! is cut, one that keeps moving is never cut for its total length.
//!
//! `Expect: 100-continue` goes upstream: the upstream's `100` (or its silence for a second) lets the client's body
//! through, and its early final answer (a 413 or 401 before the body) is the client's answer. A WebSocket
//! handshake on a route that allows them goes upstream with its upgrade headers; a `101` turns the two connections
//! into a tunnel (tunnel.rs).

use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::io::{AsyncRead, AsyncWrite};

use crate::http::body::{BodyError, BodyReader};
use crate::http::conn::{Conn, HeadError, HeadLimits};
use crate::http::encode::{self, CHUNK_PREFIX, CHUNK_SUFFIX, LAST_CHUNK};
use crate::http::framing::{self, BodyKind};
use crate::http::{Headers, Request, RequestHead, ResponseHead, Version};
use crate::pool::{pool_key, Pool, UpstreamConn};
use crate::route::Upstream;
use crate::server::{awaits_continue, timeout, write_reply, Handler, Outcome, Respond};
use crate::tunnel;

/// Size of the buffer a body streams through (plus room for chunk framing).
const COPY_BUF: usize = 16 * 1024;
/// A sized response body up to this long that arrived with its head is written with the head (one send).
const INLINE_BODY: usize = 8 * 1024;
/// Pieces a body pump moves before it yields: with both sides always ready, one transfer must not keep the (single)
/// executor thread from every other connection.
const PIECES_PER_YIELD: u32 = 64;

/// What to send upstream, decided by handle.rs.
#[derive(Debug)]
pub struct ForwardPlan {
    pub upstream: Rc<Upstream>,
    pub method: String,
    /// Path and query to send (origin-form).
    pub target: String,
    /// End-to-end headers, already rewritten; the forwarder removes hop-by-hop and framing headers itself.
    pub headers: Headers,
    /// Connecting, and from the end of the request until the upstream's response head: longer gives a 504.
    pub timeout: Duration,
    /// Longest pause between two bytes of a body (either way) or of a tunnel; None: no limit.
    pub idle_timeout: Option<Duration>,
    /// A WebSocket handshake on a route that allows them: the upgrade headers go upstream and a `101` opens a
    /// tunnel.
    pub websocket: bool,
    /// When the session this request was authorized with ends (Unix seconds): a tunnel is closed then.
    pub session_expires: Option<u64>,
    /// postern's own cookie name (COOKIE_NAME): an app may not set it, nor any `NAME_*` cookie (see
    /// `strip_own_set_cookies`).
    pub own_cookie: Rc<str>,
}

/// Removes the app's `Set-Cookie`s for postern's own cookies: an app (a public one on a sibling host, say) could
/// otherwise toss a session or binding cookie of its choosing into the browser, with a parent `Domain`.
fn strip_own_set_cookies(headers: &mut Headers, own: &str) {
    headers.retain(|name, value| {
        if name != "set-cookie" {
            return true;
        }
        let cookie = value.split(';').next().unwrap_or_default();
        let cookie_name = cookie.split('=').next().unwrap_or_default().trim();
        let bare = cookie_name
            .strip_prefix("__Host-")
            .or_else(|| cookie_name.strip_prefix("__Secure-"))
            .unwrap_or(cookie_name);
        let ours = bare.eq_ignore_ascii_case(own)
            || bare
                .get(..own.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(own) && bare[own.len()..].starts_with('_'));
        if ours {
            log::warn!("the app tried to set postern's cookie {cookie_name}: dropped");
        }
        !ours
    });
}

/// How long the upstream may stay silent after a request with `Expect: 100-continue` before the body is sent
/// anyway (RFC 9110 §10.1.1; curl waits as long).
const CONTINUE_WAIT: Duration = Duration::from_secs(1);
/// After the upstream stopped taking a request body, how long to look for the answer it may have sent first.
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Is this request a WebSocket opening handshake (RFC 6455 §4.1)? `Connection` is a token list
/// (`keep-alive, Upgrade`), and both headers compare case-insensitively.
pub fn wants_websocket(head: &RequestHead) -> bool {
    head.version == Version::Http11
        && head.method == "GET"
        && head.headers.has_token("connection", "upgrade")
        && head.headers.has_token("upgrade", "websocket")
}

/// Why a request could not be forwarded.
#[derive(Debug)]
pub enum ForwardError {
    Connect(io::Error),
    ConnectTimeout,
    NoTlsClient,
    Tls(String),
    /// Writing the request upstream failed.
    Send(io::Error),
    /// The upstream sent no response head within the route's timeout.
    ResponseTimeout(Duration),
    /// The upstream closed or reset the connection before a response head.
    Closed(String),
    /// The upstream's response head or framing is not valid HTTP/1.
    BadResponse(String),
    /// The client's own request body was broken (bad chunking, early close).
    ClientBody(BodyError),
}

impl ForwardError {
    /// The status of the page the client gets.
    pub fn status(&self) -> u16 {
        match self {
            ForwardError::ConnectTimeout | ForwardError::ResponseTimeout(_) => 504,
            ForwardError::ClientBody(_) => 400,
            _ => 502,
        }
    }

    /// A failure on a reused connection that a fresh connection may not have.
    fn stale_connection(&self) -> bool {
        matches!(self, ForwardError::Send(_) | ForwardError::Closed(_))
    }
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardError::Connect(e) => write!(f, "could not connect to the upstream: {e}"),
            ForwardError::ConnectTimeout => f.write_str("connecting to the upstream timed out"),
            ForwardError::NoTlsClient => {
                f.write_str("https upstreams need a TLS client configuration, and none is set")
            }
            ForwardError::Tls(e) => write!(f, "TLS with the upstream failed: {e}"),
            ForwardError::Send(e) => write!(f, "sending the request to the upstream failed: {e}"),
            ForwardError::ResponseTimeout(d) => {
                write!(
                    f,
                    "the upstream did not answer within {} s",
                    d.as_secs_f32()
                )
            }
            ForwardError::Closed(e) => write!(
                f,
                "the upstream closed the connection without answering: {e}"
            ),
            ForwardError::BadResponse(e) => {
                write!(f, "the upstream's response is not valid HTTP: {e}")
            }
            ForwardError::ClientBody(e) => write!(f, "the request body could not be read: {e}"),
        }
    }
}

impl std::error::Error for ForwardError {}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the framing and expectation
/// headers the forwarder sets itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut Headers) {
    let named: Vec<String> = headers
        .get_all("connection")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    headers.retain(|name, _| !HOP_BY_HOP.contains(&name) && !named.iter().any(|n| n == name));
}

fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
    )
}

/// The request head sent upstream: always HTTP/1.1, framing set from the client's body. `expect`: the client waits
/// for `100 Continue` before its body, so the upstream is asked for it.
fn upstream_head(plan: &ForwardPlan, body: BodyKind, expect: bool) -> RequestHead {
    let mut headers = plan.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove("expect");
    if expect {
        headers.append("expect", "100-continue");
    }
    if plan.websocket {
        headers.append("connection", "upgrade");
        headers.append("upgrade", "websocket");
    }
    if !headers.contains("host") {
        headers.append("host", plan.upstream.authority.clone());
    }
    match body {
        BodyKind::Length(n) => headers.append("content-length", n.to_string()),
        BodyKind::Chunked | BodyKind::UntilClose => headers.append("transfer-encoding", "chunked"),
        BodyKind::None if matches!(plan.method.as_str(), "POST" | "PUT" | "PATCH") => {
            headers.append("content-length", "0")
        }
        BodyKind::None => {}
    }
    RequestHead {
        method: plan.method.clone(),
        target: plan.target.clone(),
        version: Version::Http11,
        headers,
    }
}

/// Whether the upstream lets this connection carry another request, and for how long it says it will wait.
fn upstream_keep_alive(head: &ResponseHead) -> (bool, Option<Duration>) {
    let keep = match head.version {
        Version::Http11 => !head.headers.has_token("connection", "close"),
        Version::Http10 => head.headers.has_token("connection", "keep-alive"),
    };
    let hint = head
        .headers
        .get("keep-alive")
        .and_then(|v| v.split(',').find_map(|p| p.trim().strip_prefix("timeout=")))
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    (keep, hint)
}

/// Forwards `req` as `plan` says and writes the response (or an error page) to `client`. The request body is read
/// from `client` through `body`; on return it may be partly unread (the server drains or closes).
pub async fn forward<S, H>(
    pool: &Pool,
    plan: ForwardPlan,
    req: &Request,
    client: &mut Conn<S>,
    body: &mut BodyReader,
    handler: &H,
    respond: &Respond<'_>,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler + ?Sized,
{
    // The copy buffer is made only for a body that streams: a GET whose small answer comes with its head (most
    // requests) needs none, and 16 KiB made and freed per request costs the allocator page faults.
    let copy_buf = || vec![0u8; COPY_BUF + CHUNK_PREFIX + CHUNK_SUFFIX];
    let mut buf = if body.is_done() {
        Vec::new()
    } else {
        copy_buf()
    };
    let (mut upstream, head) =
        match exchange(pool, &plan, req, client, body, &mut buf, respond).await {
            Ok(x) => x,
            Err(e) => {
                log::warn!(
                    "forwarding {} {} to {}: {e}",
                    plan.method,
                    path_only(&plan.target),
                    plan.upstream.url
                );
                let page = handler.error_page(Some(req), e.status(), &e.to_string());
                let keep_alive = respond.keep_alive
                    && !matches!(e, ForwardError::ClientBody(_))
                    && !awaits_continue(&req.head, body);
                return write_reply(
                    client,
                    page,
                    &Respond {
                        keep_alive,
                        ..*respond
                    },
                )
                .await;
            }
        };

    if head.status == 101 {
        drop(buf);
        return open_tunnel(&plan, req, client, upstream, head, respond).await;
    }

    let framing = match framing::response_body(&plan.method, &head) {
        Ok(f) => f,
        Err(e) => {
            let e = ForwardError::BadResponse(e.to_string());
            log::warn!(
                "forwarding {} {} to {}: {e}",
                plan.method,
                path_only(&plan.target),
                plan.upstream.url
            );
            let page = handler.error_page(Some(req), e.status(), &e.to_string());
            return write_reply(client, page, respond).await;
        }
    };
    let (upstream_keeps, hint) = upstream_keep_alive(&head);

    // The client's head: hop-by-hop out, our framing in.
    let status = head.status;
    let mut out = ResponseHead {
        version: Version::Http11,
        status,
        reason: head.reason,
        headers: head.headers,
    };
    let content_length = out.headers.get("content-length").map(str::to_string);
    strip_hop_by_hop(&mut out.headers);
    strip_own_set_cookies(&mut out.headers, &plan.own_cookie);
    // An answer that came before the whole request body (a 413, or a final answer to Expect) ends the connection:
    // the rest of the body is not worth reading.
    let mut keep_alive = respond.keep_alive && body.is_done();
    let chunked_out = match framing {
        BodyKind::None => {
            // HEAD and 304 keep the length the body would have; 1xx and 204 must not carry one.
            if let (Some(cl), false) = (content_length, status == 204 || status < 200) {
                out.headers.append("content-length", cl);
            }
            false
        }
        BodyKind::Length(n) => {
            out.headers.append("content-length", n.to_string());
            false
        }
        BodyKind::Chunked | BodyKind::UntilClose if respond.version == Version::Http11 => {
            out.headers.append("transfer-encoding", "chunked");
            true
        }
        BodyKind::Chunked | BodyKind::UntilClose => {
            keep_alive = false; // an HTTP/1.0 client reads to the close
            false
        }
    };
    respond.finish_headers(&mut out.headers, keep_alive);
    let mut head_bytes = Vec::with_capacity(512);
    encode::response_head(&out, &mut head_bytes);
    // A small sized body that came in with the head goes out in the same write: one send to the client, not two.
    let mut reader = BodyReader::new(framing);
    let mut inlined = 0u64;
    if let BodyKind::Length(n) = framing {
        if let Some(body_now) = usize::try_from(n)
            .ok()
            .filter(|&n| n <= INLINE_BODY)
            .and_then(|n| upstream.buffered().get(..n))
        {
            head_bytes.extend_from_slice(body_now);
            upstream.consume(body_now.len());
            reader = BodyReader::new(BodyKind::Length(0));
            inlined = n;
        }
    }
    if let Err(e) = timeout(respond.io_timeout, client.write_all(&head_bytes))
        .await
        .unwrap_or_else(timed_out)
    {
        log::debug!("writing a response head to {}: {e}", req.peer);
        return Outcome {
            status,
            bytes: 0,
            keep_alive: false,
        };
    }
    drop(head_bytes);

    if !reader.is_done() && buf.is_empty() {
        buf = copy_buf();
    }
    let result = pump(
        &mut reader,
        &mut upstream,
        client,
        chunked_out,
        &mut buf,
        plan.idle_timeout,
    )
    .await;
    match result {
        Ok(bytes) => {
            let bytes = bytes + inlined;
            if let Err(e) = client.flush().await {
                log::debug!("flushing a response to {}: {e}", req.peer);
                keep_alive = false;
            }
            if upstream_keeps
                && reader.is_done()
                && framing != BodyKind::UntilClose
                && body.is_done()
            {
                pool.put(pool_key(&plan.upstream), upstream, hint);
            }
            Outcome {
                status,
                bytes,
                keep_alive,
            }
        }
        Err(PumpError::Read(e)) => {
            log::warn!(
                "upstream {} broke off a response body: {e}",
                plan.upstream.url
            );
            Outcome {
                status,
                bytes: reader.bytes_read(),
                keep_alive: false,
            }
        }
        Err(PumpError::Write(e)) => {
            log::debug!("client {} stopped reading a response: {e}", req.peer);
            Outcome {
                status,
                bytes: reader.bytes_read(),
                keep_alive: false,
            }
        }
    }
}

/// The upstream switched protocols: pass its `101` on, then relay bytes both ways until the tunnel ends. Bytes
/// either side sent before the switch was complete (the client's first frames, the upstream's first messages) are
/// passed on first. The client connection is closed afterwards.
async fn open_tunnel<S>(
    plan: &ForwardPlan,
    req: &Request,
    client: &mut Conn<S>,
    mut upstream: UpstreamConn,
    head: ResponseHead,
    respond: &Respond<'_>,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let closed = |bytes| Outcome {
        status: 101,
        bytes,
        keep_alive: false,
    };
    let mut out = ResponseHead {
        version: Version::Http11,
        status: 101,
        reason: head.reason,
        headers: head.headers,
    };
    strip_hop_by_hop(&mut out.headers);
    strip_own_set_cookies(&mut out.headers, &plan.own_cookie);
    out.headers.append("upgrade", "websocket");
    out.headers.append("connection", "Upgrade");
    let mut bytes = Vec::with_capacity(512 + upstream.buffered().len());
    encode::response_head(&out, &mut bytes);
    let early_down = upstream.buffered().len();
    bytes.extend_from_slice(upstream.buffered());
    upstream.consume(early_down);
    let early = client.buffered().to_vec();
    client.consume(early.len());
    let early_up = early.len() as u64;
    let handover = async {
        client.write_all(&bytes).await?;
        client.flush().await?;
        if !early.is_empty() {
            upstream.write_all(&early).await?;
            upstream.flush().await?;
        }
        Ok::<(), io::Error>(())
    };
    if let Err(e) = timeout(respond.io_timeout, handover)
        .await
        .unwrap_or_else(timed_out)
    {
        log::debug!("opening a tunnel for {}: {e}", req.peer);
        return closed(0);
    }
    drop((bytes, early));
    client.release_if_empty();
    upstream.release_if_empty();
    let until = plan.session_expires.map(|secs| {
        Instant::now() + Duration::from_secs(secs.saturating_sub(crate::clock::now_secs()))
    });
    let report = tunnel::relay(
        client.get_mut(),
        upstream.get_mut(),
        plan.idle_timeout,
        until,
    )
    .await;
    log::debug!(
        "tunnel {} {} <-> {} ended: {} ({} bytes up, {} down)",
        req.peer,
        path_only(&plan.target),
        plan.upstream.url,
        report.end,
        report.up + early_up,
        report.down + early_down as u64
    );
    closed(report.down + early_down as u64)
}

fn timed_out<T>() -> io::Result<T> {
    Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
}

/// Runs `fut` within `limit`, or without one when `limit` is None.
async fn within<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    match limit {
        Some(limit) => timeout(limit, fut).await,
        None => Some(fut.await),
    }
}

fn path_only(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or("")
}

/// What an exchange has done with the client so far, across a retry.
#[derive(Default)]
struct ClientState {
    /// The client asked for `100 Continue` before sending its body.
    expects_continue: bool,
    /// ... and postern has sent it.
    continued: bool,
}

/// Sends the request (retrying once on a fresh connection when a reused one turns out stale and the request can be
/// replayed) and returns the connection with the final response head.
async fn exchange<S>(
    pool: &Pool,
    plan: &ForwardPlan,
    req: &Request,
    client: &mut Conn<S>,
    body: &mut BodyReader,
    buf: &mut [u8],
    respond: &Respond<'_>,
) -> Result<(UpstreamConn, ResponseHead), ForwardError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let kind = body.kind();
    let mut state = ClientState {
        expects_continue: req.head.version == Version::Http11
            && req.head.headers.has_token("expect", "100-continue")
            && !body.is_done(),
        continued: false,
    };
    let mut head_bytes = Vec::with_capacity(1024);
    encode::request_head(
        &upstream_head(plan, kind, state.expects_continue),
        &mut head_bytes,
    );
    let key = pool_key(&plan.upstream);
    let mut fresh_only = false;
    loop {
        let pooled = if fresh_only {
            None
        } else {
            pool.take(&key).await
        };
        let (mut conn, reused) = match pooled {
            Some(conn) => (conn, true),
            None => (pool.connect(&plan.upstream, plan.timeout).await?, false),
        };
        let limits = &pool.limits().response_head;
        let sent = send(
            &mut conn,
            &head_bytes,
            limits,
            plan,
            client,
            body,
            buf,
            respond,
            &mut state,
        )
        .await;
        match sent {
            Ok(head) => return Ok((conn, head)),
            // Replayed only when nothing of it can have been acted on twice: an idempotent method, and no body byte
            // taken from the client yet (none, or still held back by Expect).
            Err(e)
                if reused
                    && e.stale_connection()
                    && idempotent(&plan.method)
                    && body.bytes_read() == 0 =>
            {
                log::debug!(
                    "reused connection to {} was stale ({e}); retrying on a fresh one",
                    plan.upstream.url
                );
                fresh_only = true;
            }
            Err(e) => return Err(e),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn send<S>(
    conn: &mut UpstreamConn,
    head_bytes: &[u8],
    limits: &HeadLimits,
    plan: &ForwardPlan,
    client: &mut Conn<S>,
    body: &mut BodyReader,
    buf: &mut [u8],
    respond: &Respond<'_>,
    state: &mut ClientState,
) -> Result<ResponseHead, ForwardError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    conn.write_all(head_bytes)
        .await
        .map_err(ForwardError::Send)?;
    conn.flush().await.map_err(ForwardError::Send)?;
    if !body.is_done() {
        if state.expects_continue && !state.continued {
            // The upstream's 100 lets the body through; its final answer instead (413, 401...) is the client's.
            match timeout(CONTINUE_WAIT, read_head(conn, limits)).await {
                None => {} // a silent upstream gets the body anyway
                Some(Ok(head)) if head.status < 200 => {}
                Some(Ok(head)) => return Ok(head),
                Some(Err(e)) => return Err(e),
            }
            let sent = timeout(
                respond.io_timeout,
                client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n"),
            )
            .await;
            if !matches!(sent, Some(Ok(()))) {
                return Err(ForwardError::ClientBody(BodyError::UnexpectedEof));
            }
            let _ = client.flush().await;
            state.continued = true;
        }
        let chunked = matches!(body.kind(), BodyKind::Chunked);
        match pump(body, client, conn, chunked, buf, plan.idle_timeout).await {
            Ok(_) => {}
            Err(PumpError::Read(e)) => return Err(ForwardError::ClientBody(e)),
            Err(PumpError::Write(e)) => {
                // An upstream that stops taking the body has often answered first (413 Content Too Large): that
                // answer, not a 502, is what the client should see.
                if let Some(Ok(head)) =
                    timeout(EARLY_ANSWER_WAIT, final_head(conn, limits, plan.websocket)).await
                {
                    return Ok(head);
                }
                return Err(ForwardError::Send(e));
            }
        }
    }
    conn.flush().await.map_err(ForwardError::Send)?;
    timeout(plan.timeout, final_head(conn, limits, plan.websocket))
        .await
        .ok_or(ForwardError::ResponseTimeout(plan.timeout))?
}

/// The next response head, interim or final.
async fn read_head(
    conn: &mut UpstreamConn,
    limits: &HeadLimits,
) -> Result<ResponseHead, ForwardError> {
    conn.read_response_head(limits).await.map_err(|e| match e {
        HeadError::Eof => ForwardError::Closed("end of stream".into()),
        HeadError::Io(e) => ForwardError::Closed(e.to_string()),
        other => ForwardError::BadResponse(other.to_string()),
    })
}

/// The final response head. Interim responses (100, 102, 103) are dropped: the client got its own 100 when it
/// asked. A 101 is final only for a WebSocket handshake.
async fn final_head(
    conn: &mut UpstreamConn,
    limits: &HeadLimits,
    websocket: bool,
) -> Result<ResponseHead, ForwardError> {
    loop {
        let head = read_head(conn, limits).await?;
        match head.status {
            101 if websocket => {
                if head.headers.has_token("upgrade", "websocket") {
                    return Ok(head);
                }
                return Err(ForwardError::BadResponse(
                    "101 Switching Protocols to something other than websocket".into(),
                ));
            }
            101 => {
                return Err(ForwardError::BadResponse(
                    "101 Switching Protocols to a request without Upgrade".into(),
                ))
            }
            100..=199 => continue,
            _ => return Ok(head),
        }
    }
}

/// Trailer fields passed on: never framing, hop-by-hop, routing, credential or identity fields (RFC 9110 §6.5.1
/// lets a recipient drop any; these could mean something different once merged into the head).
fn trailer_passes(name: &str) -> bool {
    !HOP_BY_HOP.contains(&name)
        && !matches!(
            name,
            "host"
                | "expect"
                | "cookie"
                | "set-cookie"
                | "authorization"
                | "proxy-authorization"
                | "content-encoding"
                | "content-type"
                | "content-range"
                | "location"
        )
        && !crate::rewrite::is_identity_header(name)
}

/// The last chunk, with the trailer fields that may pass.
fn last_chunk(trailers: Vec<(String, String)>) -> Vec<u8> {
    if !trailers.iter().any(|(n, _)| trailer_passes(n)) {
        return LAST_CHUNK.to_vec();
    }
    let mut out = b"0\r\n".to_vec();
    for (name, value) in trailers.iter().filter(|(n, _)| trailer_passes(n)) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[derive(Debug)]
enum PumpError {
    Read(BodyError),
    Write(io::Error),
}

/// Streams a body from `from` to `to` through `buf`, re-framing it as chunked when `chunked`, and flushing each
/// piece as it comes (Server-Sent Events must not wait for a full buffer). Returns the body bytes copied. A read or
/// write that waits longer than `idle` fails, so a stalled peer frees the task; a body that keeps moving is never
/// cut.
async fn pump<R, W>(
    reader: &mut BodyReader,
    from: &mut Conn<R>,
    to: &mut Conn<W>,
    chunked: bool,
    buf: &mut [u8],
    idle: Option<Duration>,
) -> Result<u64, PumpError>
where
    R: AsyncRead + AsyncWrite + Unpin,
    W: AsyncRead + AsyncWrite + Unpin,
{
    let room = buf.len().saturating_sub(CHUNK_PREFIX + CHUNK_SUFFIX);
    let mut total = 0u64;
    let mut last: Vec<u8>;
    let mut pieces = 0u32;
    loop {
        pieces += 1;
        if pieces == PIECES_PER_YIELD {
            pieces = 0;
            smol::future::yield_now().await;
        }
        let data = buf
            .get_mut(CHUNK_PREFIX..CHUNK_PREFIX + room)
            .unwrap_or(&mut []);
        let n = match within(idle, reader.read(from, data)).await {
            Some(r) => r.map_err(PumpError::Read)?,
            None => {
                return Err(PumpError::Read(BodyError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no byte within the idle timeout",
                ))))
            }
        };
        let bytes: &[u8] = if n == 0 {
            if !chunked {
                return Ok(total);
            }
            last = last_chunk(reader.take_trailers());
            &last
        } else if chunked {
            let range = encode::frame_chunk(buf, n).unwrap_or(0..0);
            buf.get(range).unwrap_or(&[])
        } else {
            buf.get(CHUNK_PREFIX..CHUNK_PREFIX + n).unwrap_or(&[])
        };
        let write = async {
            to.write_all(bytes).await?;
            to.flush().await
        };
        within(idle, write)
            .await
            .unwrap_or_else(timed_out)
            .map_err(PumpError::Write)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::framing::FramingError;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = Headers::default();
        for (n, v) in [
            ("connection", "close, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-length", "5"),
            ("x-kept", "yes"),
            ("cookie", "a=b"),
        ] {
            h.append(n, v);
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(left, ["x-kept", "cookie"]);
    }

    #[test]
    fn apps_may_not_set_posterns_cookies() {
        let mut h = Headers::default();
        for v in [
            "_pomerium=x; Domain=example.com",
            "app=1; Path=/",
            "_POMERIUM_bind_abc=y; Domain=example.com",
            "__Host-_pomerium_csrf=z; Path=/; Secure",
            "_pomeriumish=ok",
            "theme=dark",
        ] {
            h.append("set-cookie", v);
        }
        strip_own_set_cookies(&mut h, "_pomerium");
        let kept: Vec<&str> = h.get_all("set-cookie").collect();
        assert_eq!(kept, ["app=1; Path=/", "_pomeriumish=ok", "theme=dark"]);
    }

    fn plan(method: &str, headers: &[(&str, &str)]) -> ForwardPlan {
        let mut h = Headers::default();
        for (n, v) in headers {
            h.append(n, *v);
        }
        ForwardPlan {
            own_cookie: std::rc::Rc::from("_pomerium"),
            upstream: Rc::new(Upstream {
                authority: "app:8080".into(),
                ..Upstream::new(false, "10.0.0.2".into(), 8080, String::new())
            }),
            method: method.into(),
            target: "/x?y=1".into(),
            headers: h,
            timeout: Duration::from_secs(1),
            idle_timeout: None,
            websocket: false,
            session_expires: None,
        }
    }

    #[test]
    fn upstream_head_framing_table() {
        let cases: &[(&str, BodyKind, Option<&str>, Option<&str>)] = &[
            ("GET", BodyKind::None, None, None),
            ("POST", BodyKind::None, Some("0"), None),
            ("POST", BodyKind::Length(7), Some("7"), None),
            ("PUT", BodyKind::Chunked, None, Some("chunked")),
        ];
        for (method, kind, cl, te) in cases {
            let p = plan(
                method,
                &[
                    ("content-length", "99"),
                    ("expect", "100-continue"),
                    ("x-a", "b"),
                ],
            );
            let head = upstream_head(&p, *kind, false);
            assert_eq!(head.headers.get("content-length"), *cl, "{method} {kind:?}");
            assert_eq!(
                head.headers.get("transfer-encoding"),
                *te,
                "{method} {kind:?}"
            );
            assert_eq!(head.headers.get("expect"), None);
            assert_eq!(head.headers.get("host"), Some("app:8080"));
            assert_eq!(head.version, Version::Http11);
        }
        let head = upstream_head(
            &plan("GET", &[("host", "kept.example")]),
            BodyKind::None,
            false,
        );
        assert_eq!(head.headers.get("host"), Some("kept.example"));
    }

    #[test]
    fn upstream_keep_alive_table() {
        type Case<'a> = (Version, &'a [(&'a str, &'a str)], bool, Option<u64>);
        let cases: &[Case] = &[
            (Version::Http11, &[], true, None),
            (Version::Http11, &[("connection", "close")], false, None),
            (Version::Http10, &[], false, None),
            (
                Version::Http10,
                &[
                    ("connection", "Keep-Alive"),
                    ("keep-alive", "timeout=5, max=100"),
                ],
                true,
                Some(5),
            ),
        ];
        for (version, fields, keep, hint) in cases {
            let mut h = Headers::default();
            for (n, v) in fields.iter() {
                h.append(n, *v);
            }
            let head = ResponseHead {
                version: *version,
                status: 200,
                reason: String::new(),
                headers: h,
            };
            assert_eq!(
                upstream_keep_alive(&head),
                (*keep, hint.map(Duration::from_secs)),
                "{version:?} {fields:?}"
            );
        }
    }

    #[test]
    fn websocket_handshake_table() {
        type Case<'a> = (&'a str, Version, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            (
                "GET",
                Version::Http11,
                &[("connection", "Upgrade"), ("upgrade", "websocket")],
                true,
            ),
            (
                "GET",
                Version::Http11,
                &[
                    ("connection", "keep-alive, Upgrade"),
                    ("upgrade", "WebSocket"),
                ],
                true,
            ),
            (
                "GET",
                Version::Http11,
                &[("connection", "upgrade"), ("upgrade", "websocket")],
                true,
            ),
            (
                "GET",
                Version::Http11,
                &[
                    ("connection", "keep-alive"),
                    ("connection", "Upgrade"),
                    ("upgrade", "websocket"),
                ],
                true,
            ),
            ("GET", Version::Http11, &[("upgrade", "websocket")], false),
            (
                "GET",
                Version::Http11,
                &[("connection", "Upgrade"), ("upgrade", "h2c")],
                false,
            ),
            (
                "GET",
                Version::Http11,
                &[("connection", "Upgrades"), ("upgrade", "websocket")],
                false,
            ),
            (
                "POST",
                Version::Http11,
                &[("connection", "Upgrade"), ("upgrade", "websocket")],
                false,
            ),
            (
                "GET",
                Version::Http10,
                &[("connection", "Upgrade"), ("upgrade", "websocket")],
                false,
            ),
        ];
        for (method, version, fields, want) in cases {
            let mut h = Headers::default();
            for (n, v) in fields.iter() {
                h.append(n, *v);
            }
            let head = RequestHead {
                method: method.to_string(),
                target: "/ws".into(),
                version: *version,
                headers: h,
            };
            assert_eq!(
                wants_websocket(&head),
                *want,
                "{method} {version:?} {fields:?}"
            );
        }
        // Sent upstream, the handshake carries exactly one pair of upgrade headers.
        let mut p = plan(
            "GET",
            &[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "WebSocket"),
                ("sec-websocket-key", "k"),
            ],
        );
        p.websocket = true;
        let head = upstream_head(&p, BodyKind::None, false);
        assert_eq!(
            head.headers.get_all("connection").collect::<Vec<_>>(),
            ["upgrade"]
        );
        assert_eq!(
            head.headers.get_all("upgrade").collect::<Vec<_>>(),
            ["websocket"]
        );
        assert_eq!(head.headers.get("sec-websocket-key"), Some("k"));
    }

    #[test]
    fn trailers_that_pass_table() {
        let t = |fields: &[(&str, &str)]| {
            let v = fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            String::from_utf8(last_chunk(v)).unwrap()
        };
        assert_eq!(t(&[]), "0\r\n\r\n");
        assert_eq!(
            t(&[
                ("x-checksum", "abc"),
                ("content-length", "5"),
                ("transfer-encoding", "chunked"),
                ("host", "evil"),
                ("x-pomerium-claim-email", "admin@example.com"),
                ("x-forwarded-for", "1.2.3.4"),
                ("cookie", "a=b"),
                ("server-timing", "db;dur=53"),
            ]),
            "0\r\nx-checksum: abc\r\nserver-timing: db;dur=53\r\n\r\n"
        );
    }

    #[test]
    fn a_body_whose_sides_are_always_ready_still_lets_other_tasks_run() {
        use crate::tunnel::tests::Eager;
        let ex = smol::LocalExecutor::new();
        smol::block_on(ex.run(async {
            let size = 64u64 << 20;
            let mut from = Conn::new(Eager {
                left: size as usize,
            });
            let mut to = Conn::new(Eager { left: 0 });
            let mut reader = BodyReader::new(BodyKind::Length(size));
            let mut buf = vec![0u8; COPY_BUF + CHUNK_PREFIX + CHUNK_SUFFIX];
            let done = Rc::new(std::cell::Cell::new(false));
            let ticks = Rc::new(std::cell::Cell::new(0u32));
            let (d, t) = (done.clone(), ticks.clone());
            let other = ex.spawn(async move {
                while !d.get() {
                    t.set(t.get() + 1);
                    smol::future::yield_now().await;
                }
            });
            let moved = pump(&mut reader, &mut from, &mut to, false, &mut buf, None).await;
            done.set(true);
            other.await;
            assert_eq!(moved.unwrap(), size);
            // 4096 pieces, a yield every 64: the other task ran about 64 times meanwhile.
            assert!(ticks.get() > 32, "the other task ran {} times", ticks.get());
        }));
    }

    #[test]
    fn error_statuses() {
        assert_eq!(ForwardError::ConnectTimeout.status(), 504);
        assert_eq!(
            ForwardError::ResponseTimeout(Duration::from_secs(1)).status(),
            504
        );
        assert_eq!(
            ForwardError::Connect(io::ErrorKind::ConnectionRefused.into()).status(),
            502
        );
        assert_eq!(ForwardError::BadResponse("x".into()).status(), 502);
        assert_eq!(
            ForwardError::ClientBody(BodyError::UnexpectedEof).status(),
            400
        );
    }

    #[test]
    fn framing_error_display_reaches_pages() {
        let e = ForwardError::BadResponse(FramingError::LengthAndTransferEncoding.to_string());
        assert!(e.to_string().contains("Content-Length"));
    }
}
