"""The history of a ``.wandb`` file read column-wise from its bytes, without a protobuf object per record.

Why hand-written: no library walks protobuf messages column-wise (protobuf, upb and betterproto all
build an object per message), and the exact path (`wandb_history`) spends ~2-3 us per record in
``Record.FromString`` and ~15 us walking each history record's items in Python. Here all records
are matched at once, in numpy, against the layout wandb writes (`protowalk.walk_len_fields` walks
their items position by position), and the value_json texts are parsed in bulk by polars.

The fast path vouches for two kinds of record: history records whose items each hold one key (or
one nested_key) then one value_json, every value a JSON number, NaN, Infinity, -Infinity, true,
false or null, no key twice and no media key (``._type``); and summary records (two thirds of a
file's records, which the reader skips, but counts) made only of string items. Each may hold no
field but those, with ASCII strings and varints within upb's limits, so that every protobuf
implementation decodes it without error and to the same values. Every other record (run, config,
metric, stats, ..., and any history record with a nested dict, media, text, a typed value, an
unknown field or an odd encoding) is left to the exact path, record by record. The field numbers
come from wandb's own descriptors, so another release's protos are read as they define them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from analyzer.ingest import protowalk as pw
from analyzer.ingest.wandb_framing import Framed

SLOW, HISTORY, SUMMARY = 0, 1, 2  # how a record is read: exact path, fast history, skipped summary
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?$"  # what float() reads, no spaces or '_'
_TEXT_MAX = 24  # value_json texts longer than this are left to the exact path (3 words, see _values)
#: Texts matched whole: float() reads the first three; json.loads reads true and false as bools (points 1.0
#: and 0.0) and null as no value.
_WORDS = ("NaN", "Infinity", "-Infinity", "true", "false", "null")
_STRING, _MESSAGE, _INT64 = 9, 11, 3  # FieldDescriptor.TYPE_*


@dataclass(frozen=True)
class Layout:
    """The tags (as written: one or two bytes read as a little-endian int) of the fields read here."""

    num: int  # Record.num, a varint
    history: int
    summary: int
    item: int  # HistoryRecord
    step: int
    step_num: int  # HistoryStep.num, a varint
    key: int  # HistoryItem
    nested_key: int
    value_json: int
    summary_items: frozenset[int]  # SummaryRecord's SummaryItem fields


def _tag(field: Any, wire: int) -> int:
    key = field.number << 3 | wire
    if key >= 1 << 14:
        raise ValueError("a tag longer than two bytes")
    return key if key < 0x80 else (key & 0x7F | 0x80) | (key >> 7) << 8


def _repeated(field: Any) -> bool:
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED


def layout(pb: Any) -> Layout | None:
    """The fields from wandb's descriptors; None when they are not the types this reading assumes."""
    try:
        rec, hist = pb.Record.DESCRIPTOR.fields_by_name, pb.HistoryRecord.DESCRIPTOR.fields_by_name
        item, step = pb.HistoryItem.DESCRIPTOR.fields_by_name, pb.HistoryStep.DESCRIPTOR.fields_by_name
        summary = pb.SummaryRecord.DESCRIPTOR
        expect = [(rec["num"], _INT64, False), (rec["history"], _MESSAGE, False),
                  (rec["summary"], _MESSAGE, False), (hist["item"], _MESSAGE, True), (hist["step"], _MESSAGE, False),
                  (step["num"], _INT64, False), (item["key"], _STRING, False), (item["nested_key"], _STRING, True),
                  (item["value_json"], _STRING, False)]
        if any(f.type != kind or _repeated(f) != many for f, kind, many in expect):
            return None
        messages = [(rec["history"], pb.HistoryRecord), (rec["summary"], pb.SummaryRecord),
                    (hist["item"], pb.HistoryItem), (hist["step"], pb.HistoryStep)]
        if any(f.message_type is not cls.DESCRIPTOR for f, cls in messages):
            return None
        items = [f for f in summary.fields if f.type == _MESSAGE and f.message_type is pb.SummaryItem.DESCRIPTOR]
        if any(f.type != _STRING for f in pb.SummaryItem.DESCRIPTOR.fields):
            return None  # a summary item is vouched for as strings only (protobuf parses no unknown field)
        return Layout(_tag(rec["num"], 0), _tag(rec["history"], 2), _tag(rec["summary"], 2),
                      _tag(hist["item"], 2), _tag(hist["step"], 2), _tag(step["num"], 0), _tag(item["key"], 2),
                      _tag(item["nested_key"], 2), _tag(item["value_json"], 2), frozenset(_tag(f, 2) for f in items))
    except (AttributeError, KeyError, ValueError):
        return None


