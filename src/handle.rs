//! One request, top to bottom.
//!
//! 1. postern's own paths on any host: `/ping`, `/healthz`, `/robots.txt`.
//! 2. The authenticate host: sign-in, the IdP callback, sign-out, its user page.
//! 3. A route host: `/.pomerium/*` (handoff callback, sign-out: GET asks, POST signs out; user page), then the route
//!    for the path; none → 404.
//! 4. Public route → forward. Otherwise the session cookie: none → sign-in redirect (401 for scripts and non-GET);
//!    a session → the route's verdict → 403 page, or forward with the head rewritten.
//!
//! Nothing here touches the network except the IdP calls inside `authn`; the wire layer (server.rs, forward.rs)
//! carries out the decision.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::authn::Authn;
use crate::config::Config;
use crate::forward::{self, ForwardPlan};
use crate::http::Request;
use crate::pages;
use crate::reply::Reply;
use crate::route::{self, Origin, Route, Verdict};
use crate::server::{Action, Decision, Handler};
use crate::session::Session;

pub struct App {
    config: Config,
    authn: Authn,
    /// The authenticate host as `host[:port]`, issuer of identity assertions; computed once.
    auth_authority: String,
    /// COOKIE_NAME, shared with every forward plan.
    own_cookie: Rc<str>,
}

/// The parts of the request target the decision needs.
struct Target {
    host: String,
    port: Option<u16>,
    /// The normalized path the policy judges (see path.rs).
    path: String,
    /// The normalized path and the query as sent: what is forwarded (origin-form).
    path_and_query: String,
}

fn reply(r: Reply) -> Decision {
    Decision {
        action: Action::Reply(r),
        user: None,
    }
}

