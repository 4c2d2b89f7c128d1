"""JSON lines into columns, fast, with the meaning a line-by-line ``json.loads`` gives them.

A block of lines is read by polars' NDJSON reader (compiled, no Python object per value); a block
polars cannot take whole (a line that is not JSON, NaN/Infinity tokens, a key holding an object in
one line and a number in another, ...) is read line by line with orjson, then ``json.loads``. What
neither library reports is checked on the text: a JSON object repeating a key (both keep one
value silently; `tabular.loads` rejects the line) and, for polars, ``null`` versus an absent key.
Every line has exactly as many ``:`` outside strings as it has keys, so a line whose colons are
not all accounted for by the parsed keys and the colons inside parsed strings is read again by
the exact parser (`read_line`): that line alone goes the slow way, counted in `Block.exact_lines`.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import polars as pl

from analyzer.ingest.json_table import (ABSENT, MAX_DEPTH, NUMBER, OTHER, TEXT, Column, accounted_colons, convert,
                                        depth_of, number_of_text, plain_columns, table_columns)
from analyzer.ingest.tabular import RepeatedKeys, flatten, loads

BLANK, TOO_DEEP, REPEATED, NOT_JSON, NOT_OBJECT = "blank", "too_deep", "repeated", "not_json", "not_object"
#: ``\u003a`` is a colon in a parsed string but none in the text: lines holding it skip the colon check.
_ESCAPED_COLON = re.compile(rb"\\u003[aA]")
#: A polars block with more lines needing the exact parser than this share is read with orjson instead.
_MAX_EXACT_SHARE = 0.01
#: Escapes polars reads otherwise than ``json``: a lone UTF-16 surrogate (``\ud800`` becomes NUL there), and
#: ``\u003a`` (see above). A block holding one is read line by line.
_POLARS_UNSAFE_ESCAPE = re.compile(rb"\\u(003[aA]|[dD][89a-fA-F])")
_SAMPLE_BYTES = 16 << 10


def escaped_colon(text: bytes) -> bool:
    return b"\\u003" in text and bool(_ESCAPED_COLON.search(text))


def read_line(raw: bytes) -> dict[str, Any] | str:
    """One line as the reference reader takes it: its flattened object, or why it is no record
    (BLANK, TOO_DEEP, REPEATED, NOT_JSON, or NOT_OBJECT for JSON that is not an object)."""
    text = raw.strip()
    if not text:
        return BLANK
    try:
        value = loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return NOT_JSON
    except RecursionError:
        return TOO_DEEP
    if isinstance(value, RepeatedKeys):
        return REPEATED
    return flatten(value) if isinstance(value, dict) else NOT_OBJECT


@dataclass
class Block:
    """The records of consecutive lines: columns, the line (index in the block) of each record, and the
    lines that are no record, by why (BLANK lines are not counted)."""

    n: int
    columns: dict[str, Column]
    lines: np.ndarray  # int64, line index within the block of each record
    dropped: dict[str, list[int]] = field(default_factory=dict)  # why -> line indexes
    exact_lines: int = 0  # lines read by the exact parser


def _line_bounds(text: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the lines of ``text`` (which ends with a newline), ends exclusive of it."""
    ends = np.flatnonzero(np.frombuffer(text, np.uint8) == 10)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return starts, ends


