#!/usr/bin/env python3
"""`make memory-profile`: postern's memory through scenarios, each in a fresh postern process, run twice:

  RSS   the static musl x86_64 release binary (stripped, what ships): VmRSS while the scenario holds its load, and
        the peak (VmHWM) at its end, from /proc.
  heap  the same code built with line tables (`--profile profiling`) under heaptrack: peak heap and the top
        allocation sites (heaptrack_print). heaptrack interposes malloc through LD_PRELOAD, which a static binary
        does not load, so this run uses the glibc build of the same profile; RSS of this run is not reported
        (heaptrack's own overhead is in it).

Scenarios (TLS with the real IdP, a certificate, four routes and the trust roots loaded, unless marked plain):
  idle          started, one /ping served, then 2 s idle
  logins        100 real sign-ins (every hop: route, authenticate host, IdP form, callback, back), 10 at a time
  conns-plain   1,000 concurrent kept-alive connections, each after one authorized request, INSECURE_SERVER
  conns-tls     the same over TLS
  requests      10,000 authorized small requests on 16 kept-alive connections
  stream        1 GiB down and 1 GiB up through an authorized route (the bigfile test upstream)
  websockets    50 open WebSockets through an authorized route (the websockets echo upstream), one echo each

Usage: memory-profile/run.py STATIC_BINARY PROFILING_BINARY  (memory-profile/run.sh builds both, installs heaptrack)
Writes target/memory-profile/results.md (the tables) and keeps heaptrack's files in target/memory-profile/.
MP_SCENARIOS="idle stream" runs some only; MP_STREAM_MIB changes the stream size (default 1024); MP_HEAPTRACK=0
skips the heaptrack runs (RSS only, quicker).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import parts  # noqa: E402
from parts import harness  # noqa: E402

OUT = parts.REPO / "target" / "memory-profile"
UPSTREAMS = parts.REPO / "tests" / "e2e" / "upstreams"
STREAM = int(os.environ.get("MP_STREAM_MIB", "1024")) << 20
MIB = 1 << 20
SCENARIOS = ["idle", "logins", "conns-plain", "conns-tls", "requests", "stream", "websockets"]


class World:
    """The IdP, the upstreams and the certificate, shared by every scenario; one postern environment per topology,
    so a cookie signed in once stays valid in every later postern process of that topology."""

    def __init__(self) -> None:
        self.certs = harness.make_certs(OUT / "certs", [f"*.{parts.DOMAIN}"])
        self.idp_port, self.up_port = harness.free_port(), harness.free_port()
        self.big_port, self.ws_port = harness.free_port(), harness.free_port()
        self.tls_port, self.plain_port = harness.free_port(), harness.free_port()
        self.idp = harness.start_idp(self.idp_port, [parts.callback(self.tls_port), parts.callback(None)], OUT)
        self.up = parts.nginx("upstream", self.up_port, OUT)
        py = sys.executable
        self.big = harness.start("bigfile", [py, str(UPSTREAMS / "bigfile.py"), str(self.big_port)],
                                 harness.base_env(), log_dir=OUT)
        parts.wait_port(self.big, self.big_port)
        self.ws = harness.start("ws-echo", [py, str(UPSTREAMS / "ws_echo.py"), str(self.ws_port)],
                                harness.base_env(), log_dir=OUT)
        parts.wait_port(self.ws, self.ws_port)
        extra = [
            {"from": "big", "to": f"http://127.0.0.1:{self.big_port}", "allowed_users": [parts.ALICE]},
            {"from": "ws", "to": f"http://127.0.0.1:{self.ws_port}", "allowed_users": [parts.ALICE],
             "allow_websockets": True},
        ]
        rs = parts.routes(self.up_port, extra)
        self.env = {
            "tls": parts.postern_env(self.tls_port, self.idp_port, rs, tls=self.certs, log_level="info"),
            "plain": parts.postern_env(self.plain_port, self.idp_port, rs, tls=None, log_level="info"),
        }
        self.cookies: dict[tuple[str, str], str] = {}

    def port(self, topology: str) -> int:
        return self.tls_port if topology == "tls" else self.plain_port

    def stop(self) -> None:
        for p in (self.ws, self.big, self.up, self.idp):
            p.stop()


class Postern:
    """One postern process for one scenario: the static binary alone, or the profiling build under heaptrack."""

    def __init__(self, world: World, topology: str, binary: str, heaptrack: Path | None):
        self.world, self.topology = world, topology
        self.port = world.port(topology)
        argv = [binary] if heaptrack is None else ["heaptrack", "-o", str(heaptrack), binary]
        self.proc = harness.start(f"postern-{topology}", argv, world.env[topology], log_dir=OUT)
        parts.wait_port(self.proc, self.port)
        self.pid = self._postern_pid(Path(binary).name[:15])

    def _postern_pid(self, comm: str) -> int:
        """postern itself (under heaptrack it is the wrapper script's child), by its command name."""
        for _ in range(100):
            for p in parts.tree(self.proc.popen.pid):
                try:
                    if Path(f"/proc/{p}/comm").read_text().strip() == comm:
                        return p
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("no postern process under the wrapper")

    def rss(self) -> int:
        return parts.status_kib(self.pid, "VmRSS")

    def hwm(self) -> int:
        return parts.status_kib(self.pid, "VmHWM")

    def stop(self) -> None:
        """SIGTERM to postern itself (heaptrack then writes its file completely), then wait for the wrapper."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.popen.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.stop()

    # Clients ------------------------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.world.certs.ca))
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def connect(self, sub: str) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        if self.topology == "tls":
            return self.ssl_context().wrap_socket(s, server_hostname=f"{sub}.{parts.DOMAIN}")
        return s

    def host(self, sub: str) -> str:
        return f"{sub}.{parts.DOMAIN}" + (f":{self.port}" if self.topology == "tls" else "")

    def cookie(self, sub: str) -> str:
        """alice's Cookie header for route host `sub`; signs in through the IdP the first time per topology."""
        key = (self.topology, sub)
        if key not in self.world.cookies:
            b = parts.Browser(self.port, self.world.certs, plain=self.topology == "plain")
            self.world.cookies[key] = b.login(sub)
            b.close()
        return self.world.cookies[key]

    def http(self, sub: str) -> http.client.HTTPConnection:
        if self.topology == "tls":
            return http.client.HTTPSConnection(f"{sub}.{parts.DOMAIN}", self.port, context=self.ssl_context(),
                                               timeout=60)
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return c


def get(c: http.client.HTTPConnection, host: str, path: str, cookie: str) -> int:
    c.request("GET", path, headers={"Host": host, "Cookie": cookie})
    r = c.getresponse()
    r.read()
    return r.status


# ---------------------------------------------------------------------------------------------------------------
# Scenarios: each returns {"held": VmRSS KiB while the load is held, "note": ...}


def s_idle(p: Postern) -> dict:
    c = p.http("public")
    c.request("GET", "/ping", headers={"Host": p.host("public")})
    assert c.getresponse().status == 200
    c.close()
    time.sleep(2)
    return {"held": p.rss(), "note": "one /ping served, then 2 s idle"}


def s_logins(p: Postern) -> dict:
    # user{i} is not on the app's allow list: each walk is a complete sign-in (a session is minted) that ends on
    # the 403 page, the policy's verdict being the last step.
    t0 = time.monotonic()
    with ThreadPoolExecutor(10) as ex:
        list(ex.map(lambda i: one_login(p, i), range(100)))
    took = time.monotonic() - t0
    return {"held": p.rss(), "note": f"100 sign-ins, 10 at a time, in {took:.1f} s"}


def one_login(p: Postern, i: int) -> None:
    b = parts.Browser(p.port, p.world.certs, plain=p.topology == "plain")
    try:
        walk = harness.login(b.session, b.url("app", "/.pomerium/"), f"user{i}@example.com")
        assert walk.response.status_code in (200, 403), walk.trace()
    finally:
        b.close()


def s_conns(p: Postern) -> dict:
    cookie = p.cookie("app")
    n = 1000
    req = (f"GET / HTTP/1.1\r\nHost: {p.host('app')}\r\nCookie: {cookie}\r\n\r\n").encode()
    base = p.rss()
    socks = []
    for _ in range(n):
        s = p.connect("app")
        s.sendall(req)
        socks.append(s)
    for s in socks:
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"ok\n"):
            piece = s.recv(4096)
            if not piece:
                raise RuntimeError("postern closed a kept-alive connection")
            data += piece
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
    time.sleep(1)
    held = p.rss()
    for s in socks:
        s.close()
    per = (held - base) * 1024 / n
    return {"held": held, "note": f"{n} connections, each after one authorized request: {base} -> {held} KiB, "
                                  f"{per:.0f} bytes each"}


