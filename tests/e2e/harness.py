"""Real parts for postern's end-to-end tests and `make demo`.

Owns: starting and stopping the processes (the oidc-provider IdP, httpbin under gunicorn, postern itself) on
loopback ports with bounded waits and logs in target/e2e-logs/; a throwaway CA and wildcard certificates made with
the `openssl` CLI; test-only name resolution of `*.postern.test` to 127.0.0.1; and `login()`, which walks the real
redirect chain of a sign-in hop by hop, filling in the IdP's real HTML login form.
"""

from __future__ import annotations

import atexit
import base64
import html.parser
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

REPO = Path(__file__).resolve().parents[2]
IDP_DIR = REPO / "tests" / "e2e" / "idp"
LOG_DIR = Path(os.environ.get("E2E_LOG_DIR", REPO / "target" / "e2e-logs"))
TEST_DOMAIN = "postern.test"
CLIENT_SECRET = "postern-e2e-client-secret"
# Every wait is bounded; a part that is not ready by then fails the run with its log tail.
READY_TIMEOUT = float(os.environ.get("E2E_READY_TIMEOUT", "30"))
HTTP_TIMEOUT = 10
MAX_HOPS = 15


def postern_bin() -> Path:
    """The postern binary under test: $POSTERN_BIN, else $CARGO_TARGET_DIR/debug/postern, else target/debug."""
    if os.environ.get("POSTERN_BIN"):
        return Path(os.environ["POSTERN_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "postern"


def venv_bin(name: str) -> str:
    """A console script of the venv this interpreter runs in (gunicorn), falling back to PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def secret32() -> str:
    """What `postern gen-secret` prints: base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---------------------------------------------------------------------------------------------------------------
# Processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(grace)


_started: list[Proc] = []


def stop_everything() -> None:
    """Stop every process this module started that still runs (at exit, and on SIGTERM via stop_on_sigterm)."""
    for p in reversed(_started):
        p.stop(grace=3)


atexit.register(stop_everything)


def stop_on_sigterm() -> None:
    """Turn SIGTERM (e.g. from `timeout`) into KeyboardInterrupt so fixtures tear down and nothing is left running."""

    def on_term(*_args) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, on_term)


def _die_with_parent() -> None:
    """In the child: ask Linux to send SIGTERM when the harness (its parent) dies, even by SIGKILL, so a killed
    test run or demo leaves no IdP, httpbin or postern behind."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def start(name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None,
          log_dir: Path = LOG_DIR) -> Proc:
    """Start a process in its own process group with stdout+stderr to log_dir/name.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    out = open(log, "wb")
    try:
        popen = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True,
                                 preexec_fn=_die_with_parent)
    finally:
        out.close()
    proc = Proc(name, popen, log)
    _started.append(proc)
    return proc


def wait_until(proc: Proc, ready, what: str, timeout: float = READY_TIMEOUT) -> None:
    """Poll ready() (True when up) until timeout; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before {what}; "
                               f"log {proc.log}:\n{proc.log_tail()}")
        try:
            if ready():
                return
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name}: no {what} within {timeout:.0f}s (last error: {last}); "
                       f"log {proc.log}:\n{proc.log_tail()}")


def base_env() -> dict[str, str]:
    """A small, predictable environment: no proxies, no inherited postern settings."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT") if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def start_idp(port: int, redirect_uris: list[str], log_dir: Path = LOG_DIR, name: str = "idp") -> Proc:
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(f"oidc-provider is not installed: run `npm ci` in {IDP_DIR} (make deps does)")
    env = base_env() | {
        "IDP_REDIRECT_URIS": ",".join(redirect_uris),
        "IDP_CLIENT_SECRET": CLIENT_SECRET,
        "NODE_ENV": "development",
    }
    for k in ("IDP_TOKEN_AUTH", "IDP_STRICT_ACCOUNTS"):
        if k in os.environ:
            env[k] = os.environ[k]
    proc = start(name, ["node", "server.js", str(port)], env, cwd=IDP_DIR, log_dir=log_dir)
    url = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
    wait_until(proc, lambda: http_get_plain(url)[0] == 200, "OpenID discovery document")
    return proc


