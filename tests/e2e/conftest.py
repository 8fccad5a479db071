"""Fixtures: one stack of real parts for the whole session (IdP, httpbin, postern), and fresh browsers.

Ports are free loopback ports picked at start; `*.postern.test` and `*.int.nas.example` resolve to 127.0.0.1 in
this process only. Logs of every process stay in target/e2e-logs/ after the run.

`guide_site` is the Synology guide's set-up in its two topologies, on the same IdP, httpbin and certificate:
"dsm" (a real nginx as DSM's reverse proxy terminates TLS; postern runs with INSECURE_SERVER=TRUE behind it) and
"alone" (postern terminates TLS itself). E2E_BREAK_POLICY=1 removes the allowed user from the guide's policy, to show
that the browser suite then fails.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import harness
from harness import Postern

harness.resolve_to_loopback(harness.TEST_DOMAIN)
harness.resolve_to_loopback(harness.NAS_DOMAIN)
harness.stop_on_sigterm()

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@other.example"
MALLORY = "mallory@example.com"


def test_policy(port: int) -> str:
    o = lambda sub: f"https://{sub}.{harness.TEST_DOMAIN}:{port}"  # noqa: E731
    return harness.policy_yaml([
        {"from": o("httpbin"), "to": "http://127.0.0.1:{HTTPBIN}", "allowed_users": [ALICE]},
        {"from": o("public"), "to": "http://127.0.0.1:{HTTPBIN}", "allow_public_unauthenticated_access": True},
        {"from": o("staff"), "to": "http://127.0.0.1:{HTTPBIN}", "allowed_groups": ["staff"]},
        {"from": o("domain"), "to": "http://127.0.0.1:{HTTPBIN}", "allowed_domains": ["example.com"]},
        {"from": o("claims"), "to": "http://127.0.0.1:{HTTPBIN}", "allowed_users": [ALICE],
         "pass_identity_headers": True},
    ])


@dataclass
class Stack:
    idp_port: int
    httpbin_port: int
    certs: harness.Certs
    postern: Postern
    log_dir: Path

    @property
    def idp_url(self) -> str:
        return f"http://127.0.0.1:{self.idp_port}"


@pytest.fixture(scope="session")
def log_dir() -> Path:
    d = harness.LOG_DIR
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


@pytest.fixture(scope="session")
def certs(log_dir: Path) -> harness.Certs:
    names = [f"*.{harness.TEST_DOMAIN}", harness.TEST_DOMAIN]
    return harness.make_certs(log_dir / "certs", names)


@dataclass
class Ports:
    idp: int
    httpbin: int
    postern: int
    es256: int
    routes: int  # test_routes.py's own postern
    # issue 4's posterns: test_streams, test_keepalive, test_webdav, test_upstream_tls, test_bigfile, short sessions
    streams: tuple[int, ...] = ()


@pytest.fixture(scope="session")
def ports() -> Ports:
    return Ports(*(harness.free_port() for _ in range(5)), streams=tuple(harness.free_port() for _ in range(6)))


@pytest.fixture(scope="session")
def idp(log_dir: Path, ports: Ports):
    """The real IdP; its clients accept the callbacks of every postern instance of the run."""
    redirect_uris = [f"https://auth.{harness.TEST_DOMAIN}:{p}/oauth2/callback"
                     for p in (ports.postern, ports.es256, ports.routes, *ports.streams)]
    # The guide's authenticate host, in both topologies: the browser reaches it on the default port 443.
    redirect_uris.append(f"https://auth.{harness.NAS_DOMAIN}/oauth2/callback")
    proc = harness.start_idp(ports.idp, redirect_uris, log_dir)
    yield f"http://127.0.0.1:{ports.idp}"
    proc.stop()


@pytest.fixture(scope="session")
def httpbin(log_dir: Path, ports: Ports):
    proc = harness.start_httpbin(ports.httpbin, log_dir)
    yield f"http://127.0.0.1:{ports.httpbin}"
    proc.stop()


def _run_postern(name: str, port: int, client_id: str, ports: Ports, certs: harness.Certs, log_dir: Path):
    policy = test_policy(port).replace("{HTTPBIN}", str(ports.httpbin))
    (log_dir / f"{name}-policy.yaml").write_text(policy)
    env = harness.postern_env(port=port, certs=certs, idp_port=ports.idp, policy=policy, client_id=client_id)
    p = Postern(port, None, env)
    p.proc = harness.start_postern(name, env, p.url("httpbin", "/ping"), str(certs.ca), log_dir)
    return p


@pytest.fixture(scope="session")
def stack(idp, httpbin, ports: Ports, certs: harness.Certs, log_dir: Path):
    """IdP, httpbin and postern (client `postern`, RS256 id_tokens), all real, on loopback."""
    p = _run_postern("postern", ports.postern, "postern", ports, certs, log_dir)
    yield Stack(ports.idp, ports.httpbin, certs, p, log_dir)
    p.proc.stop()


@pytest.fixture(scope="session")
def es256(idp, httpbin, ports: Ports, certs: harness.Certs, log_dir: Path):
    """A second postern whose IdP client (`postern-es256`) signs id_tokens with ES256."""
    p = _run_postern("postern-es256", ports.es256, "postern-es256", ports, certs, log_dir)
    yield p
    p.proc.stop()


@pytest.fixture
def browser(certs: harness.Certs):
    """A fresh cookie-keeping client that trusts the test CA and ignores proxy settings."""
    with requests.Session() as s:
        s.trust_env = False
        s.verify = str(certs.ca)
        s.headers["User-Agent"] = "postern-e2e (requests)"
        s.headers["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"
        yield s


def new_browser(certs: harness.Certs) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(certs.ca)
    s.headers["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"
    return s


@pytest.fixture(scope="session")
def alice(stack: Stack, certs: harness.Certs) -> requests.Session:
    """A browser signed in as alice on the httpbin route (shared by read-only tests)."""
    s = new_browser(certs)
    walk = harness.login(s, stack.postern.url("httpbin", "/get"), ALICE)
    assert walk.response.status_code == 200, walk.trace()
    yield s
    s.close()


# ---------------------------------------------------------------------------------------------------------------
# The Synology guide, in its two topologies

BREAK_POLICY = os.environ.get("E2E_BREAK_POLICY") == "1"


@pytest.fixture(scope="session")
def nas_certs(log_dir: Path) -> harness.Certs:
    """The guide's wildcard certificate for *.int.nas.example, from a throwaway CA of its own."""
    return harness.make_certs(log_dir / "nas-certs", [f"*.{harness.NAS_DOMAIN}"], ca_name="postern test NAS CA")


