//! postern's configuration: options from environment variables, a YAML file and defaults, merged (env wins over
//! the file), checked and compiled once into a `Config`.
//!
//! The names are early Pomerium's (`COOKIE_SECRET`, `POLICY`, ...; the file uses them in lower case), so a
//! Pomerium setup from the Synology guide works unchanged. Loading never stops at the first problem: it returns
//! every one it finds (`ConfigErrors`), each naming the variable or key, the file and line, what was expected and
//! what was found. Secret values are never shown.

mod duration;
mod error;
mod file;
mod lines;
mod policy;
mod secret;
mod url_check;
mod value;

pub use error::{ConfigError, ConfigErrors, Doc, Setting};
pub use secret::{generate_base64 as generate_secret, Secret};

use crate::route::{Origin, PathRule, Policy};
use crate::tls;
use error::shown;
use file::ConfigFile;
use policy::PolicyDoc;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use value::Raw;

/// Which kind of identity provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdpKind {
    /// Any OpenID Connect provider, found through IDP_PROVIDER_URL's discovery document.
    Oidc,
    /// Google (OpenID Connect at https://accounts.google.com).
    Google,
}

/// The identity provider postern signs users in with.
#[allow(dead_code)] // client_secret is read by authn
#[derive(Clone, Debug)]
pub struct Idp {
    pub kind: IdpKind,
    /// Issuer URL; discovery is at `provider_url/.well-known/openid-configuration`.
    pub provider_url: url::Url,
    pub client_id: String,
    pub client_secret: Secret,
    /// Always holds `openid`.
    pub scopes: Vec<String>,
}

/// The session cookie.
#[allow(dead_code)] // secret is read by session.rs
#[derive(Clone)]
pub struct CookieOptions {
    pub name: String,
    /// Key that seals the cookie (COOKIE_SECRET).
    pub secret: [u8; 32],
    /// COOKIE_DOMAIN as given; postern ignores it (one cookie per host) and warns.
    pub domain: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    pub expire: Duration,
}

impl std::fmt::Debug for CookieOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieOptions")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("domain", &self.domain)
            .field("secure", &self.secure)
            .field("http_only", &self.http_only)
            .field("expire", &self.expire)
            .finish()
    }
}

/// Everything postern runs with, checked and compiled.
#[allow(dead_code)] // fields read by main.rs, server.rs, authn
/// What one client may take: the request head's size, fields and line, how long it may take to send it, how long
/// an idle keep-alive connection is kept, and how many connections are served at once (more get a 503).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    pub head_bytes: usize,
    pub head_headers: usize,
    pub line_bytes: usize,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            head_bytes: 16 * 1024,
            head_headers: 100,
            line_bytes: 8 * 1024,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

pub struct Config {
    /// Where to listen.
    pub address: SocketAddr,
    /// Plain HTTP (behind a TLS-terminating proxy such as DSM's nginx).
    pub insecure_server: bool,
    /// The listener's TLS; `Some` unless `insecure_server`. ALPN http/1.1.
    pub tls: Option<Arc<futures_rustls::rustls::ServerConfig>>,
    /// AUTHENTICATE_SERVICE_URL, as `https://auth.example.com/` (origin only).
    pub authenticate_url: url::Url,
    pub authenticate: Origin,
    pub idp: Idp,
    pub cookie: CookieOptions,
    /// Key for what travels between hosts (sign-in URLs, handoffs).
    pub shared_secret: [u8; 32],
    /// SHARED_SECRET was not set; this one lives only as long as the process.
    pub shared_secret_generated: bool,
    /// HEADERS: added to every response that lacks them.
    pub headers: Vec<(String, String)>,
    pub default_upstream_timeout: Duration,
    pub log_level: log::LevelFilter,
    /// SIGNING_KEY: signs `X-Pomerium-Jwt-Assertion` on routes with pass_identity_headers (see assertion.rs).
    pub signing_key: Option<crate::assertion::Signer>,
    /// REQUEST_HEAD_MAX_BYTES, REQUEST_HEAD_MAX_HEADERS, REQUEST_LINE_MAX_BYTES, REQUEST_HEAD_TIMEOUT,
    /// KEEPALIVE_TIMEOUT, MAX_CONNECTIONS.
    pub limits: ServerLimits,
    /// TRUSTED_PROXIES: peers whose X-Forwarded-For is kept (see trust.rs).
    pub trusted_proxies: Vec<crate::trust::Cidr>,
    pub policy: Policy,
    /// Things worth saying at start-up that do not stop it (a route that denies everyone, ignored settings).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("summary", &self.summary())
            .finish_non_exhaustive()
    }
}

