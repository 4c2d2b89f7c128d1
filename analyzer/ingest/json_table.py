"""Records of JSON objects held as columns: one `Column` per (flattened) key, holding for every record
what `tabular.to_float` makes of its value (a kind code and a float), built from parsed objects or
from polars frames (`analyzer.ingest.json_lines`) and turned into points by `analyzer.ingest.json_points`.

An integer too large for a float (a 400-digit loss or step) is kind HUGE, an unusable value with its
own note, never an unreadable file; JSON ``true``/``false`` are not numbers (kind OTHER).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import polars as pl


#: Parsed structures deeper than this are parsed again by ``json`` (whose recursion limit decides).
MAX_DEPTH = 100
_PLAIN_TYPES = frozenset({float, int})
_STR = frozenset({str})
_NONE = frozenset({type(None)})
_MISSING = frozenset({object})  # the type of MISSING alone
#: Values that hold no colon and nothing nested.
_SCALAR_TYPES = frozenset({float, int, bool, type(None)})

# What a record holds under a key.
ABSENT, NULL, NUMBER, TEXT, OTHER, HUGE = 0, 1, 2, 3, 4, 5
MISSING = object()


@dataclass
class Column:
    """One key over every record: ``kind[i]`` says what record i holds, ``values[i]`` its number (kind NUMBER).

    ``text[i]`` is the string record i holds when that value was a JSON string (kept only for the keys
    a reader asked for: split fields, whose values are names), else None.
    """

    kind: np.ndarray  # uint8
    values: np.ndarray  # float64
    text: np.ndarray | None = None  # object

    @staticmethod
    def empty(n: int, with_text: bool = False) -> Column:
        return Column(np.zeros(n, np.uint8), np.zeros(n, np.float64),
                      np.full(n, None, dtype=object) if with_text else None)

    def take(self, rows: np.ndarray) -> Column:
        return Column(self.kind[rows], self.values[rows], None if self.text is None else self.text[rows])


@dataclass
class JsonTable:
    """Records as columns. ``key_order(i)`` lists record i's keys in their written order (needed only to
    order tags first met in the same record); ``where(i)`` names record i for messages ("line 12")."""

    n: int
    columns: dict[str, Column]
    key_order: Callable[[int], list[str]]
    where: Callable[[int], str]

    def kind(self, name: str) -> np.ndarray:
        col = self.columns.get(name)
        return col.kind if col is not None else np.zeros(self.n, np.uint8)

    def present(self, name: str) -> np.ndarray:
        return self.kind(name) != ABSENT

    def integers(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(mask, values): records whose value is a whole number below 2**62 (what `jsonl_dialects` counts with)."""
        col = self.columns.get(name)
        if col is None:
            return np.zeros(self.n, bool), np.zeros(self.n, np.int64)
        v = col.values
        with np.errstate(invalid="ignore"):
            ok = (col.kind == NUMBER) & np.isfinite(v) & (np.floor(v) == v) & (np.abs(v) < 2.0**62)
        return ok, np.where(ok, v, 0).astype(np.int64)


def number_of_text(text: str) -> float | None:
    """A JSON string's number as `tabular.to_float` reads it ("2.31", " nan "), else None."""
    body = text.strip()
    if not body:
        return None
    try:
        return float(body)
    except ValueError:
        return None


