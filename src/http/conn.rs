//! A buffered HTTP/1 connection over any byte stream (plain TCP or TLS): reads heads within limits, hands buffered
//! bytes to body readers, and writes heads and bodies.
//!
//! Memory: an idle connection holds no read buffer. The first read of a message goes into a small inline array;
//! only when bytes arrive is a heap buffer made, and `release_if_empty` drops it again between messages. Bytes that
//! belong to the next message (pipelining) stay buffered.

use std::fmt;
use std::io;

use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Headers, RequestHead, ResponseHead, Version};

/// Size of the inline array used for the first read into an empty connection.
const FIRST_READ: usize = 128;
/// Heap buffer made once bytes arrive; grows (up to the head limit) only for large heads.
const INITIAL_BUF: usize = 4096;

/// Bounds on one message head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Bytes from the first byte of the start line to the end of the blank line.
    pub max_bytes: usize,
    /// Header fields.
    pub max_headers: usize,
    /// Bytes of a request line (method, target, version): a longer one gets 414.
    pub max_line: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_bytes: 16 * 1024,
            max_headers: 100,
            max_line: 8 * 1024,
        }
    }
}

/// Which head limit was exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TooLarge {
    Bytes(usize),
    Headers(usize),
    Line(usize),
}

/// Why a head could not be read.
#[derive(Debug)]
pub enum HeadError {
    /// Over a limit: 431 for a request.
    TooLarge(TooLarge),
    /// Not a valid HTTP/1 head: 400 for a request; the text says what was wrong.
    Malformed(String),
    /// The peer closed the connection in the middle of a head.
    Eof,
    Io(io::Error),
}

impl HeadError {
    /// The status to answer a request with, or None when no answer can or should be sent.
    pub fn status(&self) -> Option<u16> {
        match self {
            HeadError::TooLarge(TooLarge::Line(_)) => Some(414),
            HeadError::TooLarge(_) => Some(431),
            HeadError::Malformed(_) => Some(400),
            HeadError::Eof | HeadError::Io(_) => None,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge(TooLarge::Bytes(n)) => {
                write!(f, "the message head is larger than {n} bytes")
            }
            HeadError::TooLarge(TooLarge::Headers(n)) => {
                write!(f, "the message has more than {n} header fields")
            }
            HeadError::TooLarge(TooLarge::Line(n)) => {
                write!(f, "the request line is longer than {n} bytes")
            }
            HeadError::Malformed(what) => write!(f, "malformed message head: {what}"),
            HeadError::Eof => f.write_str("the connection closed in the middle of a message head"),
            HeadError::Io(e) => write!(f, "reading a message head: {e}"),
        }
    }
}

impl std::error::Error for HeadError {}

impl From<io::Error> for HeadError {
    fn from(e: io::Error) -> Self {
        HeadError::Io(e)
    }
}

