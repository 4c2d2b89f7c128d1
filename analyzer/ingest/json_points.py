"""Points of a `JsonTable`: what `tabular.RowCollector.add_row` does for one row, done for every record at once.

The same counts and notes: a row without a usable step is counted, a non-numeric value is counted
against its tag, NaN/inf are values, and a step outside int64 rejects the file. Tags come out in
the order a row-by-row read meets them. A value too large for a float (kind HUGE) is one unusable
point with its own note; a row whose step is one is a row without a step, with its own note.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from analyzer.frame import RawPoints
from analyzer.ingest.json_table import ABSENT, HUGE, NUMBER, TEXT, JsonTable
from analyzer.ingest.tabular import (NON_METRIC_KEYS, STEP_KEYS, STEP_MAX, STEP_MIN, fractional_steps_note,
                                     non_numeric_notes, step_out_of_range)
from analyzer.types import Note


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


@dataclass
class _Steps:
    """The step of every record, and the records that have none."""

    choice: np.ndarray  # per record: index (into the table's columns) of its step key, -1 for none
    columns: list[int]  # the columns some record takes its step from
    steps: np.ndarray  # int64 per record, 0 where there is none
    has_step: np.ndarray  # the record has a step (written, or set by the caller's override)
    huge: np.ndarray  # the step is an integer too large for a float: a row without a step, with its own note
    fractional: list[Note]


def _written_steps(table: JsonTable, choice: np.ndarray, columns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each record's step as a float (NaN where its step key holds no number), and whether that key holds an
    integer too large for a float."""
    names = list(table.columns)
    n = table.n
    if len(columns) == 1 and bool((choice >= 0).all()):  # one step key for every record: no mixing
        col = table.columns[names[columns[0]]]
        return np.where(col.kind == NUMBER, col.values, np.nan), col.kind == HUGE
    step_f = np.full(n, np.nan)
    huge_step = np.zeros(n, bool)
    for j in columns:
        mine = choice == j
        col = table.columns[names[j]]
        number = mine & (col.kind == NUMBER)
        step_f[number] = col.values[number]
        huge_step |= mine & (col.kind == HUGE)
    return step_f, huge_step


def _record_steps(table: JsonTable, step_key: str | None, per_record_key: bool, source: str,
                  step_override: tuple[np.ndarray, np.ndarray] | None) -> _Steps:
    """The int64 step of every record; LogFormatError when a written one does not fit an int64. An overridden
    step is the caller's, not the file's: it is neither range-checked nor counted as fractional."""
    n = table.n
    choice = _step_column_of_each_record(table, step_key, per_record_key)
    columns = np.flatnonzero(np.bincount(choice[choice >= 0], minlength=1)).tolist() if n else []
    step_f, huge_step = _written_steps(table, choice, columns)
    has_step = np.isfinite(step_f)
    if step_override is not None:
        has_step = has_step | step_override[0]
    outside = has_step & ((step_f < STEP_MIN) | (step_f >= STEP_MAX))
    if step_override is not None:
        outside &= ~step_override[0]
    if outside.any():
        first = int(np.argmax(outside))
        raise step_out_of_range(float(step_f[first]), table.where(first))
    read_steps = has_step if step_override is None else has_step & ~step_override[0]
    fractional = fractional_steps_note(source, step_f[read_steps])
    if bool(np.isfinite(step_f).all()):
        steps = step_f.astype(np.int64)
    else:
        steps = np.zeros(n, np.int64)
        written = np.isfinite(step_f)  # an overridden record may have no written step
        steps[written] = step_f[written].astype(np.int64)
    if step_override is not None:
        steps[step_override[0]] = step_override[1][step_override[0]]
    return _Steps(choice, columns, steps, has_step, huge_step, fractional)