def _nonblank(text: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Indexes of the lines that hold more than whitespace."""
    buf = np.frombuffer(text, np.uint8)
    out = ends > starts
    maybe = np.flatnonzero(out)
    first = buf[starts[maybe]]
    spacey = np.isin(first, np.frombuffer(b" \t\r\x0b\x0c", np.uint8))
    for i in maybe[spacey].tolist():
        out[i] = bool(text[starts[i]:ends[i]].strip())
    return np.flatnonzero(out)


def _override(block: Block, text: bytes, starts: np.ndarray, ends: np.ndarray, rows: np.ndarray,
              text_keys: frozenset[str]) -> None:
    """Read the lines of ``rows`` (records of ``block``) with the exact parser and put what it finds in their place."""
    alive = np.ones(block.n, bool)
    for r in rows.tolist():
        line = int(block.lines[r])
        got = read_line(text[starts[line]:ends[line]])
        block.exact_lines += 1
        for col in block.columns.values():
            col.kind[r] = ABSENT
            if col.text is not None:
                col.text[r] = None
        if isinstance(got, str):
            alive[r] = False
            block.dropped.setdefault(got, []).append(line)
            continue
        for key, value in got.items():
            if key not in block.columns:
                block.columns[key] = Column.empty(block.n, key in text_keys)
            col = block.columns[key]
            cell = convert([value], key in text_keys)
            col.kind[r], col.values[r] = cell.kind[0], cell.values[0]
            if col.text is not None and cell.text is not None:
                col.text[r] = cell.text[0]
    if not alive.all():
        keep = np.flatnonzero(alive)
        block.columns = {k: c.take(keep) for k, c in block.columns.items()}
        block.lines = block.lines[keep]
        block.n = int(keep.size)
        block.columns = {k: c for k, c in block.columns.items() if bool((c.kind != ABSENT).any())}


# ---- polars: a whole block at once ----

class _Unsure(Exception):
    """The frame polars made cannot be mapped back to the lines exactly: read the block another way."""


def _frame_columns(df: pl.DataFrame, text_keys: frozenset[str]) -> tuple[dict[str, Column], np.ndarray]:
    """Columns of a polars frame (structs flattened with '/') and the colons each row accounts for."""
    n = df.height
    out: dict[str, Column] = {}
    accounted = np.zeros(n, np.int64)
    stack: list[tuple[str, str, pl.Series]] = [(s.name, s.name, s) for s in df.get_columns()]
    while stack:
        name, key, s = stack.pop()
        valid = s.is_not_null().to_numpy()
        accounted += valid * (1 + key.count(":"))
        dtype = s.dtype
        if isinstance(dtype, pl.Struct):
            if not dtype.fields:
                raise _Unsure("an empty object")
            stack += [(f"{name}/{f.name}", f.name, s.struct.field(f.name)) for f in dtype.fields]
            continue
        if name in out:
            raise _Unsure("two keys flatten to one name")
        col = Column.empty(n, name in text_keys)
        if dtype.is_numeric():
            col.kind[valid] = NUMBER
            col.values[:] = s.cast(pl.Float64).fill_null(0.0).to_numpy()
        elif dtype == pl.String:
            if bool(s.str.starts_with("{").any()):
                raise _Unsure("a string column holding an object")  # polars writes an object mixed with strings as text
            if col.text is not None and bool(s.is_in(["true", "false", "NaN", "Infinity", "-Infinity"]).any()):
                raise _Unsure("a split field holding a bool or NaN")  # that JSON value, or that string?
            accounted += s.str.count_matches(":", literal=True).fill_null(0).to_numpy()
            distinct = s.drop_nulls().unique()
            numbers = [number_of_text(v) for v in distinct.to_list()]
            as_float = s.replace_strict(distinct, pl.Series(numbers, dtype=pl.Float64), default=None,
                                        return_dtype=pl.Float64)
            number = as_float.is_not_null().to_numpy()
            col.kind[valid] = TEXT
            col.kind[number] = NUMBER
            col.values[:] = as_float.fill_null(0.0).to_numpy()
            if col.text is not None:
                col.text[:] = s.to_numpy()
                col.text[~valid] = None
        elif dtype == pl.Boolean or isinstance(dtype, (pl.List, pl.Array)):
            col.kind[valid] = OTHER  # colons inside lists are not counted: such a row is read again exactly
        elif dtype != pl.Null:
            raise _Unsure(f"a column of type {dtype}")
        out[name] = col
    return out, accounted


def _dtype_depth(dtype: Any) -> int:
    """How deeply lists and objects nest in values of this type (iterative, like `_depth`)."""
    deepest, stack = 0, [(dtype, 0)]
    while stack:
        t, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(t, (pl.List, pl.Array)):
            stack.append((t.inner, d + 1))
        elif isinstance(t, pl.Struct):
            stack += [(f.dtype, d + 1) for f in t.fields]
    return deepest


def _as_float(dtype: Any) -> Any:
    """The type with every integer made Float64 (what `to_float` makes of an integer; a float later in the column
    then parses too)."""
    if dtype.is_integer():
        return pl.Float64
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: _as_float(f.dtype) for f in dtype.fields})
    return dtype


def _sample_schema(text: bytes) -> dict[str, Any] | None:
    """Column types inferred from windows of whole lines at five places of ``text`` (inferring from every line
    costs polars a second pass; a key the sample misses is caught by the colon check)."""
    windows = []
    for at in np.linspace(0, max(0, len(text) - _SAMPLE_BYTES), 5).astype(int).tolist():
        start = text.rfind(b"\n", 0, at) + 1
        end = text.rfind(b"\n", start, start + _SAMPLE_BYTES) + 1
        if end > start:
            windows.append(text[start:end])
    try:
        schema = pl.read_ndjson(io.BytesIO(b"".join(dict.fromkeys(windows))), infer_schema_length=None).schema
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, ValueError):
        return None
    return {k: _as_float(t) for k, t in schema.items()}


#: NaN/Infinity tokens (what Python's json writes for a diverged loss) as polars can read them: strings, which
#: are read as the same numbers. Only after a colon, as json.dumps writes them.
_NONFINITE = ((b": -Infinity", b': "-Infinity"'), (b":-Infinity", b':"-Infinity"'), (b": Infinity", b': "Infinity"'),
              (b":Infinity", b':"Infinity"'), (b": NaN", b': "NaN"'), (b":NaN", b':"NaN"'))


def _quote_nonfinite(text: bytes) -> bytes | None:
    """``text`` with its NaN/Infinity values quoted; None when that could change what a line means.

    Without escaped quotes a string cannot hold a quote, so a quote put inside one ends it right before
    ``N``/``I``/``-``, which no JSON allows: such a line fails in polars and is read line by line instead."""
    if b"NaN" not in text and b"Infinity" not in text:
        return text
    if b'\\"' in text:
        return None
    for token, quoted in _NONFINITE:
        text = text.replace(token, quoted)
    return text


def _polars_block(text: bytes, text_keys: frozenset[str]) -> Block | None:
    """The block read by polars, checked line by line on its colons; None when polars cannot read it whole.

    Read first with the types of a sample of lines, then (a later line holding another type) with types
    inferred from every line."""
    if b"\\u" in text and _POLARS_UNSAFE_ESCAPE.search(text):
        return None
    n_lines = text.count(b"\n")
    if b"null" in text and text.count(b"null") > max(16, _MAX_EXACT_SHARE * n_lines):
        return None  # polars cannot tell null from an absent key: that many lines would be read again exactly
    colons = text.count(b":")
    source = _quote_nonfinite(text)
    if source is None:
        return None
    for schema in (_sample_schema(source), None):
        try:
            if schema is not None:
                df = pl.read_ndjson(io.BytesIO(source), schema=schema)
            else:
                df = pl.read_ndjson(io.BytesIO(source), infer_schema_length=None)
            if max(map(_dtype_depth, df.schema.values()), default=0) >= MAX_DEPTH:
                return None  # json's recursion limit decides whether such lines are read
            columns, accounted = _frame_columns(df, text_keys)
        except (_Unsure, pl.exceptions.PolarsError, pl.exceptions.PanicException, ValueError, OverflowError):
            continue
        block = _checked(df.height, columns, accounted, text, colons, n_lines, text_keys)
        if block is not None:
            return block
    return None


def _checked(n: int, columns: dict[str, Column], accounted: np.ndarray, text: bytes, colons: int, n_lines: int,
             text_keys: frozenset[str]) -> Block | None:
    """The block when every line's colons are accounted for (the few lines that are not read exactly), else None."""
    bounds: tuple[np.ndarray, np.ndarray] | None = None
    if n == n_lines:
        lines = np.arange(n_lines, dtype=np.int64)
    else:  # blank lines: polars skips them
        bounds = _line_bounds(text)
        lines = _nonblank(text, *bounds)
        if lines.size != n:
            return None
    block = Block(n, {k: c for k, c in columns.items() if bool((c.kind != ABSENT).any())}, lines)
    if int(accounted.sum()) == colons:
        return block
    starts, ends = bounds if bounds is not None else _line_bounds(text)
    wrong = np.flatnonzero(_line_colons(text, starts, ends)[lines] != accounted)
    if wrong.size > max(16, _MAX_EXACT_SHARE * n):
        return None  # e.g. null in every line: polars cannot tell it from an absent key; orjson can
    _override(block, text, starts, ends, wrong, text_keys)
    return block


def _line_colons(text: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    at = np.flatnonzero(np.frombuffer(text, np.uint8) == 58)
    return np.bincount(np.searchsorted(ends, at), minlength=starts.size)


# ---- orjson, then json, line by line ----

_FAILED = object()


def _orjson(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _FAILED


def _json(raw: bytes) -> Any:
    """``json.loads`` without the repeated-key hook (C speed: NaN/Infinity lines); repeats are caught by colons."""
    text = raw.strip()
    if not text:
        return BLANK
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return NOT_JSON
    except RecursionError:
        return TOO_DEEP


def _line_by_line_block(text: bytes, text_keys: frozenset[str]) -> Block:
    raws = text.split(b"\n")[:-1]
    parsed = list(map(_orjson, raws))
    objs: list[dict[str, Any]] = []
    lines: list[int] = []
    dropped: dict[str, list[int]] = {}
    exact: list[int] = []  # record positions to read again exactly
    if set(map(type, parsed)) == {dict}:  # every line an object orjson read: no line to look at alone
        objs, lines, parsed = parsed, list(range(len(parsed))), []
    for i, value in enumerate(parsed):
        if value is _FAILED:
            value = _json(raws[i])
        elif isinstance(value, list) and depth_of(value) > MAX_DEPTH:
            value = read_line(raws[i])  # json may find it too deep; orjson does not
        if type(value) is dict:
            lines.append(i)
            objs.append(value)
        elif value is TOO_DEEP:
            dropped.setdefault(TOO_DEEP, []).append(i)
        elif value is not BLANK:
            dropped.setdefault(NOT_JSON if value is NOT_JSON else NOT_OBJECT, []).append(i)
    # What orjson/json do not say: a repeated key, structures json would find too deep. Checked by colons.
    plain = plain_columns(objs, text_keys)
    nested: set[int] = set()
    if plain is not None:
        columns, accounted = plain
    else:
        accounted, nested, deep = accounted_colons(objs)
        exact += deep
    record_colons = text.count(b":") - sum(raws[i].count(b":") for d in dropped.values() for i in d)
    escaped = escaped_colon(text)
    if escaped or int(accounted.sum()) != record_colons:
        colons = np.fromiter((raws[i].count(b":") for i in lines), dtype=np.int64, count=len(lines))
        exact += np.flatnonzero(colons != accounted).tolist()
        if escaped:
            exact += [r for r, i in enumerate(lines) if _ESCAPED_COLON.search(raws[i])]
    if plain is None:
        records = [flatten(o) if r in nested else o for r, o in enumerate(objs)] if nested else objs
        columns = table_columns(records, text_keys, try_plain=False)
    block = Block(len(objs), columns, np.asarray(lines, dtype=np.int64), dropped)
    if exact:
        starts, ends = _line_bounds(text)
        _override(block, text, starts, ends, np.unique(np.asarray(exact, dtype=np.int64)), text_keys)
    return block


def read_block(text: bytes, text_keys: frozenset[str]) -> Block:
    """The records of ``text`` (whole lines, ending with a newline); ``text_keys``: keys whose string values are kept."""
    if not text:
        return Block(0, {}, np.zeros(0, np.int64))
    block = _polars_block(text, text_keys)
    return block if block is not None else _line_by_line_block(text, text_keys)
