//! The sign-in flow end to end against a fake IdP (tokens forged by the test), and its refusals.

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::json;

use super::idtoken::forge;
use super::oidc::fake::{self, FakeIdp};
use super::*;
use crate::http::{Headers, RequestHead, Version};

const APP: &str = "https://app.example.com";
const AUTH: &str = "https://auth.example.com";

fn settings() -> AuthnSettings {
    AuthnSettings {
        authenticate_url: Url::parse(AUTH).unwrap(),
        cookie: CookieSettings {
            name: "_pomerium".into(),
            domain: None,
            secure: true,
            http_only: true,
            expire_secs: 50400,
        },
        cookie_secret: [1; 32],
        shared_secret: [2; 32],
        idp: fake::settings(),
        policy_groups: ["admins".to_string()].into_iter().collect(),
        transport: FakeIdp::new(json!({})).transport(),
    }
}

/// Settings talking to `idp`.
fn settings_for(idp: &Rc<FakeIdp>) -> AuthnSettings {
    AuthnSettings {
        transport: idp.transport(),
        ..settings()
    }
}

fn allowed(u: &Url) -> bool {
    u.scheme() == "https"
        && matches!(
            authority(u).as_deref(),
            Some("app.example.com" | "other.example.com:8443")
        )
}

fn setup() -> (Authn, Rc<FakeIdp>) {
    let idp = FakeIdp::new(json!({"keys": [forge::rsa_jwk("k1")]}));
    (Authn::new(settings_for(&idp)).unwrap(), idp)
}

/// A request for `url` (absolute; sent in origin-form) carrying `cookies` as one Cookie header.
fn req(url: &str, cookies: &[(&str, &str)]) -> Request {
    let u = Url::parse(url).unwrap();
    let mut target = u.path().to_owned();
    if let Some(q) = u.query() {
        target = format!("{target}?{q}");
    }
    let mut headers = Headers::default();
    headers.append("host", authority(&u).unwrap());
    headers.append("accept", "text/html");
    if !cookies.is_empty() {
        let c: Vec<String> = cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
        headers.append("cookie", c.join("; "));
    }
    Request {
        head: RequestHead {
            method: "GET".into(),
            target,
            version: Version::Http11,
            headers,
        },
        peer: "127.0.0.1:5000".parse().unwrap(),
    }
}

