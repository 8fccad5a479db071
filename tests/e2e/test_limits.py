"""Limits every client lives within, each set small here so the test can reach it: REQUEST_HEAD_MAX_BYTES (431),
REQUEST_HEAD_MAX_HEADERS (431), REQUEST_LINE_MAX_BYTES (414), REQUEST_HEAD_TIMEOUT (408, slowloris),
KEEPALIVE_TIMEOUT (idle connections closed) and MAX_CONNECTIONS (503 for the excess, the others untouched).
"""

from __future__ import annotations

import socket
import time

import pytest

import harness

HOST = "public.limits.test"


@pytest.fixture(scope="module")
def small(idp, httpbin, log_dir):
    port = harness.free_port()
    env = harness.guide_env(address=f"127.0.0.1:{port}", idp_url=idp, policy=f"- from: https://{HOST}\n  to: {httpbin}\n  allow_public_unauthenticated_access: true\n", extra={"REQUEST_HEAD_MAX_BYTES": "2048", "REQUEST_HEAD_MAX_HEADERS": "20", "REQUEST_LINE_MAX_BYTES": "512", "REQUEST_HEAD_TIMEOUT": "1s", "KEEPALIVE_TIMEOUT": "3s", "MAX_CONNECTIONS": "4"})
    proc = harness.start_postern("postern-limits", env, f"http://127.0.0.1:{port}/ping", False, log_dir)
    yield port
    proc.stop()


def status_of(port: int, raw: bytes, wait: float = 5) -> int | None:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(raw)
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            return None
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None


def get(path: str = "/get", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n".encode()


def test_within_the_limits_is_served(small):
    assert status_of(small, get(extra="X-A: " + "a" * 1000 + "\r\n")) == 200


def test_a_head_over_the_byte_limit_is_431(small):
    assert status_of(small, get(extra="X-A: " + "a" * 3000 + "\r\n")) == 431


def test_too_many_header_fields_is_431(small):
    assert status_of(small, get(extra="".join(f"X-{i}: v\r\n" for i in range(30)))) == 431


def test_a_request_line_over_its_limit_is_414(small):
    assert status_of(small, get("/get?" + "q" * 800)) == 414


def test_a_slow_head_gets_408(small):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", small), timeout=10) as s:
        s.sendall(b"GET /get HTTP/1.1\r\n")
        data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 408"), data[:100]
    assert time.monotonic() - started < 5


def test_an_idle_keep_alive_connection_is_closed(small):
    with socket.create_connection(("127.0.0.1", small), timeout=10) as s:
        s.sendall(get("/ping"))
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 200"), first[:100]
        started = time.monotonic()
        assert s.recv(4096) == b""  # closed by postern, not by us
        assert 2 < time.monotonic() - started < 8


def test_connections_past_the_limit_get_503_and_the_others_are_untouched(small):
    held = []
    try:
        for _ in range(4):
            c = socket.create_connection(("127.0.0.1", small), timeout=5)
            c.sendall(get("/ping", "Connection: keep-alive\r\n"))
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
            held.append(c)
        assert status_of(small, get("/ping")) == 503
        # The connections already served keep working.
        held[0].sendall(get("/ping"))
        assert held[0].recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for c in held:
            c.close()
