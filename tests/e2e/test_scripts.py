"""Requests without a session that no one should send through the IdP: scripts (B18) and non-GET methods (B17).

Scripts get a 401 they can read (no redirect to the IdP, which a fetch() could not follow across origins); a POST
is neither forwarded nor turned into a GET after login. A browser's navigation still goes to sign in.
"""

from __future__ import annotations

import pytest

import harness

D = harness.TEST_DOMAIN


def send(browser, method: str, url: str, **kw):
    return browser.request(method, url, allow_redirects=False, timeout=harness.HTTP_TIMEOUT, **kw)


@pytest.mark.parametrize("headers", [
    {"Accept": "application/json"},
    {"Accept": "*/*", "X-Requested-With": "XMLHttpRequest"},
    {"Accept": "*/*", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
], ids=["accept-json", "x-requested-with", "sec-fetch-cors"])
def test_b18_api_requests_get_401_not_a_redirect(stack, browser, headers):
    r = send(browser, "GET", stack.postern.url("httpbin", "/api/status"), headers=headers)
    assert r.status_code == 401, f"{r.status_code}: {r.text[:300]}"
    assert "Location" not in r.headers, r.headers
    assert len(r.content) < 2048 and r.content.strip(), r.content[:300]


def test_b18_navigation_still_goes_to_sign_in(stack, browser):
    r = send(browser, "GET", stack.postern.url("httpbin", "/api/status"),
             headers={"Accept": "text/html", "Sec-Fetch-Mode": "navigate"})
    assert r.status_code == 302, r.status_code
    assert r.headers["Location"].startswith(f"https://{stack.postern.auth_host}"), r.headers["Location"]


def test_b18_the_apps_own_origin_can_read_the_401(stack, browser):
    origin = stack.postern.url("httpbin", "").rstrip("/")
    r = send(browser, "GET", stack.postern.url("httpbin", "/api/status"),
             headers={"Accept": "application/json", "Origin": origin})
    assert r.status_code == 401
    assert r.headers.get("Access-Control-Allow-Origin") == origin, r.headers
    assert r.headers.get("Access-Control-Allow-Credentials") == "true", r.headers
    # Another origin is told nothing.
    r = send(browser, "GET", stack.postern.url("httpbin", "/api/status"),
             headers={"Accept": "application/json", "Origin": "https://evil.example.net"})
    assert r.status_code == 401
    assert "Access-Control-Allow-Origin" not in r.headers, r.headers


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_b17_unauthenticated_writes_are_not_forwarded_nor_replayed(stack, browser, method):
    r = send(browser, method, stack.postern.url("httpbin", "/anything/api/items"),
             data=b'{"name":"widget"}', headers={"Content-Type": "application/json", "Accept": "text/html"})
    # httpbin would have answered 200 with an echo; postern answers itself and sends no one to the IdP with it.
    assert r.status_code == 401, f"{r.status_code}: {r.text[:300]}"
    assert "Location" not in r.headers
    assert '"method"' not in r.text, r.text[:300]
    # The page offers a sign-in link to a page a GET can load (the app's front page), not the POST's URL.
    assert "/anything/api/items" not in r.text, r.text[:500]
