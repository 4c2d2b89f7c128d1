"""The chunk framing of a ``.wandb`` file, walked for all its 32 KiB blocks at once.

`frame` is the same reading as `records` (the reference, kept for the exact path): a chunk failing
its CRC loses the rest of its block, zero fill skips a block, a torn tail ends the read, and the
pieces of a record split over chunks (FIRST, MIDDLE, LAST) are joined. A valid chunk never crosses
a block boundary and every irregularity skips to the next block, so each block's walk starts at
its own boundary: the blocks are numpy lanes, one pass per chunk position. The CRCs are checked
after the walk (a failure only cuts its block short: the chunks read before it are the same), and
the FIRST/MIDDLE/LAST bookkeeping, which does cross blocks, is a forward fill over the chunks in
file order. The Python walk spends ~1 us per chunk; this ~0.4 us, most of it in one zlib call per chunk.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from analyzer.ingest.protowalk import unaligned_view

BLOCK, HEADER, CHUNK = 32768, 7, 7  # block size, file header (checked by wandb_run), chunk header
_CHUNK_HEADER = struct.Struct("<IHB")  # crc32 (zlib, over the type byte then the data), length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}
_CORRUPT = 5  # an event in the chunk sequence: a chunk that failed its check (drops a pending record)
_GO, _NEXT, _TORN, _BAD = 0, 1, 2, 3  # how a block's walk ended: file end, next block, torn tail, corrupt
PAD = 16  # zero bytes after the records, so fixed-size reads near the end stay inside the buffer
_CRC_BATCH = 1 << 18


@dataclass
class Framing:
    """What the chunk layer of one .wandb file met besides whole records."""

    corrupt_chunks: int = 0
    orphan_chunks: int = 0
    truncated_bytes: int = 0


def records(data: bytes, framing: Framing) -> Iterator[bytes]:
    """The reference reading (the exact path's): the records of a .wandb file in write order (after its
    header), as LevelDB's log reader does: a chunk failing its CRC loses the rest of its block, and a
    torn tail ends the read."""
    view = memoryview(data)
    pos, end = HEADER, len(data)
    pending: list[bytes] | None = None
    while pos < end:
        block_left = BLOCK - pos % BLOCK
        if block_left < CHUNK:  # the writer pads a block's last few bytes
            pos += block_left
            continue
        if pos + CHUNK > end:
            framing.truncated_bytes = end - pos
            break
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        stop = pos + CHUNK + length
        if stop > end:
            framing.truncated_bytes = end - pos
            break
        if kind not in _TYPE_CRC or length > block_left - CHUNK:
            if crc == length == kind == 0:  # zero fill (a preallocated or torn block): nothing written here
                pos += block_left
                continue
            framing.corrupt_chunks += 1
            pending, pos = None, pos + block_left
            continue
        chunk = view[pos + CHUNK: stop]
        if zlib.crc32(chunk, _TYPE_CRC[kind]) != crc:
            framing.corrupt_chunks += 1
            pending, pos = None, pos + block_left
            continue
        pos = stop
        if kind in (FULL, FIRST) and pending is not None:  # a record left without its LAST piece
            framing.orphan_chunks += 1
            pending = None
        if kind == FULL:
            yield bytes(chunk)
        elif kind == FIRST:
            pending = [bytes(chunk)]
        elif pending is None:  # a MIDDLE or LAST whose FIRST was lost
            framing.orphan_chunks += 1
        elif kind == MIDDLE:
            pending.append(bytes(chunk))
        else:
            yield b"".join(pending + [bytes(chunk)])
            pending = None
    if pending is not None:
        framing.truncated_bytes = framing.truncated_bytes or sum(len(p) for p in pending)


@dataclass(frozen=True)
class Framed:
    """The records of one file: ``buf[starts[i]:ends[i]]`` in write order.

    ``blob`` is the file (``size`` bytes), then the records that were split over chunks (joined), then
    PAD zero bytes; ``buf`` the same bytes as a numpy array.
    """

    blob: bytes
    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    size: int
    corrupt_chunks: int
    orphan_chunks: int
    truncated_bytes: int

    def part(self, lo: int, hi: int) -> Framed:
        """Records lo to hi only (numbered from 0 again)."""
        return Framed(self.blob, self.buf, self.starts[lo:hi], self.ends[lo:hi], self.size,
                      self.corrupt_chunks, self.orphan_chunks, self.truncated_bytes)


@dataclass(frozen=True)
class _Chunks:
    block: np.ndarray
    pos: np.ndarray
    length: np.ndarray
    kind: np.ndarray
    crc: np.ndarray

    def where(self, keep: np.ndarray) -> _Chunks:
        return _Chunks(self.block[keep], self.pos[keep], self.length[keep], self.kind[keep], self.crc[keep])


def _walk_blocks(buf: np.ndarray, n: int) -> tuple[_Chunks, np.ndarray, np.ndarray]:
    """Every block's chunks, assuming their CRCs hold; and how and where each block's walk ended."""
    nblocks = max(1, -(-n // BLOCK))
    pos = np.arange(nblocks, dtype=np.int64) * BLOCK
    pos[0] = HEADER
    block_end = pos - pos % BLOCK + BLOCK
    status = np.full(nblocks, _GO, np.int8)
    stop_at = np.zeros(nblocks, np.int64)
    u16 = unaligned_view(buf, "<u2")
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    lane = np.arange(nblocks)
    while lane.size:
        p = pos[lane]
        left = block_end[lane] - p
        readable = (left >= CHUNK) & (p + CHUNK <= n)
        if not readable.all():  # lanes at the end of their block or of the file
            out, p_out = lane[~readable], p[~readable]
            status[out] = np.where(p_out >= n, _GO, np.where(block_end[out] - p_out < CHUNK, _NEXT, _TORN))
            stop_at[out] = p_out
            lane, p, left = lane[readable], p[readable], left[readable]
        length = u16[p + 4].astype(np.int64)
        stop = p + CHUNK + length
        fits = (stop <= n) & (length <= left - CHUNK) & ((buf[p + 6] - np.uint8(1)) < 4)
        if not fits.all():
            _stop_lanes(buf, lane[~fits], p[~fits], stop[~fits] > n, status, stop_at)
            lane, p, stop = lane[fits], p[fits], stop[fits]
        parts.append((lane, p, stop))
        pos[lane] = stop
    sizes = [part[0].size for part in parts]
    block, at, stop = (np.concatenate(c) for c in zip(*parts))
    order = np.repeat(np.arange(len(parts)), sizes)
    # Chunks in file order: block by block, each block's in walk order (no sort needed).
    per_block = np.bincount(block, minlength=nblocks)
    slot = np.empty(block.size, np.int64)
    slot[(np.cumsum(per_block) - per_block)[block] + order] = np.arange(block.size)
    block, at, stop = block[slot], at[slot], stop[slot]
    crc = unaligned_view(buf, "<u4")[at] if at.size else np.zeros(0, np.uint32)
    return _Chunks(block, at, stop - at - CHUNK, buf[at + 6], crc), status, stop_at


def _stop_lanes(buf: np.ndarray, lane: np.ndarray, p: np.ndarray, torn: np.ndarray, status: np.ndarray,
                stop_at: np.ndarray) -> None:
    """Blocks whose next chunk header is torn (runs past the file end), zero fill, or corrupt."""
    zero = (~torn & (unaligned_view(buf, "<u4")[p] == 0) & (unaligned_view(buf, "<u2")[p + 4] == 0)
            & (buf[p + 6] == 0))
    status[lane] = np.where(torn, _TORN, np.where(zero, _NEXT, _BAD))
    stop_at[lane] = p


def _crc_failures(data: bytes, ch: _Chunks) -> np.ndarray:
    """Indices of the chunks whose CRC (over the type byte and the data) does not match."""
    crc = zlib.crc32  # one call per chunk is most of this module's time: ~0.25 us each, the CRC itself ~0.03
    failed = []
    for lo in range(0, ch.pos.size, _CRC_BATCH):  # the CRCs as Python ints: a batch at a time
        pos, length = ch.pos[lo: lo + _CRC_BATCH], ch.length[lo: lo + _CRC_BATCH]
        got = [crc(data[a:b]) for a, b in zip((pos + 6).tolist(), (pos + CHUNK + length).tolist())]
        failed.append(np.flatnonzero(np.array(got, np.uint32) != ch.crc[lo: lo + _CRC_BATCH]) + lo)
    return np.concatenate(failed) if failed else np.zeros(0, np.int64)


def _cut_at_failures(data: bytes, ch: _Chunks, status: np.ndarray,
                     stop_at: np.ndarray) -> _Chunks:
    """The chunks a CRC-checking walk reads: a block ends (corrupt) at its first failing chunk."""
    failed = _crc_failures(data, ch)
    if failed.size == 0:
        return ch
    blocks, first = np.unique(ch.block[failed], return_index=True)
    cut = failed[first]
    status[blocks], stop_at[blocks] = _BAD, ch.pos[cut]
    limit = np.full(status.size, np.iinfo(np.int64).max)
    limit[blocks] = ch.pos[cut]
    return ch.where(ch.pos < limit[ch.block])


def _events(ch: _Chunks, status: np.ndarray, stop_at: np.ndarray,
            n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(event kinds, event chunk indices (-1 for a corrupt event), torn bytes) up to a torn tail."""
    torn = np.flatnonzero(status == _TORN)
    truncated = 0
    if torn.size:
        last = int(torn[0])
        truncated = n - int(stop_at[last])
        status = status[: last + 1]
        ch = ch.where(ch.block <= last)
    bad = np.flatnonzero(status == _BAD)
    # A block's corrupt event comes after its chunks: before the next block's first chunk.
    at = np.searchsorted(ch.block, bad, side="right")
    kinds = np.insert(ch.kind.astype(np.int8), at, _CORRUPT)
    index = np.insert(np.arange(ch.pos.size), at, -1)
    return kinds, index, truncated


