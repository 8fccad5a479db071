//! Reading a message body as it streams: decodes `chunked` strictly, counts down `Content-Length`, or reads until
//! close, and never reads past the end of the message, so the next pipelined message stays in the buffer.

use std::fmt;
use std::io;

use smol::io::{AsyncRead, AsyncWrite};

use super::conn::Conn;
use super::framing::BodyKind;

/// Longest chunk-size line accepted (size plus extensions, which are skipped).
const MAX_CHUNK_LINE: usize = 4096;
/// Total bytes of trailer fields accepted (kept for the forwarder to pass on, see `take_trailers`).
const MAX_TRAILERS: usize = 8192;
/// Read buffer bound while looking for a line end.
const LINE_BUF: usize = MAX_CHUNK_LINE + 16;

/// Why a body could not be read to its end.
#[derive(Debug)]
pub enum BodyError {
    /// The peer closed before the body's declared end.
    UnexpectedEof,
    /// The chunked encoding is broken; the text says how.
    BadChunk(String),
    /// Trailer fields over the bound.
    TrailersTooLarge,
    /// The body is longer than the caller accepts (`read_to_end`).
    #[allow(dead_code)] // constructed by read_to_end, used by client.rs
    TooLong(usize),
    Io(io::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::UnexpectedEof => {
                f.write_str("the connection closed before the end of the body")
            }
            BodyError::BadChunk(what) => write!(f, "bad chunked encoding: {what}"),
            BodyError::TrailersTooLarge => write!(
                f,
                "chunked trailer fields are larger than {MAX_TRAILERS} bytes"
            ),
            BodyError::TooLong(max) => write!(f, "the body is longer than {max} bytes"),
            BodyError::Io(e) => write!(f, "reading a body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl From<io::Error> for BodyError {
    fn from(e: io::Error) -> Self {
        BodyError::Io(e)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers(usize),
    UntilClose,
    Done,
}

/// The decoding state of one body. It borrows the connection only while reading, so the connection stays usable.
#[derive(Clone, Debug)]
pub struct BodyReader {
    kind: BodyKind,
    state: State,
    read: u64,
    /// Trailer fields of a chunked body, lower-cased names; fields that could not be written back are dropped.
    trailers: Vec<(String, String)>,
}

impl BodyReader {
    pub fn new(kind: BodyKind) -> Self {
        let state = match kind {
            BodyKind::None | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::ChunkSize,
            BodyKind::UntilClose => State::UntilClose,
        };
        BodyReader {
            kind,
            state,
            read: 0,
            trailers: Vec::new(),
        }
    }

    /// The framing this reader decodes.
    pub fn kind(&self) -> BodyKind {
        self.kind
    }

    /// True once the whole body (and chunked trailers) has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer fields read so far (all of them once `is_done`), leaving none behind.
    pub fn take_trailers(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.trailers)
    }

    /// Body bytes returned so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Reads body bytes into `out`; Ok(0) means the body is complete.
    pub async fn read<S>(&mut self, conn: &mut Conn<S>, out: &mut [u8]) -> Result<usize, BodyError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Length(rest) => {
                    let n = read_bounded(conn, out, rest).await?;
                    self.state = if rest == n as u64 {
                        State::Done
                    } else {
                        State::Length(rest - n as u64)
                    };
                    self.read += n as u64;
                    return Ok(n);
                }
                State::ChunkData(rest) => {
                    let n = read_bounded(conn, out, rest).await?;
                    self.state = if rest == n as u64 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(rest - n as u64)
                    };
                    self.read += n as u64;
                    return Ok(n);
                }
                State::UntilClose => {
                    let n = conn.read_some(out).await?;
                    if n == 0 {
                        self.state = State::Done;
                    }
                    self.read += n as u64;
                    return Ok(n);
                }
                State::ChunkSize => {
                    let line = read_line(conn, MAX_CHUNK_LINE, false).await?;
                    let size = parse_chunk_size(conn.buffered().get(..line).unwrap_or(&[]))?;
                    conn.consume(line);
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkEnd => {
                    while conn.buffered().len() < 2 {
                        if conn.fill(LINE_BUF).await? == 0 {
                            return Err(BodyError::UnexpectedEof);
                        }
                    }
                    if conn.buffered().get(..2) != Some(b"\r\n") {
                        return Err(BodyError::BadChunk(
                            "chunk data is not followed by CRLF".into(),
                        ));
                    }
                    conn.consume(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers(seen) => {
                    let line =
                        read_line(conn, MAX_TRAILERS.saturating_sub(seen).max(2), true).await?;
                    if let Some(field) = trailer_field(conn.buffered().get(..line).unwrap_or(&[])) {
                        self.trailers.push(field);
                    }
                    conn.consume(line);
                    let seen = seen + line;
                    if line == 2 {
                        self.state = State::Done;
                    } else if seen > MAX_TRAILERS {
                        return Err(BodyError::TrailersTooLarge);
                    } else {
                        self.state = State::Trailers(seen);
                    }
                }
            }
        }
    }

    #[allow(dead_code)] // used by client.rs
    /// Reads the rest of the body into memory, refusing more than `max` bytes (for small bodies such as IdP replies).
    pub async fn read_to_end<S>(
        &mut self,
        conn: &mut Conn<S>,
        max: usize,
    ) -> Result<Vec<u8>, BodyError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut body = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self.read(conn, &mut buf).await?;
            if n == 0 {
                return Ok(body);
            }
            if body.len() + n > max {
                return Err(BodyError::TooLong(max));
            }
            body.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads and discards the rest of the body, up to `max` bytes. Ok(true) when the body ended within the bound,
    /// so the connection can carry another message.
    pub async fn drain<S>(&mut self, conn: &mut Conn<S>, max: u64) -> Result<bool, BodyError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let start = self.read;
        // On the heap: this runs rarely, and an array here would enlarge every connection task.
        let mut buf = vec![0u8; 4096];
        while !self.is_done() {
            if self.read - start > max {
                return Ok(false);
            }
            if self.read(conn, &mut buf).await? == 0 {
                break;
            }
        }
        Ok(true)
    }
}

