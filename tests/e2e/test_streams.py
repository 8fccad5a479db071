"""Issue 4: WebSockets, streams and HTTP/1.1 semantics through postern, with alice's session, against real upstreams:
the `websockets` echo server, httpbin, and the test upstreams `sse.py` and `variants.py` (see upstreams/README.md).

Field cases: B05 (WebSocket with `Connection: keep-alive, Upgrade`), B20 (SSE not buffered), B23 (Expect:
100-continue, early 413), B24 (HEAD, 304, 204 framing).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import struct
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

import harness
import streams_stack
from conftest import ALICE, Ports
from streams_stack import Stack, request

B05_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
B05_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.fixture(scope="module")
def st(idp, httpbin, ports: Ports, certs: harness.Certs, log_dir):
    ws_port, sse_port, var_port = (harness.free_port() for _ in range(3))
    ups = [
        streams_stack.start_upstream("ws-echo", "ws_echo.py", ws_port, log_dir=log_dir, ready_port=ws_port),
        streams_stack.start_upstream("sse", "sse.py", sse_port, log_dir=log_dir, ready_port=sse_port),
        streams_stack.start_upstream("variants", "variants.py", var_port, log_dir=log_dir, ready_port=var_port),
    ]
    alice = {"allowed_users": [ALICE]}
    routes = [
        {"from": "ws", "to": f"http://127.0.0.1:{ws_port}", "allow_websockets": True, **alice},
        {"from": "nows", "to": f"http://127.0.0.1:{ws_port}", **alice},
        {"from": "wsidle", "to": f"http://127.0.0.1:{ws_port}", "allow_websockets": True, "idle_timeout": "1s",
         **alice},
        # The route timeout (to the response head) and idle timeout are both shorter than the streams below.
        {"from": "sse", "to": f"http://127.0.0.1:{sse_port}", "timeout": "1s", "idle_timeout": "1s", **alice},
        {"from": "bin", "to": httpbin, **alice},
        {"from": "var", "to": f"http://127.0.0.1:{var_port}", **alice},
    ]
    s = Stack("postern-streams", ports.streams[0], routes, certs, ports.idp, log_dir)
    yield s
    s.stop()
    for u in ups:
        u.stop()


def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_ws_frame(raw: streams_stack.Raw) -> tuple[int, bytes]:
    """An unmasked server frame: (opcode, payload)."""
    b0, b1 = raw.f.read(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", raw.f.read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", raw.f.read(8))[0]
    return b0 & 0x0F, raw.f.read(n)


def handshake(st: Stack, sub: str, connection: str, upgrade: str = "websocket", cookie: bool = True,
              extra: bytes = b"") -> bytes:
    headers = {"Connection": connection, "Upgrade": upgrade, "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": B05_KEY}
    if cookie:
        headers["Cookie"] = st.cookie(sub)
    return request("GET", st.host(sub), "/ws", headers) + extra


@pytest.mark.parametrize("connection,upgrade", [
    ("keep-alive, Upgrade", "websocket"),
    ("Upgrade", "websocket"),
    ("upgrade", "websocket"),
    ("keep-alive, Upgrade", "WebSocket"),
])
def test_b05_websocket_upgrade_with_connection_token_list(st, connection, upgrade):
    raw = st.connect("ws")
    try:
        raw.send(handshake(st, "ws", connection, upgrade))
        status, headers, line = raw.head()
        assert status == 101, f"{line} {headers}"
        assert headers.get("sec-websocket-accept") == B05_ACCEPT, headers
        assert headers.get("upgrade", "").lower() == "websocket", headers
        assert "content-length" not in headers, headers
        raw.send(ws_frame(b"hello through postern"))
        assert read_ws_frame(raw) == (1, b"hello through postern")
    finally:
        raw.close()


def test_b05_websocket_without_a_session_is_never_upgraded(st):
    raw = st.connect("ws")
    try:
        raw.send(handshake(st, "ws", "keep-alive, Upgrade", cookie=False))
        status, headers, body = raw.response()
        assert status in (302, 401), f"{status} {headers}"
    finally:
        raw.close()


def test_b05_websocket_on_a_route_without_allow_websockets_is_refused(st):
    raw = st.connect("nows")
    try:
        raw.send(handshake(st, "nows", "keep-alive, Upgrade"))
        status, headers, body = raw.response()
        assert status == 403, f"{status} {headers} {body[:300]!r}"
        assert b"allow_websockets" in body and b"WebSocket" in body, body[:500]
    finally:
        raw.close()


def test_b05_tls_listener_does_not_offer_h2(st):
    """No HTTP/2 (so no extended CONNECT either): ALPN settles on http/1.1."""
    ctx = st.ssl_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    import socket

    with socket.create_connection(("127.0.0.1", st.port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=f"ws.{harness.TEST_DOMAIN}") as tls:
            assert tls.selected_alpn_protocol() in (None, "http/1.1")


def real_client(st: Stack, sub: str, path: str = "/"):
    ctx = ssl.create_default_context(cafile=str(st.certs.ca))
    return ws_connect(f"wss://{st.host(sub)}{path}", ssl=ctx, additional_headers={"Cookie": st.cookie(sub)},
                      open_timeout=10, max_size=None)


def test_websocket_real_client_text_binary_and_large(st):
    with real_client(st, "ws") as ws:
        ws.send("text message")
        assert ws.recv(timeout=5) == "text message"
        data = os.urandom(3 << 20)  # larger than any buffer on the way
        ws.send(data)
        assert ws.recv(timeout=20) == data
        for i in range(50):
            ws.send(f"m{i}")
        assert [ws.recv(timeout=5) for _ in range(50)] == [f"m{i}" for i in range(50)]


def test_websocket_handshake_headers_reach_the_upstream(st):
    with real_client(st, "ws", "/headers") as ws:
        seen = json.loads(ws.recv(timeout=5))
    assert seen["upgrade"].lower() == "websocket" and "upgrade" in seen["connection"].lower(), seen
    assert "sec-websocket-key" in seen and seen.get("sec-websocket-version") == "13", seen
    assert "_pomerium" not in seen.get("cookie", ""), "postern's cookie leaked upstream"
    assert seen.get("x-forwarded-proto") == "https", seen


def test_websocket_bytes_sent_before_the_101_are_not_lost(st):
    raw = st.connect("ws")
    try:
        raw.send(handshake(st, "ws", "Upgrade", extra=ws_frame(b"early one") + ws_frame(b"early two")))
        status, headers, _ = raw.head()
        assert status == 101, headers
        assert read_ws_frame(raw) == (1, b"early one")
        assert read_ws_frame(raw) == (1, b"early two")
    finally:
        raw.close()


def test_websocket_close_handshake_ends_the_tunnel(st):
    raw = st.connect("ws")
    try:
        raw.send(handshake(st, "ws", "Upgrade"))
        assert raw.head()[0] == 101
        raw.send(ws_frame(struct.pack(">H", 1000), opcode=8))
        opcode, payload = read_ws_frame(raw)
        assert opcode == 8 and payload[:2] == struct.pack(">H", 1000)
        assert raw.closed(5), "the tunnel stayed open after the closing handshake"
    finally:
        raw.close()


def test_websocket_idle_timeout_closes_a_quiet_tunnel_only(st):
    with real_client(st, "wsidle") as ws:
        # Traffic every 0.4 s keeps it open past the 1 s idle timeout...
        for i in range(6):
            ws.send(f"tick {i}")
            assert ws.recv(timeout=5) == f"tick {i}"
            time.sleep(0.4)
        # ... silence closes it.
        time.sleep(1.8)
        with pytest.raises(ConnectionClosed):
            ws.send("after the idle timeout")
            ws.recv(timeout=3)


# ---------------------------------------------------------------------------------------------------------------
# B20: Server-Sent Events


@pytest.mark.parametrize("chunked", [False, True], ids=["close-delimited", "chunked"])
def test_b20_sse_events_arrive_one_by_one(st, chunked):
    n, interval = 6, 0.5
    raw = st.connect("sse")
    try:
        started = time.time()
        path = f"/events?n={n}&interval={interval}&chunked={int(chunked)}"
        raw.send(request("GET", st.host("sse"), path,
                         {"Accept": "text/event-stream", "Accept-Encoding": "gzip", "Cookie": st.cookie("sse")}))
        status, headers, _ = raw.head()
        assert time.time() - started < 0.5, "the response head took longer than 500 ms"
        assert status == 200, headers
        assert "content-length" not in headers, headers
        assert "content-encoding" not in headers, headers
        assert headers.get("content-type") == "text/event-stream", headers
        assert headers.get("transfer-encoding") == "chunked", headers
        events = []
        while len(events) < n:
            size = int(raw.f.readline().split(b";")[0], 16)
            assert size > 0, f"the stream ended after {len(events)} events"
            data = raw.f.read(size)
            assert raw.f.read(2) == b"\r\n"
            arrived = time.time()
            for m in re.finditer(rb"data: tick (\d+) sent=([0-9.]+)\n\n", data):
                events.append((int(m.group(1)), float(m.group(2)), arrived))
        assert [k for k, _, _ in events] == list(range(n))
        for k, sent, arrived in events:
            assert arrived - sent < 0.25, f"event {k} took {arrived - sent:.3f} s"
        for (k, _, arrived), (_, next_sent, _) in zip(events, events[1:]):
            assert arrived < next_sent, f"event {k} arrived only after the next one was sent"
        # Longer than the route's 1 s timeout: only the response head is bounded by it.
        assert time.time() - started > 2.4
    finally:
        raw.close()


def test_sse_stream_that_stops_moving_is_cut_by_the_idle_timeout(st):
    raw = st.connect("sse")
    try:
        raw.send(request("GET", st.host("sse"), "/events?n=3&interval=2.5&chunked=1", {"Cookie": st.cookie("sse")}))
        status, headers, _ = raw.head()
        assert status == 200
        first = raw.f.readline()
        raw.f.read(int(first, 16) + 2)  # the first event, sent at once; the next is 2.5 s away
        started = time.time()
        assert raw.closed(6), "a stream idle past idle_timeout (1 s) stayed open"
        assert time.time() - started < 2.4, "cut only after the next event was due"
    finally:
        raw.close()


# ---------------------------------------------------------------------------------------------------------------
# httpbin's streams


def direct(httpbin: str, path: str, **kw) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(httpbin + path, timeout=10, **kw)


def alice_get(st: Stack, path: str, **kw) -> requests.Response:
    st.cookie("bin")
    return st.browser.get(st.url("bin", path), timeout=20, allow_redirects=False, **kw)


def test_httpbin_stream_lines_pass_chunked(st):
    r = alice_get(st, "/stream/20", stream=True)
    assert r.status_code == 200
    assert r.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in r.headers
    lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [x["id"] for x in lines] == list(range(20))


def test_httpbin_drip_bytes_arrive_as_they_are_sent(st):
    started = time.time()
    r = alice_get(st, "/drip?duration=2&numbytes=4&delay=0&code=200", stream=True)
    assert r.status_code == 200 and r.headers.get("Content-Length") == "4"
    times = []
    for piece in r.iter_content(chunk_size=1):
        times.append(time.time() - started)
    assert len(times) == 4
    assert times[0] < 0.9, f"the first byte waited for the rest: {times}"
    assert times[-1] > 1.2, times


def test_httpbin_range_is_206_with_content_range(st, httpbin):
    r = alice_get(st, "/range/1024", headers={"Range": "bytes=10-19"})
    want = direct(httpbin, "/range/1024", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 == want.status_code
    assert r.headers["Content-Range"] == want.headers["Content-Range"] == "bytes 10-19/1024"
    assert r.content == want.content and len(r.content) == 10


def test_httpbin_bytes_are_exact(st, httpbin):
    r = alice_get(st, "/bytes/65536?seed=4")
    want = direct(httpbin, "/bytes/65536?seed=4")
    assert r.status_code == 200 and r.content == want.content and len(r.content) == 65536


def test_httpbin_stream_bytes_chunked(st, httpbin):
    r = alice_get(st, "/stream-bytes/100000?seed=7&chunk_size=1000")
    want = direct(httpbin, "/stream-bytes/100000?seed=7&chunk_size=1000")
    assert r.status_code == 200 and r.content == want.content and len(r.content) == 100000


# ---------------------------------------------------------------------------------------------------------------
# B24: HEAD, 304, 204 framing; B23: Expect: 100-continue


def test_b24_head_keeps_content_length_and_the_connection_stays_in_step(st):
    raw = st.connect("var")
    try:
        c = {"Cookie": st.cookie("var")}
        raw.send(request("HEAD", st.host("var"), "/file.bin", c))
        status, headers, _ = raw.head()
        assert status == 200
        assert headers.get("content-length") == "1488324", headers
        assert headers.get("accept-ranges") == "bytes" and headers.get("etag") == '"x"', headers
        raw.send(request("GET", st.host("var"), "/small", c))
        status, headers, body = raw.response()
        assert (status, body) == (200, b"small"), "framing went out of step after HEAD"
        # 304 and 204: no body, headers kept, connection still usable.
        raw.send(request("GET", st.host("var"), "/not-modified", {**c, "If-None-Match": '"x"'}))
        status, headers, body = raw.response()
        assert status == 304 and headers.get("etag") == '"x"' and headers.get("cache-control") == "max-age=60"
        raw.send(request("GET", st.host("var"), "/no-content", c))
        status, headers, body = raw.response()
        assert status == 204 and headers.get("x-kept") == "yes", headers
        assert "content-length" not in headers and "transfer-encoding" not in headers, headers
        raw.send(request("GET", st.host("var"), "/small", c))
        assert raw.response()[2] == b"small"
    finally:
        raw.close()


def test_b23a_expect_continue_upload_with_a_session(st):
    body = hashlib.sha256(b"seed").digest() * (1048576 // 32)
    raw = st.connect("var")
    try:
        raw.send(request("PUT", st.host("var"), "/dav/file.bin",
                         {"Cookie": st.cookie("var"), "Expect": "100-continue", "Content-Length": str(len(body))}))
        started = time.time()
        status, _, line = raw.head()
        assert time.time() - started < 1.0
        assert status == 100, line
        raw.send(body)
        status, headers, out = raw.response("PUT")
        assert status == 200, out
        got = json.loads(out)
        assert got["bytes"] == len(body) and got["sha256"] == hashlib.sha256(body).hexdigest()
        assert got["expect"].lower() == "100-continue", "the expectation did not reach the upstream"
    finally:
        raw.close()


def test_b23b_expect_continue_without_a_session_is_answered_promptly(st):
    raw = st.connect("var")
    try:
        raw.send(request("PUT", st.host("var"), "/dav/file.bin",
                         {"Expect": "100-continue", "Content-Length": "1048576"}))
        started = time.time()
        status, headers, line = raw.head()
        assert time.time() - started < 1.0
        assert status in (302, 401), f"{line} (no 100 Continue for a request that will be refused)"
        raw.body("PUT", status, headers)
        # Closed, or usable for another request: either way no hang.
        if not raw.closed(1.5):
            raw.send(request("GET", st.host("var"), "/ping"))
            assert raw.response()[0] == 200
    finally:
        raw.close()


def test_b23c_early_413_from_the_upstream_reaches_the_client(st):
    raw = st.connect("var")
    try:
        raw.send(request("PUT", st.host("var"), "/too-large",
                         {"Cookie": st.cookie("var"), "Expect": "100-continue", "Content-Length": "1048576"}))
        status, headers, body = raw.response("PUT")
        assert (status, body) == (413, b"too large"), headers
    finally:
        raw.close()


def test_early_413_while_the_body_streams_reaches_the_client(st):
    """Without Expect the client is already sending when the upstream refuses and closes: still the 413."""
    raw = st.connect("var")
    try:
        raw.send(request("PUT", st.host("var"), "/too-large",
                         {"Cookie": st.cookie("var"), "Content-Length": str(8 << 20)}))
        try:
            for _ in range(8 * 16):
                raw.send(b"x" * 65536)
        except (ConnectionError, ssl.SSLError):
            pass  # postern stopped reading: the answer is already on its way
        status, headers, body = raw.response("PUT")
        assert (status, body) == (413, b"too large"), headers
    finally:
        raw.close()


# ---------------------------------------------------------------------------------------------------------------
# Chunked request bodies and trailers, HTTP/1.0 clients


def test_chunked_upload_with_trailers(st):
    raw = st.connect("var")
    try:
        pieces = [os.urandom(n) for n in (1, 1000, 70000, 5)]
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        chunked += b"0\r\nX-Sum: 42\r\nX-Pomerium-Claim-Email: admin@example.com\r\nContent-Length: 3\r\n\r\n"
        raw.send(request("POST", st.host("var"), "/trailers",
                         {"Cookie": st.cookie("var"), "Transfer-Encoding": "chunked"}) + chunked)
        status, headers = raw.head()[:2]
        assert status == 200 and headers.get("transfer-encoding") == "chunked", headers
        body, trailers = raw.body("POST", status, headers)
        got = json.loads(body)
        assert got["bytes"] == sum(map(len, pieces))
        assert got["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
        assert got["trailers"] == {"x-sum": "42"}, "identity and framing trailers must not reach the upstream"
        assert trailers == {"x-checksum": "abc"}, "the upstream's trailer did not reach the client"
    finally:
        raw.close()


def test_http10_client_gets_sized_and_close_delimited_bodies(st):
    c = {"Cookie": st.cookie("var")}
    raw = st.connect("var")
    try:
        raw.send(request("GET", st.host("var"), "/small", c, version="HTTP/1.0"))
        status, headers, body = raw.response()
        assert (status, body) == (200, b"small") and headers.get("content-length") == "5"
        assert raw.closed(), "an HTTP/1.0 request without keep-alive must be closed after the response"
    finally:
        raw.close()
    raw = st.connect("var")
    try:
        raw.send(request("GET", st.host("var"), "/http10", c, version="HTTP/1.0"))
        status, headers, body = raw.response()
        assert (status, body) == (200, b"until the close"), headers
        assert "transfer-encoding" not in headers, "chunked sent to an HTTP/1.0 client"
    finally:
        raw.close()
    # A chunked upstream body to an HTTP/1.0 client: de-chunked, delimited by the close.
    raw = st.connect("bin")
    try:
        raw.send(request("GET", st.host("bin"), "/stream/3", {"Cookie": st.cookie("bin")}, version="HTTP/1.0"))
        status, headers, body = raw.response()
        assert status == 200 and "transfer-encoding" not in headers, headers
        assert [json.loads(x)["id"] for x in body.splitlines()] == [0, 1, 2]
    finally:
        raw.close()


def test_http10_keep_alive_client(st):
    c = {"Cookie": st.cookie("var"), "Connection": "keep-alive"}
    raw = st.connect("var")
    try:
        for _ in range(2):
            raw.send(request("GET", st.host("var"), "/small", c, version="HTTP/1.0"))
            status, headers, body = raw.response()
            assert (status, body) == (200, b"small")
            assert headers.get("connection", "").lower() == "keep-alive", headers
    finally:
        raw.close()

