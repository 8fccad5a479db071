"""Issue 4: upstreams over TLS (httpbin under gunicorn with a test CA's certificate for `backend.internal`),
tls_custom_ca / tls_custom_ca_file, tls_server_name, tls_skip_verify, client certificates (tls_client_cert[_file] /
tls_client_key[_file]) for an upstream that requires one, and an IPv6 literal upstream (`http://[::1]:PORT`).

Routes here are public: what is tested is the upstream leg.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
import requests

import harness
from conftest import Ports
from streams_stack import Stack, wait_port


def openssl(cwd: Path, *args: str) -> None:
    r = subprocess.run([harness.require_openssl(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)}:\n{r.stderr}"


def make_ca(d: Path, name: str) -> None:
    openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-days", "2", "-subj", f"/CN=postern test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_leaf(d: Path, ca: str, name: str, cn: str, usage: str, san: str | None = None) -> None:
    openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={cn}")
    ext = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
           f"extendedKeyUsage={usage}\n" + (f"subjectAltName={san}\n" if san else ""))
    (d / f"{name}.ext").write_text(ext)
    openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem")


def b64file(p: Path) -> str:
    return base64.b64encode(p.read_bytes()).decode()


def gunicorn_httpbin(name: str, bind: str, log_dir: Path, *tls: str):
    argv = [harness.venv_bin("gunicorn"), "--bind", bind, "--workers", "1", "--threads", "4",
            "--access-logfile", "-", "--no-control-socket", *tls, "httpbin:app"]
    return harness.start(name, argv, harness.base_env(), log_dir=log_dir)


@pytest.fixture(scope="module")
def tls_stack(idp, ports: Ports, certs: harness.Certs, log_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("upstream-tls")
    make_ca(d, "server-ca")
    make_leaf(d, "server-ca", "backend", "backend.internal", "serverAuth", "DNS:backend.internal")
    make_ca(d, "client-ca")
    make_leaf(d, "client-ca", "client", "postern", "clientAuth")
    plain_tls, mutual_tls, v6 = (harness.free_port() for _ in range(3))
    server_tls = ["--certfile", str(d / "backend.pem"), "--keyfile", str(d / "backend.key")]
    ups = [
        gunicorn_httpbin("httpbin-tls", f"127.0.0.1:{plain_tls}", log_dir, *server_tls),
        # --cert-reqs 2 is ssl.CERT_REQUIRED: no client certificate, no handshake.
        gunicorn_httpbin("httpbin-mtls", f"127.0.0.1:{mutual_tls}", log_dir, *server_tls, "--cert-reqs", "2",
                         "--ca-certs", str(d / "client-ca.pem")),
        gunicorn_httpbin("httpbin-v6", f"[::1]:{v6}", log_dir),
    ]
    for up, port, host in zip(ups, (plain_tls, mutual_tls, v6), ("127.0.0.1", "127.0.0.1", "::1")):
        wait_port(up, port, host)
    pub = {"allow_public_unauthenticated_access": True}
    name = {"tls_server_name": "backend.internal"}
    ca_file = {"tls_custom_ca_file": str(d / "server-ca.pem")}
    tls_to, mtls_to = f"https://127.0.0.1:{plain_tls}", f"https://127.0.0.1:{mutual_tls}"
    routes = [
        {"from": "cafile", "to": tls_to, **name, **ca_file, **pub},
        {"from": "cainline", "to": tls_to, **name, "tls_custom_ca": b64file(d / "server-ca.pem"), **pub},
        {"from": "unknownca", "to": tls_to, **name, **pub},
        {"from": "wrongname", "to": tls_to, "tls_server_name": "other.internal", **ca_file, **pub},
        {"from": "skipverify", "to": tls_to, "tls_skip_verify": True, **pub},
        {"from": "mtlsfile", "to": mtls_to, **name, **ca_file, "tls_client_cert_file": str(d / "client.pem"),
         "tls_client_key_file": str(d / "client.key"), **pub},
        {"from": "mtlsinline", "to": mtls_to, **name, **ca_file, "tls_client_cert": b64file(d / "client.pem"),
         "tls_client_key": b64file(d / "client.key"), **pub},
        {"from": "mtlsnone", "to": mtls_to, **name, **ca_file, **pub},
        {"from": "v6", "to": f"http://[::1]:{v6}", **pub},
    ]
    s = Stack("postern-upstream-tls", ports.streams[3], routes, certs, ports.idp, log_dir)
    yield s, v6
    s.stop()
    for u in ups:
        u.stop()


def get(s: Stack, sub: str, path: str = "/headers") -> requests.Response:
    return s.browser.get(s.url(sub, path), timeout=10, allow_redirects=False)


@pytest.mark.parametrize("sub", ["cafile", "cainline", "skipverify", "mtlsfile", "mtlsinline"])
def test_https_upstream_is_reached(tls_stack, sub):
    s, _ = tls_stack
    r = get(s, sub)
    assert r.status_code == 200, r.text[:500]
    assert r.json()["headers"]["Host"].startswith("127.0.0.1:"), "Host is the upstream's authority"
    # Bodies both ways over the TLS leg.
    data = bytes(range(256)) * 1000
    r = s.browser.post(s.url(sub, "/anything"), data=data, timeout=10,
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200 and base64.b64decode(r.json()["data"].split(",", 1)[1]) == data


@pytest.mark.parametrize("sub", ["unknownca", "wrongname", "mtlsnone"])
def test_https_upstream_that_cannot_be_trusted_or_refuses_us_is_502(tls_stack, sub):
    s, _ = tls_stack
    r = get(s, sub)
    assert r.status_code == 502, f"{r.status_code} {r.text[:300]}"
    assert "TLS" in r.text or "closed" in r.text or "answer" in r.text, r.text[:500]


def test_ipv6_literal_upstream(tls_stack):
    s, port = tls_stack
    r = get(s, "v6")
    assert r.status_code == 200, r.text[:500]
    assert r.json()["headers"]["Host"] == f"[::1]:{port}"