/// `name: value` of one trailer line (with its CRLF); None for the blank line and for anything that is not a field
/// that can be written back safely.
fn trailer_field(line: &[u8]) -> Option<(String, String)> {
    let line = std::str::from_utf8(line.strip_suffix(b"\r\n")?).ok()?;
    let (name, value) = line.split_once(':')?;
    let value = value.trim_matches([' ', '\t']);
    (super::encode::valid_name(name) && super::encode::valid_value(value))
        .then(|| (name.to_ascii_lowercase(), value.to_string()))
}

/// Reads at most `rest` bytes into `out`.
async fn read_bounded<S>(conn: &mut Conn<S>, out: &mut [u8], rest: u64) -> Result<usize, BodyError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let want = usize::try_from(rest).unwrap_or(usize::MAX).min(out.len());
    let n = conn.read_some(&mut out[..want]).await?;
    if n == 0 {
        return Err(BodyError::UnexpectedEof);
    }
    Ok(n)
}

/// Buffers one CRLF-terminated line of at most `max` bytes and returns its length including the CRLF.
async fn read_line<S>(conn: &mut Conn<S>, max: usize, trailer: bool) -> Result<usize, BodyError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut scanned = 0;
    loop {
        let data = conn.buffered();
        if let Some(pos) = data.iter().skip(scanned).position(|&b| b == b'\n') {
            let lf = scanned + pos;
            if lf == 0 || data.get(lf - 1) != Some(&b'\r') {
                return Err(BodyError::BadChunk(
                    "line ends with a bare LF, not CRLF".into(),
                ));
            }
            if lf + 1 > max {
                return Err(line_too_long(trailer));
            }
            return Ok(lf + 1);
        }
        scanned = data.len();
        if scanned >= max {
            return Err(line_too_long(trailer));
        }
        if conn.fill(LINE_BUF.max(max + 2)).await? == 0 {
            return Err(BodyError::UnexpectedEof);
        }
    }
}

fn line_too_long(trailer: bool) -> BodyError {
    if trailer {
        BodyError::TrailersTooLarge
    } else {
        BodyError::BadChunk(format!(
            "a chunk-size line is longer than {MAX_CHUNK_LINE} bytes"
        ))
    }
}