fn location(r: &Reply) -> String {
    assert!(
        matches!(r.status, 302 | 303),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.headers.get("location").unwrap().to_owned()
}

/// The value a reply sets for cookie `name` (None if it does not set it; "" if it clears it).
fn set_cookie(r: &Reply, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .filter_map(|c| c.split(';').next()?.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

/// The route-host binding cookie a reply sets: (name, value).
fn binding_of(r: &Reply) -> (String, String) {
    r.headers
        .get_all("set-cookie")
        .filter_map(|c| c.split(';').next()?.split_once('='))
        .find(|(n, _)| n.starts_with("__Host-_pomerium_bind_"))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .expect("a binding cookie")
}

/// Route host without a session, asked for `url`: the sign-in link and the binding cookie set beside it.
fn start(a: &Authn, origin: &str, url: &str) -> (String, (String, String)) {
    let r = a.sign_in_redirect(&req(url, &[]), origin, url);
    (location(&r), binding_of(&r))
}

/// The route host's callback for `handoff_url` in a browser holding `cookies`.
fn accept(
    a: &Authn,
    handoff_url: &str,
    cookies: &[(&str, &str)],
    host: &str,
    origin: &str,
) -> Reply {
    a.handoff(&req(handoff_url, cookies), host, origin)
}

/// A POST of `url` with an `Origin` header (None: no header) and cookies.
fn post(url: &str, origin: Option<&str>, cookies: &[(&str, &str)]) -> Request {
    let mut r = req(url, cookies);
    r.head.method = "POST".into();
    if let Some(o) = origin {
        r.head.headers.append("origin", o);
    }
    r
}

fn query(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn run(a: &Authn, r: &Request) -> Reply {
    smol::block_on(a.authenticate_host(r, &allowed))
}

fn claims(nonce: &str) -> serde_json::Value {
    json!({"iss": fake::ISSUER, "aud": "postern-client", "exp": crate::clock::now_secs() + 300, "iat": crate::clock::now_secs(),
           "nonce": nonce, "email": "Alice@Example.com", "email_verified": true, "name": "Alice",
           "groups": ["admins", "not-in-policy"]})
}

/// Drives AUTH from sign-in to the IdP and back; returns the callback reply and the cookies AUTH set.
fn sign_in_at_idp(
    a: &Authn,
    idp: &FakeIdp,
    sign_in_url: &str,
    claims_for: impl Fn(&str) -> serde_json::Value,
) -> Reply {
    let r = run(a, &req(sign_in_url, &[]));
    let idp_url = location(&r);
    assert!(
        idp_url.starts_with("https://idp.example.com/auth?"),
        "{idp_url}"
    );
    let q = query(&idp_url);
    let csrf = set_cookie(&r, "__Host-_pomerium_csrf").unwrap();
    assert_eq!(csrf.len(), 43);
    idp.tokens.borrow_mut().insert(
        "code-1".into(),
        forge::forged_rs256("k1", &claims_for(&q["nonce"])),
    );
    let cb = format!(
        "{AUTH}/oauth2/callback?code=code-1&state={}",
        enc(&q["state"])
    );
    run(a, &req(&cb, &[("__Host-_pomerium_csrf", &csrf)]))
}

#[test]
fn full_flow_route_host_to_idp_and_back() {
    let (a, idp) = setup();
    // 1. Route host without a session.
    let r = a.sign_in_redirect(&req(APP, &[]), APP, "https://app.example.com/x?y=1");
    let sign_in = location(&r);
    let (bind_name, bind) = binding_of(&r);
    let bind_cookie = r
        .headers
        .get_all("set-cookie")
        .find(|c| c.starts_with(&bind_name))
        .unwrap();
    assert!(
        bind_cookie.contains("Max-Age=600; HttpOnly; Secure; SameSite=Lax"),
        "{bind_cookie}"
    );
    assert!(bind_name.len() == "__Host-_pomerium_bind_".len() + 6 && bind.len() == 22);
    assert!(
        !sign_in.contains(&bind),
        "the link carries a hash, not the value"
    );
    assert!(
        sign_in.starts_with("https://auth.example.com/.pomerium/sign_in?pomerium_redirect_uri=")
    );
    assert_eq!(
        query(&sign_in)["pomerium_redirect_uri"],
        "https://app.example.com/x?y=1"
    );
    // 2-4. AUTH -> IdP -> AUTH callback.
    let cb = sign_in_at_idp(&a, &idp, &sign_in, claims);
    let handoff_url = location(&cb);
    assert!(
        handoff_url.starts_with("https://app.example.com/.pomerium/callback?pomerium_handoff="),
        "{handoff_url}"
    );
    let auth_cookie = set_cookie(&cb, "_pomerium").unwrap();
    assert_eq!(
        set_cookie(&cb, "__Host-_pomerium_csrf").as_deref(),
        Some("")
    );
    assert!(cb.headers.get_all("set-cookie").all(|c| c.len() <= 4096));
    let auth_session = a
        .session(
            &req(AUTH, &[("_pomerium", &auth_cookie)]),
            "auth.example.com",
        )
        .unwrap();
    assert_eq!(auth_session.email, "Alice@Example.com");
    // Every group the IdP sent is kept while the cookie has room, the policy's first.
    assert_eq!(auth_session.groups, vec!["admins", "not-in-policy"]);
    // AUTH's cookie is no good on the route host.
    assert!(a
        .session(&req(APP, &[("_pomerium", &auth_cookie)]), "app.example.com")
        .is_none());
    // 5. Route host accepts the hand-off and sets its own cookie.
    let h = accept(
        &a,
        &handoff_url,
        &[(&bind_name, &bind)],
        "app.example.com",
        APP,
    );
    assert_eq!(location(&h), "https://app.example.com/x?y=1");
    let host_cookie = set_cookie(&h, "_pomerium").unwrap();
    // The binding cookie is spent with the hand-off.
    assert_eq!(set_cookie(&h, &bind_name).as_deref(), Some(""));
    let s = a
        .session(
            &req(APP, &[("a", "1"), ("_pomerium", &host_cookie)]),
            "app.example.com",
        )
        .unwrap();
    assert_eq!(
        (s.email.as_str(), s.email_verified, s.name.as_deref()),
        ("Alice@Example.com", true, Some("Alice"))
    );
    // One session id across hosts, so a sign-out anywhere revokes both.
    assert_eq!(s.id, auth_session.id);
    assert_eq!(s.id.len(), 22);
    let max_age = h.headers.get("set-cookie").unwrap();
    assert!(
        max_age.contains("HttpOnly; Secure; SameSite=Lax") && max_age.contains("Path=/"),
        "{max_age}"
    );
    // 6. A second route host: AUTH has a session, so no IdP round trip.
    let before = idp.seen.borrow().len();
    let (link, (bn, bv)) = start(
        &a,
        "https://other.example.com:8443",
        "https://other.example.com:8443/",
    );
    let r = run(&a, &req(&link, &[("_pomerium", &auth_cookie)]));
    let l = location(&r);
    assert!(
        l.starts_with("https://other.example.com:8443/.pomerium/callback?pomerium_handoff="),
        "{l}"
    );
    assert_eq!(idp.seen.borrow().len(), before);
    // The hand-off for other.example.com:8443 is useless on app.example.com (and on the same host without port).
    for (host, origin) in [
        ("app.example.com", APP),
        ("other.example.com", "https://other.example.com"),
    ] {
        assert_eq!(accept(&a, &l, &[(&bn, &bv)], host, origin).status, 400);
    }
    assert_eq!(
        location(&accept(
            &a,
            &l,
            &[(&bn, &bv)],
            "other.example.com:8443",
            "https://other.example.com:8443"
        )),
        "https://other.example.com:8443/"
    );
}

#[test]
fn sign_in_links_must_be_signed_fresh_and_for_our_hosts() {
    let (a, _idp) = setup();
    let (good, _) = start(&a, APP, "https://app.example.com/");
    assert_eq!(
        location(&run(&a, &req(&good, &[]))).split('?').next(),
        Some("https://idp.example.com/auth")
    );
    let q = query(&good);
    let tampered = [
        format!("{AUTH}/.pomerium/sign_in?pomerium_redirect_uri={}", enc("https://app.example.com/")),
        good.replace("app.example.com%2F", "app.example.com%2Fx"),
        good.replace(&q["pomerium_issued"], &(q["pomerium_issued"].parse::<u64>().unwrap() + 1).to_string()),
        format!("{AUTH}/.pomerium/sign_in?pomerium_redirect_uri={}&pomerium_issued={}&pomerium_sig=AAAA",
            enc("https://app.example.com/"), q["pomerium_issued"]),
        // The binding hash is covered by the MAC: swapping it (for an attacker's own) or dropping it fails.
        good.replace(&enc(&q["pomerium_bind"]), "AAAAAAAAAAAAAAAAAAAAAA"),
        good.replace(&format!("&pomerium_bind={}", enc(&q["pomerium_bind"])), ""),
    ];
    for t in tampered {
        assert_eq!(run(&a, &req(&t, &[])).status, 400, "{t}");
    }
    // Expired link (issued long ago, properly signed).
    let issued = crate::clock::now_secs() - LINK_SECS - LEEWAY_SECS - 1;
    let url = "https://app.example.com/";
    let sig = URL_SAFE_NO_PAD.encode(a.link_mac(Purpose::SignIn, url, issued, "b").as_ref());
    let old = format!("{AUTH}/.pomerium/sign_in?pomerium_redirect_uri={}&pomerium_issued={issued}&pomerium_bind=b&pomerium_sig={sig}", enc(url));
    assert_eq!(run(&a, &req(&old, &[])).status, 400);
    // A correctly signed link without a binding is refused before the IdP round trip (its hand-off could not work).
    let unbound = a.signed_link(SIGN_IN_PATH, Purpose::SignIn, url, "");
    assert_eq!(run(&a, &req(&unbound, &[])).status, 400);
    // A sign-out MAC is not a sign-in MAC.
    let out = location(&a.sign_out(&post(APP, Some(APP), &[]), "app.example.com", APP))
        .replace("/.pomerium/sign_out", "/.pomerium/sign_in");
    assert_eq!(run(&a, &req(&out, &[])).status, 400);
}

#[test]
fn foreign_redirect_targets_are_refused_even_when_signed() {
    // B09: even a correctly signed link (as if minted by a confused route host) never leads off our hosts.
    let (a, _idp) = setup();
    let evil = [
        "//evil.example.net/",
        "/\\evil.example.net",
        "/%5Cevil.example.net",
        "/%09/evil.example.net",
        "https://evil.example.net/",
        "https://app.example.com.evil.example.net/",
        "https://app.example.com@evil.example.net/",
        "https://user:pw@app.example.com/",
        "javascript:alert(1)",
        "http://app.example.com/",
        "https://app.example.com:444/",
        "https:\\\\evil.example.net",
        "",
    ];
    for target in evil {
        let link = a.signed_link(SIGN_IN_PATH, Purpose::SignIn, target, "b");
        let r = run(&a, &req(&link, &[]));
        assert_eq!(r.status, 400, "{target:?}");
        assert!(r.headers.get("location").is_none());
    }
    // The route host side also refuses to put a foreign URL in a sign-in link.
    let (l, _) = start(&a, APP, "https://evil.example.net/");
    assert_eq!(
        query(&l)["pomerium_redirect_uri"],
        "https://app.example.com/"
    );
}

fn a_session() -> Session {
    Session {
        id: "session-id-1".into(),
        email: "a@example.com".into(),
        email_verified: true,
        name: None,
        groups: vec![],
        issued: crate::clock::now_secs(),
        expires: crate::clock::now_secs() + 3600,
    }
}

/// A hand-off sealed for `host` as AUTH would, bound to the binding value `bind`.
fn forge_handoff(a: &Authn, host: &str, target: &str, bind: &str, expires: u64) -> String {
    let h = Handoff {
        session: a_session(),
        target: target.into(),
        id: seal::random_token(16).unwrap(),
        binding: binding_hash(bind),
    };
    let tok = a
        .shared_sealer
        .seal(
            Purpose::Handoff,
            host,
            expires,
            &serde_json::to_vec(&h).unwrap(),
        )
        .unwrap();
    format!("https://{host}/.pomerium/callback?pomerium_handoff={tok}")
}

const BIND_NAME: &str = "__Host-_pomerium_bind_abcdef";
const BIND: &str = "0123456789abcdefghijkl";

#[test]
fn handoff_refusals() {
    let (a, _idp) = setup();
    let now = crate::clock::now_secs();
    let mine = [(BIND_NAME, BIND)];
    // A hand-off whose target is on another origin than the host it is sealed for.
    let evil = forge_handoff(
        &a,
        "app.example.com",
        "https://evil.example.net/",
        BIND,
        now + 60,
    );
    assert_eq!(accept(&a, &evil, &mine, "app.example.com", APP).status, 400);
    // Expired hand-off, garbage, missing, and a session cookie offered as a hand-off.
    let old = forge_handoff(&a, "app.example.com", &format!("{APP}/"), BIND, now - 1000);
    let old = query(&old)["pomerium_handoff"].clone();
    let cookie = session::seal_session(&a.cookie_sealer, "app.example.com", &a_session()).unwrap();
    for t in [old.as_str(), "garbage", "", cookie.as_str()] {
        let r = accept(
            &a,
            &format!("{APP}/.pomerium/callback?pomerium_handoff={t}"),
            &mine,
            "app.example.com",
            APP,
        );
        assert_eq!(r.status, 400, "{t}");
        assert!(set_cookie(&r, "_pomerium").is_none());
    }
    let r = accept(
        &a,
        &format!("{APP}/.pomerium/callback"),
        &mine,
        "app.example.com",
        APP,
    );
    assert_eq!(r.status, 400);
}

#[test]
fn handoff_is_bound_to_the_browser_that_started_the_sign_in() {
    // Login CSRF: an attacker's own hand-off URL, opened in the victim's browser, must not sign the victim in.
    let (a, _idp) = setup();
    let now = crate::clock::now_secs();
    let url = forge_handoff(&a, "app.example.com", &format!("{APP}/x"), BIND, now + 60);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "no binding cookie at all"),
        (
            &[(BIND_NAME, "zzzzzzzzzzzzzzzzzzzzzz")],
            "another sign-in's binding",
        ),
        (
            &[("_pomerium_bind", BIND)],
            "the value under a name postern never makes",
        ),
        (
            &[("__Host-_pomerium_bind_abc", BIND)],
            "short id of the wrong length",
        ),
        (
            &[("__Host-_pomerium_csrf", BIND)],
            "the AUTH binding cookie's name",
        ),
        (&[("other_bind_abcdef", BIND)], "another cookie base"),
    ];
    for (cookies, what) in cases {
        let r = accept(&a, &url, cookies, "app.example.com", APP);
        assert_eq!(r.status, 400, "{what}");
        assert!(set_cookie(&r, "_pomerium").is_none(), "{what}");
        // Not a dead end: the page links to the page wanted, which starts a fresh sign-in.
        assert!(
            String::from_utf8_lossy(&r.body).contains("href=\"https://app.example.com/x\""),
            "{what}"
        );
    }
    // A refused attempt does not spend it: the browser that owns it still gets in, among other sign-ins in flight.
    let r = accept(
        &a,
        &url,
        &[
            ("__Host-_pomerium_bind_111111", "yyyyyyyyyyyyyyyyyyyyyy"),
            (BIND_NAME, BIND),
        ],
        "app.example.com",
        APP,
    );
    assert_eq!(location(&r), "https://app.example.com/x");
    assert_eq!(set_cookie(&r, BIND_NAME).as_deref(), Some(""));
    assert!(set_cookie(&r, "__Host-_pomerium_bind_111111").is_none());
}

#[test]
fn handoff_is_single_use() {
    // Replay: the same captured URL from three fresh clients (even with the binding cookie) works once.
    let (a, idp) = setup();
    let (sign_in, (bn, bv)) = start(&a, APP, "https://app.example.com/");
    let cb = sign_in_at_idp(&a, &idp, &sign_in, claims);
    let url = location(&cb);
    let first = accept(&a, &url, &[(&bn, &bv)], "app.example.com", APP);
    assert_eq!(location(&first), "https://app.example.com/");
    for _ in 0..3 {
        let r = accept(&a, &url, &[(&bn, &bv)], "app.example.com", APP);
        assert_eq!(r.status, 400);
        assert!(set_cookie(&r, "_pomerium").is_none());
        assert!(String::from_utf8_lossy(&r.body).contains("href=\"https://app.example.com/\""));
    }
    // Retrying is simple: a new sign-in from the route host gets a new hand-off (AUTH has a session).
    let auth_cookie = set_cookie(&cb, "_pomerium").unwrap();
    let (link, (bn2, bv2)) = start(&a, APP, "https://app.example.com/");
    let again = location(&run(&a, &req(&link, &[("_pomerium", &auth_cookie)])));
    assert_ne!(again, url);
    assert_eq!(
        location(&accept(&a, &again, &[(&bn2, &bv2)], "app.example.com", APP)),
        "https://app.example.com/"
    );
}

#[test]
fn two_tabs_signing_in_at_once_both_succeed() {
    let (a, idp) = setup();
    // Both tabs' first requests leave before either response: neither browser request carries a binding yet.
    let (link1, (n1, v1)) = start(&a, APP, "https://app.example.com/one");
    let (link2, (n2, v2)) = start(&a, APP, "https://app.example.com/two");
    assert_ne!(n1, n2, "each sign-in has its own cookie name");
    let jar = [(n1.as_str(), v1.as_str()), (n2.as_str(), v2.as_str())];
    let cb1 = sign_in_at_idp(&a, &idp, &link1, claims);
    let auth_cookie = set_cookie(&cb1, "_pomerium").unwrap();
    let h2 = location(&run(&a, &req(&link2, &[("_pomerium", &auth_cookie)])));
    // Tab 2 finishes first, then tab 1: both are accepted.
    assert_eq!(
        location(&accept(&a, &h2, &jar, "app.example.com", APP)),
        "https://app.example.com/two"
    );
    assert_eq!(
        location(&accept(
            &a,
            &location(&cb1),
            &jar[..1],
            "app.example.com",
            APP
        )),
        "https://app.example.com/one"
    );
}

#[test]
fn binding_cookies_stay_few() {
    let (a, _idp) = setup();
    let held: Vec<(String, String)> = (0..MAX_BINDINGS)
        .map(|i| {
            (
                format!("__Host-_pomerium_bind_aaaaa{i}"),
                format!("{i}").repeat(22),
            )
        })
        .collect();
    let cookies: Vec<(&str, &str)> = held.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    // Below the cap a new one is made; at the cap the first is reused and no cookie is added.
    let r = a.sign_in_redirect(&req(APP, &cookies[..MAX_BINDINGS - 1]), APP, APP);
    assert_eq!(binding_of(&r).1.len(), 22);
    let r = a.sign_in_redirect(&req(APP, &cookies), APP, APP);
    assert!(r.headers.get("set-cookie").is_none());
    assert_eq!(
        query(&location(&r))["pomerium_bind"],
        binding_hash(&held[0].1)
    );
}

#[test]
fn callback_refusals() {
    let (a, idp) = setup();
    let (sign_in, _) = start(&a, APP, "https://app.example.com/");
    let r = run(&a, &req(&sign_in, &[]));
    let q = query(&location(&r));
    let csrf = set_cookie(&r, "__Host-_pomerium_csrf").unwrap();
    let cb = |extra: &str| format!("{AUTH}/oauth2/callback?state={}{extra}", enc(&q["state"]));
    // State from another browser (no or another binding cookie).
    for cookies in [vec![], vec![("__Host-_pomerium_csrf", "x".repeat(43))]] {
        let c: Vec<(&str, &str)> = cookies.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let r = run(&a, &req(&cb("&code=c"), &c));
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("href=\"https://app.example.com/\""));
    }
    // No or altered state.
    assert_eq!(
        run(
            &a,
            &req(
                &format!("{AUTH}/oauth2/callback?code=c"),
                &[("__Host-_pomerium_csrf", &csrf)]
            )
        )
        .status,
        400
    );
    let altered = cb("&code=c").replace("state=A", "state=B");
    assert_eq!(
        run(&a, &req(&altered, &[("__Host-_pomerium_csrf", &csrf)])).status,
        400
    );
    // The IdP says no.
    let r = run(
        &a,
        &req(
            &cb("&error=access_denied&error_description=nope"),
            &[("__Host-_pomerium_csrf", &csrf)],
        ),
    );
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("access_denied"));
    let r = run(
        &a,
        &req(
            &cb("&error=x&error_description=%3Cscript%3Ehttps%3A%2F%2Fevil"),
            &[("__Host-_pomerium_csrf", &csrf)],
        ),
    );
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        !body.contains("script>") && !body.contains("https://evil"),
        "{body}"
    );
    // Unknown code: the token endpoint refuses -> 400; wrong nonce in the token -> 400.
    assert_eq!(
        run(
            &a,
            &req(&cb("&code=unknown"), &[("__Host-_pomerium_csrf", &csrf)])
        )
        .status,
        400
    );
    idp.tokens.borrow_mut().insert(
        "c2".into(),
        forge::forged_rs256("k1", &claims("another-nonce")),
    );
    let r = run(
        &a,
        &req(&cb("&code=c2"), &[("__Host-_pomerium_csrf", &csrf)]),
    );
    assert_eq!(r.status, 400);
    assert!(set_cookie(&r, "_pomerium").is_none());
    // No email claim.
    idp.tokens.borrow_mut().insert(
        "c3".into(),
        forge::forged_rs256(
            "k1",
            &json!({"iss": fake::ISSUER,
        "aud": "postern-client", "exp": crate::clock::now_secs() + 60, "iat": crate::clock::now_secs(), "nonce": q["nonce"]}),
        ),
    );
    assert_eq!(
        run(
            &a,
            &req(&cb("&code=c3"), &[("__Host-_pomerium_csrf", &csrf)])
        )
        .status,
        400
    );
}

