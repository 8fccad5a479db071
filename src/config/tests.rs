//! Loading tests: every case builds its environment from a table (never the process's) and checks what a
//! person would read.

use super::*;
use base64::Engine;
use std::collections::HashMap;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn key_b64(byte: u8) -> String {
    B64.encode([byte; 32])
}

fn b64(s: &str) -> String {
    B64.encode(s)
}

/// The guide's policy, fixed to have `allowed_users:`.
const GUIDE_POLICY: &str = "\
- from: https://httpbin.int.nas.example
  to: http://httpbin
  allowed_users:
    - your.email.address@gmail.com
";

/// The Synology guide's env configuration (policy fixed).
fn guide_env() -> HashMap<String, String> {
    [
        ("POLICY", b64(GUIDE_POLICY)),
        ("INSECURE_SERVER", "TRUE".into()),
        (
            "AUTHENTICATE_SERVICE_URL",
            "https://auth.int.nas.example".into(),
        ),
        ("IDP_PROVIDER", "google".into()),
        ("IDP_CLIENT_ID", "1234.apps.googleusercontent.com".into()),
        ("IDP_CLIENT_SECRET", "very-secret-client-value".into()),
        ("COOKIE_SECRET", key_b64(1)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn with(
    mut env: HashMap<String, String>,
    changes: &[(&str, Option<&str>)],
) -> HashMap<String, String> {
    for (k, v) in changes {
        match v {
            Some(v) => env.insert(k.to_string(), v.to_string()),
            None => env.remove(*k),
        };
    }
    env
}

fn load_env(env: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
    load(None, &|k| env.get(k).cloned())
}

fn load_yaml(yaml: &str, env: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
    load_str(Path::new("postern.yaml"), yaml, &|k| env.get(k).cloned())
}

fn errors_of(r: Result<Config, ConfigErrors>) -> String {
    match r {
        Ok(c) => panic!("expected errors, got a config: {:?}", c.summary()),
        Err(e) => e.to_string(),
    }
}

fn ok(r: Result<Config, ConfigErrors>) -> Config {
    r.unwrap_or_else(|e| panic!("expected a config, got:\n{e}"))
}

#[test]
fn guide_env_configuration_works_verbatim() {
    let c = ok(load_env(&guide_env()));
    assert!(c.insecure_server && c.tls.is_none());
    assert_eq!(c.address, "0.0.0.0:443".parse().unwrap());
    assert_eq!(c.authenticate.url(), "https://auth.int.nas.example");
    assert_eq!(c.authenticate_url.as_str(), "https://auth.int.nas.example/");
    assert_eq!(c.idp.kind, IdpKind::Google);
    assert_eq!(c.idp.provider_url.as_str(), "https://accounts.google.com/");
    assert_eq!(c.idp.scopes, vec!["openid", "email", "profile"]);
    assert_eq!(c.cookie.name, "_pomerium");
    assert_eq!(c.cookie.secret, [1; 32]);
    assert!(c.cookie.secure && c.cookie.http_only);
    assert_eq!(c.cookie.expire, Duration::from_secs(14 * 3600));
    assert_eq!(c.default_upstream_timeout, Duration::from_secs(30));
    assert_eq!(c.log_level, log::LevelFilter::Info);
    assert_eq!(c.headers.len(), 3);
    assert_eq!(
        c.headers[2],
        ("X-XSS-Protection".to_string(), "1; mode=block".to_string())
    );
    assert_eq!(c.policy.routes.len(), 1);
    let r = &c.policy.routes[0];
    assert_eq!(r.from.url(), "https://httpbin.int.nas.example");
    assert_eq!(
        (r.to.host.as_str(), r.to.port, r.to.authority.as_str()),
        ("httpbin", 80, "httpbin")
    );
    assert_eq!(r.access.users, vec!["your.email.address@gmail.com"]);
    // Behind DSM's nginx: plain-http listener, https route, Host with or without :443.
    assert!(c
        .policy
        .find("httpbin.int.nas.example", Some(443), "/get")
        .is_some());
    assert!(c
        .policy
        .find("unknown.int.nas.example", None, "/")
        .is_none());
}

#[test]
fn generated_shared_secret_is_flagged_and_warned() {
    let c = ok(load_env(&guide_env()));
    assert!(c.shared_secret_generated);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("SHARED_SECRET") && w.contains("restart")),
        "{:?}",
        c.warnings
    );
    let other = ok(load_env(&guide_env()));
    assert_ne!(c.shared_secret, other.shared_secret);
    let set = ok(load_env(&with(
        guide_env(),
        &[("SHARED_SECRET", Some(&key_b64(9)))],
    )));
    assert!(!set.shared_secret_generated);
    assert_eq!(set.shared_secret, [9; 32]);
}

#[test]
fn summary_and_debug_hold_no_secrets() {
    let env = with(guide_env(), &[("SHARED_SECRET", Some(&key_b64(9)))]);
    let c = ok(load_env(&env));
    let text = format!("{}\n{:?}\n{:?}", c.summary().join("\n"), c, c.cookie);
    for secret in ["very-secret-client-value", &key_b64(1), &key_b64(9)] {
        assert!(!text.contains(secret), "summary shows a secret:\n{text}");
    }
    assert!(
        text.contains("route 1: https://httpbin.int.nas.example -> http://httpbin (1 user(s))"),
        "{text}"
    );
}

/// The guide's own example: emails indented under `to:` fold into one string with the URL.
#[test]
fn guide_broken_policy_scalar_reading() {
    let broken = "- from: https://httpbin.int.nas.example\n  to: http://httpbin\n    - your.email.address@gmail.com\n";
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(broken).unwrap();
    assert_eq!(
        v[0]["to"].as_str(),
        Some("http://httpbin - your.email.address@gmail.com")
    );
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("POLICY", Some(&b64(broken)))],
    )));
    assert!(e.contains("POLICY (base64 YAML) line 2"), "{e}");
    assert!(
        e.contains("route 1 (https://httpbin.int.nas.example)"),
        "{e}"
    );
    assert!(
        e.contains("\"http://httpbin - your.email.address@gmail.com\""),
        "{e}"
    );
    assert!(e.contains("allowed_users:"), "{e}");
    assert!(e.contains("`to` must be an http or https URL"), "{e}");
}

