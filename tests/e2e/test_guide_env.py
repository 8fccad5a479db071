"""The Synology guide's set-up: DSM's nginx terminates TLS and talks plain HTTP (often HTTP/1.0) to postern,
which runs with INSECURE_SERVER=TRUE and the guide's environment verbatim (no SHARED_SECRET, no certificate).

postern must still build its public URLs from the policy's `from` and AUTHENTICATE_SERVICE_URL (https), answer
HTTP/1.0, and answer pipelined requests in order. Requests are written by hand on raw sockets, as nginx would.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

import harness
from conftest import ALICE, Ports

NAS = harness.NAS_DOMAIN


@pytest.fixture(scope="module")
def guide(idp, httpbin, ports: Ports, log_dir):
    port = harness.free_port()
    policy = (
        f"- from: https://httpbin.{NAS}\n"
        f"  to: {httpbin}\n"
        f"  allowed_users:\n"
        f"    - {ALICE}\n"
        f"- from: https://public.{NAS}\n"
        f"  to: {httpbin}\n"
        f"  allow_public_unauthenticated_access: true\n"
    )
    env = harness.guide_env(address=f"127.0.0.1:{port}", idp_url=idp, policy=policy)
    proc = harness.start_postern("postern-insecure", env, f"http://127.0.0.1:{port}/ping", False, log_dir)
    yield port
    proc.stop()


def exchange(port: int, raw: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, read until the server closes (or timeout); returns everything received."""
    deadline = time.monotonic() + timeout
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
    return out


def head_of(resp: bytes) -> tuple[int, dict[str, str]]:
    head = resp.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


def request(host: str, path: str, version: str = "1.1", close: bool = True, extra: str = "") -> bytes:
    conn = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/{version}\r\nHost: {host}\r\n{conn}{extra}\r\n".encode()


def test_redirect_uses_configured_https_urls(guide):
    status, h = head_of(exchange(guide, request(f"httpbin.{NAS}", "/get?x=1", extra="Accept: text/html\r\n")))
    assert status == 302, h
    loc = h["location"]
    assert loc.startswith(f"https://auth.{NAS}/.pomerium/sign_in"), loc
    back = parse_qs(urlsplit(loc).query).get("pomerium_redirect_uri", [""])[0]
    assert unquote(back) == f"https://httpbin.{NAS}/get?x=1", loc


def test_auth_host_sends_to_idp_with_https_callback(guide, idp):
    status, h = head_of(exchange(guide, request(f"httpbin.{NAS}", "/", extra="Accept: text/html\r\n")))
    sign_in = urlsplit(h["location"])
    status, h = head_of(exchange(guide, request(f"auth.{NAS}", f"{sign_in.path}?{sign_in.query}")))
    assert status in (302, 303), h
    assert h["location"].startswith(idp + "/"), h
    q = parse_qs(urlsplit(h["location"]).query)
    assert q["redirect_uri"] == [f"https://auth.{NAS}/oauth2/callback"], q


def test_public_route_and_404_over_plain_http(guide):
    status, _ = head_of(exchange(guide, request(f"public.{NAS}", "/get")))
    assert status == 200
    resp = exchange(guide, request(f"nothere.{NAS}", "/"))
    assert head_of(resp)[0] == 404 and f"nothere.{NAS}".encode() in resp


def test_http_1_0_as_nginx_sends_it(guide):
    resp = exchange(guide, request(f"public.{NAS}", "/get?v=10", version="1.0", close=False))
    assert resp.startswith(b"HTTP/1."), resp[:200]
    status, _ = head_of(resp)
    assert status == 200 and b'"v": "10"' in resp, resp[:500]


def test_pipelined_requests_answered_in_order(guide):
    raw = b"".join(request(f"public.{NAS}", f"/get?n={i}", close=(i == 3)) for i in (1, 2, 3))
    resp = exchange(guide, raw, timeout=15)
    assert resp.count(b"HTTP/1.1 200") == 3, resp[:1000]
    positions = [resp.find(f'"n": "{i}"'.encode()) for i in (1, 2, 3)]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), positions


def test_ping_over_plain_http(guide):
    status, _ = head_of(exchange(guide, request(f"httpbin.{NAS}", "/ping")))
    assert status == 200


@pytest.fixture(scope="module")
def trusted(idp, httpbin, log_dir):
    """The guide's set-up plus TRUSTED_PROXIES=127.0.0.1: DSM's nginx on the same box is believed about the client."""
    port = harness.free_port()
    policy = (
        f"- from: https://app.{NAS}\n  to: {httpbin}\n  allowed_users: [{ALICE}]\n"
        f"- from: https://public.{NAS}\n  to: {httpbin}\n  allow_public_unauthenticated_access: true\n"
    )
    env = harness.guide_env(address=f"127.0.0.1:{port}", idp_url=idp, policy=policy, extra={"TRUSTED_PROXIES": "127.0.0.1/32, ::1"})
    proc = harness.start_postern("postern-trusted", env, f"http://127.0.0.1:{port}/ping", False, log_dir)
    yield port
    proc.stop()


def _headers_seen(port: int, extra: str) -> dict:
    import json

    raw = exchange(port, (f"GET /headers?show_env=1 HTTP/1.0\r\nHost: public.{NAS}\r\n{extra}\r\n").encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return json.loads(body)["headers"]


def test_b01_login_redirect_is_https_behind_a_tls_front_proxy(trusted):
    raw = exchange(trusted, (f"GET /some/page?x=1 HTTP/1.1\r\nHost: app.{NAS}\r\nX-Forwarded-Proto: https\r\n"
                             f"X-Forwarded-For: 203.0.113.7\r\nAccept: text/html\r\nConnection: close\r\n\r\n").encode())
    head = raw.partition(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 302"), head
    location = next(l.split(":", 1)[1].strip() for l in head.split("\r\n") if l.lower().startswith("location:"))
    assert location.startswith(f"https://auth.{NAS}/.pomerium/sign_in?"), location
    back = parse_qs(urlsplit(location).query)["pomerium_redirect_uri"][0]
    assert back == f"https://app.{NAS}/some/page?x=1", back
    assert "http://" not in unquote(location), location
    for line in head.split("\r\n"):
        if line.lower().startswith("set-cookie:"):
            assert "secure" in line.lower(), line


def test_forwarded_for_chain_kept_only_from_trusted_proxies(trusted, guide):
    # From a trusted proxy: what nginx said about the client reaches the app, then the proxy itself.
    seen = _headers_seen(trusted, "X-Forwarded-For: 203.0.113.7\r\n")
    assert seen["X-Forwarded-For"] == "203.0.113.7, 127.0.0.1", seen
    # Without TRUSTED_PROXIES the same claim is dropped: the peer is the client.
    seen = _headers_seen(guide, "X-Forwarded-For: 203.0.113.7\r\n")
    assert seen["X-Forwarded-For"] == "127.0.0.1", seen


@pytest.mark.parametrize("host", [f"public.{NAS}:443", f"public.{NAS}:80", f"PUBLIC.{NAS.upper()}", f"public.{NAS}."])
def test_b03_default_ports_and_case_reach_the_same_route(guide, host):
    raw = exchange(guide, f"GET /get HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 200"), (host, raw[:200])


def test_b03_another_port_is_not_the_route(guide):
    raw = exchange(guide, f"GET /get HTTP/1.0\r\nHost: public.{NAS}:8443\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 404"), raw[:200]
