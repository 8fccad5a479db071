//! The small pages the sign-in flow shows itself: login failed (with a retry link), a bad or expired link, signed
//! out. Self-contained HTML for browsers, plain text for other clients. Kept here, behind one function each, so the
//! pages module can restyle them without touching the flow.

use crate::http::Headers;
use crate::reply::Reply;

/// True when the client prefers a page (a browser) over plain text.
pub fn wants_html(headers: &Headers) -> bool {
    headers.get_all("accept").any(|a| a.contains("text/html"))
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn page(status: u16, title: &str, message: &str, link: Option<(&str, &str)>, html: bool) -> Reply {
    if !html {
        let mut body = format!("{title}\n{message}\n");
        if let Some((href, label)) = link {
            body.push_str(&format!("{label}: {href}\n"));
        }
        return Reply::text(status, body);
    }
    let link = link
        .map(|(href, label)| format!("<p><a href=\"{}\">{}</a></p>", escape(href), escape(label)))
        .unwrap_or_default();
    Reply::html(
        status,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
             content=\"width=device-width\"><title>{t}</title><style>body{{font-family:system-ui,sans-serif;\
             max-width:36em;margin:4em auto;padding:0 1em;color:#222}}h1{{font-size:1.4em}}</style></head>\
             <body><h1>{t}</h1><p>{m}</p>{link}</body></html>\n",
            t = escape(title),
            m = escape(message),
        ),
    )
}

/// Sign-in did not complete: the IdP said no, the state did not match this browser, or the IdP is unreachable.
/// `retry` restarts the sign-in (the page the user wanted).
pub fn login_failed(status: u16, reason: &str, retry: Option<&str>, html: bool) -> Reply {
    page(
        status,
        "Sign-in failed",
        reason,
        retry.map(|r| (r, "Try signing in again")),
        html,
    )
}

/// A sign-in, hand-off or sign-out link that is malformed, expired, or points somewhere postern does not serve.
pub fn bad_link(reason: &str, html: bool) -> Reply {
    page(400, "Invalid sign-in link", reason, None, html)
}

/// The session has ended on the authenticate host.
pub fn signed_out(sign_in_again: Option<&str>, html: bool) -> Reply {
    page(
        200,
        "Signed out",
        "You are signed out. The next sign-in will ask the identity provider who you are.",
        sign_in_again.map(|r| (r, "Sign in again")),
        html,
    )
}

pub fn not_found(html: bool) -> Reply {
    page(
        404,
        "Not found",
        "The authenticate service has no page here.",
        None,
        html,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_negotiation() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        let r = login_failed(400, "state <mismatch>", Some("https://a/?x=\"1\""), true);
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            body.contains("state &lt;mismatch&gt;")
                && body.contains("href=\"https://a/?x=&quot;1&quot;\"")
        );
        assert_eq!(r.status, 400);
        let r = signed_out(None, false);
        assert_eq!(
            r.headers.get("content-type"),
            Some("text/plain; charset=utf-8")
        );
        let mut h = Headers::new();
        h.append("Accept", "text/html,application/xhtml+xml");
        assert!(wants_html(&h));
        assert!(!wants_html(&Headers::new()));
    }
}
