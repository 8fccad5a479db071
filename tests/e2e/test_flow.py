"""postern end to end: real IdP login form, real redirects, real httpbin behind it, TLS by postern itself.

Each test names the behaviour of issue 2 it checks. A fresh `browser` has no cookies; `alice` is a browser
already signed in on the httpbin route (shared, so tests using it must not sign out).
"""

from __future__ import annotations

import html
import json
import re
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest

import harness
from conftest import ALICE, BOB, CAROL, MALLORY, new_browser

COOKIE = "_pomerium"
JSON = {"Accept": "application/json"}


def get(session, url: str, **kw):
    return session.get(url, allow_redirects=False, timeout=harness.HTTP_TIMEOUT, **kw)


def host_of(url: str | None) -> str:
    return urlsplit(url or "").hostname or ""


def assert_goes_to_login(session, stack, url: str, what: str, prompt: str | None = None) -> None:
    """The request is sent to the authenticate host's sign-in, and from there on to the IdP."""
    r = get(session, url)
    assert r.status_code == 302, f"{what}: expected a redirect to sign-in, got {r.status_code}: {r.text[:300]}"
    loc = urljoin(url, r.headers["Location"])
    assert host_of(loc) == stack.postern.auth_host, f"{what}: redirect to {loc}, not to the authenticate host"
    assert urlsplit(loc).path == "/.pomerium/sign_in", f"{what}: redirect to {loc}"
    r2 = get(session, loc)
    assert r2.status_code in (302, 303), f"{what}: sign-in answered {r2.status_code}: {r2.text[:300]}"
    idp = urljoin(loc, r2.headers["Location"])
    assert idp.startswith(stack.idp_url + "/"), f"{what}: sign-in sent the browser to {idp}, not the IdP"
    q = parse_qs(urlsplit(idp).query)
    assert q.get("client_id") == [stack.postern.env["IDP_CLIENT_ID"]], idp
    assert q.get("code_challenge_method") == ["S256"] and q.get("code_challenge"), f"no PKCE S256: {idp}"
    assert q.get("state") and q.get("nonce"), f"no state or nonce: {idp}"
    assert q.get("redirect_uri") == [stack.postern.url("auth", "/oauth2/callback")], idp
    if prompt:
        assert q.get("prompt") == [prompt], f"{what}: the IdP is not asked for prompt={prompt}: {idp}"


def route_cookies(session, host: str) -> dict[str, str]:
    return {c.name: c.value for c in session.cookies if c.domain.lstrip(".") == host}


def is_handoff(url: str) -> bool:
    return urlsplit(url).path == "/.pomerium/callback"


def sign_in_until_handoff(session, url: str, email: str) -> str:
    """A real sign-in as `email` from `url` (like harness.login), stopped before the route host's hand-off:
    returns the `/.pomerium/callback?pomerium_handoff=...` URL, not yet used."""
    walk = harness.Walk()
    method, target, data = "GET", url, None
    for _ in range(4):
        harness.follow(session, method, target, data=data, walk=walk, stop=is_handoff,
                       max_hops=harness.MAX_HOPS - len(walk.hops))
        last = walk.hops[-1]
        if last.location and is_handoff(urljoin(last.url, last.location)):
            return urljoin(last.url, last.location)
        page = walk.response
        form = next((f for f in harness.parse_forms(page.text) if f["fields"].get("prompt") in ("login", "consent")),
                    None)
        assert form is not None, f"no IdP form and no hand-off:\n{walk.trace()}\n{page.text[:1000]}"
        fields = {k: v for k, v in form["fields"].items() if form["types"].get(k) != "submit"}
        if form["fields"].get("prompt") == "login":
            fields["login"], fields["password"] = email, "any password works"
        method, target, data = form["method"].upper(), urljoin(last.url, form["action"]), fields
    raise AssertionError(f"no hand-off reached:\n{walk.trace()}")