/// Pomerium's default response security headers.
pub const DEFAULT_HEADERS: [(&str, &str); 3] = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("X-XSS-Protection", "1; mode=block"),
];

const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];
const GOOGLE_URL: &str = "https://accounts.google.com";

/// Load the configuration from the YAML file (if any) and the environment (`env` is `std::env::var` in
/// production, a closure over a table in tests). Env values win over the file's; an empty env value counts as
/// unset. Returns every problem found.
pub fn load(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut file = match file {
        Some(path) => Some(ConfigFile::read(path).map_err(|e| ConfigErrors(vec![e]))?),
        None => None,
    };
    let errors = file
        .as_mut()
        .map(|f| std::mem::take(&mut f.unknown_keys))
        .unwrap_or_default();
    Loader {
        env,
        file,
        errors,
        warnings: Vec::new(),
    }
    .load()
}

#[allow(dead_code)] // used by tests; handy for --check on a snippet
/// Load from YAML text instead of a file (tests, `--check` on a snippet). `path` is used in messages only.
pub fn load_str(
    path: &Path,
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut file = ConfigFile::parse(path, yaml.to_string()).map_err(|e| ConfigErrors(vec![e]))?;
    let errors = std::mem::take(&mut file.unknown_keys);
    Loader {
        env,
        file: Some(file),
        errors,
        warnings: Vec::new(),
    }
    .load()
}