/// Same mistake, other indentation: `to` becomes a list whose items are a URL and emails.
#[test]
fn guide_broken_policy_list_reading() {
    let broken = "- from: https://httpbin.int.nas.example\n  to:\n    - http://httpbin\n    - your.email.address@gmail.com\n";
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("POLICY", Some(&b64(broken)))],
    )));
    assert!(
        e.contains("line 2: route 1 (https://httpbin.int.nas.example)"),
        "{e}"
    );
    assert!(e.contains("\"your.email.address@gmail.com\""), "{e}");
    assert!(
        !e.contains("\"http://httpbin\""),
        "only the bad item is shown: {e}"
    );
    assert!(e.contains("allowed_users:"), "{e}");
    // B28 (b), in a file: only emails under `to:`.
    let yaml = "routes:\n  - from: https://app.example.com\n    to:\n      - alice@example.com\n      - bob@example.com\n";
    let e = errors_of(load_yaml(yaml, &without_policy()));
    assert!(
        e.contains("postern.yaml line 3: route 1 (https://app.example.com)"),
        "{e}"
    );
    assert!(
        e.contains("\"alice@example.com\", \"bob@example.com\""),
        "{e}"
    );
    assert!(
        e.contains("http or https URLs") && e.contains("allowed_users:"),
        "{e}"
    );
}

#[test]
fn to_as_list() {
    let one = "- from: https://a.example.com\n  to: [http://127.0.0.1:9001]\n  allow_any_authenticated_user: true\n";
    let c = ok(load_env(&with(guide_env(), &[("POLICY", Some(&b64(one)))])));
    assert_eq!(c.policy.routes[0].to.port, 9001);
    let two = "- from: https://a.example.com\n  to: [http://127.0.0.1:9001, http://127.0.0.1:9002]\n  allow_any_authenticated_user: true\n";
    let e = errors_of(load_env(&with(guide_env(), &[("POLICY", Some(&b64(two)))])));
    assert!(
        e.contains("one upstream") && e.contains("a list of 2 URLs"),
        "{e}"
    );
}

fn without_policy() -> HashMap<String, String> {
    with(guide_env(), &[("POLICY", None)])
}

/// B28 (d): a typo never silently changes access.
#[test]
fn unknown_route_key_with_line_number() {
    let yaml = "cookie_name: _p\npolicy:\n  - from: https://app.example.com\n    to: http://127.0.0.1:9001\n    allowed_user: [alice@example.com]\n";
    let e = errors_of(load_yaml(yaml, &without_policy()));
    assert!(e.contains("postern.yaml line 5"), "{e}");
    assert!(
        e.contains(
            "route 1 (https://app.example.com): unknown field `allowed_user` (did you mean `allowed_users`?)"
        ),
        "{e}"
    );
    let e = errors_of(load_env(&with(
        guide_env(),
        &[(
            "POLICY",
            Some(&b64(
                "- from: https://a.example\n  to: http://b\n  alowed_domains: [x.com]\n",
            )),
        )],
    )));
    assert!(
        e.contains("POLICY (base64 YAML) line 3") && e.contains("unknown field `alowed_domains`"),
        "{e}"
    );
    let e = errors_of(load_yaml("cookie_nmae: x\n", &guide_env()));
    assert!(
        e.contains("postern.yaml line 1") && e.contains("unknown field `cookie_nmae`"),
        "{e}"
    );
}

/// A mistake in one route hides none in another: every route is read on its own.
#[test]
fn problems_in_several_routes_are_all_reported() {
    let yaml = "policy:\n  - from: https://a.example.com\n    to: http://a - alice@example.com\n  - from: https://b.example.com\n    to: http://b\n    allowed_user: [bob@example.com]\n  - from: https://c.example.com\n    to: http://c\n    allowed_users: [carol]\n";
    let e = errors_of(load_yaml(yaml, &without_policy()));
    assert!(
        e.contains("line 3: route 1 (https://a.example.com): `to`"),
        "{e}"
    );
    assert!(
        e.contains("line 6: route 2 (https://b.example.com): unknown field `allowed_user`"),
        "{e}"
    );
    assert!(
        e.contains("route 3 (https://c.example.com)") && e.contains("carol"),
        "{e}"
    );
}

