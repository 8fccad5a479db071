"""A real browser (Debian's Chromium via playwright-core) through postern: what issue 2 asks of `make demo`.

alice opens httpbin, fills in the IdP's form and lands on httpbin; bob gets the 403 page. Screenshots are
kept in target/e2e-logs/. Skipped (with the reason) only when Chromium is not installed and cannot be.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import harness
from conftest import ALICE, BOB

BROWSER_DIR = harness.REPO / "tests" / "e2e" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def sign_in(url: str, email: str, out: str) -> dict:
    if not CHROMIUM:
        pytest.skip("Chromium is not installed (Debian package `chromium`; make deps installs it as root)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"playwright-core is not installed: run `npm ci` in {BROWSER_DIR} (make deps does)")
    arg = json.dumps({"url": url, "email": email, "domain": harness.TEST_DOMAIN, "out": out, "chromium": CHROMIUM})
    r = subprocess.run(["node", "signin.js", arg], cwd=BROWSER_DIR, capture_output=True, text=True, timeout=90,
                       env=harness.base_env())
    lines = r.stdout.strip().splitlines()
    assert lines, f"no result from the browser (exit {r.returncode}):\n{r.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert r.returncode == 0, f"the browser did not come back to {url}: {json.dumps(result, indent=1)[:3000]}"
    return result


def test_alice_in_a_browser(stack, log_dir):
    url = stack.postern.url("httpbin", "/headers")
    res = sign_in(url, ALICE, str(log_dir / "browser-alice"))
    assert res["status"] == 200, res
    assert f'"Host": "127.0.0.1:{stack.httpbin_port}"' in res["text"], res["text"]
    ours = [c for c in res["cookies"] if c["name"] == "_pomerium" and c["domain"] == f"httpbin.{harness.TEST_DOMAIN}"]
    assert ours and ours[0]["secure"] and ours[0]["httpOnly"] and ours[0]["sameSite"] == "Lax", res["cookies"]


def test_bob_in_a_browser_gets_the_403_page(stack, log_dir):
    url = stack.postern.url("httpbin", "/headers")
    res = sign_in(url, BOB, str(log_dir / "browser-bob"))
    assert res["status"] == 403, res
    assert BOB in res["text"], res["text"]
