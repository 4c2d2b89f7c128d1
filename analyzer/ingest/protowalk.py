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


_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def word_at(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, k: int) -> np.ndarray:
    """Bytes k..k+7 of each string as a little-endian uint64, zero past the string's end."""
    limit = buf.shape[0] - 8
    at = offsets + k
    word = unaligned_view(buf, "<u8")[np.minimum(at, limit)]
    if at.size and int(at.max()) > limit:  # a read near the end is shifted back, then masked
        word = word >> ((at - np.minimum(at, limit)).astype(np.uint64) * np.uint64(8))
    return word & _MASKS[np.clip(lengths - k, 0, 8)]


def _mix(h: np.ndarray, word: np.ndarray, k: int) -> np.ndarray:
    h = (h ^ word) * np.uint64(0x100000001B3) + np.uint64(k + 1)
    return h ^ (h >> np.uint64(29))


def hash_strings(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each byte string, 8 bytes per numpy pass.

    Used to group millions of repeated tag strings without building Python str objects;
    a collision between two of a file's few hundred distinct tags has odds near 1e-15.
    """
    h = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    if offsets.shape[0] == 0:
        return h
    offsets, lengths = offsets.astype(np.int64), lengths.astype(np.int64)
    for k in range(0, int(lengths.max()), 8):
        h = _mix(h, word_at(buf, offsets, lengths, k), k)
    return h


def intern_strings(buf: np.ndarray, offsets: np.ndarray,
                   lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Group equal byte strings: (code of each, numbered by first appearance; index of each code's first).

    Grouped by the `hash_strings` hash, then every string is compared with its group's first, 8 bytes
    at a time, so the grouping is exact: None when two different strings share a hash.
    """
    offsets, lengths = offsets.astype(np.int64), lengths.astype(np.int64)
    h = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    longest = int(lengths.max()) if lengths.size else 0
    words = [word_at(buf, offsets, lengths, k) for k in range(0, longest, 8)]
    for k, word in zip(range(0, 8 * len(words), 8), words):
        h = _mix(h, word, k)
    import pandas as pd  # imported here: at the top it would cost every process ~0.25 s, W&B or not
    codes, _ = pd.factorize(h)
    codes = codes.astype(np.int64)
    seen = np.maximum.accumulate(np.concatenate(([-1], codes[:-1]))) if codes.size else codes
    first = np.flatnonzero(codes > seen)  # codes count up from 0 in order of first appearance
    rep = first[codes]
    if not (np.array_equal(lengths, lengths[rep]) and all(np.array_equal(w, w[rep]) for w in words)):
        return None
    return codes, first


@dataclass(frozen=True)
class FieldsAt:
    """The fields at one position of the walked messages (one field per message that has one).

    Attributes:
        msg: index of the walked message each field belongs to (increasing).
        tag: the field's tag as written, its one or two bytes read as a little-endian int (so a
            caller compares with the tags it expects, encoded once).
        start, end: the payload's bounds in ``buf``.
    """

    msg: np.ndarray
    tag: np.ndarray
    start: np.ndarray
    end: np.ndarray


@dataclass(frozen=True)
class LenFields:
    """The fields of messages whose fields are all length-delimited (strings, bytes, sub-messages).

    Attributes:
        at: per field position, the fields there: ``at[k]`` holds every message's k-th field.
        count: per walked message, how many fields it has.
        head_high: per walked message, its bytes >= 0x80 in tags and lengths (the rest are payload).
        bad: per walked message, True when it has a field of another wire type, a tag longer than
            two bytes, a length varint longer than 5 bytes, or a field running past its end. Such
            messages' fields are not listed (their count is 0).
    """

    at: tuple[FieldsAt, ...]
    count: np.ndarray
    head_high: np.ndarray
    bad: np.ndarray


def _lengths(buf: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray | int]:
    """(length, byte count) of the length varint at each position; -1 where it is longer than 5 bytes
    (upb refuses those; every implementation reads shorter ones, also when not the shortest)."""
    length = buf[q].astype(np.int64)
    long = np.flatnonzero(length >= 0x80)
    if not long.size:
        return length, 1
    v, n = read_varints(buf, q[long])
    length[long] = np.where(n <= 5, v, 0).astype(np.int64)
    length[long[n > 5]] = -1
    nb = np.ones(q.size, np.int64)
    nb[long] = n
    return length, nb


def walk_len_fields(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> LenFields:
    """Walk messages made only of length-delimited fields: ~15 numpy passes per field position where
    `walk` takes ~35 (it reads every wire type and varints of any length). ``buf`` must extend at
    least 2 bytes past the last message."""
    bad = np.zeros(starts.shape[0], dtype=bool)
    head_high = np.zeros(starts.shape[0], dtype=np.int64)
    count = np.zeros(starts.shape[0], dtype=np.int64)
    lane = np.flatnonzero(starts < ends)
    p, e = starts[lane].astype(np.int64), ends[lane].astype(np.int64)
    at: list[FieldsAt] = []
    while lane.size:
        t0 = buf[p]
        tag = t0.astype(np.int64)
        broken = (t0 & 7) != 2
        field_zero = (t0 & 0x78) == 0  # field number 0: every protobuf parser refuses the message
        q = p + 1
        high = None
        two = t0 >= 0x80
        if two.any():
            t1 = buf[p + 1]
            tag |= np.where(two, t1, 0).astype(np.int64) << 8
            broken |= two & (t1 >= 0x80)
            field_zero &= ~two | (t1 == 0)
            q += two
            high = two.astype(np.int64)
        broken |= field_zero
        length, nb = _lengths(buf, q)
        if not isinstance(nb, int):
            broken |= length < 0
            high = nb - 1 if high is None else high + nb - 1
        if high is not None:
            head_high[lane] += high
        start = q + nb
        stop = start + length
        broken |= stop > e
        if broken.any():
            bad[lane[broken]] = True
            good = ~broken
            lane, tag, start, stop, e = lane[good], tag[good], start[good], stop[good], e[good]
        at.append(FieldsAt(lane, tag, start, stop))
        more = stop < e
        count[lane[~more]] = len(at)
        lane, p, e = lane[more], stop[more], e[more]
    if bad.any():  # fields of a message that later proved broken are dropped with it
        count[bad] = 0
        at = [FieldsAt(*(c[~bad[f.msg]] for c in (f.msg, f.tag, f.start, f.end))) for f in at]
    return LenFields(tuple(at), count, head_high, bad)