/// A typo in a top-level key hides no other problem of the file.
#[test]
fn unknown_top_level_key_hides_nothing() {
    let yaml = "idp_provder: google\ncookie_expire: 14 hours\n";
    let e = errors_of(load_yaml(yaml, &without_policy()));
    assert!(
        e.contains(
            "postern.yaml line 1: unknown field `idp_provder` (did you mean `idp_provider`?)"
        ),
        "{e}"
    );
    assert!(
        e.contains("cookie_expire in ") && e.contains("line 2"),
        "{e}"
    );
}

/// B28 (a).
#[test]
fn authenticate_host_may_not_be_a_route_host() {
    let yaml = "authenticate_service_url: https://app.example.com\nroutes:\n  - from: https://app.example.com\n    to: http://127.0.0.1:9001\n    allowed_users: [alice@example.com]\n";
    let env = with(without_policy(), &[("AUTHENTICATE_SERVICE_URL", None)]);
    let e = errors_of(load_yaml(yaml, &env));
    assert!(
        e.contains("authenticate_service_url")
            && e.contains("`from` of route 1 (https://app.example.com)"),
        "{e}"
    );
    // Same host with the default port written, and http vs https behind nginx: still the same requests.
    let env = with(
        guide_env(),
        &[(
            "AUTHENTICATE_SERVICE_URL",
            Some("https://HTTPBIN.int.nas.example:443"),
        )],
    );
    assert!(errors_of(load_env(&env)).contains("AUTHENTICATE_SERVICE_URL"));
    // Another port is another origin.
    let env = with(
        guide_env(),
        &[(
            "AUTHENTICATE_SERVICE_URL",
            Some("https://httpbin.int.nas.example:8443"),
        )],
    );
    ok(load_env(&env));
}

#[test]
fn env_wins_over_file() {
    let yaml = "cookie_name: from_file\nlog_level: debug\ncookie_expire: 2h\npolicy:\n  - from: https://file.example.com\n    to: http://127.0.0.1:1\n    allow_any_authenticated_user: true\n";
    let env = with(
        guide_env(),
        &[
            ("COOKIE_NAME", Some("from_env")),
            ("COOKIE_EXPIRE", Some("")),
        ],
    );
    let c = ok(load_yaml(yaml, &env));
    assert_eq!(c.cookie.name, "from_env");
    assert_eq!(c.log_level, log::LevelFilter::Debug);
    assert_eq!(
        c.cookie.expire,
        Duration::from_secs(7200),
        "an empty env value counts as unset"
    );
    // POLICY from the env replaces the file's, and says so.
    assert_eq!(c.policy.routes[0].from.host, "httpbin.int.nas.example");
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("file's policy is not used")));
    let c = ok(load_yaml(yaml, &without_policy()));
    assert_eq!(c.policy.routes[0].from.host, "file.example.com");
}

#[test]
fn base64_policy_in_every_alphabet() {
    let policy = "- from: https://a.example.com\n  to: http://127.0.0.1:9001\n  allowed_domains: [Example.COM]\n  regex: \"/api/v[0-9]+/.*\"\n";
    for engine in [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        let c = ok(load_env(&with(
            guide_env(),
            &[("POLICY", Some(&engine.encode(policy)))],
        )));
        assert_eq!(c.policy.routes[0].access.domains, vec!["example.com"]);
        assert!(c.policy.find("a.example.com", None, "/api/v2/x").is_some());
        assert!(c
            .policy
            .find("a.example.com", None, "/x/api/v2/x")
            .is_none());
    }
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("POLICY", Some("- from: not base64"))],
    )));
    assert!(
        e.contains("POLICY: expected base64 of a YAML list of routes"),
        "{e}"
    );
}

#[test]
fn durations() {
    let c = ok(load_env(&with(
        guide_env(),
        &[
            ("COOKIE_EXPIRE", Some("1m30s")),
            ("DEFAULT_UPSTREAM_TIMEOUT", Some("1.5h")),
        ],
    )));
    assert_eq!(c.cookie.expire, Duration::from_secs(90));
    assert_eq!(c.default_upstream_timeout, Duration::from_secs(5400));
    let e = errors_of(load_env(&with(
        guide_env(),
        &[
            ("COOKIE_EXPIRE", Some("14 hours")),
            ("DEFAULT_UPSTREAM_TIMEOUT", Some("0")),
        ],
    )));
    assert!(
        e.contains("COOKIE_EXPIRE: expected a duration like 30s, 1m30s or 14h")
            && e.contains("\"14 hours\""),
        "{e}"
    );
    assert!(
        e.contains("DEFAULT_UPSTREAM_TIMEOUT: expected a positive duration"),
        "{e}"
    );
    let route = "- from: https://a.example.com\n  to: http://b\n  allow_any_authenticated_user: true\n  timeout: 250ms\n";
    let c = ok(load_env(&with(
        guide_env(),
        &[("POLICY", Some(&b64(route)))],
    )));
    assert_eq!(c.policy.routes[0].timeout, Some(Duration::from_millis(250)));
}

