"""The Synology guide (docs/synology.md), walked by a person in a real browser, in both topologies.

"dsm": Debian's nginx plays DSM's reverse proxy (HTTPS with the wildcard certificate, HTTP/2, HSTS) in front of
postern with INSECURE_SERVER=TRUE; "alone": postern terminates TLS itself. The browser (Chromium via
playwright-core, tests/e2e/browser/guide.js) opens https://httpbin.int.nas.example exactly as a person would; each
step below judges what that person sees: status, page text, where the browser is.

Screenshots: target/e2e-logs/screenshots/<topology>-<page>.png. E2E_UPDATE_DOCS=1 copies the DSM topology's 403 and
user page to docs/. E2E_BREAK_POLICY=1 (conftest) removes the allowed user from the policy: this suite must fail.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

import harness
from conftest import ALICE, BOB, GuideSite

BROWSER_DIR = harness.REPO / "tests" / "e2e" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NAS = harness.NAS_DOMAIN
HTTPBIN = f"https://httpbin.{NAS}/"
IDP_LOGIN_TEXT = "Sign-in"  # oidc-provider's login form: heading and button


def spki_sha256(cert) -> str:
    """base64 SHA-256 of the certificate's SubjectPublicKeyInfo, for Chromium's --ignore-certificate-errors-spki-list."""
    openssl = harness.require_openssl()
    pub = subprocess.run([openssl, "x509", "-in", str(cert), "-noout", "-pubkey"], capture_output=True, check=True)
    der = subprocess.run([openssl, "pkey", "-pubin", "-outform", "der"], input=pub.stdout, capture_output=True,
                         check=True)
    digest = subprocess.run([openssl, "dgst", "-sha256", "-binary"], input=der.stdout, capture_output=True,
                            check=True)
    return base64.b64encode(digest.stdout).decode()


class Walk:
    """The browser's walk: one observation per step, by name."""

    def __init__(self, data: dict, site: GuideSite):
        self.data = data
        self.site = site
        self.steps = {s["name"]: s for s in data["steps"]}

    def __getitem__(self, name: str) -> dict:
        if name not in self.steps:
            done = [s["name"] for s in self.data["steps"]]
            pytest.fail(f"[{self.site.topology}] the walk never reached step {name!r}: {self.data.get('error')}; "
                        f"steps done: {done}; logs: {self.site.postern.log}")
        return self.steps[name]


def show(step: dict) -> str:
    return json.dumps({k: step.get(k) for k in ("url", "status", "title", "hsts", "protocol", "text")}, indent=1)[:2500]