def binding_cookies(session, host: str) -> dict[str, str]:
    return {n: v for n, v in route_cookies(session, host).items() if n.startswith("__Host-" + COOKIE + "_bind_")}


def post_sign_out(session, stack, sub: str, origin: str | None = "own") -> harness.Walk:
    """POST /.pomerium/sign_out on `sub` as a form would (Origin: the host's own, another, or none), following
    redirects up to the final page."""
    headers = {} if origin is None else {"Origin": stack.postern.origin(sub) if origin == "own" else origin}
    return harness.follow(session, "POST", stack.postern.url(sub, "/.pomerium/sign_out"), data={}, headers=headers)


def log_text(stack) -> str:
    return stack.postern.proc.log.read_text(errors="replace")


# ---------------------------------------------------------------------------------------------------------------
# Allowed user reaches the app; what the app sees


def test_alice_reaches_httpbin_with_clean_headers(stack, alice):
    host = f"httpbin.{harness.TEST_DOMAIN}"
    alice.cookies.set("app_session", "kept-intact-42", domain=host, path="/")
    try:
        r = get(alice, stack.postern.url("httpbin", "/headers?show_env=1"),
                headers={"X-Pomerium-Claim-Email": "forged@evil.example", "X-Pomerium-Jwt-Assertion": "forged"})
    finally:
        alice.cookies.clear(host, "/", "app_session")
    assert r.status_code == 200, r.text[:500]
    seen = r.json()["headers"]
    lower = {k.lower(): v for k, v in seen.items()}
    assert "x-forwarded-for" in lower, seen
    assert "127.0.0.1" in lower["x-forwarded-for"], seen
    assert "forged" not in json.dumps(seen), f"a client-sent X-Pomerium-* header reached the app: {seen}"
    assert lower.get("x-pomerium-claim-email", ALICE) == ALICE, seen
    cookie = lower.get("cookie", "")
    assert "app_session=kept-intact-42" in cookie, f"the app's own cookie did not reach it intact: {seen}"
    assert "_pomerium" not in cookie, f"postern's cookie leaked upstream: {cookie}"
    # Host is the upstream's (preserve_host_header is off).
    assert lower["host"] == f"127.0.0.1:{stack.httpbin_port}", seen


def test_forwarded_proto_and_host(stack, alice):
    r = get(alice, stack.postern.url("httpbin", "/headers?show_env=1"))
    assert r.status_code == 200, r.text[:500]
    lower = {k.lower(): v for k, v in r.json()["headers"].items()}
    assert lower.get("x-forwarded-proto") == "https", lower
    assert lower.get("x-forwarded-host", "").split(":")[0] == f"httpbin.{harness.TEST_DOMAIN}", lower


def test_request_body_and_query_reach_httpbin(stack, alice):
    payload = {"n": 7, "text": "hello " * 1000}
    r = alice.post(stack.postern.url("httpbin", "/anything/x?q=1&q=2"), json=payload, allow_redirects=False,
                   timeout=harness.HTTP_TIMEOUT)
    assert r.status_code == 200, r.text[:500]
    echo = r.json()
    assert echo["json"] == payload
    assert echo["args"] == {"q": ["1", "2"]}
    assert echo["method"] == "POST"


def test_upstream_status_and_set_cookie_pass_through(stack, alice):
    r = get(alice, stack.postern.url("httpbin", "/status/418"))
    assert r.status_code == 418
    r = get(alice, stack.postern.url("httpbin", "/cookies/set?flavour=oat"))
    assert r.status_code == 302 and "flavour=oat" in r.headers.get("Set-Cookie", ""), r.headers


def test_es256_id_token_login(es256, browser):
    """A second postern whose IdP client signs id_tokens with ES256: the login works the same."""
    walk = harness.login(browser, es256.url("httpbin", "/get"), ALICE)
    assert walk.response.status_code == 200, walk.trace()
    assert walk.response.json()["url"].endswith("/get")