#[test]
fn booleans_in_env_and_yaml() {
    for (v, want) in [
        ("TRUE", true),
        ("true", true),
        ("1", true),
        ("FALSE", false),
        ("false", false),
        ("0", false),
    ] {
        let c = load_env(&with(guide_env(), &[("COOKIE_SECURE", Some(v))]));
        assert_eq!(ok(c).cookie.secure, want, "{v}");
    }
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("COOKIE_SECURE", Some("yes"))],
    )));
    assert!(
        e.contains("COOKIE_SECURE: expected true or false") && e.contains("\"yes\""),
        "{e}"
    );
    for v in ["TRUE", "'1'", "true", "1"] {
        let yaml = format!("cookie_http_only: false\ninsecure_server: {v}\n");
        let c = ok(load_yaml(
            &yaml,
            &with(guide_env(), &[("INSECURE_SERVER", None)]),
        ));
        assert!(c.insecure_server && !c.cookie.http_only, "{v}");
    }
    let e = errors_of(load_yaml("cookie_http_only: maybe\n", &guide_env()));
    assert!(
        e.contains("cookie_http_only in postern.yaml line 1: expected true or false"),
        "{e}"
    );
}

#[test]
fn missing_cookie_secret_says_how_to_make_one() {
    let e = errors_of(load_env(&with(guide_env(), &[("COOKIE_SECRET", None)])));
    assert!(
        e.contains("COOKIE_SECRET is not set") && e.contains("postern gen-secret"),
        "{e}"
    );
    let e = errors_of(load_yaml(
        "log_level: info\n",
        &with(guide_env(), &[("COOKIE_SECRET", None)]),
    ));
    assert!(
        e.contains("COOKIE_SECRET (or cookie_secret in postern.yaml) is not set"),
        "{e}"
    );
    let short = B64.encode([3u8; 16]);
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("COOKIE_SECRET", Some(&short))],
    )));
    assert!(
        e.contains("COOKIE_SECRET: expected base64 of 32 random bytes")
            && e.contains("found base64 of 16 bytes"),
        "{e}"
    );
    assert!(!e.contains(&short), "the value is never shown: {e}");
    let e = errors_of(load_yaml(
        "shared_secret: \"p@ssw0rd-not-base64\"\n",
        &guide_env(),
    ));
    assert!(
        e.contains("shared_secret in postern.yaml line 1") && !e.contains("p@ssw0rd"),
        "{e}"
    );
}

#[test]
fn every_problem_is_reported_one_per_line() {
    let policy = "- from: https://a.example.com\n  to: ftp://b\n  prefix: admin\n- from: http://\n  to: http://c\n";
    let env = with(
        guide_env(),
        &[
            ("COOKIE_SECRET", None),
            ("IDP_PROVIDER", Some("okta")),
            ("AUTHENTICATE_SERVICE_URL", Some("http://auth.example.com")),
            ("POLICY", Some(&b64(policy))),
            ("SERVICES", Some("proxy")),
        ],
    );
    let errs = load_env(&env).unwrap_err();
    let text = errs.to_string();
    assert_eq!(text.lines().count(), errs.0.len());
    for needle in [
        "SERVICES: expected all",
        "AUTHENTICATE_SERVICE_URL: expected an https URL",
        "IDP_PROVIDER: expected oidc or google",
        "COOKIE_SECRET is not set",
        "line 2: route 1 (https://a.example.com): `to`",
        "line 3: route 1 (https://a.example.com): `prefix` must be a path starting with /",
        "line 4: route 2 (http://): `from`",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn route_rules() {
    let cases: &[(&str, &str)] = &[
        (
            "  allow_public_unauthenticated_access: true\n  allowed_users: [a@b.c]\n",
            "a public route lets everyone in",
        ),
        (
            "  prefix: /a\n  path: /b\n  allow_any_authenticated_user: true\n",
            "at most one of prefix, path and regex",
        ),
        (
            "  regex: \"(\"\n  allow_any_authenticated_user: true\n",
            "`regex` must be a regular expression",
        ),
        (
            "  allowed_users: [alice]\n",
            "`allowed_users` must be email addresses",
        ),
        (
            "  allowed_users: alice@example.com\n",
            "`allowed_users` must be a list",
        ),
        (
            "  allowed_domains: [\"@example.com\"]\n",
            "`allowed_domains` must be domain names like example.com (no @)",
        ),
        (
            "  allowed_users: [a@b.c]\n  set_request_headers: {\"Bad Name\": x}\n",
            "`set_request_headers`",
        ),
        (
            "  allowed_users: [a@b.c]\n  tls_server_name: \"not a name\"\n",
            "`tls_server_name`",
        ),
        (
            "  allowed_users: [a@b.c]\n  set_request_headers: {Content-Length: \"0\"}\n",
            "other than Host and the message framing",
        ),
        (
            "  allowed_users: [a@b.c]\n  remove_request_headers: [Transfer-Encoding]\n",
            "other than Host and the message framing",
        ),
        (
            "  allowed_users: [a@b.c]\n  tls_custom_ca: \"bm90IHBlbQ==\"\n",
            "`tls_custom_ca` must be base64 of PEM",
        ),
        (
            "  allowed_users: [a@b.c]\n  allow_websockets: sometimes\n",
            "`allow_websockets` must be true or false",
        ),
        (
            "  allowed_users: [a@b.c]\n  idle_timeout: forever\n",
            "`idle_timeout` must be a duration like 5m, or 0s for no limit",
        ),
        (
            "  allowed_users: [a@b.c]\n  tls_client_cert_file: /nonexistent/client.pem\n  tls_client_key_file: /nonexistent/client.key\n",
            "`tls_client_cert_file` must be a readable PEM file",
        ),
        (
            "  allowed_users: [a@b.c]\n  tls_client_cert: \"bm90IHBlbQ==\"\n  tls_client_key: \"bm90IHBlbQ==\"\n",
            "`tls_client_cert` must be a PEM certificate (chain)",
        ),
        (
            "  allowed_users: [a@b.c]\n  tls_client_cert: \"%%%\"\n  tls_client_key: \"bm90IHBlbQ==\"\n",
            "`tls_client_cert` must be base64 of PEM",
        ),
        (
            "  allowed_users: [a@b.c]\n  tls_client_key_file: /x.key\n",
            "`tls_client_key` must be given with tls_client_cert",
        ),
        (
            "  allowed_users: [a@b.c]\n  tls_client_cert: \"bm90IHBlbQ==\"\n  tls_client_cert_file: /x.pem\n  tls_client_key_file: /x.key\n",
            "`tls_client_cert` must be given alone, not together with tls_client_cert_file",
        ),
    ];
    for (extra, needle) in cases {
        let policy = format!("- from: https://a.example.com\n  to: https://b.example.com\n{extra}");
        let e = errors_of(load_env(&with(
            guide_env(),
            &[("POLICY", Some(&b64(&policy)))],
        )));
        assert!(e.contains(needle), "{extra}: missing {needle:?} in {e}");
        assert!(e.contains("route 1 (https://a.example.com)"), "{e}");
    }
}

#[test]
fn a_route_without_rules_denies_everyone() {
    let policy = "- from: https://a.example.com\n  to: http://b\n";
    let c = ok(load_env(&with(
        guide_env(),
        &[("POLICY", Some(&b64(policy)))],
    )));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("route 1 (https://a.example.com): denies everyone")),
        "{:?}",
        c.warnings
    );
    let r = &c.policy.routes[0];
    let id = crate::route::Identity {
        email: "alice@example.com",
        email_verified: true,
        groups: &[],
    };
    assert!(matches!(r.verdict(&id), crate::route::Verdict::Deny(_)));
}

