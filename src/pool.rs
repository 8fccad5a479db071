//! The upstream connection pool: kept-alive connections per upstream, how long each is kept, and how a new one is
//! made (TCP, then TLS with the route's own settings when it has them).
//!
//! An idle connection is kept for at most `PoolLimits::idle_time`, and for less when the upstream announced a shorter
//! `Keep-Alive: timeout=N`, so it is rarely closed by the upstream just as it is reused; before reuse a connection is
//! probed, and one the upstream closed is dropped. Single-threaded: the pool lives on the executor.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_rustls::client::TlsStream;
use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::rustls::ClientConfig;
use futures_rustls::TlsConnector;
use smol::io::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;

use crate::forward::ForwardError;
use crate::http::conn::{Conn, HeadLimits};
use crate::route::Upstream;
use crate::server::timeout;

/// Bounds on the upstream connection pool.
#[derive(Clone, Copy, Debug)]
pub struct PoolLimits {
    /// Idle connections kept per upstream: as many as a busy moment has in flight (64 concurrent clients), so a
    /// burst does not end in closing most of them and connecting anew for the next one (`make bench`: with 8, most
    /// requests at 64 connections paid a fresh upstream connection). An idle one holds no buffer, only its socket.
    pub max_idle_per_upstream: usize,
    /// How long an idle connection is kept: shorter than common upstream keep-alive timeouts (nginx 75 s, Node 5 s,
    /// Go 90 s), so the upstream rarely closes one just as it is reused.
    pub idle_time: Duration,
    /// Bounds on an upstream's response head (larger than a request's: upstreams set many cookies).
    pub response_head: HeadLimits,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_idle_per_upstream: 64,
            idle_time: Duration::from_secs(4),
            response_head: HeadLimits {
                max_bytes: 32 * 1024,
                max_headers: 128,
                max_line: 8 * 1024,
            },
        }
    }
}

/// A connection to an upstream: plain TCP or TLS.
pub enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_close(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

pub type UpstreamConn = Conn<UpstreamStream>;

struct Idle {
    conn: UpstreamConn,
    expires: Instant,
}

/// Kept-alive upstream connections, per upstream (scheme, host, port). Single-threaded: lives on the executor.
pub struct Pool {
    limits: PoolLimits,
    tls: Option<Arc<ClientConfig>>,
    idle: RefCell<HashMap<String, Vec<Idle>>>,
    connects: Cell<u64>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.idle_count())
            .field("connects", &self.connects.get())
            .finish()
    }
}

impl Pool {
    /// `tls`: the client configuration for https upstreams (`tls::client_config()`); None refuses https upstreams.
    #[allow(dead_code)] // used by main.rs
    pub fn new(limits: PoolLimits, tls: Option<Arc<ClientConfig>>) -> Pool {
        Pool {
            limits,
            tls,
            idle: RefCell::new(HashMap::new()),
            connects: Cell::new(0),
        }
    }

    pub fn limits(&self) -> &PoolLimits {
        &self.limits
    }

    /// New upstream connections made so far.
    #[allow(dead_code)] // for tests and a future status page
    pub fn connects(&self) -> u64 {
        self.connects.get()
    }

