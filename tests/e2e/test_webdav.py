"""Issue 4: WebDAV through postern against a real WebDAV server (PyPI `wsgidav` on cheroot), with alice's session:
PROPFIND, PROPPATCH, MKCOL, PUT, COPY, MOVE, LOCK, UNLOCK with their bodies and headers (Depth, Destination,
Overwrite, If, Lock-Token).

`Destination` names the public URL. On a route that rewrites Host to the upstream's, postern rewrites a
Destination on the route's own origin to the upstream's scheme and authority (wsgidav, like most servers, refuses a
Destination on another host); with preserve_host_header it passes unchanged.
"""

from __future__ import annotations

import re

import pytest

import harness
from conftest import ALICE, Ports
from streams_stack import Stack, wait_port

LOCKINFO = b"""<?xml version="1.0" encoding="utf-8"?>
<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>
<D:owner><D:href>alice@example.com</D:href></D:owner></D:lockinfo>"""
PROPPATCH = b"""<?xml version="1.0" encoding="utf-8"?>
<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:postern-test"><D:set><D:prop><Z:colour>teal</Z:colour></D:prop>
</D:set></D:propertyupdate>"""
PROPFIND_COLOUR = b"""<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:" xmlns:Z="urn:postern-test"><D:prop><Z:colour/></D:prop></D:propfind>"""


@pytest.fixture(scope="module")
def dav(idp, ports: Ports, certs: harness.Certs, log_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("dav-root")
    port = harness.free_port()
    config = tmp_path_factory.mktemp("dav-config") / "wsgidav.yaml"
    config.write_text(f"""host: 127.0.0.1
port: {port}
server: cheroot
provider_mapping:
  "/": "{root}"
http_authenticator:
  domain_controller: null
  accept_basic: false
  accept_digest: false
  default_to_digest: false
simple_dc:
  user_mapping:
    "*": true
property_manager: true
lock_storage: true
verbose: 3
""")
    wsgidav = str(harness.venv_bin("wsgidav"))
    up = harness.start("wsgidav", [wsgidav, "-c", str(config)], harness.base_env(), log_dir=log_dir)
    wait_port(up, port)
    routes = [
        {"from": "dav", "to": f"http://127.0.0.1:{port}", "allowed_users": [ALICE]},
        {"from": "davp", "to": f"http://127.0.0.1:{port}", "allowed_users": [ALICE], "preserve_host_header": True},
    ]
    s = Stack("postern-webdav", ports.streams[2], routes, certs, ports.idp, log_dir)
    yield s, root
    s.stop()
    up.stop()


def dav_request(s: Stack, sub: str, method: str, path: str, **kw):
    s.cookie(sub)
    return s.browser.request(method, s.url(sub, path), timeout=10, allow_redirects=False, **kw)


@pytest.mark.parametrize("sub", ["dav", "davp"], ids=["host-rewritten", "host-preserved"])
def test_webdav_methods_round_trip(dav, sub):
    s, root = dav
    base = f"/{sub}-work"
    r = dav_request(s, sub, "MKCOL", base)
    assert r.status_code == 201, r.text
    r = dav_request(s, sub, "MKCOL", base)
    assert r.status_code == 405, "MKCOL on an existing collection"
    r = dav_request(s, sub, "PUT", f"{base}/a.txt", data=b"alpha")
    assert r.status_code in (201, 204), r.text

    r = dav_request(s, sub, "PROPFIND", base, headers={"Depth": "1"})
    assert r.status_code == 207, r.text
    assert "a.txt" in r.text and "multistatus" in r.text

    # COPY and MOVE: Destination is the public URL.
    r = dav_request(s, sub, "COPY", f"{base}/a.txt", headers={"Destination": s.url(sub, f"{base}/b.txt")})
    assert r.status_code == 201, f"{r.status_code} {r.text[:500]}"
    assert (root / f"{sub}-work" / "b.txt").read_bytes() == b"alpha"
    r = dav_request(s, sub, "COPY", f"{base}/a.txt",
                    headers={"Destination": s.url(sub, f"{base}/b.txt"), "Overwrite": "F"})
    assert r.status_code == 412, "Overwrite: F must reach the server"
    r = dav_request(s, sub, "MOVE", f"{base}/b.txt", headers={"Destination": s.url(sub, f"{base}/c.txt")})
    assert r.status_code == 201, f"{r.status_code} {r.text[:500]}"
    assert not (root / f"{sub}-work" / "b.txt").exists() and (root / f"{sub}-work" / "c.txt").exists()

    # PROPPATCH then PROPFIND of a dead property.
    r = dav_request(s, sub, "PROPPATCH", f"{base}/c.txt", data=PROPPATCH,
                    headers={"Content-Type": "application/xml"})
    assert r.status_code == 207 and "200 OK" in r.text, r.text
    r = dav_request(s, sub, "PROPFIND", f"{base}/c.txt", data=PROPFIND_COLOUR,
                    headers={"Depth": "0", "Content-Type": "application/xml"})
    assert r.status_code == 207 and "teal" in r.text, r.text

    # LOCK; a write without the token is refused, with it (If) accepted; UNLOCK with Lock-Token.
    r = dav_request(s, sub, "LOCK", f"{base}/c.txt", data=LOCKINFO,
                    headers={"Content-Type": "application/xml", "Timeout": "Second-60", "Depth": "0"})
    assert r.status_code == 200, r.text
    token = r.headers["Lock-Token"].strip("<>")
    assert re.match(r"opaquelocktoken:", token), token
    r = dav_request(s, sub, "PUT", f"{base}/c.txt", data=b"no token")
    assert r.status_code == 423, "a locked resource was written without its token"
    r = dav_request(s, sub, "PUT", f"{base}/c.txt", data=b"with token", headers={"If": f"(<{token}>)"})
    assert r.status_code in (200, 204), r.text
    assert (root / f"{sub}-work" / "c.txt").read_bytes() == b"with token"
    r = dav_request(s, sub, "UNLOCK", f"{base}/c.txt", headers={"Lock-Token": f"<{token}>"})
    assert r.status_code == 204, r.text
    r = dav_request(s, sub, "DELETE", base)
    assert r.status_code == 204, r.text


def test_webdav_options_advertise_dav(dav):
    s, _ = dav
    r = dav_request(s, "dav", "OPTIONS", "/")
    assert r.status_code == 200 and "1" in r.headers.get("DAV", ""), r.headers
    assert "PROPFIND" in r.headers.get("Allow", ""), r.headers