#[test]
fn urls_of_the_login_flow() {
    let cases: &[(&str, &str, bool)] = &[
        ("AUTHENTICATE_SERVICE_URL", "http://localhost:8080", true),
        ("AUTHENTICATE_SERVICE_URL", "http://auth.localhost", true),
        ("AUTHENTICATE_SERVICE_URL", "http://127.0.0.1:8080", true),
        ("AUTHENTICATE_SERVICE_URL", "http://auth.example.com", false),
        (
            "AUTHENTICATE_SERVICE_URL",
            "https://auth.example.com/path",
            false,
        ),
        (
            "IDP_PROVIDER_URL",
            "https://id.example.com/realms/home",
            true,
        ),
        ("IDP_PROVIDER_URL", "http://127.0.0.1:3000", true),
        ("IDP_PROVIDER_URL", "http://id.example.com", false),
        ("IDP_PROVIDER_URL", "id.example.com", false),
    ];
    for (key, value, good) in cases {
        let env = with(
            guide_env(),
            &[
                ("IDP_PROVIDER", Some("oidc")),
                ("IDP_PROVIDER_URL", Some("https://id.example.com")),
                (key, Some(value)),
            ],
        );
        let r = load_env(&env);
        assert_eq!(
            r.is_ok(),
            *good,
            "{key}={value}: {:?}",
            r.err().map(|e| e.to_string())
        );
        if !good {
            assert!(errors_of(load_env(&env)).contains(key));
        }
    }
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("IDP_PROVIDER", Some("oidc"))],
    )));
    assert!(e.contains("IDP_PROVIDER_URL is not set"), "{e}");
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("IDP_SCOPES", Some("email,profile"))],
    )));
    assert!(
        e.contains("IDP_SCOPES: expected a scope list that includes openid"),
        "{e}"
    );
    let c = ok(load_env(&with(
        guide_env(),
        &[("IDP_SCOPES", Some("openid,email groups"))],
    )));
    assert_eq!(c.idp.scopes, vec!["openid", "email", "groups"]);
}

#[test]
fn addresses() {
    let cases: &[(&str, Option<&str>)] = &[
        (":443", Some("0.0.0.0:443")),
        (":32443", Some("0.0.0.0:32443")),
        ("127.0.0.1:8080", Some("127.0.0.1:8080")),
        ("[::1]:8443", Some("[::1]:8443")),
        ("localhost:8080", None),
        ("443", None),
        (":http", None),
        (":70000", None),
    ];
    for (s, want) in cases {
        let r = load_env(&with(guide_env(), &[("ADDRESS", Some(s))]));
        match want {
            Some(w) => assert_eq!(ok(r).address, w.parse().unwrap(), "{s}"),
            None if *s == "localhost:8080" => assert_eq!(ok(r).address.port(), 8080),
            None => assert!(errors_of(r).contains("ADDRESS: expected :port"), "{s}"),
        }
    }
}

