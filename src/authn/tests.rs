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
    assert_eq!(r.status, 302, "{}", String::from_utf8_lossy(&r.body));
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
    let csrf = set_cookie(&r, "_pomerium_csrf").unwrap();
    assert_eq!(csrf.len(), 43);
    idp.tokens.borrow_mut().insert(
        "code-1".into(),
        forge::forged_rs256("k1", &claims_for(&q["nonce"])),
    );
    let cb = format!(
        "{AUTH}/oauth2/callback?code=code-1&state={}",
        enc(&q["state"])
    );
    run(a, &req(&cb, &[("_pomerium_csrf", &csrf)]))
}

#[test]
fn full_flow_route_host_to_idp_and_back() {
    let (a, idp) = setup();
    // 1. Route host without a session.
    let r = a.sign_in_redirect(APP, "https://app.example.com/x?y=1");
    let sign_in = location(&r);
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
    assert_eq!(set_cookie(&cb, "_pomerium_csrf").as_deref(), Some(""));
    assert!(cb.headers.get_all("set-cookie").all(|c| c.len() <= 4096));
    let auth_session = a
        .session(
            &req(AUTH, &[("_pomerium", &auth_cookie)]),
            "auth.example.com",
        )
        .unwrap();
    assert_eq!(auth_session.email, "Alice@Example.com");
    assert_eq!(auth_session.groups, vec!["admins"]);
    // AUTH's cookie is no good on the route host.
    assert!(a
        .session(&req(APP, &[("_pomerium", &auth_cookie)]), "app.example.com")
        .is_none());
    // 5. Route host accepts the hand-off and sets its own cookie.
    let h = a.handoff(&req(&handoff_url, &[]), "app.example.com", APP);
    assert_eq!(location(&h), "https://app.example.com/x?y=1");
    let host_cookie = set_cookie(&h, "_pomerium").unwrap();
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
    let max_age = h.headers.get("set-cookie").unwrap();
    assert!(
        max_age.contains("HttpOnly; Secure; SameSite=Lax") && max_age.contains("Path=/"),
        "{max_age}"
    );
    // 6. A second route host: AUTH has a session, so no IdP round trip.
    let before = idp.seen.borrow().len();
    let r = a.sign_in_redirect(
        "https://other.example.com:8443",
        "https://other.example.com:8443/",
    );
    let r = run(&a, &req(&location(&r), &[("_pomerium", &auth_cookie)]));
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
        assert_eq!(a.handoff(&req(&l, &[]), host, origin).status, 400);
    }
    assert_eq!(
        location(&a.handoff(
            &req(&l, &[]),
            "other.example.com:8443",
            "https://other.example.com:8443"
        )),
        "https://other.example.com:8443/"
    );
}

#[test]
fn sign_in_links_must_be_signed_fresh_and_for_our_hosts() {
    let (a, _idp) = setup();
    let good = location(&a.sign_in_redirect(APP, "https://app.example.com/"));
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
    ];
    for t in tampered {
        assert_eq!(run(&a, &req(&t, &[])).status, 400, "{t}");
    }
    // Expired link (issued long ago, properly signed).
    let issued = crate::clock::now_secs() - LINK_SECS - LEEWAY_SECS - 1;
    let url = "https://app.example.com/";
    let sig = URL_SAFE_NO_PAD.encode(a.link_mac(Purpose::SignIn, url, issued).as_ref());
    let old = format!("{AUTH}/.pomerium/sign_in?pomerium_redirect_uri={}&pomerium_issued={issued}&pomerium_sig={sig}", enc(url));
    assert_eq!(run(&a, &req(&old, &[])).status, 400);
    // A sign-out MAC is not a sign-in MAC.
    let out = location(&a.sign_out(&req(APP, &[]), APP))
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
        let link = a.signed_link(SIGN_IN_PATH, Purpose::SignIn, target);
        let r = run(&a, &req(&link, &[]));
        assert_eq!(r.status, 400, "{target:?}");
        assert!(r.headers.get("location").is_none());
    }
    // The route host side also refuses to put a foreign URL in a sign-in link.
    let l = location(&a.sign_in_redirect(APP, "https://evil.example.net/"));
    assert_eq!(
        query(&l)["pomerium_redirect_uri"],
        "https://app.example.com/"
    );
}

