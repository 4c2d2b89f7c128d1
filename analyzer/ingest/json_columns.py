"""Records of JSON objects held as columns: the vectorised form of "a step key and metric keys".

JSONL lines and trainer_state.json's ``log_history`` entries become a `JsonTable`: one `Column`
per (flattened) key, holding for every record what `tabular.to_float` makes of its value (a kind
code and a float). `to_points` then does for all records at once what
`tabular.RowCollector.add_row` does for one row, with the same counts and notes: a row without a
usable step is counted, a non-numeric value is counted against its tag, NaN/inf are values, and
a step outside int64 rejects the file. Tags come out in the order a row-by-row read meets them.

An integer too large for a float (a 400-digit loss or step) is one unusable value with its own
note, never an unreadable file; JSON ``true``/``false`` are not numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from analyzer.frame import RawPoints
from analyzer.ingest.tabular import NON_METRIC_KEYS, STEP_KEYS, STEP_MAX, STEP_MIN, non_numeric_notes, step_out_of_range
from analyzer.types import Note

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


def _number_of_text(text: str) -> float | None:
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
    kind, values = col.kind, col.values
    for i, obj in enumerate(objs):
        t = type(obj)
        if t is float or t is int:
            try:
                values[i] = obj
                kind[i] = NUMBER
            except OverflowError:
                kind[i] = HUGE
        elif t is str:
            x = _number_of_text(obj)
            if x is None:
                kind[i] = TEXT
            else:
                kind[i], values[i] = NUMBER, x
            if col.text is not None:
                col.text[i] = obj
        elif obj is MISSING:
            pass
        elif obj is None:
            kind[i] = NULL
        else:  # bool, list, object (a nested object where records are not flattened)
            kind[i] = OTHER
    return col


def table_columns(records: Sequence[Mapping[str, Any]], keep_text: Iterable[str] = ()) -> dict[str, Column]:
    """Columns of ``records`` (flat mappings), gathered cell-wise so that a sparse key costs its cells only."""
    n = len(records)
    lengths = np.fromiter(map(len, records), dtype=np.int64, count=n)
    keys = list(chain.from_iterable(records))
    cells = np.fromiter(chain.from_iterable(r.values() for r in records), dtype=object, count=len(keys))
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


@dataclass(frozen=True)
class Prefixes:
    """Tag prefixes by record (a split dialect): ``codes[i]`` indexes ``names``, -1 for none."""

    codes: np.ndarray
    names: tuple[str, ...]


@dataclass
class _Tags:
    """Points gathered tag by tag, with what could not be a point."""

    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)  # tag -> (rows, values)
    first: dict[str, int] = field(default_factory=dict)  # tag -> first record with a point
    non_numeric: Counter[str] = field(default_factory=Counter)
    huge: Counter[str] = field(default_factory=Counter)

    def add(self, tag: str, rows: np.ndarray, values: np.ndarray) -> None:
        self.parts.setdefault(tag, []).append((rows, values))
        first = int(rows[0])
        if first < self.first.get(tag, first + 1):
            self.first[tag] = first


def _step_column_of_each_record(table: JsonTable, step_key: str | None, per_record: bool) -> np.ndarray:
    """Index (into ``names``) of the key each record takes its step from, -1 for none: ``step_key`` where a
    record has it, else (``per_record``) the first of STEP_KEYS it has, then one matching case-insensitively."""
    names = list(table.columns)
    choice = np.full(table.n, -1, np.int64)
    candidates: list[str] = [step_key] if step_key is not None else []
    if per_record:
        candidates += list(STEP_KEYS)
        lowered: dict[str, list[str]] = {}
        for name in names:
            lowered.setdefault(name.lower(), []).append(name)
        candidates += [n for c in STEP_KEYS for n in lowered.get(c.lower(), ())]
    for name in candidates:
        if name in table.columns:
            free = (choice < 0) & table.present(name)
            choice[free] = names.index(name)
    return choice


def to_points(table: JsonTable, step_key: str | None, *, source: str, per_record_key: bool = True,
              skip: frozenset[str] = NON_METRIC_KEYS, prefixes: Prefixes | None = None,
              step_override: tuple[np.ndarray, np.ndarray] | None = None,
              rows_without_step: int = 0) -> tuple[RawPoints, list[Note]]:
    """Points and notes of every record, as `RowCollector.add_row` makes them row by row.

    ``per_record_key``: a record lacking ``step_key`` takes its step from another step key it has (JSONL);
    ``prefixes``: metric keys of a record become ``<prefix>/<key>`` (unless already named for it);
    ``step_override``: (mask, steps) replacing the written step of some records (derived by a dialect);
    ``rows_without_step``: rows the caller found without one (counted in the same note).
    LogFormatError when a step does not fit an int64.
    """
    n = table.n
    names = list(table.columns)
    choice = _step_column_of_each_record(table, step_key, per_record_key)
    step_f = np.full(n, np.nan)
    huge_step = np.zeros(n, bool)
    for j, name in enumerate(names):
        mine = choice == j
        if mine.any():
            col = table.columns[name]
            number = mine & (col.kind == NUMBER)
            step_f[number] = col.values[number]
            huge_step |= mine & (col.kind == HUGE)
    has_step = np.isfinite(step_f)
    if step_override is not None:
        has_step = has_step | step_override[0]
    outside = has_step & ((step_f < STEP_MIN) | (step_f >= STEP_MAX))
    if step_override is not None:
        outside &= ~step_override[0]
    if outside.any():
        first = int(np.argmax(outside))
        raise step_out_of_range(float(step_f[first]), table.where(first))
    steps = np.zeros(n, np.int64)
    steps[has_step] = step_f[has_step].astype(np.int64)
    if step_override is not None:
        steps[step_override[0]] = step_override[1][step_override[0]]
    if prefixes is not None:
        _resolve_renamed_collisions(table, prefixes, choice, skip)
    tags = _Tags()
    prefix_names = prefixes.names if prefixes is not None else ()
    for j, name in enumerate(names):
        if name in skip:
            continue
        col = table.columns[name]
        usable = has_step & (choice != j)
        number = usable & (col.kind == NUMBER)
        unusable = usable & (col.kind >= TEXT)  # TEXT, OTHER, HUGE
        if not number.any() and not unusable.any():
            continue
        by_prefix: list[tuple[str, np.ndarray | None]] = []
        if prefixes is None:
            by_prefix.append((name, None))
        else:
            plain = prefixes.codes < 0
            for p, pname in enumerate(prefix_names):
                mine = prefixes.codes == p
                if not mine.any():
                    continue
                if not _renamed(name, pname):
                    plain = plain | mine  # a key already named for its split keeps its name
                else:
                    by_prefix.append((f"{pname}/{name}", mine))
            by_prefix.insert(0, (name, plain))
        for tag, only in by_prefix:
            rows = np.flatnonzero(number if only is None else number & only)
            if rows.size:
                tags.add(tag, rows, col.values[rows])
            bad = unusable if only is None else unusable & only
            if bad.any():
                kinds = col.kind[bad]
                huge = int((kinds == HUGE).sum())
                if huge:
                    tags.huge[tag] += huge
                if huge < kinds.size:
                    tags.non_numeric[tag] += kinds.size - huge
    order = _tag_order(table, tags, prefixes)
    rows_of, values_of = [], []
    for tag in order:
        parts = tags.parts[tag]
        rows = np.concatenate([r for r, _ in parts]) if len(parts) > 1 else parts[0][0]
        values = np.concatenate([v for _, v in parts]) if len(parts) > 1 else parts[0][1]
        if len(parts) > 1:
            by_row = np.argsort(rows, kind="stable")
            rows, values = rows[by_row], values[by_row]
        rows_of.append(rows)
        values_of.append(values)
    if order:
        all_rows = np.concatenate(rows_of)
        points = RawPoints(tuple(order), np.repeat(np.arange(len(order), dtype=np.int32), [r.size for r in rows_of]),
                           steps[all_rows], np.full(all_rows.size, np.nan), np.concatenate(values_of))
    else:
        points = RawPoints.empty()
    notes = []
    without = int((~has_step).sum()) - int(huge_step.sum()) + rows_without_step
    if without:
        notes.append(Note("dropped", f"{source}: {without} row(s) without a step value were not used", count=without))
    if huge_step.any():
        k = int(huge_step.sum())
        notes.append(Note("dropped", f"{source}: {k} row(s) whose step is an integer too large for a 64-bit float "
                          "were not used", count=k))
    dropped = {k: v for k, v in tags.non_numeric.items() if k in tags.parts}
    ignored = sorted(k for k in tags.non_numeric if k not in tags.parts)
    notes += non_numeric_notes(source, dropped, ignored, "value(s) in metric fields", "field(s)")
    if tags.huge:
        total = sum(tags.huge.values())
        detail = ", ".join(f"{k} x{v}" for k, v in sorted(tags.huge.items())[:10])
        notes.append(Note("dropped", f"{source}: {total} value(s) that are integers too large for a 64-bit float "
                          f"were not used ({detail})", count=total))
    return points, notes


def _renamed(name: str, prefix: str) -> bool:
    """Whether a metric key of a record with this prefix is renamed '<prefix>/<key>' (not when named for it)."""
    return not any(name.startswith(prefix + sep) for sep in "_/-.")


def _resolve_renamed_collisions(table: JsonTable, prefixes: Prefixes, choice: np.ndarray, skip: frozenset[str]) -> None:
    """A record holding both ``loss`` and ``val/loss`` under prefix ``val`` has one value for tag ``val/loss``, the
    one written later (a dict keeps the last write): the earlier cell is made absent."""
    names = list(table.columns)
    for p, pname in enumerate(prefixes.names):
        mine = prefixes.codes == p
        for j, name in enumerate(names):
            other = f"{pname}/{name}"
            if other not in table.columns or name in skip or not _renamed(name, pname):
                continue
            both = np.flatnonzero(mine & table.present(name) & table.present(other) & (choice != j))
            for i in both.tolist():
                order = table.key_order(i)
                earlier = name if order.index(name) < order.index(other) else other
                table.columns[earlier].kind[i] = ABSENT


def _tag_order(table: JsonTable, tags: _Tags, prefixes: Prefixes | None) -> list[str]:
    """Tags in the order a row-by-row read creates them: by first record with a point, then by key order there."""
    by_first: dict[int, list[str]] = {}
    for tag, first in tags.first.items():
        by_first.setdefault(first, []).append(tag)
    out: list[str] = []
    for first in sorted(by_first):
        group = by_first[first]
        if len(group) > 1:
            code = int(prefixes.codes[first]) if prefixes is not None else -1
            pname = prefixes.names[code] if prefixes is not None and code >= 0 else None
            position: dict[str, int] = {}
            for pos, key in enumerate(table.key_order(first)):
                tag = key
                if pname is not None and _renamed(key, pname):
                    tag = f"{pname}/{key}"
                position.setdefault(tag, pos)
            group.sort(key=lambda t: position.get(t, math.inf))
        out += group
    return out
