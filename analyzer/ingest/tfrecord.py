"""TFRecord framing over a whole buffer at once, with CRC32C checks.

Why this exists instead of TensorBoard's own reader: without TensorFlow, tensorboard's
tf-free path (tensorboard.compat.tensorflow_stub) reads records one by one and computes
CRC32C byte by byte in pure Python, about 40x slower than this file needs to be for a run
with millions of points. Here the record boundaries of a whole file are found with numpy:
candidate headers are positions whose length field and first payload byte look like an
Event, and each candidate's header CRC is verified vectorised. Where the candidates do not
chain (an unusual writer, corruption) the header at that offset is checked on its own, and a
damaged header is skipped by scanning for the next offset whose length CRC checks (resync).

Data CRCs of every record are checked with one hardware CRC32C pass over the file
(`verify_data_crcs`): each footer is rewritten so that a record with a correct CRC adds
nothing to the CRC of the whole file, and only a file that fails is searched record by record.

Layout of one record: uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import crc32c as _crc32c
import numpy as np

from analyzer.ingest.protowalk import read_at

_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
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
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


def _masked_crc_of_u64_at(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Masked CRC32C of the 8 bytes at each offset, all offsets at once."""
    crc = np.full(offsets.shape[0], _U32, dtype=np.uint32)
    for k in range(8):
        byte = buf[offsets + k].astype(np.uint32)
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> np.uint32(8))
    crc = crc ^ np.uint32(_U32)
    rotated = (crc >> np.uint32(15)) | (crc << np.uint32(17))
    return (rotated.astype(np.uint64) + _MASK_DELTA).astype(np.uint32)


#: Masked CRC of the 8-byte length field for every length below this (built on first use): a record
#: header's CRC is then one table lookup, not eight vectorised CRC rounds.
_LENGTH_TABLE_SIZE = 1 << 16
_length_crcs: np.ndarray | None = None


