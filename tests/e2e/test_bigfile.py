"""Issue 4 / B21: big transfers through postern with alice's session, in constant memory: 2 GiB down and 2 GiB up
(E2E_BIG_GIB changes the size), SHA-256 checked both ways, against the test upstream `bigfile.py`; a chunked
download; a Range request far into the file. postern's peak RSS (VmHWM) may grow by less than 64 MiB.

With BENCH_OUT set, the figures (sizes, seconds, VmRSS/VmHWM before and after) are appended to that file:
`make bench-stream` (bench/stream-rss.sh) does that.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
import time
from pathlib import Path

import pytest

import harness
import pattern
import streams_stack
from conftest import ALICE, Ports
from streams_stack import Stack

GIB = 1 << 30
SIZE = int(float(os.environ.get("E2E_BIG_GIB", "2")) * GIB)
MIB = 1 << 20


@pytest.fixture(scope="module")
def big(idp, ports: Ports, certs: harness.Certs, log_dir):
    port = harness.free_port()
    up = streams_stack.start_upstream("bigfile", "bigfile.py", port, log_dir=log_dir, ready_port=port)
    # timeout 1s: the transfers take longer, and only the wait for the response head may be bounded by it.
    routes = [{"from": "big", "to": f"http://127.0.0.1:{port}", "allowed_users": [ALICE], "timeout": "1s"}]
    # Info, not debug: the access log line per request is all that is needed here.
    s = Stack("postern-bigfile", ports.streams[4], routes, certs, ports.idp, log_dir,
              extra_env={"LOG_LEVEL": "info"})
    yield s
    s.stop()
    up.stop()


def memory_kib(s: Stack) -> dict[str, int]:
    status = Path(f"/proc/{s.postern.proc.popen.pid}/status").read_text()
    return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in status.splitlines())
            if k in ("VmRSS", "VmHWM")}


def record(name: str, **figures) -> None:
    out = os.environ.get("BENCH_OUT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"test": name, **figures}) + "\n")


def connection(s: Stack) -> http.client.HTTPSConnection:
    """A plain http.client connection (big.postern.test resolves to loopback in this process)."""
    return http.client.HTTPSConnection(f"big.{harness.TEST_DOMAIN}", s.port, context=s.ssl_context(), timeout=30)


def get_stream(s: Stack, path: str, headers: dict | None = None):
    c = connection(s)
    c.putrequest("GET", path)
    c.putheader("Cookie", s.cookie("big"))
    for k, v in (headers or {}).items():
        c.putheader(k, v)
    c.endheaders()
    return c, c.getresponse()


class Pinger(threading.Thread):
    """Asks postern for /ping every 50 ms on its own connection while a transfer runs: the single-threaded
    executor must keep serving others (a transfer whose both sides are always ready must still yield)."""

    def __init__(self, s: Stack):
        super().__init__(daemon=True)
        self.s, self.stop, self.worst, self.count = s, threading.Event(), 0.0, 0

    def run(self) -> None:
        c = connection(self.s)
        while not self.stop.is_set():
            t = time.monotonic()
            c.request("GET", "/ping")
            c.getresponse().read()
            self.worst = max(self.worst, time.monotonic() - t)
            self.count += 1
            time.sleep(0.05)
        c.close()


def test_b21_download_2gib_sized_with_flat_memory(big):
    s = big
    s.cookie("big")
    before = memory_kib(s)
    pinger = Pinger(s)
    pinger.start()
    started = time.monotonic()
    c, r = get_stream(s, f"/file.bin?size={SIZE}")
    assert r.status == 200
    assert r.getheader("Content-Length") == str(SIZE), "Content-Length must pass unchanged"
    h, n = hashlib.sha256(), 0
    first = None
    while piece := r.read(MIB):
        if first is None:
            first = time.monotonic() - started
        h.update(piece)
        n += len(piece)
    took = time.monotonic() - started
    c.close()
    pinger.stop.set()
    pinger.join(5)
    after = memory_kib(s)
    assert first is not None and first < 1.0, f"first byte after {first} s"
    assert pinger.count > 5 and pinger.worst < 0.5, \
        f"other requests waited up to {pinger.worst:.2f} s during the download ({pinger.count} answered)"
    assert n == SIZE and h.hexdigest() == pattern.sha256(SIZE)
    grew = after["VmHWM"] - before["VmRSS"]
    record("download", bytes=SIZE, seconds=round(took, 1), before=before, after=after)
    assert grew < 64 * 1024, f"postern's peak RSS grew by {grew} KiB during a {SIZE >> 20} MiB download"


def test_b21_upload_2gib_sized_with_flat_memory(big):
    s = big
    before = memory_kib(s)
    started = time.monotonic()
    c = connection(s)
    c.putrequest("PUT", "/upload", skip_accept_encoding=True)
    c.putheader("Cookie", s.cookie("big"))
    c.putheader("Content-Length", str(SIZE))
    c.endheaders()
    for piece in pattern.stream(SIZE):
        c.send(piece)
    r = c.getresponse()
    got = json.loads(r.read())
    took = time.monotonic() - started
    c.close()
    after = memory_kib(s)
    assert r.status == 200
    assert got == {"bytes": SIZE, "sha256": pattern.sha256(SIZE)}
    grew = after["VmHWM"] - before["VmRSS"]
    record("upload", bytes=SIZE, seconds=round(took, 1), before=before, after=after)
    assert grew < 64 * 1024, f"postern's peak RSS grew by {grew} KiB during a {SIZE >> 20} MiB upload"


def test_b21_chunked_download_and_chunked_upload(big):
    s = big
    size = 256 * MIB + 12345
    c, r = get_stream(s, f"/chunked?size={size}")
    assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked" and not r.getheader("Content-Length")
    h = hashlib.sha256()
    while piece := r.read(MIB):
        h.update(piece)
    c.close()
    assert h.hexdigest() == pattern.sha256(size)
    # Up, chunked (no Content-Length): requests sends a generator that way.
    st = s.browser.put(s.url("big", "/upload"), data=pattern.stream(size), timeout=60)
    assert st.status_code == 200 and st.json() == {"bytes": size, "sha256": pattern.sha256(size)}


def test_b21_range_far_into_the_file(big):
    s = big
    c, r = get_stream(s, f"/file.bin?size={2 * GIB}", {"Range": "bytes=1000000000-1000000099"})
    body = r.read()
    c.close()
    assert r.status == 206
    assert r.getheader("Content-Range") == f"bytes 1000000000-1000000099/{2 * GIB}"
    assert len(body) == 100
    assert body == b"".join(pattern.stream(1000000100, 1000000000))
