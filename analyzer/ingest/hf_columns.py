"""A big trainer_state.json's ``log_history`` read by columns, without a Python object per entry or value.

The array's entries are made one line each (its newlines made tabs, every ``},`` a line end) and read
by polars' NDJSON reader with a Float64 type for every key; the rest of the document (its top-level
settings) is parsed as before with the array left empty. This is taken only when it provably means
what the exact reader (`tabular.loads` of the whole text) does; anything else returns None and the
file is read the old way (`hf_history.parse_state`):

- polars with Float64 columns fails on anything in an entry that is not a JSON number or ``null``
  (strings, bools, lists, objects, NaN/Infinity, a number beyond float range) and on any line that
  is not exactly one JSON object: so a ``},`` inside a string or a nested object, a raw newline
  inside a string (a tab there now), a missing or extra comma all fail rather than read otherwise;
- what it does not report is counted on the text: a repeated key, a ``null`` and a key missing
  from the types each leave a ``:`` that no parsed number accounts for (every key holds one), and
  a key spelled with an escape polars decodes otherwise than ``json`` (a ``\\u003a`` colon, a lone
  surrogate) is caught by the key names;
- the array found is the top-level ``log_history`` (the document parsed with ``[]`` and with ``[0]``
  in its place must differ just there), and the text after its last entry holds only whitespace.

An entry is read again exactly when a caller needs it whole (the summary entry, the key order of
one record, a step named in a message) from its line (`ColumnarHistory.entry`).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson
import polars as pl

from analyzer.ingest.json_lines import escaped_colon
from analyzer.ingest.json_table import NUMBER, Column
from analyzer.ingest.tabular import loads

#: Smaller files are read the old way (a Python object per value costs little there).
MIN_FAST_BYTES = 1 << 20
#: The array must open within this many bytes of the start, and close within this many of the end.
_EDGE_BYTES = 1 << 20
_SAMPLE_BYTES = 16 << 10
_SAMPLES = 64
_WHITESPACE = b" \t\r\n"
_NEWLINE, _TAB, _CLOSE, _COMMA, _COLON = (ord(c) for c in "\n\t},:")


@dataclass(frozen=True, eq=False)
class ColumnarHistory:
    """A ``log_history`` whose entries are flat objects of JSON numbers, held as columns.

    Attributes:
        lines: the array's text, one entry a line (the file's newlines made tabs, each ``},`` a line end).
        columns: one per key, in the order a pass over the entries meets the keys; kinds NUMBER or ABSENT.
        n: the number of entries.
        by_orjson: whether the old reader would have taken the document's orjson parse (it reads an integer beyond
            64 bits as a float): an entry read whole is read by the same parser.
    """

    lines: bytes
    columns: dict[str, Column]
    n: int
    by_orjson: bool
    _starts: list[np.ndarray] = field(default_factory=list, repr=False)  # cache: where each line starts

    def __len__(self) -> int:
        return self.n

    def line(self, i: int) -> bytes:
        """Entry ``i``'s text."""
        if not 0 <= i < self.n:
            raise IndexError(i)
        if not self._starts:
            if i == self.n - 1:  # a finished run's summary entry: the last one
                return self.lines[self.lines.rfind(b"\n") + 1:]
            if i < 4096:
                start = 0
                for _ in range(i):
                    start = self.lines.index(b"\n", start) + 1
                end = self.lines.find(b"\n", start)
                return self.lines[start:end if end >= 0 else len(self.lines)]
            ends = np.flatnonzero(np.frombuffer(self.lines, np.uint8) == 10)
            self._starts.append(np.concatenate([[0], ends + 1]))
        starts = self._starts[0]
        end = int(starts[i + 1]) - 1 if i + 1 < self.n else len(self.lines)
        return self.lines[int(starts[i]):end]

    def entry(self, i: int) -> dict[str, Any]:
        """Entry ``i`` as the document's parse gave it."""
        value = orjson.loads(self.line(i)) if self.by_orjson else loads(self.line(i))
        assert type(value) is dict  # the columns were read only from objects without a repeated key
        return value

    def entries(self) -> list[dict[str, Any]]:
        """Every entry as a Python object (comparing two copies that are not byte for byte one history): the lines
        joined into one JSON array, read by the parser the document's parse took."""
        text = b"[" + self.lines.replace(b"\n", b",") + b"]"
        return list(orjson.loads(text) if self.by_orjson else json.loads(text))

    def is_prefix_of(self, other: ColumnarHistory) -> bool:
        """Whether this history's text is the start of ``other``'s, byte for byte (then its entries are the first
        entries of ``other``, as written: a checkpoint's copy of the same run's trainer state). Not when the two
        documents were parsed differently: an integer beyond 64 bits would then be a float in one, an int in the other."""
        if self.n > other.n or self.by_orjson != other.by_orjson:
            return False
        end = len(self.lines)
        while end and self.lines[end - 1] in _WHITESPACE:
            end -= 1
        return other.lines.startswith(self.lines[:end])


def read_columnar(path: Path, parse_rest: Callable[[bytes], tuple[Any, bool]]) -> dict[str, Any] | None:
    """The trainer state with its ``log_history`` a `ColumnarHistory`, or None where that cannot be vouched for.

    ``parse_rest`` parses the document's text as the old reader would (its exceptions when it fails), and says
    whether it took orjson's parse."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < MIN_FAST_BYTES:
            return None
        head = fh.read(_EDGE_BYTES)
        fh.seek(max(0, size - _EDGE_BYTES))
        tail_at = fh.tell()
        tail = fh.read()
        found = _locate(head, tail, tail_at)
        if found is None:
            return None
        start, end = found
        rest = _rest(head[:start - 1], tail[end - tail_at + 1:], parse_rest)
        if rest is None:
            return None
        fh.seek(start)
        text = bytearray(end - start)  # writable: made into lines in place
        if fh.readinto(text) != len(text):
            return None
    state, by_orjson = rest
    history = _history(text, by_orjson)
    if history is None:
        return None
    state["log_history"] = history
    return state


def _locate(head: bytes, tail: bytes, tail_at: int) -> tuple[int, int] | None:
    """(start, end) of the text between the brackets of the first ``"log_history"`` array; the end the last
    ``]`` of the file that follows an object's ``}`` (the document's parse then decides whether it is that one)."""
    at = head.find(b'"log_history"')
    if at < 0:
        return None
    i = _skip_space(head, at + len(b'"log_history"'))
    if head[i:i + 1] != b":":
        return None
    i = _skip_space(head, i + 1)
    if head[i:i + 1] != b"[":
        return None
    end = len(tail)
    for _ in range(8):
        end = tail.rfind(b"]", 0, end)
        if end < 0:
            return None
        j = end
        while j > 0 and tail[j - 1] in _WHITESPACE:
            j -= 1
        if j > 0 and tail[j - 1] == ord("}"):
            return (i + 1, tail_at + end) if tail_at + end > i + 1 else None
    return None


def _skip_space(text: bytes, i: int) -> int:
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i


def _rest(before: bytes, after: bytes, parse_rest: Callable[[bytes], tuple[Any, bool]]
          ) -> tuple[dict[str, Any], bool] | None:
    """(the document with ``[]`` for the array, whether orjson parsed it) when that array is the top-level
    ``log_history``: with ``[0]`` there instead, the parse must differ in that value only (a nested or escaped
    look-alike would not)."""
    try:
        state, by_orjson = parse_rest(before + b"[]" + after)
        probe, _ = parse_rest(before + b"[0]" + after)
    except Exception:  # noqa: BLE001 - whatever the document's problem is, the exact reader names it
        return None
    if type(state) is not dict or type(probe) is not dict:  # a RepeatedKeys document: the exact reader says so
        return None
    if state.get("log_history") != [] or probe.get("log_history") != [0] or len(state) != len(probe):
        return None
    return state, by_orjson


def _history(text: bytearray, by_orjson: bool) -> ColumnarHistory | None:
    """The array's entries as columns, or None where polars' reading cannot be vouched for."""
    lines, colons = _entry_lines(text)
    del text
    names = _sample_names(lines)
    if names is None:
        return None
    frame = _read_lines(lines, names)
    if frame is None or not _accounted(frame, lines, colons):
        if frame is None or b"null" in lines:  # not for a key the sample missed: no second read can help
            return None
        names = _all_names(lines)  # a key the sample missed, or a repeated key (then this fails again)
        frame = _read_lines(lines, names) if names is not None else None
        if frame is None or not _accounted(frame, lines, colons):
            return None
    # Every line holds a "}" (the one before each "}," made a line end, and the one `_locate` found last), so
    # none is blank: polars' rows are the entries, one for one.
    n = frame.height
    columns: dict[str, Column] = {}
    for name in frame.columns:
        series = frame.get_column(name)
        valid = series.is_not_null().to_numpy()
        col = Column.empty(n)
        col.kind[valid] = NUMBER
        col.values[:] = series.fill_null(0.0).to_numpy()
        if not np.isfinite(col.values).all():  # polars fails on what would be one; kept from ever passing
            return None
        columns[name] = col
    del frame
    history = ColumnarHistory(lines, columns, n, by_orjson)
    return ColumnarHistory(lines, _first_seen_order(history), n, by_orjson)


def _entry_lines(text: bytearray) -> tuple[bytes, int]:
    """The array's text with each entry on a line of its own (newlines made tabs, every ``},`` a ``}`` and a line
    end), and its number of ``:``. One numpy pass each instead of two ``bytes.replace`` (which stop at each of the
    millions of newlines): half the time on a 147 MB state. ``text`` is changed in place."""
    buf = np.frombuffer(text, np.uint8)
    np.putmask(buf, buf == _NEWLINE, _TAB)
    closing = np.flatnonzero(buf[:-1] == _CLOSE)
    buf[closing[buf[closing + 1] == _COMMA] + 1] = _NEWLINE
    return buf.tobytes(), int(np.count_nonzero(buf == _COLON))


def _read_lines(lines: bytes, names: list[str]) -> pl.DataFrame | None:
    try:
        return pl.read_ndjson(io.BytesIO(lines), schema={k: pl.Float64 for k in names})
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, ValueError, OverflowError):
        return None


def _plain_names(schema: Any) -> list[str] | None:
    """The keys of an inferred schema when every one holds numbers (or nulls) and is spelled the way ``json``
    reads it: printable ASCII (polars reads a lone surrogate escape as NUL)."""
    if not all(t.is_numeric() or t == pl.Null for t in schema.values()):
        return None
    names = list(schema)
    return names if all(k.isascii() and k.isprintable() for k in names) else None


def _sample_names(lines: bytes) -> list[str] | None:
    """Keys inferred from windows of whole lines at `_SAMPLES` places (inferring from every line would cost
    polars a second pass; a key they miss leaves its colons unaccounted for, and `_all_names` is asked)."""
    windows = []
    for at in np.linspace(0, max(0, len(lines) - _SAMPLE_BYTES), _SAMPLES).astype(int).tolist():
        start = lines.rfind(b"\n", 0, at) + 1
        end = lines.rfind(b"\n", start, start + _SAMPLE_BYTES)
        windows.append(lines[start:end if end > start else min(len(lines), start + _SAMPLE_BYTES)] + b"\n")
    try:
        schema = pl.read_ndjson(io.BytesIO(b"".join(dict.fromkeys(windows))), infer_schema_length=None).schema
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, ValueError, OverflowError):
        return None
    return _plain_names(schema)


def _all_names(lines: bytes) -> list[str] | None:
    try:
        schema = pl.read_ndjson(io.BytesIO(lines), infer_schema_length=None).schema
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, ValueError, OverflowError):
        return None
    return _plain_names(schema)


def _accounted(frame: pl.DataFrame, lines: bytes, colons: int) -> bool:
    """Whether every ``:`` of the text (``colons`` of them) is a parsed key's (one each, plus those inside its name)."""
    counts = frame.select(pl.all().is_not_null().sum()).row(0)
    accounted = sum(int(c) * (1 + k.count(":")) for k, c in zip(frame.columns, counts))
    if accounted != colons:
        return False
    # A key written with \u003a holds a colon its text does not: only possible where a name holds one.
    return not (any(":" in k for k in frame.columns) and escaped_colon(lines))


def _first_seen_order(history: ColumnarHistory) -> dict[str, Column]:
    """The columns in the order a pass over the entries meets their keys (by first entry, then written order)."""
    first = {k: int(np.argmax(c.kind != 0)) for k, c in history.columns.items()}
    order: list[str] = []
    for row in sorted(set(first.values())):
        order += [k for k in history.entry(row) if first.get(k) == row]
    return {k: history.columns[k] for k in order}
