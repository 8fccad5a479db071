//! The pages the sign-in flow shows, as calls into `crate::pages` (which owns their look): login failed with a retry
//! link, a bad or expired link, signed out, not found. One function per situation, so the flow never builds HTML.

use crate::http::Request;
use crate::reply::Reply;

/// Sign-in did not complete: the IdP said no, the state did not match this browser, or the IdP is unreachable.
/// `retry` restarts the sign-in (the page the user wanted, or the authenticate host's sign-in).
pub fn login_failed(req: &Request, status: u16, reason: &str, retry: &str) -> Reply {
    crate::pages::login_failed(Some(req), status, reason, retry)
}

/// A sign-in or sign-out link that is malformed, expired, or points somewhere postern does not serve.
pub fn bad_link(req: &Request, reason: &str) -> Reply {
    crate::pages::bad_request(Some(req), reason)
}

/// The session has ended on the authenticate host and there is no signed way back to an app.
pub fn signed_out(req: &Request) -> Reply {
    crate::pages::signed_out(Some(req))
}

/// Any other path on the authenticate host.
pub fn not_found(req: &Request, host: &str, path: &str) -> Reply {
    crate::pages::not_found(Some(req), &format!("{host}{path}"))
}