#[test]
fn idp_down_gives_502_and_is_retried() {
    let (a, idp) = setup();
    idp.discovery_fails.set(true);
    let (sign_in, _) = start(&a, APP, "https://app.example.com/p");
    let r = run(&a, &req(&sign_in, &[]));
    assert_eq!(r.status, 502);
    assert!(String::from_utf8_lossy(&r.body).contains("https://app.example.com/p"));
    idp.discovery_fails.set(false);
    assert_eq!(run(&a, &req(&sign_in, &[])).status, 302);
}

#[test]
fn unverified_email_gets_a_session_marked_unverified() {
    // B12: the session records email_verified = false; the route verdict then denies with "email not verified".
    let (a, idp) = setup();
    for (v, want) in [
        (json!(false), false),
        (json!("false"), false),
        (json!("true"), true),
    ] {
        let (sign_in, _) = start(&a, APP, "https://app.example.com/");
        let cb = sign_in_at_idp(&a, &idp, &sign_in, |n| {
            let mut c = claims(n);
            c["email_verified"] = v.clone();
            c
        });
        let auth_cookie = set_cookie(&cb, "_pomerium").unwrap();
        let s = a
            .session(
                &req(AUTH, &[("_pomerium", &auth_cookie)]),
                "auth.example.com",
            )
            .unwrap();
        assert_eq!(s.email_verified, want, "{v}");
    }
}

