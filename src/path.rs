//! The one rule for request paths: what the policy judges and what the upstream receives are the same path.
//!
//! 1. Refused (400): a path that is not origin-form, or that holds an encoded slash or backslash (`%2F`, `%5C`), a
//!    raw backslash, a raw `#` (a fragment never belongs in a request; apps would cut the path there), an encoded NUL
//!    or control byte, a malformed percent escape, or a dot segment with parameters (`..;`, `.;x`, which Java
//!    servers read as `..` and `.`). Upstreams disagree about what these mean, so no one meaning can be judged.
//! 2. Percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, once (RFC 3986 §6.2.2.2), so
//!    `%2e%2e` is `..` and `%61dmin` is `admin`; other escapes stay as sent.
//! 3. Dot segments are removed (RFC 3986 §5.2.4): `/public/../admin` is `/admin`.
//!
//! The result is both forwarded and judged. For judging only, runs of `/` count as one and `;parameters` are
//! dropped from each segment, because many upstreams read `//admin` and `/admin;x=1` as `/admin`: judging on the
//! stricter form can only deny more, never less. Paths are case-sensitive, as RFC 3986 says.

#[derive(Debug, PartialEq, Eq)]
pub struct Normalized {
    /// Sent upstream (with the query appended by the caller).
    pub forward: String,
    /// Judged by the policy.
    pub judge: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PathError {
    NotAPath,
    EncodedSeparator,
    Backslash,
    Fragment,
    DotSegmentWithParameters,
    ControlByte,
    BadEscape,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathError::NotAPath => "the request path must start with /",
            PathError::EncodedSeparator => {
                "the request path holds an encoded slash or backslash (%2F, %5C), which postern refuses because servers disagree on what it means"
            }
            PathError::Backslash => "the request path holds a backslash, which postern refuses",
            PathError::Fragment => "the request target holds a raw #, which postern refuses (a fragment stays in the browser)",
            PathError::DotSegmentWithParameters => {
                "the request path holds a dot segment with parameters (like ..;), which postern refuses because servers disagree on what it means"
            }
            PathError::ControlByte => "the request path holds an encoded NUL or control character",
            PathError::BadEscape => "the request path holds a malformed percent escape",
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Steps 1 and 2: refuse the ambiguous, decode the unreserved.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let v = h * 16 + l;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    0..=0x1f | 0x7f => return Err(PathError::ControlByte),
                    _ if is_unreserved(v) => out.push(char::from(v)),
                    // Kept as sent, upper-cased hex (RFC 3986 §6.2.2.1).
                    _ => {
                        out.push('%');
                        out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                        out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b'#' => return Err(PathError::Fragment),
            _ => {
                // Only ASCII reaches here from the codec's request-target check; copy up to the next special byte.
                let start = i;
                while i < bytes.len() && !matches!(bytes[i], b'%' | b'\\' | b'#') {
                    i += 1;
                }
                out.push_str(&path[start..i]);
            }
        }
    }
    Ok(out)
}

/// Step 3: RFC 3986 §5.2.4 remove_dot_segments, on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// The form the policy judges: empty segments and `;parameters` gone.
fn judged_form(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        let seg = seg.split(';').next().unwrap_or_default();
        if seg.is_empty() && i != last {
            continue;
        }
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// Normalizes the path part of an origin-form request target (no query).
pub fn normalize(path: &str) -> Result<Normalized, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAPath);
    }
    let decoded = decode_unreserved(path)?;
    let dotted_params = decoded
        .split('/')
        .any(|seg| matches!(seg.split_once(';'), Some(("." | "..", _))));
    if dotted_params {
        return Err(PathError::DotSegmentWithParameters);
    }
    let forward = remove_dot_segments(&decoded);
    let judge = judged_form(&forward);
    Ok(Normalized { forward, judge })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> (String, String) {
        let n = normalize(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        (n.forward, n.judge)
    }

    #[test]
    fn b15_inputs() {
        // (sent, forwarded, judged)
        let cases = [
            ("/public/../admin/users", "/admin/users", "/admin/users"),
            ("/public/%2e%2e/admin/users", "/admin/users", "/admin/users"),
            ("/public/%2E%2E/admin/users", "/admin/users", "/admin/users"),
            ("//admin/users", "//admin/users", "/admin/users"),
            ("/./admin/users", "/admin/users", "/admin/users"),
            ("/ADMIN/users", "/ADMIN/users", "/ADMIN/users"),
            ("/admin;x=1/users", "/admin;x=1/users", "/admin/users"),
            ("/administrator", "/administrator", "/administrator"),
            ("/admin-old", "/admin-old", "/admin-old"),
            ("/foo//bar", "/foo//bar", "/foo/bar"),
            ("/%61dmin", "/admin", "/admin"),
            ("/../../etc/passwd", "/etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/", "/a/"),
            ("/a/.", "/a/", "/a/"),
            ("/", "/", "/"),
            ("/caf%c3%a9", "/caf%C3%A9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b", "/a%20b"),
        ];
        for (sent, fwd, judge) in cases {
            assert_eq!(ok(sent), (fwd.to_string(), judge.to_string()), "{sent}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        let cases = [
            ("/public%2F..%2Fadmin/users", PathError::EncodedSeparator),
            ("/admin%2fusers", PathError::EncodedSeparator),
            ("/public/..%5Cadmin/users", PathError::EncodedSeparator),
            ("/public/..\\admin", PathError::Backslash),
            ("/a%00b", PathError::ControlByte),
            ("/a%0d%0aX: y", PathError::ControlByte),
            ("/a%zz", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/admin#x", PathError::Fragment),
            ("/x/../admin#", PathError::Fragment),
            ("/x/..;/admin", PathError::DotSegmentWithParameters),
            ("/.;/admin", PathError::DotSegmentWithParameters),
            ("/%2e%2e;/admin", PathError::DotSegmentWithParameters),
            (
                "/x/..;jsessionid=1/admin",
                PathError::DotSegmentWithParameters,
            ),
            ("*", PathError::NotAPath),
            ("admin", PathError::NotAPath),
        ];
        for (sent, want) in cases {
            assert_eq!(normalize(sent), Err(want), "{sent}");
        }
    }
}