/// Splits the request-target, normalizes its path and finds the host. Absolute-form targets must agree with `Host`.
fn target_of(req: &Request) -> Result<Target, String> {
    let raw = req.head.target.as_str();
    let path_and_query = if raw.starts_with('/') {
        raw
    } else if let Some(rest) = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"))
    {
        // Absolute form (RFC 9112 §3.2.2): the authority in the target wins, so it must equal Host.
        let (authority, pq) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host_header = req.head.headers.get("host").unwrap_or_default();
        if !authority.eq_ignore_ascii_case(host_header) {
            return Err("the request target names a different host than the Host header".into());
        }
        if pq.is_empty() {
            "/"
        } else {
            pq
        }
    } else {
        return Err("the request target must be a path starting with /".into());
    };
    let mut hosts = req.head.headers.get_all("host");
    let host_header = hosts.next().ok_or("the request has no Host header")?;
    if hosts.next().is_some() {
        return Err("the request has more than one Host header".into());
    }
    let (host, port) =
        route::normalize_host(host_header).ok_or("the Host header is not a valid host name")?;
    if path_and_query.contains('#') {
        return Err(crate::path::PathError::Fragment.to_string());
    }
    let (raw_path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let path = crate::path::normalize(raw_path).map_err(|e| e.to_string())?;
    let path_and_query = match query {
        Some(q) => format!("{}?{q}", path.forward),
        None => path.forward,
    };
    Ok(Target {
        host,
        port,
        path: path.judge,
        path_and_query,
    })
}

/// Requests from scripts get a 401 rather than a redirect to the IdP they could not follow (B18).
fn is_script(req: &Request) -> bool {
    let h = &req.head.headers;
    let accept = h.get("accept").unwrap_or_default().to_ascii_lowercase();
    (accept.contains("application/json") && !accept.contains("text/html"))
        || h.contains("x-requested-with")
        || h.get("sec-fetch-mode")
            .is_some_and(|m| m.eq_ignore_ascii_case("cors"))
}

/// Only GET and HEAD may be replayed after a login; anything else would lose its body (B17).
fn is_safe(method: &str) -> bool {
    method == "GET" || method == "HEAD"
}

impl App {
    pub fn new(config: Config, authn: Authn) -> App {
        let auth_authority = config.authenticate.authority();
        let own_cookie = Rc::from(config.cookie.name.as_str());
        App {
            config,
            authn,
            auth_authority,
            own_cookie,
        }
    }

    pub async fn decide(&self, req: &Request) -> Decision {
        // Health checks and crawlers get their answer on any host, even without one (an HTTP/1.0 probe).
        let raw_path = req.head.target.split('?').next().unwrap_or_default();
        match raw_path {
            "/ping" | "/healthz" => return reply(Reply::text(200, "OK\n")),
            "/robots.txt" => return reply(Reply::text(200, "User-agent: *\nDisallow: /\n")),
            _ => {}
        }
        let target = match target_of(req) {
            Ok(t) => t,
            Err(why) => return reply(pages::bad_request(Some(req), &why)),
        };

        let auth = &self.config.authenticate;
        if auth.matches(&target.host, target.port) {
            return self.authenticate_host(req, &target).await;
        }

        let Some(origin) = self.config.policy.has_host(&target.host, target.port) else {
            if target.port.is_some() && self.config.policy.has_host(&target.host, None).is_some() {
                // A common set-up slip: the proxy in front passes its own port in Host (DSM with a custom port).
                log::warn!(
                    "no route for {}:{}, though {} has routes on its default port: the Host header carries a port the routes' `from` does not name (give `from` that port, or make the proxy in front send the Host without it)",
                    target.host,
                    target.port.unwrap_or_default(),
                    target.host
                );
            }
            let shown = match target.port {
                Some(p) => format!("{}:{p}", target.host),
                None => target.host.clone(),
            };
            return reply(pages::not_found(Some(req), &shown));
        };

        if target.path == "/.well-known/pomerium/jwks.json" {
            let jwks = self
                .config
                .signing_key
                .as_ref()
                .map(|k| k.jwks())
                .unwrap_or("{\"keys\":[]}\n");
            return reply(Reply::json(200, jwks));
        }
        if let Some(own) = target.path.strip_prefix("/.pomerium") {
            return self.own_path(req, origin, own);
        }

        let Some(route) = self
            .config
            .policy
            .find(&target.host, target.port, &target.path)
        else {
            return reply(pages::no_route_for_path(
                Some(req),
                &target.host,
                &target.path,
            ));
        };
        if route.is_public() {
            return self.forward(req, route, origin, &target, None);
        }

        let Some(session) = self.authn.session(req, &origin.authority()) else {
            return reply(self.sign_in(req, origin, &target));
        };
        match route.verdict(&session.identity()) {
            Verdict::Allow => self.forward(req, route, origin, &target, Some(&session)),
            Verdict::Deny(reason) => Decision {
                action: Action::Reply(pages::forbidden(
                    Some(req),
                    &origin.authority(),
                    &session.email,
                    &reason.to_string(),
                    "/.pomerium/sign_out",
                )),
                user: Some(session.email.clone()),
            },
        }
    }

    /// No session on a route host: browsers go to sign in and come back; scripts and non-GET requests get a 401.
    fn sign_in(&self, req: &Request, origin: &Origin, target: &Target) -> Reply {
        if is_script(req) || !is_safe(&req.head.method) {
            // The return target is the app's front page, which a GET can load safely.
            let retry = format!("{}/", origin.url());
            let mut r = pages::unauthorized(Some(req), &retry);
            // The app's own scripts must be able to read the 401 (B18); other origins learn nothing.
            if req.head.headers.get("origin") == Some(origin.url().as_str()) {
                r.headers
                    .append("access-control-allow-origin", origin.url());
                r.headers.append("access-control-allow-credentials", "true");
            }
            r.headers.append("vary", "Origin");
            return r;
        }
        let original = format!("{}{}", origin.url(), target.path_and_query);
        self.authn.sign_in_redirect(req, &origin.url(), &original)
    }

    /// `/.pomerium/…` on a route host.
    fn own_path(&self, req: &Request, origin: &Origin, rest: &str) -> Decision {
        match rest {
            "/callback" => reply(self.authn.handoff(req, &origin.authority(), &origin.url())),
            "/sign_out" => reply(self.authn.sign_out(req, &origin.authority(), &origin.url())),
            "" | "/" => match self.authn.session(req, &origin.authority()) {
                Some(s) => self.user_page(req, &s, &origin.authority()),
                None => {
                    let target = Target {
                        host: origin.host.clone(),
                        port: Some(origin.port),
                        path: "/.pomerium/".into(),
                        path_and_query: "/.pomerium/".into(),
                    };
                    reply(self.sign_in(req, origin, &target))
                }
            },
            _ => reply(pages::no_route_for_path(
                Some(req),
                &origin.authority(),
                &format!("/.pomerium{rest}"),
            )),
        }
    }

    /// The authenticate host's own paths; everything else there is a 404.
    async fn authenticate_host(&self, req: &Request, target: &Target) -> Decision {
        let auth = &self.config.authenticate;
        match target.path.as_str() {
            "/.pomerium/sign_in" | "/oauth2/callback" | "/.pomerium/sign_out" => {
                let allowed = |url: &url::Url| self.is_allowed_target(url);
                reply(self.authn.authenticate_host(req, &allowed).await)
            }
            "/.pomerium" | "/.pomerium/" => match self.authn.session(req, &auth.authority()) {
                Some(s) => self.user_page(req, &s, &auth.authority()),
                None => reply(pages::signed_out(Some(req), "/.pomerium/sign_in")),
            },
            _ => reply(pages::no_route_for_path(
                Some(req),
                &auth.authority(),
                &target.path,
            )),
        }
    }

    fn user_page(&self, req: &Request, s: &Session, host: &str) -> Decision {
        let info = pages::UserInfo {
            email: &s.email,
            email_verified: s.email_verified,
            name: s.name.as_deref(),
            groups: &s.groups,
            expires: s.expires,
            host,
        };
        Decision {
            action: Action::Reply(pages::user_page(Some(req), &info, "/.pomerium/sign_out")),
            user: Some(s.email.clone()),
        }
    }

    fn rewrite_settings(&self) -> crate::rewrite::Settings<'_> {
        crate::rewrite::Settings {
            cookie_name: &self.config.cookie.name,
            trusted: &self.config.trusted_proxies,
            signer: self.config.signing_key.as_ref(),
            issuer: &self.auth_authority,
        }
    }

    /// A redirect target postern may send a browser to: a policy host with the scheme of its `from`, or the
    /// authenticate host; never userinfo, never another scheme.
    fn is_allowed_target(&self, url: &url::Url) -> bool {
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return false,
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port();
        let auth = &self.config.authenticate;
        if auth.https == https && auth.matches(host, port) {
            return true;
        }
        self.config
            .policy
            .has_host(host, port)
            .is_some_and(|origin| origin.https == https)
    }

    fn forward(
        &self,
        req: &Request,
        route: &Route,
        origin: &Origin,
        target: &Target,
        session: Option<&Session>,
    ) -> Decision {
        let user = session.map(|s| s.email.clone());
        // A WebSocket handshake is never sent on as a plain request: either the route allows the tunnel, or no.
        let websocket = forward::wants_websocket(&req.head);
        if websocket && !route.allow_websockets {
            return Decision {
                action: Action::Reply(pages::websockets_disabled(Some(req), &origin.authority())),
                user,
            };
        }
        let headers =
            crate::rewrite::upstream_headers(req, route, origin, &self.rewrite_settings(), session);
        let plan = ForwardPlan {
            own_cookie: Rc::clone(&self.own_cookie),
            upstream: Rc::clone(&route.to),
            method: req.head.method.clone(),
            target: target.path_and_query.clone(),
            headers,
            timeout: route
                .timeout
                .unwrap_or(self.config.default_upstream_timeout),
            idle_timeout: route.idle_timeout,
            websocket,
            session_expires: session.map(|s| s.expires),
        };
        Decision {
            action: Action::Forward(plan),
            user,
        }
    }
}

impl Handler for App {
    fn handle<'a>(&'a self, req: &'a Request) -> Pin<Box<dyn Future<Output = Decision> + 'a>> {
        Box::pin(self.decide(req))
    }

    fn error_page(&self, req: Option<&Request>, status: u16, detail: &str) -> Reply {
        pages::wire_error(req, status, detail)
    }
}
