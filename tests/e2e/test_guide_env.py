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
