"""Issue 4: the upstream keep-alive pool against an upstream that closes idle connections (B26), a non-idempotent
request is never replayed, and a WebSocket tunnel closes when the session it was opened with expires.

The test upstream `keepalive.py` closes every connection idle for exactly 1 s. B26 runs against two more: one
announcing its idle close (`Keep-Alive: timeout=N`), one not, both at B26's timing shortened five times (5 s -> 1 s)
and 13 requests. `E2E_B26_SCALE=1 E2E_B26_COUNT=200` runs the case at its real timing (about 18 minutes).
"""

from __future__ import annotations

import json
import os
import ssl
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

import harness
import streams_stack
from conftest import ALICE, Ports
from streams_stack import Stack

B26_SCALE = float(os.environ.get("E2E_B26_SCALE", "0.2"))
B26_COUNT = int(os.environ.get("E2E_B26_COUNT", "13"))
B26_IDLE = 5 * B26_SCALE


@pytest.fixture(scope="module")
def ka(idp, ports: Ports, certs: harness.Certs, log_dir):
    hinted, unannounced, silent = harness.free_port(), harness.free_port(), harness.free_port()
    hint = max(1, round(B26_IDLE))
    ups = [
        streams_stack.start_upstream("keepalive-b26-hinted", "keepalive.py", hinted, B26_IDLE, hint,
                                     log_dir=log_dir, ready_port=hinted),
        streams_stack.start_upstream("keepalive-b26-unannounced", "keepalive.py", unannounced, B26_IDLE,
                                     log_dir=log_dir, ready_port=unannounced),
        streams_stack.start_upstream("keepalive-1s", "keepalive.py", silent, 1, log_dir=log_dir, ready_port=silent),
    ]
    routes = [
        {"from": "hinted", "to": f"http://127.0.0.1:{hinted}", "allowed_users": [ALICE]},
        {"from": "unannounced", "to": f"http://127.0.0.1:{unannounced}", "allowed_users": [ALICE]},
        {"from": "silent", "to": f"http://127.0.0.1:{silent}", "allowed_users": [ALICE]},
    ]
    s = Stack("postern-keepalive", ports.streams[1], routes, certs, ports.idp, log_dir)
    yield s, f"http://127.0.0.1:{silent}"
    s.stop()
    for u in ups:
        u.stop()


def schedule(n: int) -> list[float]:
    """B26's intervals 4.9, 5.0, 5.05, 5.1 ... 6.0 s (times E2E_B26_SCALE), repeated to n requests."""
    base = [4.9, 5.0, 5.05] + [5.0 + 0.1 * i for i in range(1, 11)]
    return [round(base[i % len(base)] * B26_SCALE, 3) for i in range(n)]


def run_schedule(s: Stack, sub: str, intervals: list[float]) -> list[tuple[int, str]]:
    s.cookie(sub)
    out = []
    for wait in intervals:
        # Not /ping: postern answers that itself on every host.
        r = s.browser.get(s.url(sub, "/app/ping"), timeout=10, allow_redirects=False)
        assert r.status_code != 200 or r.text.startswith("pong "), f"not the upstream's answer: {r.text[:200]}"
        out.append((r.status_code, r.text))
        time.sleep(wait)
    return out


def test_b26_upstream_announcing_its_idle_close_gets_no_502(ka):
    s, _ = ka
    results = run_schedule(s, "hinted", schedule(B26_COUNT))
    assert [st for st, _ in results] == [200] * len(results), results


def test_upstream_closing_idle_connections_after_1s_gives_no_502_at_1_2s_intervals(ka):
    s, _ = ka
    results = run_schedule(s, "silent", [1.2] * 6)
    assert [st for st, _ in results] == [200] * len(results), results


def test_b26_schedule_against_an_upstream_that_does_not_announce_its_timeout(ka):
    """The racy case: the pool cannot know the upstream's timeout, so requests land on connections closing right
    then; a GET that fails on a reused connection before any response byte is retried once on a fresh one."""
    s, _ = ka
    results = run_schedule(s, "unannounced", schedule(B26_COUNT))
    assert [st for st, _ in results] == [200] * len(results), results


def stats(url: str) -> dict:
    with requests.Session() as direct:
        direct.trust_env = False
        return json.loads(direct.get(url + "/stats", timeout=5).text)


def test_get_failing_on_a_reused_connection_is_retried_once(ka):
    """The upstream drops a request that arrives on a reused connection, before any response byte (what a
    connection closed under postern's feet looks like): the GET is sent again on a new connection."""
    s, silent = ka
    s.cookie("silent")
    before = stats(silent).get("GET /hangup", 0)
    for _ in range(2):  # the second one goes out on the connection the first one left in the pool
        r = s.browser.get(s.url("silent", "/hangup"), timeout=10, allow_redirects=False)
        assert r.status_code == 200 and r.text.startswith("pong "), r.text[:300]
    assert stats(silent).get("GET /hangup", 0) - before == 3, "one drop, one retry"


def test_post_is_never_replayed_on_a_fresh_connection(ka):
    s, silent = ka
    s.cookie("silent")
    warm = s.browser.get(s.url("silent", "/app/ping"), timeout=10, allow_redirects=False)
    assert warm.status_code == 200, "a connection is left in the pool"
    before = stats(silent).get("POST /hangup", 0)
    # The upstream reads the POST's body on the reused connection and closes without answering.
    r = s.browser.post(s.url("silent", "/hangup"), data=b"once", timeout=10, allow_redirects=False)
    assert r.status_code == 502, r.text
    assert stats(silent).get("POST /hangup", 0) - before == 1, "the POST was sent upstream again"


@pytest.fixture(scope="module")
def short_sessions(idp, ports: Ports, certs: harness.Certs, log_dir):
    port = harness.free_port()
    up = streams_stack.start_upstream("ws-echo-short", "ws_echo.py", port, log_dir=log_dir, ready_port=port)
    routes = [{"from": "ws", "to": f"http://127.0.0.1:{port}", "allow_websockets": True, "allowed_users": [ALICE]}]
    s = Stack("postern-short-sessions", ports.streams[5], routes, certs, ports.idp, log_dir,
              extra_env={"COOKIE_EXPIRE": "4s"})
    yield s
    s.stop()
    up.stop()


def test_tunnel_closes_when_its_session_expires(short_sessions):
    s = short_sessions
    cookie = s.cookie("ws")
    signed_in = time.time()
    ctx = ssl.create_default_context(cafile=str(s.certs.ca))
    with ws_connect(f"wss://{s.host('ws')}/", ssl=ctx, additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed):
            for i in range(40):  # traffic all along: only the session's end can close it
                ws.send(f"tick {i}")
                assert ws.recv(timeout=5) == f"tick {i}"
                time.sleep(0.25)
    lived = time.time() - signed_in
    assert 2.5 < lived < 7, f"the tunnel lived {lived:.1f} s with a 4 s session"