@dataclass(frozen=True)
class Columns:
    """What the fast path read from one file's records.

    Attributes:
        kind: per record, SLOW, HISTORY or SUMMARY.
        rec, key, value: the items of the HISTORY records, record by record, each record's in order:
            its record, its key (an index into ``keys``) and its value.
        keys: the distinct keys.
        own_step: per record, its ``_step`` value, else its HistoryStep's num, else NaN.
        wall: per record, its ``_timestamp`` value, else NaN.
    """

    kind: np.ndarray
    rec: np.ndarray
    key: np.ndarray
    value: np.ndarray
    keys: tuple[str, ...]
    own_step: np.ndarray
    wall: np.ndarray


def _varint_at(buf: np.ndarray, pos: np.ndarray, max_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value as int64, byte count up to 11, whether it is at most max_bytes long) at each position.

    upb refuses a length varint longer than 5 bytes; 10 bytes hold any int64 (a negative one as its
    two's complement, which the cast to int64 gives back as protobuf does).
    """
    v, n = pw.read_varints(buf, pos)
    n = np.minimum(n, 11)  # read_varints says 2**40 for no varint at all
    return v.astype(np.int64), n, n <= max_bytes


def _tag_at(buf: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tag as written, its byte count) at each position, for comparison with the encoded tags."""
    t0 = buf[pos].astype(np.int64)
    two = t0 >= 0x80
    t1 = np.where(two, buf[pos + 1], 0).astype(np.int64)
    return t0 | t1 << 8, 1 + two


def _top_level(f: Framed, lay: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per record: (kind, payload start, payload end, bytes >= 0x80 outside strings) for the records that
    are ``[num] history|summary`` with nothing else; SLOW for the rest."""
    s, e = f.starts, f.ends
    first, fb = _tag_at(f.buf, s)
    has_num = first == lay.num
    _, nb, num_ok = _varint_at(f.buf, s + fb, 10)
    q = np.where(has_num, s + fb + nb, s)
    tag, tb = _tag_at(f.buf, q)
    length, lb, len_ok = _varint_at(f.buf, q + tb, 5)
    ps = q + tb + lb
    fits = (~has_num | num_ok) & len_ok & (ps + length == e)  # nothing after it: a second history would merge
    kind = np.select([fits & (tag == lay.history), fits & (tag == lay.summary)], [HISTORY, SUMMARY], SLOW)
    high = np.where(has_num, fb - 1 + nb - 1, 0) + tb - 1 + lb - 1
    return kind.astype(np.int8), ps, ps + length, high


def _step_nums(buf: np.ndarray, a: np.ndarray, b: np.ndarray, lay: Layout) -> tuple[np.ndarray, np.ndarray,
                                                                                    np.ndarray]:
    """A HistoryStep payload: (num, bytes >= 0x80, ok) where it is empty or just ``num``."""
    empty = a == b
    tag, tb = _tag_at(buf, a)
    num, nb, ok = _varint_at(buf, a + tb, 10)
    ok = empty | ((tag == lay.step_num) & ok & (a + tb + nb == b))
    return np.where(empty, 0, num), np.where(empty, 0, tb - 1 + nb - 1), ok


def _any_of(tag: np.ndarray, tags: frozenset[int]) -> np.ndarray:
    hit = np.zeros(tag.size, bool)
    for t in tags:
        hit |= tag == t
    return hit


def _high_bytes(f: Framed, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Bytes >= 0x80 in each of these records. Records in the file and records joined after it are
    looked up apart: each group spans a stretch of ``buf`` about the size of its records."""
    out = np.zeros(starts.size, np.int64)
    for group in (starts < f.size, starts >= f.size):
        if group.any():
            s, e = starts[group], ends[group]
            lo = int(s.min())
            high = np.flatnonzero(f.buf[lo: int(e.max())] >= 0x80) + lo
            out[group] = np.searchsorted(high, e) - np.searchsorted(high, s)
    return out


def _repeated_keys(rec: np.ndarray, code: np.ndarray, distinct: int) -> np.ndarray:
    """Whether each item's key came earlier in its record (items record by record)."""
    if distinct <= 64 and hasattr(np, "bitwise_count"):  # a record's keys as bits: one OR per record
        bits = np.left_shift(np.uint64(1), code.astype(np.uint64))
        first = np.flatnonzero(np.diff(rec, prepend=-1))
        union = np.bitwise_or.reduceat(bits, first) if rec.size else bits
        count = np.diff(np.append(first, rec.size))
        clash = np.bitwise_count(union) != count
        return np.repeat(clash, count)
    import pandas as pd  # imported here: at the top it would cost every process ~0.25 s, W&B or not
    return pd.Series(rec * distinct + code).duplicated().to_numpy()


def _values(buf: np.ndarray, start: np.ndarray,
            length: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, ok, null) of each value_json text: ok where float() reads it the way polars does (checked
    against float()'s grammar first), or it is exactly NaN, Infinity, -Infinity, true, false or null."""
    words = [pw.word_at(buf, start, length, k) for k in range(0, _TEXT_MAX, 8)]
    nan, inf, ninf, true, false, null = (
        (length == len(name)) & (words[0] == int.from_bytes(name[:8].encode(), "little"))
        & (words[1] == int.from_bytes(name[8:].encode(), "little")) for name in _WORDS)
    table = np.stack(words, axis=1)
    ascii_ = ~(table & np.uint64(0x8080808080808080)).any(axis=1)
    table[~ascii_] = 0  # polars refuses a text that is not UTF-8; emptied, it fails the length check below
    texts = pl.Series(table.view(f"S{_TEXT_MAX}").ravel())  # trailing NULs dropped: the length check again
    text = pl.col("t").cast(pl.String)
    read = pl.DataFrame({"t": texts, "n": length}).select(
        number=(text.str.contains(_NUMBER) & (text.str.len_bytes() == pl.col("n"))).fill_null(False),
        parsed=text.cast(pl.Float64, strict=False))
    number, parsed = read["number"].to_numpy(), read["parsed"].to_numpy()
    value = np.select([nan, inf, ninf, true, false], [np.nan, np.inf, -np.inf, 1.0, 0.0], parsed)
    ok = nan | inf | ninf | true | false | null | (number & ~np.isnan(parsed))
    return value, ok, null


@dataclass
class _Reading:
    """One file's records while they are matched: which are left to the exact path so far, and the
    bytes >= 0x80 each holds outside its strings (a record whose strings hold any is left too)."""

    kind: np.ndarray
    slow: np.ndarray
    high: np.ndarray
    step_num: np.ndarray

    def spoil(self, records: np.ndarray) -> None:
        self.slow[records] = True

    def count_high(self, records: np.ndarray, head_high: np.ndarray) -> None:
        self.high += np.bincount(records, weights=head_high, minlength=self.high.size).astype(np.int64)


def _items(f: Framed, lay: Layout, r: _Reading, ps: np.ndarray,
           pe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The HistoryRecord and SummaryRecord fields: (record, payload bounds) of each item, the history
    items first, record by record and each record's in order, then the summary items."""
    hs = np.flatnonzero(r.kind != SLOW)
    l1 = pw.walk_len_fields(f.buf, ps[hs], pe[hs])
    r.spoil(hs[l1.bad])
    r.high[hs] += l1.head_high
    history = r.kind[hs] == HISTORY
    counts = np.where(history, l1.count, 0)
    first = np.cumsum(counts) - counts  # each history record's first slot: its fields in order
    slots = np.full((3, int(counts.sum())), -1)  # record, payload start, payload end
    steps: list[tuple[np.ndarray, ...]] = [(np.zeros(0, np.int64),) * 3]
    summary: list[np.ndarray] = []
    for k, at in enumerate(l1.at):
        rec, hist = hs[at.msg], history[at.msg]
        mine = hist & (at.tag == lay.item)
        step = hist & (at.tag == lay.step)
        theirs = ~hist & _any_of(at.tag, lay.summary_items)
        r.spoil(rec[~(mine | step | theirs)])
        slots[:, first[at.msg[mine]] + k] = rec[mine], at.start[mine], at.end[mine]
        if step.any():
            steps.append((rec[step], at.start[step], at.end[step]))
        summary.append(np.stack([rec[theirs], at.start[theirs], at.end[theirs]]))
    step_rec, a, b = (np.concatenate(c) for c in zip(*steps))
    r.spoil(np.flatnonzero(np.bincount(step_rec, minlength=r.kind.size) > 1))  # two steps would merge
    num, high, ok = _step_nums(f.buf, a, b, lay)
    r.spoil(step_rec[~ok])
    r.step_num[step_rec] = num.astype(np.float64)  # float(record.step.num), as the exact path
    r.count_high(step_rec, high)
    items = np.concatenate([slots[:, slots[0] >= 0], *summary], axis=1)
    return items[0], items[1:]


def _item_fields(f: Framed, lay: Layout, r: _Reading, item_rec: np.ndarray,
                 bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The items' fields, checked; for the history items, in order: (record, key bounds, value bounds)."""
    l2 = pw.walk_len_fields(f.buf, bounds[0], bounds[1])
    r.spoil(item_rec[l2.bad])
    r.count_high(item_rec, l2.head_high)
    history = r.kind[item_rec] == HISTORY
    r.spoil(item_rec[history & (l2.count != 2)])
    if len(l2.at) < 2:
        empty = np.zeros((2, 0), np.int64)
        return empty[0], empty, empty
    pair = history & (l2.count == 2)
    keys, values = l2.at[0], l2.at[1]
    key, value = pair[keys.msg], pair[values.msg]  # the same items, in the same order
    r.spoil(item_rec[keys.msg[key]][(keys.tag[key] != lay.key) & (keys.tag[key] != lay.nested_key)])
    r.spoil(item_rec[values.msg[value]][values.tag[value] != lay.value_json])
    return (item_rec[keys.msg[key]], np.stack([keys.start[key], keys.end[key]]),
            np.stack([values.start[value], values.end[value]]))


def decode(f: Framed, lay: Layout) -> Columns | None:
    """The records' columns; None when the keys cannot be told apart exactly (a hash collision)."""
    kind, ps, pe, high = _top_level(f, lay)
    n = kind.size
    r = _Reading(kind, np.zeros(n, bool), high.astype(np.int64), np.full(n, np.nan))
    item_rec, bounds = _items(f, lay, r, ps, pe)
    rec, key_at, value_at = _item_fields(f, lay, r, item_rec, bounds)
    # Protobuf checks that strings are UTF-8: a summary record with a byte >= 0x80 in a string is left to it
    # (history records' keys and values are checked to be ASCII as they are read).
    summary = np.flatnonzero((r.kind == SUMMARY) & ~r.slow)
    r.spoil(summary[_high_bytes(f, f.starts[summary], f.ends[summary]) != r.high[summary]])
    return _history(f, r, rec, key_at, value_at)


def _history(f: Framed, r: _Reading, rec: np.ndarray, key_at: np.ndarray,
             value_at: np.ndarray) -> Columns | None:
    """Keys interned and values parsed for the history records still read here."""
    keep = ~r.slow[rec]
    rec, key_at, value_at = rec[keep], key_at[:, keep], value_at[:, keep]
    interned = pw.intern_strings(f.buf, key_at[0], key_at[1] - key_at[0])
    if interned is None:
        return None
    code, first = interned
    raw = [f.buf[a:b].tobytes() for a, b in zip(key_at[0][first].tolist(), key_at[1][first].tolist())]
    keys = tuple(k.decode("latin-1") for k in raw)
    # Not ASCII: left to protobuf's UTF-8 check. W&B's media parts: the exact path counts the whole object.
    odd = np.array([not k.isascii() or k.endswith(b"._type") for k in raw], bool)
    r.spoil(rec[odd[code]])
    r.spoil(rec[_repeated_keys(rec, code, len(keys))])  # a key twice in a record: the last value wins
    value, ok, null = _values(f.buf, value_at[0], value_at[1] - value_at[0])
    r.spoil(rec[~ok])
    keep = ~r.slow[rec] & ~null  # a null is no value: `History.add` reads it as if the key were not there
    rec, code, value = rec[keep], code[keep], value[keep]
    own_step, wall = r.step_num.copy(), np.full(r.kind.size, np.nan)
    index = {k: i for i, k in enumerate(keys)}
    for name, into in (("_step", own_step), ("_timestamp", wall)):
        hit = code == index.get(name, -1)
        into[rec[hit]] = value[hit]
    kind = np.where(r.slow, SLOW, r.kind).astype(np.int8)
    return Columns(kind, rec, code, value, keys, own_step, wall)