def start_httpbin(port: int, log_dir: Path = LOG_DIR) -> Proc:
    argv = [venv_bin("gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
            "--access-logfile", "-", "--no-control-socket", "httpbin:app"]
    proc = start("httpbin", argv, base_env(), log_dir=log_dir)
    wait_until(proc, lambda: http_get_plain(f"http://127.0.0.1:{port}/get")[0] == 200, "httpbin /get")
    return proc


def http_get_plain(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A GET over plain http with no proxies (readiness checks)."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:  # a status is an answer too
        return e.code, e.read()


# ---------------------------------------------------------------------------------------------------------------
# Certificates


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path


def require_openssl() -> str:
    path = shutil.which("openssl")
    if not path:
        raise RuntimeError("the `openssl` command is missing: install Debian's `openssl` (make deps does as root)")
    return path


def make_certs(out_dir: Path, names: list[str], ca_name: str = "postern test CA", days: int = 7,
               reuse: bool = False) -> Certs:
    """A throwaway CA and one leaf certificate for `names` (wildcards allowed), RSA 2048, PKCS#8 keys."""
    openssl = require_openssl()
    out_dir.mkdir(parents=True, exist_ok=True)
    certs = Certs(out_dir / "ca.pem", out_dir / "cert.pem", out_dir / "key.pem")
    if reuse and all(p.exists() for p in (certs.ca, certs.cert, certs.key)):
        check = subprocess.run([openssl, "x509", "-checkend", "86400", "-noout", "-in", str(certs.cert)],
                               capture_output=True)
        if check.returncode == 0:
            return certs

    def run(*args: str) -> None:
        r = subprocess.run([openssl, *args], cwd=out_dir, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed:\n{r.stderr}")

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", str(days), "-subj", f"/CN={ca_name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "leaf.csr",
        "-subj", f"/CN={names[0]}")
    (out_dir / "leaf.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid:always\n"
        f"subjectAltName={','.join('DNS:' + n for n in names)}\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", str(days), "-sha256", "-extfile", "leaf.ext", "-out", "cert.pem")
    return certs


# ---------------------------------------------------------------------------------------------------------------
# Name resolution (test process only)


def resolve_to_loopback(suffix: str = TEST_DOMAIN) -> None:
    """Make `suffix` and every name under it resolve to 127.0.0.1 in this process; URLs, Host and SNI keep the name.
    Calls add up: each wraps the resolver in place, so several suffixes can be mapped."""
    previous = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, (str, bytes)):
            h = host.decode() if isinstance(host, bytes) else host
            h = h.rstrip(".").lower()
            if h == suffix or h.endswith("." + suffix):
                host = "127.0.0.1"
        return previous(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


# ---------------------------------------------------------------------------------------------------------------
# postern


@dataclass
class Postern:
    port: int
    proc: Proc | None
    env: dict[str, str]
    domain: str = TEST_DOMAIN

    def origin(self, sub: str) -> str:
        return f"https://{sub}.{self.domain}:{self.port}"

    def url(self, sub: str, path: str = "/") -> str:
        return self.origin(sub) + path

    @property
    def auth_host(self) -> str:
        return f"auth.{self.domain}"


def policy_yaml(routes: list[dict]) -> str:
    """YAML for a policy list; JSON is YAML, and keeps quoting exact."""
    return "\n".join(f"- {json.dumps(r)}" for r in routes) + "\n"


def postern_env(*, port: int, certs: Certs, idp_port: int, policy: str, client_id: str = "postern",
                domain: str = TEST_DOMAIN, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The guide's environment variables for a postern that terminates TLS itself."""
    env = base_env() | {
        "ADDRESS": f"127.0.0.1:{port}",
        "CERTIFICATE_FILE": str(certs.cert),
        "CERTIFICATE_KEY_FILE": str(certs.key),
        "AUTHENTICATE_SERVICE_URL": f"https://auth.{domain}:{port}",
        "IDP_PROVIDER": "oidc",
        "IDP_PROVIDER_URL": f"http://127.0.0.1:{idp_port}",
        "IDP_CLIENT_ID": client_id,
        "IDP_CLIENT_SECRET": CLIENT_SECRET,
        "COOKIE_SECRET": secret32(),
        "POLICY": b64(policy),
        "LOG_LEVEL": os.environ.get("E2E_POSTERN_LOG_LEVEL", "debug"),
        "RUST_BACKTRACE": "1",
    }
    env.update(extra or {})
    return env


def start_postern(name: str, env: dict[str, str], ready_url: str, verify: str | bool,
                  log_dir: Path = LOG_DIR) -> Proc:
    """Start postern and wait until it answers HTTP on ready_url (any status counts as serving)."""
    import requests

    binary = postern_bin()
    if not binary.exists():
        raise RuntimeError(f"postern binary not found at {binary}: run `make build` (or set POSTERN_BIN)")
    proc = start(name, [str(binary)], env, log_dir=log_dir)

    def ready() -> bool:
        with requests.Session() as s:
            s.trust_env = False
            s.get(ready_url, verify=verify, timeout=2, allow_redirects=False)
        return True

    wait_until(proc, ready, f"answer on {ready_url}")
    return proc


# ---------------------------------------------------------------------------------------------------------------
# The Synology guide: its names, its policy, its environment, and DSM's reverse proxy (a real nginx)

NAS_DOMAIN = "int.nas.example"


def guide_policy(httpbin_url: str, allowed_users: list[str]) -> str:
    """The guide's policy, fixed: `allowed_users:` (the guide put the e-mails under `to:`), httpbin as the app."""
    users = "".join(f"    - {u}\n" for u in allowed_users) if allowed_users else "    []\n"
    return (f"- from: https://httpbin.{NAS_DOMAIN}\n"
            f"  to: {httpbin_url}\n"
            f"  allowed_users:\n{users}")


def guide_env(*, address: str, idp_url: str, policy: str, certs: Certs | None = None,
              extra: dict[str, str] | None = None) -> dict[str, str]:
    """The guide's environment variables, and nothing else: INSECURE_SERVER=TRUE behind DSM's nginx when `certs`
    is None, else postern terminates TLS itself with the wildcard certificate (base64 PEM, as in a container)."""
    env = base_env() | {
        "ADDRESS": address,
        "AUTHENTICATE_SERVICE_URL": f"https://auth.{NAS_DOMAIN}",
        "IDP_PROVIDER": "oidc",
        "IDP_PROVIDER_URL": idp_url,
        "IDP_CLIENT_ID": "postern",
        "IDP_CLIENT_SECRET": CLIENT_SECRET,
        "COOKIE_SECRET": secret32(),
        "POLICY": b64(policy),
        "LOG_LEVEL": os.environ.get("E2E_POSTERN_LOG_LEVEL", "debug"),
    }
    if certs is None:
        env["INSECURE_SERVER"] = "TRUE"
    else:
        env["CERTIFICATE"] = b64(certs.cert.read_text())
        env["CERTIFICATE_KEY"] = b64(certs.key.read_text())
    env.update(extra or {})
    return env


# DSM 7's reverse-proxy rule as DSM writes it into /etc/nginx/sites-enabled/server.ReverseProxy.conf (HTTPS source
# with HTTP/2 and HSTS, HTTP destination), with loopback ports and files under the test's prefix.
DSM_SERVER_BLOCK = """
    server {{
        listen 127.0.0.1:{port} ssl http2;
        server_name *.{domain};

        ssl_certificate {cert};
        ssl_certificate_key {key};

        add_header Strict-Transport-Security "max-age=15768000; includeSubdomains; preload" always;

        location / {{
            proxy_connect_timeout 60;
            proxy_read_timeout 60;
            proxy_send_timeout 60;
            proxy_intercept_errors off;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_pass http://localhost:{upstream};
        }}

        error_page 403 404 500 502 503 504 /dsm_error_page;
        location /dsm_error_page {{
            internal;
            root {prefix}/html;
            rewrite (.*) /error.html break;
            allow all;
        }}
    }}
"""

NGINX_CONF = """# Written by tests/e2e/harness.py: DSM's reverse proxy on loopback. Run: nginx -p PREFIX -c nginx.conf
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    default_type application/octet-stream;
    ssl_protocols TLSv1.2 TLSv1.3;
{server}}}
"""

DSM_ERROR_HTML = ("<!DOCTYPE html><title>DSM error page</title><h1>Sorry, the page you are looking for is not "
                  "found.</h1><p>(DSM's own error page: nginx, not postern, answered.)</p>\n")


def nginx_bin() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def start_nginx(name: str, port: int, upstream_port: int, certs: Certs, log_dir: Path = LOG_DIR,
                domain: str = NAS_DOMAIN) -> Proc:
    """A real nginx (Debian's) in the foreground with its own prefix under log_dir/name, configured as DSM's reverse
    proxy: HTTPS with the wildcard certificate on 127.0.0.1:port, forwarding to http://localhost:upstream_port."""
    binary = nginx_bin()
    if not binary:
        raise RuntimeError("nginx is not installed: Debian package `nginx` (make deps installs it as root)")
    prefix = (log_dir / name).resolve()
    for d in ("tmp", "html", "logs"):
        (prefix / d).mkdir(parents=True, exist_ok=True)
    (prefix / "html" / "error.html").write_text(DSM_ERROR_HTML)
    server = DSM_SERVER_BLOCK.format(port=port, domain=domain, cert=certs.cert.resolve(), key=certs.key.resolve(),
                                     upstream=upstream_port, prefix=prefix)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, server=server))
    argv = [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    check = subprocess.run(argv + ["-t"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t refused {conf}:\n{check.stderr}")
    proc = start(name, argv, base_env(), log_dir=log_dir)

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(proc, ready, f"a listening socket on 127.0.0.1:{port}")
    return proc


# ---------------------------------------------------------------------------------------------------------------
# The browser's walk through a sign-in


class _Forms(html.parser.HTMLParser):
    """Every <form> of a page with its method, action and <input>/<button> name=value pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"method": (a.get("method") or "get").lower(), "action": a.get("action") or "",
                               "fields": {}, "types": {}})
        elif tag in ("input", "button") and self.forms and a.get("name"):
            form = self.forms[-1]
            form["fields"][a["name"]] = a.get("value") or ""
            form["types"][a["name"]] = (a.get("type") or "text").lower()


def parse_forms(page: str) -> list[dict]:
    p = _Forms()
    p.feed(page)
    return p.forms


@dataclass
class Hop:
    method: str
    url: str
    status: int
    location: str | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def __str__(self) -> str:
        loc = f" -> {self.location}" if self.location else ""
        return f"{self.method} {self.url} {self.status}{loc}"


@dataclass
class Walk:
    """The hops of one browser walk and the final response."""
    hops: list[Hop] = field(default_factory=list)
    response: object = None  # requests.Response

    def trace(self) -> str:
        return "\n".join(f"  {i}: {h}" for i, h in enumerate(self.hops))

    def hosts(self) -> list[str]:
        """Consecutive distinct hosts visited, e.g. [route, auth, idp, auth, route]."""
        out: list[str] = []
        for h in self.hops:
            if not out or out[-1] != h.host:
                out.append(h.host)
        return out


def follow(session, method: str, url: str, data: dict | None = None, walk: Walk | None = None,
           stop=None, max_hops: int = MAX_HOPS, **kwargs) -> Walk:
    """Follow redirects one at a time (GET after 301/302/303) until a non-redirect, stop(url) or max_hops."""
    walk = walk or Walk()
    for _ in range(max_hops):
        r = session.request(method, url, data=data, allow_redirects=False, timeout=HTTP_TIMEOUT, **kwargs)
        loc = r.headers.get("Location")
        walk.hops.append(Hop(method, url, r.status_code, loc))
        walk.response = r
        if not (r.is_redirect and loc):
            return walk
        nxt = urljoin(url, loc)
        if stop and stop(nxt):
            return walk
        if r.status_code in (301, 302, 303):
            method, data = "GET", None
        url = nxt
        if len(walk.hops) >= max_hops:
            break
    raise AssertionError(f"more than {max_hops} hops:\n{walk.trace()}")


def login(session, url: str, email: str, *, idp_host: str = "127.0.0.1", auth_host: str | None = None,
          password: str = "any password works") -> Walk:
    """Sign in as `email` the way a browser does, starting from `url` on a route host.

    Asserts the hosts of the walk: route -> auth -> IdP (login form, consent if shown) -> auth -> route, and
    returns the walk whose final response is the one for `url` itself (200 or a 403 page).
    """
    route_host = urlsplit(url).hostname
    auth_host = auth_host or "auth." + route_host.split(".", 1)[1]
    walk = Walk()
    method, target, data = "GET", url, None
    forms_submitted = 0
    while True:
        follow(session, method, target, data=data, walk=walk, max_hops=MAX_HOPS - len(walk.hops))
        r = walk.response
        here = urlsplit(walk.hops[-1].url).hostname
        if here != idp_host or r.status_code != 200:
            break
        forms = parse_forms(r.text)
        form = next((f for f in forms if f["fields"].get("prompt") in ("login", "consent")), None)
        if form is None or forms_submitted >= 3:
            raise AssertionError(f"IdP page without a login/consent form:\n{walk.trace()}\n{r.text[:2000]}")
        fields = {k: v for k, v in form["fields"].items() if form["types"].get(k) != "submit"}
        if form["fields"].get("prompt") == "login":
            assert "login" in fields and "password" in fields, f"unexpected IdP login form: {form}"
            fields["login"], fields["password"] = email, password
        method, target, data = form["method"].upper(), urljoin(walk.hops[-1].url, form["action"]), fields
        forms_submitted += 1

    hosts = walk.hosts()
    expected = [route_host, auth_host, idp_host, auth_host, route_host]
    assert hosts == expected, f"sign-in walk visited {hosts}, expected {expected}:\n{walk.trace()}"
    assert forms_submitted >= 1, f"the IdP login form was never shown:\n{walk.trace()}"
    assert walk.hops[-1].url == url, f"sign-in did not come back to {url}:\n{walk.trace()}"
    return walk