#[test]
fn headers_and_services() {
    let c = ok(load_env(&with(
        guide_env(),
        &[(
            "HEADERS",
            Some("X-Frame-Options:DENY,Strict-Transport-Security:max-age=31536000"),
        )],
    )));
    assert_eq!(
        c.headers,
        vec![
            ("X-Frame-Options".into(), "DENY".into()),
            (
                "Strict-Transport-Security".into(),
                "max-age=31536000".into()
            )
        ]
    );
    let c = ok(load_yaml(
        "headers:\n  X-Frame-Options: DENY\n  Referrer-Policy: no-referrer\n",
        &guide_env(),
    ));
    assert_eq!(
        c.headers[1],
        ("Referrer-Policy".into(), "no-referrer".into())
    );
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("HEADERS", Some("X-Frame-Options DENY"))],
    )));
    assert!(e.contains("HEADERS: expected Key:Value pairs"), "{e}");
    ok(load_env(&with(guide_env(), &[("SERVICES", Some("all"))])));
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("SERVICES", Some("authenticate"))],
    )));
    assert!(
        e.contains("SERVICES: expected all (postern runs authenticate and proxy in one process"),
        "{e}"
    );
    let c = ok(load_env(&with(
        guide_env(),
        &[("COOKIE_DOMAIN", Some(".int.nas.example"))],
    )));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("COOKIE_DOMAIN is ignored")),
        "{:?}",
        c.warnings
    );
}

fn testdata(name: &str) -> String {
    format!("{}/src/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn certificates() {
    let tls_env = || with(guide_env(), &[("INSECURE_SERVER", None)]);
    let e = errors_of(load_env(&tls_env()));
    assert!(
        e.contains("CERTIFICATE is not set") && e.contains("INSECURE_SERVER"),
        "{e}"
    );
    let c = ok(load_env(&with(
        tls_env(),
        &[
            ("CERTIFICATE_FILE", Some(&testdata("a.crt"))),
            ("CERTIFICATE_KEY_FILE", Some(&testdata("a.key"))),
        ],
    )));
    assert!(c.tls.is_some() && !c.insecure_server);
    let cert = b64(crate::tls::tests::CERT_A);
    let c = ok(load_env(&with(
        tls_env(),
        &[
            ("CERTIFICATE", Some(&cert)),
            ("CERTIFICATE_KEY", Some(&b64(crate::tls::tests::KEY_A))),
        ],
    )));
    assert!(c.tls.is_some());
    let e = errors_of(load_env(&with(
        tls_env(),
        &[
            ("CERTIFICATE", Some(&cert)),
            ("CERTIFICATE_KEY", Some(&b64(crate::tls::tests::KEY_B))),
        ],
    )));
    assert!(
        e.contains("CERTIFICATE_KEY: expected the private key of the certificate in CERTIFICATE"),
        "{e}"
    );
    let e = errors_of(load_env(&with(tls_env(), &[("CERTIFICATE", Some(&cert))])));
    assert!(
        e.contains("CERTIFICATE and CERTIFICATE_KEY go together"),
        "{e}"
    );
    let e = errors_of(load_env(&with(
        tls_env(),
        &[
            ("CERTIFICATE", Some(&cert)),
            ("CERTIFICATE_KEY_FILE", Some(&testdata("a.key"))),
            ("CERTIFICATE_FILE", Some(&testdata("a.crt"))),
        ],
    )));
    assert!(e.contains("not both"), "{e}");
    let e = errors_of(load_env(&with(
        tls_env(),
        &[
            ("CERTIFICATE_FILE", Some("/nonexistent/c.pem")),
            ("CERTIFICATE_KEY_FILE", Some("/nonexistent/k.pem")),
        ],
    )));
    assert!(
        e.contains("CERTIFICATE_FILE: cannot read /nonexistent/c.pem"),
        "{e}"
    );
    let e = errors_of(load_env(&with(
        tls_env(),
        &[
            ("CERTIFICATE", Some(&b64("junk"))),
            ("CERTIFICATE_KEY", Some(&b64("junk"))),
        ],
    )));
    assert!(
        e.contains("CERTIFICATE: expected a PEM certificate chain")
            && e.contains("CERTIFICATE_KEY: expected a PEM private key"),
        "{e}"
    );
    // INSECURE_SERVER: certificates are not needed, and ignored with a warning when given.
    let c = ok(load_env(&with(
        guide_env(),
        &[("CERTIFICATE", Some(&cert))],
    )));
    assert!(
        c.tls.is_none()
            && c.warnings
                .iter()
                .any(|w| w.contains("certificate settings are ignored"))
    );
}

#[test]
fn policy_and_routes_together_is_an_error() {
    let yaml = "policy:\n  - from: https://a.example.com\n    to: http://b\nroutes:\n  - from: https://c.example.com\n    to: http://d\n";
    let e = errors_of(load_yaml(yaml, &without_policy()));
    assert!(
        e.contains("postern.yaml line 4: both `policy:` and `routes:`"),
        "{e}"
    );
    let e = errors_of(load_env(&without_policy()));
    assert!(e.contains("the policy is not set"), "{e}");
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("POLICY", Some(&b64("[]")))],
    )));
    assert!(e.contains("the policy has no routes"), "{e}");
}

