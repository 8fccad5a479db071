//! Sign-in across hosts: the route host's side (open its session cookie, send the browser to sign in, accept a
//! hand-off, sign out) and the authenticate host's side (`/.pomerium/sign_in`, `/oauth2/callback`,
//! `/.pomerium/sign_out`).
//!
//! The flow:
//! ```text
//! route host, no session ─302─> AUTH/.pomerium/sign_in?pomerium_redirect_uri=URL&pomerium_issued=T
//!            &pomerium_bind=H&pomerium_sig=MAC, setting `<cookie>_bind_<id>=V` (10 min) where H = hash(V)
//! AUTH has a session?  ─302─> https://<route host>/.pomerium/callback?pomerium_handoff=<sealed, 5 min, host-bound,
//!                             carrying H and a single-use id>
//!            otherwise ─302─> IdP (sealed state: binding, nonce, PKCE verifier, URL, H) + `<cookie>_csrf` cookie
//! IdP ─302─> AUTH/oauth2/callback: state opens and matches the binding cookie, code exchanged, id_token verified,
//!            AUTH's own session cookie set ─302─> route host's /.pomerium/callback as above
//! route host /.pomerium/callback: hand-off opens for exactly this host, one of the browser's `_bind_` cookies
//!            hashes to H, its id was never used, its session is not signed out; own cookie set ─302─> URL
//! ```
//! So a captured hand-off URL works once, and only in the browser that started that sign-in (no login CSRF).
//!
//! Sign-out is a POST from the host's own page (`Origin` checked; a GET only shows a confirmation form). It records
//! the session's id as revoked (the authenticate host's session and every route-host session minted from it share
//! that id), clears the cookie, and 303s to AUTH's sign-out with a MACed link naming a hash of the id; AUTH signs its
//! own session out when the hash matches, else asks again, then shows a "signed out" page. Revocations and used
//! hand-offs are remembered in this process only (see `spent`): a restart forgets them, while COOKIE_EXPIRE still
//! bounds every session.
//! Session cookies are sealed under COOKIE_SECRET; hand-offs and the MACs on sign-in/sign-out links use
//! SHARED_SECRET. Every redirect target is checked by the caller's `is_allowed_target` (a policy host with its
//! `from` scheme, or the authenticate host) after being parsed the way a browser parses it, and the Location
//! written is the parsed URL's serialization, never the raw input.

pub mod idtoken;
pub mod oidc;
pub mod pages;
mod spent;

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::{digest, hmac};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::http::Request;
use crate::reply::Reply;
use crate::seal::{self, Purpose, Sealer, LEEWAY_SECS};
use crate::session::{self, CookieSettings, Session};
use oidc::{IdpKind, IdpSettings, OidcError, Provider, Transport};
use spent::ExpiringSet;

/// How long a hand-off token lives (the browser follows it at once).
pub const HANDOFF_SECS: u64 = 300;
/// How long a MACed sign-in or sign-out link stays valid.
pub const LINK_SECS: u64 = 300;
/// How long the IdP round trip may take (state token and binding cookies).
pub const STATE_SECS: u64 = 600;
/// At most this many route-host binding cookies (sign-ins in flight) per browser; beyond it one is reused.
const MAX_BINDINGS: usize = 4;
/// Bounds of the in-memory sets (16-byte digest + expiry each: well under 1 MB apiece).
const MAX_SPENT_HANDOFFS: usize = 10_000;
const MAX_REVOKED_SESSIONS: usize = 10_000;

/// The path on route hosts that accepts a hand-off.
pub const CALLBACK_PATH: &str = "/.pomerium/callback";
pub const SIGN_IN_PATH: &str = "/.pomerium/sign_in";
pub const SIGN_OUT_PATH: &str = "/.pomerium/sign_out";
pub const IDP_CALLBACK_PATH: &str = "/oauth2/callback";

/// Everything the sign-in flow needs, filled by main.rs from the configuration.
pub struct AuthnSettings {
    /// AUTHENTICATE_SERVICE_URL (its scheme, host and port; the path is ignored).
    pub authenticate_url: Url,
    pub cookie: CookieSettings,
    pub cookie_secret: [u8; 32],
    pub shared_secret: [u8; 32],
    pub idp: IdpSettings,
    /// Every group named by an `allowed_groups` in the policy: only these are kept in session cookies.
    pub policy_groups: HashSet<String>,
    /// How to reach the IdP: `client::transport(..)` in postern, a fake IdP in tests.
    pub transport: Transport,
}

