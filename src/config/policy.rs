//! Policy YAML → compiled routes. Every key of every route is checked and every problem reported with the
//! route's position, its `from`, and the key's line where it can be found.

use super::error::{shown, ConfigError, Doc, RouteProblem};
use super::lines::ItemLines;
use super::value::{
    describe, is_header_name, is_header_value, scalar_text, yaml_bool, yaml_list, yaml_map,
};
use super::{duration, secret, url_check};
use crate::route::{Access, Origin, PathRule, Route, Upstream};
use crate::tls;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::path::PathBuf;
use std::rc::Rc;

/// One route as written. Values stay raw so that each can be checked and reported on its own; unknown keys are
/// refused by serde with their line (a typo must never silently widen or narrow access).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteRaw {
    from: Option<Value>,
    to: Option<Value>,
    allowed_users: Option<Value>,
    allowed_domains: Option<Value>,
    allowed_groups: Option<Value>,
    allow_public_unauthenticated_access: Option<Value>,
    allow_any_authenticated_user: Option<Value>,
    prefix: Option<Value>,
    path: Option<Value>,
    regex: Option<Value>,
    preserve_host_header: Option<Value>,
    set_request_headers: Option<Value>,
    remove_request_headers: Option<Value>,
    timeout: Option<Value>,
    allow_websockets: Option<Value>,
    cors_allow_preflight: Option<Value>,
    tls_skip_verify: Option<Value>,
    tls_server_name: Option<Value>,
    tls_custom_ca: Option<Value>,
    tls_custom_ca_file: Option<Value>,
    tls_client_cert: Option<Value>,
    tls_client_key: Option<Value>,
    tls_client_cert_file: Option<Value>,
    tls_client_key_file: Option<Value>,
    idle_timeout: Option<Value>,
    pass_identity_headers: Option<Value>,
}

/// A policy document as parsed: the routes, where they came from, and the locator for their lines.
pub(crate) struct PolicyDoc {
    pub doc: Doc,
    /// Each route still as YAML: they are read one by one so that a mistake in one hides none in the others.
    pub routes: Vec<Value>,
    pub lines: ItemLines,
}

/// A YAML error from serde, split into message and line.
pub(crate) fn yaml_error(doc: Doc, e: &serde_yaml_ng::Error, text: &str) -> ConfigError {
    let line = e.location().map(|l| l.line());
    let mut message = e.to_string();
    // serde_yaml_ng appends " at line L column C"; the line is shown in front instead.
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    let mut message = friendlier(&message);
    // The guide's mistake in a third indentation: a list item of emails where YAML expects a key.
    let bad_line = line
        .and_then(|n| text.lines().nth(n.saturating_sub(1)))
        .unwrap_or("");
    if bad_line.trim_start().starts_with('-') && bad_line.contains('@') {
        message.push_str(&format!(
            " (found {}); {USERS_HINT}",
            shown(bad_line.trim())
        ));
    }
    ConfigError::Yaml { doc, line, message }
}

/// serde's wording, made for a person: `policy[0]: ` becomes `route 1: `, and an unknown key gets a
/// "did you mean" instead of the list of every known key.
pub(crate) fn friendlier(message: &str) -> String {
    let mut out = message
        .trim_start_matches('.')
        .replace(
            "struct RouteRaw",
            "a route (a map with from:, to:, allowed_users: ...)",
        )
        .replace(
            "struct FileOptions",
            "a map of settings (address:, policy: ...)",
        )
        .replace("expected a sequence", "expected a list");
    for list in ["policy[", "routes[", "["] {
        if let Some(rest) = out.strip_prefix(list) {
            if let Some((n, tail)) = rest.split_once("]") {
                if let Ok(n) = n.parse::<usize>() {
                    let tail = tail.trim_start_matches('.');
                    out = format!(
                        "route {}{}",
                        n + 1,
                        if tail.starts_with(':') {
                            tail.to_string()
                        } else {
                            format!(" {tail}")
                        }
                    );
                    break;
                }
            }
        }
    }
    if let Some((head, known)) = out.split_once(", expected one of ") {
        let unknown = head.rsplit('`').nth(1).unwrap_or("");
        let known: Vec<&str> = known.split(", ").map(|k| k.trim_matches('`')).collect();
        let best = known
            .iter()
            .min_by_key(|k| edit_distance(unknown, k))
            .filter(|k| edit_distance(unknown, k) <= 3);
        out = match best {
            _ if UNSUPPORTED_POMERIUM_KEYS.contains(&unknown) => {
                format!("{head} (a Pomerium setting postern does not support; remove it)")
            }
            Some(k) => format!("{head} (did you mean `{k}`?)"),
            None => format!("{head} (known keys: {})", known.join(", ")),
        };
    }
    out
}