/// A configuration file using every key.
#[test]
fn full_valid_file() {
    let yaml = format!(
        r#"# postern, every key
address: "127.0.0.1:8443"
insecure_server: false
certificate_file: {crt}
certificate_key_file: {key}
authenticate_service_url: https://auth.example.com
idp_provider: oidc
idp_provider_url: https://id.example.com/realms/home
idp_client_id: 12345
idp_client_secret: s3cr3t
idp_scopes: openid email profile groups
cookie_secret: {cookie}
cookie_name: _postern
cookie_secure: "TRUE"
cookie_http_only: 1
cookie_expire: 8h
shared_secret: {shared}
signing_key: {signing}
trusted_proxies: [127.0.0.1/32, "::1"]
headers:
  X-Frame-Options: DENY
default_upstream_timeout: 1m
log_level: warn
services: all
routes:
  - from: https://App.Example.com
    to: http://127.0.0.1:9001
    allowed_users:
      - Alice@Example.com
    allowed_domains: [family.example]
    allowed_groups: [admins]
    prefix: /admin
    preserve_host_header: true
    set_request_headers:
      X-Upstream-Key: abc
    remove_request_headers: [X-Debug]
    timeout: 5s
    allow_websockets: true
    cors_allow_preflight: true
    pass_identity_headers: true
  - from: https://app.example.com
    to: https://backend.example.com:8443
    allow_any_authenticated_user: true
    tls_server_name: backend.internal
    tls_skip_verify: false
    tls_custom_ca_file: {crt}
    tls_client_cert_file: {crt}
    tls_client_key_file: {key}
    idle_timeout: 0s
  - from: https://pub.example.com:8443
    to: http://[::1]:9002
    allow_public_unauthenticated_access: true
    path: /status
"#,
        crt = testdata("a.crt"),
        key = testdata("a.key"),
        cookie = key_b64(5),
        shared = key_b64(6),
        signing = b64(&std::fs::read_to_string(testdata("signing-key.pem")).unwrap()),
    );
    let env: HashMap<String, String> = HashMap::new();
    let c = ok(load_yaml(&yaml, &env));
    assert_eq!(c.address, "127.0.0.1:8443".parse().unwrap());
    assert!(c.tls.is_some());
    assert_eq!(c.idp.kind, IdpKind::Oidc);
    assert_eq!(c.idp.client_id, "12345");
    assert_eq!(c.idp.client_secret.expose(), "s3cr3t");
    assert_eq!(c.idp.scopes.len(), 4);
    assert_eq!(
        (c.cookie.name.as_str(), c.cookie.secret, c.cookie.expire),
        ("_postern", [5; 32], Duration::from_secs(8 * 3600))
    );
    assert_eq!(
        (c.shared_secret, c.shared_secret_generated),
        ([6; 32], false)
    );
    assert_eq!(
        c.headers,
        vec![("X-Frame-Options".to_string(), "DENY".to_string())]
    );
    assert_eq!(c.default_upstream_timeout, Duration::from_secs(60));
    assert_eq!(c.log_level, log::LevelFilter::Warn);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.signing_key.is_some());
    assert_eq!(c.trusted_proxies.len(), 2);
    let [admin, app, public] = &c.policy.routes[..] else {
        panic!("three routes")
    };
    assert_eq!(admin.access.users, vec!["alice@example.com"]);
    assert_eq!(admin.access.domains, vec!["family.example"]);
    assert!(
        admin.preserve_host_header
            && admin.allow_websockets
            && admin.cors_allow_preflight
            && admin.pass_identity_headers
    );
    assert_eq!(
        admin.set_request_headers,
        vec![("X-Upstream-Key".to_string(), "abc".to_string())]
    );
    assert_eq!(admin.remove_request_headers, vec!["x-debug"]);
    assert_eq!(admin.timeout, Some(Duration::from_secs(5)));
    assert_eq!(admin.idle_timeout, Some(crate::route::DEFAULT_IDLE_TIMEOUT));
    assert_eq!(app.idle_timeout, None, "idle_timeout: 0s is no limit");
    assert!(app
        .to
        .tls_config
        .as_ref()
        .is_some_and(|c| c.client_auth_cert_resolver.has_certs()));
    assert_eq!(app.to.authority, "backend.example.com:8443");
    assert_eq!(app.to.tls_server_name.as_deref(), Some("backend.internal"));
    assert_eq!(app.to.tls_custom_ca.len(), 1);
    assert!(app.to.tls_config.is_some() && app.to.client_config().is_some());
    assert_eq!(app.to.server_name(), "backend.internal");
    assert!(admin.to.client_config().is_none(), "plain http upstream");
    assert!(app.to.tls_config.is_some() && app.to.client_config().is_some());
    assert_eq!(app.to.server_name(), "backend.internal");
    assert!(admin.to.client_config().is_none(), "plain http upstream");
    assert!(public.is_public());
    assert_eq!(public.to.authority, "[::1]:9002");
    let find = |h: &str, p: &str| {
        let (h, port) = crate::route::normalize_host(h).unwrap();
        c.policy.find(&h, port, p).map(|r| r.index)
    };
    assert_eq!(find("app.example.com", "/admin/users"), Some(1));
    assert_eq!(find("app.example.com:443", "/administrator"), Some(2));
    assert_eq!(find("pub.example.com:8443", "/status"), Some(3));
    assert_eq!(find("pub.example.com", "/status"), None);
    assert_eq!(find("pub.example.com:8443", "/other"), None);
}

/// The guide's mistake with the emails at the route's own indentation: a YAML syntax error, with the same hint.
#[test]
fn guide_broken_policy_syntax_error_reading() {
    let broken = "- from: https://httpbin.int.nas.example\n  to: http://httpbin\n  - your.email.address@gmail.com\n";
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("POLICY", Some(&b64(broken)))],
    )));
    assert!(
        e.contains("POLICY (base64 YAML) line 3") && e.contains("allowed_users:"),
        "{e}"
    );
    let broken = "- from: https://httpbin.int.nas.example\n  to: http://httpbin\n- your.email.address@gmail.com\n";
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("POLICY", Some(&b64(broken)))],
    )));
    assert!(
        e.contains("line 3: route 2: invalid type") && e.contains("expected a route"),
        "{e}"
    );
    assert!(e.contains("allowed_users:"), "{e}");
}