# ---------------------------------------------------------------------------------------------------------------
# Denied, unknown, unverified, groups, domains


def test_bob_gets_403_naming_bob(stack, browser):
    walk = harness.login(browser, stack.postern.url("httpbin", "/get"), BOB)
    r = walk.response
    assert r.status_code == 403, walk.trace()
    assert BOB in r.text, f"the 403 page does not say who is signed in: {r.text[:1000]}"
    assert f"httpbin.{harness.TEST_DOMAIN}" in r.text, "the 403 page does not name the host"
    assert "sign_out" in r.text, "the 403 page has no sign-out link to switch account"
    # One click: the 403 page holds the sign-out form itself (a POST from the host's own page).
    form = next((f for f in harness.parse_forms(r.text) if "sign_out" in f["action"]), None)
    assert form is not None and form["method"] == "post", r.text[:1000]
    out = harness.follow(browser, "POST", urljoin(walk.hops[-1].url, form["action"]), data={},
                         headers={"Origin": stack.postern.origin("httpbin")})
    assert out.response.status_code == 200 and "Signed out" in out.response.text, out.trace()
    assert_goes_to_login(browser, stack, stack.postern.url("httpbin", "/get"), "after sign-out from the 403 page",
                         prompt="login")


def test_unknown_host_gets_404_naming_it(stack, browser):
    r = get(browser, stack.postern.url("nothere", "/some/path"))
    assert r.status_code == 404, r.text[:500]
    assert f"nothere.{harness.TEST_DOMAIN}" in r.text, r.text[:1000]
    assert "Location" not in r.headers


def test_mallory_unverified_email_is_refused(stack, browser):
    walk = harness.login(browser, stack.postern.url("domain", "/get"), MALLORY)
    r = walk.response
    assert r.status_code == 403, walk.trace()
    assert re.search(r"not verified|unverified", r.text, re.I), f"403 does not say the email is unverified: {r.text[:1000]}"


def test_bob_passes_by_domain(stack, browser):
    walk = harness.login(browser, stack.postern.url("domain", "/get"), BOB)
    assert walk.response.status_code == 200, walk.trace()


def test_carol_passes_by_group(stack, browser):
    walk = harness.login(browser, stack.postern.url("staff", "/get"), CAROL)
    assert walk.response.status_code == 200, walk.trace()
    # Her user page lists the group (postern may keep only the groups its policy names; `staff` is one).
    me = get(browser, stack.postern.url("staff", "/.pomerium/"), headers=JSON)
    assert me.status_code == 200 and "staff" in json.dumps(me.json()), me.text[:500]
    # carol is not on the httpbin route's list; the session follows her there (auth host already signed in).
    r = harness.follow(browser, "GET", stack.postern.url("httpbin", "/get")).response
    assert r.status_code == 403 and CAROL in r.text, r.text[:500]


def test_carol_wrong_domain_refused(stack, browser):
    walk = harness.login(browser, stack.postern.url("domain", "/get"), CAROL)
    assert walk.response.status_code == 403, walk.trace()


def test_alice_not_in_staff_group(stack, browser):
    walk = harness.login(browser, stack.postern.url("staff", "/get"), ALICE)
    assert walk.response.status_code == 403, walk.trace()
    assert ALICE in walk.response.text


def test_second_route_reuses_the_authenticate_session(stack, browser):
    """Signed in once: another route host gets its session from the auth host without the IdP form."""
    harness.login(browser, stack.postern.url("httpbin", "/get"), ALICE)
    walk = harness.follow(browser, "GET", stack.postern.url("domain", "/get"))
    assert walk.response.status_code == 200, walk.trace()
    assert stack.idp_url.split("//")[1] not in [urlsplit(h.url).netloc for h in walk.hops], walk.trace()
    assert walk.hosts() == [f"domain.{harness.TEST_DOMAIN}", stack.postern.auth_host,
                            f"domain.{harness.TEST_DOMAIN}"], walk.trace()