struct Loader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file: Option<ConfigFile>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl Loader<'_> {
    /// The value of `key` (lower-case file key; the env var is its upper case) and where it came from.
    fn get(&self, key: &str) -> Option<(Setting, Raw)> {
        let env_name = key.to_ascii_uppercase();
        if let Some(v) = (self.env)(&env_name).filter(|v| !v.trim().is_empty()) {
            return Some((Setting::Env(env_name), Raw::Text(v)));
        }
        let file = self.file.as_ref()?;
        let (v, line) = file.get(key)?;
        Some((
            Setting::File {
                key: key.to_string(),
                path: file.path.clone(),
                line,
            },
            Raw::Yaml(v.clone()),
        ))
    }

    /// "COOKIE_SECRET (or cookie_secret in FILE)".
    fn name_both(&self, key: &str) -> String {
        match &self.file {
            Some(f) => format!(
                "{} (or {key} in {})",
                key.to_ascii_uppercase(),
                f.path.display()
            ),
            None => key.to_ascii_uppercase(),
        }
    }

    fn missing(&mut self, key: &str, help: impl Into<String>) {
        self.errors.push(ConfigError::Missing {
            what: self.name_both(key),
            help: help.into(),
        });
    }

    fn invalid(
        &mut self,
        setting: &Setting,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        self.errors
            .push(ConfigError::invalid(setting, expected, found));
    }

    fn text(&mut self, key: &str) -> Option<(Setting, String)> {
        let (setting, raw) = self.get(key)?;
        match raw.text() {
            Ok(s) => Some((setting, s.trim().to_string())),
            Err(found) => {
                self.invalid(&setting, "a single value", found);
                None
            }
        }
    }

    fn bool(&mut self, key: &str, default: bool) -> bool {
        let Some((setting, raw)) = self.get(key) else {
            return default;
        };
        match raw.bool() {
            Ok(b) => b,
            Err(found) => {
                self.invalid(
                    &setting,
                    "true or false (TRUE/true/1, FALSE/false/0)",
                    found,
                );
                default
            }
        }
    }

    fn duration(&mut self, key: &str, default: Duration) -> Duration {
        let Some((setting, s)) = self.text(key) else {
            return default;
        };
        match duration::parse(&s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.invalid(&setting, "a positive duration like 30s or 14h", shown(&s));
                default
            }
            Err(why) => {
                self.invalid(
                    &setting,
                    format!("a duration like 30s, 1m30s or 14h ({why})"),
                    shown(&s),
                );
                default
            }
        }
    }

    /// A whole number in `min..=max`.
    fn count(&mut self, key: &str, default: usize, min: usize, max: usize) -> usize {
        let Some((setting, s)) = self.text(key) else {
            return default;
        };
        match s.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.invalid(
                    &setting,
                    format!("a whole number from {min} to {max}"),
                    shown(&s),
                );
                default
            }
        }
    }

    /// The limits every connection lives within (see ServerLimits).
    fn limits(&mut self) -> ServerLimits {
        let d = ServerLimits::default();
        ServerLimits {
            head_bytes: self.count("request_head_max_bytes", d.head_bytes, 1024, 1024 * 1024),
            head_headers: self.count("request_head_max_headers", d.head_headers, 8, 1000),
            line_bytes: self.count("request_line_max_bytes", d.line_bytes, 256, 1024 * 1024),
            head_timeout: self.duration("request_head_timeout", d.head_timeout),
            idle_timeout: self.duration("keepalive_timeout", d.idle_timeout),
            max_connections: self.count("max_connections", d.max_connections, 1, 1_000_000),
        }
    }

    /// A 32-byte key; `None` when unset (the caller decides) or malformed (error pushed).
    fn key32(&mut self, key: &str) -> Option<[u8; 32]> {
        let (setting, s) = self.text(key)?;
        match secret::decode_key(&s) {
            Ok(k) => Some(k),
            Err(found) => {
                self.invalid(
                    &setting,
                    format!("base64 of 32 random bytes; {}", secret::HOW_TO_MAKE),
                    found,
                );
                None
            }
        }
    }

    fn load(mut self) -> Result<Config, ConfigErrors> {
        for key in policy::UNSUPPORTED_POMERIUM_KEYS {
            let name = key.to_ascii_uppercase();
            if (self.env)(&name).is_some_and(|v| !v.trim().is_empty()) {
                self.warnings.push(format!(
                    "{name} is a Pomerium setting postern does not support; ignored"
                ));
            }
        }
        if let Some((setting, s)) = self.text("services") {
            if !s.eq_ignore_ascii_case("all") {
                self.invalid(
                    &setting,
                    "all (postern runs authenticate and proxy in one process; leave SERVICES unset or set it to all)",
                    shown(&s),
                );
            }
        }
        let address = self.address();
        let insecure_server = self.bool("insecure_server", false);
        let tls = self.tls(insecure_server);
        let authenticate = self.authenticate();
        let idp = self.idp();
        let cookie = self.cookie();
        let (shared_secret, shared_secret_generated) = self.shared_secret();
        let headers = self.headers();
        let default_upstream_timeout =
            self.duration("default_upstream_timeout", Duration::from_secs(30));
        let log_level = self.log_level();
        let trusted_proxies = self.trusted_proxies();
        let limits = self.limits();
        let mut signing_key = self.signing_key();
        let policy = self.policy();
        let asserts = policy
            .as_ref()
            .is_some_and(|p| p.routes.iter().any(|r| r.pass_identity_headers));
        if signing_key.is_none() && asserts {
            match crate::assertion::Signer::generate() {
                Ok(k) => {
                    signing_key = Some(k);
                    self.warnings.push("SIGNING_KEY is not set: generated a key for this run to sign X-Pomerium-Jwt-Assertion; apps that verify it must re-read /.well-known/pomerium/jwks.json after a restart (set SIGNING_KEY to keep one: `openssl ecparam -genkey -name prime256v1 -noout | base64 -w0`)".into());
                }
                Err(e) => self.missing("signing_key", e),
            }
        }
        if let (Some((_, auth, setting)), Some(policy)) = (&authenticate, &policy) {
            for route in &policy.routes {
                if auth.overlaps(&route.from) {
                    self.errors.push(ConfigError::Conflict {
                        message: format!(
                            "{}: {} is also the `from` of route {} ({}); the authenticate host must be a host of its own (e.g. https://auth.example.com) that no route uses",
                            setting,
                            auth.url(),
                            route.index,
                            route.from.url()
                        ),
                    });
                }
            }
        }
        let errors = std::mem::take(&mut self.errors);
        match (
            address,
            tls,
            authenticate,
            idp,
            cookie,
            shared_secret,
            policy,
        ) {
            (
                Some(address),
                Some(tls),
                Some((authenticate_url, authenticate, _)),
                Some(idp),
                Some(cookie),
                Some(shared_secret),
                Some(policy),
            ) if errors.is_empty() => Ok(Config {
                address,
                insecure_server,
                tls,
                authenticate_url,
                authenticate,
                idp,
                cookie,
                shared_secret,
                shared_secret_generated,
                headers,
                default_upstream_timeout,
                log_level,
                trusted_proxies,
                limits,
                signing_key,
                policy,
                warnings: self.warnings,
            }),
            _ if errors.is_empty() => {
                // Every path that leaves a part unset pushes an error; reaching here is a bug in this module.
                Err(ConfigErrors(vec![ConfigError::Conflict {
                    message: "internal: a setting was left unset without an error".into(),
                }]))
            }
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// ADDRESS: `:443` (all interfaces), `host:port`, `[::1]:port`.
    fn address(&mut self) -> Option<SocketAddr> {
        let Some((setting, s)) = self.text("address") else {
            return Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 443));
        };
        const EXPECTED: &str = ":port (all interfaces), host:port or [ipv6]:port, like :443";
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Some(a);
        }
        let parsed = s.rsplit_once(':').and_then(|(host, port)| {
            let port: u16 = port.parse().ok()?;
            if host.is_empty() {
                return Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
            }
            if host.contains([':', '[', ']', ' ', '/', '@']) {
                return None;
            }
            // A name: resolve once at start-up.
            (host, port).to_socket_addrs().ok()?.next()
        });
        if parsed.is_none() {
            self.invalid(&setting, EXPECTED, shown(&s));
        }
        parsed
    }

    /// The listener's certificate: CERTIFICATE/CERTIFICATE_KEY (base64 PEM) or CERTIFICATE_FILE/CERTIFICATE_KEY_FILE.
    /// `Some(None)` means no TLS (INSECURE_SERVER); `None` means an error was pushed.
    fn tls(&mut self, insecure: bool) -> Option<Option<Arc<futures_rustls::rustls::ServerConfig>>> {
        let inline = (self.text("certificate"), self.text("certificate_key"));
        let files = (
            self.text("certificate_file"),
            self.text("certificate_key_file"),
        );
        let any_inline = inline.0.is_some() || inline.1.is_some();
        let any_file = files.0.is_some() || files.1.is_some();
        if insecure {
            if any_inline || any_file {
                self.warnings.push("INSECURE_SERVER is set: the certificate settings are ignored and postern serves plain HTTP".into());
            }
            return Some(None);
        }
        if any_inline && any_file {
            self.errors.push(ConfigError::Conflict {
                message: format!(
                    "{} and {} are both given: use the base64 pair or the file pair, not both",
                    self.name_both("certificate"),
                    self.name_both("certificate_file")
                ),
            });
            return None;
        }
        let (cert_pem, key_pem) = match (inline, files) {
            ((Some(c), Some(k)), _) => (self.pem_inline(c), self.pem_inline(k)),
            (_, (Some(c), Some(k))) => (self.pem_file(c), self.pem_file(k)),
            ((Some(_), None), _) | ((None, Some(_)), _) => {
                self.missing_pair("certificate", "certificate_key");
                return None;
            }
            (_, (Some(_), None)) | (_, (None, Some(_))) => {
                self.missing_pair("certificate_file", "certificate_key_file");
                return None;
            }
            _ => {
                self.missing(
                    "certificate",
                    "postern terminates TLS itself unless INSECURE_SERVER=true (behind a proxy such as DSM's nginx); give CERTIFICATE and CERTIFICATE_KEY (base64 of PEM) or CERTIFICATE_FILE and CERTIFICATE_KEY_FILE",
                );
                return None;
            }
        };
        let ((cert_setting, cert_pem), (key_setting, key_pem)) = (cert_pem?, key_pem?);
        let certs = tls::parse_certs(&cert_pem)
            .map_err(|e| self.invalid(&cert_setting, "a PEM certificate chain", e));
        let key = tls::parse_key(&key_pem)
            .map_err(|e| self.invalid(&key_setting, "a PEM private key", e));
        let (Ok(certs), Ok(key)) = (certs, key) else {
            return None;
        };
        match tls::server_config(certs, key) {
            Ok(c) => Some(Some(c)),
            Err(e) => {
                self.invalid(
                    &key_setting,
                    format!("the private key of the certificate in {cert_setting}"),
                    e,
                );
                None
            }
        }
    }

    fn missing_pair(&mut self, a: &str, b: &str) {
        self.errors.push(ConfigError::Conflict {
            message: format!(
                "{} and {} go together: give both or neither",
                self.name_both(a),
                self.name_both(b)
            ),
        });
    }

    /// Base64 of PEM (plain PEM accepted too).
    fn pem_inline(&mut self, (setting, s): (Setting, String)) -> Option<(Setting, Vec<u8>)> {
        if s.starts_with("-----BEGIN") {
            return Some((setting, s.into_bytes()));
        }
        match secret::decode_base64(&s) {
            Ok(pem) => Some((setting, pem)),
            Err(found) => {
                self.invalid(
                    &setting,
                    "base64 of a PEM file (`base64 -w0 cert.pem`)",
                    found,
                );
                None
            }
        }
    }

    fn pem_file(&mut self, (setting, s): (Setting, String)) -> Option<(Setting, Vec<u8>)> {
        let pem = self.read_file(&setting, PathBuf::from(&s))?;
        Some((setting, pem))
    }

    /// Read a file a setting names; a failure is reported against that setting.
    fn read_file(&mut self, setting: &Setting, path: PathBuf) -> Option<Vec<u8>> {
        match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.errors.push(ConfigError::Io {
                    setting: setting.clone(),
                    path,
                    message: e.to_string(),
                });
                None
            }
        }
    }

    /// AUTHENTICATE_SERVICE_URL: https (plain http for loopback only), origin only.
    fn authenticate(&mut self) -> Option<(url::Url, Origin, Setting)> {
        let Some((setting, s)) = self.text("authenticate_service_url") else {
            self.missing(
                "authenticate_service_url",
                "the public URL of postern's sign-in host, e.g. https://auth.example.com (a host of its own, not a route's)",
            );
            return None;
        };
        let origin = match url_check::origin(&s) {
            Ok(o) => o,
            Err(expected) => {
                self.invalid(&setting, expected, shown(&s));
                return None;
            }
        };
        if !origin.https && !url_check::is_loopback(&origin.host) {
            self.invalid(
                &setting,
                "an https URL (plain http only for loopback hosts such as localhost)",
                shown(&s),
            );
            return None;
        }
        match url::Url::parse(&origin.url()) {
            Ok(u) => Some((u, origin, setting)),
            Err(_) => {
                self.invalid(&setting, "a URL", shown(&s));
                None
            }
        }
    }

    fn idp(&mut self) -> Option<Idp> {
        let kind = match self.text("idp_provider") {
            None => {
                self.missing(
                    "idp_provider",
                    "set it to oidc (any OpenID Connect provider) or google",
                );
                None
            }
            Some((setting, s)) => match s.to_ascii_lowercase().as_str() {
                "oidc" => Some(IdpKind::Oidc),
                "google" => Some(IdpKind::Google),
                _ => {
                    self.invalid(&setting, "oidc or google", shown(&s));
                    None
                }
            },
        };
        let provider_url = match (self.text("idp_provider_url"), kind) {
            (None, Some(IdpKind::Google)) => url::Url::parse(GOOGLE_URL).ok(),
            // Without a known provider kind, a missing URL is not worth a second message.
            (None, None) => None,
            (None, Some(IdpKind::Oidc)) => {
                self.missing(
                    "idp_provider_url",
                    "the issuer URL of the OpenID Connect provider, e.g. https://id.example.com",
                );
                None
            }
            (Some((setting, s)), _) => match url_check::with_path(&s) {
                Ok(u)
                    if u.scheme() == "https"
                        || u.host_str().is_some_and(url_check::is_loopback) =>
                {
                    Some(u)
                }
                Ok(_) => {
                    self.invalid(
                        &setting,
                        "an https URL (plain http only for loopback hosts)",
                        shown(&s),
                    );
                    None
                }
                Err(expected) => {
                    self.invalid(&setting, expected, shown(&s));
                    None
                }
            },
        };
        let client_id = self.text("idp_client_id").map(|(_, s)| s);
        if client_id.is_none() {
            self.missing(
                "idp_client_id",
                "the client ID postern was registered with at the identity provider",
            );
        }
        let client_secret = self.text("idp_client_secret").map(|(_, s)| Secret::new(s));
        if client_secret.is_none() {
            self.missing(
                "idp_client_secret",
                "the client secret postern was registered with at the identity provider",
            );
        }
        let mut scopes: Vec<String> = DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect();
        if let Some((setting, s)) = self.text("idp_scopes") {
            scopes = s
                .split([',', ' '])
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect();
            if !scopes.iter().any(|x| x == "openid") {
                self.invalid(
                    &setting,
                    "a scope list that includes openid (e.g. openid email profile)",
                    shown(&s),
                );
            }
        }
        Some(Idp {
            kind: kind?,
            provider_url: provider_url?,
            client_id: client_id?,
            client_secret: client_secret?,
            scopes,
        })
    }

    fn cookie(&mut self) -> Option<CookieOptions> {
        let secret = if self.get("cookie_secret").is_some() {
            self.key32("cookie_secret")
        } else {
            self.missing(
                "cookie_secret",
                format!(
                    "it is the base64 of 32 random bytes that seals session cookies; {}",
                    secret::HOW_TO_MAKE
                ),
            );
            None
        };
        let name = match self.text("cookie_name") {
            None => "_pomerium".to_string(),
            Some((setting, s)) => {
                if !value::is_header_name(&s) {
                    self.invalid(
                        &setting,
                        "a cookie name (letters, digits, - and _)",
                        shown(&s),
                    );
                }
                s
            }
        };
        let domain = self.text("cookie_domain").map(|(setting, s)| {
            self.warnings.push(format!(
                "{setting} is ignored: postern keeps one session cookie per host and hands sessions between hosts itself"
            ));
            s
        });
        let secure = self.bool("cookie_secure", true);
        let http_only = self.bool("cookie_http_only", true);
        let expire = self.duration("cookie_expire", Duration::from_secs(14 * 3600));
        Some(CookieOptions {
            name,
            secret: secret?,
            domain,
            secure,
            http_only,
            expire,
        })
    }

    fn shared_secret(&mut self) -> (Option<[u8; 32]>, bool) {
        if self.get("shared_secret").is_some() {
            return (self.key32("shared_secret"), false);
        }
        match secret::generate_key() {
            Ok(k) => {
                self.warnings.push(format!(
                    "SHARED_SECRET is not set: generated one for this run; sessions handed between hosts end at restart (set SHARED_SECRET to keep them; {})",
                    secret::HOW_TO_MAKE
                ));
                (Some(k), true)
            }
            Err(e) => {
                self.missing(
                    "shared_secret",
                    format!("{e}, so none could be generated; {}", secret::HOW_TO_MAKE),
                );
                (None, false)
            }
        }
    }

    /// HEADERS: `Key:Value,Key2:Value2` (env or a YAML string), or a YAML map.
    fn headers(&mut self) -> Vec<(String, String)> {
        let default = || {
            DEFAULT_HEADERS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let Some((setting, raw)) = self.get("headers") else {
            return default();
        };
        let pairs: Result<Vec<(String, String)>, String> = match &raw {
            Raw::Yaml(v @ serde_yaml_ng::Value::Mapping(_)) => value::yaml_map(v),
            _ => raw.text().and_then(|s| {
                s.split(',')
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| match p.split_once(':') {
                        Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
                        None => Err(shown(p)),
                    })
                    .collect()
            }),
        };
        match pairs {
            Ok(pairs) => {
                for (k, v) in &pairs {
                    if !value::is_header_name(k) || !value::is_header_value(v) {
                        self.invalid(
                            &setting,
                            "header names and one-line values",
                            shown(&format!("{k}:{v}")),
                        );
                        return default();
                    }
                }
                pairs
            }
            Err(found) => {
                self.invalid(
                    &setting,
                    "Key:Value pairs separated by commas (X-Frame-Options:DENY,X-Foo:bar)",
                    found,
                );
                default()
            }
        }
    }

    /// SIGNING_KEY: base64 of a PEM EC P-256 private key.
    fn signing_key(&mut self) -> Option<crate::assertion::Signer> {
        let (setting, text) = self.text("signing_key")?;
        let pem = match secret::decode_base64(&text) {
            Ok(pem) => pem,
            Err(found) => {
                self.invalid(&setting, "base64 of a PEM EC P-256 private key (`openssl ecparam -genkey -name prime256v1 -noout | base64 -w0`)", found);
                return None;
            }
        };
        match crate::assertion::Signer::from_pem(&pem) {
            Ok(s) => Some(s),
            Err(found) => {
                self.invalid(&setting, "base64 of a PEM EC P-256 private key (`openssl ecparam -genkey -name prime256v1 -noout | base64 -w0`)", found);
                None
            }
        }
    }

    /// A comma/space separated list (env), or a YAML list or string (file).
    fn trusted_proxies(&mut self) -> Vec<crate::trust::Cidr> {
        let Some((setting, raw)) = self.get("trusted_proxies") else {
            return Vec::new();
        };
        let items: Vec<String> = match &raw {
            Raw::Yaml(serde_yaml_ng::Value::Sequence(seq)) => seq
                .iter()
                .map(|v| value::scalar_text(v).unwrap_or_else(|| format!("{v:?}")))
                .collect(),
            _ => match raw.text() {
                Ok(s) => s
                    .split([',', ' '])
                    .filter(|p| !p.trim().is_empty())
                    .map(str::to_owned)
                    .collect(),
                Err(found) => {
                    self.invalid(
                        &setting,
                        "a list of IP addresses or address/prefix blocks",
                        found,
                    );
                    return Vec::new();
                }
            },
        };
        let mut out = Vec::new();
        for item in items {
            match crate::trust::Cidr::parse(&item) {
                Ok(c) => out.push(c),
                Err(e) => self.invalid(
                    &setting,
                    "IP addresses or address/prefix blocks like 127.0.0.1/32 or 192.168.1.0/24",
                    e,
                ),
            }
        }
        out
    }

    fn log_level(&mut self) -> log::LevelFilter {
        let Some((setting, s)) = self.text("log_level") else {
            return log::LevelFilter::Info;
        };
        match s.to_ascii_lowercase().as_str() {
            "trace" => log::LevelFilter::Trace,
            "debug" => log::LevelFilter::Debug,
            "info" => log::LevelFilter::Info,
            "warn" | "warning" => log::LevelFilter::Warn,
            "error" => log::LevelFilter::Error,
            "off" => log::LevelFilter::Off,
            _ => {
                self.invalid(&setting, "debug, info, warn or error", shown(&s));
                log::LevelFilter::Info
            }
        }
    }

    /// The routes: env POLICY (base64 YAML) > env POLICY_FILE > the file's `policy:`/`routes:` > its `policy_file:`.
    fn policy(&mut self) -> Option<Policy> {
        let env_policy = (self.env)("POLICY").filter(|v| !v.trim().is_empty());
        let env_policy_file = (self.env)("POLICY_FILE").filter(|v| !v.trim().is_empty());
        let file_inline = match self.file.as_mut().map(ConfigFile::policy) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                self.errors.push(e);
                return None;
            }
            None => None,
        };
        let file_policy_file = self.file.as_ref().and_then(|f| {
            f.get("policy_file")
                .map(|(v, line)| (f.path.clone(), v.clone(), line))
        });
        if env_policy.is_some() && env_policy_file.is_some() {
            self.errors.push(ConfigError::Conflict {
                message: "POLICY and POLICY_FILE are both set: keep one".into(),
            });
            return None;
        }
        if file_inline.is_some() && file_policy_file.is_some() {
            self.errors.push(ConfigError::Conflict {
                message: format!(
                    "{}: both `policy:` and `policy_file:` are given: keep one",
                    self.file
                        .as_ref()
                        .map_or(String::new(), |f| f.path.display().to_string())
                ),
            });
            return None;
        }
        let from_env = env_policy.is_some() || env_policy_file.is_some();
        if from_env && (file_inline.is_some() || file_policy_file.is_some()) {
            self.warnings.push("the policy comes from the environment (POLICY / POLICY_FILE); the file's policy is not used".into());
        }
        let doc: Option<PolicyDoc> = if let Some(b64) = env_policy {
            match secret::decode_base64(&b64).map(String::from_utf8) {
                Ok(Ok(text)) => self.policy_text(&text, Doc::EnvPolicy),
                Ok(Err(_)) => {
                    self.invalid(
                        &Setting::Env("POLICY".into()),
                        "base64 of a YAML list of routes",
                        "bytes that are not UTF-8 text",
                    );
                    return None;
                }
                Err(found) => {
                    let found = if b64.contains("from:") {
                        "plain YAML; POLICY holds base64 (for plain YAML use POLICY_FILE or `policy:` in --config)"
                            .to_string()
                    } else {
                        found
                    };
                    self.invalid(
                        &Setting::Env("POLICY".into()),
                        "base64 of a YAML list of routes (`base64 -w0 policy.yaml`)",
                        found,
                    );
                    return None;
                }
            }
        } else if let Some(path) = env_policy_file {
            self.policy_file(
                Setting::Env("POLICY_FILE".into()),
                PathBuf::from(path.trim()),
            )
        } else if let Some(doc) = file_inline {
            Some(doc)
        } else if let Some((file_path, v, line)) = file_policy_file {
            let setting = Setting::File {
                key: "policy_file".into(),
                path: file_path,
                line,
            };
            match value::scalar_text(&v) {
                Some(p) => self.policy_file(setting, PathBuf::from(p.trim())),
                None => {
                    self.invalid(&setting, "a file name", value::describe(&v));
                    return None;
                }
            }
        } else {
            None
        };
        let Some(doc) = doc else {
            if !self
                .errors
                .iter()
                .any(|e| matches!(e, ConfigError::Yaml { .. } | ConfigError::Io { .. }))
            {
                self.errors.push(ConfigError::Missing {
                    what: "the policy".into(),
                    help: "give the routes in POLICY (base64 of YAML), POLICY_FILE, or `policy:` in the configuration file".into(),
                });
            }
            return None;
        };
        if doc.routes.is_empty() {
            self.errors.push(ConfigError::Yaml {
                doc: doc.doc.clone(),
                line: None,
                message: "the policy has no routes".into(),
            });
            return None;
        }
        let compiled = policy::compile(&doc, &mut self.errors);
        self.warnings.extend(compiled.warnings);
        // A route after a catch-all for the same host can never be reached.
        for (i, r) in compiled.routes.iter().enumerate() {
            if let Some(earlier) = compiled
                .routes
                .iter()
                .take(i)
                .find(|e| matches!(e.path, PathRule::Any) && e.from == r.from)
            {
                self.warnings.push(format!(
                    "route {} ({}) is never used: route {} takes every path of that host first",
                    r.index,
                    r.from.url(),
                    earlier.index
                ));
            }
        }
        Some(Policy {
            routes: compiled.routes,
        })
    }

    fn policy_text(&mut self, text: &str, doc: Doc) -> Option<PolicyDoc> {
        match policy::parse_list(text, doc) {
            Ok(d) => Some(d),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn policy_file(&mut self, setting: Setting, path: PathBuf) -> Option<PolicyDoc> {
        let bytes = self.read_file(&setting, path.clone())?;
        match String::from_utf8(bytes) {
            Ok(text) => self.policy_text(&text, Doc::PolicyFile(path)),
            Err(_) => {
                self.invalid(&setting, "a YAML file", "bytes that are not UTF-8 text");
                None
            }
        }
    }
}

#[allow(dead_code)] // used by authn
impl Idp {
    /// Where the provider's OpenID Connect discovery document is.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    /// The provider URL without the trailing `/` the URL parser adds (Google's issuer is exactly
    /// `https://accounts.google.com`); compare it with the discovery document's `issuer` up to a trailing slash.
    pub fn issuer(&self) -> String {
        self.provider_url.as_str().trim_end_matches('/').to_string()
    }
}

impl Config {
    /// Lines for the start-up log. No secrets: only their presence and where routes go.
    pub fn summary(&self) -> Vec<String> {
        let mut out = vec![
            format!(
                "address {} ({})",
                self.address,
                if self.insecure_server {
                    "plain HTTP, INSECURE_SERVER"
                } else {
                    "TLS"
                }
            ),
            format!(
                "authenticate host {}; the redirect URI to register at the identity provider is {}/oauth2/callback",
                self.authenticate.url(),
                self.authenticate.url()
            ),
            format!(
                "identity provider {} at {} (client id {}, scopes {})",
                match self.idp.kind {
                    IdpKind::Oidc => "oidc",
                    IdpKind::Google => "google",
                },
                self.idp.provider_url,
                self.idp.client_id,
                self.idp.scopes.join(" ")
            ),
            format!(
                "session cookie {} (lifetime {}, secure {}, http-only {}); shared secret {}",
                self.cookie.name,
                duration::show(self.cookie.expire),
                self.cookie.secure,
                self.cookie.http_only,
                if self.shared_secret_generated {
                    "generated for this run"
                } else {
                    "from SHARED_SECRET"
                }
            ),
            format!(
                "upstream timeout {}; log level {}; {} route(s)",
                duration::show(self.default_upstream_timeout),
                self.log_level,
                self.policy.routes.len()
            ),
        ];
        for r in &self.policy.routes {
            let a = &r.access;
            let who = if a.public {
                "public".to_string()
            } else if a.any_authenticated {
                "any signed-in user".to_string()
            } else if a.denies_everyone() {
                "nobody (denies everyone)".to_string()
            } else {
                let mut parts = Vec::new();
                if !a.users.is_empty() {
                    parts.push(format!("{} user(s)", a.users.len()));
                }
                if !a.domains.is_empty() {
                    parts.push(format!("domains {}", a.domains.join(", ")));
                }
                if !a.groups.is_empty() {
                    parts.push(format!("{} group(s)", a.groups.len()));
                }
                parts.join(", ")
            };
            out.push(format!(
                "route {}: {}{} -> {} ({who})",
                r.index,
                r.from.url(),
                r.path,
                r.to.url
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;
