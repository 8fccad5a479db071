//! The session and its sealed cookie: what postern remembers about a signed-in user on one host, how it is written
//! into `Set-Cookie`, read back from `Cookie`, and kept out of requests sent upstream.
//!
//! A session carries only what authorization, sign-out and the user page need (a random id shared by every host's
//! session of one sign-in, email, whether it is verified, name, the groups the policy mentions, issued/expiry), so
//! the cookie stays far below the 4 KB browsers keep.

use serde::{Deserialize, Serialize};

use crate::http::Headers;
use crate::seal::{OpenError, Purpose, SealError, Sealer};

/// The largest cookie value postern writes (name and attributes add about 150 bytes; browsers keep 4096).
pub const MAX_COOKIE_VALUE: usize = 3500;

/// A signed-in user, as stored in the session cookie. Short serde names keep the cookie small.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// A random id shared by the authenticate host's session and every route-host session minted from it, so
    /// signing out anywhere revokes them all (see `authn::spent`).
    #[serde(rename = "d")]
    pub id: String,
    #[serde(rename = "e")]
    pub email: String,
    #[serde(rename = "v")]
    pub email_verified: bool,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Unix seconds when the user signed in at the IdP.
    #[serde(rename = "i")]
    pub issued: u64,
    /// Unix seconds after which the session is over (COOKIE_EXPIRE after sign-in).
    #[serde(rename = "x")]
    pub expires: u64,
}

impl Session {
    /// What the policy's verdict looks at.
    pub fn identity(&self) -> crate::route::Identity<'_> {
        crate::route::Identity {
            email: &self.email,
            email_verified: self.email_verified,
            groups: &self.groups,
        }
    }
}

/// How postern's cookies are written (from COOKIE_NAME, COOKIE_DOMAIN, COOKIE_SECURE, COOKIE_HTTP_ONLY,
/// COOKIE_EXPIRE).
#[derive(Clone, Debug)]
pub struct CookieSettings {
    pub name: String,
    pub domain: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    pub expire_secs: u64,
}

impl CookieSettings {
    /// The browser-binding cookie for the IdP round trip (on the authenticate host).
    pub fn csrf_name(&self) -> String {
        format!("{}{}_csrf", self.host_prefix(), self.name)
    }

    /// `__Host-` when cookies are Secure: the browser then refuses such a cookie from any other host (a sibling
    /// sub-domain setting it with a parent `Domain`), so nobody can plant their own binding in a victim's browser.
    fn host_prefix(&self) -> &'static str {
        if self.secure {
            "__Host-"
        } else {
            ""
        }
    }

    /// The "just signed out" marker on the authenticate host: the next sign-in asks the IdP to show its login.
    pub fn signed_out_name(&self) -> String {
        format!("{}_signedout", self.name)
    }

    /// The prefix of the route host's sign-in binding cookies (`<cookie>_bind_<short id>`): one per sign-in in
    /// flight, so two tabs signing in at once do not overwrite each other's.
    pub fn binding_prefix(&self) -> String {
        format!("{}{}_bind_", self.host_prefix(), self.name)
    }

    /// A `Set-Cookie` value for a sign-in binding cookie: always HttpOnly and host-only (never COOKIE_DOMAIN), so no
    /// script can read it; with COOKIE_SECURE also Secure and `__Host-`-named, so no other host can plant one.
    pub fn binding_cookie(&self, name: &str, value: &str, max_age: u64) -> String {
        CookieSettings {
            domain: None,
            http_only: true,
            ..self.clone()
        }
        .set_cookie(name, value, max_age)
    }

    /// A `Set-Cookie` value for one of postern's cookies. `max_age` 0 deletes it.
    pub fn set_cookie(&self, name: &str, value: &str, max_age: u64) -> String {
        let mut c = format!("{name}={value}; Path=/");
        if let Some(d) = &self.domain {
            c.push_str("; Domain=");
            c.push_str(d);
        }
        c.push_str(&format!("; Max-Age={max_age}"));
        if max_age == 0 {
            c.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
        }
        if self.http_only {
            c.push_str("; HttpOnly");
        }
        if self.secure {
            c.push_str("; Secure");
        }
        c.push_str("; SameSite=Lax");
        c
    }

    /// A `Set-Cookie` value that removes `name`.
    pub fn clear_cookie(&self, name: &str) -> String {
        self.set_cookie(name, "", 0)
    }
}