def frame(data: bytes) -> Framed:
    """The records of a whole .wandb file (its 7-byte header already checked)."""
    n = len(data)
    raw = np.frombuffer(data, np.uint8)
    ch, status, stop_at = _walk_blocks(raw, n)
    ch = _cut_at_failures(data, ch, status, stop_at)
    kinds, index, truncated = _events(ch, status, stop_at, n)
    # A record is pending after a FIRST until a FULL, FIRST, LAST or corrupt chunk: what decides an
    # event's reading is the last such event before it (MIDDLE changes nothing).
    marks = np.where(kinds != MIDDLE, np.arange(kinds.size), -1)
    before = np.concatenate(([-1], np.maximum.accumulate(marks)[:-1])) if kinds.size else marks
    pending = (before >= 0) & (kinds[np.maximum(before, 0)] == FIRST)
    orphans = int(np.count_nonzero(((kinds == FULL) | (kinds == FIRST)) & pending)
                  + np.count_nonzero(((kinds == MIDDLE) | (kinds == LAST)) & ~pending))
    whole = np.flatnonzero((kinds == FULL) | ((kinds == LAST) & pending))
    data_start = ch.pos + CHUNK
    data_end = data_start + ch.length
    starts, ends = np.empty(whole.size, np.int64), np.empty(whole.size, np.int64)
    full = kinds[whole] == FULL
    starts[full], ends[full] = data_start[index[whole[full]]], data_end[index[whole[full]]]
    # Each record whose pieces were joined: its chunks from its FIRST to its LAST, appended after the file.
    split = whole[~full]
    sizes = split - before[split] + 1
    pieces = index[np.repeat(before[split] - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))]
    joined = b"".join([data[a:b] for a, b in zip(data_start[pieces].tolist(), data_end[pieces].tolist())])
    lengths = np.add.reduceat(ch.length[pieces], np.cumsum(sizes) - sizes) if split.size else sizes
    starts[~full] = n + np.cumsum(lengths) - lengths
    ends[~full] = n + np.cumsum(lengths)
    final = int(marks.max()) if kinds.size else -1
    if final >= 0 and kinds[final] == FIRST:  # the last record never got its LAST piece
        pieces = index[final:]
        truncated = truncated or int(ch.length[pieces].sum())
    blob = b"".join([data, joined, bytes(PAD)])
    return Framed(blob, np.frombuffer(blob, np.uint8), starts, ends, n, int(np.count_nonzero(kinds == _CORRUPT)),
                  orphans, truncated)
