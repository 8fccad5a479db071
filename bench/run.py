#!/usr/bin/env python3
"""`make bench`: postern against nginx and Caddy, side by side in one run on loopback, with wrk.

Subjects, each started fresh for its turn, all plain HTTP on 127.0.0.1, none writing an access log:
  direct          the upstream itself: one-worker nginx `return 200 "ok"` (so the upstream is not the bottleneck)
  nginx           one-worker nginx proxy_pass to it (HTTP/1.1, kept-alive upstream connections)
  caddy           Caddy reverse_proxy to it (Debian's caddy; Go uses both cores)
  postern-public  postern (static musl release, INSECURE_SERVER) on a public route
  postern-auth    postern on an authorized route with alice's session cookie, got once through the real sign-in
Each round runs every subject for BENCH_SECONDS (default 10) at BENCH_CONNECTIONS (64) after a 2 s warm-up; the
order alternates between rounds (BENCH_ROUNDS, default 3) and the table shows the median round per subject.
Columns: requests/s, p50 and p99 latency (wrk --latency), CPU seconds of the subject's processes per 1,000
requests, and its peak RSS (VmHWM, summed over its processes). Then the ratios postern/nginx and postern/Caddy, and
postern's start-to-first-served-request time (median of 10 starts).

Usage: bench/run.py POSTERN_BINARY   (bench/bench.sh builds it and installs wrk, nginx and caddy)
Writes the table to target/bench/results.md as well.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import parts
from parts import harness

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
LOG_DIR = parts.REPO / "target" / "bench" / "run"


def wrk(port: int, host: str, cookie: str | None, seconds: int) -> dict:
    argv = ["wrk", "-t1", f"-c{CONNS}", f"-d{seconds}s", "--latency", "-H", f"Host: {host}"]
    if cookie:
        argv += ["-H", f"Cookie: {cookie}"]
    out = parts.run_quiet(argv + [f"http://127.0.0.1:{port}/"], timeout=seconds + 60)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", out)
    if "Non-2xx" in out or (errors and any(int(g) for g in errors.groups())):
        raise RuntimeError(f"wrk saw errors against {host} on port {port}:\n{out}")
    # Requests slower than wrk's 2 s timeout are counted, not fatal: a shared machine has pauses.
    slow = re.search(r"timeout (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"requests": total, "rps": rps, "p50": latency(out, "50%"), "p99": latency(out, "99%"),
            "timeouts": int(slow.group(1)) if slow else 0}


def latency(out: str, pct: str) -> float:
    """A wrk latency percentile in milliseconds."""
    m = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def check_200(port: int, host: str, cookie: str | None) -> None:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Host": host, **({"Cookie": cookie} if cookie else {})}
    c.request("GET", "/", headers=headers)
    r = c.getresponse()
    r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError(f"{host} on port {port} answered {r.status}, not 200: the benchmark would measure that")


def measure(name: str, start, port: int, host: str, cookie: str | None) -> dict:
    proc = start()
    try:
        check_200(port, host, cookie)
        wrk(port, host, cookie, 2)
        pid = proc.popen.pid
        cpu0 = parts.cpu_seconds(pid)
        row = wrk(port, host, cookie, SECONDS)
        cpu = parts.cpu_seconds(pid) - cpu0
        row["cpu_per_1k"] = cpu / row["requests"] * 1000
        row["hwm"] = parts.tree_kib(pid, "VmHWM")
        return row
    finally:
        if proc is not UPSTREAM[0]:
            proc.stop()


UPSTREAM: list = [None]


def start_to_first_request(binary: str, env: dict[str, str], port: int, tries: int = 10) -> float:
    """Milliseconds from spawning postern to the first 200 on /ping (connect retried every 0.2 ms)."""
    import socket

    times = []
    for _ in range(tries):
        t0 = time.perf_counter()
        p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                        s.sendall(f"GET /ping HTTP/1.1\r\nHost: public.{parts.DOMAIN}\r\nConnection: close\r\n\r\n"
                                  .encode())
                        if s.recv(64).startswith(b"HTTP/1.1 200"):
                            times.append((time.perf_counter() - t0) * 1000)
                            break
                except OSError:
                    time.sleep(0.0002)
                if p.poll() is not None:
                    raise RuntimeError("postern exited during the start-up measurement")
        finally:
            p.terminate()
            p.wait(5)
    return statistics.median(times)


def main() -> None:
    binary = os.path.abspath(sys.argv[1])
    harness.resolve_to_loopback(parts.DOMAIN)
    if LOG_DIR.exists():
        import shutil

        shutil.rmtree(LOG_DIR)
    LOG_DIR.mkdir(parents=True)
    certs = harness.make_certs(LOG_DIR / "certs", [f"*.{parts.DOMAIN}"])
    idp_port, up_port, port = harness.free_port(), harness.free_port(), harness.free_port()
    idp = harness.start_idp(idp_port, [parts.callback(None)], LOG_DIR)
    up = parts.nginx("upstream", up_port, LOG_DIR)
    UPSTREAM[0] = up
    env = parts.postern_env(port, idp_port, parts.routes(up_port), tls=None)

    def postern():
        return parts.start_postern("postern", [binary], env, port, LOG_DIR)

    # One real sign-in; the cookie stays valid for every later postern started with the same environment.
    p = postern()
    browser = parts.Browser(port, certs, plain=True)
    cookie = browser.login("app")
    browser.close()
    p.stop()
    if not cookie:
        raise RuntimeError("the sign-in gave no cookie for the app host")

    nginx_port, caddy_port = harness.free_port(), harness.free_port()
    subjects = {
        "direct": (lambda: up, up_port, "static", None),
        "nginx": (lambda: parts.nginx("nginx-proxy", nginx_port, LOG_DIR, up_port), nginx_port, "app", None),
        "caddy": (lambda: parts.caddy("caddy", caddy_port, up_port, LOG_DIR), caddy_port, "app", None),
        "postern-public": (postern, port, f"public.{parts.DOMAIN}", None),
        "postern-auth": (postern, port, f"app.{parts.DOMAIN}", cookie),
    }
    results: dict[str, list[dict]] = {k: [] for k in subjects}
    for rnd in range(ROUNDS):
        order = list(subjects) if rnd % 2 == 0 else list(reversed(subjects))
        for name in order:
            start, p_, host, ck = subjects[name]
            row = measure(name, start, p_, host, ck)
            results[name].append(row)
            print(f"round {rnd + 1} {name:<15} {row['rps']:>9.0f} req/s  p50 {row['p50']:.2f} ms  "
                  f"p99 {row['p99']:.2f} ms  {row['cpu_per_1k'] * 1000:.1f} ms CPU/1k  {row['hwm']} KiB",
                  flush=True)
    startup = start_to_first_request(binary, env, port)
    up.stop()
    idp.stop()

    med = {}
    for name, rows in results.items():
        by_rps = sorted(rows, key=lambda r: r["rps"])
        m = dict(by_rps[len(by_rps) // 2])
        m["hwm"] = max(r["hwm"] for r in rows)
        med[name] = m
    lines = [
        f"`make bench`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}",
        f"wrk -t1 -c{CONNS} -d{SECONDS}s, median of {ROUNDS} rounds; postern {binary_label(binary)}",
        "",
        "| subject | requests/s | p50 ms | p99 ms | CPU s / 1k req | peak RSS KiB | wrk timeouts |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in med.items():
        lines.append(f"| {name} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['cpu_per_1k']:.4f} "
                     f"| {m['hwm']} | {m['timeouts']} |")
    lines.append("")
    lines.append("| ratio | requests/s | p99 difference ms | CPU / 1k req | peak RSS |")
    lines.append("|---|---:|---:|---:|---:|")
    for p_name in ("postern-public", "postern-auth"):
        for other in ("nginx", "caddy"):
            a, b = med[p_name], med[other]
            lines.append(f"| {p_name} / {other} | {a['rps'] / b['rps']:.2f}x | {a['p99'] - b['p99']:+.2f} "
                         f"| {a['cpu_per_1k'] / b['cpu_per_1k']:.2f}x | {a['hwm'] / b['hwm']:.2f}x |")
    lines.append("")
    lines.append(f"postern start to first served request (/ping, median of 10 starts): {startup:.1f} ms")
    text = "\n".join(lines)
    print()
    print(text)
    out = parts.REPO / "target" / "bench" / "results.md"
    out.write_text(text + "\n")
    print(f"\n(also in {out})")


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}"


def binary_label(binary: str) -> str:
    try:
        rev = subprocess.run(["git", "-C", str(parts.REPO), "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = "?"
    return f"{os.path.relpath(binary, parts.REPO)} ({os.path.getsize(binary)} bytes, {rev})"


if __name__ == "__main__":
    harness.stop_on_sigterm()
    main()