@dataclass
class GuideSite:
    topology: str  # "dsm" or "alone"
    port: int  # where the browser's https://*.int.nas.example (port 443) really goes: nginx, or postern's TLS
    postern: harness.Proc
    nginx: harness.Proc | None
    certs: harness.Certs
    idp_url: str
    policy: str


@pytest.fixture(scope="module", params=["dsm", "alone"])
def guide_site(request, idp, httpbin, nas_certs: harness.Certs, log_dir: Path):
    topology = request.param
    if topology == "dsm" and not harness.nginx_bin():
        pytest.skip("nginx is not installed (Debian package `nginx`; make deps installs it as root)")
    allowed = [] if BREAK_POLICY else [ALICE]
    policy = harness.guide_policy(httpbin, allowed)
    (log_dir / f"guide-{topology}-policy.yaml").write_text(policy)
    port = harness.free_port()
    nginx = None
    if topology == "dsm":
        upstream = harness.free_port()  # the guide's 32443
        env = harness.guide_env(address=f"127.0.0.1:{upstream}", idp_url=idp, policy=policy,
                                extra={"TRUSTED_PROXIES": "127.0.0.1/32"})  # the guide's optional setting
        proc = harness.start_postern("postern-dsm", env, f"http://127.0.0.1:{upstream}/ping", False, log_dir)
        try:
            nginx = harness.start_nginx("nginx-dsm", port, upstream, nas_certs, log_dir)
        except BaseException:
            proc.stop()
            raise
    else:
        env = harness.guide_env(address=f"127.0.0.1:{port}", idp_url=idp, policy=policy, certs=nas_certs)
        proc = harness.start_postern("postern-alone", env, f"https://httpbin.{harness.NAS_DOMAIN}:{port}/ping",
                                     str(nas_certs.ca), log_dir)
    yield GuideSite(topology, port, proc, nginx, nas_certs, idp, policy)
    if nginx:
        nginx.stop()
    proc.stop()
