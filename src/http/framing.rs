//! Message body framing (RFC 9112 §6): from a head, decide how the body that follows is delimited.
//!
//! Request framing is strict, because a proxy that reads a body one way while the upstream reads it another is how
//! request smuggling happens: both `Content-Length` and `Transfer-Encoding`, differing lengths, or any coding but
//! `chunked` are refused.

use std::fmt;

use super::{Headers, RequestHead, ResponseHead, Version};

/// How a message body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes (responses only).
    UntilClose,
}

/// Why a message's framing cannot be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FramingError {
    /// Both `Content-Length` and `Transfer-Encoding` are present.
    LengthAndTransferEncoding,
    /// A `Content-Length` value is not a plain decimal number.
    BadContentLength(String),
    /// Several `Content-Length` values that differ.
    ConflictingContentLength,
    /// A transfer coding other than a lone `chunked`.
    UnsupportedTransferEncoding(String),
    /// `Transfer-Encoding` in an HTTP/1.0 message, which cannot carry it.
    TransferEncodingInHttp10,
}

impl FramingError {
    /// The status to answer a request with this framing problem.
    pub fn status(&self) -> u16 {
        match self {
            FramingError::UnsupportedTransferEncoding(_) => 501,
            _ => 400,
        }
    }
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::LengthAndTransferEncoding => f.write_str(
                "the message has both Content-Length and Transfer-Encoding; send only one",
            ),
            FramingError::BadContentLength(v) => {
                write!(f, "Content-Length `{v}` is not a decimal number of bytes")
            }
            FramingError::ConflictingContentLength => {
                f.write_str("the message has several different Content-Length values")
            }
            FramingError::UnsupportedTransferEncoding(v) => {
                write!(
                    f,
                    "Transfer-Encoding `{v}` is not supported; only `chunked` is"
                )
            }
            FramingError::TransferEncodingInHttp10 => {
                f.write_str("an HTTP/1.0 message cannot use Transfer-Encoding")
            }
        }
    }
}

impl std::error::Error for FramingError {}

/// The body framing of a request (RFC 9112 §6.3 rules 3-6 for requests).
pub fn request_body(head: &RequestHead) -> Result<BodyKind, FramingError> {
    match message_body(head.version, &head.headers)? {
        // A request without framing headers has no body; it never runs until close.
        BodyKind::UntilClose => Ok(BodyKind::None),
        kind => Ok(kind),
    }
}

/// The body framing of a response to a request with `method` (RFC 9112 §6.3 rules 1-7).
pub fn response_body(method: &str, head: &ResponseHead) -> Result<BodyKind, FramingError> {
    if method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304
    {
        return Ok(BodyKind::None);
    }
    message_body(head.version, &head.headers)
}

/// Framing from the headers alone; `UntilClose` when neither header is present.
fn message_body(version: Version, headers: &Headers) -> Result<BodyKind, FramingError> {
    let has_te = headers.contains("transfer-encoding");
    let has_cl = headers.contains("content-length");
    if has_te {
        if has_cl {
            return Err(FramingError::LengthAndTransferEncoding);
        }
        if version == Version::Http10 {
            return Err(FramingError::TransferEncodingInHttp10);
        }
        let mut codings = headers
            .get_all("transfer-encoding")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty());
        return match (codings.next(), codings.next()) {
            (Some(c), None) if c.eq_ignore_ascii_case("chunked") => Ok(BodyKind::Chunked),
            _ => {
                let all: Vec<&str> = headers.get_all("transfer-encoding").collect();
                Err(FramingError::UnsupportedTransferEncoding(all.join(", ")))
            }
        };
    }
    if has_cl {
        let mut length = None;
        for value in headers.get_all("content-length").flat_map(|v| v.split(',')) {
            let n = parse_content_length(value.trim())?;
            match length {
                Some(l) if l != n => return Err(FramingError::ConflictingContentLength),
                _ => length = Some(n),
            }
        }
        return match length {
            Some(n) => Ok(BodyKind::Length(n)),
            None => Err(FramingError::BadContentLength(String::new())),
        };
    }
    Ok(BodyKind::UntilClose)
}

