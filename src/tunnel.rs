//! The byte relay behind an upgraded connection (WebSockets): after the upstream's `101`, bytes are copied both ways
//! through one buffer per direction (held while bytes flow, dropped while that direction is quiet) until both sides
//! have closed, the tunnel has been idle too long, or the session it was opened with has expired.
//!
//! One future polls both directions on the connection's own task, so no stream is split or shared. An end of
//! stream on one side is passed on as a half-close (TCP FIN, TLS close_notify) to the other, whose direction keeps
//! flowing until it closes too: a WebSocket's closing handshake finishes that way.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use smol::io::{AsyncRead, AsyncWrite};
use smol::Timer;

/// Bytes held per direction while bytes flow: one TLS record fits.
pub const TUNNEL_BUF: usize = 16 * 1024;
/// A quiet direction holds no buffer: its next read goes into a stack array this big, and only a read that fills it
/// makes the full buffer (50 quiet WebSockets held 1.6 MB of buffers otherwise: `make memory-profile`).
const QUIET_READ: usize = 1024;
/// Reads one direction may do in one poll before the task yields: with both sides always ready, a busy tunnel must
/// not keep the (single) executor thread from every other connection.
const READS_PER_POLL: u32 = 32;

/// Why a tunnel ended.
#[derive(Debug)]
pub enum TunnelEnd {
    /// Both sides closed their sending side.
    Closed,
    /// No byte moved either way for the idle timeout.
    Idle(Duration),
    /// The session the tunnel was opened with expired.
    SessionExpired,
    /// A read or write failed (a reset, usually); the text names the side.
    Broken(String),
}

impl fmt::Display for TunnelEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelEnd::Closed => f.write_str("both sides closed"),
            TunnelEnd::Idle(d) => write!(f, "idle for {} s", d.as_secs_f32()),
            TunnelEnd::SessionExpired => f.write_str("the session expired"),
            TunnelEnd::Broken(e) => f.write_str(e),
        }
    }
}

/// Bytes moved each way, and why it stopped.
#[derive(Debug)]
pub struct TunnelReport {
    pub end: TunnelEnd,
    /// Client to upstream.
    pub up: u64,
    /// Upstream to client.
    pub down: u64,
}

/// One direction: read into `buf`, write it all out, flush, repeat; on end of stream close the writer.
struct Pipe {
    /// Empty while the direction is quiet (see QUIET_READ).
    buf: Vec<u8>,
    size: usize,
    start: usize,
    end: usize,
    flushed: bool,
    eof: bool,
    closed: bool,
    moved: u64,
}

/// What one poll of a pipe did.
struct Step {
    progress: bool,
    done: bool,
    /// Stopped while it could go on, to let other tasks run: poll again soon.
    yielded: bool,
}

impl Pipe {
    fn new(size: usize) -> Self {
        Pipe {
            buf: Vec::new(),
            size,
            start: 0,
            end: 0,
            flushed: true,
            eof: false,
            closed: false,
            moved: 0,
        }
    }