# ---------------------------------------------------------------------------------------------------------------
# postern's own endpoints


def test_user_page_html_and_json(stack, alice):
    r = get(alice, stack.postern.url("httpbin", "/.pomerium/"))
    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith("text/html"), r.headers
    assert ALICE in r.text and "sign_out" in r.text, r.text[:1000]
    r = get(alice, stack.postern.url("httpbin", "/.pomerium/"), headers=JSON)
    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    body = r.json()
    text = json.dumps(body)
    assert ALICE in text and "Alice Example" in text, body


def test_ping_healthz_robots_without_login(stack, browser):
    for path in ("/ping", "/healthz"):
        r = get(browser, stack.postern.url("httpbin", path))
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
    r = get(browser, stack.postern.url("httpbin", "/robots.txt"))
    assert r.status_code == 200
    assert re.search(r"User-agent:\s*\*\s*\n\s*Disallow:\s*/\s*$", r.text, re.I | re.M), r.text


def test_public_route_without_login(stack, browser):
    r = get(browser, stack.postern.url("public", "/get?x=1"))
    assert r.status_code == 200, r.text[:500]
    assert r.json()["args"] == {"x": "1"}
    assert not route_cookies(browser, f"public.{harness.TEST_DOMAIN}"), "a public route set a cookie"


def test_script_client_gets_401_not_redirect(stack, browser):
    r = get(browser, stack.postern.url("httpbin", "/get"), headers=JSON)
    assert r.status_code == 401, f"{r.status_code}: {r.text[:300]}"
    assert "Location" not in r.headers


def test_browser_without_session_goes_to_login(stack, browser):
    assert_goes_to_login(browser, stack, stack.postern.url("httpbin", "/get?a=b"), "no session")


def test_security_headers_on_postern_pages(stack, browser):
    r = get(browser, stack.postern.url("nothere", "/"))
    assert r.headers.get("Strict-Transport-Security") or r.headers.get("X-Frame-Options"), r.headers


# ---------------------------------------------------------------------------------------------------------------
# Sessions: sign-out, tampering, open redirects


def test_sign_out_then_login_again(stack, browser):
    url = stack.postern.url("httpbin", "/get")
    host = f"httpbin.{harness.TEST_DOMAIN}"
    walk = harness.login(browser, url, ALICE)
    assert walk.response.status_code == 200, walk.trace()
    out = harness.follow(browser, "GET", stack.postern.url("httpbin", "/.pomerium/sign_out"),
                         stop=lambda u: host_of(u) not in (host, stack.postern.auth_host))
    r = out.response
    assert r.status_code == 200, out.trace()
    # A confirmation page: submit its sign-out form as a browser would (browsers send Origin with a form POST).
    form = next((f for f in harness.parse_forms(r.text) if "sign_out" in f["action"]), None)
    assert form is not None and form["method"] == "post", r.text[:1000]
    data = {k: v for k, v in form["fields"].items() if form["types"].get(k) != "submit"}
    harness.follow(browser, "POST", urljoin(out.hops[-1].url, form["action"]), data=data, walk=out,
                   headers={"Origin": stack.postern.origin("httpbin")},
                   stop=lambda u: host_of(u) not in (host, stack.postern.auth_host))
    assert out.response.status_code < 500, out.trace()
    for hop in out.hops:
        assert host_of(hop.location and urljoin(hop.url, hop.location)) in (
            "", host, stack.postern.auth_host, "127.0.0.1"), out.trace()
    # It lands on a "signed out" page (not the IdP's form) with a link to sign in again, back to the app.
    page = out.response
    assert page.status_code == 200 and "Signed out" in page.text, out.trace() + page.text[:1000]
    assert host_of(out.hops[-1].url) in (host, stack.postern.auth_host), out.trace()
    m = re.search(r'href="([^"]+)">Sign in again', page.text)
    assert m, page.text[:1000]
    again = html.unescape(m.group(1))
    assert again == stack.postern.url("httpbin", "/"), again
    assert_goes_to_login(browser, stack, url, "after sign-out", prompt="login")
    # Signing in again shows the IdP's login form (harness.login insists on filling it in).
    walk = harness.login(browser, url, ALICE)
    assert walk.response.status_code == 200, walk.trace()


