//! The compiled policy: which route a request's host and path belong to, and who may pass.
//!
//! Built once by `config::load` and never re-parsed: hosts are stored lower-cased without a trailing dot, path
//! rules are compiled (regexes included), user and domain lists are lower-cased. Routes are tried in policy order;
//! the first match wins.

use futures_rustls::rustls::pki_types::CertificateDer;
use futures_rustls::rustls::ClientConfig;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// A public origin postern answers for: a route's `from`, or the authenticate host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    /// Lower-cased, no trailing dot, no brackets around IPv6 addresses.
    pub host: String,
    /// Always set: the scheme's default when the URL has none.
    pub port: u16,
}

impl Origin {
    /// True when the port is the scheme's default, so URLs leave it out.
    pub fn default_port(&self) -> bool {
        self.port == if self.https { 443 } else { 80 }
    }

    /// `https://host` or `https://host:8443` (IPv6 in brackets).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.authority()
        )
    }

    /// The Host header value for this origin.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port, self.default_port())
    }

    /// Does a request's (normalized) host and port belong to this origin? An origin on its scheme's default port
    /// answers for no port, `:443` and `:80` alike: behind DSM's nginx the listener is plain http while the public
    /// URLs are https, so the port a client writes says nothing about which route it means. An explicit other port
    /// matches only itself.
    #[allow(dead_code)] // used by Policy::find (handle.rs)
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if !self.host.eq_ignore_ascii_case(host) {
            return false;
        }
        if self.default_port() {
            matches!(port, None | Some(443) | Some(80))
        } else {
            port == Some(self.port)
        }
    }

    /// Is `url` on exactly this origin (same scheme, host and port)? For redirect targets: stricter than
    /// `matches`, since a URL postern sends a browser to must be the one the configuration names.
    #[allow(dead_code)] // used by authn (redirect targets)
    pub fn is_origin_of(&self, url: &url::Url) -> bool {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return false,
        };
        https == self.https
            && url_host(url).is_some_and(|h| h == self.host)
            && url.port_or_known_default() == Some(self.port)
            && url.username().is_empty()
            && url.password().is_none()
    }

    /// Would the two origins answer for the same requests?
    pub fn overlaps(&self, other: &Origin) -> bool {
        self.host == other.host
            && (self.port == other.port || (self.default_port() && other.default_port()))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

fn authority(host: &str, port: u16, default_port: bool) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if default_port {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// Where a route's requests go (`to`).
#[allow(dead_code)] // fields read by forward.rs
#[derive(Clone, Debug)]
pub struct Upstream {
    pub https: bool,
    /// Lower-cased, no brackets around IPv6 addresses; what to connect to.
    pub host: String,
    pub port: u16,
    /// The Host header to send (unless the route preserves the client's).
    pub authority: String,
    /// `to` as written in the policy, for logs.
    pub url: String,
    /// SNI and certificate name to check instead of `host` (tls_server_name).
    pub tls_server_name: Option<String>,
    pub tls_skip_verify: bool,
    /// Extra trust roots for this upstream (tls_custom_ca / tls_custom_ca_file), already parsed.
    pub tls_custom_ca: Vec<CertificateDer<'static>>,
    /// This upstream's own TLS client settings when it needs them (custom CA, skip verify); built at load.
    pub tls_config: Option<Arc<ClientConfig>>,
}

impl Upstream {
    pub(crate) fn new(https: bool, host: String, port: u16, url: String) -> Self {
        let authority = authority(&host, port, port == if https { 443 } else { 80 });
        Upstream {
            https,
            host,
            port,
            authority,
            url,
            tls_server_name: None,
            tls_skip_verify: false,
            tls_custom_ca: Vec::new(),
            tls_config: None,
        }
    }

    /// The TLS client settings to connect with; `None` for plain-http upstreams.
    #[allow(dead_code)] // used by forward.rs
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        if !self.https {
            return None;
        }
        Some(
            self.tls_config
                .clone()
                .unwrap_or_else(crate::tls::client_config),
        )
    }

    /// The name for SNI and the certificate check: tls_server_name, else the host.
    #[allow(dead_code)] // used by forward.rs
    pub fn server_name(&self) -> &str {
        self.tls_server_name.as_deref().unwrap_or(&self.host)
    }
}

/// Which paths of its host a route takes.
#[derive(Clone, Debug)]
pub enum PathRule {
    /// Every path.
    Any,
    /// `prefix`: the path equals it or continues it at a `/` (`/admin` takes `/admin/x`, not `/administrator`).
    /// A prefix ending in `/` matches as written.
    Prefix(String),
    /// `path`: exactly this path.
    Exact(String),
    /// `regex`, anchored to the whole path, compiled at load.
    Regex(regex_lite::Regex),
}

impl PathRule {
    #[allow(dead_code)] // used by Policy::find (handle.rs)
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathRule::Any => true,
            // `/status/` is `/status` to most apps (Express, Flask): the rule covers both, so neither slips past it.
            PathRule::Exact(p) => path == p || path.strip_suffix('/') == Some(p.as_str()),
            PathRule::Prefix(p) => match path.strip_prefix(p.as_str()) {
                Some(rest) => p.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
                None => false,
            },
            PathRule::Regex(re) => re.is_match(path),
        }
    }
}