/// `chunk-size [ BWS ";" chunk-ext ] CRLF`: hex digits only (no sign, no `0x`, no leading space); extensions are
/// skipped but may not contain control characters.
fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let bad = |what: &str| {
        BodyError::BadChunk(format!(
            "{what} in chunk-size line `{}`",
            String::from_utf8_lossy(line).trim_end()
        ))
    };
    let line = line.strip_suffix(b"\r\n").ok_or_else(|| bad("no CRLF"))?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(bad("no hex size"));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(d))
            .ok_or_else(|| bad("size overflows"))?;
    }
    let rest = &line[digits..];
    let ws = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let after_ws = rest.get(ws..).unwrap_or(&[]);
    match after_ws.first() {
        None if rest.is_empty() => Ok(size),
        Some(b';')
            if after_ws
                .iter()
                .all(|&b| b == b'\t' || (b' '..0x7f).contains(&b) || b >= 0x80) =>
        {
            Ok(size)
        }
        _ => Err(bad("unexpected characters")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::conn::tests::MockStream;
    use crate::http::conn::HeadLimits;

    fn decode(kind: BodyKind, input: &[u8], step: usize) -> (Result<Vec<u8>, BodyError>, Vec<u8>) {
        let mut conn = Conn::new(MockStream::stepped(input, step));
        let mut reader = BodyReader::new(kind);
        let body = smol::block_on(reader.read_to_end(&mut conn, 1 << 20));
        let rest = conn.buffered().to_vec();
        let mut unread = rest;
        unread.extend_from_slice(&conn.get_ref().input[conn.get_ref().pos..]);
        (body, unread)
    }

    #[test]
    fn trailers_are_kept_for_the_forwarder() {
        let input = b"3\r\nabc\r\n0\r\nX-Checksum: sha256=1\r\nbad line\r\nX-Ok:\tv \r\n\r\nNEXT";
        for step in [1, 3, 100] {
            let mut conn = Conn::new(MockStream::stepped(input, step));
            let mut r = BodyReader::new(BodyKind::Chunked);
            let body = smol::block_on(r.read_to_end(&mut conn, 100)).unwrap();
            assert_eq!(body, b"abc");
            let want = [
                ("x-checksum".to_string(), "sha256=1".to_string()),
                ("x-ok".to_string(), "v".to_string()),
            ];
            assert_eq!(r.take_trailers(), want, "step {step}");
            assert!(r.take_trailers().is_empty());
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let input = b"5;name=value\r\nhello\r\n6 ; ext\r\n world\r\n0\r\nX-Trailer: t\r\nX-Other: o\r\n\r\nGET /next";
        for step in [1, 3, 1000] {
            let (body, rest) = decode(BodyKind::Chunked, input, step);
            assert_eq!(body.unwrap(), b"hello world", "step {step}");
            assert_eq!(rest, b"GET /next", "step {step}");
        }
    }

    #[test]
    fn content_length_stops_at_the_end() {
        for step in [1, 2, 100] {
            let (body, rest) = decode(BodyKind::Length(5), b"helloGET /", step);
            assert_eq!(body.unwrap(), b"hello");
            assert_eq!(rest, b"GET /");
        }
        let (body, _) = decode(BodyKind::Length(10), b"short", 100);
        assert!(matches!(body, Err(BodyError::UnexpectedEof)));
    }

    #[test]
    fn until_close_reads_everything() {
        let (body, _) = decode(BodyKind::UntilClose, b"all of it", 4);
        assert_eq!(body.unwrap(), b"all of it");
    }

    #[test]
    fn bad_chunks_table() {
        let cases: &[&[u8]] = &[
            b"x\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 6\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"ffffffffffffffffff\r\n",
            b"5;a=\x01\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhel",
            b"5\r\nhello\r\n0\r\n",
        ];
        for input in cases {
            let (body, _) = decode(BodyKind::Chunked, input, 2);
            assert!(
                body.is_err(),
                "{:?} decoded to {body:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn trailers_are_bounded() {
        let mut input = b"0\r\n".to_vec();
        for _ in 0..200 {
            input.extend_from_slice(
                b"X-Trailer: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        input.extend_from_slice(b"\r\n");
        let (body, _) = decode(BodyKind::Chunked, &input, 100);
        assert!(matches!(body, Err(BodyError::TrailersTooLarge)), "{body:?}");
    }

    #[test]
    fn pipelined_requests_with_bodies() {
        let input = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
GET /c HTTP/1.0\r\n\r\n";
        let mut conn = Conn::new(MockStream::stepped(input, 9));
        let limits = HeadLimits::default();
        let mut seen = Vec::new();
        smol::block_on(async {
            while let Some(head) = conn.read_request_head(&limits).await.unwrap() {
                let kind = crate::http::framing::request_body(&head).unwrap();
                let body = BodyReader::new(kind)
                    .read_to_end(&mut conn, 100)
                    .await
                    .unwrap();
                seen.push((head.target.clone(), String::from_utf8(body).unwrap()));
            }
        });
        let want: Vec<(String, String)> = [("/a", "abc"), ("/b", "de"), ("/c", "")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn drain_stops_at_the_bound() {
        let mut conn = Conn::new(MockStream::new(&[b'a'; 5000]));
        let mut reader = BodyReader::new(BodyKind::Length(5000));
        assert!(!smol::block_on(reader.drain(&mut conn, 1000)).unwrap());
        let mut conn = Conn::new(MockStream::new(&[b'a'; 500]));
        let mut reader = BodyReader::new(BodyKind::Length(500));
        assert!(smol::block_on(reader.drain(&mut conn, 1000)).unwrap());
    }

    #[test]
    fn read_to_end_is_bounded() {
        let mut conn = Conn::new(MockStream::new(&[b'a'; 5000]));
        let mut reader = BodyReader::new(BodyKind::UntilClose);
        assert!(matches!(
            smol::block_on(reader.read_to_end(&mut conn, 100)),
            Err(BodyError::TooLong(100))
        ));
    }
}