fn is_own_cookie(base: &str, cookie_name: &str) -> bool {
    let cookie_name = cookie_name.strip_prefix("__Host-").unwrap_or(cookie_name);
    cookie_name == base
        || cookie_name
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('_'))
}

/// The `name=value` pairs of one `Cookie` header value, in order. Pairs without `=` or with an empty name are
/// skipped; surrounding spaces and double quotes around the value are dropped.
pub fn cookie_pairs(header_value: &str) -> impl Iterator<Item = (&str, &str)> {
    header_value.split(';').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some((name, value))
    })
}

/// Every value of cookie `name` across all `Cookie` headers, in order (duplicates are real: a parent-domain cookie
/// and a host cookie may share a name).
pub fn cookie_values<'a>(
    headers: &'a Headers,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all("cookie")
        .flat_map(cookie_pairs)
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Every `(name, value)` of cookies whose name starts with `prefix`, across all `Cookie` headers, in order.
pub fn cookies_with_prefix<'a>(
    headers: &'a Headers,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    headers
        .get_all("cookie")
        .flat_map(cookie_pairs)
        .filter(move |(n, _)| n.starts_with(prefix))
}

/// The most session JSON that still seals into [`MAX_COOKIE_VALUE`] characters (base64 of header, nonce, tag and
/// expiry around it).
const MAX_SESSION_JSON: usize = MAX_COOKIE_VALUE / 4 * 3 - 2 - 24 - 16 - 8;

/// Drops groups from the end (then the name) until the session fits a cookie; narrowing access, never widening it.
/// Returns how many groups were dropped. Call it once when the session is made, so every host gets the same one.
pub fn fit(session: &mut Session) -> usize {
    let groups = session.groups.len();
    let len = |s: &Session| serde_json::to_vec(s).map(|v| v.len()).unwrap_or(usize::MAX);
    while len(session) > MAX_SESSION_JSON {
        if session.groups.pop().is_none() && session.name.take().is_none() {
            break;
        }
    }
    groups - session.groups.len()
}

/// Seals a session for `audience` (the host it is set on). Groups are dropped from the end if the cookie would be
/// too large (narrowing access, never widening it); the caller should already have kept only policy groups.
pub fn seal_session(
    sealer: &Sealer,
    audience: &str,
    session: &Session,
) -> Result<String, SealError> {
    let mut s = session.clone();
    loop {
        let json = serde_json::to_vec(&s).map_err(|_| SealError)?;
        let token = sealer.seal(Purpose::Session, audience, s.expires, &json)?;
        if token.len() <= MAX_COOKIE_VALUE {
            if s.groups.len() != session.groups.len() {
                log::warn!(
                    "session for {}: kept {} of {} groups to fit the cookie",
                    session.email,
                    s.groups.len(),
                    session.groups.len()
                );
            }
            return Ok(token);
        }
        if s.groups.pop().is_none() {
            // Only a very long name or email is left: drop the name, then give up rather than write a cookie the
            // browser would silently discard.
            if s.name.take().is_none() {
                return Err(SealError);
            }
        }
    }
}

/// Opens one sealed session value.
pub fn open_session(
    sealer: &Sealer,
    audience: &str,
    now: u64,
    value: &str,
) -> Result<Session, SessionError> {
    let json = sealer
        .open(Purpose::Session, audience, now, value)
        .map_err(SessionError::Open)?;
    let s: Session = serde_json::from_slice(&json).map_err(|_| SessionError::Payload)?;
    if now > s.expires.saturating_add(crate::seal::LEEWAY_SECS) {
        return Err(SessionError::Open(OpenError::Expired {
            expired_at: s.expires,
            now,
        }));
    }
    Ok(s)
}