def _header_crcs(buf: np.ndarray, offsets: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Masked CRC32C of the 8-byte length at each offset, whose low half is ``low`` (the high half is zero)."""
    global _length_crcs
    if _length_crcs is None:
        lengths = np.arange(_LENGTH_TABLE_SIZE, dtype="<u8").view(np.uint8)
        _length_crcs = _masked_crc_of_u64_at(lengths, np.arange(0, lengths.size, 8))
    small = low < _LENGTH_TABLE_SIZE
    crc = np.empty(offsets.shape[0], np.uint32)
    crc[small] = _length_crcs[low[small]]
    if not small.all():
        crc[~small] = _masked_crc_of_u64_at(buf, offsets[~small])
    return crc


def _u64_at(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return read_at(buf, offsets, "<u8")


def _u32_at(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return read_at(buf, offsets, "<u4")


def _mem(buf: np.ndarray) -> memoryview:
    return memoryview(buf.data)


@dataclass(frozen=True)
class Damage:
    """A stretch of a file that could not be framed: a record header failed its CRC.

    Attributes:
        offset: where the damaged header was.
        skipped_bytes: bytes skipped from there to the next valid record (or to the end).
        resumed_at: offset of the next valid record, None when none followed.
    """

    offset: int
    skipped_bytes: int
    resumed_at: int | None


@dataclass(frozen=True)
class Framing:
    """Where each whole record of a buffer lies.

    Attributes:
        starts: offset of each record's data (after the 12-byte header).
        lengths: length of each record's data.
        end: offset just past the last whole record (where an incremental re-read resumes).
        truncated_bytes: bytes after ``end`` that do not form a whole record.
        damage: each stretch skipped because a record header failed its CRC.
    """

    starts: np.ndarray
    lengths: np.ndarray
    end: int
    truncated_bytes: int
    damage: list[Damage] = field(default_factory=list)


def _candidates(buf: np.ndarray, begin: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data lengths) of the positions holding a valid record header whose record starts like an Event."""
    n = buf.shape[0]
    found: list[np.ndarray] = []
    sizes: list[np.ndarray] = []
    last = n - _HEADER - 1  # a header needs 12 bytes plus the first data byte
    for lo in range(begin, last + 1, _SCAN_CHUNK):
        hi = min(lo + _SCAN_CHUNK, last + 1)
        cand = np.flatnonzero(buf[lo + _HEADER : hi + _HEADER] == _EVENT_FIRST_BYTE).astype(np.int64) + lo
        # Lengths above 4 GiB do not occur in event files: the high half of the length is 0. Checked on the
        # few positions left, with the header CRC beside it in the same 8-byte gather.
        rest = read_at(buf, cand + 4, "<u8")
        keep = (rest & np.uint64(_U32)) == 0
        cand, stored = cand[keep], (rest[keep] >> np.uint64(32)).astype(np.uint32)
        if cand.size:
            low = _u32_at(buf, cand)
            ok = _header_crcs(buf, cand, low) == stored
            found.append(cand[ok])
            sizes.append(low[ok].astype(np.int64))
    if not found:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(found), np.concatenate(sizes)


def _header_ok(buf: np.ndarray, off: int) -> int | None:
    """The data length of a valid record header at ``off``, else None."""
    length, header_crc = struct.unpack_from("<QI", _mem(buf), off)
    return int(length) if masked_crc(_mem(buf)[off : off + 8]) == header_crc else None


def _resync(buf: np.ndarray, lo: int, hi: int) -> int | None:
    """The first offset in [lo, hi) holding a valid header (length CRC checks) of a record that fits."""
    n = buf.shape[0]
    hi = min(hi, n - _HEADER)
    for a in range(lo, hi + 1, _SCAN_CHUNK):
        b = min(a + _SCAN_CHUNK, hi + 1)
        mask = np.ones(b - a, dtype=bool)
        for k in (4, 5, 6, 7):
            mask &= buf[a + k : b + k] == 0
        cand = np.flatnonzero(mask).astype(np.int64) + a
        if not cand.size:
            continue
        ok = _masked_crc_of_u64_at(buf, cand) == _u32_at(buf, cand + 8)
        cand = cand[ok]
        fits = cand + _u64_at(buf, cand).astype(np.int64) + _HEADER + _FOOTER <= n
        cand = cand[fits]
        if cand.size:
            return int(cand[0])
    return None


def frame_records(buf: np.ndarray, *, begin: int = 0) -> Framing:
    """Find every whole record in ``buf[begin:]`` (a uint8 array).

    Runs of chained candidate headers are taken whole (vectorised); anywhere else the header is
    checked on its own, and a damaged one is skipped up to the next valid header (counted in
    ``damage``). A record cut off by the end of the buffer is the truncated tail.
    """
    n = buf.shape[0]
    heads, lens = _candidates(buf, begin)
    nxt = heads + lens + (_HEADER + _FOOTER)
    breaks = np.flatnonzero(nxt[:-1] != heads[1:])  # the chain from candidate i does not reach i + 1
    starts: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    damage: list[Damage] = []
    off = begin
    truncated = 0
    while off < n:
        if off + _HEADER > n:
            truncated = n - off
            break
        i = int(np.searchsorted(heads, off))
        if i < heads.size and heads[i] == off:
            k = int(np.searchsorted(breaks, i))
            j = int(breaks[k]) if k < breaks.size else heads.size - 1
            if nxt[j] > n:  # only the last candidate can run past the end: the truncated tail
                if j > i:
                    starts.append(heads[i:j] + _HEADER)
                    lengths.append(lens[i:j])
                off = int(heads[j])
                truncated = n - off
                break
            starts.append(heads[i : j + 1] + _HEADER)
            lengths.append(lens[i : j + 1])
            off = int(nxt[j])
            continue
        length = _header_ok(buf, off)
        if length is not None:
            if off + _HEADER + length + _FOOTER > n:
                truncated = n - off
                break
            starts.append(np.array([off + _HEADER], np.int64))
            lengths.append(np.array([length], np.int64))
            off += _HEADER + length + _FOOTER
            continue
        # A damaged header: resume at the next valid one, a non-candidate one first if it comes earlier.
        next_cand = int(heads[i]) if i < heads.size else n
        resume = _resync(buf, off + 1, next_cand)
        if resume is None and next_cand < n:
            resume = next_cand
        damage.append(Damage(off, (resume if resume is not None else n) - off, resume))
        if resume is None:
            off = n
            break
        off = resume
    s = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    ln = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    end = int(s[-1] + ln[-1] + _FOOTER) if s.size else begin
    if damage and damage[-1].resumed_at is None:
        end = n  # nothing valid follows: a re-read of a grown file starts after the damage, not inside it
    return Framing(s, ln, end, truncated, damage)


def _zero_shift_table(lengths: np.ndarray) -> np.ndarray:
    """Per record: the constant that turns its unmasked data CRC into the footer value that makes
    header + data + footer contribute nothing to a raw (zero-initialised, unreflected-out) CRC.

    With R(m, s) the CRC32C register after feeding m from state s: a record's register before its
    footer is raw(data) ^ R(0^L, H(L)) where H(L) = R(header for length L, 0); the stored CRC is
    ~R(data, ~0) = ~(raw(data) ^ R(0^L, ~0)). So the register is crc ^ ~0 ^ R(0^L, ~0 ^ H(L)), a
    constant per length; writing that register as the footer brings the register back to 0.
    """
    if lengths.size and int(lengths.max()) <= 1 << 20:
        present = np.flatnonzero(np.bincount(lengths))
    else:
        present = np.unique(lengths)
    zeros = bytes(int(present.max()) + 1) if present.size else b""
    mv = memoryview(zeros)
    consts = np.zeros(present.size, np.uint32)
    for idx, length in enumerate(present.tolist()):
        header = struct.pack("<Q", length)
        header += struct.pack("<I", masked_crc(header))
        h = (~_crc32c.crc32c(header, _U32)) & _U32  # R(header, 0)
        shifted = (~_crc32c.crc32c(mv[:length], h)) & _U32  # R(0^L, ~0 ^ H(L))
        consts[idx] = shifted ^ _U32
    if present.size and int(present[-1]) <= 1 << 20:
        table = np.zeros(int(present[-1]) + 1, np.uint32)
        table[present] = consts
        return table[lengths]
    return consts[np.searchsorted(present, lengths)]


def verify_data_crcs(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Whether each record's data CRC matches, checked for all records in about one CRC pass.

    Overwrites each record's CRC footer in ``buf`` (nothing reads them afterwards): footer' is
    the register value that makes a valid record's raw CRC zero, so a run of contiguous valid
    records has raw CRC zero as a whole. Runs whose CRC is not zero are split until the damaged
    records are found. Records must have valid headers (`frame_records` checks them).
    """
    ok = np.ones(starts.shape[0], dtype=bool)
    if not starts.size:
        return ok
    footers = starts + lengths
    view = np.ndarray(shape=(buf.shape[0] - 3,), dtype="<u4", buffer=buf.data, strides=(1,))
    crc = view[footers]
    crc -= np.uint32(_MASK_DELTA)  # unmask: subtract, then rotate left by 15
    crc = (crc << np.uint32(15)) | (crc >> np.uint32(17))
    crc ^= _zero_shift_table(lengths)
    view[footers] = crc
    del crc, footers
    mem = _mem(buf)
    n = starts.size

    def first(i: int) -> int:
        return int(starts[i]) - _HEADER

    def end(i: int) -> int:
        return int(starts[i] + lengths[i]) + _FOOTER

    def clean(a: int, b: int) -> bool:  # records a..b-1, contiguous in the buffer
        return _crc32c.crc32c(mem[first(a) : end(b - 1)], _U32) == _U32

    # Records are ordered and never overlap: they are one contiguous stretch iff the span is their total size.
    if end(n - 1) - first(0) == int(lengths.sum()) + (_HEADER + _FOOTER) * n:
        pending = [(0, n)]
    else:
        gaps = np.flatnonzero(starts[1:] - _HEADER != starts[:-1] + lengths[:-1] + _FOOTER) + 1
        pending = list(zip(np.concatenate([[0], gaps]).tolist(), np.concatenate([gaps, [n]]).tolist()))
    while pending:
        a, b = pending.pop()
        if clean(a, b):
            continue
        if b - a <= 8:
            for r in range(a, b):
                ok[r] = clean(r, r + 1)
            continue
        step = -(-(b - a) // 16)
        pending += [(lo, min(lo + step, b)) for lo in range(a, b, step)]
    return ok


def data_crc_ok(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Whether each record's data CRC matches (one C call per record; ``buf`` is not changed)."""
    raw = _mem(buf)
    footers = _u32_at(buf, starts + lengths)
    out = np.empty(starts.shape[0], dtype=bool)
    for i, (s, ln) in enumerate(zip(starts.tolist(), lengths.tolist())):
        out[i] = masked_crc(raw[s : s + ln]) == int(footers[i])
    return out
