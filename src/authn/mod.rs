//! Sign-in across hosts: the route host's side (open its session cookie, send the browser to sign in, accept a
//! hand-off, sign out) and the authenticate host's side (`/.pomerium/sign_in`, `/oauth2/callback`,
//! `/.pomerium/sign_out`).
//!
//! The flow:
//! ```text
//! route host, no session ─302─> AUTH/.pomerium/sign_in?pomerium_redirect_uri=URL&pomerium_issued=T&pomerium_sig=MAC
//! AUTH has a session?  ─302─> https://<route host>/.pomerium/callback?pomerium_handoff=<sealed, 5 min, host-bound>
//!            otherwise ─302─> IdP (sealed state: binding, nonce, PKCE verifier, URL) + `<cookie>_csrf` binding cookie
//! IdP ─302─> AUTH/oauth2/callback: state opens and matches the binding cookie, code exchanged, id_token verified,
//!            AUTH's own session cookie set ─302─> route host's /.pomerium/callback as above
//! route host /.pomerium/callback: hand-off opens for exactly this host, its own cookie set ─302─> URL
//! ```
//! Session cookies are sealed under COOKIE_SECRET; hand-offs and the MACs on sign-in/sign-out links use
//! SHARED_SECRET. Every redirect target is checked by the caller's `is_allowed_target` (a policy host with its
//! `from` scheme, or the authenticate host) after being parsed the way a browser parses it, and the Location
//! written is the parsed URL's serialization, never the raw input.

pub mod idtoken;
pub mod oidc;
pub mod pages;

use std::collections::HashSet;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::http::Request;
use crate::reply::Reply;
use crate::seal::{self, Purpose, Sealer, LEEWAY_SECS};
use crate::session::{self, CookieSettings, Session};
use oidc::{IdpKind, IdpSettings, OidcError, Provider, Transport};

