"""Reading only what an append-only file grew by (TensorBoard's `Load()` contract), for every reader that does.

A cursor remembers where the last read of a file stopped and a fingerprint of what that read covered:
the first and the last `EDGE` bytes before the offset. The file is still the one that was read, only
longer, when it is at least that long and those bytes are unchanged; otherwise it was rewritten or
truncated and is read afresh. The decode cache of event files, the live tails of JSONL and event files
and the object-store mirror all decide "appended or rewritten" here, the same way.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: Bytes compared at each end of what was read: a rewrite that kept the length and both ends is not caught,
#: which is the trade TensorBoard's own reader makes (it trusts the offset alone).
EDGE = 4096


def edges_of(fh: BinaryIO, offset: int) -> tuple[bytes, bytes]:
    """The first and the last `EDGE` bytes of an open file's first ``offset`` bytes."""
    fh.seek(0)
    head = fh.read(min(EDGE, offset))
    fh.seek(max(0, offset - EDGE))
    return head, fh.read(min(EDGE, offset))


def edges(path: Path, offset: int) -> tuple[bytes, bytes]:
    with open(path, "rb") as fh:
        return edges_of(fh, offset)


def fingerprint_of(head: bytes, tail: bytes) -> int:
    return zlib.crc32(head + tail)


@dataclass(frozen=True)
class AppendCursor:
    """Where the last read of ``path`` stopped (``offset``) and the fingerprint of the bytes before it."""

    path: Path
    offset: int
    fingerprint: int

    @classmethod
    def at(cls, path: Path, offset: int) -> AppendCursor:
        return cls(path, offset, fingerprint_of(*edges(path, offset)))

    def holds_in(self, fh: BinaryIO, size: int) -> bool:
        """Whether the open file (now ``size`` bytes) still begins with what this cursor covered."""
        return size >= self.offset and fingerprint_of(*edges_of(fh, self.offset)) == self.fingerprint

    def holds(self) -> bool:
        """Whether the file still begins with what this cursor covered (False when it cannot be read)."""
        try:
            with open(self.path, "rb") as fh:
                return self.holds_in(fh, os.fstat(fh.fileno()).st_size)
        except OSError:
            return False

    def read_new(self, *, back: int = 0) -> bytes | None:
        """The bytes appended since the cursor (with the ``back`` bytes before it); None when the file was
        rewritten, truncated or cannot be read: the caller reads it afresh."""
        try:
            with open(self.path, "rb") as fh:
                if not self.holds_in(fh, os.fstat(fh.fileno()).st_size):
                    return None
                fh.seek(max(0, self.offset - back))
                return fh.read()
        except OSError:
            return None

    def moved_to(self, offset: int) -> AppendCursor:
        """The cursor after a read that consumed the file up to ``offset``."""
        return AppendCursor.at(self.path, offset)
