"""Test upstream: the `websockets` package's own server. Echoes every message; on `/headers` it first sends the
handshake's request headers as JSON. Usage: ws_echo.py PORT."""

from __future__ import annotations

import json
import sys

from websockets.sync.server import serve


def handler(ws):
    if ws.request.path == "/headers":
        ws.send(json.dumps({k.lower(): v for k, v in ws.request.headers.raw_items()}))
    for message in ws:
        ws.send(message)


if __name__ == "__main__":
    with serve(handler, "127.0.0.1", int(sys.argv[1]), max_size=None) as server:
        print("ws echo listening", flush=True)
        server.serve_forever()