impl fmt::Display for PathRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathRule::Any => Ok(()),
            PathRule::Prefix(p) => write!(f, " prefix {p}"),
            PathRule::Exact(p) => write!(f, " path {p}"),
            PathRule::Regex(re) => write!(f, " regex {}", re.as_str()),
        }
    }
}

/// Who may pass a route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// allow_public_unauthenticated_access: no login at all.
    pub public: bool,
    /// allow_any_authenticated_user.
    pub any_authenticated: bool,
    /// allowed_users, lower-cased.
    pub users: Vec<String>,
    /// allowed_domains, lower-cased, without `@`.
    pub domains: Vec<String>,
    /// allowed_groups, exact.
    pub groups: Vec<String>,
}

impl Access {
    /// No rule lets anyone in: every request gets 403.
    pub fn denies_everyone(&self) -> bool {
        !self.public
            && !self.any_authenticated
            && self.users.is_empty()
            && self.domains.is_empty()
            && self.groups.is_empty()
    }
}

/// One compiled route.
#[allow(dead_code)] // fields read by handle.rs and forward.rs
#[derive(Clone, Debug)]
pub struct Route {
    /// 1-based position in the policy, for logs and messages.
    pub index: usize,
    pub from: Origin,
    pub path: PathRule,
    pub to: Rc<Upstream>,
    pub access: Access,
    pub preserve_host_header: bool,
    /// Header names as written; values exact.
    pub set_request_headers: Vec<(String, String)>,
    /// Lower-cased header names.
    pub remove_request_headers: Vec<String>,
    /// Time to the upstream's response head; `None` means DEFAULT_UPSTREAM_TIMEOUT.
    pub timeout: Option<Duration>,
    /// Longest pause between two bytes of a streamed body or a WebSocket tunnel (`idle_timeout`, default
    /// `DEFAULT_IDLE_TIMEOUT`); `None`: no limit (`idle_timeout: 0s`).
    pub idle_timeout: Option<Duration>,
    pub allow_websockets: bool,
    pub cors_allow_preflight: bool,
    pub pass_identity_headers: bool,
}

/// A route's `idle_timeout` when the policy sets none (Pomerium's default too).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Who is asking, as the session says.
#[allow(dead_code)] // built by handle.rs from the session
#[derive(Clone, Copy, Debug)]
pub struct Identity<'a> {
    /// As the IdP sent it; compared case-insensitively.
    pub email: &'a str,
    pub email_verified: bool,
    pub groups: &'a [String],
}