/// How long a hand-off token lives (the browser follows it at once).
pub const HANDOFF_SECS: u64 = 300;
/// How long a MACed sign-in or sign-out link stays valid.
pub const LINK_SECS: u64 = 300;
/// How long the IdP round trip may take (state token and binding cookie).
pub const STATE_SECS: u64 = 600;

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
    shared_sealer: Sealer,
    link_key: hmac::Key,
    /// `https://auth.example.com` (port only when not the default).
    auth_origin: String,
    /// `auth.example.com` (port only when not the default): the audience of AUTH's own tokens.
    auth_authority: String,
    policy_groups: HashSet<String>,
    provider: Provider,
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
            shared_sealer: Sealer::new(&settings.shared_secret),
            link_key,
            auth_origin,
            auth_authority,
            policy_groups: settings.policy_groups,
            provider: Provider::new(settings.idp, redirect, settings.transport),
            cookie: settings.cookie,
        })
    }

    fn session_audience<'a>(&'a self, host: &'a str) -> &'a str {
        // With COOKIE_DOMAIN one cookie serves every host under it, so it is sealed for that domain.
        self.cookie.domain.as_deref().unwrap_or(host)
    }

    /// The session of the request on `host` (the route's authority: `app.example.com`, or `app.example.com:8443`
    /// when the port is not the default). `None` when absent, tampered, expired, truncated or made for another host.
    pub fn session(&self, req: &Request, host: &str) -> Option<Session> {
        session::session_from_headers(
            &self.cookie_sealer,
            self.session_audience(host),
            crate::clock::now_secs(),
            &req.head.headers,
            &self.cookie.name,
        )
    }

    fn link_mac(&self, purpose: Purpose, url: &str, issued: u64) -> hmac::Tag {
        let msg = format!(
            "{}\0{}\0{issued}\0{url}",
            purpose.name(),
            self.auth_authority
        );
        hmac::sign(&self.link_key, msg.as_bytes())
    }

    /// `AUTH<path>?pomerium_redirect_uri=..&pomerium_issued=..&pomerium_sig=..`
    fn signed_link(&self, path: &str, purpose: Purpose, url: &str) -> String {
        let issued = crate::clock::now_secs();
        let sig = URL_SAFE_NO_PAD.encode(self.link_mac(purpose, url, issued).as_ref());
        format!(
            "{}{path}?pomerium_redirect_uri={}&pomerium_issued={issued}&pomerium_sig={sig}",
            self.auth_origin,
            enc(url)
        )
    }

    /// Checks a signed link's MAC and age; returns the URL it carries.
    fn check_link(&self, purpose: Purpose, target: &str) -> Result<Option<String>, &'static str> {
        let Some(url) = query_param(target, "pomerium_redirect_uri") else {
            return Ok(None);
        };
        let issued: u64 = query_param(target, "pomerium_issued")
            .and_then(|s| s.parse().ok())
            .ok_or("the link has no valid pomerium_issued time")?;
        let sig = query_param(target, "pomerium_sig")
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .ok_or("the link has no valid pomerium_sig")?;
        let msg = format!(
            "{}\0{}\0{issued}\0{url}",
            purpose.name(),
            self.auth_authority
        );
        hmac::verify(&self.link_key, msg.as_bytes(), &sig)
            .map_err(|_| "the link's signature does not match")?;
        let now = crate::clock::now_secs();
        if issued > now.saturating_add(LEEWAY_SECS)
            || now > issued.saturating_add(LINK_SECS + LEEWAY_SECS)
        {
            return Err("the link has expired");
        }
        Ok(Some(url))
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

    /// Route host, no session: a 302 to the authenticate host's sign-in with a signed, timed return URL.
    /// `route_origin` is the route's `from` origin (`https://app.example.com`); `original_url` the full URL the user
    /// asked for, built from it.
    pub fn sign_in_redirect(&self, route_origin: &str, original_url: &str) -> Reply {
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
        Reply::redirect(&self.signed_link(SIGN_IN_PATH, Purpose::SignIn, &back))
    }

    /// Route host `/.pomerium/callback`: opens the hand-off for exactly this `host` (authority) and `origin`, sets
    /// the host's own session cookie and sends the browser to the URL it first asked for.
    pub fn handoff(&self, req: &Request, host: &str, origin: &str) -> Reply {
        let retry = format!("{origin}/");
        let fail = |why: &str| {
            log::warn!("hand-off on {host} refused: {why}");
            pages::login_failed(
                req,
                400,
                "The sign-in hand-off is invalid or has expired.",
                &retry,
            )
        };
        let Some(token) = query_param(&req.head.target, "pomerium_handoff") else {
            return fail("no pomerium_handoff parameter");
        };
        let now = crate::clock::now_secs();
        let payload = match self.shared_sealer.open(Purpose::Handoff, host, now, &token) {
            Ok(p) => p,
            Err(e) => return fail(&e.to_string()),
        };
        let Ok(h) = serde_json::from_slice::<Handoff>(&payload) else {
            return fail("hand-off content unreadable");
        };
        let target = match Url::parse(&h.target) {
            Ok(u) if origin_string(&u).as_deref() == Some(origin) => u,
            _ => return fail("hand-off target is not on this host"),
        };
        if now > h.session.expires {
            return fail("session in the hand-off has expired");
        }
        let sealed = match session::seal_session(
            &self.cookie_sealer,
            self.session_audience(host),
            &h.session,
        ) {
            Ok(s) => s,
            Err(e) => return fail(&e.to_string()),
        };
        let mut r = Reply::redirect(target.as_str());
        r.set_cookie(self.cookie.set_cookie(
            &self.cookie.name,
            &sealed,
            h.session.expires.saturating_sub(now),
        ));
        r
    }

    /// Route host `/.pomerium/sign_out`: clears the host's cookie and sends the browser to the authenticate host to
    /// end the session there too, with a signed return URL (this origin's `/`, or the `pomerium_redirect_uri` given
    /// when it is on this origin).
    pub fn sign_out(&self, req: &Request, origin: &str) -> Reply {
        let back = query_param(&req.head.target, "pomerium_redirect_uri")
            .and_then(|u| Url::parse(&u).ok())
            .filter(|u| origin_string(u).as_deref() == Some(origin))
            .map(|u| u.to_string())
            .unwrap_or_else(|| format!("{origin}/"));
        let mut r = Reply::redirect(&self.signed_link(SIGN_OUT_PATH, Purpose::SignOut, &back));
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
        let raw = match self.check_link(Purpose::SignIn, &req.head.target) {
            Ok(Some(u)) => u,
            // Signing in to the authenticate host itself: land on its user page.
            Ok(None) => format!("{}/.pomerium/", self.auth_origin),
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
        if let Some(s) = self.session(req, &self.auth_authority) {
            return self.send_home(req, &s, &target);
        }
        self.start_idp(req, &target).await
    }

    /// Starts the IdP round trip for `target`.
    async fn start_idp(&self, req: &Request, target: &Url) -> Reply {
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
            return self.send_home(req, &s, &target);
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
        let mut session = Session {
            email,
            email_verified: claims.email_verified,
            name: claims.name,
            groups: claims
                .groups
                .into_iter()
                .filter(|g| self.policy_groups.contains(g))
                .collect(),
            issued: now,
            expires: now.saturating_add(self.cookie.expire_secs),
        };
        let dropped = session::fit(&mut session);
        if dropped > 0 {
            log::warn!(
                "session for {}: {dropped} policy groups dropped to fit the cookie",
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
        let mut r = self.send_home(req, &session, &target);
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

    /// A 302 to `target`: directly on the authenticate host, through a hand-off elsewhere.
    fn send_home(&self, req: &Request, session: &Session, target: &Url) -> Reply {
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
        let h = Handoff {
            session: session.clone(),
            target: target.to_string(),
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

    fn auth_sign_out(&self, req: &Request, is_allowed_target: &dyn Fn(&Url) -> bool) -> Reply {
        let back = match self.check_link(Purpose::SignOut, &req.head.target) {
            Ok(u) => u.and_then(|u| self.allowed_target(&u, is_allowed_target)),
            Err(why) => {
                log::warn!("sign-out return link ignored: {why}");
                None
            }
        };
        if let Some(s) = self.session(req, &self.auth_authority) {
            log::info!("signed out {}", s.email);
        }
        // With a signed way back, return to the app: having no session there it starts a sign-in, and the marker
        // set here makes the IdP ask who the user is (switching account). Without one, say so on a page.
        let mut r = match &back {
            Some(url) => Reply::redirect(url.as_str()),
            None => pages::signed_out(req),
        };
        r.set_cookie(self.cookie.clear_cookie(&self.cookie.name));
        r.set_cookie(self.cookie.clear_cookie(&self.cookie.csrf_name()));
        r.set_cookie(self.cookie.set_cookie(
            &self.cookie.signed_out_name(),
            "1",
            self.cookie.expire_secs,
        ));
        r
    }
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