def test_sign_out_with_foreign_redirect_does_not_go_there(stack, browser):
    harness.login(browser, stack.postern.url("httpbin", "/get"), ALICE)
    for url in (stack.postern.url("httpbin", "/.pomerium/sign_out?pomerium_redirect_uri=https://evil.example.net/"),
                stack.postern.url("auth", "/.pomerium/sign_out?pomerium_redirect_uri=https://evil.example.net/")):
        walk = harness.follow(browser, "GET", url, stop=lambda u: host_of(u) == "evil.example.net")
        for hop in walk.hops:
            assert "evil.example.net" not in host_of(hop.location and urljoin(hop.url, hop.location)), walk.trace()


@pytest.mark.parametrize("how", ["flip", "truncate", "garbage", "empty"])
def test_tampered_cookie_is_signed_out(stack, how):
    s = new_browser(stack.certs)
    url = stack.postern.url("httpbin", "/get")
    harness.login(s, url, ALICE)
    host = f"httpbin.{harness.TEST_DOMAIN}"
    jar = [c for c in s.cookies if c.name == COOKIE and c.domain.lstrip(".") == host]
    assert jar, f"no {COOKIE} cookie for {host}: {[(c.name, c.domain) for c in s.cookies]}"
    c = jar[0]
    v = c.value
    c.value = {
        "flip": v[: len(v) // 2] + ("A" if v[len(v) // 2] != "A" else "B") + v[len(v) // 2 + 1:],
        "truncate": v[: len(v) // 2],
        "garbage": "not-a-sealed-cookie",
        "empty": "",
    }[how]
    r = get(s, url)
    assert r.status_code == 302, f"tampered cookie ({how}) gave {r.status_code}: {r.text[:300]}"
    assert host_of(urljoin(url, r.headers["Location"])) == stack.postern.auth_host
    r = get(s, url, headers=JSON)
    assert r.status_code == 401, f"tampered cookie ({how}) for a script gave {r.status_code}"
    s.close()


def test_cookie_of_one_route_host_is_not_accepted_on_another(stack):
    """A session cookie minted for httpbin.* moved to domain.* is not a session there."""
    s = new_browser(stack.certs)
    harness.login(s, stack.postern.url("httpbin", "/get"), ALICE)
    value = route_cookies(s, f"httpbin.{harness.TEST_DOMAIN}")[COOKIE]
    fresh = new_browser(stack.certs)
    fresh.cookies.set(COOKIE, value, domain=f"domain.{harness.TEST_DOMAIN}", path="/")
    r = get(fresh, stack.postern.url("domain", "/get"))
    assert r.status_code == 302 and host_of(r.headers.get("Location")) == stack.postern.auth_host, r.status_code
    s.close()
    fresh.close()


def test_session_cookie_attributes(stack):
    s = new_browser(stack.certs)
    walk = harness.login(s, stack.postern.url("httpbin", "/get"), ALICE)
    jar = [c for c in s.cookies if c.name == COOKIE and c.domain.lstrip(".") == f"httpbin.{harness.TEST_DOMAIN}"]
    assert jar, walk.trace()
    c = jar[0]
    assert c.secure, "session cookie without Secure"
    rest = {k.lower(): v for k, v in c._rest.items()}  # attributes http.cookiejar does not model, as sent
    assert "httponly" in rest, "session cookie without HttpOnly"
    samesite = rest.get("samesite") or ""
    assert samesite.lower() == "lax", f"SameSite={samesite!r}"
    assert c.path == "/"
    assert ALICE not in c.value, "the cookie is not sealed (email in clear)"
    s.close()


@pytest.mark.parametrize("signed_in", [False, True])
def test_sign_in_with_foreign_redirect_is_refused(stack, signed_in):
    s = new_browser(stack.certs)
    if signed_in:
        harness.login(s, stack.postern.url("httpbin", "/get"), ALICE)
    for target in ("https://evil.example.net/", "https://evil.example.net/.pomerium/callback",
                   f"https://httpbin.{harness.TEST_DOMAIN}.evil.example.net:{stack.postern.port}/"):
        url = stack.postern.url("auth", "/.pomerium/sign_in")
        r = s.get(url, params={"pomerium_redirect_uri": target}, allow_redirects=False,
                  timeout=harness.HTTP_TIMEOUT)
        assert r.status_code == 400, f"sign-in to {target} (signed_in={signed_in}): {r.status_code} {r.text[:300]}"
        assert "evil" not in (r.headers.get("Location") or ""), r.headers
    # The sign-in link postern itself made, with only its target swapped for a foreign one.
    first = get(s, stack.postern.url("domain", "/get"))  # a route host without a session yet
    assert first.status_code == 302, first.status_code
    link = urlsplit(first.headers["Location"])
    q = parse_qs(link.query)
    assert "pomerium_redirect_uri" in q, link.geturl()
    q["pomerium_redirect_uri"] = ["https://evil.example.net/"]
    r = s.get(f"{link.scheme}://{link.netloc}{link.path}", params=q, allow_redirects=False,
              timeout=harness.HTTP_TIMEOUT)
    assert r.status_code == 400, f"altered sign-in link (signed_in={signed_in}): {r.status_code} {r.text[:300]}"
    assert "evil" not in (r.headers.get("Location") or ""), r.headers
    s.close()


def test_callback_without_valid_state_is_a_page_not_a_500(stack, browser):
    r = get(browser, stack.postern.url("auth", "/oauth2/callback?code=abc&state=forged"))
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
    r = get(browser, stack.postern.url("auth", "/oauth2/callback?error=access_denied&state=x"))
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:300]}"


