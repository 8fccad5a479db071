//! The pages people see: who they are, 403, 404, 401, 5xx, login failed, signed out.
//!
//! Browsers get small self-contained HTML (no external assets: the NAS may be offline, and a page must not leak the
//! visit to a CDN); scripts asking for JSON get JSON; everything else gets one line of plain text.

mod html;

use crate::http::Request;
use crate::reply::Reply;
use html::{escape, layout};

/// What kind of body the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
    Text,
}

/// Picks the body format from `Accept`: JSON when JSON is named before (or without) HTML, HTML when HTML is named
/// or anything goes (`*/*`, as browsers and curl send), text otherwise.
pub fn format_of(req: Option<&Request>) -> Format {
    let Some(accept) = req.and_then(|r| r.head.headers.get("accept")) else {
        return Format::Text;
    };
    let accept = accept.to_ascii_lowercase();
    let json = accept.find("application/json");
    let html = accept.find("text/html");
    match (json, html) {
        (Some(j), Some(h)) if j < h => Format::Json,
        (Some(_), None) => Format::Json,
        (_, Some(_)) => Format::Html,
        (None, None) if accept.contains("*/*") => Format::Html,
        _ => Format::Text,
    }
}

/// A JSON string literal (quotes included).
pub fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A page for a person or a script: `title` and `text` are plain text; `extra_html` is trusted markup.
fn page(
    req: Option<&Request>,
    status: u16,
    code: &str,
    title: &str,
    text: &str,
    extra_html: &str,
) -> Reply {
    match format_of(req) {
        Format::Html => {
            let body = format!(
                "<h1>{}</h1><p>{}</p>{}",
                escape(title),
                escape(text),
                extra_html
            );
            Reply::html(status, layout(title, &body))
        }
        Format::Json => Reply::json(
            status,
            format!(
                "{{\"status\":{status},\"{}\":{},\"message\":{}}}\n",
                if status >= 400 { "error" } else { "result" },
                json_str(code),
                json_str(text)
            ),
        ),
        Format::Text => Reply::text(status, format!("{status} {title}: {text}\n")),
    }
}

pub fn not_found(req: Option<&Request>, host: &str) -> Reply {
    page(
        req,
        404,
        "route_not_found",
        "Not found",
        &format!("There is no application at {host}. Check the address, or ask whoever runs this server to add a route for it."),
        "",
    )
}

pub fn no_route_for_path(req: Option<&Request>, host: &str, path: &str) -> Reply {
    page(
        req,
        404,
        "route_not_found",
        "Not found",
        &format!("{host} has no route for the path {path}."),
        "",
    )
}

/// 403: signed in, but this account may not use this application.
pub fn forbidden(
    req: Option<&Request>,
    host: &str,
    email: &str,
    reason: &str,
    sign_out_url: &str,
) -> Reply {
    let text =
        format!("You are signed in as {email}, and that account may not use {host}: {reason}.");
    let extra = format!(
        "<p>To use another account, sign out and sign in again.</p>{}",
        sign_out_form(sign_out_url)
    );
    let mut r = page(req, 403, "forbidden", "Access denied", &text, &extra);
    if format_of(req) == Format::Json {
        r.body = format!(
            "{{\"status\":403,\"error\":\"forbidden\",\"email\":{},\"host\":{},\"message\":{}}}\n",
            json_str(email),
            json_str(host),
            json_str(&text)
        )
        .into_bytes();
    }
    r
}

/// 401: a script (or a non-GET request) arrived without a session; it is not sent to the IdP.
pub fn unauthorized(req: Option<&Request>, sign_in_url: &str) -> Reply {
    let extra = format!(
        "<p><a class=\"button\" href=\"{}\">Sign in</a></p>",
        escape(sign_in_url)
    );
    page(
        req,
        401,
        "unauthenticated",
        "Sign-in required",
        "This request needs a signed-in session, and it has none (or it has expired). Sign in, then retry it.",
        &extra,
    )
}

/// 403: a WebSocket handshake on a route without `allow_websockets: true`.
pub fn websockets_disabled(req: Option<&Request>, host: &str) -> Reply {
    page(
        req,
        403,
        "websockets_disabled",
        "WebSockets are not enabled here",
        &format!("This request opens a WebSocket, and WebSockets are not enabled on the route for {host}. Whoever runs this server can enable them with allow_websockets: true on that route."),
        "",
    )
}

pub fn bad_request(req: Option<&Request>, detail: &str) -> Reply {
    page(req, 400, "bad_request", "Bad request", detail, "")
}

/// An error the wire layer found (400, 408, 413, 431, 502, 503, 504 …).
pub fn wire_error(req: Option<&Request>, status: u16, detail: &str) -> Reply {
    let (code, title) = match status {
        400 => ("bad_request", "Bad request"),
        408 => ("request_timeout", "Request timeout"),
        413 => ("payload_too_large", "Request too large"),
        414 => ("uri_too_long", "Address too long"),
        431 => ("headers_too_large", "Request headers too large"),
        502 => ("bad_gateway", "The application is not answering"),
        503 => ("unavailable", "Busy"),
        504 => ("gateway_timeout", "The application took too long"),
        _ => ("error", "Error"),
    };
    let hint = match status {
        502 => " postern could not get an answer from the application behind it; it may be stopped or starting up. Try again in a moment.",
        504 => " The application behind postern did not answer in time. Try again in a moment.",
        _ => "",
    };
    page(req, status, code, title, &format!("{detail}.{hint}"), "")
}

/// The login could not be completed (IdP said no, state did not match, the IdP is unreachable).
pub fn login_failed(req: Option<&Request>, status: u16, detail: &str, retry_url: &str) -> Reply {
    let extra = format!(
        "<p><a class=\"button\" href=\"{}\">Try again</a></p>",
        escape(retry_url)
    );
    page(
        req,
        status,
        "login_failed",
        "Sign-in failed",
        detail,
        &extra,
    )
}