/// Why a signed-in user was refused; the 403 page shows `message()`.
#[allow(dead_code)] // used by handle.rs and the 403 page
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// No rule of the route names this user, their domain or a group of theirs.
    NotAllowed,
    /// The user or domain is listed, but the identity provider has not verified the email address.
    EmailNotVerified,
}

#[allow(dead_code)] // used by the 403 page
impl DenyReason {
    pub fn message(self) -> &'static str {
        match self {
            DenyReason::NotAllowed => "This account is not allowed to use this site.",
            DenyReason::EmailNotVerified => {
                "The identity provider has not verified this account's email address, so it cannot be matched against the allowed users."
            }
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DenyReason::NotAllowed => "not allowed",
            DenyReason::EmailNotVerified => "email not verified",
        })
    }
}

/// What `Route::verdict` decided.
#[allow(dead_code)] // used by handle.rs
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(DenyReason),
}

#[allow(dead_code)] // used by handle.rs
impl Route {
    pub fn is_public(&self) -> bool {
        self.access.public
    }

    /// May this signed-in identity pass? (Public routes need no identity: check `is_public` first.)
    pub fn verdict(&self, id: &Identity<'_>) -> Verdict {
        let a = &self.access;
        if a.public || a.any_authenticated {
            return Verdict::Allow;
        }
        if id.groups.iter().any(|g| a.groups.contains(g)) {
            return Verdict::Allow;
        }
        let email = id.email.trim().to_lowercase();
        let listed = !email.is_empty()
            && (a.users.contains(&email)
                || email
                    .rsplit_once('@')
                    .is_some_and(|(_, d)| a.domains.iter().any(|allowed| allowed == d)));
        match (listed, id.email_verified) {
            (true, true) => Verdict::Allow,
            (true, false) => Verdict::Deny(DenyReason::EmailNotVerified),
            (false, _) => Verdict::Deny(DenyReason::NotAllowed),
        }
    }
}

/// The routes in policy order.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub routes: Vec<Route>,
}

#[allow(dead_code)] // used by handle.rs
impl Policy {
    /// The first route whose `from` answers for this host and port and whose path rule takes `path`. `host` and
    /// `port` come from `normalize_host`; `path` is already normalized by the caller.
    pub fn find(&self, host: &str, port: Option<u16>, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.from.matches(host, port) && r.path.matches(path))
    }

    /// The route origin a URL is on, if any (a redirect target must be one, or the authenticate host).
    pub fn origin_of_url(&self, url: &url::Url) -> Option<&Origin> {
        self.routes
            .iter()
            .map(|r| &r.from)
            .find(|o| o.is_origin_of(url))
    }

    /// The origin of some route on this host, whatever the path (postern's own endpoints, redirect targets).
    pub fn has_host(&self, host: &str, port: Option<u16>) -> Option<&Origin> {
        self.routes
            .iter()
            .map(|r| &r.from)
            .find(|o| o.matches(host, port))
    }
}

/// A URL's host as origins store it: lower-case, no trailing dot, no IPv6 brackets. `None` for names a Host
/// header could not carry (`*`, `%`, spaces).
pub fn url_host(url: &url::Url) -> Option<String> {
    match url.host()? {
        url::Host::Domain(d) => normalize_host(d)
            .filter(|(_, port)| port.is_none())
            .map(|(h, _)| h),
        url::Host::Ipv4(ip) => Some(ip.to_string()),
        url::Host::Ipv6(ip) => Some(ip.to_string()),
    }
}

