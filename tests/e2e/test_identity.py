"""B11: what the app may believe about the user comes only from postern.

On a route with pass_identity_headers the app gets exactly one X-Pomerium-Claim-Email and one
X-Pomerium-Jwt-Assertion, signed by postern's key (published at /.well-known/pomerium/jwks.json); on a route without
it, none of the identity headers a client tried to send. Matching is case-insensitive; duplicates are removed.
"""

from __future__ import annotations

import base64
import json

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import harness
from conftest import ALICE

FORGED = {
    "X-Pomerium-Jwt-Assertion": "eyJhbGciOiJub25lIn0.eyJlbWFpbCI6ImFkbWluQGV4YW1wbGUuY29tIn0.",
    "X-Pomerium-Claim-Email": "admin@example.com",
    "x-pomerium-claim-groups": "admins",
    "X-Forwarded-Email": "admin@example.com",
    "X-Forwarded-User": "admin",
    "X-Email": "admin@example.com",
}


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@pytest.fixture(scope="module")
def signed_in(stack, certs):
    from conftest import new_browser

    s = new_browser(certs)
    walk = harness.login(s, stack.postern.url("claims", "/get"), ALICE)
    assert walk.response.status_code == 200, walk.trace()
    # The authenticate host knows alice now: the second host is handed the session without the IdP.
    r = s.get(stack.postern.url("httpbin", "/get"), timeout=harness.HTTP_TIMEOUT)
    assert r.status_code == 200 and len(r.history) == 3, [h.url for h in r.history]
    yield s
    s.close()


def seen_by_app(stack, s, host: str) -> dict:
    r = s.get(stack.postern.url(host, "/headers"), headers=FORGED, allow_redirects=False,
              timeout=harness.HTTP_TIMEOUT)
    assert r.status_code == 200, r.text[:300]
    return {k.lower(): v for k, v in r.json()["headers"].items()}


def verify_es256(jwt: str, jwks: dict) -> dict:
    head, claims, sig = jwt.split(".")
    header = json.loads(b64d(head))
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public = ec.EllipticCurvePublicNumbers(int.from_bytes(b64d(key["x"]), "big"), int.from_bytes(b64d(key["y"]), "big"),
                                           ec.SECP256R1()).public_key()
    raw = b64d(sig)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
    return json.loads(b64d(claims))


def test_b11_identity_route_gets_postern_signed_identity_only(stack, signed_in):
    h = seen_by_app(stack, signed_in, "claims")
    # httpbin joins repeated headers with commas: one value means one header.
    assert h["x-pomerium-claim-email"] == ALICE, h
    assert "," not in h["x-pomerium-jwt-assertion"], h
    for forged in ("x-forwarded-email", "x-forwarded-user", "x-email"):
        assert forged not in h, h
    jwks = signed_in.get(stack.postern.url("claims", "/.well-known/pomerium/jwks.json"),
                         timeout=harness.HTTP_TIMEOUT).json()
    claims = verify_es256(h["x-pomerium-jwt-assertion"], jwks)
    assert claims["email"] == ALICE, claims
    assert claims["aud"].startswith("claims."), claims


def test_b11_quiet_route_gets_no_identity_headers(stack, signed_in):
    h = seen_by_app(stack, signed_in, "httpbin")
    for name in ("x-pomerium-jwt-assertion", "x-pomerium-claim-email", "x-pomerium-claim-groups",
                 "x-forwarded-email", "x-forwarded-user", "x-email"):
        assert name not in h, (name, h)


def test_b07_postern_cookies_never_reach_the_app_and_the_apps_keep_their_order(stack, signed_in):
    host = f"httpbin.{harness.TEST_DOMAIN}"
    ours = [c for c in signed_in.cookies if c.domain.startswith(host) and c.name.startswith("_pomerium")]
    session = next(c.value for c in ours if c.name == "_pomerium")
    url = stack.postern.url("httpbin", "/headers")

    def cookie_seen(cookie_header: str) -> str | None:
        # Sent by hand, exactly as written (the session's jar would add its own cookies).
        with requests.Session() as s:
            s.trust_env = False
            s.verify = signed_in.verify
            r = s.get(url, headers={"Cookie": cookie_header}, allow_redirects=False, timeout=harness.HTTP_TIMEOUT)
        assert r.status_code == 200, r.text[:300]
        return {k.lower(): v for k, v in r.json()["headers"].items()}.get("cookie")

    seen = cookie_seen(f"appsession=abc; _pomerium={session}; theme=dark; _pomerium_csrf=zzz")
    assert seen == "appsession=abc; theme=dark", seen
    # Nothing left: no Cookie header at all, not an empty one.
    assert cookie_seen(f"_pomerium={session}; _pomerium_csrf=zzz") is None


def test_an_app_cannot_toss_posterns_cookies(stack, browser):
    """A public app on a sibling host tries to plant a session or binding cookie for the parent domain."""
    parent = harness.TEST_DOMAIN
    tossed = [f"_pomerium=forged; Domain={parent}; Path=/", f"_pomerium_bind_abcdef=x; Domain={parent}",
              f"__Host-_pomerium_bind_abcdef=x; Path=/; Secure"]
    params = [("Set-Cookie", c) for c in tossed] + [("Set-Cookie", "app=1; Path=/")]
    r = browser.get(stack.postern.url("public", "/response-headers"), params=params, allow_redirects=False,
                    timeout=harness.HTTP_TIMEOUT)
    assert r.status_code == 200, r.text[:300]
    set_cookies = r.raw.headers.getlist("Set-Cookie")
    assert set_cookies == ["app=1; Path=/"], set_cookies
