"""Walk the fields of many protobuf messages at once with numpy.

Why hand-written: decoding millions of tiny Event messages one `Event.FromString` at a time
costs ~5 us each in Python; walking them column-wise costs a few numpy passes per field
position. Only the wire format is interpreted here; which field means what is the caller's.
A message the walker cannot parse (bad wire type, a field running past its end) is flagged,
never guessed at: the caller re-checks it against its CRC and decodes it with protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class Fields:
    """Every field of a set of messages, one row per field occurrence.

    Attributes:
        msg: index (into the walked messages) of the message each field belongs to.
        number: field number.
        value: the varint value (wire type 0) or the payload offset (types 1, 2, 5).
        length: payload length (8, 4, or the bytes length; 0 for varints).
        wire: wire type.
        bad: per walked message, True when it could not be parsed.
    """

    msg: np.ndarray
    number: np.ndarray
    value: np.ndarray
    length: np.ndarray
    wire: np.ndarray
    bad: np.ndarray

    def select(self, number: int, wire: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(msg, value, length) of every occurrence of field ``number`` with wire type ``wire``."""
        hit = (self.number == number) & (self.wire == wire)
        return self.msg[hit], self.value[hit], self.length[hit]



def read_varints(buf: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode one varint at each position: (values as uint64, byte counts)."""
    last = buf.shape[0] - 1
    byte = buf[np.minimum(pos, last)].astype(np.uint64)
    value = byte & np.uint64(0x7F)
    nbytes = np.ones(pos.shape[0], dtype=np.int64)
    pending = np.flatnonzero(byte >= 0x80)
    shift = 7
    while pending.size and shift < 70:
        byte = buf[np.minimum(pos[pending] + nbytes[pending], last)].astype(np.uint64)
        value[pending] |= (byte & np.uint64(0x7F)) << np.uint64(min(shift, 63))
        nbytes[pending] += 1
        pending = pending[byte >= 0x80]
        shift += 7
    if pending.size:  # longer than 10 bytes: not a varint
        nbytes[pending] = 1 << 40
    return value, nbytes


def walk(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Fields:
    """Walk every field of the messages ``buf[starts[i]:ends[i]]``."""
    m = starts.shape[0]
    pos = starts.astype(np.int64, copy=True)
    bad = np.zeros(m, dtype=bool)
    active = np.flatnonzero(pos < ends)
    parts: list[tuple[np.ndarray, ...]] = []
    while active.size:
        p = pos[active]
        key, kn = read_varints(buf, p)
        p = p + kn
        wire = (key & np.uint64(7)).astype(np.int8)
        number = (key >> np.uint64(3)).astype(np.int64)
        value = np.zeros(active.size, dtype=np.uint64)
        length = np.zeros(active.size, dtype=np.int64)

        is_var = wire == _VARINT
        if is_var.any():
            v, vn = read_varints(buf, p[is_var])
            value[is_var] = v
            p[is_var] += vn
        for wt, size in ((_FIXED64, 8), (_FIXED32, 4)):
            sel = wire == wt
            value[sel] = p[sel].astype(np.uint64)
            length[sel] = size
            p[sel] += size
        is_bytes = wire == _BYTES
        if is_bytes.any():
            ln, lnn = read_varints(buf, p[is_bytes])
            pb = p[is_bytes] + lnn
            value[is_bytes] = pb.astype(np.uint64)
            ln64 = np.minimum(ln, np.uint64(1 << 40)).astype(np.int64)
            length[is_bytes] = ln64
            p[is_bytes] = pb + ln64

        broken = (~np.isin(wire, (_VARINT, _FIXED64, _BYTES, _FIXED32))) | (p > ends[active]) | (number == 0)
        bad[active[broken]] = True
        good = ~broken
        parts.append((active[good], number[good], value[good], length[good], wire[good]))
        pos[active] = p
        active = active[good & (p < ends[active])]
    if parts:
        cols = [np.concatenate(c) for c in zip(*parts)]
    else:
        cols = [np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint64),
                np.zeros(0, np.int64), np.zeros(0, np.int8)]
    # Fields of a message that later proved broken are dropped with it.
    keep = ~bad[cols[0]] if cols[0].size else np.zeros(0, dtype=bool)
    msg, number, value, length, wire = (c[keep] for c in cols)
    return Fields(msg, number, value, length, wire, bad)


def unaligned_view(buf: np.ndarray, dtype: str) -> np.ndarray:
    """A view where element i is the ``dtype`` value starting at byte i (numpy handles unaligned
    access), so reading at arbitrary offsets is one gather, with no (n, size) index matrix."""
    dt = np.dtype(dtype)
    count = buf.shape[0] - dt.itemsize + 1
    if count <= 0:
        return np.zeros(0, dtype=dt)
    return np.ndarray(shape=(count,), dtype=dt, buffer=buf.data, offset=0, strides=(1,))


def read_at(buf: np.ndarray, offsets: np.ndarray, dtype: str) -> np.ndarray:
    """The little-endian value of ``dtype`` (e.g. "<f4", "<u8") starting at each byte offset."""
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.size == 0:
        return np.zeros(0, dtype=np.dtype(dtype))
    return unaligned_view(buf, dtype)[offsets]


def hash_strings(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each byte string, 8 bytes per numpy pass.

    Used to group millions of repeated tag strings without building Python str objects;
    a collision between two of a file's few hundred distinct tags has odds near 1e-15.
    """
    n = offsets.shape[0]
    h = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    if n == 0:
        return h
    maxlen = int(lengths.max())
    offsets = offsets.astype(np.int64)
    lengths = lengths.astype(np.int64)
    limit = buf.shape[0] - 8
    for k in range(0, maxlen, 8):
        live = lengths > k
        at = np.minimum(offsets + k, limit)  # a read near the end is shifted back, then masked
        shift_back = (offsets + k - at).astype(np.uint64) * np.uint64(8)
        word = read_at(buf, at, "<u8") >> shift_back
        keep_bytes = np.clip(lengths - k, 0, 8).astype(np.uint64)
        mask = np.where(keep_bytes >= 8, np.uint64(0xFFFFFFFFFFFFFFFF),
                        (np.uint64(1) << (keep_bytes * np.uint64(8))) - np.uint64(1))
        word = np.where(live, word & mask, np.uint64(0))
        h = (h ^ word) * np.uint64(0x100000001B3) + np.uint64(k + 1)
        h ^= h >> np.uint64(29)
    return h