    /// Moves what it can without waiting. Returns once both the read and the write side would wait (their wakers
    /// are then registered), or when this direction is finished.
    fn poll<R, W>(&mut self, cx: &mut Context<'_>, from: &mut R, to: &mut W) -> io::Result<Step>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut progress = false;
        let mut reads = 0;
        let step = |progress, done| Step {
            progress,
            done,
            yielded: false,
        };
        loop {
            if self.closed {
                return Ok(step(progress, true));
            }
            // Write out what is held.
            while self.start < self.end {
                let pending = self.buf.get(self.start..self.end).unwrap_or(&[]);
                match Pin::new(&mut *to).poll_write(cx, pending) {
                    Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => {
                        self.start += n;
                        self.moved += n as u64;
                        self.flushed = false;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => return Ok(step(progress, false)),
                }
            }
            if !self.flushed {
                match Pin::new(&mut *to).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.flushed = true,
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => return Ok(step(progress, false)),
                }
            }
            if self.eof {
                // Pass the end of stream on as a half-close.
                match Pin::new(&mut *to).poll_close(cx) {
                    Poll::Ready(_) => {
                        self.closed = true;
                        continue;
                    }
                    Poll::Pending => return Ok(step(progress, false)),
                }
            }
            if reads == READS_PER_POLL {
                return Ok(Step {
                    progress,
                    done: false,
                    yielded: true,
                });
            }
            reads += 1;
            // Everything held went out: a buffer made for a few bytes is not kept for the next read.
            if self.buf.len() < self.size {
                self.buf = Vec::new();
            }
            let mut quiet = [0u8; QUIET_READ];
            let was_quiet = self.buf.is_empty();
            let into: &mut [u8] = if was_quiet { &mut quiet } else { &mut self.buf };
            match Pin::new(&mut *from).poll_read(cx, into) {
                Poll::Ready(Ok(0)) => {
                    self.eof = true;
                    progress = true;
                }
                Poll::Ready(Ok(n)) => {
                    if was_quiet {
                        // A full small read means more is coming: the full buffer from now on.
                        let mut held = vec![0u8; if n >= QUIET_READ { self.size } else { n }];
                        if let (Some(to), Some(got)) = (held.get_mut(..n), quiet.get(..n)) {
                            to.copy_from_slice(got);
                        }
                        self.buf = held;
                    }
                    self.start = 0;
                    self.end = n;
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {
                    // Quiet now, and nothing is held: hold no buffer either.
                    self.buf = Vec::new();
                    return Ok(step(progress, false));
                }
            }
        }
    }
}

/// Relays bytes between `client` and `upstream` until both close, `idle` passes without a byte moving (None: no
/// idle limit), or `until` is reached (None: no deadline).
pub async fn relay<C, U>(
    client: &mut C,
    upstream: &mut U,
    idle: Option<Duration>,
    until: Option<Instant>,
) -> TunnelReport
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut up = Pipe::new(TUNNEL_BUF);
    let mut down = Pipe::new(TUNNEL_BUF);
    let mut idle_timer = idle.map(Timer::after);
    let mut deadline = until.map(Timer::at);
    let end = poll_fn(|cx| {
        let a = match up.poll(cx, client, upstream) {
            Ok(s) => s,
            Err(e) => return Poll::Ready(TunnelEnd::Broken(format!("client to upstream: {e}"))),
        };
        let b = match down.poll(cx, upstream, client) {
            Ok(s) => s,
            Err(e) => return Poll::Ready(TunnelEnd::Broken(format!("upstream to client: {e}"))),
        };
        if a.done && b.done {
            return Poll::Ready(TunnelEnd::Closed);
        }
        if let Some(d) = deadline.as_mut() {
            if Pin::new(d).poll(cx).is_ready() {
                return Poll::Ready(TunnelEnd::SessionExpired);
            }
        }
        if let (Some(t), Some(limit)) = (idle_timer.as_mut(), idle) {
            if a.progress || b.progress {
                t.set_after(limit);
            }
            if Pin::new(t).poll(cx).is_ready() {
                return Poll::Ready(TunnelEnd::Idle(limit));
            }
        }
        if a.yielded || b.yielded {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await;
    TunnelReport {
        end,
        up: up.moved,
        down: down.moved,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    use smol::net::{TcpListener, TcpStream};

    /// A connected pair of loopback TCP streams.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = smol::future::zip(TcpStream::connect(addr), l.accept()).await;
        (a.unwrap(), b.unwrap().0)
    }

    #[test]
    fn bytes_flow_both_ways_and_half_close_passes_on() {
        smol::block_on(async {
            // browser <-> (client_side | proxy) ... (proxy | upstream_side) <-> app
            let (mut browser, mut client_side) = pair().await;
            let (mut upstream_side, mut app) = pair().await;
            let relay = relay(&mut client_side, &mut upstream_side, None, None);
            let peers = async {
                browser.write_all(b"hello").await.unwrap();
                let mut got = [0u8; 5];
                app.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"hello");
                app.write_all(b"world!").await.unwrap();
                let mut got = [0u8; 6];
                browser.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"world!");
                // The browser closes its side: the app sees the end, and may still answer.
                browser.shutdown(std::net::Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                app.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty());
                app.write_all(b"bye").await.unwrap();
                app.shutdown(std::net::Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                browser.read_to_end(&mut rest).await.unwrap();
                assert_eq!(rest, b"bye");
            };
            let (report, ()) = smol::future::zip(relay, peers).await;
            assert!(matches!(report.end, TunnelEnd::Closed), "{}", report.end);
            assert_eq!((report.up, report.down), (5, 9));
        });
    }

    /// A peer that always has `left` more bytes ready to read and accepts every write at once.
    pub(crate) struct Eager {
        pub(crate) left: usize,
    }

    impl AsyncRead for Eager {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.left);
            self.left -= n;
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Eager {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Has `left` bytes to read, then none yet (Pending, like a quiet socket).
    struct Trickle {
        left: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.left == 0 {
                return Poll::Pending;
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn a_quiet_direction_holds_no_buffer() {
        // (bytes that arrive before the direction goes quiet): all of them pass, then no buffer is held.
        for bytes in [
            1,
            10,
            QUIET_READ - 1,
            QUIET_READ,
            QUIET_READ + 1,
            TUNNEL_BUF,
            100_000,
        ] {
            let mut pipe = Pipe::new(TUNNEL_BUF);
            let (mut from, mut to) = (Trickle { left: bytes }, Eager { left: 0 });
            let step = smol::block_on(smol::future::poll_fn(|cx| {
                Poll::Ready(pipe.poll(cx, &mut from, &mut to))
            }))
            .expect("no error");
            assert!(step.progress && !step.done && !step.yielded, "{bytes}");
            assert_eq!(pipe.moved, bytes as u64, "{bytes}");
            assert_eq!(pipe.buf.capacity(), 0, "{bytes}");
        }
    }

    #[test]
    fn a_tunnel_whose_sides_are_always_ready_still_lets_other_tasks_run() {
        let ex = smol::LocalExecutor::new();
        smol::block_on(ex.run(async {
            let (mut client, mut upstream) = (Eager { left: 64 << 20 }, Eager { left: 0 });
            let done = std::rc::Rc::new(std::cell::Cell::new(false));
            let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
            let (d, t) = (done.clone(), ticks.clone());
            let other = ex.spawn(async move {
                while !d.get() {
                    t.set(t.get() + 1);
                    smol::future::yield_now().await;
                }
            });
            let report = relay(&mut client, &mut upstream, None, None).await;
            done.set(true);
            other.await;
            assert!(matches!(report.end, TunnelEnd::Closed), "{}", report.end);
            assert_eq!(report.up, 64 << 20);
            // 4096 reads of 16 KiB, a yield every 32: the other task ran about 128 times meanwhile.
            assert!(ticks.get() > 64, "the other task ran {} times", ticks.get());
        }));
    }

    #[test]
    fn idle_tunnel_is_closed() {
        smol::block_on(async {
            let (_browser, mut client_side) = pair().await;
            let (mut upstream_side, _app) = pair().await;
            let started = Instant::now();
            let report = relay(
                &mut client_side,
                &mut upstream_side,
                Some(Duration::from_millis(200)),
                None,
            )
            .await;
            assert!(matches!(report.end, TunnelEnd::Idle(_)), "{}", report.end);
            assert!(started.elapsed() < Duration::from_secs(2));
        });
    }

    #[test]
    fn traffic_keeps_an_idle_limited_tunnel_open_until_the_deadline() {
        smol::block_on(async {
            let (mut browser, mut client_side) = pair().await;
            let (mut upstream_side, mut app) = pair().await;
            let started = Instant::now();
            let relay = relay(
                &mut client_side,
                &mut upstream_side,
                Some(Duration::from_millis(300)),
                Some(Instant::now() + Duration::from_millis(1200)),
            );
            let chatter = async {
                let mut got = [0u8; 1];
                // Every 150 ms, below the idle limit: only the deadline can end it.
                for _ in 0..20 {
                    if browser.write_all(b"x").await.is_err() {
                        break;
                    }
                    if app.read_exact(&mut got).await.is_err() {
                        break;
                    }
                    Timer::after(Duration::from_millis(150)).await;
                }
            };
            // The chatter would outlast the deadline: the relay must end first.
            let report = smol::future::or(async { Some(relay.await) }, async {
                chatter.await;
                None
            })
            .await
            .expect("the tunnel outlived its deadline");
            assert!(
                matches!(report.end, TunnelEnd::SessionExpired),
                "{}",
                report.end
            );
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(1100) && took < Duration::from_secs(3));
        });
    }
}