def test_route_handoff_with_forged_token_is_refused(stack, browser):
    r = get(browser, stack.postern.url("httpbin", "/.pomerium/callback?pomerium_session=forged&pomerium_redirect_uri=/"))
    assert r.status_code in (302, 400, 401, 403), f"{r.status_code}: {r.text[:300]}"
    if r.status_code == 302:
        assert host_of(urljoin(r.url, r.headers["Location"])) in (stack.postern.auth_host,
                                                                   f"httpbin.{harness.TEST_DOMAIN}")
    assert COOKIE not in route_cookies(browser, f"httpbin.{harness.TEST_DOMAIN}")



def test_secrets_tokens_and_cookies_never_reach_the_log(stack):
    """After a real sign-in at debug log level, postern's log holds none of the secrets, codes or cookies."""
    s = new_browser(stack.certs)
    walk = harness.login(s, stack.postern.url("httpbin", "/get"), ALICE)
    assert walk.response.status_code == 200, walk.trace()
    secrets_seen = {"COOKIE_SECRET": stack.postern.env["COOKIE_SECRET"],
                    "IDP_CLIENT_SECRET": stack.postern.env["IDP_CLIENT_SECRET"]}
    for c in s.cookies:
        if c.value and len(c.value) >= 16:
            secrets_seen[f"cookie {c.name}@{c.domain}"] = c.value
    for hop in walk.hops:
        for k, vs in parse_qs(urlsplit(hop.url).query).items():
            if k in ("code", "state", "nonce", "code_challenge") or k.startswith("pomerium_"):
                for v in vs:
                    if len(v) >= 16 and not v.startswith("http"):
                        secrets_seen[f"{k} in {host_of(hop.url)}{urlsplit(hop.url).path}"] = v
    s.close()
    log = stack.postern.proc.log.read_text(errors="replace")
    leaked = [name for name, value in secrets_seen.items() if value in log]
    assert not leaked, f"postern's log ({stack.postern.proc.log}) contains: {leaked}"


