#!/usr/bin/env python3
"""Measure how a server handles the connections postern must carry: HTTP/1.0, pipelining, idle keep-alive cost.

Usage: conn-probe.py HOST:PORT PID [N_IDLE]
Prints one line per check. Used for the design note that chose postern's own codec over async-h1
(run against bench/async-h1-probe and against postern side by side: `make probe`).
"""
import resource
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def read_all(sock, deadline):
    data = b""
    sock.settimeout(0.2)
    while time.time() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
    return data


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    pid = int(sys.argv[2])
    n_idle = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    addr = (host, int(port))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n_idle + 256), hard))

    s = socket.create_connection(addr)
    s.sendall(b"GET /ping HTTP/1.0\r\nHost: probe.test\r\n\r\n")
    r = read_all(s, time.time() + 2)
    s.close()
    status = r.split(b"\r\n", 1)[0].decode(errors="replace") if r else "no answer (empty reply)"
    print(f"http/1.0: {status}")

    s = socket.create_connection(addr)
    one = b"GET /ping HTTP/1.1\r\nHost: probe.test\r\n\r\n"
    t0 = time.time()
    s.sendall(one * 3)
    r = read_all(s, time.time() + 3)
    s.close()
    print(f"pipelined 3: {r.count(b'HTTP/1.1 ')} answers in {time.time() - t0:.1f}s")

    print(f"threads at idle: {threads(pid)}")
    base = rss_kib(pid)
    conns = []
    for _ in range(n_idle):
        c = socket.create_connection(addr)
        c.sendall(one)
        conns.append(c)
    for c in conns:
        c.settimeout(5)
        c.recv(65536)
    time.sleep(1.0)
    held = rss_kib(pid)
    per = (held - base) * 1024 / n_idle
    print(f"idle keep-alive: RSS {base} KiB -> {held} KiB with {n_idle} connections = {per:.0f} bytes each")
    for c in conns:
        c.close()


if __name__ == "__main__":
    main()