/// The first session cookie named `name` in the request that opens; `None` when absent or none is valid. Without a
/// cache: what `OpenedCache::session_from_headers` must always agree with (its tests compare the two).
#[cfg(test)]
pub fn session_from_headers(
    sealer: &Sealer,
    audience: &str,
    now: u64,
    headers: &Headers,
    name: &str,
) -> Option<Session> {
    let mut last_err = None;
    for v in cookie_values(headers, name) {
        match open_session(sealer, audience, now, v) {
            Ok(s) => return Some(s),
            Err(e) => last_err = Some(e),
        }
    }
    if let Some(e) = last_err {
        log::debug!("session cookie for {audience} refused: {e}");
    }
    None
}

/// Sessions opened recently, by audience and sealed value, so a repeat request with the same cookie skips the
/// base64 decoding, the XChaCha20-Poly1305 opening and the JSON parsing (a quarter of postern's own CPU on an
/// authorized request: `make bench`). Only values that opened are kept, and expiry is checked on every use as
/// opening would; revocation stays the caller's check. Bounded: `OPENED_KEPT` entries, the oldest replaced.
#[derive(Debug, Default)]
pub struct OpenedCache {
    entries: std::cell::RefCell<Vec<Opened>>,
    next: std::cell::Cell<usize>,
}

#[derive(Debug)]
struct Opened {
    audience: String,
    value: String,
    session: Session,
}

/// Sessions kept opened: enough for the people of a home server, a few KB at most.
const OPENED_KEPT: usize = 16;

impl OpenedCache {
    /// `session_from_headers`, answering from the cache when the same value opened for `audience` before.
    pub fn session_from_headers(
        &self,
        sealer: &Sealer,
        audience: &str,
        now: u64,
        headers: &Headers,
        name: &str,
    ) -> Option<Session> {
        let mut last_err = None;
        for v in cookie_values(headers, name) {
            if let Some(s) = self.get(audience, v, now) {
                return Some(s);
            }
            match open_session(sealer, audience, now, v) {
                Ok(s) => {
                    self.put(audience, v, &s);
                    return Some(s);
                }
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            log::debug!("session cookie for {audience} refused: {e}");
        }
        None
    }

    fn get(&self, audience: &str, value: &str, now: u64) -> Option<Session> {
        let entries = self.entries.borrow();
        let hit = entries
            .iter()
            .find(|e| e.value == value && e.audience == audience)?;
        // Past its time it would not open any more: no answer from here either.
        if now > hit.session.expires.saturating_add(crate::seal::LEEWAY_SECS) {
            return None;
        }
        Some(hit.session.clone())
    }

    fn put(&self, audience: &str, value: &str, session: &Session) {
        let opened = Opened {
            audience: audience.to_owned(),
            value: value.to_owned(),
            session: session.clone(),
        };
        let mut entries = self.entries.borrow_mut();
        if entries.len() < OPENED_KEPT {
            entries.push(opened);
            return;
        }
        let i = self.next.get() % OPENED_KEPT;
        self.next.set(i + 1);
        if let Some(slot) = entries.get_mut(i) {
            *slot = opened;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.borrow().len()
    }
}

/// Why a session cookie was not accepted (logged at debug level; the user is simply not signed in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    Open(OpenError),
    Payload,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Open(e) => write!(f, "{e}"),
            SessionError::Payload => {
                write!(f, "session cookie opened but its content is not a session")
            }
        }
    }
}

/// Removes postern's own cookies (`base` and `base_*`) from a `Cookie` header value, keeping the app's cookies in
/// their order. `None` when nothing remains, so the caller sends no `Cookie` header at all.
pub fn strip_own_cookies(header_value: &str, base: &str) -> Option<String> {
    let mut out = String::with_capacity(header_value.len());
    for pair in header_value.split(';') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let name = pair.split_once('=').map(|(n, _)| n.trim()).unwrap_or(pair);
        if is_own_cookie(base, name) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(pair);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn alice() -> Session {
        Session {
            id: "sid-1".into(),
            email: "alice@example.com".into(),
            email_verified: true,
            name: Some("Alice".into()),
            groups: vec!["admins".into()],
            issued: NOW,
            expires: NOW + 3600,
        }
    }

    fn settings() -> CookieSettings {
        CookieSettings {
            name: "_pomerium".into(),
            domain: None,
            secure: true,
            http_only: true,
            expire_secs: 50400,
        }
    }

    fn headers(cookies: &[&str]) -> Headers {
        let mut h = Headers::default();
        for c in cookies {
            h.append("Cookie", *c);
        }
        h
    }

    #[test]
    fn set_cookie_attributes() {
        let s = settings();
        assert_eq!(
            s.set_cookie("_pomerium", "abc", 50400),
            "_pomerium=abc; Path=/; Max-Age=50400; HttpOnly; Secure; SameSite=Lax"
        );
        let s2 = CookieSettings {
            domain: Some("example.com".into()),
            secure: false,
            http_only: false,
            ..settings()
        };
        assert_eq!(
            s2.clear_cookie("_pomerium_csrf"),
            "_pomerium_csrf=; Path=/; Domain=example.com; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; SameSite=Lax"
        );
    }

    #[test]
    fn round_trip_across_messy_cookie_headers() {
        let sealer = Sealer::new(&[1; 32]);
        let tok = seal_session(&sealer, "app.example.com", &alice()).unwrap();
        let good = format!("_pomerium={tok}");
        let quoted = format!("_pomerium=\"{tok}\"");
        let cases: Vec<(Vec<String>, bool)> = vec![
            (vec![good.clone()], true),
            (vec![format!("a=1;   {good} ;b=2")], true),
            (vec!["a=1".into(), good.clone()], true),
            (vec![quoted], true),
            // A stale or foreign duplicate before the good one (parent-domain cookie): the good one still counts.
            (vec![format!("_pomerium=garbage; {good}")], true),
            (vec!["_pomerium=garbage".into(), good.clone()], true),
            (vec![format!("_pomerium={}", &tok[..tok.len() - 1])], false),
            (vec![format!("_POMERIUM={tok}")], false),
            (vec![format!("x_pomerium={tok}")], false),
            (vec!["; ; =; ==; _pomerium".into()], false),
            (vec![], false),
        ];
        for (cookies, want) in cases {
            let refs: Vec<&str> = cookies.iter().map(String::as_str).collect();
            let got = session_from_headers(
                &sealer,
                "app.example.com",
                NOW,
                &headers(&refs),
                "_pomerium",
            );
            assert_eq!(got.is_some(), want, "{cookies:?}");
            if want {
                assert_eq!(got.unwrap(), alice());
            }
        }
    }

    #[test]
    fn foreign_host_tampered_expired_are_not_signed_in() {
        let sealer = Sealer::new(&[1; 32]);
        let tok = seal_session(&sealer, "app.example.com", &alice()).unwrap();
        assert!(open_session(&sealer, "other.example.com", NOW, &tok).is_err());
        assert!(open_session(&Sealer::new(&[2; 32]), "app.example.com", NOW, &tok).is_err());
        assert!(open_session(&sealer, "app.example.com", NOW + 3600 + 61, &tok).is_err());
        let mut t = tok.into_bytes();
        t[40] = if t[40] == b'A' { b'B' } else { b'A' };
        assert!(open_session(
            &sealer,
            "app.example.com",
            NOW,
            &String::from_utf8(t).unwrap()
        )
        .is_err());
        // A token of the right purpose whose content is not a session.
        let other = sealer
            .seal(Purpose::Session, "app.example.com", NOW + 10, b"[1,2]")
            .unwrap();
        assert_eq!(
            open_session(&sealer, "app.example.com", NOW, &other),
            Err(SessionError::Payload)
        );
    }

    #[test]
    fn many_groups_fit_the_cookie() {
        let sealer = Sealer::new(&[1; 32]);
        let mut s = alice();
        s.groups = (0..200)
            .map(|i| format!("group-{i:03}-{}", "x".repeat(90)))
            .collect();
        let mut fitted = s.clone();
        let dropped = fit(&mut fitted);
        assert!(dropped > 150 && !fitted.groups.is_empty(), "{dropped}");
        let tok = seal_session(&sealer, "h", &fitted).unwrap();
        assert!(tok.len() <= MAX_COOKIE_VALUE);
        assert_eq!(open_session(&sealer, "h", NOW, &tok).unwrap(), fitted);
        let tok = seal_session(&sealer, "h", &s).unwrap();
        assert!(tok.len() <= MAX_COOKIE_VALUE);
        let back = open_session(&sealer, "h", NOW, &tok).unwrap();
        assert!(!back.groups.is_empty() && back.groups.len() < 200);
        assert_eq!(back.groups[..], s.groups[..back.groups.len()]);
        let cookie = settings().set_cookie("_pomerium", &tok, 50400);
        assert!(cookie.len() <= 4096);
    }

    #[test]
    fn strip_own_cookies_table() {
        let cases = [
            (
                "appsession=abc; _pomerium=xyz; theme=dark; _pomerium_csrf=zzz",
                Some("appsession=abc; theme=dark"),
            ),
            ("_pomerium=xyz", None),
            ("_pomerium=xyz; _pomerium_0=a; _pomerium_signedout=1", None),
            ("", None),
            ("  ;  ; ", None),
            ("a=1;b=2", Some("a=1; b=2")),
            ("_pomeriumx=1; a", Some("_pomeriumx=1; a")),
            (" _pomerium = x ; a=1", Some("a=1")),
        ];
        for (input, want) in cases {
            assert_eq!(
                strip_own_cookies(input, "_pomerium").as_deref(),
                want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn opened_cache_answers_like_opening() {
        let sealer = Sealer::new(&[1; 32]);
        let cache = OpenedCache::default();
        let tok = seal_session(&sealer, "app.example.com", &alice()).unwrap();
        let good = format!("_pomerium={tok}");
        let h = headers(&[&good]);
        // (audience, now, opens): the second and later asks come from the cache and must agree with opening.
        let cases = [
            ("app.example.com", NOW, true),
            ("app.example.com", NOW, true),
            ("other.example.com", NOW, false),
            ("app.example.com", NOW + 3600 + 61, false),
            ("app.example.com", NOW, true),
        ];
        for (audience, now, want) in cases {
            let got = cache.session_from_headers(&sealer, audience, now, &h, "_pomerium");
            let opened = session_from_headers(&sealer, audience, now, &h, "_pomerium");
            assert_eq!(got, opened, "{audience} at {now}");
            assert_eq!(got.is_some(), want, "{audience} at {now}");
        }
        assert_eq!(cache.len(), 1);
        // A value that does not open is never kept.
        let bad = headers(&["_pomerium=garbage"]);
        assert!(cache
            .session_from_headers(&sealer, "app.example.com", NOW, &bad, "_pomerium")
            .is_none());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn opened_cache_is_bounded() {
        let sealer = Sealer::new(&[1; 32]);
        let cache = OpenedCache::default();
        for i in 0..(OPENED_KEPT * 3) {
            let mut s = alice();
            s.email = format!("user{i}@example.com");
            let tok = seal_session(&sealer, "h", &s).unwrap();
            let h = headers(&[&format!("_pomerium={tok}")]);
            let got = cache.session_from_headers(&sealer, "h", NOW, &h, "_pomerium");
            assert_eq!(got.map(|s| s.email), Some(s.email.clone()));
            assert!(cache.len() <= OPENED_KEPT);
        }
        assert_eq!(cache.len(), OPENED_KEPT);
    }
}