/// A byte stream with a read buffer. Invariant: `start <= end <= buf.len()`.
pub struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<S> fmt::Debug for Conn<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("buffered", &(self.end - self.start))
            .field("capacity", &self.buf.len())
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    #[allow(dead_code)] // for connection upgrades (later issue)
    /// A connection whose first bytes were already read (e.g. by a peek).
    pub fn with_buffered(stream: S, bytes: Vec<u8>) -> Self {
        let end = bytes.len();
        Conn {
            stream,
            buf: bytes,
            start: 0,
            end,
        }
    }

    /// Bytes read but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }

    /// Marks `n` buffered bytes as used.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drops the read buffer when nothing is buffered, so an idle connection costs no buffer memory.
    pub fn release_if_empty(&mut self) {
        if self.start == self.end {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }

    #[allow(dead_code)] // used by tests
    /// Heap bytes held by the read buffer (for tests and memory checks).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    #[allow(dead_code)] // used by tests
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    #[allow(dead_code)] // for connection upgrades (later issue)
    /// The stream and any bytes read past the last message (for connection upgrades).
    pub fn into_parts(self) -> (S, Vec<u8>) {
        let rest = self.buffered().to_vec();
        (self.stream, rest)
    }

    /// Reads more bytes into the buffer, growing it up to `max_buffered` if it is full. Ok(0) means end of stream
    /// (or a full buffer that may not grow: callers check their own limits first).
    pub async fn fill(&mut self, max_buffered: usize) -> io::Result<usize> {
        if self.buf.is_empty() {
            let mut first = [0u8; FIRST_READ];
            let n = self.stream.read(&mut first).await?;
            if n == 0 {
                return Ok(0);
            }
            let mut buf = vec![0u8; INITIAL_BUF.max(n)];
            buf[..n].copy_from_slice(&first[..n]);
            self.buf = buf;
            self.start = 0;
            self.end = n;
            return Ok(n);
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < max_buffered {
                let len = (self.buf.len() * 2).clamp(INITIAL_BUF, max_buffered);
                self.buf.resize(len, 0);
            } else {
                return Ok(0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Reads into `out`: buffered bytes first, otherwise straight from the stream (no extra copy). Never reads more
    /// than `out.len()` from the stream, so a caller bounding `out` by the message's remaining length never reads
    /// into the next message.
    pub async fn read_some(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let buffered = self.buffered();
        if !buffered.is_empty() {
            let n = buffered.len().min(out.len());
            out[..n].copy_from_slice(&buffered[..n]);
            self.consume(n);
            return Ok(n);
        }
        self.stream.read(out).await
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.flush().await
    }

    /// Closes the write side (TLS close_notify, TCP FIN).
    pub async fn close(&mut self) -> io::Result<()> {
        self.stream.close().await
    }

    /// Reads a request head. Ok(None): the peer closed cleanly before sending anything (end of keep-alive).
    pub async fn read_request_head(
        &mut self,
        limits: &HeadLimits,
    ) -> Result<Option<RequestHead>, HeadError> {
        match self.read_head_bytes(limits).await? {
            None => Ok(None),
            Some(len) => {
                let head = parse_request(self.buffered().get(..len).unwrap_or(&[]), limits)?;
                self.consume(len);
                Ok(Some(head))
            }
        }
    }

    /// Reads a response head (the upstream leg). A close before any byte is `HeadError::Eof`.
    pub async fn read_response_head(
        &mut self,
        limits: &HeadLimits,
    ) -> Result<ResponseHead, HeadError> {
        match self.read_head_bytes(limits).await? {
            None => Err(HeadError::Eof),
            Some(len) => {
                let head = parse_response(self.buffered().get(..len).unwrap_or(&[]), limits)?;
                self.consume(len);
                Ok(head)
            }
        }
    }

    /// Buffers one complete head and returns its length (through the blank line). Leading empty lines are skipped
    /// (RFC 9112 §2.2). A bare LF anywhere in the head is refused: a lenient parser here and a strict one upstream
    /// would disagree about where headers end.
    async fn read_head_bytes(&mut self, limits: &HeadLimits) -> Result<Option<usize>, HeadError> {
        let mut scanned = 0;
        loop {
            // Skip CRLFs before the start line.
            if scanned == 0 {
                loop {
                    match self.buffered() {
                        [b'\r', b'\n', ..] => self.consume(2),
                        [b'\n', ..] => {
                            return Err(HeadError::Malformed(
                                "bare LF before the start line".into(),
                            ))
                        }
                        _ => break,
                    }
                }
            }
            let data = self.buffered();
            let mut i = scanned;
            while i < data.len() {
                if data[i] == b'\n' {
                    if i == 0 || data[i - 1] != b'\r' {
                        return Err(HeadError::Malformed(
                            "line ends with a bare LF, not CRLF".into(),
                        ));
                    }
                    if i >= 3 && &data[i - 3..=i] == b"\r\n\r\n" {
                        if i + 1 > limits.max_bytes {
                            return Err(HeadError::TooLarge(TooLarge::Bytes(limits.max_bytes)));
                        }
                        return Ok(Some(i + 1));
                    }
                }
                i += 1;
            }
            scanned = data.len();
            if scanned >= limits.max_bytes {
                return Err(HeadError::TooLarge(TooLarge::Bytes(limits.max_bytes)));
            }
            let was_empty = data.is_empty();
            let n = self.fill(limits.max_bytes + 4).await?;
            if n == 0 {
                return if was_empty {
                    Ok(None)
                } else {
                    Err(HeadError::Eof)
                };
            }
            // Leading CRLFs may have been the only bytes; rescan from the start of what is buffered then.
            if was_empty {
                scanned = 0;
            }
        }
    }
}

fn httparse_error(e: httparse::Error, limits: &HeadLimits) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => {
            HeadError::TooLarge(TooLarge::Headers(limits.max_headers))
        }
        httparse::Error::HeaderName => {
            HeadError::Malformed("invalid header name (or an obsolete line folding)".into())
        }
        httparse::Error::HeaderValue => {
            HeadError::Malformed("invalid character in a header value".into())
        }
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending".into()),
        httparse::Error::Status => HeadError::Malformed("invalid status code".into()),
        httparse::Error::Token => {
            HeadError::Malformed("invalid method or token in the start line".into())
        }
        httparse::Error::Version => {
            HeadError::Malformed("not an HTTP/1.0 or HTTP/1.1 message".into())
        }
    }
}

fn convert_headers(raw: &[httparse::Header<'_>]) -> Result<Headers, HeadError> {
    let mut headers = Headers::with_capacity(raw.len());
    for h in raw {
        let value = std::str::from_utf8(h.value).map_err(|_| {
            HeadError::Malformed(format!("the value of header `{}` is not UTF-8", h.name))
        })?;
        headers.append(h.name, value.trim_matches([' ', '\t']));
    }
    Ok(headers)
}

fn version(minor: Option<u8>) -> Result<Version, HeadError> {
    match minor {
        Some(0) => Ok(Version::Http10),
        Some(1) => Ok(Version::Http11),
        _ => Err(HeadError::Malformed(
            "not an HTTP/1.0 or HTTP/1.1 message".into(),
        )),
    }
}

/// Parses a complete request head (`bytes` ends with the blank line).
pub fn parse_request(bytes: &[u8], limits: &HeadLimits) -> Result<RequestHead, HeadError> {
    let line = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    if line > limits.max_line {
        return Err(HeadError::TooLarge(TooLarge::Line(limits.max_line)));
    }
    let mut raw = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::Malformed("incomplete head".into()))
        }
        Err(e) => return Err(httparse_error(e, limits)),
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(HeadError::Malformed("incomplete request line".into()));
    };
    let head = RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        version: version(req.version)?,
        headers: convert_headers(req.headers)?,
    };
    // RFC 9112 §3.2: a 1.1 request must carry exactly one Host; two are always an error.
    match head.headers.get_all("host").count() {
        0 if head.version == Version::Http11 => Err(HeadError::Malformed(
            "an HTTP/1.1 request needs a Host header".into(),
        )),
        0 | 1 => Ok(head),
        _ => Err(HeadError::Malformed(
            "the request has more than one Host header".into(),
        )),
    }
}