impl AuthnSettings {
    /// The settings postern runs with, from its loaded configuration.
    pub fn from_config(cfg: &crate::config::Config) -> AuthnSettings {
        AuthnSettings {
            authenticate_url: cfg.authenticate_url.clone(),
            cookie: CookieSettings {
                name: cfg.cookie.name.clone(),
                // COOKIE_DOMAIN is accepted but not used (config warns): one host-bound cookie per host.
                domain: None,
                secure: cfg.cookie.secure,
                http_only: cfg.cookie.http_only,
                expire_secs: cfg.cookie.expire.as_secs(),
            },
            cookie_secret: cfg.cookie.secret,
            shared_secret: cfg.shared_secret,
            idp: IdpSettings {
                kind: match cfg.idp.kind {
                    crate::config::IdpKind::Oidc => IdpKind::Oidc,
                    crate::config::IdpKind::Google => IdpKind::Google,
                },
                provider_url: cfg.idp.provider_url.clone(),
                client_id: cfg.idp.client_id.clone(),
                client_secret: cfg.idp.client_secret.expose().to_owned(),
                scopes: cfg.idp.scopes.clone(),
            },
            policy_groups: cfg
                .policy
                .routes
                .iter()
                .flat_map(|r| r.access.groups.iter().cloned())
                .collect(),
            transport: crate::client::transport(crate::tls::client_config()),
        }
    }
}

/// The settings could not make a working sign-in flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthnError {
    AuthenticateUrl(String),
}

impl fmt::Display for AuthnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthnError::AuthenticateUrl(u) => {
                write!(
                    f,
                    "AUTHENTICATE_SERVICE_URL {u:?} must be an http(s) URL with a host"
                )
            }
        }
    }
}

impl std::error::Error for AuthnError {}

/// The sign-in flow for every host postern serves.
pub struct Authn {
    cookie: CookieSettings,
    cookie_sealer: Sealer,
    /// Session cookies opened recently (session.rs): repeat requests skip the decryption.
    opened: session::OpenedCache,
    shared_sealer: Sealer,
    link_key: hmac::Key,
    /// `https://auth.example.com` (port only when not the default).
    auth_origin: String,
    /// `auth.example.com` (port only when not the default): the audience of AUTH's own tokens.
    auth_authority: String,
    policy_groups: HashSet<String>,
    provider: Provider,
    /// Ids of hand-offs already accepted, until they expire.
    spent_handoffs: RefCell<ExpiringSet>,
    /// Ids of signed-out sessions, until the session would have expired.
    revoked: RefCell<ExpiringSet>,
}

impl fmt::Debug for Authn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authn")
            .field("auth_origin", &self.auth_origin)
            .finish_non_exhaustive()
    }
}

/// `host` or `host:port` when the port is not the scheme's default; lower-case (the url crate lower-cases hosts).
pub fn authority(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    if host.is_empty() {
        return None;
    }
    Some(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    })
}

fn origin_string(url: &Url) -> Option<String> {
    Some(format!("{}://{}", url.scheme(), authority(url)?))
}

