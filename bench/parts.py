"""Parts shared by `make bench` (bench/run.py) and `make memory-profile` (memory-profile/run.py).

Reuses the end-to-end harness (tests/e2e/harness.py) for processes, certificates, the real IdP and the real sign-in
walk; adds what the measurements need: nginx as a fast static upstream (`return 200`) and as a one-worker
`proxy_pass`, Caddy's `reverse_proxy`, postern in its two topologies (plain HTTP behind a TLS front, and TLS itself),
a sign-in through a plain-HTTP postern, and /proc readings (VmRSS, VmHWM, CPU seconds) of a process tree.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import harness  # noqa: E402

DOMAIN = "bench.test"
ALICE = "alice@example.com"
TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------------------------
# /proc readings


def tree(pid: int) -> list[int]:
    """pid and its descendants (nginx's master and worker)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        todo.extend(int(k) for k in kids)
    return out


def status_kib(pid: int, field: str) -> int:
    """VmRSS or VmHWM of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_kib(pid: int, field: str) -> int:
    return sum(status_kib(p, field) for p in tree(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process tree so far (every thread)."""
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def wait_port(proc: harness.Proc, port: int) -> None:
    harness.wait_until(proc, lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True,
                       f"{proc.name} listening on {port}")


# ---------------------------------------------------------------------------------------------------------------
# nginx and Caddy

NGINX_CONF = """# Written by bench/parts.py. Run: nginx -p PREFIX -c nginx.conf
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_requests 1000000;
{body}}}
"""

STATIC_SERVER = """    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "ok\\n"; }}
    }}
"""

# nginx at its best as a proxy: HTTP/1.1 and a pool of kept-alive upstream connections (postern pools too).
PROXY_SERVER = """    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_pass http://app;
        }}
    }}
"""


def nginx(name: str, port: int, log_dir: Path, upstream: int | None = None) -> harness.Proc:
    """One-worker nginx on 127.0.0.1:port: `return 200 "ok"` (upstream None) or proxy_pass to upstream."""
    binary = harness.nginx_bin()
    if not binary:
        raise RuntimeError("nginx is not installed (Debian package nginx)")
    prefix = (log_dir / name).resolve()
    for d in ("tmp", "logs"):
        (prefix / d).mkdir(parents=True, exist_ok=True)
    body = (STATIC_SERVER.format(port=port) if upstream is None
            else PROXY_SERVER.format(port=port, upstream=upstream))
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, body=body))
    argv = [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    proc = harness.start(name, argv, harness.base_env(), log_dir=log_dir)
    wait_port(proc, port)
    return proc


def caddy(name: str, port: int, upstream: int, log_dir: Path) -> harness.Proc:
    """Caddy's reverse_proxy on plain HTTP (no admin endpoint, no automatic HTTPS, no access log)."""
    binary = shutil.which("caddy")
    if not binary:
        raise RuntimeError("caddy is not installed (Debian package caddy)")
    d = (log_dir / name).resolve()
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "Caddyfile"
    conf.write_text("{\n\tadmin off\n\tauto_https off\n}\n"
                    f"http://:{port} {{\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:{upstream}\n}}\n")
    env = harness.base_env() | {"HOME": str(d), "XDG_DATA_HOME": str(d), "XDG_CONFIG_HOME": str(d)}
    proc = harness.start(name, [binary, "run", "--config", str(conf), "--adapter", "caddyfile"], env,
                         log_dir=log_dir)
    wait_port(proc, port)
    return proc


# ---------------------------------------------------------------------------------------------------------------
# postern


def routes(upstream: int, extra: list[dict] | None = None) -> list[dict]:
    """The routes every measured postern carries: an authorized app and a public one on the static upstream."""
    return [
        {"from": "app", "to": f"http://127.0.0.1:{upstream}", "allowed_users": [ALICE]},
        {"from": "public", "to": f"http://127.0.0.1:{upstream}", "allow_public_unauthenticated_access": True},
        *(extra or []),
    ]


def postern_env(port: int, idp_port: int, route_list: list[dict], *, tls: harness.Certs | None,
                log_level: str = "warn") -> dict[str, str]:
    """postern's environment: with `tls`, it terminates TLS itself on https://SUB.bench.test:PORT; without, it
    runs with INSECURE_SERVER behind a TLS front (DSM's nginx) and its public URLs are https://SUB.bench.test."""
    rs = [dict(r) for r in route_list]
    suffix = f":{port}" if tls else ""
    for r in rs:
        r["from"] = f"https://{r['from']}.{DOMAIN}{suffix}"
    policy = harness.policy_yaml(rs)
    env = harness.base_env() | {
        "ADDRESS": f"127.0.0.1:{port}",
        "AUTHENTICATE_SERVICE_URL": f"https://auth.{DOMAIN}{suffix}",
        "IDP_PROVIDER": "oidc",
        "IDP_PROVIDER_URL": f"http://127.0.0.1:{idp_port}",
        "IDP_CLIENT_ID": "postern",
        "IDP_CLIENT_SECRET": harness.CLIENT_SECRET,
        "COOKIE_SECRET": harness.secret32(),
        "POLICY": harness.b64(policy),
        "LOG_LEVEL": log_level,
    }
    if tls:
        env["CERTIFICATE_FILE"], env["CERTIFICATE_KEY_FILE"] = str(tls.cert), str(tls.key)
    else:
        env["INSECURE_SERVER"] = "TRUE"
    return env


def callback(port: int | None) -> str:
    """The IdP redirect URI of a postern on `port` (None: plain HTTP behind a front on 443)."""
    return f"https://auth.{DOMAIN}{f':{port}' if port else ''}/oauth2/callback"


def start_postern(name: str, argv: list[str], env: dict[str, str], port: int, log_dir: Path) -> harness.Proc:
    proc = harness.start(name, argv, env, log_dir=log_dir)
    wait_port(proc, port)
    return proc


class Browser:
    """A requests session that signs in like a browser. For a plain-HTTP postern (INSECURE_SERVER) it plays the TLS
    front: https://SUB.bench.test/... goes as plain HTTP to 127.0.0.1:port with the name in Host, so the walk's URLs,
    cookies (Secure ones too) and redirects stay those a browser sees."""

    def __init__(self, port: int, certs: harness.Certs, plain: bool):
        import requests

        self.port, self.plain = port, plain
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(certs.ca)
        if plain:
            self.session.mount("https://", _Front(port))

    def url(self, sub: str, path: str = "/") -> str:
        return f"https://{sub}.{DOMAIN}{'' if self.plain else f':{self.port}'}{path}"

    def login(self, sub: str = "app", email: str = ALICE) -> str:
        """Signs in through the real IdP; returns the `Cookie` header value for route host `sub`."""
        url = self.url(sub, "/.pomerium/")
        walk = harness.login(self.session, url, email)
        assert walk.response.status_code == 200, walk.trace()
        host = f"{sub}.{DOMAIN}"
        return "; ".join(f"{c.name}={c.value}" for c in self.session.cookies if c.domain.lstrip(".") == host)

    def close(self) -> None:
        self.session.close()


def _front_adapter_base():
    import requests.adapters

    return requests.adapters.HTTPAdapter


class _Front(_front_adapter_base()):
    def __init__(self, port: int):
        super().__init__()
        self.port = port

    def send(self, request, **kwargs):
        u = urlsplit(request.url)
        host = u.hostname or ""
        if host != DOMAIN and not host.endswith("." + DOMAIN):
            return super().send(request, **kwargs)
        plain = request.copy()
        plain.url = urlunsplit(("http", f"127.0.0.1:{self.port}", u.path or "/", u.query, ""))
        plain.headers["Host"] = u.netloc
        plain.headers["X-Forwarded-Proto"] = "https"
        r = super().send(plain, **kwargs)
        r.url, r.request = request.url, request
        return r


def run_quiet(argv: list[str], timeout: float = 600) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout
