//! A response postern makes itself (pages, redirects, JSON), as opposed to one it forwards.

use crate::http::Headers;

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        let mut headers = Headers::with_capacity(4);
        headers.append("content-type", content_type);
        headers.append("cache-control", "no-store");
        Reply {
            status,
            headers,
            body: body.into(),
        }
    }

    /// A `302 Found` to `location` (already validated by the caller: only policy or authenticate hosts).
    pub fn redirect(location: &str) -> Reply {
        let mut r = Reply::new(302, "text/plain; charset=utf-8", "Redirecting\n");
        r.headers.append("location", location);
        r
    }

    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body.into())
    }

    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(status, "application/json", body.into())
    }

    pub fn html(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(status, "text/html; charset=utf-8", body.into())
    }

    pub fn set_cookie(&mut self, cookie: String) {
        self.headers.append("set-cookie", cookie);
    }
}