/// The session has ended (or there is none); `sign_in_url` starts a new sign-in.
pub fn signed_out(req: Option<&Request>, sign_in_url: &str) -> Reply {
    let extra = format!(
        "<p><a class=\"button\" href=\"{}\">Sign in again</a></p>",
        escape(sign_in_url)
    );
    page(
        req,
        200,
        "signed_out",
        "Signed out",
        "You are signed out. Close this tab, or sign in again.",
        &extra,
    )
}

/// A one-button form that signs out by POST (a GET never signs out: any page could trigger one with an image).
/// No script: the browser sends `Origin` with the POST, which the sign-out checks.
fn sign_out_form(action: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\"><p><button class=\"button\" type=\"submit\">Sign out</button></p></form>",
        escape(action)
    )
}

/// `GET /.pomerium/sign_out`: asks before signing out of `host`; `action` is where the form posts.
pub fn sign_out_confirm(req: Option<&Request>, host: &str, action: &str) -> Reply {
    page(
        req,
        200,
        "confirm_sign_out",
        "Sign out?",
        &format!("Sign out of {host}? This ends your session on every application behind postern."),
        &sign_out_form(action),
    )
}

/// 403: a sign-out POST that did not come from a page of `host` itself (a cross-site form); the form here retries.
pub fn sign_out_refused(req: Option<&Request>, host: &str, action: &str) -> Reply {
    page(
        req,
        403,
        "sign_out_refused",
        "Sign-out refused",
        &format!("This sign-out request did not come from a page of {host}, so it was ignored (another site may have tried to sign you out). To sign out, use the button below."),
        &sign_out_form(action),
    )
}

/// What `/.pomerium/` shows about the signed-in user.
pub struct UserInfo<'a> {
    pub email: &'a str,
    pub email_verified: bool,
    pub name: Option<&'a str>,
    pub groups: &'a [String],
    pub expires: u64,
    pub host: &'a str,
}

pub fn user_page(req: Option<&Request>, u: &UserInfo<'_>, sign_out_url: &str) -> Reply {
    let expires = crate::clock::utc_timestamp(u.expires.saturating_mul(1000));
    match format_of(req) {
        Format::Json => {
            let groups: Vec<String> = u.groups.iter().map(|g| json_str(g)).collect();
            Reply::json(
                200,
                format!(
                    "{{\"email\":{},\"email_verified\":{},\"name\":{},\"groups\":[{}],\"expires\":{},\"expires_at\":{},\"host\":{}}}\n",
                    json_str(u.email),
                    u.email_verified,
                    u.name.map(json_str).unwrap_or_else(|| "null".into()),
                    groups.join(","),
                    u.expires,
                    json_str(&expires),
                    json_str(u.host)
                ),
            )
        }
        Format::Text => Reply::text(
            200,
            format!(
                "email: {}\nname: {}\ngroups: {}\nsession expires: {expires}\n",
                u.email,
                u.name.unwrap_or("-"),
                u.groups.join(", ")
            ),
        ),
        Format::Html => {
            let groups = if u.groups.is_empty() {
                "<em>none</em>".to_string()
            } else {
                u.groups
                    .iter()
                    .map(|g| escape(g))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let verified = if u.email_verified {
                ""
            } else {
                " <em>(not verified)</em>"
            };
            let body = format!(
                "<h1>Signed in</h1><table>\
                 <tr><th>Email</th><td id=\"email\">{}{verified}</td></tr>\
                 <tr><th>Name</th><td>{}</td></tr>\
                 <tr><th>Groups</th><td>{groups}</td></tr>\
                 <tr><th>Session expires</th><td>{}</td></tr>\
                 <tr><th>Application</th><td>{}</td></tr></table>{}",
                escape(u.email),
                escape(u.name.unwrap_or("-")),
                escape(&expires),
                escape(u.host),
                sign_out_form(sign_out_url)
            );
            Reply::html(200, layout("Signed in", &body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Headers, RequestHead, Version};

    fn req(accept: Option<&str>) -> Request {
        let mut headers = Headers::default();
        if let Some(a) = accept {
            headers.append("accept", a);
        }
        Request {
            head: RequestHead {
                method: "GET".into(),
                target: "/".into(),
                version: Version::Http11,
                headers,
            },
            peer: "127.0.0.1:1".parse().expect("literal address"),
        }
    }

    #[test]
    fn format_follows_accept() {
        let cases = [
            (None, Format::Text),
            (
                Some("text/html,application/xhtml+xml,*/*;q=0.8"),
                Format::Html,
            ),
            (Some("application/json"), Format::Json),
            (Some("application/json, text/html"), Format::Json),
            (Some("text/html, application/json"), Format::Html),
            (Some("*/*"), Format::Html),
            (Some("text/plain"), Format::Text),
        ];
        for (accept, want) in cases {
            assert_eq!(format_of(Some(&req(accept))), want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn forbidden_names_the_account_and_escapes_it() {
        let r = forbidden(
            Some(&req(Some("text/html"))),
            "app.example.com",
            "<b>@x",
            "not on the list",
            "/s",
        );
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 403);
        assert!(body.contains("&lt;b&gt;@x"), "{body}");
        assert!(!body.contains("<b>@x"));
        let j = forbidden(
            Some(&req(Some("application/json"))),
            "h",
            "bob@example.com",
            "r",
            "/s",
        );
        let v: serde_json::Value = serde_json::from_slice(&j.body).expect("json body");
        assert_eq!(v["email"], "bob@example.com");
    }
}