/// Parses a complete response head.
pub fn parse_response(bytes: &[u8], limits: &HeadLimits) -> Result<ResponseHead, HeadError> {
    let mut raw = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut resp = httparse::Response::new(&mut raw);
    match resp.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::Malformed("incomplete head".into()))
        }
        Err(e) => return Err(httparse_error(e, limits)),
    }
    let Some(status) = resp.code else {
        return Err(HeadError::Malformed("missing status code".into()));
    };
    if !(100..=999).contains(&status) {
        return Err(HeadError::Malformed(format!(
            "status code {status} is out of range"
        )));
    }
    Ok(ResponseHead {
        version: version(resp.version)?,
        status,
        reason: resp.reason.unwrap_or("").to_string(),
        headers: convert_headers(resp.headers)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// An in-memory stream for codec tests: reads come from `input` in slices of at most `step` bytes, writes go
    /// to `output`.
    pub struct MockStream {
        pub input: Vec<u8>,
        pub pos: usize,
        pub step: usize,
        pub output: Vec<u8>,
    }

    impl MockStream {
        pub fn new(input: &[u8]) -> Self {
            MockStream {
                input: input.to_vec(),
                pos: 0,
                step: usize::MAX,
                output: Vec::new(),
            }
        }
        pub fn stepped(input: &[u8], step: usize) -> Self {
            MockStream {
                step,
                ..MockStream::new(input)
            }
        }
    }

    impl AsyncRead for MockStream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let rest = &self.input[self.pos..];
            let n = rest.len().min(buf.len()).min(self.step);
            buf[..n].copy_from_slice(&rest[..n]);
            self.pos += n;
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for MockStream {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.output.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn read_req(input: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        let mut conn = Conn::new(MockStream::new(input));
        smol::block_on(conn.read_request_head(&HeadLimits::default()))
    }

    #[test]
    fn pipelined_heads_stay_buffered() {
        let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut conn = Conn::new(MockStream::new(input));
        let limits = HeadLimits::default();
        for want in ["/a", "/b", "/c"] {
            let head = smol::block_on(conn.read_request_head(&limits))
                .unwrap()
                .unwrap();
            assert_eq!(head.target, want);
        }
        assert!(smol::block_on(conn.read_request_head(&limits))
            .unwrap()
            .is_none());
    }

    #[test]
    fn head_arriving_byte_by_byte() {
        let input = b"\r\nPOST /x?q=1 HTTP/1.0\r\nContent-Length: 3\r\nX-A:  spaced  \r\n\r\nabc";
        let mut conn = Conn::new(MockStream::stepped(input, 1));
        let head = smol::block_on(conn.read_request_head(&HeadLimits::default()))
            .unwrap()
            .unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.target, "/x?q=1");
        assert_eq!(head.version, Version::Http10);
        assert_eq!(head.headers.get("x-a"), Some("spaced"));
        assert_eq!(conn.buffered(), b"");
    }

    #[test]
    fn http10_without_host_is_fine() {
        let head = read_req(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.version, Version::Http10);
    }

    #[test]
    fn malformed_heads_table() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"GET / HTTP/1.1\nHost: x\n\n", Some(400)),
            (b"GET / HTTP/1.1\r\nHost: x\n\r\n", Some(400)),
            (b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", Some(400)),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n",
                Some(400),
            ),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n", Some(400)),
            (b"GET / HTTP/1.1\r\n\r\n", Some(400)),
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", Some(400)),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", Some(400)),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Some(400)),
            (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", Some(400)),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: \xff\r\n\r\n", Some(400)),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", Some(400)),
            (b"GET / HTTP/1.1\r\nHost: x\r\n", None),
        ];
        for (input, want) in cases {
            let got = read_req(input);
            let status = match &got {
                Err(e) => e.status(),
                Ok(_) => Some(200),
            };
            assert_eq!(
                status,
                *want,
                "{:?} -> {got:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn head_too_large_is_431() {
        let mut input = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        input.extend(std::iter::repeat(b'a').take(20_000));
        input.extend_from_slice(b"\r\n\r\n");
        let err = read_req(&input).unwrap_err();
        assert!(
            matches!(err, HeadError::TooLarge(TooLarge::Bytes(16384))),
            "{err}"
        );
        assert_eq!(err.status(), Some(431));

        let mut input = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..101 {
            input.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        input.extend_from_slice(b"\r\n");
        let err = read_req(&input).unwrap_err();
        assert!(
            matches!(err, HeadError::TooLarge(TooLarge::Headers(100))),
            "{err}"
        );
    }

    #[test]
    fn head_exactly_at_limit_passes() {
        let limits = HeadLimits {
            max_bytes: 64,
            max_headers: 4,
            max_line: 64,
        };
        let mut input = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
        let pad = 64 - input.len() - 4;
        input.extend(std::iter::repeat(b'a').take(pad));
        input.extend_from_slice(b"\r\n\r\n");
        assert_eq!(input.len(), 64);
        let mut conn = Conn::new(MockStream::stepped(&input, 7));
        assert!(smol::block_on(conn.read_request_head(&limits))
            .unwrap()
            .is_some());
        input.insert(20, b'a');
        let mut conn = Conn::new(MockStream::stepped(&input, 7));
        assert!(matches!(
            smol::block_on(conn.read_request_head(&limits)),
            Err(HeadError::TooLarge(_))
        ));
    }

    #[test]
    fn response_heads() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let mut conn = Conn::new(MockStream::new(input));
        let head = smol::block_on(conn.read_response_head(&HeadLimits::default())).unwrap();
        assert_eq!(
            (head.status, head.reason.as_str(), head.version),
            (200, "OK", Version::Http11)
        );
        assert_eq!(conn.buffered(), b"hi");

        let mut conn = Conn::new(MockStream::new(b"HTTP/1.0 204\r\n\r\n"));
        let head = smol::block_on(conn.read_response_head(&HeadLimits::default())).unwrap();
        assert_eq!((head.status, head.version), (204, Version::Http10));

        for bad in [
            &b""[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
        ] {
            let mut conn = Conn::new(MockStream::new(bad));
            assert!(
                smol::block_on(conn.read_response_head(&HeadLimits::default())).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn idle_connection_releases_its_buffer() {
        let mut conn = Conn::new(MockStream::new(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(conn.buffer_capacity(), 0);
        smol::block_on(conn.read_request_head(&HeadLimits::default()))
            .unwrap()
            .unwrap();
        assert!(conn.buffer_capacity() > 0);
        conn.release_if_empty();
        assert_eq!(conn.buffer_capacity(), 0);
    }
}
