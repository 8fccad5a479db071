"""The deterministic bytes of the big-transfer tests: 1 MiB blocks of fixed pseudo-random data, each starting with
its own index, so every block differs and order matters. Generated as needed, never held whole."""

from __future__ import annotations

import hashlib
import random
import struct

BLOCK = 1 << 20
_BASE = random.Random(20261203).randbytes(BLOCK)


def block(i: int) -> bytes:
    return struct.pack(">Q", i) + _BASE[8:]


def stream(size: int, start: int = 0):
    """The bytes [start, size) of the pattern, in pieces of at most one block."""
    pos = start
    while pos < size:
        i, off = divmod(pos, BLOCK)
        piece = block(i)[off:min(BLOCK, off + size - pos)]
        yield piece
        pos += len(piece)


def sha256(size: int) -> str:
    h = hashlib.sha256()
    for piece in stream(size):
        h.update(piece)
    return h.hexdigest()
