"""Test upstream: HTTP/1.1 keep-alive that closes every connection idle for exactly IDLE seconds, the way Node
(5 s) and many NAS apps do (B26). With HINT > 0 it announces `Keep-Alive: timeout=HINT`.

Any other `GET` (e.g. `/app/ping`; postern answers `/ping` itself) answers `pong CONN REQ` (connection number,
request number on it). `/hangup` (any method) reads the body and, on a reused connection, closes without
answering (what a stale connection looks like, after the body was sent).
`GET /stats` answers JSON counts of requests by method and path.
Usage: keepalive.py PORT IDLE [HINT]."""

from __future__ import annotations

import asyncio
import collections
import json
import sys

IDLE = float(sys.argv[2])
HINT = int(sys.argv[3]) if len(sys.argv) > 3 else 0
counts: collections.Counter = collections.Counter()
conns = 0


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global conns
    conns += 1
    conn, req = conns, 0
    try:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            req += 1
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
            length = int(headers.get("content-length", "0"))
            if length:
                await reader.readexactly(length)
            counts[f"{method} {target}"] += 1
            print(f"conn {conn} req {req}: {method} {target}", flush=True)
            if target == "/hangup" and req > 1:
                return
            body = (json.dumps(counts) if target == "/stats" else f"pong {conn} {req}").encode()
            extra = f"Keep-Alive: timeout={HINT}\r\n" if HINT else ""
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n{extra}\r\n"
                         .encode() + body)
            await writer.drain()
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    print(f"keepalive upstream: idle close after {IDLE}s, hint {HINT}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