#[test]
fn handoff_refusals() {
    let (a, _idp) = setup();
    let s = Session {
        email: "a@example.com".into(),
        email_verified: true,
        name: None,
        groups: vec![],
        issued: crate::clock::now_secs(),
        expires: crate::clock::now_secs() + 3600,
    };
    // A hand-off whose target is on another origin than the host it is sealed for.
    let h = Handoff {
        session: s.clone(),
        target: "https://evil.example.net/".into(),
    };
    let tok = a
        .shared_sealer
        .seal(
            Purpose::Handoff,
            "app.example.com",
            crate::clock::now_secs() + 60,
            &serde_json::to_vec(&h).unwrap(),
        )
        .unwrap();
    let r = a.handoff(
        &req(
            &format!("{APP}/.pomerium/callback?pomerium_handoff={tok}"),
            &[],
        ),
        "app.example.com",
        APP,
    );
    assert_eq!(r.status, 400);
    // Expired hand-off, garbage, missing, and a session cookie offered as a hand-off.
    let h = Handoff {
        session: s.clone(),
        target: format!("{APP}/"),
    };
    let old = a
        .shared_sealer
        .seal(
            Purpose::Handoff,
            "app.example.com",
            crate::clock::now_secs() - 1000,
            &serde_json::to_vec(&h).unwrap(),
        )
        .unwrap();
    let cookie = session::seal_session(&a.cookie_sealer, "app.example.com", &s).unwrap();
    for t in [old.as_str(), "garbage", "", cookie.as_str()] {
        let r = a.handoff(
            &req(
                &format!("{APP}/.pomerium/callback?pomerium_handoff={t}"),
                &[],
            ),
            "app.example.com",
            APP,
        );
        assert_eq!(r.status, 400, "{t}");
        assert!(set_cookie(&r, "_pomerium").is_none());
    }
    assert_eq!(
        a.handoff(
            &req(&format!("{APP}/.pomerium/callback"), &[]),
            "app.example.com",
            APP
        )
        .status,
        400
    );
}

#[test]
fn callback_refusals() {
    let (a, idp) = setup();
    let sign_in = location(&a.sign_in_redirect(APP, "https://app.example.com/"));
    let r = run(&a, &req(&sign_in, &[]));
    let q = query(&location(&r));
    let csrf = set_cookie(&r, "_pomerium_csrf").unwrap();
    let cb = |extra: &str| format!("{AUTH}/oauth2/callback?state={}{extra}", enc(&q["state"]));
    // State from another browser (no or another binding cookie).
    for cookies in [vec![], vec![("_pomerium_csrf", "x".repeat(43))]] {
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
                &[("_pomerium_csrf", &csrf)]
            )
        )
        .status,
        400
    );
    let altered = cb("&code=c").replace("state=A", "state=B");
    assert_eq!(
        run(&a, &req(&altered, &[("_pomerium_csrf", &csrf)])).status,
        400
    );
    // The IdP says no.
    let r = run(
        &a,
        &req(
            &cb("&error=access_denied&error_description=nope"),
            &[("_pomerium_csrf", &csrf)],
        ),
    );
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("access_denied"));
    let r = run(
        &a,
        &req(
            &cb("&error=x&error_description=%3Cscript%3Ehttps%3A%2F%2Fevil"),
            &[("_pomerium_csrf", &csrf)],
        ),
    );
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        !body.contains("script>") && !body.contains("https://evil"),
        "{body}"
    );
    // Unknown code: the token endpoint refuses -> 400; wrong nonce in the token -> 400.
    assert_eq!(
        run(&a, &req(&cb("&code=unknown"), &[("_pomerium_csrf", &csrf)])).status,
        400
    );
    idp.tokens.borrow_mut().insert(
        "c2".into(),
        forge::forged_rs256("k1", &claims("another-nonce")),
    );
    let r = run(&a, &req(&cb("&code=c2"), &[("_pomerium_csrf", &csrf)]));
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
        run(&a, &req(&cb("&code=c3"), &[("_pomerium_csrf", &csrf)])).status,
        400
    );
}

