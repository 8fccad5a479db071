"""Helpers for issue 4's end-to-end tests (streams, tunnels, WebDAV, upstream TLS, big files): a postern of a
module's own in front of test upstreams, alice's session cookie per route host, and a raw HTTP/1.1 client over TLS
for what `requests` hides (interim responses, framing, pipelining, HTTP/1.0).

Each module starts its own postern on one of `ports.streams`, whose callbacks the IdP accepts.
"""

from __future__ import annotations

import socket
import ssl
import sys
from pathlib import Path

import harness
from conftest import ALICE, new_browser

D = harness.TEST_DOMAIN
UPSTREAMS = Path(__file__).resolve().parent / "upstreams"


def start_upstream(name: str, script: str, *args, log_dir: Path, ready_port: int):
    """Start a test upstream from upstreams/ and wait until its port accepts connections."""
    proc = harness.start(name, [sys.executable, str(UPSTREAMS / script), *map(str, args)], harness.base_env(),
                         log_dir=log_dir)
    wait_port(proc, ready_port)
    return proc


def wait_port(proc, port: int, host: str = "127.0.0.1") -> None:
    harness.wait_until(proc, lambda: socket.create_connection((host, port), 1).close() or True,
                       f"{proc.name} listening on {port}")


class Stack:
    """A postern with routes `sub.postern.test:PORT`, and alice's cookie for each route host, made on first use."""

    def __init__(self, name: str, port: int, routes: list[dict], certs: harness.Certs, idp_port: int,
                 log_dir: Path, extra_env: dict | None = None):
        self.port, self.certs = port, certs
        routes = [dict(r) for r in routes]
        for r in routes:
            r["from"] = f"https://{r['from']}.{D}:{port}"
        policy = harness.policy_yaml(routes)
        (log_dir / f"{name}-policy.yaml").write_text(policy)
        env = harness.postern_env(port=port, certs=certs, idp_port=idp_port, policy=policy, extra=extra_env)
        self.postern = harness.Postern(port, None, env)
        first = routes[0]["from"] + "/ping"
        self.postern.proc = harness.start_postern(name, env, first, str(certs.ca), log_dir)
        self._cookies: dict[str, str] = {}
        self.browser = new_browser(certs)

    def url(self, sub: str, path: str = "/", scheme: str = "https") -> str:
        return f"{scheme}://{sub}.{D}:{self.port}{path}"

    def host(self, sub: str) -> str:
        return f"{sub}.{D}:{self.port}"

    def cookie(self, sub: str) -> str:
        """alice's `Cookie` header value for route host `sub` (signs in once per host)."""
        if sub not in self._cookies:
            url = self.url(sub, "/.pomerium/")
            if self._cookies:  # the authenticate host has a session already: no IdP round trip
                walk = harness.follow(self.browser, "GET", url)
            else:
                walk = harness.login(self.browser, url, ALICE)
            assert walk.response.status_code == 200 and walk.hops[-1].url == url, walk.trace()
            host = f"{sub}.{D}"
            self._cookies[sub] = "; ".join(f"{c.name}={c.value}" for c in self.browser.cookies
                                           if c.domain.lstrip(".") == host)
        return self._cookies[sub]

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.certs.ca))
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def connect(self, sub: str, timeout: float = 10) -> "Raw":
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return Raw(self.ssl_context().wrap_socket(raw, server_hostname=f"{sub}.{D}"))

    def stop(self) -> None:
        self.browser.close()
        self.postern.proc.stop()


class Raw:
    """HTTP/1.1 by hand over one connection: send bytes, read heads (interim ones too) and bodies."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.f = sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self) -> tuple[int, dict[str, str], str]:
        """(status, headers with lower-case names (repeats joined by ', '), status line)."""
        line = self.f.readline()
        if not line:
            raise ConnectionError("closed before a response head")
        status_line = line.decode("latin-1").rstrip("\r\n")
        headers: dict[str, str] = {}
        while (line := self.f.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            k = k.strip().lower()
            headers[k] = f"{headers[k]}, {v.strip()}" if k in headers else v.strip()
        return int(status_line.split(" ")[1]), headers, status_line

    def body(self, method: str, status: int, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        """The body as framed (and chunked trailers)."""
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b"", {}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            out, trailers = bytearray(), {}
            while True:
                size = int(self.f.readline().split(b";")[0], 16)
                if size == 0:
                    while (line := self.f.readline()) not in (b"\r\n", b""):
                        k, _, v = line.decode().partition(":")
                        trailers[k.strip().lower()] = v.strip()
                    return bytes(out), trailers
                out += self.f.read(size)
                assert self.f.read(2) == b"\r\n"
        if "content-length" in headers:
            return self.f.read(int(headers["content-length"])), {}
        return self.f.read(), {}

    def response(self, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        """The next final response (interim ones skipped)."""
        while True:
            status, headers, _ = self.head()
            if status >= 200 or status == 101:
                body, _ = self.body(method, status, headers)
                return status, headers, body

    def closed(self, wait: float = 3) -> bool:
        self.sock.settimeout(wait)
        try:
            return self.f.read(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass


def request(method: str, sub_host: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"",
            version: str = "HTTP/1.1") -> bytes:
    h = {"Host": sub_host, **(headers or {})}
    if body and "Content-Length" not in h and "Transfer-Encoding" not in h:
        h["Content-Length"] = str(len(body))
    return (f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode() \
        + body

