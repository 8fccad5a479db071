"""`postern healthcheck` against a running postern, as Docker's HEALTHCHECK runs it: same environment, exit code
and one line of output.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest

import harness


def healthcheck(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(harness.postern_bin()), *args, "healthcheck"], env=env, capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_tls_listener_is_healthy(stack):
    r = healthcheck(stack.postern.env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == f"postern healthcheck: healthy (https://127.0.0.1:{stack.postern.port}/ping answered 200)"


def test_every_address_means_loopback(stack):
    """ADDRESS=:PORT (0.0.0.0) is probed on 127.0.0.1."""
    env = stack.postern.env | {"ADDRESS": f":{stack.postern.port}"}
    r = healthcheck(env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_nothing_listening_is_unhealthy(stack):
    env = stack.postern.env | {"ADDRESS": f"127.0.0.1:{harness.free_port()}"}
    r = healthcheck(env)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unhealthy" in lines[0] and "cannot connect to 127.0.0.1" in lines[0], r.stderr


def test_silent_listener_is_unhealthy_within_bounds(stack):
    """A port that accepts but never answers: exit 1 after about 3 seconds, not Docker's 30."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        held = []
        stop = threading.Event()

        def accept() -> None:
            s.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(s.accept()[0])
                except OSError:
                    pass

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        env = stack.postern.env | {"ADDRESS": f"127.0.0.1:{s.getsockname()[1]}"}
        t0 = time.monotonic()
        r = healthcheck(env)
        took = time.monotonic() - t0
        stop.set()
        t.join()
        for c in held:
            c.close()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "did not answer within 3 seconds" in r.stderr, r.stderr
    assert 2.5 < took < 8, took


def test_broken_configuration_is_unhealthy(stack):
    env = stack.postern.env | {"COOKIE_SECRET": "not base64 of 32 bytes"}
    r = healthcheck(env)
    assert r.returncode == 1
    assert "configuration has 1 problem(s)" in r.stderr and "--check" in r.stderr, r.stderr


@pytest.fixture(scope="module")
def plain(idp, httpbin, log_dir):
    """A postern with INSECURE_SERVER (plain HTTP behind DSM's nginx), listening on every address."""
    port = harness.free_port()
    env = harness.base_env() | {
        "ADDRESS": f":{port}",
        "INSECURE_SERVER": "TRUE",
        "AUTHENTICATE_SERVICE_URL": "https://auth.int.nas.example",
        "IDP_PROVIDER": "oidc",
        "IDP_PROVIDER_URL": idp,
        "IDP_CLIENT_ID": "postern",
        "IDP_CLIENT_SECRET": harness.CLIENT_SECRET,
        "COOKIE_SECRET": harness.secret32(),
        "POLICY": harness.b64(harness.policy_yaml([
            {"from": "https://public.int.nas.example", "to": httpbin,
             "allow_public_unauthenticated_access": True}])),
    }
    proc = harness.start_postern("postern-healthcheck-plain", env, f"http://127.0.0.1:{port}/ping", False,
                                 log_dir=log_dir)
    yield env, port
    proc.stop()


def test_plain_http_listener_is_healthy(plain):
    env, port = plain
    r = healthcheck(env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"http://127.0.0.1:{port}/ping answered 200" in r.stdout, r.stdout


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_file_gives_the_address(stack, tmp_path, where):
    """`postern --config F healthcheck` and `postern healthcheck --config F` both read the file's address."""
    conf = tmp_path / "postern.yaml"
    conf.write_text(f'address: "127.0.0.1:{stack.postern.port}"\n')
    env = {k: v for k, v in stack.postern.env.items() if k != "ADDRESS"}
    args = ["--config", str(conf), "healthcheck"] if where == "before" else ["healthcheck", "--config", str(conf)]
    r = subprocess.run([str(harness.postern_bin()), *args], env=env, capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"127.0.0.1:{stack.postern.port}/ping answered 200" in r.stdout, r.stdout