/// Settings and route keys of Pomerium that postern does not have. In the file they are errors like any unknown
/// key (with a clearer message); in the environment they are warned about.
pub(crate) const UNSUPPORTED_POMERIUM_KEYS: &[&str] = &[
    "authorize_service_url",
    "authenticate_internal_url",
    "authenticate_callback_path",
    "autocert",
    "autocert_dir",
    "autocert_use_staging",
    "cache_service_url",
    "certificate_authority",
    "certificate_authority_file",
    "client_ca",
    "cookie_refresh",
    "databroker_service_url",
    "forward_auth_url",
    "grpc_address",
    "grpc_client_dns_roundrobin",
    "grpc_client_timeout",
    "grpc_insecure",
    "http_redirect_addr",
    "idp_service_account",
    "jwt_claims_headers",
    "metrics_address",
    "override_certificate_name",
    "pomerium_debug",
    "proxy_root_domain",
    "refresh_cooldown",
    "signing_key",
    "timeout_idle",
    "timeout_read",
    "timeout_write",
    "tracing_provider",
    // route keys
    "allowed_idp_claims",
    "host_rewrite",
    "host_rewrite_header",
    "prefix_rewrite",
    "regex_rewrite_pattern",
    "regex_rewrite_substitution",
    "set_response_headers",
    "tls_downstream_client_ca",
];

/// Levenshtein distance, one row at a time.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (cb, pair) in b.iter().zip(prev.windows(2)) {
            let (diag, up) = match pair {
                [d, u] => (*d, *u),
                _ => (usize::MAX / 2, usize::MAX / 2),
            };
            let left = cur.last().copied().unwrap_or(usize::MAX / 2);
            cur.push((diag + usize::from(ca != *cb)).min(up + 1).min(left + 1));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// Headers a route may neither set nor remove: Host (preserve_host_header decides it) and the ones that frame the
/// message or the connection, which the forwarder owns.
const FRAMING_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

/// Parse a standalone policy document (env POLICY, POLICY_FILE): a YAML list of routes.
pub(crate) fn parse_list(text: &str, doc: Doc) -> Result<PolicyDoc, ConfigError> {
    let routes: Option<Vec<Value>> =
        serde_yaml_ng::from_str(text).map_err(|e| yaml_error(doc.clone(), &e, text))?;
    let routes = routes.unwrap_or_default();
    let lines = ItemLines::find(text, None, routes.len());
    Ok(PolicyDoc { doc, routes, lines })
}

const USERS_HINT: &str =
    "a list of users belongs under `allowed_users:` (and domains under `allowed_domains:`), not under `to:`";

/// Compiles one route, collecting its problems.
struct RouteCheck<'a> {
    doc: &'a Doc,
    lines: &'a ItemLines,
    /// 0-based.
    index: usize,
    from_text: Option<String>,
    errors: &'a mut Vec<ConfigError>,
}

