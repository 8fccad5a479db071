//! Writing messages: request and response heads, and the chunked transfer coding.
//!
//! Header fields come partly from places a client or IdP controls (claims copied into identity headers, route
//! settings); a name that is not a token or a value with CR, LF or NUL would split the head, so such a field is
//! dropped (and logged by name) instead of written.

use std::ops::Range;

use smol::io::{AsyncRead, AsyncWrite};

use super::conn::Conn;
use super::{Headers, RequestHead, ResponseHead};

/// Room kept before chunk data in a copy buffer for the chunk-size line (16 hex digits + CRLF).
pub const CHUNK_PREFIX: usize = 18;
/// Room kept after chunk data for its CRLF.
pub const CHUNK_SUFFIX: usize = 2;
/// The last chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Serializes a request head into `out`.
pub fn request_head(head: &RequestHead, out: &mut Vec<u8>) {
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.version.as_str().as_bytes());
    out.extend_from_slice(b"\r\n");
    headers(&head.headers, out);
}

/// Serializes a response head into `out`; an empty reason is replaced by the standard one.
pub fn response_head(head: &ResponseHead, out: &mut Vec<u8>) {
    out.extend_from_slice(head.version.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.status.to_string().as_bytes());
    out.push(b' ');
    let reason = if head.reason.is_empty() || !head.reason.bytes().all(|b| b == b'\t' || b >= b' ')
    {
        reason(head.status)
    } else {
        head.reason.as_str()
    };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    headers(&head.headers, out);
}

fn headers(headers: &Headers, out: &mut Vec<u8>) {
    for (name, value) in headers.iter() {
        if !valid_name(name) || !valid_value(value) {
            log::warn!(
                "dropping header `{}`: its name or value cannot be written safely",
                name.escape_debug()
            );
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// RFC 9110 token.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// No CR, LF, NUL or other control characters but HTAB.
pub fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

/// Frames chunk data that sits at `buf[CHUNK_PREFIX..CHUNK_PREFIX + len]`: writes the size line just before it and
/// CRLF after it, and returns the range to send. `buf` needs `CHUNK_PREFIX + len + CHUNK_SUFFIX` bytes; `len > 0`.
pub fn frame_chunk(buf: &mut [u8], len: usize) -> Option<Range<usize>> {
    let end = CHUNK_PREFIX.checked_add(len)?;
    buf.get_mut(end..end + CHUNK_SUFFIX)?
        .copy_from_slice(b"\r\n");
    let size = format!("{len:x}\r\n");
    let start = CHUNK_PREFIX.checked_sub(size.len())?;
    buf.get_mut(start..CHUNK_PREFIX)?
        .copy_from_slice(size.as_bytes());
    Some(start..end + CHUNK_SUFFIX)
}

/// Writes one chunk (a convenience for small bodies; streaming code uses `frame_chunk` to avoid copies).
#[allow(dead_code)] // used by client.rs
pub async fn write_chunk<S>(conn: &mut Conn<S>, data: &[u8]) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if data.is_empty() {
        return Ok(());
    }
    conn.write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    conn.write_all(data).await?;
    conn.write_all(b"\r\n").await
}

/// The standard reason phrase for a status.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::BodyReader;
    use crate::http::conn::tests::MockStream;
    use crate::http::framing::BodyKind;
    use crate::http::Version;

    #[test]
    fn heads_are_written_byte_exact() {
        let mut h = Headers::default();
        h.append("host", "app.example");
        h.append("x-bad", "a\r\nInjected: yes");
        h.append("bad name", "v");
        h.append("content-length", "0");
        let head = RequestHead {
            method: "GET".into(),
            target: "/p?q".into(),
            version: Version::Http11,
            headers: h,
        };
        let mut out = Vec::new();
        request_head(&head, &mut out);
        assert_eq!(
            out,
            b"GET /p?q HTTP/1.1\r\nhost: app.example\r\ncontent-length: 0\r\n\r\n"
        );

        let head = ResponseHead {
            version: Version::Http10,
            status: 404,
            reason: String::new(),
            headers: Headers::default(),
        };
        let mut out = Vec::new();
        response_head(&head, &mut out);
        assert_eq!(out, b"HTTP/1.0 404 Not Found\r\n\r\n");
    }

    #[test]
    fn framed_chunks_decode_back() {
        let mut wire = Vec::new();
        for piece in [&b"hello"[..], &[b'x'; 300][..]] {
            let mut buf = vec![0u8; CHUNK_PREFIX + piece.len() + CHUNK_SUFFIX];
            buf[CHUNK_PREFIX..CHUNK_PREFIX + piece.len()].copy_from_slice(piece);
            let range = frame_chunk(&mut buf, piece.len()).unwrap();
            wire.extend_from_slice(&buf[range]);
        }
        wire.extend_from_slice(LAST_CHUNK);
        assert!(wire.starts_with(b"5\r\nhello\r\n12c\r\n"));
        let mut conn = Conn::new(MockStream::new(&wire));
        let body = smol::block_on(BodyReader::new(BodyKind::Chunked).read_to_end(&mut conn, 1000))
            .unwrap();
        assert_eq!(body.len(), 305);
    }

    #[test]
    fn write_chunk_encodes() {
        let mut conn = Conn::new(MockStream::new(b""));
        smol::block_on(write_chunk(&mut conn, b"abc")).unwrap();
        assert_eq!(conn.get_ref().output, b"3\r\nabc\r\n");
    }
}
