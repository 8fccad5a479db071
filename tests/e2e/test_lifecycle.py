"""Stopping postern: SIGTERM (docker stop, systemd) or SIGINT ends it cleanly, letting a request in flight finish.

As PID 1 in a FROM-scratch container postern must handle SIGTERM itself (the kernel ignores it otherwise), and a
profiler (heaptrack) writes its data only on a clean exit.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests

import harness

NAS = "int.nas.example"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_postern_after_the_request_in_flight(idp, httpbin, log_dir, sig):
    port = harness.free_port()
    env = harness.guide_env(address=f"127.0.0.1:{port}", idp_url=idp, policy=f"- from: https://public.{NAS}\n  to: {httpbin}\n"
                              f"  allow_public_unauthenticated_access: true\n")
    proc = harness.start_postern(f"postern-{sig.name}", env, f"http://127.0.0.1:{port}/ping", False, log_dir)
    result: dict = {}

    def slow_request() -> None:
        with requests.Session() as s:
            s.trust_env = False
            r = s.get(f"http://127.0.0.1:{port}/delay/1", headers={"Host": f"public.{NAS}"}, timeout=10)
            result["status"] = r.status_code

    t = threading.Thread(target=slow_request)
    t.start()
    time.sleep(0.3)  # the request is at httpbin now
    proc.popen.send_signal(sig)
    t.join(timeout=10)
    assert result.get("status") == 200, (result, proc.log_tail())
    assert proc.popen.wait(timeout=10) == 0, proc.log_tail()
    log = proc.log_tail()
    assert "received: no new connections" in log and "stopped" in log, log
