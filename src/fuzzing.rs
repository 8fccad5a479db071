//! Entry points for the fuzz targets in fuzz/ (`make fuzz`): each takes arbitrary bytes and must never panic,
//! hang or allocate without bound. They go through postern's real request path, not around it.

use std::cell::OnceCell;
use std::path::Path;

use base64::Engine;

use crate::authn::{Authn, AuthnSettings};
use crate::handle::App;
use crate::http::conn::parse_request;
use crate::http::{HeadLimits, Request};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn env(name: &str) -> Option<String> {
    let v = match name {
        "ADDRESS" => "127.0.0.1:0",
        "INSECURE_SERVER" => "true",
        "AUTHENTICATE_SERVICE_URL" => "https://auth.example.com",
        "IDP_PROVIDER" => "oidc",
        "IDP_PROVIDER_URL" => "http://127.0.0.1:9",
        "IDP_CLIENT_ID" => "postern",
        "IDP_CLIENT_SECRET" => "secret",
        "COOKIE_SECRET" | "SHARED_SECRET" => KEY,
        _ => return None,
    };
    Some(v.to_owned())
}

const POLICY: &str = "
- from: https://app.example.com
  prefix: /admin
  to: http://127.0.0.1:9
  allowed_users: [root@example.com]
- from: https://app.example.com
  to: http://127.0.0.1:9
  allowed_domains: [example.com]
  pass_identity_headers: true
- from: https://public.example.com:8443
  to: http://[::1]:9
  allow_public_unauthenticated_access: true
- from: https://re.example.com
  regex: '^/(a|b)+/[0-9]{1,3}$'
  to: http://127.0.0.1:9
  allowed_groups: [staff]
";

thread_local! {
    static APP: OnceCell<Option<App>> = const { OnceCell::new() };
}

fn with_app(f: impl FnOnce(&App)) {
    APP.with(|cell| {
        let app = cell.get_or_init(|| {
            let policy = base64::engine::general_purpose::STANDARD.encode(POLICY);
            let env = |n: &str| {
                if n == "POLICY" {
                    Some(policy.clone())
                } else {
                    env(n)
                }
            };
            let cfg = crate::config::load(None, &env).ok()?;
            let authn = Authn::new(AuthnSettings::from_config(&cfg)).ok()?;
            Some(App::new(cfg, authn))
        });
        if let Some(app) = app {
            f(app);
        }
    });
}

/// Decides a request through the whole request path (nothing is forwarded: the decision is the output).
fn decide(req: &Request) {
    with_app(|app| {
        let _ = smol::block_on(app.decide(req));
    });
}

fn request(head: &str) -> Option<Request> {
    let head = parse_request(head.as_bytes(), &HeadLimits::default()).ok()?;
    Some(Request {
        head,
        peer: "127.0.0.1:40000".parse().ok()?,
    })
}

/// The configuration: the bytes as a YAML file, and as the POLICY variable.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::config::load_str(Path::new("fuzz.yaml"), text, &env);
    let policy = base64::engine::general_purpose::STANDARD.encode(data);
    let env = |n: &str| {
        if n == "POLICY" {
            Some(policy.clone())
        } else {
            env(n)
        }
    };
    let _ = crate::config::load(None, &env);
}

/// A request head as it arrives on the wire, then its decision.
pub fn request_head(data: &[u8]) {
    let Ok(head) = parse_request(data, &HeadLimits::default()) else {
        return;
    };
    let _ = crate::http::framing::request_body(&head);
    decide(&Request {
        head,
        peer: "[::1]:40000".parse().expect("literal address"),
    });
}

/// A session cookie value, opened on a route host and on the authenticate host.
pub fn cookie(data: &[u8]) {
    let value: String = String::from_utf8_lossy(data)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    for host in ["app.example.com", "auth.example.com"] {
        let head = format!(
            "GET /.pomerium/ HTTP/1.1\r\nHost: {host}\r\nCookie: _pomerium={value}\r\n\r\n"
        );
        if let Some(req) = request(&head) {
            decide(&req);
        }
    }
}

/// A hand-off token (and a binding cookie) arriving at a route host's callback.
pub fn handoff(data: &[u8]) {
    let text: String = String::from_utf8_lossy(data)
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    let (token, binding) = text.split_once('|').unwrap_or((&text, ""));
    let head = format!(
        "GET /.pomerium/callback?pomerium_handoff={token} HTTP/1.1\r\nHost: app.example.com\r\nCookie: _pomerium_bind_abcdef={binding}\r\n\r\n"
    );
    if let Some(req) = request(&head) {
        decide(&req);
    }
}

#[cfg(test)]
mod tests {
    /// Each entry point runs on a few inputs, so what the fuzzers call keeps compiling and working.
    #[test]
    fn entry_points_run() {
        super::config(
            b"policy:\n  - from: https://a.example\n    to: http://b\n    allowed_user: [x]\n",
        );
        super::config(b"\xff\x00- [");
        super::request_head(b"GET /admin/../x?y HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
        super::request_head(b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        super::cookie(b"AQIDBAUGBwgJ");
        super::cookie(&[0xff; 64]);
        super::handoff(b"AQ.x|y");
    }
}