def _tags_of_column(name: str, prefixes: Prefixes | None) -> list[tuple[str, np.ndarray | None]]:
    """(tag, records it takes, None for all) for one metric key: its own name, and ``<prefix>/<key>`` for the
    records of each prefix it is renamed under."""
    if prefixes is None:
        return [(name, None)]
    by_prefix: list[tuple[str, np.ndarray | None]] = []
    plain = prefixes.codes < 0
    for p, pname in enumerate(prefixes.names):
        mine = prefixes.codes == p
        if not mine.any():
            continue
        if not _renamed(name, pname):
            plain = plain | mine  # a key already named for its split keeps its name
        else:
            by_prefix.append((f"{pname}/{name}", mine))
    by_prefix.insert(0, (name, plain))
    return by_prefix


def _gather_tags(table: JsonTable, steps: _Steps, skip: frozenset[str], prefixes: Prefixes | None) -> _Tags:
    """The points of every metric column, tag by tag, and its values that cannot be points."""
    tags = _Tags()
    every_step = bool(steps.has_step.all())
    for j, name in enumerate(table.columns):
        if name in skip:
            continue
        col = table.columns[name]
        if every_step and j not in steps.columns:
            number, unusable = col.kind == NUMBER, col.kind >= TEXT  # TEXT, OTHER, HUGE
        else:
            usable = steps.has_step & (steps.choice != j)
            number = usable & (col.kind == NUMBER)
            unusable = usable & (col.kind >= TEXT)
        if not number.any() and not unusable.any():
            continue
        for tag, only in _tags_of_column(name, prefixes):
            if only is None and bool(number.all()):
                tags.add(tag, np.arange(table.n), col.values)
                continue
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
    return tags


def _points(order: list[str], tags: _Tags, steps: np.ndarray) -> RawPoints:
    """The gathered tags as one `RawPoints`, each tag's points in record order (written straight into the result's
    arrays: a big log's points are most of a read's memory)."""
    if not order:
        return RawPoints.empty()
    gathered: list[tuple[np.ndarray, np.ndarray, bool]] = []  # (rows, values, every record)
    for tag in order:
        parts = tags.parts[tag]
        if len(parts) == 1:  # one column's increasing record indexes: as many as there are records is every one
            gathered.append((parts[0][0], parts[0][1], parts[0][0].size == steps.size))
            continue
        rows, values = np.concatenate([r for r, _ in parts]), np.concatenate([v for _, v in parts])
        by_row = np.argsort(rows, kind="stable")  # a tag fed from several prefixes' records: its parts interleave
        gathered.append((rows[by_row], values[by_row], False))
    sizes = [r.size for r, _, _ in gathered]
    total = sum(sizes)
    out_steps, out_values = np.empty(total, np.int64), np.empty(total, np.float64)
    at = 0
    for rows, values, every in gathered:
        k = rows.size
        out_steps[at:at + k] = steps if every else steps[rows]
        out_values[at:at + k] = values
        at += k
    return RawPoints(tuple(order), np.repeat(np.arange(len(order), dtype=np.int32), sizes),
                     out_steps, np.full(total, np.nan), out_values)


def _notes(source: str, steps: _Steps, tags: _Tags, rows_without_step: int) -> list[Note]:
    """The notes `RowCollector` writes for the same rows, in its order."""
    notes = steps.fractional
    without = int((~steps.has_step).sum()) - int(steps.huge.sum()) + rows_without_step
    if without:
        notes.append(Note("dropped", f"{source}: {without} row(s) without a step value were not used", count=without))
    if steps.huge.any():
        k = int(steps.huge.sum())
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
    return notes


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
    steps = _record_steps(table, step_key, per_record_key, source, step_override)
    if prefixes is not None:  # needs each record's step key, and never blanks it
        _resolve_renamed_collisions(table, prefixes, steps.choice, skip)
    tags = _gather_tags(table, steps, skip, prefixes)
    points = _points(_tag_order(table, tags, prefixes), tags, steps.steps)
    return points, _notes(source, steps, tags, rows_without_step)


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