@pytest.fixture(scope="module")
def walk(guide_site: GuideSite, log_dir) -> Walk:
    if not CHROMIUM:
        pytest.skip("Chromium is not installed (Debian package `chromium`; make deps installs it as root)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"playwright-core is not installed: run `npm ci` in {BROWSER_DIR} (make deps does)")
    shots = log_dir / "screenshots"
    shots.mkdir(exist_ok=True)
    result = log_dir / f"guide-{guide_site.topology}-walk.json"
    arg = {
        "chromium": CHROMIUM, "domain": NAS, "port": guide_site.port, "spki": spki_sha256(guide_site.certs.cert),
        "idp": guide_site.idp_url, "alice": ALICE, "bob": BOB, "out": str(shots), "prefix": guide_site.topology,
        "result": str(result),
    }
    r = subprocess.run(["node", "guide.js", json.dumps(arg)], cwd=BROWSER_DIR, capture_output=True, text=True,
                       timeout=120, env=harness.base_env())
    assert result.exists(), f"the browser wrote no result (exit {r.returncode}):\n{r.stderr[-3000:]}"
    data = json.loads(result.read_text())
    if os.environ.get("E2E_UPDATE_DOCS") == "1" and guide_site.topology == "dsm":
        docs = harness.REPO / "docs"
        docs.mkdir(exist_ok=True)
        for shot, name in (("403", "403.png"), ("user-page", "user-page.png")):
            src = shots / f"dsm-{shot}-card.png"
            if src.exists():
                shutil.copyfile(src, docs / name)
    return Walk(data, guide_site)


def at_idp_login(step: dict, site: GuideSite) -> None:
    assert urlsplit(step["url"]).netloc == urlsplit(site.idp_url).netloc, show(step)
    assert step["status"] == 200 and IDP_LOGIN_TEXT in step["text"], show(step)


def on_httpbin(step: dict) -> None:
    assert step["url"].startswith(HTTPBIN), show(step)


def test_opening_the_app_shows_the_idp_login(walk: Walk, guide_site: GuideSite):
    at_idp_login(walk["open"], guide_site)


def test_another_account_gets_the_403_page_naming_it(walk: Walk):
    s = walk["bob"]
    on_httpbin(s)
    assert s["status"] == 403, show(s)
    assert BOB in s["text"] and "sign out" in s["text"].lower(), show(s)
    assert "httpbin" not in s["title"].lower(), show(s)


def test_the_403_sign_out_link_lets_you_switch_account(walk: Walk, guide_site: GuideSite):
    at_idp_login(walk["switch"], guide_site)


def test_the_allowed_user_reaches_httpbin(walk: Walk, guide_site: GuideSite):
    s = walk["alice"]
    assert s["url"] == HTTPBIN, show(s)
    assert s["status"] == 200, show(s)
    assert "httpbin" in s["title"] and "HTTP Request & Response Service" in s["text"], show(s)
    if guide_site.topology == "dsm":
        # DSM's reverse proxy, not postern, speaks HTTP/2 and adds HSTS.
        assert s["protocol"] == "h2", show(s)
        assert s["hsts"] and "max-age=" in s["hsts"], show(s)


def test_the_session_cookie_is_per_host_secure_httponly_lax(walk: Walk):
    cookies = walk["alice"]["cookies"]
    ours = [c for c in cookies if c["name"] == "_pomerium" and c["domain"] == f"httpbin.{NAS}"]
    assert ours and ours[0]["secure"] and ours[0]["httpOnly"] and ours[0]["sameSite"] == "Lax", cookies
    assert not [c for c in cookies if c["domain"].lstrip(".") == NAS], cookies  # no cookie for the whole domain


def test_httpbin_sees_https_and_no_postern_cookie(walk: Walk, guide_site: GuideSite):
    s = walk["headers"]
    assert s["status"] == 200, show(s)
    headers = json.loads(s["text"])["headers"]
    # Behind DSM with TRUSTED_PROXIES, nginx's X-Forwarded-For (the browser) is kept and postern adds nginx.
    hops = 2 if guide_site.topology == "dsm" else 1
    assert headers.get("X-Forwarded-For") == ", ".join(["127.0.0.1"] * hops), headers
    assert headers.get("X-Forwarded-Proto") == "https", headers
    assert headers.get("X-Forwarded-Host") == f"httpbin.{NAS}", headers
    assert "_pomerium" not in headers.get("Cookie", ""), headers


def test_the_user_page_shows_the_user(walk: Walk):
    s = walk["user"]
    assert s["status"] == 200, show(s)
    assert ALICE in s["text"] and "Signed in" in s["text"] and "Sign out" in s["text"], show(s)


def test_sign_out_then_the_next_visit_goes_to_the_idp(walk: Walk, guide_site: GuideSite):
    s = walk["sign_out"]
    assert urlsplit(s["url"]).hostname == f"auth.{NAS}", show(s)
    assert s["status"] == 200 and "signed out" in s["text"].lower(), show(s)
    assert "sign in again" in s["text"].lower(), show(s)
    at_idp_login(walk["revisit"], guide_site)


def test_saying_no_at_the_idp_shows_the_login_failed_page(walk: Walk):
    s = walk["cancel"]
    assert urlsplit(s["url"]).hostname == f"auth.{NAS}", show(s)
    assert s["status"] in (400, 401, 403), show(s)
    assert "Sign-in failed" in s["text"] and "Try again" in s["text"], show(s)


def test_a_forged_idp_callback_is_refused(walk: Walk):
    s = walk["tampered"]
    assert s["status"] in (400, 403), show(s)
    assert "Sign-in failed" in s["text"] and ALICE not in s["text"], show(s)


def test_an_unknown_host_gets_the_404_page(walk: Walk):
    s = walk["unknown"]
    assert s["url"] == f"https://unknown.{NAS}/", show(s)
    assert s["status"] == 404 and f"unknown.{NAS}" in s["text"], show(s)
    assert "postern" in s["text"] and "DSM error page" not in s["title"], show(s)