    /// Idle connections held now.
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }

    /// Drops idle connections past their time.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        idle.values_mut()
            .for_each(|list| list.retain(|c| c.expires > now));
        idle.retain(|_, list| !list.is_empty());
    }

    /// The most recently used live idle connection to `key`, if any.
    pub(crate) async fn take(&self, key: &str) -> Option<UpstreamConn> {
        let now = Instant::now();
        loop {
            let entry = self.idle.borrow_mut().get_mut(key)?.pop()?;
            let mut conn = entry.conn;
            if entry.expires > now && still_open(&mut conn).await {
                return Some(conn);
            }
        }
    }

    pub(crate) fn put(
        &self,
        key: String,
        mut conn: UpstreamConn,
        keep_alive_hint: Option<Duration>,
    ) {
        conn.release_if_empty();
        if !conn.buffered().is_empty() {
            return; // bytes after the response: the connection is not in a state we understand
        }
        let time = match keep_alive_hint {
            Some(hint) => self.limits.idle_time.min(under_hint(hint)),
            None => self.limits.idle_time,
        };
        if time.is_zero() || self.limits.max_idle_per_upstream == 0 {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key).or_default();
        if list.len() >= self.limits.max_idle_per_upstream {
            list.remove(0); // the oldest goes
        }
        list.push(Idle {
            conn,
            expires: Instant::now() + time,
        });
    }

    pub(crate) async fn connect(
        &self,
        up: &Upstream,
        limit: Duration,
    ) -> Result<UpstreamConn, ForwardError> {
        // The route's own TLS settings (custom CA, client certificate, skip verify) win over the shared ones.
        let tls = match (up.https, up.tls_config.as_ref().or(self.tls.as_ref())) {
            (true, None) => return Err(ForwardError::NoTlsClient),
            (true, Some(cfg)) => Some(cfg.clone()),
            (false, _) => None,
        };
        let connect = async {
            // An address needs no look-up: connecting with a host string goes through the blocking thread pool
            // (getaddrinfo) and back, two thread switches per new connection even for 127.0.0.1.
            let tcp = match up.host.parse::<IpAddr>() {
                Ok(ip) => TcpStream::connect(SocketAddr::new(ip, up.port)).await,
                Err(_) => TcpStream::connect((up.host.as_str(), up.port)).await,
            }
            .map_err(ForwardError::Connect)?;
            let _ = tcp.set_nodelay(true);
            let stream = match tls {
                None => UpstreamStream::Plain(tcp),
                Some(cfg) => {
                    let name =
                        ServerName::try_from(up.server_name().to_string()).map_err(|_| {
                            ForwardError::Tls(format!(
                                "`{}` is not a valid TLS server name",
                                up.server_name()
                            ))
                        })?;
                    let tls = TlsConnector::from(cfg)
                        .connect(name, tcp)
                        .await
                        .map_err(|e| ForwardError::Tls(e.to_string()))?;
                    UpstreamStream::Tls(Box::new(tls))
                }
            };
            Ok(Conn::new(stream))
        };
        let conn = timeout(limit, connect)
            .await
            .ok_or(ForwardError::ConnectTimeout)??;
        self.connects.set(self.connects.get() + 1);
        Ok(conn)
    }
}

/// A pooled connection that the upstream closed (or that has unexpected bytes) is not worth a try.
async fn still_open(conn: &mut UpstreamConn) -> bool {
    use smol::io::AsyncReadExt;
    let mut probe = [0u8; 1];
    // Pending: nothing to read and not closed, the healthy idle state.
    smol::future::poll_once(conn.get_mut().read(&mut probe))
        .await
        .is_none()
}

/// How long to keep a connection whose upstream announced `Keep-Alive: timeout=N`: a margin under N (a quarter,
/// at most a second), so the upstream does not close it just as it is reused.
pub(crate) fn under_hint(hint: Duration) -> Duration {
    hint.saturating_sub((hint / 4).min(Duration::from_secs(1)))
}

/// Connections are shared only between routes that connect the same way: same address, and for https the same
/// server name and TLS settings.
pub(crate) fn pool_key(up: &Upstream) -> String {
    if !up.https {
        return format!("http://{}:{}", up.host, up.port);
    }
    let settings = up
        .tls_config
        .as_ref()
        .map_or(0, |c| Arc::as_ptr(c) as usize);
    format!(
        "https://{}:{} {} {settings:x}",
        up.host,
        up.port,
        up.server_name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_hint_margin_table() {
        for (hint, kept) in [
            (1000, 750),
            (2000, 1500),
            (5000, 4000),
            (75000, 74000),
            (0, 0),
        ] {
            assert_eq!(
                under_hint(Duration::from_millis(hint)),
                Duration::from_millis(kept),
                "{hint}"
            );
        }
    }

    #[test]
    fn pool_keys_separate_tls_settings() {
        let plain = Upstream::new(false, "::1".into(), 8096, String::new());
        assert_eq!(pool_key(&plain), "http://::1:8096");
        let a = Upstream::new(true, "10.0.0.2".into(), 443, String::new());
        let mut b = a.clone();
        b.tls_server_name = Some("backend.internal".into());
        assert_ne!(pool_key(&a), pool_key(&b));
        let mut c = a.clone();
        c.tls_config = Some(crate::tls::upstream_client_config(&[], true));
        assert_ne!(pool_key(&a), pool_key(&c));
        assert_eq!(pool_key(&c), pool_key(&c.clone()));
    }
}