# ---------------------------------------------------------------------------------------------------------------
# Hand-off replay and login CSRF; sign-out revokes; sign-out is not a CSRF target


def test_handoff_url_works_once_and_only_in_the_browser_that_started_it(stack):
    host = f"httpbin.{harness.TEST_DOMAIN}"
    owner = new_browser(stack.certs)
    url = stack.postern.url("httpbin", "/get?handoff=1")
    handoff = sign_in_until_handoff(owner, url, ALICE)
    binding = binding_cookies(owner, host)
    assert len(binding) == 1, route_cookies(owner, host)
    # Three fresh clients (no binding cookie) get a retry page, no session; the hand-off is not spent by them.
    for _ in range(3):
        fresh = new_browser(stack.certs)
        r = get(fresh, handoff)
        assert r.status_code == 400, f"a fresh client used a captured hand-off: {r.status_code} {r.text[:300]}"
        assert COOKIE not in route_cookies(fresh, host)
        assert 'href="' + html.escape(url) + '"' in r.text, r.text[:1000]
        fresh.close()
    # The browser that started it gets in; its binding cookie is cleared.
    r = get(owner, handoff)
    assert r.status_code == 302 and r.headers["Location"] == url, f"{r.status_code} {r.headers}"
    assert COOKIE in route_cookies(owner, host) and not binding_cookies(owner, host)
    assert get(owner, url).status_code == 200
    # Used once: not again, not even by a client holding a copy of the binding cookie.
    thief = new_browser(stack.certs)
    for name, value in binding.items():
        thief.cookies.set(name, value, domain=host, path="/")
    r = get(thief, handoff)
    assert r.status_code == 400 and COOKIE not in route_cookies(thief, host), r.status_code
    thief.close()
    log = log_text(stack)
    assert "binding check failed" in log and "single-use check failed" in log, "the refusals are not logged"
    owner.close()


def test_attackers_handoff_does_not_sign_in_the_victim(stack):
    """Login CSRF: bob sends alice his own hand-off URL; her browser is not signed in as bob."""
    host = f"domain.{harness.TEST_DOMAIN}"
    attacker = new_browser(stack.certs)
    url = stack.postern.url("domain", "/get")
    handoff = sign_in_until_handoff(attacker, url, BOB)
    victim = new_browser(stack.certs)
    r = get(victim, handoff)
    assert r.status_code == 400, f"{r.status_code}: {r.text[:300]}"
    assert COOKIE not in route_cookies(victim, host)
    # Not a dead end: "Try again" leads to the app, which starts the victim's own sign-in.
    m = re.search(r'href="([^"]+)">Try again', r.text)
    assert m and html.unescape(m.group(1)) == url, r.text[:1000]
    assert_goes_to_login(victim, stack, url, "retry after a refused hand-off")
    victim.close()
    # The refusal did not spend it for its real owner.
    r = get(attacker, handoff)
    assert r.status_code == 302 and COOKIE in route_cookies(attacker, host), r.status_code
    attacker.close()


def test_two_tabs_signing_in_at_once(stack):
    host = f"httpbin.{harness.TEST_DOMAIN}"
    b = new_browser(stack.certs)
    one, two = stack.postern.url("httpbin", "/get?tab=1"), stack.postern.url("httpbin", "/get?tab=2")
    # Tab two is sent to sign in first, then tab one goes all the way through the IdP.
    first = get(b, two)
    assert first.status_code == 302, first.status_code
    handoff_one = sign_in_until_handoff(b, one, ALICE)
    assert len(binding_cookies(b, host)) == 2, route_cookies(b, host)
    walk = harness.follow(b, "GET", urljoin(two, first.headers["Location"]), stop=is_handoff)
    last = walk.hops[-1]
    handoff_two = urljoin(last.url, last.location or "")
    assert is_handoff(handoff_two), walk.trace()
    # Either order works.
    for handoff, want in ((handoff_two, two), (handoff_one, one)):
        r = get(b, handoff)
        assert r.status_code == 302 and r.headers["Location"] == want, f"{r.status_code} {r.text[:300]}"
    assert not binding_cookies(b, host)
    b.close()


