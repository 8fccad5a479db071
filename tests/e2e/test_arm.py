"""A static ARM binary under qemu-user: what a DiskStation would run (`make test-arm`: aarch64, the Realtek-based
models; `make test-armv7`: the older 32-bit ones).

Runs only when POSTERN_ARM_BIN names the binary (`make test-arm` sets it to target/static/postern-aarch64) and the
matching qemu (`qemu-aarch64-static` or `qemu-arm-static`, Debian qemu-user-static) is installed; otherwise every
test here skips. The smoke test:
`--version`, `--check` on examples/postern.yaml, `/ping`, `postern healthcheck`, a public route forwarding to
httpbin, and one sign-in through the real IdP (its own IdP instance, so its redirect URI can name this port).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

import harness
from conftest import ALICE, BOB

ARM_BIN = os.environ.get("POSTERN_ARM_BIN", "")


def describe(path: str) -> str:
    """`file -b` of the binary ("" when there is none)."""
    if not (path and Path(path).exists()):
        return ""
    return subprocess.run(["file", "-b", path], capture_output=True, text=True).stdout


KIND = describe(ARM_BIN)
AARCH64 = "ARM aarch64" in KIND
QEMU = shutil.which("qemu-aarch64-static" if AARCH64 else "qemu-arm-static") or ""
EXAMPLE = harness.REPO / "examples" / "postern.yaml"

pytestmark = pytest.mark.skipif(
    not (ARM_BIN and QEMU),
    reason="POSTERN_ARM_BIN is unset or qemu-aarch64-static is missing (`make test-arm` runs these)",
)


def argv(*args: str) -> list[str]:
    binary = Path(ARM_BIN)
    if not binary.exists():
        pytest.fail(f"{binary} not found: run `make static` (or `make test-arm`)")
    return [QEMU, str(binary), *args]


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv(*args), env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_is_a_static_arm_executable():
    want = "ELF 64-bit LSB executable, ARM aarch64" if AARCH64 else "ELF 32-bit LSB executable, ARM, EABI5"
    assert KIND.startswith(want) and "statically linked" in KIND, KIND


def test_version():
    r = run(["--version"], harness.base_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("postern "), r.stdout


def test_check_example_config():
    env = harness.base_env() | {"COOKIE_SECRET": harness.secret32(), "IDP_CLIENT_SECRET": "from-the-env"}
    r = run(["--config", str(EXAMPLE), "--check"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration OK" in r.stdout and "3 route(s)" in r.stdout, r.stdout


@pytest.fixture(scope="module")
def arm(httpbin, certs: harness.Certs, log_dir: Path):
    """IdP of its own + the aarch64 postern under qemu, TLS with the test certificate, the e2e policy."""
    idp_port, port = harness.free_port(), harness.free_port()
    idp = harness.start_idp(idp_port, [f"https://auth.{harness.TEST_DOMAIN}:{port}/oauth2/callback"], log_dir,
                            name="idp-arm")
    o = lambda sub: f"https://{sub}.{harness.TEST_DOMAIN}:{port}"  # noqa: E731
    policy = harness.policy_yaml([
        {"from": o("httpbin"), "to": httpbin, "allowed_users": [ALICE]},
        {"from": o("public"), "to": httpbin, "allow_public_unauthenticated_access": True},
    ])
    env = harness.postern_env(port=port, certs=certs, idp_port=idp_port, policy=policy,
                              extra={"LOG_LEVEL": "info"})
    p = harness.Postern(port, None, env)
    proc = harness.start("postern-arm", argv(), env, log_dir=log_dir)

    def ready() -> bool:
        with requests.Session() as s:
            s.trust_env = False
            s.get(p.url("public", "/ping"), verify=str(certs.ca), timeout=5)
        return True

    harness.wait_until(proc, ready, "answer on /ping under qemu", timeout=max(harness.READY_TIMEOUT, 60))
    p.proc = proc
    yield p
    proc.stop()
    idp.stop()


def test_ping(arm, browser):
    r = browser.get(arm.url("public", "/ping"), timeout=10)
    assert r.status_code == 200 and r.text == "OK\n", r.text


def test_healthcheck(arm):
    r = run(["healthcheck"], arm.env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "healthy" in r.stdout, r.stdout


def test_public_route_forwards_to_httpbin(arm, browser):
    r = browser.get(arm.url("public", "/get?show_env=1&via=arm"), timeout=10, allow_redirects=False)
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["args"]["via"] == "arm", body
    lower = {k.lower(): v for k, v in body["headers"].items()}
    assert lower.get("x-forwarded-host", "").split(":")[0] == f"public.{harness.TEST_DOMAIN}", lower


def test_login_through_the_idp(arm, browser):
    walk = harness.login(browser, arm.url("httpbin", "/headers"), ALICE)
    assert walk.response.status_code == 200, walk.trace()
    lower = {k.lower(): v for k, v in walk.response.json()["headers"].items()}
    assert lower.get("x-pomerium-claim-email", ALICE) == ALICE, lower
    # Signed in as someone not on the list: the 403 page, from the same binary.
    with harness_browser(browser) as other:
        denied = harness.login(other, arm.url("httpbin", "/headers"), BOB)
        assert denied.response.status_code == 403, denied.trace()


def harness_browser(like: requests.Session) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = like.verify
    s.headers["Accept"] = like.headers["Accept"]
    return s