def s_requests(p: Postern) -> dict:
    cookie = p.cookie("app")
    n, conns = 10000, 16
    t0 = time.monotonic()

    def worker(k: int) -> int:
        c = p.http("app")
        ok = sum(get(c, p.host("app"), "/", cookie) == 200 for _ in range(n // conns))
        c.close()
        return ok

    with ThreadPoolExecutor(conns) as ex:
        ok = sum(ex.map(worker, range(conns)))
    assert ok == n, f"{ok} of {n} answered 200"
    return {"held": p.rss(), "note": f"{n} requests on {conns} connections in {time.monotonic() - t0:.1f} s"}


def s_stream(p: Postern) -> dict:
    cookie = p.cookie("big")
    host = p.host("big")
    base = p.rss()
    t0 = time.monotonic()
    c = p.http("big")
    c.request("GET", f"/file.bin?size={STREAM}", headers={"Host": host, "Cookie": cookie})
    r = c.getresponse()
    assert r.status == 200
    n = 0
    while piece := r.read(MIB):
        n += len(piece)
    assert n == STREAM, n
    c.close()
    down = time.monotonic() - t0
    t0 = time.monotonic()
    c = p.http("big")
    c.putrequest("PUT", "/upload", skip_host=True, skip_accept_encoding=True)
    c.putheader("Host", host)
    c.putheader("Cookie", cookie)
    c.putheader("Content-Length", str(STREAM))
    c.endheaders()
    piece = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(STREAM // MIB):
        c.send(piece)
    r = c.getresponse()
    got = json.loads(r.read())
    c.close()
    assert r.status == 200 and got["bytes"] == STREAM, got
    up = time.monotonic() - t0
    held = p.hwm()
    return {"held": p.rss(), "note": f"{STREAM >> 20} MiB down in {down:.1f} s, up in {up:.1f} s; "
                                     f"peak grew {held - base} KiB over the {base} KiB before",
            "growth": held - base}


def s_websockets(p: Postern) -> dict:
    from websockets.sync.client import connect

    cookie = p.cookie("ws")
    base = p.rss()
    ctx = p.ssl_context() if p.topology == "tls" else None
    scheme = "wss" if ctx else "ws"
    socks, stalled = [], 0
    for i in range(50):
        for attempt in range(3):
            try:
                ws = connect(f"{scheme}://{p.host('ws')}/", ssl=ctx, additional_headers={"Cookie": cookie},
                             open_timeout=30)
                break
            except Exception:  # noqa: BLE001 - see STALLS in README: retried, and counted in the note
                stalled += 1
        else:
            raise RuntimeError("three WebSocket handshakes in a row got no answer")
        ws.send(f"hello {i}")
        assert ws.recv(timeout=10) == f"hello {i}"
        socks.append(ws)
    time.sleep(1)
    held = p.rss()
    for ws in socks:
        ws.close()
    note = f"50 WebSockets open, one echo each: {base} -> {held} KiB"
    if stalled:
        note += f" ({stalled} handshake(s) got no answer and were retried: see Stalls)"
    return {"held": held, "note": note}


RUN = {
    "idle": ("tls", s_idle),
    "logins": ("tls", s_logins),
    "conns-plain": ("plain", s_conns),
    "conns-tls": ("tls", s_conns),
    "requests": ("tls", s_requests),
    "stream": ("tls", s_stream),
    "websockets": ("tls", s_websockets),
}


# ---------------------------------------------------------------------------------------------------------------
# heaptrack


def heaptrack_summary(path: Path) -> dict:
    """Peak heap, allocation calls and the top peak allocation sites from heaptrack_print."""
    out = parts.run_quiet(["heaptrack_print", "--merge-backtraces", "0", "--print-peaks", "1", "--print-allocators", "0",
                           "--print-temporary", "0", "--print-leaks", "0",
                           "--peak-limit", "6", "--sub-peak-limit", "0", "-f", str(path)], timeout=600)
    summary = {}
    for key, pat in (("peak_heap", r"peak heap memory consumption: (\S+)"),
                     ("calls", r"calls to allocation functions: (\d+)"),
                     ("temporary", r"temporary memory allocations: (\d+)")):
        m = re.search(pat, out)
        summary[key] = m.group(1) if m else "?"
    summary["sites"] = peak_sites(out)
    return summary


def peak_sites(out: str) -> list[str]:
    """'SIZE from FUNCTION (FILE:LINE)' for each entry of heaptrack_print's PEAK MEMORY CONSUMERS, skipping
    allocator and std frames to the first postern (or dependency) frame that explains it."""
    section = out.split("PEAK MEMORY CONSUMERS", 1)[-1].split("\n\n\n", 1)[0]
    sites = []
    for block in re.split(r"\n(?=\S+ peak memory consumed over)", section):
        m = re.match(r"(\S+) peak memory consumed over (\d+) calls from\n(.*)", block.strip(), re.S)
        if not m:
            continue
        size, calls, frames = m.groups()
        chosen = describe(frames)
        sites.append(f"{size} over {calls} calls: {chosen}")
    return sites


def clean(fn: str) -> str:
    """A readable function name from heaptrack's legacy-mangled one."""
    for a, b in (("$LT$", "<"), ("$GT$", ">"), ("$u7b$", "{"), ("$u7d$", "}"), ("$u20$", " "), ("$C$", ","),
                 ("$RF$", "&"), ("..", "::")):
        fn = fn.replace(a, b)
    fn = re.sub(r"::h[0-9a-f]{16}$", "", fn)
    return re.sub(r"::_?\{\{closure\}\}", "", fn).lstrip("_")


def describe(frames: str) -> str:
    """The allocation's first frame in postern's own code (else the first outside the allocator and std), with
    its file and line."""
    lines = [ln.strip() for ln in frames.splitlines() if ln.strip()]
    funcs = []
    for i, ln in enumerate(lines):
        if ln.startswith(("at ", "in ", "and ")):
            continue
        loc = lines[i + 1][3:] if i + 1 < len(lines) and lines[i + 1].startswith("at ") else ""
        funcs.append((clean(ln), loc))
    own = [f for f in funcs if f[0].startswith("postern::")]
    others = [f for f in funcs if not re.match(r"(_R|alloc::|core::|std::|<alloc|<core|<std|<u8 as alloc|"
                                               r"__rust|malloc|calloc|realloc)", f[0])]
    fn, loc = (own or others or funcs or [("?", "")])[0]
    where = re.sub(r"^.*/(registry/src/[^/]+/)", "", loc)
    return f"`{fn[:100]}` ({where})" if where else f"`{fn[:100]}`"


# ---------------------------------------------------------------------------------------------------------------


def main() -> None:
    static_bin, prof_bin = (os.path.abspath(a) for a in sys.argv[1:3])
    harness.resolve_to_loopback(parts.DOMAIN)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    chosen = os.environ.get("MP_SCENARIOS", " ".join(SCENARIOS)).split()
    world = World()
    rows = []
    try:
        for name in chosen:
            topology, fn = RUN[name]
            p = Postern(world, topology, static_bin, None)
            start_rss = p.rss()
            got = fn(p)
            # The kernel updates VmHWM lazily (when RSS is about to shrink), so it can lag the VmRSS just read.
            hwm = max(p.hwm(), got["held"])
            p.stop()
            heap = {"peak_heap": "-", "calls": "-", "sites": []}
            if os.environ.get("MP_HEAPTRACK", "1") != "0":
                ht = OUT / f"heaptrack.{name}"
                p = Postern(world, topology, prof_bin, ht)
                fn(p)
                p.stop()
                files = sorted(OUT.glob(f"heaptrack.{name}*"))
                if not files:
                    raise RuntimeError(f"heaptrack wrote nothing for {name}")
                heap = heaptrack_summary(files[-1])
            row = {"name": name, "topology": topology, "start_rss": start_rss, "hwm": hwm, **got, **heap}
            rows.append(row)
            print(f"{name:<12} start {start_rss} KiB, held {got['held']} KiB, peak {hwm} KiB, "
                  f"peak heap {heap['peak_heap']}, {heap['calls']} allocations — {got['note']}", flush=True)
    finally:
        world.stop()
    write(rows, static_bin)


def write(rows: list[dict], static_bin: str) -> None:
    lines = [
        f"`make memory-profile`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}",
        f"RSS: {os.path.relpath(static_bin, parts.REPO)} ({os.path.getsize(static_bin)} bytes, static musl, "
        f"stripped); heap: the same commit's `--profile profiling` glibc build under heaptrack",
        "",
        "| scenario | topology | RSS after start KiB | RSS under load KiB | peak RSS (VmHWM) KiB | peak heap | "
        "allocation calls | what happened |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['topology']} | {r['start_rss']} | {r['held']} | {r['hwm']} | "
                     f"{r['peak_heap']} | {r['calls']} | {r['note']} |")
    lines.append("")
    lines.append("Top allocation sites at the heap's peak (heaptrack_print --print-peaks), per scenario:")
    for r in rows:
        lines.append("")
        lines.append(f"- **{r['name']}**")
        for s in r["sites"]:
            lines.append(f"  - {s}")
    text = "\n".join(lines)
    print()
    print(text)
    (OUT / "results.md").write_text(text + "\n")
    print(f"\n(also in {OUT / 'results.md'})")


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return f"{os.cpu_count()} cores ({cpu}), {int(mem) >> 20} GiB RAM, Linux {os.uname().release}"


if __name__ == "__main__":
    harness.stop_on_sigterm()
    main()