def convert(objs: Sequence[Any], keep_text: bool = False) -> Column:
    """The column of Python values ``objs`` (`MISSING` where a record lacks the key), as `to_float` reads them."""
    n = len(objs)
    types = set(map(type, objs))
    if types <= {float, int}:
        try:
            return Column(np.full(n, NUMBER, np.uint8), np.array(objs, dtype=np.float64),
                          np.full(n, None, dtype=object) if keep_text else None)
        except OverflowError:  # an integer beyond float range: sort it out value by value below
            pass
    col = Column.empty(n, keep_text)
    kinds = list(map(type, objs))

    def where(wanted: frozenset[type]) -> np.ndarray:
        return np.flatnonzero(np.fromiter(map(wanted.__contains__, kinds), dtype=bool, count=n))

    numbers, texts = where(_PLAIN_TYPES), where(_STR)
    # bool, list, object (a nested object where records are not flattened): no number
    col.kind[:] = OTHER
    col.kind[where(_MISSING)] = ABSENT
    col.kind[where(_NONE)] = NULL
    cells = list(map(objs.__getitem__, numbers.tolist()))
    try:
        col.values[numbers] = np.array(cells, dtype=np.float64)
        col.kind[numbers] = NUMBER
    except OverflowError:  # an integer beyond float range: value by value
        for i, obj in zip(numbers.tolist(), cells):
            try:
                col.values[i], col.kind[i] = obj, NUMBER
            except OverflowError:
                col.kind[i] = HUGE
    strings = list(map(objs.__getitem__, texts.tolist()))
    read = {t: number_of_text(t) for t in dict.fromkeys(strings)}  # a column's strings repeat: each read once
    parsed = np.array([read[t] for t in strings], dtype=np.float64)  # None -> nan, told apart below
    numeric = np.fromiter((read[t] is not None for t in strings), dtype=bool, count=len(strings))
    col.kind[texts] = np.where(numeric, NUMBER, TEXT)
    col.values[texts] = np.where(numeric, parsed, 0.0)
    if col.text is not None:
        col.text[texts] = strings if strings else col.text[texts]
    return col