impl RouteCheck<'_> {
    fn fail(
        &mut self,
        key: &'static str,
        expected: impl Into<String>,
        found: impl Into<String>,
        hint: Option<&str>,
    ) {
        self.errors.push(ConfigError::Route(Box::new(RouteProblem {
            doc: self.doc.clone(),
            line: self.lines.key(self.index, key),
            index: self.index + 1,
            from: self.from_text.clone(),
            key,
            expected: expected.into(),
            found: found.into(),
            hint: hint.map(str::to_string),
        })));
    }

    fn bool(&mut self, key: &'static str, v: &Option<Value>) -> bool {
        match v.as_ref().map(yaml_bool) {
            None => false,
            Some(Ok(b)) => b,
            Some(Err(found)) => {
                self.fail(key, "true or false", found, None);
                false
            }
        }
    }

    fn list(&mut self, key: &'static str, v: &Option<Value>) -> Vec<String> {
        match v.as_ref().map(yaml_list) {
            None => Vec::new(),
            Some(Ok(items)) => items,
            Some(Err(found)) => {
                self.fail(key, "a list", found, None);
                Vec::new()
            }
        }
    }

    fn text(&mut self, key: &'static str, v: &Option<Value>) -> Option<String> {
        let v = v.as_ref()?;
        match scalar_text(v) {
            Some(s) => Some(s),
            None => {
                self.fail(key, "a string", describe(v), None);
                None
            }
        }
    }

    fn from(&mut self, v: &Option<Value>) -> Option<Origin> {
        let Some(v) = v else {
            self.fail(
                "from",
                "the public URL of the route, like https://app.example.com",
                "nothing",
                None,
            );
            return None;
        };
        let Some(s) = scalar_text(v) else {
            self.fail("from", "one http or https URL", describe(v), None);
            return None;
        };
        match url_check::origin(&s) {
            Ok(o) => Some(o),
            Err(expected) => {
                let hint = expected
                    .contains("no path")
                    .then_some("to give a route part of a host, use `prefix:` or `path:`");
                self.fail("from", expected, shown(&s), hint);
                None
            }
        }
    }

    /// `to`: one URL. Pomerium took a list of upstreams; a one-element list is accepted, anything in it that is
    /// not a URL is most likely a user list that lost its `allowed_users:` key.
    fn to(&mut self, v: &Option<Value>) -> Option<Upstream> {
        let Some(v) = v else {
            self.fail(
                "to",
                "the upstream URL, like http://127.0.0.1:8080",
                "nothing",
                None,
            );
            return None;
        };
        let (text, in_list) = match v {
            Value::Sequence(items) => {
                let texts: Vec<Option<String>> = items.iter().map(scalar_text).collect();
                let bad: Vec<String> = texts
                    .iter()
                    .zip(items)
                    .filter(|(t, _)| {
                        t.as_deref()
                            .map_or(true, |t| url_check::upstream(t).is_err())
                    })
                    .map(|(t, item)| t.as_deref().map_or_else(|| describe(item), shown))
                    .collect();
                if !bad.is_empty() {
                    self.fail(
                        "to",
                        "http or https URLs",
                        format!("a list holding {}", bad.join(", ")),
                        Some(USERS_HINT),
                    );
                    return None;
                }
                match texts.as_slice() {
                    [Some(one)] => (one.clone(), true),
                    [] => {
                        self.fail("to", "one http or https URL", "an empty list", None);
                        return None;
                    }
                    _ => {
                        self.fail(
                            "to",
                            "one http or https URL (postern sends each route to one upstream)",
                            format!("a list of {} URLs", texts.len()),
                            None,
                        );
                        return None;
                    }
                }
            }
            other => match scalar_text(other) {
                Some(s) => (s, false),
                None => {
                    self.fail("to", "one http or https URL", describe(other), None);
                    return None;
                }
            },
        };
        match url_check::upstream(&text) {
            Ok(up) => Some(up),
            Err(expected) => {
                // The guide's example: emails indented under `to:` fold into one string with the URL.
                let hint = (!in_list && (text.contains('@') || text.contains(char::is_whitespace)))
                    .then_some(USERS_HINT);
                self.fail("to", expected, shown(&text), hint);
                None
            }
        }
    }

    fn emails(&mut self, v: &Option<Value>) -> Vec<String> {
        let items = self.list("allowed_users", v);
        let mut out = Vec::new();
        for item in items {
            let e = item.trim().to_lowercase();
            let ok = e.matches('@').count() == 1
                && !e.starts_with('@')
                && !e.ends_with('@')
                && !e.contains(char::is_whitespace);
            if ok {
                out.push(e);
            } else {
                self.fail(
                    "allowed_users",
                    "email addresses like alice@example.com",
                    shown(&item),
                    None,
                );
            }
        }
        out
    }

    fn domains(&mut self, v: &Option<Value>) -> Vec<String> {
        let items = self.list("allowed_domains", v);
        let mut out = Vec::new();
        for item in items {
            let d = item.trim().to_lowercase();
            let d = d.strip_suffix('.').unwrap_or(&d).to_string();
            if d.contains('@') {
                self.fail(
                    "allowed_domains",
                    "domain names like example.com (no @)",
                    shown(&item),
                    None,
                );
            } else if crate::route::normalize_host(&d).map_or(true, |(_, port)| port.is_some()) {
                self.fail(
                    "allowed_domains",
                    "domain names like example.com",
                    shown(&item),
                    None,
                );
            } else {
                out.push(d);
            }
        }
        out
    }

    fn path_rule(&mut self, raw: &RouteRaw) -> PathRule {
        let prefix = self.text("prefix", &raw.prefix);
        let path = self.text("path", &raw.path);
        let regex = self.text("regex", &raw.regex);
        let set = [prefix.is_some(), path.is_some(), regex.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if set > 1 {
            self.fail(
                "prefix",
                "used alone: give at most one of prefix, path and regex",
                format!("{set} of them"),
                None,
            );
            return PathRule::Any;
        }
        if let Some(p) = prefix {
            if !p.starts_with('/') {
                self.fail("prefix", "a path starting with /", shown(&p), None);
            }
            return PathRule::Prefix(p);
        }
        if let Some(p) = path {
            if !p.starts_with('/') {
                self.fail("path", "a path starting with /", shown(&p), None);
            }
            return PathRule::Exact(p);
        }
        if let Some(r) = regex {
            // Anchored: the expression must match the whole path, never a piece of it.
            match regex_lite::Regex::new(&format!("^(?:{r})$")) {
                Ok(re) => return PathRule::Regex(re),
                Err(e) => self.fail(
                    "regex",
                    format!("a regular expression ({e})"),
                    shown(&r),
                    None,
                ),
            }
        }
        PathRule::Any
    }

    fn custom_ca(
        &mut self,
        raw: &RouteRaw,
    ) -> Vec<futures_rustls::rustls::pki_types::CertificateDer<'static>> {
        let inline = self.text("tls_custom_ca", &raw.tls_custom_ca);
        let file = self.text("tls_custom_ca_file", &raw.tls_custom_ca_file);
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.fail(
                    "tls_custom_ca",
                    "given alone, not together with tls_custom_ca_file",
                    "both",
                    None,
                );
                Vec::new()
            }
            (Some(b64), None) => {
                let parsed = secret::decode_base64(&b64).and_then(|pem| tls::parse_certs(&pem));
                parsed.unwrap_or_else(|found| {
                    self.fail("tls_custom_ca", "base64 of PEM certificates", found, None);
                    Vec::new()
                })
            }
            (None, Some(path)) => {
                let parsed = std::fs::read(PathBuf::from(&path))
                    .map_err(|e| format!("{}: {e}", shown(&path)))
                    .and_then(|pem| {
                        tls::parse_certs(&pem).map_err(|e| format!("{} holding {e}", shown(&path)))
                    });
                parsed.unwrap_or_else(|found| {
                    self.fail(
                        "tls_custom_ca_file",
                        "a readable PEM file of certificates",
                        found,
                        None,
                    );
                    Vec::new()
                })
            }
            (None, None) => Vec::new(),
        }
    }
}

