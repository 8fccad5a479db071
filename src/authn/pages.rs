//! The pages the sign-in flow shows, as calls into `crate::pages` (which owns their look): login failed with a retry
//! link, a bad or expired link, signed out, sign-out confirmation and refusal, not found. One function per situation, so the flow never builds HTML.

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

/// The session has ended; `sign_in_url` starts a new sign-in (back to the app, or the authenticate host's).
pub fn signed_out(req: &Request, sign_in_url: &str) -> Reply {
    crate::pages::signed_out(Some(req), sign_in_url)
}

/// A GET of a sign-out path: a form asking to confirm by POST (`action`).
pub fn sign_out_confirm(req: &Request, host: &str, action: &str) -> Reply {
    crate::pages::sign_out_confirm(Some(req), host, action)
}

/// A sign-out POST from another site: 403, with the form to sign out for real.
pub fn sign_out_refused(req: &Request, host: &str, action: &str) -> Reply {
    crate::pages::sign_out_refused(Some(req), host, action)
}

/// Any other path on the authenticate host.
pub fn not_found(req: &Request, host: &str, path: &str) -> Reply {
    crate::pages::not_found(Some(req), &format!("{host}{path}"))
}