/// Split and normalize a Host header (or URL authority): lower-cased host without a trailing dot or IPv6 brackets,
/// and the port if one is written. `None` for anything that is not a plain host name or IP address with an
/// optional port: spaces, userinfo, empty names, bad ports, zone ids.
pub fn normalize_host(host_header: &str) -> Option<(String, Option<u16>)> {
    let s = host_header;
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        inner.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        (inner.to_ascii_lowercase(), port)
    } else {
        let (name, port) = match s.split_once(':') {
            Some((name, p)) => (name, Some(parse_port(p)?)),
            None => (s, None),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty()
            || name.len() > 253
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            || name
                .split('.')
                .any(|label| label.is_empty() || label.len() > 63)
        {
            return None;
        }
        (name.to_ascii_lowercase(), port)
    };
    Some((host, port))
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(port) => Some(port),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A route to http://127.0.0.1:9001 from https://app.example.com that lets nobody in, for other modules' tests.
    pub(crate) fn route_for_tests() -> Route {
        route(
            1,
            origin(true, "app.example.com", 443),
            PathRule::Any,
            Access::default(),
        )
    }

    fn origin(https: bool, host: &str, port: u16) -> Origin {
        Origin {
            https,
            host: host.into(),
            port,
        }
    }

    fn route(index: usize, from: Origin, path: PathRule, access: Access) -> Route {
        Route {
            index,
            from,
            path,
            to: Rc::new(Upstream::new(
                false,
                "127.0.0.1".into(),
                9001,
                "http://127.0.0.1:9001".into(),
            )),
            access,
            preserve_host_header: false,
            set_request_headers: Vec::new(),
            remove_request_headers: Vec::new(),
            timeout: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            allow_websockets: false,
            cors_allow_preflight: false,
            pass_identity_headers: false,
        }
    }

    type HostCase<'a> = (&'a str, Option<(&'a str, Option<u16>)>);

    #[test]
    fn normalize_host_table() {
        let cases: &[HostCase] = &[
            ("app.example.com", Some(("app.example.com", None))),
            ("APP.Example.COM", Some(("app.example.com", None))),
            ("app.example.com.", Some(("app.example.com", None))),
            ("app.example.com:443", Some(("app.example.com", Some(443)))),
            (
                "app.example.com.:8443",
                Some(("app.example.com", Some(8443))),
            ),
            ("[::1]:8443", Some(("::1", Some(8443)))),
            ("[::1]", Some(("::1", None))),
            ("[FE80::1]", Some(("fe80::1", None))),
            ("127.0.0.1:80", Some(("127.0.0.1", Some(80)))),
            ("localhost", Some(("localhost", None))),
            ("", None),
            (":443", None),
            ("app.example.com:", None),
            ("app.example.com:0", None),
            ("app.example.com:65536", None),
            ("app.example.com:+80", None),
            ("app.example.com:80:80", None),
            ("user@app.example.com", None),
            ("app example.com", None),
            (" app.example.com", None),
            ("app..example.com", None),
            (".", None),
            ("::1", None),
            ("[::1", None),
            ("[::1]x", None),
            ("[::1%eth0]", None),
            ("[not:an:ip]", None),
            ("app.example.com/x", None),
        ];
        for (input, want) in cases {
            let got = normalize_host(input);
            let want = want.map(|(h, p)| (h.to_string(), p));
            assert_eq!(got, want, "{input:?}");
        }
    }

    /// B03: the default port written out, any case and a trailing dot all reach the same route; an explicit
    /// non-default port is its own route.
    #[test]
    fn host_matching_table() {
        let https_default = origin(true, "app.example.com", 443);
        let http_default = origin(false, "app.example.com", 80);
        let https_8443 = origin(true, "app.example.com", 8443);
        let cases: &[(&Origin, &str, bool)] = &[
            (&https_default, "app.example.com", true),
            (&https_default, "app.example.com:443", true),
            (&https_default, "APP.Example.COM", true),
            (&https_default, "app.example.com.", true),
            (&https_default, "app.example.com:80", true),
            (&https_default, "app.example.com:8443", false),
            (&https_default, "other.example.com", false),
            (&https_default, "app.example.com.evil.test", false),
            (&http_default, "app.example.com:443", true),
            (&http_default, "app.example.com", true),
            (&https_8443, "app.example.com:8443", true),
            (&https_8443, "APP.EXAMPLE.COM.:8443", true),
            (&https_8443, "app.example.com", false),
            (&https_8443, "app.example.com:443", false),
            (&https_8443, "app.example.com:80", false),
        ];
        for (o, host, want) in cases {
            let (h, p) = normalize_host(host).unwrap();
            assert_eq!(o.matches(&h, p), *want, "{} vs Host {host}", o.url());
        }
    }

    #[test]
    fn origin_urls() {
        assert_eq!(origin(true, "a.example", 443).url(), "https://a.example");
        assert_eq!(
            origin(true, "a.example", 8443).url(),
            "https://a.example:8443"
        );
        assert_eq!(origin(false, "::1", 8080).url(), "http://[::1]:8080");
        assert_eq!(
            Upstream::new(false, "::1".into(), 80, String::new()).authority,
            "[::1]"
        );
        assert_eq!(
            Upstream::new(true, "up".into(), 8443, String::new()).authority,
            "up:8443"
        );
    }

    #[test]
    fn overlaps() {
        let a = origin(true, "auth.example", 443);
        assert!(a.overlaps(&origin(false, "auth.example", 80)));
        assert!(a.overlaps(&origin(true, "auth.example", 443)));
        assert!(!a.overlaps(&origin(true, "auth.example", 8443)));
        assert!(!a.overlaps(&origin(true, "app.example", 443)));
    }

    #[test]
    fn path_rule_table() {
        let re = regex_lite::Regex::new("^(?:/api/v[0-9]+/.*)$").unwrap();
        let cases: &[(PathRule, &str, bool)] = &[
            (PathRule::Any, "/anything", true),
            (PathRule::Prefix("/admin".into()), "/admin", true),
            (PathRule::Prefix("/admin".into()), "/admin/", true),
            (PathRule::Prefix("/admin".into()), "/admin/x", true),
            (PathRule::Prefix("/admin".into()), "/administrator", false),
            (PathRule::Prefix("/admin".into()), "/adm", false),
            (PathRule::Prefix("/admin".into()), "/", false),
            (PathRule::Prefix("/admin/".into()), "/admin/x", true),
            (PathRule::Prefix("/admin/".into()), "/admin", false),
            (PathRule::Prefix("/".into()), "/x", true),
            (PathRule::Exact("/status".into()), "/status", true),
            (PathRule::Exact("/status".into()), "/status/", true),
            (PathRule::Exact("/status".into()), "/status/x", false),
            (PathRule::Regex(re.clone()), "/api/v2/users", true),
            (PathRule::Regex(re.clone()), "/x/api/v2/users", false),
            (PathRule::Regex(re), "/api/vx/users", false),
        ];
        for (rule, path, want) in cases {
            assert_eq!(rule.matches(path), *want, "{rule:?} on {path}");
        }
    }

    #[test]
    fn first_match_wins_in_policy_order() {
        let host = origin(true, "app.example.com", 443);
        let policy = Policy {
            routes: vec![
                route(
                    1,
                    host.clone(),
                    PathRule::Prefix("/public".into()),
                    Access {
                        public: true,
                        ..Access::default()
                    },
                ),
                route(2, host.clone(), PathRule::Any, Access::default()),
                route(
                    3,
                    host.clone(),
                    PathRule::Prefix("/never".into()),
                    Access::default(),
                ),
                route(
                    4,
                    origin(true, "app.example.com", 8443),
                    PathRule::Any,
                    Access::default(),
                ),
            ],
        };
        let find = |h: &str, path: &str| {
            let (h, p) = normalize_host(h).unwrap();
            policy.find(&h, p, path).map(|r| r.index)
        };
        assert_eq!(find("app.example.com", "/public/x"), Some(1));
        assert_eq!(find("app.example.com:443", "/publicity"), Some(2));
        assert_eq!(find("App.Example.Com.", "/never"), Some(2));
        assert_eq!(find("app.example.com:8443", "/public"), Some(4));
        assert_eq!(find("app.example.com:9443", "/"), None);
        assert_eq!(find("unknown.example.com", "/"), None);
        assert!(policy.has_host("app.example.com", Some(443)).is_some());
        assert!(policy.has_host("nope.example.com", None).is_none());
        let url = |s: &str| url::Url::parse(s).unwrap();
        let origin_of = |s: &str| policy.origin_of_url(&url(s)).map(|o| o.url());
        assert_eq!(
            origin_of("https://APP.example.com./x?y"),
            Some("https://app.example.com".into())
        );
        assert_eq!(
            origin_of("https://app.example.com:443/"),
            Some("https://app.example.com".into())
        );
        assert_eq!(
            origin_of("https://app.example.com:8443/"),
            Some("https://app.example.com:8443".into())
        );
        for bad in [
            "http://app.example.com/",
            "https://app.example.com:80/",
            "https://evil.test/",
            "https://app.example.com@evil.test/",
            "https://user@app.example.com/",
            "javascript:alert(1)",
        ] {
            assert_eq!(origin_of(bad), None, "{bad}");
        }
    }

    /// Verdict table (B12, B14): route rules × identity → verdict.
    #[test]
    fn verdict_table() {
        use DenyReason::*;
        use Verdict::*;
        let users = Access {
            users: vec!["alice@example.com".into()],
            ..Access::default()
        };
        let domains = Access {
            domains: vec!["example.com".into()],
            ..Access::default()
        };
        let groups = Access {
            groups: vec!["admins".into()],
            ..Access::default()
        };
        let any = Access {
            any_authenticated: true,
            ..Access::default()
        };
        let public = Access {
            public: true,
            ..Access::default()
        };
        let none = Access::default();
        let admins = vec!["admins".to_string()];
        let staff = vec!["staff".to_string(), "Admins".to_string()];
        let no_groups: Vec<String> = Vec::new();
        let cases: &[(&Access, &str, bool, &[String], Verdict)] = &[
            (&users, "alice@example.com", true, &no_groups, Allow),
            (&users, "Alice@Example.COM", true, &no_groups, Allow),
            (
                &users,
                "bob@example.com",
                true,
                &no_groups,
                Deny(NotAllowed),
            ),
            (
                &users,
                "alice@example.com",
                false,
                &no_groups,
                Deny(EmailNotVerified),
            ),
            (
                &users,
                "alice@example.com.evil.test",
                true,
                &no_groups,
                Deny(NotAllowed),
            ),
            (&users, "", true, &no_groups, Deny(NotAllowed)),
            (&domains, "carol@example.com", true, &no_groups, Allow),
            (&domains, "carol@EXAMPLE.com", true, &no_groups, Allow),
            (
                &domains,
                "carol@sub.example.com",
                true,
                &no_groups,
                Deny(NotAllowed),
            ),
            (
                &domains,
                "carol@other.example",
                true,
                &no_groups,
                Deny(NotAllowed),
            ),
            (&domains, "x@evil.test@example.com", true, &no_groups, Allow),
            (
                &domains,
                "carol@notexample.com",
                true,
                &no_groups,
                Deny(NotAllowed),
            ),
            (
                &domains,
                "carol@example.com",
                false,
                &no_groups,
                Deny(EmailNotVerified),
            ),
            (&groups, "dave@other.example", true, &admins, Allow),
            (&groups, "dave@other.example", false, &admins, Allow),
            (
                &groups,
                "dave@other.example",
                true,
                &staff,
                Deny(NotAllowed),
            ),
            (&any, "eve@anywhere.test", false, &no_groups, Allow),
            (&public, "", false, &no_groups, Allow),
            (&none, "alice@example.com", true, &admins, Deny(NotAllowed)),
        ];
        for (access, email, verified, groups, want) in cases {
            let r = route(
                1,
                origin(true, "app.example.com", 443),
                PathRule::Any,
                (*access).clone(),
            );
            let id = Identity {
                email,
                email_verified: *verified,
                groups,
            };
            assert_eq!(
                r.verdict(&id),
                *want,
                "{access:?} / {email} verified={verified} groups={groups:?}"
            );
        }
        assert!(none.denies_everyone());
        assert!(!users.denies_everyone());
    }
}