#[test]
fn hints_for_common_mistakes() {
    // Plain YAML in POLICY.
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("POLICY", Some(GUIDE_POLICY))],
    )));
    assert!(e.contains("found plain YAML; POLICY holds base64"), "{e}");
    // A path in `from`.
    let policy = "- from: https://a.example.com/admin\n  to: http://b\n  allow_any_authenticated_user: true\n";
    let e = errors_of(load_env(&with(
        guide_env(),
        &[("POLICY", Some(&b64(policy)))],
    )));
    assert!(e.contains("use `prefix:` or `path:`"), "{e}");
    // Pomerium settings postern does not have: an error in the file, a warning in the env.
    let e = errors_of(load_yaml(
        "authorize_service_url: https://authz.example.com\n",
        &guide_env(),
    ));
    assert!(e.contains("line 1: unknown field `authorize_service_url` (a Pomerium setting postern does not support"), "{e}");
    let c = ok(load_env(&with(
        guide_env(),
        &[("AUTHORIZE_SERVICE_URL", Some("https://authz.example.com"))],
    )));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("AUTHORIZE_SERVICE_URL is a Pomerium setting")),
        "{:?}",
        c.warnings
    );
    // A missing provider kind is one message, not two.
    let e = errors_of(load_env(&with(guide_env(), &[("IDP_PROVIDER", None)])));
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.starts_with("IDP_PROVIDER is not set"), "{e}");
}

#[test]
fn idp_urls() {
    let c = ok(load_env(&guide_env()));
    assert_eq!(c.idp.issuer(), "https://accounts.google.com");
    assert_eq!(
        c.idp.discovery_url(),
        "https://accounts.google.com/.well-known/openid-configuration"
    );
    let env = with(
        guide_env(),
        &[
            ("IDP_PROVIDER", Some("oidc")),
            ("IDP_PROVIDER_URL", Some("http://127.0.0.1:3000/oidc/")),
        ],
    );
    let c = ok(load_env(&env));
    assert_eq!(
        c.idp.discovery_url(),
        "http://127.0.0.1:3000/oidc/.well-known/openid-configuration"
    );
}

#[test]
fn policy_file() {
    let dir = std::env::temp_dir().join(format!("postern-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        "# routes\n- from: https://a.example.com\n  to: http://b\n  allowed_user: [x@y.z]\n",
    )
    .unwrap();
    let p = path.display().to_string();
    let e = errors_of(load_env(&with(
        without_policy(),
        &[("POLICY_FILE", Some(&p))],
    )));
    assert!(
        e.contains(&format!(
            "{p} line 4: route 1 (https://a.example.com): unknown field `allowed_user`"
        )),
        "{e}"
    );
    std::fs::write(&path, GUIDE_POLICY).unwrap();
    let c = ok(load_yaml(&format!("policy_file: {p}\n"), &without_policy()));
    assert_eq!(c.policy.routes.len(), 1);
    let e = errors_of(load_env(&with(guide_env(), &[("POLICY_FILE", Some(&p))])));
    assert!(e.contains("POLICY and POLICY_FILE are both set"), "{e}");
    let e = errors_of(load_env(&with(
        without_policy(),
        &[("POLICY_FILE", Some("/nonexistent/p.yaml"))],
    )));
    assert!(
        e.contains("POLICY_FILE: cannot read /nonexistent/p.yaml"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The connection limits: defaults, every key, and what a bad value says.
#[test]
fn server_limits() {
    let c = ok(load_env(&guide_env()));
    assert_eq!(c.limits, super::ServerLimits::default());
    let c = ok(load_env(&with(
        guide_env(),
        &[
            ("REQUEST_HEAD_MAX_BYTES", Some("4096")),
            ("REQUEST_HEAD_MAX_HEADERS", Some("20")),
            ("REQUEST_LINE_MAX_BYTES", Some("1024")),
            ("REQUEST_HEAD_TIMEOUT", Some("2s")),
            ("KEEPALIVE_TIMEOUT", Some("5s")),
            ("MAX_CONNECTIONS", Some("64")),
        ],
    )));
    assert_eq!(
        (
            c.limits.head_bytes,
            c.limits.head_headers,
            c.limits.line_bytes,
            c.limits.max_connections
        ),
        (4096, 20, 1024, 64)
    );
    assert_eq!(c.limits.head_timeout, std::time::Duration::from_secs(2));
    let e = errors_of(load_env(&with(
        guide_env(),
        &[
            ("MAX_CONNECTIONS", Some("lots")),
            ("REQUEST_HEAD_MAX_BYTES", Some("10")),
        ],
    )));
    assert!(
        e.contains("MAX_CONNECTIONS")
            && e.contains("a whole number from 1 to 1000000")
            && e.contains("\"lots\""),
        "{e}"
    );
    assert!(
        e.contains("REQUEST_HEAD_MAX_BYTES") && e.contains("from 1024"),
        "{e}"
    );
}