#[test]
fn idp_down_gives_502_and_is_retried() {
    let (a, idp) = setup();
    idp.discovery_fails.set(true);
    let sign_in = location(&a.sign_in_redirect(APP, "https://app.example.com/p"));
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
        let sign_in = location(&a.sign_in_redirect(APP, "https://app.example.com/"));
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

#[test]
fn sign_out_then_next_sign_in_asks_the_idp_to_log_in() {
    let (a, _idp) = setup();
    // Route host: cookie cleared, signed link to AUTH; a foreign return URL is replaced by this origin's front page.
    let r = a.sign_out(
        &req(
            &format!(
                "{APP}/.pomerium/sign_out?pomerium_redirect_uri={}",
                enc("https://evil.example.net/")
            ),
            &[],
        ),
        APP,
    );
    assert_eq!(set_cookie(&r, "_pomerium").as_deref(), Some(""));
    let l = location(&r);
    assert!(l.starts_with("https://auth.example.com/.pomerium/sign_out?"));
    assert_eq!(
        query(&l)["pomerium_redirect_uri"],
        "https://app.example.com/"
    );
    // AUTH: cookie cleared, marker set, back to the app (which will start a sign-in).
    let r = run(&a, &req(&l, &[]));
    assert_eq!(location(&r), "https://app.example.com/");
    assert_eq!(set_cookie(&r, "_pomerium").as_deref(), Some(""));
    assert_eq!(set_cookie(&r, "_pomerium_signedout").as_deref(), Some("1"));
    // An unsigned sign-out still signs out, but shows a page instead of following the link.
    let r = run(
        &a,
        &req(
            &format!(
                "{AUTH}/.pomerium/sign_out?pomerium_redirect_uri={}",
                enc("https://evil.example.net/")
            ),
            &[],
        ),
    );
    assert_eq!(r.status, 200);
    assert!(r.headers.get("location").is_none());
    assert!(!String::from_utf8_lossy(&r.body).contains("evil"));
    assert_eq!(set_cookie(&r, "_pomerium").as_deref(), Some(""));
    // Next sign-in: prompt=login.
    let sign_in = location(&a.sign_in_redirect(APP, "https://app.example.com/"));
    let r = run(&a, &req(&sign_in, &[("_pomerium_signedout", "1")]));
    assert_eq!(
        query(&location(&r)).get("prompt").map(String::as_str),
        Some("login")
    );
    let r = run(&a, &req(&sign_in, &[]));
    assert_eq!(query(&location(&r)).get("prompt"), None);
}

#[test]
fn binding_cookie_is_reused_across_tabs() {
    let (a, _idp) = setup();
    let sign_in = location(&a.sign_in_redirect(APP, "https://app.example.com/"));
    let first = set_cookie(&run(&a, &req(&sign_in, &[])), "_pomerium_csrf").unwrap();
    let second = set_cookie(
        &run(&a, &req(&sign_in, &[("_pomerium_csrf", &first)])),
        "_pomerium_csrf",
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
    let sign_in = location(&a.sign_in_redirect(APP, "https://app.example.com/"));
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
    let sign_in = location(&a.sign_in_redirect(APP, "https://app.example.com/"));
    let cb = sign_in_at_idp(&a, &idp, &sign_in, |n| {
        let mut c = claims(n);
        c["groups"] = json!(groups);
        c
    });
    assert!(cb.headers.get_all("set-cookie").all(|c| c.len() <= 4096));
    let h = a.handoff(&req(&location(&cb), &[]), "app.example.com", APP);
    assert!(h.headers.get_all("set-cookie").all(|c| c.len() <= 4096));
    let c = set_cookie(&h, "_pomerium").unwrap();
    let session = a
        .session(&req(APP, &[("_pomerium", &c)]), "app.example.com")
        .unwrap();
    assert!(!session.groups.is_empty() && session.groups[0] == groups[0]);
}
