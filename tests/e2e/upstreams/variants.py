"""Test upstream: the field cases' "ECHO variants", byte by byte (B23, B24, trailers). Usage: variants.py PORT.

HEAD/GET /file.bin   200, Content-Length 1488324, Accept-Ranges, ETag "x" (GET sends the bytes)
GET /small           200 "small"
GET /not-modified    304 with ETag and Cache-Control
GET /no-content      204 with X-Kept: yes
PUT /dav/file.bin    100 Continue when asked, then reads the body: 200 {"bytes", "sha256", "expect"}
PUT /too-large       413 right after the head, body unread, then close
POST /trailers       reads a chunked body with trailers; answers chunked, JSON of what it got, trailer X-Checksum
GET /http10          an HTTP/1.0 response delimited by the close
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys

SIZE = 1488324


async def read_chunked(reader: asyncio.StreamReader):
    h, n, trailers = hashlib.sha256(), 0, {}
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                k, _, v = line.decode().partition(":")
                trailers[k.strip().lower()] = v.strip()
            return h, n, trailers
        data = await reader.readexactly(size)
        h.update(data)
        n += size
        await reader.readexactly(2)


def response(status: str, headers: dict, body: bytes = b"", length: bool = True) -> bytes:
    if length:
        headers = {**headers, "Content-Length": str(len(body))}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
            print(f"{method} {target} {headers}", flush=True)
            if target == "/file.bin":
                writer.write(response("200 OK", {"Content-Length": str(SIZE), "Accept-Ranges": "bytes",
                                                 "ETag": '"x"'}, length=False))
                if method == "GET":
                    writer.write(bytes(SIZE))
            elif target == "/small":
                writer.write(response("200 OK", {}, b"small"))
            elif target == "/not-modified":
                writer.write(response("304 Not Modified", {"ETag": '"x"', "Cache-Control": "max-age=60"},
                                      length=False))
            elif target == "/no-content":
                writer.write(response("204 No Content", {"X-Kept": "yes"}, length=False))
            elif target == "/too-large":
                writer.write(response("413 Content Too Large", {"Connection": "close"}, b"too large"))
                await writer.drain()
                return
            elif target == "/dav/file.bin":
                expect = headers.get("expect", "")
                if expect.lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    h, n, _ = await read_chunked(reader)
                else:
                    n = int(headers.get("content-length", "0"))
                    h = hashlib.sha256(await reader.readexactly(n))
                out = json.dumps({"bytes": n, "sha256": h.hexdigest(), "expect": expect}).encode()
                writer.write(response("200 OK", {"Content-Type": "application/json"}, out))
            elif target == "/trailers":
                h, n, trailers = await read_chunked(reader)
                out = json.dumps({"bytes": n, "sha256": h.hexdigest(), "trailers": trailers}).encode()
                writer.write(response("200 OK", {"Transfer-Encoding": "chunked", "Trailer": "X-Checksum"},
                                      length=False))
                writer.write(b"%x\r\n%s\r\n0\r\nX-Checksum: abc\r\n\r\n" % (len(out), out))
            elif target == "/http10":
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close")
                await writer.drain()
                return
            else:
                writer.write(response("404 Not Found", {}, b"no such variant"))
            await writer.drain()
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()


asyncio.run(main())
