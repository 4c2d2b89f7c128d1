"""TFRecord framing over a whole buffer at once, with CRC32C checks.

Why this exists instead of TensorBoard's own reader: without TensorFlow, tensorboard's
tf-free path (tensorboard.compat.tensorflow_stub) reads records one by one and computes
CRC32C byte by byte in pure Python, about 40x slower than this file needs to be for a run
with millions of points. Here the record boundaries of a whole file are found with numpy:
candidate headers are positions whose length field and first payload byte look like an
Event, and each candidate's header CRC is verified vectorised. When the candidates do not
form one unbroken chain (an unusual writer, corruption) we fall back to a plain sequential
walk that checks every header CRC with the `crc32c` package.

Layout of one record: uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import crc32c as _crc32c
import numpy as np

from analyzer.ingest.protowalk import read_at

_MASK_DELTA = 0xA282EAD8
_HEADER = 12
_FOOTER = 4
#: Candidate scan window: bounded so the boolean masks stay small next to the file.
_SCAN_CHUNK = 8 << 20
#: Event.wall_time is field 1, a double: every real writer serialises it first.
_EVENT_FIRST_BYTE = 0x09


def _make_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table[i] = crc
    return table


_TABLE = _make_table()


def masked_crc(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC32C of ``data``."""
    crc = _crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _masked_crc_of_u64_at(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Masked CRC32C of the 8 bytes at each offset, all offsets at once."""
    crc = np.full(offsets.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for k in range(8):
        byte = buf[offsets + k].astype(np.uint32)
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> np.uint32(8))
    crc = crc ^ np.uint32(0xFFFFFFFF)
    rotated = (crc >> np.uint32(15)) | (crc << np.uint32(17))
    return (rotated.astype(np.uint64) + _MASK_DELTA).astype(np.uint32)


def _u64_at(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return read_at(buf, offsets, "<u8")


def _u32_at(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return read_at(buf, offsets, "<u4")


@dataclass(frozen=True)
class Framing:
    """Where each whole record of a buffer lies.

    Attributes:
        starts: offset of each record's data (after the 12-byte header).
        lengths: length of each record's data.
        end: offset just past the last whole record (where an incremental re-read resumes).
        truncated_bytes: bytes after ``end`` that do not form a whole record.
        corrupt: (offset, reason) of each record dropped because a CRC did not match.
    """

    starts: np.ndarray
    lengths: np.ndarray
    end: int
    truncated_bytes: int
    corrupt: list[tuple[int, str]] = field(default_factory=list)


def _candidates(buf: np.ndarray, begin: int) -> np.ndarray:
    n = buf.shape[0]
    found: list[np.ndarray] = []
    last = n - _HEADER - 1  # a header needs 12 bytes plus the first data byte
    for lo in range(begin, last + 1, _SCAN_CHUNK):
        hi = min(lo + _SCAN_CHUNK, last + 1)
        # Lengths above 4 GiB do not occur in event files: the high half of the length is 0.
        mask = buf[lo + _HEADER : hi + _HEADER] == _EVENT_FIRST_BYTE
        for k in (4, 5, 6, 7):
            mask &= buf[lo + k : hi + k] == 0
        cand = np.flatnonzero(mask).astype(np.int64) + lo
        if cand.size:
            ok = _masked_crc_of_u64_at(buf, cand) == _u32_at(buf, cand + 8)
            found.append(cand[ok])
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def frame_records(buf: np.ndarray, *, begin: int = 0) -> Framing:
    """Find every whole record in ``buf[begin:]`` (a uint8 array)."""
    n = buf.shape[0]
    heads = _candidates(buf, begin)
    if heads.size and heads[0] == begin:
        lengths = _u64_at(buf, heads).astype(np.int64)
        nxt = heads + lengths
        nxt += _HEADER + _FOOTER
        chained = np.array_equal(nxt[:-1], heads[1:])
        last_end = int(nxt[-1])
        del nxt
        if chained:
            heads += _HEADER  # from here on: offsets of the data
            if last_end > n:  # the last record's header is whole but its data is not
                truncated = n - (int(heads[-1]) - _HEADER)
                heads, lengths = heads[:-1], lengths[:-1]
                end = int(heads[-1] + lengths[-1] + _FOOTER) if heads.size else begin
                return Framing(heads, lengths, end, truncated)
            return Framing(heads, lengths, last_end, n - last_end)
    return _frame_sequentially(buf, begin)


def _frame_sequentially(buf: np.ndarray, begin: int) -> Framing:
    """The always-correct path: one header at a time, each header CRC checked."""
    raw = memoryview(buf)
    n = buf.shape[0]
    starts: list[int] = []
    lengths: list[int] = []
    corrupt: list[tuple[int, str]] = []
    off = begin
    unpack = struct.Struct("<QI").unpack_from
    while off + _HEADER <= n:
        length, header_crc = unpack(raw, off)
        if masked_crc(raw[off : off + 8]) != header_crc:
            corrupt.append((off, "record header CRC mismatch; the rest of the file cannot be framed"))
            return Framing(
                np.asarray(starts, np.int64), np.asarray(lengths, np.int64), off, 0, corrupt
            )
        if off + _HEADER + length + _FOOTER > n:
            break
        starts.append(off + _HEADER)
        lengths.append(length)
        off += _HEADER + length + _FOOTER
    return Framing(np.asarray(starts, np.int64), np.asarray(lengths, np.int64), off, n - off, corrupt)


def data_crc_ok(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Whether each record's data CRC matches (one C call per record)."""
    raw = memoryview(buf)
    footers = _u32_at(buf, starts + lengths)
    out = np.empty(starts.shape[0], dtype=bool)
    for i, (s, ln) in enumerate(zip(starts.tolist(), lengths.tolist())):
        out[i] = masked_crc(raw[s : s + ln]) == int(footers[i])
    return out