impl RouteCheck<'_> {
    /// One PEM value from its inline (base64 of PEM, as Pomerium takes it) or its `_file` form; never both.
    fn pem_setting(
        &mut self,
        (key, inline): (&'static str, &Option<Value>),
        (file_key, file): (&'static str, &Option<Value>),
    ) -> Option<Vec<u8>> {
        let inline = self.text(key, inline);
        let file = self.text(file_key, file);
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.fail(
                    key,
                    format!("given alone, not together with {file_key}"),
                    "both",
                    None,
                );
                None
            }
            (Some(b64), None) => match secret::decode_base64(&b64) {
                Ok(pem) => Some(pem),
                Err(found) => {
                    self.fail(
                        key,
                        "base64 of PEM",
                        found,
                        Some("encode the PEM file with `base64 -w0 FILE`, or use the _file form"),
                    );
                    None
                }
            },
            (None, Some(path)) => match std::fs::read(PathBuf::from(&path)) {
                Ok(pem) => Some(pem),
                Err(e) => {
                    self.fail(
                        file_key,
                        "a readable PEM file",
                        format!("{}: {e}", shown(&path)),
                        None,
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }

    /// tls_client_cert / tls_client_key (or their `_file` forms): both or neither.
    fn client_auth(&mut self, raw: &RouteRaw) -> Option<tls::ClientAuth> {
        let cert = self.pem_setting(
            ("tls_client_cert", &raw.tls_client_cert),
            ("tls_client_cert_file", &raw.tls_client_cert_file),
        );
        let key = self.pem_setting(
            ("tls_client_key", &raw.tls_client_key),
            ("tls_client_key_file", &raw.tls_client_key_file),
        );
        let cert_given = raw.tls_client_cert.is_some() || raw.tls_client_cert_file.is_some();
        let key_given = raw.tls_client_key.is_some() || raw.tls_client_key_file.is_some();
        match (cert_given, key_given) {
            (true, false) => {
                self.fail(
                    "tls_client_cert",
                    "given with tls_client_key (or tls_client_key_file)",
                    "no key",
                    None,
                );
                return None;
            }
            (false, true) => {
                self.fail(
                    "tls_client_key",
                    "given with tls_client_cert (or tls_client_cert_file)",
                    "no certificate",
                    None,
                );
                return None;
            }
            _ => {}
        }
        let (cert, key) = (cert?, key?);
        let certs = match tls::parse_certs(&cert) {
            Ok(c) => c,
            Err(found) => {
                let k = if raw.tls_client_cert.is_some() {
                    "tls_client_cert"
                } else {
                    "tls_client_cert_file"
                };
                self.fail(k, "a PEM certificate (chain)", found, None);
                return None;
            }
        };
        match tls::parse_key(&key) {
            Ok(key) => Some((certs, key)),
            Err(found) => {
                let k = if raw.tls_client_key.is_some() {
                    "tls_client_key"
                } else {
                    "tls_client_key_file"
                };
                self.fail(k, "a PEM private key", found, None);
                None
            }
        }
    }
}

/// What compiling a policy produced.
pub(crate) struct Compiled {
    pub routes: Vec<Route>,
    pub warnings: Vec<String>,
}

/// Reads one route's keys; an unknown key is an error naming the route, the key and its line.
fn read_route(policy: &PolicyDoc, index: usize, value: &Value) -> Result<RouteRaw, ConfigError> {
    serde_yaml_ng::from_value::<RouteRaw>(value.clone()).map_err(|e| {
        let message = friendlier(&e.to_string());
        // serde names the offending key in backticks: `allowed_user`.
        let key = message.split('`').nth(1).unwrap_or_default();
        let line = policy.lines.key(index, key);
        let from = value
            .get("from")
            .and_then(scalar_text)
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        ConfigError::Yaml {
            doc: policy.doc.clone(),
            line,
            message: format!("route {}{from}: {message}", index + 1),
        }
    })
}

/// Compile every route of `policy`, pushing problems onto `errors`.
pub(crate) fn compile(policy: &PolicyDoc, errors: &mut Vec<ConfigError>) -> Compiled {
    let mut routes = Vec::new();
    let mut warnings = Vec::new();
    for (index, value) in policy.routes.iter().enumerate() {
        let before = errors.len();
        let raw = match read_route(policy, index, value) {
            Ok(raw) => raw,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let raw = &raw;
        let from_text = raw.from.as_ref().and_then(scalar_text);
        let mut c = RouteCheck {
            doc: &policy.doc,
            lines: &policy.lines,
            index,
            from_text: from_text.clone(),
            errors,
        };
        let from = c.from(&raw.from);
        let to = c.to(&raw.to);
        let access = Access {
            public: c.bool(
                "allow_public_unauthenticated_access",
                &raw.allow_public_unauthenticated_access,
            ),
            any_authenticated: c.bool(
                "allow_any_authenticated_user",
                &raw.allow_any_authenticated_user,
            ),
            users: c.emails(&raw.allowed_users),
            domains: c.domains(&raw.allowed_domains),
            groups: c.list("allowed_groups", &raw.allowed_groups),
        };
        if access.public
            && (access.any_authenticated
                || !access.users.is_empty()
                || !access.domains.is_empty()
                || !access.groups.is_empty())
        {
            c.fail(
                "allow_public_unauthenticated_access",
                "alone: a public route lets everyone in, so allow lists on it mean nothing",
                "it together with allowed_users/allowed_domains/allowed_groups/allow_any_authenticated_user",
                Some("remove the allow lists, or set allow_public_unauthenticated_access: false"),
            );
        }
        let path = c.path_rule(raw);
        let preserve_host_header = c.bool("preserve_host_header", &raw.preserve_host_header);
        let mut set_request_headers = Vec::new();
        if let Some(v) = &raw.set_request_headers {
            match yaml_map(v) {
                Ok(pairs) => {
                    for (k, val) in pairs {
                        if FRAMING_HEADERS.iter().any(|f| f.eq_ignore_ascii_case(&k)) {
                            c.fail(
                                "set_request_headers",
                                "headers other than Host and the message framing ones",
                                shown(&k),
                                Some(
                                    "postern sets those itself (see preserve_host_header for Host)",
                                ),
                            );
                        } else if !is_header_name(&k) || !is_header_value(&val) {
                            c.fail(
                                "set_request_headers",
                                "header names and one-line values",
                                shown(&k),
                                None,
                            );
                        } else {
                            set_request_headers.push((k, val));
                        }
                    }
                }
                Err(found) => c.fail(
                    "set_request_headers",
                    "a map of header names to values",
                    found,
                    None,
                ),
            }
        }
        let mut remove_request_headers = Vec::new();
        for name in c.list("remove_request_headers", &raw.remove_request_headers) {
            if FRAMING_HEADERS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(&name))
            {
                c.fail(
                    "remove_request_headers",
                    "headers other than Host and the message framing ones",
                    shown(&name),
                    None,
                );
            } else if is_header_name(&name) {
                remove_request_headers.push(name.to_ascii_lowercase());
            } else {
                c.fail("remove_request_headers", "header names", shown(&name), None);
            }
        }
        let timeout = match c.text("timeout", &raw.timeout) {
            None => None,
            Some(t) => match duration::parse(&t) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    c.fail("timeout", "a positive duration like 30s", shown(&t), None);
                    None
                }
                Err(why) => {
                    c.fail(
                        "timeout",
                        format!("a duration like 30s or 1m30s ({why})"),
                        shown(&t),
                        None,
                    );
                    None
                }
            },
        };
        let idle_timeout = match c.text("idle_timeout", &raw.idle_timeout) {
            None => Some(crate::route::DEFAULT_IDLE_TIMEOUT),
            Some(t) => match duration::parse(&t) {
                Ok(d) if d.is_zero() => None,
                Ok(d) => Some(d),
                Err(why) => {
                    c.fail(
                        "idle_timeout",
                        format!("a duration like 5m, or 0s for no limit ({why})"),
                        shown(&t),
                        None,
                    );
                    None
                }
            },
        };
        let allow_websockets = c.bool("allow_websockets", &raw.allow_websockets);
        let cors_allow_preflight = c.bool("cors_allow_preflight", &raw.cors_allow_preflight);
        let pass_identity_headers = c.bool("pass_identity_headers", &raw.pass_identity_headers);
        let tls_skip_verify = c.bool("tls_skip_verify", &raw.tls_skip_verify);
        let tls_server_name = c.text("tls_server_name", &raw.tls_server_name);
        if let Some(name) = &tls_server_name {
            if futures_rustls::rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                c.fail(
                    "tls_server_name",
                    "a DNS name or IP address",
                    shown(name),
                    None,
                );
            }
        }
        let tls_custom_ca = c.custom_ca(raw);
        let client_auth = c.client_auth(raw);
        if c.errors.len() > before {
            continue;
        }
        let (Some(from), Some(mut to)) = (from, to) else {
            continue;
        };
        let label = format!(
            "route {} ({})",
            index + 1,
            from_text.as_deref().unwrap_or("?")
        );
        if !to.https
            && (tls_skip_verify
                || tls_server_name.is_some()
                || !tls_custom_ca.is_empty()
                || client_auth.is_some())
        {
            warnings.push(format!(
                "{label}: tls_* settings have no effect on the plain-http upstream {}",
                to.url
            ));
        }
        if tls_skip_verify && to.https {
            warnings.push(format!(
                "{label}: tls_skip_verify: the upstream's certificate is not checked"
            ));
        }
        if access.denies_everyone() {
            warnings.push(format!(
                "{label}: denies everyone (no allowed_users, allowed_domains, allowed_groups, allow_any_authenticated_user or allow_public_unauthenticated_access): every request gets 403"
            ));
        }
        to.tls_server_name = tls_server_name;
        to.tls_skip_verify = tls_skip_verify;
        if to.https && (tls_skip_verify || !tls_custom_ca.is_empty() || client_auth.is_some()) {
            match client_auth {
                None => {
                    to.tls_config =
                        Some(tls::upstream_client_config(&tls_custom_ca, tls_skip_verify))
                }
                Some(auth) => match tls::upstream_client_config_with_cert(
                    &tls_custom_ca,
                    tls_skip_verify,
                    auth,
                ) {
                    Ok(config) => to.tls_config = Some(config),
                    Err(expected) => {
                        c.fail("tls_client_cert", expected, "a pair rustls refuses", None);
                        continue;
                    }
                },
            }
        }
        to.tls_custom_ca = tls_custom_ca;
        routes.push(Route {
            index: index + 1,
            from,
            path,
            to: Rc::new(to),
            access,
            preserve_host_header,
            set_request_headers,
            remove_request_headers,
            timeout,
            idle_timeout,
            allow_websockets,
            cors_allow_preflight,
            pass_identity_headers,
        });
    }
    Compiled { routes, warnings }
}