def depth_of(value: Any) -> int:
    """Nesting depth of lists and objects (iterative: a hostile depth costs memory, not the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d)
            if d > MAX_DEPTH:
                return d
            stack += [(x, d + 1) for x in v]
    return deepest


def colons_of(value: Any) -> int:
    """Colons a parsed value accounts for: one per object key, plus those inside keys and strings."""
    n, stack = 0, [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            n += v.count(":")
        elif isinstance(v, dict):
            n += sum(1 + k.count(":") for k in v)
            stack += v.values()
        elif isinstance(v, list):
            stack += v
    return n


def accounted_colons(objs: list[dict[str, Any]]) -> tuple[np.ndarray, set[int], list[int]]:
    """For each parsed object, the colons its text must hold (one per key at every level, plus those inside keys
    and strings); also which objects hold a nested object (to flatten) and which nest too deeply to trust."""
    keys = list(chain.from_iterable(objs))
    cells = list(chain.from_iterable(map(dict.values, objs)))
    n_cells = np.fromiter(map(len, objs), dtype=np.int64, count=len(objs))
    key_colons = {k: 1 + k.count(":") for k in set(keys)}
    per_cell = np.fromiter(map(key_colons.__getitem__, keys), dtype=np.int64, count=len(keys))
    types = list(map(type, cells))
    scalar = np.fromiter(map(_SCALAR_TYPES.__contains__, types), dtype=bool, count=len(cells))
    rows = np.repeat(np.arange(len(objs)), n_cells)
    nested: set[int] = set()
    deep: list[int] = []
    odd = np.flatnonzero(~scalar)
    is_str = np.fromiter(map(_STR.__contains__, map(types.__getitem__, odd.tolist())), dtype=bool, count=odd.size)
    texts = odd[is_str]
    per_cell[texts] += np.fromiter(map(str.count, map(cells.__getitem__, texts.tolist()), repeat(":")),
                                   dtype=np.int64, count=texts.size)
    for c in odd[~is_str].tolist():
        v, t = cells[c], types[c]
        if t is list or t is dict:
            per_cell[c] += colons_of(v)
            if depth_of(v) > MAX_DEPTH:
                deep.append(int(rows[c]))
            if t is dict:
                nested.add(int(rows[c]))
    accounted = np.bincount(rows, weights=per_cell, minlength=len(objs)).astype(np.int64)
    return accounted, nested, deep


def plain_keys(objs: Sequence[dict[str, Any]]) -> list[str] | None:
    """The keys of objects whose every value is a JSON number (a big log's usual records), in first-seen order;
    None for any other objects, or when a key holds a colon (colons would then be counted record by record).
    Two C-level passes: value types, key names."""
    if not set(map(type, chain.from_iterable(map(dict.values, objs)))) <= _PLAIN_TYPES:
        return None
    keys = list(dict.fromkeys(chain.from_iterable(objs)))
    return None if any(":" in k for k in keys) else keys


def plain_frame(objs: Sequence[dict[str, Any]], keys: list[str], keep_text: Iterable[str] = ()
                ) -> dict[str, Column] | None:
    """Columns of objects `plain_keys` vouched for, read by polars (``from_dicts`` with a Float64 schema: an absent
    key is null, and plain numbers hold no JSON null to confuse with it); None for an integer beyond float range."""
    n = len(objs)
    try:
        frame = pl.from_dicts(objs, schema={k: pl.Float64 for k in keys}) if n else None
    except (pl.exceptions.PolarsError, OverflowError, TypeError, ValueError):
        return None
    keep = frozenset(keep_text)
    columns: dict[str, Column] = {}
    for key in keys:
        col = Column.empty(n, key in keep)
        if frame is not None:
            series = frame.get_column(key)
            col.kind[series.is_not_null().to_numpy()] = NUMBER
            col.values[:] = series.fill_null(0.0).to_numpy()
        columns[key] = col
    return columns


def plain_columns(objs: Sequence[dict[str, Any]], keep_text: Iterable[str] = ()
                  ) -> tuple[dict[str, Column], np.ndarray] | None:
    """`plain_frame` of objects `plain_keys` vouches for, with the colons each object's text must hold (one per
    key); None for any other objects."""
    keys = plain_keys(objs)
    columns = plain_frame(objs, keys, keep_text) if keys is not None else None
    if columns is None:
        return None
    return columns, np.fromiter(map(len, objs), dtype=np.int64, count=len(objs))


def table_columns(records: Sequence[dict[str, Any]], keep_text: Iterable[str] = (), *, try_plain: bool = True
                  ) -> dict[str, Column]:
    """Columns of ``records`` (flat mappings); gathered value by value (a sparse key costs its cells only) unless
    they are `plain_columns`."""
    plain = plain_columns(records, keep_text) if try_plain else None
    if plain is not None:
        return plain[0]
    n = len(records)
    lengths = np.fromiter(map(len, records), dtype=np.int64, count=n)
    keys = list(chain.from_iterable(records))
    cells = np.fromiter(chain.from_iterable(map(dict.values, records)), dtype=object, count=len(keys))
    names = list(dict.fromkeys(keys))
    code_of = {k: i for i, k in enumerate(names)}
    codes = np.fromiter(map(code_of.__getitem__, keys), dtype=np.int64, count=len(keys))
    rows = np.repeat(np.arange(n), lengths)
    keep = frozenset(keep_text)
    out: dict[str, Column] = {}
    if len(names) <= 16:
        groups: Iterable[tuple[int, np.ndarray]] = ((c, np.flatnonzero(codes == c)) for c in range(len(names)))
    else:
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        groups = ((int(codes[g[0]]), g) for g in np.split(order, bounds))
    for code, sel in groups:
        name = names[code]
        part = convert(cells[sel].tolist(), name in keep)
        col = Column.empty(n, name in keep)
        where = rows[sel]
        col.kind[where] = part.kind
        col.values[where] = part.values
        if col.text is not None and part.text is not None:
            col.text[where] = part.text
        out[name] = col
    return out


def concat_columns(parts: Sequence[tuple[int, dict[str, Column]]], keep_text: Iterable[str] = ()) -> dict[str, Column]:
    """One set of columns from consecutive blocks of records ((records, columns) each), absent where a block lacks a key."""
    total = sum(n for n, _ in parts)
    keep = frozenset(keep_text)
    names = list(dict.fromkeys(chain.from_iterable(cols for _, cols in parts)))
    out: dict[str, Column] = {}
    for name in names:
        col = Column.empty(total, name in keep)
        at = 0
        for n, cols in parts:
            part = cols.get(name)
            if part is not None:
                col.kind[at:at + n] = part.kind
                col.values[at:at + n] = part.values
                if col.text is not None and part.text is not None:
                    col.text[at:at + n] = part.text
            at += n
        out[name] = col
    return out
