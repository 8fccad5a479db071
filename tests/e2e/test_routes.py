"""Policy features and forwarding seen from outside, on a postern of its own with mostly public routes.

Covers: 502 for an unreachable upstream, 504 past a route's timeout, preserve_host_header, set/remove request
headers, path prefixes tried in policy order, host matching (case, trailing dot), bodies both ways.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re

import pytest
import requests

import harness
from conftest import ALICE, Ports, new_browser

D = harness.TEST_DOMAIN


@pytest.fixture(scope="module")
def routes(idp, httpbin, ports: Ports, certs: harness.Certs, log_dir):
    port = ports.routes
    dead = harness.free_port()  # nothing listens here
    o = lambda sub: f"https://{sub}.{D}:{port}"  # noqa: E731
    up = httpbin
    policy = harness.policy_yaml([
        {"from": o("dead"), "to": f"http://127.0.0.1:{dead}", "allow_public_unauthenticated_access": True},
        {"from": o("slow"), "to": up, "timeout": "1s", "allow_public_unauthenticated_access": True},
        {"from": o("preserve"), "to": up, "preserve_host_header": True, "allow_public_unauthenticated_access": True},
        {"from": o("headers"), "to": up, "allow_public_unauthenticated_access": True,
         "set_request_headers": {"X-Custom": "hello"}, "remove_request_headers": ["X-Remove-Me"]},
        {"from": o("paths"), "to": up, "prefix": "/anything/open", "allow_public_unauthenticated_access": True},
        {"from": o("paths"), "to": up, "allowed_users": [ALICE]},
        {"from": o("public"), "to": up, "allow_public_unauthenticated_access": True},
        # B15: /anything/admin is root's; everything else on the host is alice's.
        {"from": o("b15"), "to": up, "prefix": "/anything/admin", "allowed_users": ["root@example.com"]},
        {"from": o("b15"), "to": up, "allowed_users": [ALICE]},
    ])
    (log_dir / "postern-routes-policy.yaml").write_text(policy)
    env = harness.postern_env(port=port, certs=certs, idp_port=ports.idp, policy=policy)
    p = harness.Postern(port, None, env)
    p.proc = harness.start_postern("postern-routes", env, p.url("public", "/ping"), str(certs.ca), log_dir)
    yield p
    p.proc.stop()


def get(s, url, **kw):
    return s.get(url, allow_redirects=False, timeout=harness.HTTP_TIMEOUT, **kw)


def test_unreachable_upstream_is_a_502_page(routes, browser):
    r = get(browser, routes.url("dead", "/get"))
    assert r.status_code == 502, f"{r.status_code}: {r.text[:300]}"
    assert r.text.strip(), "empty 502 page"


def test_slow_upstream_is_a_504_page(routes, browser):
    r = get(browser, routes.url("slow", "/delay/4"))
    assert r.status_code == 504, f"{r.status_code}: {r.text[:300]}"
    # The route's timeout applies only until the response head: a fast answer on the same route is fine.
    assert get(browser, routes.url("slow", "/get")).status_code == 200


def test_preserve_host_header(routes, browser):
    r = get(browser, routes.url("preserve", "/headers"))
    assert r.status_code == 200, r.text[:300]
    assert r.json()["headers"]["Host"].split(":")[0] == f"preserve.{D}", r.json()


def test_set_and_remove_request_headers(routes, browser):
    r = get(browser, routes.url("headers", "/headers"), headers={"X-Remove-Me": "secret", "X-Keep-Me": "yes"})
    assert r.status_code == 200, r.text[:300]
    h = {k.lower(): v for k, v in r.json()["headers"].items()}
    assert h.get("x-custom") == "hello", h
    assert "x-remove-me" not in h, h
    assert h.get("x-keep-me") == "yes", h


def test_prefix_routes_in_policy_order(routes, browser):
    r = get(browser, routes.url("paths", "/anything/open/x"))
    assert r.status_code == 200, r.text[:300]
    r = get(browser, routes.url("paths", "/anything/closed"))
    assert r.status_code == 302 and f"auth.{D}" in r.headers.get("Location", ""), r.status_code


def test_prefix_route_after_login(routes, certs):
    s = new_browser(certs)
    walk = harness.login(s, routes.url("paths", "/anything/closed"), ALICE)
    assert walk.response.status_code == 200, walk.trace()
    s.close()


@pytest.mark.parametrize("host", [f"PUBLIC.{D.upper()}", f"public.{D}.", f"Public.{D}"])
def test_host_match_is_case_insensitive_and_ignores_trailing_dot(routes, browser, host):
    r = get(browser, routes.url("public", "/get"), headers={"Host": f"{host}:{routes.port}"})
    assert r.status_code == 200, f"Host {host}: {r.status_code} {r.text[:300]}"


def test_large_bodies_both_ways(routes, browser):
    blob = os.urandom(3 * 1024 * 1024)
    r = browser.post(routes.url("public", "/anything"), data=blob, allow_redirects=False, timeout=60,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text[:300]
    echoed = r.json()["data"]
    m = re.match(r"data:application/octet-stream;base64,(.*)", echoed)
    got = base64.b64decode(m.group(1)) if m else echoed.encode("latin-1")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(blob).hexdigest()


def test_chunked_upload_and_streamed_download(routes, browser):
    def gen():
        for i in range(64):
            yield bytes([i % 256]) * 4096

    r = browser.post(routes.url("public", "/anything"), data=gen(), allow_redirects=False, timeout=60)
    assert r.status_code == 200, r.text[:300]
    data = r.json()["data"]
    assert len(data) == 64 * 4096 and data.startswith("\x00" * 4096), len(data)
    r = browser.get(routes.url("public", "/stream/20"), stream=True, timeout=30)
    lines = [line for line in r.iter_lines() if line]
    assert r.status_code == 200 and len(lines) == 20


def test_keep_alive_many_requests(routes, certs):
    """Fifty requests over one client connection (and reused upstream connections) all succeed."""
    with requests.Session() as s:
        s.trust_env = False
        s.verify = str(certs.ca)
        for i in range(50):
            r = s.get(routes.url("public", f"/get?i={i}"), timeout=harness.HTTP_TIMEOUT)
            assert r.status_code == 200 and r.json()["args"] == {"i": str(i)}


@pytest.fixture(scope="module")
def alice_b15(routes, certs):
    """alice signed in on the b15 host; the Cookie header her browser would send there."""
    s = new_browser(certs)
    walk = harness.login(s, routes.url("b15", "/anything/start"), ALICE)
    assert walk.response.status_code == 200, walk.trace()
    cookie = "; ".join(f"{c.name}={c.value}" for c in s.cookies if c.domain.startswith("b15."))
    assert cookie, "no cookie for the b15 host"
    s.close()
    return cookie


def raw_get(routes, certs, path: str, cookie: str) -> tuple[int, bytes]:
    """Sends `path` byte for byte (no client-side normalisation, like curl --path-as-is)."""
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(certs.ca))
    host = f"b15.{D}"
    with socket.create_connection(("127.0.0.1", routes.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{routes.port}\r\nCookie: {cookie}\r\n"
                        f"Accept: application/json\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


# B15: no path whose effective form lies under /anything/admin reaches httpbin for alice.
@pytest.mark.parametrize("path,want", [
    ("/anything/public/../admin/users", 403),
    ("/anything/public/%2e%2e/admin/users", 403),
    ("/anything/public/%2E%2E/admin/users", 403),
    ("/anything/public%2F..%2Fadmin/users", 400),
    ("/anything/admin%2Fusers", 400),
    ("//anything/admin/users", 403),
    ("/./anything/admin/users", 403),
    ("/anything/admin;x=1/users", 403),
    ("/anything/public/..%5Cadmin/users", 400),
    ("/anything/%61dmin/users", 403),
    ("/anything/admin", 403),
    ("/anything/admin#x", 400),
    ("/anything/x/../admin#", 400),
    ("/anything/x/..;/admin/users", 400),
    ("/anything/.;/admin/users", 400),
    ("/anything/%2e%2e;/admin/users", 400),
])
def test_b15_paths_under_admin_never_reach_the_app(routes, certs, alice_b15, path, want):
    status, body = raw_get(routes, certs, path, alice_b15)
    assert status == want, f"{path}: {status} {body[:300]!r}"
    assert b'"url"' not in body, f"{path} reached httpbin: {body[:300]!r}"


# The segment boundary, and `//` passed as sent: httpbin sees exactly what was decided on.
@pytest.mark.parametrize("path,seen", [
    ("/anything/administrator", "/anything/administrator"),
    ("/anything/admin-old", "/anything/admin-old"),
    ("/anything/foo//bar", "/anything/foo//bar"),
    ("/anything/x/../y", "/anything/y"),
    ("/anything/ADMIN/users", "/anything/ADMIN/users"),
])
def test_b15_paths_outside_admin_pass_as_decided(routes, certs, alice_b15, path, seen):
    import json

    status, body = raw_get(routes, certs, path, alice_b15)
    assert status == 200, f"{path}: {status} {body[:300]!r}"
    assert json.loads(body)["url"].endswith(seen), body[:300]