/// `1*DIGIT`, nothing else (no sign, no spaces, no hex), and it must fit in a u64.
pub fn parse_content_length(value: &str) -> Result<u64, FramingError> {
    let bad = || FramingError::BadContentLength(value.chars().take(40).collect());
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    value.parse::<u64>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, headers: &[(&str, &str)]) -> RequestHead {
        let mut h = Headers::default();
        for (n, v) in headers {
            h.append(n, *v);
        }
        RequestHead {
            method: "POST".into(),
            target: "/".into(),
            version,
            headers: h,
        }
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
        let mut h = Headers::default();
        for (n, v) in headers {
            h.append(n, *v);
        }
        ResponseHead {
            version: Version::Http11,
            status,
            reason: String::new(),
            headers: h,
        }
    }

    type Fields = Vec<(&'static str, &'static str)>;

    #[test]
    fn request_framing_table() {
        use BodyKind::*;
        use FramingError::*;
        let v11 = Version::Http11;
        let cases: Vec<(Version, Fields, Result<BodyKind, FramingError>)> = vec![
            (v11, vec![], Ok(None)),
            (Version::Http10, vec![], Ok(None)),
            (v11, vec![("content-length", "12")], Ok(Length(12))),
            (v11, vec![("content-length", "0")], Ok(Length(0))),
            (
                v11,
                vec![("content-length", "5"), ("content-length", "5")],
                Ok(Length(5)),
            ),
            (v11, vec![("content-length", "5, 5")], Ok(Length(5))),
            (
                v11,
                vec![("content-length", "5"), ("content-length", "6")],
                Err(ConflictingContentLength),
            ),
            (
                v11,
                vec![("content-length", "+5")],
                Err(BadContentLength("+5".into())),
            ),
            (
                v11,
                vec![("content-length", "-1")],
                Err(BadContentLength("-1".into())),
            ),
            (
                v11,
                vec![("content-length", "0x10")],
                Err(BadContentLength("0x10".into())),
            ),
            (
                v11,
                vec![("content-length", "")],
                Err(BadContentLength("".into())),
            ),
            (
                v11,
                vec![("content-length", "99999999999999999999999")],
                Err(BadContentLength("99999999999999999999999".into())),
            ),
            (v11, vec![("transfer-encoding", "chunked")], Ok(Chunked)),
            (v11, vec![("transfer-encoding", "Chunked")], Ok(Chunked)),
            (
                v11,
                vec![("transfer-encoding", "chunked"), ("content-length", "3")],
                Err(LengthAndTransferEncoding),
            ),
            (
                v11,
                vec![("transfer-encoding", "gzip, chunked")],
                Err(UnsupportedTransferEncoding("gzip, chunked".into())),
            ),
            (
                v11,
                vec![("transfer-encoding", "chunked, chunked")],
                Err(UnsupportedTransferEncoding("chunked, chunked".into())),
            ),
            (
                v11,
                vec![("transfer-encoding", "identity")],
                Err(UnsupportedTransferEncoding("identity".into())),
            ),
            (
                v11,
                vec![("transfer-encoding", "")],
                Err(UnsupportedTransferEncoding("".into())),
            ),
            (
                Version::Http10,
                vec![("transfer-encoding", "chunked")],
                Err(TransferEncodingInHttp10),
            ),
        ];
        for (version, headers, want) in cases {
            assert_eq!(
                request_body(&req(version, &headers)),
                want,
                "{version:?} {headers:?}"
            );
        }
    }

    #[test]
    fn response_framing_table() {
        use BodyKind::*;
        let cases: Vec<(&str, u16, Fields, BodyKind)> = vec![
            ("GET", 200, vec![("content-length", "3")], Length(3)),
            ("HEAD", 200, vec![("content-length", "3")], None),
            ("GET", 204, vec![], None),
            ("GET", 304, vec![("content-length", "3")], None),
            ("GET", 100, vec![], None),
            ("GET", 200, vec![("transfer-encoding", "chunked")], Chunked),
            ("GET", 200, vec![], UntilClose),
            ("POST", 404, vec![("content-length", "0")], Length(0)),
        ];
        for (method, status, headers, want) in cases {
            assert_eq!(
                response_body(method, &resp(status, &headers)),
                Ok(want),
                "{method} {status} {headers:?}"
            );
        }
        assert!(response_body("GET", &resp(200, &[("content-length", "x")])).is_err());
    }

    #[test]
    fn unsupported_coding_is_501() {
        assert_eq!(
            FramingError::UnsupportedTransferEncoding("gzip".into()).status(),
            501
        );
        assert_eq!(FramingError::LengthAndTransferEncoding.status(), 400);
    }
}