def test_copied_session_cookies_are_dead_after_sign_out(stack):
    """Sign-out revokes the session on every host minted from the same sign-in, not only in this browser."""
    s = new_browser(stack.certs)
    harness.login(s, stack.postern.url("httpbin", "/get"), ALICE)
    assert harness.follow(s, "GET", stack.postern.url("domain", "/get")).response.status_code == 200
    copies = {sub: route_cookies(s, f"{sub}.{harness.TEST_DOMAIN}")[COOKIE] for sub in ("httpbin", "domain", "auth")}
    out = post_sign_out(s, stack, "httpbin")
    assert out.response.status_code == 200 and "Signed out" in out.response.text, out.trace()
    for sub in ("httpbin", "domain"):
        fresh = new_browser(stack.certs)
        fresh.cookies.set(COOKIE, copies[sub], domain=f"{sub}.{harness.TEST_DOMAIN}", path="/")
        r = get(fresh, stack.postern.url(sub, "/get"))
        assert r.status_code == 302 and host_of(r.headers["Location"]) == stack.postern.auth_host, \
            f"a copied {sub} cookie still works after sign-out: {r.status_code}"
        fresh.close()
    fresh = new_browser(stack.certs)
    fresh.cookies.set(COOKIE, copies["auth"], domain=stack.postern.auth_host, path="/")
    r = get(fresh, stack.postern.url("auth", "/.pomerium/"), headers=JSON)
    assert ALICE not in r.text, f"the authenticate host's copied cookie still works: {r.text[:300]}"
    # And the authenticate host does not hand a session out from it.
    r = get(fresh, stack.postern.url("auth", "/.pomerium/sign_in"))
    assert r.status_code == 302 and r.headers["Location"].startswith(stack.idp_url), r.headers.get("Location")
    fresh.close()
    s.close()


def test_sign_out_by_get_or_from_another_site_does_nothing(stack):
    s = new_browser(stack.certs)
    url = stack.postern.url("httpbin", "/get")
    harness.login(s, url, ALICE)
    # What an <img> would do, on the route host and on the authenticate host: a page, no sign-out.
    for sub in ("httpbin", "auth"):
        r = get(s, stack.postern.url(sub, "/.pomerium/sign_out"))
        assert r.status_code == 200, f"{sub}: {r.status_code}"
        assert any(f["method"] == "post" for f in harness.parse_forms(r.text)), r.text[:1000]
        assert "Set-Cookie" not in r.headers, r.headers
    # A cross-site form, and a POST without any origin information: 403, with the real form on the page.
    for origin in ("https://evil.example.net", None):
        r = post_sign_out(s, stack, "httpbin", origin=origin).response
        assert r.status_code == 403, f"Origin {origin}: {r.status_code} {r.text[:300]}"
        assert any(f["method"] == "post" for f in harness.parse_forms(r.text)), r.text[:1000]
    r = post_sign_out(s, stack, "auth", origin=stack.postern.origin("httpbin")).response
    assert r.status_code == 403, r.status_code
    assert get(s, url).status_code == 200, "signed out by a GET or a foreign POST"
    me = get(s, stack.postern.url("auth", "/.pomerium/"), headers=JSON)
    assert ALICE in me.text, me.text[:300]
    # The user page's and the 403 page's sign-out is a POST form on the host itself.
    page = get(s, stack.postern.url("httpbin", "/.pomerium/"))
    form = next(f for f in harness.parse_forms(page.text) if "sign_out" in f["action"])
    assert form["method"] == "post", form
    s.close()
