"""Test upstream: Server-Sent Events (B20). `GET /events?n=N&interval=S[&chunked=1]` writes N events S seconds
apart, each `data: tick K sent=<unix time>`, flushed one by one; without `chunked` the body ends at the close.
Usage: sse.py PORT."""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stdout.write("%s %s\n" % (self.address_string(), fmt % args))
        sys.stdout.flush()

    def do_GET(self):
        q = parse_qs(urlsplit(self.path).query)
        n = int(q.get("n", ["5"])[0])
        interval = float(q.get("interval", ["0.5"])[0])
        chunked = q.get("chunked", ["0"])[0] == "1"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.flush()
        for k in range(n):
            if k:
                time.sleep(interval)
            event = f"data: tick {k} sent={time.time():.6f}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event) if chunked else event)
            self.wfile.flush()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


if __name__ == "__main__":
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