/// The query of a request target (origin-form or absolute-form) as decoded pairs; the first of a repeated name wins.
fn query_param(target: &str, name: &str) -> Option<String> {
    let q = target.split_once('?')?.1;
    let q = q.split('#').next().unwrap_or(q);
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn target_path(target: &str) -> &str {
    let t = target.split(['?', '#']).next().unwrap_or(target);
    // Absolute-form: keep only the path.
    match t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
    {
        Some(rest) => rest.find('/').map(|i| &rest[i..]).unwrap_or("/"),
        None => t,
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// What travels inside a hand-off token.
#[derive(Serialize, Deserialize)]
struct Handoff {
    #[serde(rename = "s")]
    session: Session,
    #[serde(rename = "r")]
    target: String,
    /// Random: the hand-off is accepted once.
    #[serde(rename = "j")]
    id: String,
    /// `binding_hash` of the route-host binding cookie of the browser that started the sign-in.
    #[serde(rename = "b")]
    binding: String,
}

/// What travels inside the IdP `state`.
#[derive(Serialize, Deserialize)]
struct State {
    /// Equals the `<cookie>_csrf` cookie of the browser that started the sign-in.
    #[serde(rename = "b")]
    binding: String,
    #[serde(rename = "n")]
    nonce: String,
    #[serde(rename = "v")]
    verifier: String,
    #[serde(rename = "r")]
    target: String,
    /// The route host's binding hash from the sign-in link, passed on into the hand-off.
    #[serde(rename = "h", default)]
    handoff_binding: String,
}

/// A short, one-way digest of a binding cookie value or a session id, for links and hand-offs (base64url, 22 chars).
fn binding_hash(value: &str) -> String {
    let d = digest::digest(&digest::SHA256, value.as_bytes());
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

fn is_token(v: &str, len: usize) -> bool {
    v.len() == len
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The query parameter a signed link carries besides its URL: the binding hash (sign-in) or the session-id hash
/// (sign-out). Covered by the MAC.
fn link_extra_param(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::SignOut => "pomerium_sid",
        _ => "pomerium_bind",
    }
}

/// Did this POST come from a page of `origin` itself? `Origin` decides when present; else `Sec-Fetch-Site`; else
/// `Referer`. Browsers send `Origin` with every form POST, so the fallbacks serve only older ones.
fn same_origin(req: &Request, origin: &str) -> Result<(), &'static str> {
    let h = &req.head.headers;
    if let Some(o) = h.get("origin") {
        return if o.trim().eq_ignore_ascii_case(origin) {
            Ok(())
        } else {
            Err("its Origin header names another site")
        };
    }
    if let Some(site) = h.get("sec-fetch-site") {
        return if site.trim().eq_ignore_ascii_case("same-origin") {
            Ok(())
        } else {
            Err("Sec-Fetch-Site says it came from another site")
        };
    }
    match h.get("referer") {
        Some(r) => match Url::parse(r.trim()).ok().and_then(|u| origin_string(&u)) {
            Some(o) if o == origin => Ok(()),
            _ => Err("its Referer is another site"),
        },
        None => {
            Err("it has no Origin, Sec-Fetch-Site or Referer header showing it came from this host")
        }
    }
}

impl Authn {
    /// The sign-in flow. Fails only when AUTHENTICATE_SERVICE_URL has no http(s) origin (config refuses that first).
    pub fn new(settings: AuthnSettings) -> Result<Authn, AuthnError> {
        let u = &settings.authenticate_url;
        let bad = || AuthnError::AuthenticateUrl(u.to_string());
        if !matches!(u.scheme(), "http" | "https") {
            return Err(bad());
        }
        let auth_authority = authority(u).ok_or_else(bad)?;
        let auth_origin = origin_string(u).ok_or_else(bad)?;
        let redirect =
            Url::parse(&format!("{auth_origin}{IDP_CALLBACK_PATH}")).map_err(|_| bad())?;
        // A key of its own for link MACs, so SHARED_SECRET is never used by two algorithms.
        let derive = hmac::Key::new(hmac::HMAC_SHA256, &settings.shared_secret);
        let link_key = hmac::Key::new(
            hmac::HMAC_SHA256,
            hmac::sign(&derive, b"postern link mac v1").as_ref(),
        );
        Ok(Authn {
            cookie_sealer: Sealer::new(&settings.cookie_secret),
            opened: session::OpenedCache::default(),
            shared_sealer: Sealer::new(&settings.shared_secret),
            link_key,
            auth_origin,
            auth_authority,
            policy_groups: settings.policy_groups,
            provider: Provider::new(settings.idp, redirect, settings.transport),
            cookie: settings.cookie,
            spent_handoffs: RefCell::new(ExpiringSet::new("used hand-offs", MAX_SPENT_HANDOFFS)),
            revoked: RefCell::new(ExpiringSet::new(
                "signed-out sessions",
                MAX_REVOKED_SESSIONS,
            )),
        })
    }

    fn session_audience<'a>(&'a self, host: &'a str) -> &'a str {
        // With COOKIE_DOMAIN one cookie serves every host under it, so it is sealed for that domain.
        self.cookie.domain.as_deref().unwrap_or(host)
    }

    /// The session of the request on `host` (the route's authority: `app.example.com`, or `app.example.com:8443`
    /// when the port is not the default). `None` when absent, tampered, expired, truncated, made for another host,
    /// or signed out.
    pub fn session(&self, req: &Request, host: &str) -> Option<Session> {
        self.session_even_revoked(req, host)
            .filter(|s| !self.is_revoked(s))
    }

    /// The session cookie as sealed, whether or not it was signed out since.
    fn session_even_revoked(&self, req: &Request, host: &str) -> Option<Session> {
        self.opened.session_from_headers(
            &self.cookie_sealer,
            self.session_audience(host),
            crate::clock::now_secs(),
            &req.head.headers,
            &self.cookie.name,
        )
    }

    fn is_revoked(&self, s: &Session) -> bool {
        self.revoked
            .borrow()
            .contains(&s.id, crate::clock::now_secs())
    }

    /// Records the session's id as signed out until it would have expired anyway.
    fn revoke(&self, s: &Session) {
        let now = crate::clock::now_secs();
        self.revoked
            .borrow_mut()
            .insert(&s.id, s.expires.saturating_add(LEEWAY_SECS), now);
    }

    fn link_mac(&self, purpose: Purpose, url: &str, issued: u64, extra: &str) -> hmac::Tag {
        // `extra` is base64url (never NUL), so the fields cannot run into each other.
        let msg = format!(
            "{}\0{}\0{issued}\0{extra}\0{url}",
            purpose.name(),
            self.auth_authority
        );
        hmac::sign(&self.link_key, msg.as_bytes())
    }

    /// `AUTH<path>?pomerium_redirect_uri=..&pomerium_issued=..[&pomerium_bind|pomerium_sid=..]&pomerium_sig=..`
    fn signed_link(&self, path: &str, purpose: Purpose, url: &str, extra: &str) -> String {
        let issued = crate::clock::now_secs();
        let sig = URL_SAFE_NO_PAD.encode(self.link_mac(purpose, url, issued, extra).as_ref());
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!("&{}={}", link_extra_param(purpose), enc(extra))
        };
        format!(
            "{}{path}?pomerium_redirect_uri={}&pomerium_issued={issued}{extra}&pomerium_sig={sig}",
            self.auth_origin,
            enc(url)
        )
    }

    /// Checks a signed link's MAC and age; returns the URL and the extra value (binding or session hash; may be
    /// empty) it carries.
    fn check_link(
        &self,
        purpose: Purpose,
        target: &str,
    ) -> Result<Option<(String, String)>, &'static str> {
        let Some(url) = query_param(target, "pomerium_redirect_uri") else {
            return Ok(None);
        };
        let extra = query_param(target, link_extra_param(purpose)).unwrap_or_default();
        let issued: u64 = query_param(target, "pomerium_issued")
            .and_then(|s| s.parse().ok())
            .ok_or("the link has no valid pomerium_issued time")?;
        let sig = query_param(target, "pomerium_sig")
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .ok_or("the link has no valid pomerium_sig")?;
        let want = self.link_mac(purpose, &url, issued, &extra);
        if !constant_time_eq(want.as_ref(), &sig) {
            return Err("the link's signature does not match");
        }
        let now = crate::clock::now_secs();
        if issued > now.saturating_add(LEEWAY_SECS)
            || now > issued.saturating_add(LINK_SECS + LEEWAY_SECS)
        {
            return Err("the link has expired");
        }
        Ok(Some((url, extra)))
    }

    /// Parses a redirect target the way a browser would and accepts it only for postern's own hosts.
    fn allowed_target(&self, raw: &str, is_allowed_target: &dyn Fn(&Url) -> bool) -> Option<Url> {
        let url = Url::parse(raw).ok()?;
        let ok = matches!(url.scheme(), "http" | "https")
            && url.username().is_empty()
            && url.password().is_none()
            && authority(&url).is_some()
            && (self.is_auth_url(&url) || is_allowed_target(&url));
        ok.then_some(url)
    }

    fn is_auth_url(&self, url: &Url) -> bool {
        origin_string(url).as_deref() == Some(self.auth_origin.as_str())
    }

    /// Route host, no session: a 302 to the authenticate host's sign-in with a signed, timed return URL, and a
    /// binding cookie on this host whose hash the link carries (the hand-off will only be accepted next to it).
    /// `route_origin` is the route's `from` origin (`https://app.example.com`); `original_url` the full URL the user
    /// asked for, built from it.
    pub fn sign_in_redirect(&self, req: &Request, route_origin: &str, original_url: &str) -> Reply {
        let same_origin = Url::parse(original_url)
            .ok()
            .and_then(|u| origin_string(&u))
            .as_deref()
            == Some(route_origin);
        let back = if same_origin {
            original_url.to_owned()
        } else {
            format!("{route_origin}/")
        };
        // One cookie per sign-in in flight (tabs opened together each keep theirs); past a few, reuse one.
        let prefix = self.cookie.binding_prefix();
        let in_flight = self.binding_cookies(req);
        let (new_cookie, value) = match in_flight.first() {
            Some((_, v)) if in_flight.len() >= MAX_BINDINGS => (None, v.clone()),
            _ => match (seal::random_token(4), seal::random_token(16)) {
                (Ok(id), Ok(v)) => (Some(format!("{prefix}{id}")), v),
                _ => return internal_error(req, &format!("{route_origin}/")),
            },
        };
        let link = self.signed_link(SIGN_IN_PATH, Purpose::SignIn, &back, &binding_hash(&value));
        let mut r = Reply::redirect(&link);
        if let Some(name) = new_cookie {
            r.set_cookie(self.cookie.binding_cookie(&name, &value, STATE_SECS));
        }
        r
    }

    /// The well-formed route-host binding cookies of the request (`<cookie>_bind_<6 chars>` = 22 chars), in order.
    /// Others are ignored, so a name echoed back in `Set-Cookie` is always one postern made.
    fn binding_cookies(&self, req: &Request) -> Vec<(String, String)> {
        let prefix = self.cookie.binding_prefix();
        session::cookies_with_prefix(&req.head.headers, &prefix)
            .filter(|(n, v)| {
                n.get(prefix.len()..).is_some_and(|id| is_token(id, 6)) && is_token(v, 22)
            })
            .take(16)
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    /// Route host `/.pomerium/callback`: opens the hand-off for exactly this `host` (authority) and `origin`, checks
    /// it belongs to this browser and was never used, sets the host's own session cookie and sends the browser to
    /// the URL it first asked for.
    pub fn handoff(&self, req: &Request, host: &str, origin: &str) -> Reply {
        let fail = |why: &str, retry: &str| {
            log::warn!("hand-off on {host} refused: {why}");
            pages::login_failed(
                req,
                400,
                "This sign-in link is invalid, has expired, was already used, or was started in another browser. Try again to sign in.",
                retry,
            )
        };
        let front = format!("{origin}/");
        let Some(token) = query_param(&req.head.target, "pomerium_handoff") else {
            return fail("no pomerium_handoff parameter", &front);
        };
        let now = crate::clock::now_secs();
        let payload = match self.shared_sealer.open(Purpose::Handoff, host, now, &token) {
            Ok(p) => p,
            Err(e) => return fail(&e.to_string(), &front),
        };
        let Ok(h) = serde_json::from_slice::<Handoff>(&payload) else {
            return fail("hand-off content unreadable", &front);
        };
        let target = match Url::parse(&h.target) {
            Ok(u) if origin_string(&u).as_deref() == Some(origin) => u,
            _ => return fail("hand-off target is not on this host", &front),
        };
        // From here the retry link is the page the user wanted: it starts a fresh sign-in from this browser.
        let retry = target.as_str();
        if now > h.session.expires {
            return fail("session in the hand-off has expired", retry);
        }
        let Some((binding_cookie, _)) = self
            .binding_cookies(req)
            .into_iter()
            .find(|(_, v)| constant_time_eq(binding_hash(v).as_bytes(), h.binding.as_bytes()))
        else {
            return fail(
                "binding check failed: no binding cookie of this browser matches the hand-off (sent from another browser, or cookies blocked)",
                retry,
            );
        };
        if self.is_revoked(&h.session) {
            return fail("the session in the hand-off was signed out", retry);
        }
        let remember_until = now.saturating_add(HANDOFF_SECS + LEEWAY_SECS);
        if !self
            .spent_handoffs
            .borrow_mut()
            .insert(&h.id, remember_until, now)
        {
            return fail(
                "single-use check failed: this hand-off was already used",
                retry,
            );
        }
        let sealed = match session::seal_session(
            &self.cookie_sealer,
            self.session_audience(host),
            &h.session,
        ) {
            Ok(s) => s,
            Err(e) => return fail(&e.to_string(), retry),
        };
        let mut r = Reply::redirect(target.as_str());
        r.set_cookie(self.cookie.set_cookie(
            &self.cookie.name,
            &sealed,
            h.session.expires.saturating_sub(now),
        ));
        r.set_cookie(self.cookie.binding_cookie(&binding_cookie, "", 0));
        r
    }

    /// Route host `/.pomerium/sign_out` on `host` (authority) at `origin`. A GET shows a confirmation form; a POST
    /// from this origin's own page revokes the session (here and on the authenticate host: they share its id),
    /// clears the cookie and sends the browser to the authenticate host to end its session too, with a signed
    /// return URL (this origin's `/`, or the `pomerium_redirect_uri` given when it is on this origin). A POST from
    /// elsewhere gets a 403 page holding the form.
    pub fn sign_out(&self, req: &Request, host: &str, origin: &str) -> Reply {
        let back = query_param(&req.head.target, "pomerium_redirect_uri")
            .and_then(|u| Url::parse(&u).ok())
            .filter(|u| origin_string(u).as_deref() == Some(origin))
            .map(|u| u.to_string())
            .unwrap_or_else(|| format!("{origin}/"));
        let action = if back == format!("{origin}/") {
            SIGN_OUT_PATH.to_owned()
        } else {
            format!("{SIGN_OUT_PATH}?pomerium_redirect_uri={}", enc(&back))
        };
        if req.head.method != "POST" {
            return pages::sign_out_confirm(req, host, &action);
        }
        if let Err(why) = same_origin(req, origin) {
            log::warn!("sign-out on {host} refused: origin check failed: {why}");
            return pages::sign_out_refused(req, host, &action);
        }
        let sid = match self.session_even_revoked(req, host) {
            Some(s) => {
                log::info!("signed out {} on {host}", s.email);
                self.revoke(&s);
                binding_hash(&s.id)
            }
            None => String::new(),
        };
        let mut r =
            Reply::redirect(&self.signed_link(SIGN_OUT_PATH, Purpose::SignOut, &back, &sid));
        r.status = 303;
        r.set_cookie(self.cookie.clear_cookie(&self.cookie.name));
        r
    }

    /// The authenticate host's own paths: `/.pomerium/sign_in`, `/oauth2/callback`, `/.pomerium/sign_out`.
    /// `is_allowed_target` says whether a URL is on a policy host with its `from` scheme.
    pub async fn authenticate_host(
        &self,
        req: &Request,
        is_allowed_target: &dyn Fn(&Url) -> bool,
    ) -> Reply {
        match target_path(&req.head.target) {
            SIGN_IN_PATH => self.auth_sign_in(req, is_allowed_target).await,
            IDP_CALLBACK_PATH => self.auth_callback(req, is_allowed_target).await,
            SIGN_OUT_PATH => self.auth_sign_out(req, is_allowed_target),
            _ => pages::not_found(req, &self.auth_authority, target_path(&req.head.target)),
        }
    }

    async fn auth_sign_in(&self, req: &Request, is_allowed_target: &dyn Fn(&Url) -> bool) -> Reply {
        let (raw, binding) = match self.check_link(Purpose::SignIn, &req.head.target) {
            Ok(Some(link)) => link,
            // Signing in to the authenticate host itself: land on its user page.
            Ok(None) => (format!("{}/.pomerium/", self.auth_origin), String::new()),
            Err(why) => {
                log::warn!("sign-in link refused: {why}");
                return pages::bad_link(
                    req,
                    &format!(
                        "This sign-in link is not valid: {why}. Go back to the app and try again."
                    ),
                );
            }
        };
        let Some(target) = self.allowed_target(&raw, is_allowed_target) else {
            log::warn!("sign-in refused: redirect target is not a host postern serves");
            return pages::bad_link(
                req,
                "This sign-in link points to a site postern does not serve.",
            );
        };
        if binding.is_empty() && !self.is_auth_url(&target) {
            // Its hand-off could never be accepted: the route host checks the binding.
            log::warn!("sign-in link refused: it carries no browser binding");
            return pages::bad_link(
                req,
                "This sign-in link is incomplete. Go back to the app and try again.",
            );
        }
        if let Some(s) = self.session(req, &self.auth_authority) {
            return self.send_home(req, &s, &target, &binding);
        }
        self.start_idp(req, &target, binding).await
    }

    /// Starts the IdP round trip for `target`; `handoff_binding` travels in the state to the hand-off.
    async fn start_idp(&self, req: &Request, target: &Url, handoff_binding: String) -> Reply {
        let csrf_name = self.cookie.csrf_name();
        // Reuse this browser's binding if it has one, so two tabs signing in at once do not undo each other.
        let existing = session::cookie_values(&req.head.headers, &csrf_name)
            .find(|v| {
                v.len() == 43
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .map(str::to_owned);
        let binding = existing.map_or_else(|| seal::random_token(32), Ok);
        let (Ok(binding), Ok(nonce), Ok(verifier)) =
            (binding, seal::random_token(32), seal::random_token(32))
        else {
            return internal_error(req, target.as_str());
        };
        let state = State {
            binding: binding.clone(),
            nonce,
            verifier,
            target: target.to_string(),
            handoff_binding,
        };
        let Ok(json) = serde_json::to_vec(&state) else {
            return internal_error(req, target.as_str());
        };
        let now = crate::clock::now_secs();
        let Ok(sealed) = self.cookie_sealer.seal(
            Purpose::State,
            &self.auth_authority,
            now + STATE_SECS,
            &json,
        ) else {
            return internal_error(req, target.as_str());
        };
        let signed_out = session::cookie_values(&req.head.headers, &self.cookie.signed_out_name())
            .next()
            .is_some();
        let prompt = signed_out.then_some(match self.provider.kind() {
            IdpKind::Google => "select_account",
            IdpKind::Oidc => "login",
        });
        match self
            .provider
            .authorization_url(&sealed, &state.nonce, &state.verifier, prompt)
            .await
        {
            Ok(url) => {
                let mut r = Reply::redirect(url.as_str());
                r.set_cookie(self.cookie.set_cookie(&csrf_name, &binding, STATE_SECS));
                r
            }
            Err(e) => {
                log::error!("sign-in cannot start: {e}");
                pages::login_failed(
                    req,
                    502,
                    "The identity provider cannot be reached right now.",
                    target.as_str(),
                )
            }
        }
    }

    async fn auth_callback(
        &self,
        req: &Request,
        is_allowed_target: &dyn Fn(&Url) -> bool,
    ) -> Reply {
        let t = &req.head.target;
        let now = crate::clock::now_secs();
        let own_sign_in = format!("{}{SIGN_IN_PATH}", self.auth_origin);

        let state = query_param(t, "state")
            .and_then(|s| {
                self.cookie_sealer
                    .open(Purpose::State, &self.auth_authority, now, &s)
                    .ok()
            })
            .and_then(|p| serde_json::from_slice::<State>(&p).ok());
        let target = state
            .as_ref()
            .and_then(|s| self.allowed_target(&s.target, is_allowed_target));
        let retry = target
            .as_ref()
            .map(Url::as_str)
            .unwrap_or(&own_sign_in)
            .to_owned();

        if let Some(err) = query_param(t, "error") {
            // Anyone can craft this URL: show only a short, plain rendering of the IdP's words.
            let (err, desc) = (
                plain(&err, 64),
                plain(
                    &query_param(t, "error_description").unwrap_or_default(),
                    200,
                ),
            );
            log::warn!("identity provider returned an error: {err} {desc}");
            let msg = format!(
                "The identity provider did not sign you in ({err}{}{desc}).",
                if desc.is_empty() { "" } else { ": " }
            );
            return pages::login_failed(req, 400, &msg, &retry);
        }
        let (Some(state), Some(target)) = (state, target) else {
            log::warn!(
                "IdP callback refused: state missing, altered, expired or for an unknown target"
            );
            return pages::login_failed(
                req,
                400,
                "This sign-in has expired or was not started here. Please start again.",
                &retry,
            );
        };
        let bound = session::cookie_values(&req.head.headers, &self.cookie.csrf_name())
            .any(|v| constant_time_eq(v.as_bytes(), state.binding.as_bytes()));
        if !bound {
            log::warn!("IdP callback refused: state does not belong to this browser (no matching binding cookie)");
            return pages::login_failed(
                req,
                400,
                "This sign-in was started in another browser or tab, or cookies are blocked.",
                &retry,
            );
        }
        // Back button after a finished sign-in: the code is spent, but the browser is signed in.
        if let Some(s) = self.session(req, &self.auth_authority) {
            return self.send_home(req, &s, &target, &state.handoff_binding);
        }
        let Some(code) = query_param(t, "code") else {
            return pages::login_failed(
                req,
                400,
                "The identity provider sent no authorization code.",
                &retry,
            );
        };
        let claims = match self
            .provider
            .exchange(&code, &state.verifier, &state.nonce, now)
            .await
        {
            Ok(c) => c,
            Err(e) => return self.exchange_failed(req, &e, &retry),
        };
        let Some(email) = claims.email.filter(|e| !e.is_empty()) else {
            log::warn!("sign-in refused: the id_token has no email claim (is the `email` scope requested?)");
            return pages::login_failed(
                req,
                400,
                "The identity provider did not share your email address.",
                &retry,
            );
        };
        let Ok(id) = seal::random_token(16) else {
            return internal_error(req, &retry);
        };
        let mut session = Session {
            id,
            email,
            email_verified: claims.email_verified,
            name: claims.name,
            // Groups the policy names first: if the cookie must shed some, `fit` drops the others before them.
            groups: {
                let (mut groups, others): (Vec<String>, Vec<String>) = claims
                    .groups
                    .into_iter()
                    .partition(|g| self.policy_groups.contains(g));
                groups.extend(others);
                groups
            },
            issued: now,
            expires: now.saturating_add(self.cookie.expire_secs),
        };
        let dropped = session::fit(&mut session);
        if dropped > 0 {
            log::warn!(
                "session for {}: {dropped} groups dropped to fit the cookie (groups the policy names are kept first)",
                session.email
            );
        }
        if !session.email_verified {
            log::warn!(
                "signed in {} with an email the IdP has not verified: no route will allow it",
                session.email
            );
        } else {
            log::info!("signed in {}", session.email);
        }
        let Ok(sealed) = session::seal_session(
            &self.cookie_sealer,
            self.session_audience(&self.auth_authority),
            &session,
        ) else {
            return internal_error(req, &retry);
        };
        let mut r = self.send_home(req, &session, &target, &state.handoff_binding);
        r.set_cookie(
            self.cookie
                .set_cookie(&self.cookie.name, &sealed, self.cookie.expire_secs),
        );
        r.set_cookie(self.cookie.clear_cookie(&self.cookie.csrf_name()));
        r.set_cookie(self.cookie.clear_cookie(&self.cookie.signed_out_name()));
        r
    }

    fn exchange_failed(&self, req: &Request, e: &OidcError, retry: &str) -> Reply {
        if e.is_upstream_failure() {
            log::error!("sign-in failed: {e}");
            pages::login_failed(
                req,
                502,
                "The identity provider could not complete the sign-in.",
                retry,
            )
        } else {
            log::warn!("sign-in refused: {e}");
            pages::login_failed(
                req,
                400,
                "The identity provider's answer was refused.",
                retry,
            )
        }
    }

    /// A 302 to `target`: directly on the authenticate host, through a single-use hand-off bound to the browser's
    /// route-host binding (`binding`, its hash) elsewhere.
    fn send_home(&self, req: &Request, session: &Session, target: &Url, binding: &str) -> Reply {
        if self.is_auth_url(target) {
            return Reply::redirect(target.as_str());
        }
        let (Some(audience), Some(origin)) = (authority(target), origin_string(target)) else {
            return pages::bad_link(
                req,
                "This sign-in link points to a site postern does not serve.",
            );
        };
        let now = crate::clock::now_secs();
        let expires = now.saturating_add(HANDOFF_SECS).min(session.expires);
        let Ok(id) = seal::random_token(16) else {
            return internal_error(req, target.as_str());
        };
        let h = Handoff {
            session: session.clone(),
            target: target.to_string(),
            id,
            binding: binding.to_owned(),
        };
        let sealed = serde_json::to_vec(&h).ok().and_then(|json| {
            self.shared_sealer
                .seal(Purpose::Handoff, &audience, expires, &json)
                .ok()
        });
        match sealed {
            Some(tok) => {
                Reply::redirect(&format!("{origin}{CALLBACK_PATH}?pomerium_handoff={tok}"))
            }
            None => internal_error(req, target.as_str()),
        }
    }

    /// AUTH `/.pomerium/sign_out`. Signs out when reached by the route host's redirect (a valid MACed link naming
    /// this browser's session, or no session here at all) or by a POST from AUTH's own page; any other GET asks
    /// first, any other POST is refused. Ends on a "signed out" page whose "sign in again" goes back to the app
    /// (through a sign-in that asks the IdP for its login form).
    fn auth_sign_out(&self, req: &Request, is_allowed_target: &dyn Fn(&Url) -> bool) -> Reply {
        let link = match self.check_link(Purpose::SignOut, &req.head.target) {
            Ok(l) => l,
            Err(why) => {
                log::warn!("sign-out link ignored: {why}");
                None
            }
        };
        let back = link
            .as_ref()
            .and_then(|(u, _)| self.allowed_target(u, is_allowed_target));
        let current = self.session_even_revoked(req, &self.auth_authority);
        // The form keeps the signed link, so a confirmed sign-out still offers the way back.
        let action = match (&link, query_of(&req.head.target)) {
            (Some(_), Some(q)) => format!("{SIGN_OUT_PATH}?{q}"),
            _ => SIGN_OUT_PATH.to_owned(),
        };
        if req.head.method == "POST" {
            if let Err(why) = same_origin(req, &self.auth_origin) {
                log::warn!(
                    "sign-out on {} refused: origin check failed: {why}",
                    self.auth_authority
                );
                return pages::sign_out_refused(req, &self.auth_authority, &action);
            }
        } else {
            // The link names a hash of the session the route host signed out: a link obtained by anyone else
            // (an <img> on another site) cannot sign this browser out.
            let matches = match (&link, &current) {
                (Some(_), None) => true,
                (Some((_, sid)), Some(s)) => {
                    !sid.is_empty()
                        && constant_time_eq(binding_hash(&s.id).as_bytes(), sid.as_bytes())
                }
                (None, _) => false,
            };
            if !matches {
                return match &current {
                    Some(s) if !self.is_revoked(s) => {
                        pages::sign_out_confirm(req, &self.auth_authority, &action)
                    }
                    _ => pages::signed_out(req, &self.sign_in_again(back.as_ref())),
                };
            }
        }
        if let Some(s) = &current {
            log::info!("signed out {} on {}", s.email, self.auth_authority);
            self.revoke(s);
        }
        let mut r = pages::signed_out(req, &self.sign_in_again(back.as_ref()));
        r.set_cookie(self.cookie.clear_cookie(&self.cookie.name));
        r.set_cookie(self.cookie.clear_cookie(&self.cookie.csrf_name()));
        // The next sign-in asks the IdP who the user is (switching account).
        r.set_cookie(self.cookie.set_cookie(
            &self.cookie.signed_out_name(),
            "1",
            self.cookie.expire_secs,
        ));
        r
    }

    /// Where "sign in again" leads: back to the app (which starts a sign-in), else AUTH's own sign-in.
    fn sign_in_again(&self, back: Option<&Url>) -> String {
        back.map(|u| u.to_string())
            .unwrap_or_else(|| format!("{}{SIGN_IN_PATH}", self.auth_origin))
    }
}

/// The query of a request target, as sent.
fn query_of(target: &str) -> Option<&str> {
    let q = target.split_once('?')?.1;
    Some(q.split('#').next().unwrap_or(q))
}

fn internal_error(req: &Request, retry: &str) -> Reply {
    log::error!("sign-in failed: could not seal a token (system random number generator)");
    pages::login_failed(
        req,
        500,
        "postern could not complete the sign-in (internal error).",
        retry,
    )
}

/// At most `max` characters of `s`, letters, digits, spaces and simple punctuation only.
fn plain(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric() || " _-.,:'()".contains(*c))
        .take(max)
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
