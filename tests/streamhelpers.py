"""Test helpers for reading limits: an endless-looking input stream that counts what was read of it.

A uniquely named module (not ``conftest``) so test files in any folder can import it.
"""

from __future__ import annotations

import io


class Endless(io.RawIOBase):
    """A stream of ``byte`` far longer than any limit here (it ends after ``total`` bytes, so that code reading
    all of it fails its test instead of filling the memory), counting what was read of it."""

    def __init__(self, byte: bytes = b"a", total: int = 32 << 20):
        self.byte, self.left, self.consumed = byte, total, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left)
        buffer[:n] = self.byte * n
        self.left -= n
        self.consumed += n
        return n