/// A full sign-in to APP: (route-host cookie, AUTH cookie, the route host's session).
fn signed_in(a: &Authn, idp: &FakeIdp) -> (String, String, Session) {
    let (sign_in, (bn, bv)) = start(a, APP, "https://app.example.com/");
    let cb = sign_in_at_idp(a, idp, &sign_in, claims);
    let auth_cookie = set_cookie(&cb, "_pomerium").unwrap();
    let h = accept(a, &location(&cb), &[(&bn, &bv)], "app.example.com", APP);
    let host_cookie = set_cookie(&h, "_pomerium").unwrap();
    let s = a
        .session(&req(APP, &[("_pomerium", &host_cookie)]), "app.example.com")
        .unwrap();
    (host_cookie, auth_cookie, s)
}

fn body(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[test]
fn same_origin_table() {
    let cases: &[(&[(&str, &str)], bool)] = &[
        (&[("origin", APP)], true),
        (&[("origin", "HTTPS://APP.EXAMPLE.COM")], true),
        (&[("origin", "https://app.example.com:443")], false),
        (&[("origin", "http://app.example.com")], false),
        (&[("origin", "https://evil.example.net")], false),
        (&[("origin", "null")], false),
        // Origin decides even when the other headers would say yes.
        (
            &[
                ("origin", "https://evil.example.net"),
                ("sec-fetch-site", "same-origin"),
            ],
            false,
        ),
        (&[("sec-fetch-site", "same-origin")], true),
        (&[("sec-fetch-site", "same-site")], false),
        (
            &[
                ("sec-fetch-site", "cross-site"),
                ("referer", "https://app.example.com/x"),
            ],
            false,
        ),
        (&[("referer", "https://app.example.com/.pomerium/")], true),
        (
            &[("referer", "https://app.example.com.evil.example.net/")],
            false,
        ),
        (&[("referer", "not a url")], false),
        (&[], false),
    ];
    for (headers, want) in cases {
        let mut r = req(APP, &[]);
        for (n, v) in *headers {
            r.head.headers.append(n, *v);
        }
        assert_eq!(same_origin(&r, APP).is_ok(), *want, "{headers:?}");
    }
}

#[test]
fn sign_out_get_only_asks_and_foreign_posts_are_refused() {
    // An <img src=".../.pomerium/sign_out"> or a cross-site form must not sign anyone out.
    let (a, idp) = setup();
    let (host_cookie, _auth_cookie, _) = signed_in(&a, &idp);
    let mine = [("_pomerium", host_cookie.as_str())];
    let url = format!("{APP}/.pomerium/sign_out");
    let r = a.sign_out(&req(&url, &mine), "app.example.com", APP);
    assert_eq!(r.status, 200);
    assert!(
        body(&r).contains("<form method=\"post\" action=\"/.pomerium/sign_out\">"),
        "{}",
        body(&r)
    );
    assert!(r.headers.get("set-cookie").is_none());
    for origin in [None, Some("https://evil.example.net"), Some("null")] {
        let r = a.sign_out(&post(&url, origin, &mine), "app.example.com", APP);
        assert_eq!(r.status, 403, "{origin:?}");
        assert!(r.headers.get("set-cookie").is_none());
        assert!(
            body(&r).contains("method=\"post\""),
            "the 403 page offers the real sign-out"
        );
    }
    assert!(a.session(&req(APP, &mine), "app.example.com").is_some());
}

#[test]
fn sign_out_revokes_every_session_of_the_sign_in() {
    let (a, idp) = setup();
    let (host_cookie, auth_cookie, s) = signed_in(&a, &idp);
    // A hand-off minted before the sign-out (e.g. captured) must not bring the session back.
    let (link, (bn, bv)) = start(&a, APP, "https://app.example.com/");
    let pending = location(&run(&a, &req(&link, &[("_pomerium", &auth_cookie)])));
    // Route host: a POST from its own page. The cookie is cleared, then a signed link to AUTH naming the session.
    let r = a.sign_out(
        &post(
            &format!(
                "{APP}/.pomerium/sign_out?pomerium_redirect_uri={}",
                enc("https://evil.example.net/")
            ),
            Some(APP),
            &[("_pomerium", &host_cookie)],
        ),
        "app.example.com",
        APP,
    );
    assert_eq!(r.status, 303);
    assert_eq!(set_cookie(&r, "_pomerium").as_deref(), Some(""));
    let l = r.headers.get("location").unwrap().to_owned();
    assert!(
        l.starts_with("https://auth.example.com/.pomerium/sign_out?"),
        "{l}"
    );
    let q = query(&l);
    // A foreign return URL is replaced by this origin's front page.
    assert_eq!(q["pomerium_redirect_uri"], "https://app.example.com/");
    assert_eq!(q["pomerium_sid"], binding_hash(&s.id));
    // The copied cookie values are dead at once, on the route host and on AUTH (one shared id).
    assert!(a
        .session(&req(APP, &[("_pomerium", &host_cookie)]), "app.example.com")
        .is_none());
    assert!(a
        .session(
            &req(AUTH, &[("_pomerium", &auth_cookie)]),
            "auth.example.com"
        )
        .is_none());
    let r = accept(&a, &pending, &[(&bn, &bv)], "app.example.com", APP);
    assert_eq!(r.status, 400);
    assert!(set_cookie(&r, "_pomerium").is_none());
    // AUTH, reached by that redirect: signs out and shows "signed out" with a way to sign in again.
    let r = run(&a, &req(&l, &[("_pomerium", &auth_cookie)]));
    assert_eq!(r.status, 200);
    assert!(body(&r).contains("Signed out"));
    assert!(
        body(&r).contains("href=\"https://app.example.com/\">Sign in again"),
        "{}",
        body(&r)
    );
    assert_eq!(set_cookie(&r, "_pomerium").as_deref(), Some(""));
    assert_eq!(set_cookie(&r, "_pomerium_signedout").as_deref(), Some("1"));
    // AUTH with the revoked cookie starts a real sign-in; the marker makes the IdP show its login form.
    let (sign_in, _) = start(&a, APP, "https://app.example.com/");
    let r = run(
        &a,
        &req(
            &sign_in,
            &[("_pomerium", &auth_cookie), ("_pomerium_signedout", "1")],
        ),
    );
    let idp_url = location(&r);
    assert!(
        idp_url.starts_with("https://idp.example.com/auth?"),
        "{idp_url}"
    );
    assert_eq!(
        query(&idp_url).get("prompt").map(String::as_str),
        Some("login")
    );
    let r = run(&a, &req(&sign_in, &[]));
    assert_eq!(query(&location(&r)).get("prompt"), None);
    // A new sign-in gets a new id, which the old revocation does not touch.
    let (_, _, s2) = signed_in(&a, &idp);
    assert_ne!(s2.id, s.id);
}

#[test]
fn auth_sign_out_needs_its_own_link_or_its_own_page() {
    let (a, idp) = setup();
    let (_, auth_cookie, _) = signed_in(&a, &idp);
    let mine = [("_pomerium", auth_cookie.as_str())];
    let alive = |a: &Authn| a.session(&req(AUTH, &mine), "auth.example.com").is_some();
    // Unsigned, or a signed link naming another session (anyone can get one by signing out themselves): ask.
    let other = a.signed_link(
        SIGN_OUT_PATH,
        Purpose::SignOut,
        "https://app.example.com/",
        &binding_hash("x"),
    );
    let unnamed = a.signed_link(
        SIGN_OUT_PATH,
        Purpose::SignOut,
        "https://app.example.com/",
        "",
    );
    let unsigned = format!(
        "{AUTH}/.pomerium/sign_out?pomerium_redirect_uri={}",
        enc("https://evil.example.net/")
    );
    for url in [&other, &unnamed, &unsigned] {
        let r = run(&a, &req(url, &mine));
        assert_eq!(r.status, 200, "{url}");
        assert!(body(&r).contains("method=\"post\""), "{url}");
        assert!(!body(&r).contains("evil"), "{url}");
        assert!(r.headers.get("set-cookie").is_none(), "{url}");
        assert!(alive(&a));
    }
    // A POST from another site: 403.
    let r = run(&a, &post(&unsigned, Some("https://app.example.com"), &mine));
    assert_eq!(r.status, 403);
    assert!(alive(&a));
    // A POST from AUTH's own page (the confirmation, or the user page): signed out; "sign in again" is AUTH's.
    let r = run(
        &a,
        &post(&format!("{AUTH}/.pomerium/sign_out"), Some(AUTH), &mine),
    );
    assert_eq!(r.status, 200);
    assert!(
        body(&r).contains("href=\"https://auth.example.com/.pomerium/sign_in\""),
        "{}",
        body(&r)
    );
    assert_eq!(set_cookie(&r, "_pomerium").as_deref(), Some(""));
    assert!(!alive(&a));
    // Once signed out, the unsigned GET just says so.
    let r = run(&a, &req(&unsigned, &mine));
    assert!(body(&r).contains("Signed out"));
}

#[test]
fn binding_cookie_is_reused_across_tabs() {
    let (a, _idp) = setup();
    let (sign_in, _) = start(&a, APP, "https://app.example.com/");
    let first = set_cookie(&run(&a, &req(&sign_in, &[])), "__Host-_pomerium_csrf").unwrap();
    let second = set_cookie(
        &run(&a, &req(&sign_in, &[("__Host-_pomerium_csrf", &first)])),
        "__Host-_pomerium_csrf",
    )
    .unwrap();
    assert_eq!(first, second);
}

#[test]
fn cookie_domain_shares_one_session() {
    let idp = FakeIdp::new(json!({"keys": [forge::rsa_jwk("k1")]}));
    let mut s = settings_for(&idp);
    s.cookie.domain = Some("example.com".into());
    let a = Authn::new(s).unwrap();
    let (sign_in, _) = start(&a, APP, "https://app.example.com/");
    let cb = sign_in_at_idp(&a, &idp, &sign_in, claims);
    let c = set_cookie(&cb, "_pomerium").unwrap();
    assert!(cb
        .headers
        .get_all("set-cookie")
        .any(|v| v.contains("Domain=example.com")));
    assert!(a
        .session(&req(APP, &[("_pomerium", &c)]), "app.example.com")
        .is_some());
}

#[test]
fn paths_and_settings() {
    let (a, _idp) = setup();
    assert_eq!(run(&a, &req(&format!("{AUTH}/other"), &[])).status, 404);
    assert_eq!(
        target_path("https://auth.example.com/oauth2/callback?x"),
        "/oauth2/callback"
    );
    assert_eq!(target_path("/.pomerium/sign_in?x#y"), "/.pomerium/sign_in");
    assert_eq!(query_param("/p?a=1&a=2&b=%41", "a").as_deref(), Some("1"));
    assert_eq!(query_param("/p?b=%41#frag", "b").as_deref(), Some("A"));
    let mut s = settings();
    s.authenticate_url = Url::parse("mailto:x@example.com").unwrap();
    assert!(Authn::new(s).is_err());
    let mut s = settings();
    s.authenticate_url = Url::parse("https://Auth.Example.com:8443/ignored").unwrap();
    let a = Authn::new(s).unwrap();
    assert_eq!(a.auth_authority, "auth.example.com:8443");
}

#[test]
fn many_policy_groups_still_fit_every_cookie() {
    // B06: 200 groups of ~100 characters, all named by the policy.
    let groups: Vec<String> = (0..200)
        .map(|i| format!("group-{i:03}-{}", "x".repeat(90)))
        .collect();
    let idp = FakeIdp::new(json!({"keys": [forge::rsa_jwk("k1")]}));
    let mut s = settings_for(&idp);
    s.policy_groups = groups.iter().cloned().collect();
    let a = Authn::new(s).unwrap();
    let (sign_in, (bn, bv)) = start(&a, APP, "https://app.example.com/");
    let cb = sign_in_at_idp(&a, &idp, &sign_in, |n| {
        let mut c = claims(n);
        c["groups"] = json!(groups);
        c
    });
    assert!(cb.headers.get_all("set-cookie").all(|c| c.len() <= 4096));
    let h = accept(&a, &location(&cb), &[(&bn, &bv)], "app.example.com", APP);
    assert!(h.headers.get_all("set-cookie").all(|c| c.len() <= 4096));
    let c = set_cookie(&h, "_pomerium").unwrap();
    let session = a
        .session(&req(APP, &[("_pomerium", &c)]), "app.example.com")
        .unwrap();
    assert!(!session.groups.is_empty() && session.groups[0] == groups[0]);
}

#[test]
fn the_policys_groups_survive_when_a_cookie_must_shed_groups() {
    // 200 long groups the policy does not name, and the one it does name sent last by the IdP.
    let mut groups: Vec<String> = (0..200)
        .map(|i| format!("other-{i:03}-{}", "x".repeat(90)))
        .collect();
    groups.push("admins".into());
    let idp = FakeIdp::new(json!({"keys": [forge::rsa_jwk("k1")]}));
    let a = Authn::new(settings_for(&idp)).unwrap();
    let (sign_in, (bn, bv)) = start(&a, APP, "https://app.example.com/");
    let cb = sign_in_at_idp(&a, &idp, &sign_in, |n| {
        let mut c = claims(n);
        c["groups"] = json!(groups);
        c
    });
    let h = accept(&a, &location(&cb), &[(&bn, &bv)], "app.example.com", APP);
    let c = set_cookie(&h, "_pomerium").unwrap();
    assert!(c.len() <= 4096);
    let session = a
        .session(&req(APP, &[("_pomerium", &c)]), "app.example.com")
        .unwrap();
    assert_eq!(session.groups.first().map(String::as_str), Some("admins"));
    assert!(session.groups.len() < groups.len());
}
