"""HTTP framing, byte for byte: each file in tests/fixtures/wire/ is a raw request (and, for some, a raw reply from
the app) with what must come of it: the status the client gets and what reaches the app.

The app here is a hand-made fake (RecordingUpstream), because only a fake can show the exact bytes postern sends
and send replies no real app would (two lengths, CL with TE, not HTTP at all). Fixture format, one item a line:
  # comment
  expect STATUS [STATUS...]        the client gets one of these
  upstream none                    the app receives nothing at all
  upstream partial                 the app never receives a whole request (at most the head and part of a body)
  upstream framing chunked         the app gets Transfer-Encoding: chunked and no Content-Length
  upstream framing length N        the app gets exactly one Content-Length: N and no Transfer-Encoding
  upstream absent NAME...          none of these headers reach the app
  upstream present NAME...         each of these headers reaches the app
  reply                            the next line is what the app answers (escapes: \\r \\n \\xNN)
  request                          the next line is what the client sends (same escapes)
"""

from __future__ import annotations

import codecs
import socket
import threading
import time
from pathlib import Path

import pytest

import harness

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wire"
OK_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def raw(line: str) -> bytes:
    return codecs.escape_decode(line.strip().encode())[0]


def load(path: Path) -> dict:
    case: dict = {"expect": [], "upstream": [], "reply": OK_REPLY}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "expect":
            case["expect"] = [int(s) for s in rest.split()]
        elif word == "upstream":
            case["upstream"] = rest.split()
        elif word in ("reply", "request"):
            case[word] = raw(next(lines))
        else:
            raise ValueError(f"{path.name}: unknown line {line!r}")
    return case


class RecordingUpstream:
    """A fake app: records every byte each connection sends, answers `reply` once the client falls silent."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.reply = OK_REPLY
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        data = b""
        conn.settimeout(0.4)
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    break
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
            self.received.append(data)
            try:
                conn.sendall(self.reply)
            except OSError:
                pass


@pytest.fixture(scope="module")
def fx(idp, log_dir):
    app = RecordingUpstream()
    port = harness.free_port()
    env = harness.guide_env(address=f"127.0.0.1:{port}", idp_url=idp, policy=f"- from: https://fx.test\n  to: http://127.0.0.1:{app.port}\n"
                              f"  allow_public_unauthenticated_access: true\n")
    proc = harness.start_postern("postern-wire", env, f"http://127.0.0.1:{port}/ping", False, log_dir)
    yield port, app
    proc.stop()


def exchange(port: int, request: bytes) -> bytes:
    """Sends the request; reads one response (its head, then Content-Length bytes), or until close or 3 s."""
    out = b""
    deadline = time.monotonic() + 3
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(request)
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
            head, sep, body = out.partition(b"\r\n\r\n")
            if sep:
                length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
    return out


def head_lines(data: bytes) -> list[bytes]:
    return data.partition(b"\r\n\r\n")[0].split(b"\r\n")


def values(data: bytes, name: str) -> list[str]:
    return [l.split(b":", 1)[1].strip().decode() for l in head_lines(data)[1:] if l.lower().startswith(name.encode() + b":")]


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.txt")), ids=lambda p: p.stem)
def test_wire_fixture(fx, path: Path):
    port, app = fx
    case = load(path)
    app.received.clear()
    app.reply = case["reply"]
    answer = exchange(port, case["request"])
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else None
    time.sleep(0.6)  # let the fake app finish recording
    assert status in case["expect"], f"{path.stem}: got {answer[:200]!r}"
    seen = b"".join(app.received)
    kind, args = (case["upstream"][0], case["upstream"][1:]) if case["upstream"] else (None, [])
    if kind == "none":
        assert seen == b"", f"{path.stem}: reached the app: {seen[:300]!r}"
    elif kind == "partial":
        assert seen.count(b" HTTP/1.1\r\n") <= 1 and b"0\r\n\r\n" not in seen, seen[:300]
    elif kind == "framing":
        te, cl = values(seen, "transfer-encoding"), values(seen, "content-length")
        if args[0] == "chunked":
            assert te == ["chunked"] and cl == [], head_lines(seen)
        else:
            assert cl == [args[1]] and te == [], head_lines(seen)
    elif kind == "present":
        names = {l.split(b":", 1)[0].strip().lower().decode() for l in head_lines(seen)[1:]}
        assert set(args) <= names, (set(args) - names, head_lines(seen))
    elif kind == "absent":
        names = {l.split(b":", 1)[0].strip().lower().decode() for l in head_lines(seen)[1:]}
        assert seen and not names & set(args), (names & set(args), head_lines(seen))
