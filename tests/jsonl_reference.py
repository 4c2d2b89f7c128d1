"""The row-by-row JSONL reader as it was before the vectorised one (steadytrain e694ef5), kept as the oracle
the vectorised reader is compared with (tests/test_jsonl_columns.py).

Two changes, both issue 17 item 4: JSON true/false are not numbers, and an integer too large for a
float is an unusable value (counted as ``huge``), not a crash.
"""
# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from analyzer.frame import RawPoints
from analyzer.ingest.tabular import (NON_METRIC_KEYS, STEP_KEYS, STEP_MAX, STEP_MIN, RepeatedKeys, find_key, flatten,
                                     fractional_steps_note, loads, non_numeric_notes, step_out_of_range)
from analyzer.types import Note

HUGE = object()


def to_float(value: Any) -> Any:
    """tabular.to_float with issue 17's changes: bools are no number; HUGE for an integer beyond float range."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return HUGE
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return None
    return None


def _num(value: Any) -> float | None:
    x = to_float(value)
    return None if x is HUGE else x


@dataclass
class RowCollector:
    """Accumulates points from rows, counting what could not be used and why."""

    source: str
    tags: dict[str, int] = field(default_factory=dict)
    codes: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    non_numeric: Counter[str] = field(default_factory=Counter)
    huge: Counter[str] = field(default_factory=Counter)
    huge_steps: int = 0
    rows_without_step: int = 0
    read_steps: list[float] = field(default_factory=list)  # each step read from a row (for the fractional count)

    def add_row(self, row: Mapping[str, Any], step_key: str | None, *, fallback_step: int | None = None,
                wall_key: str | None = None, skip: frozenset[str] = NON_METRIC_KEYS, where: str = "a row",
                step: int | None = None) -> None:
        """Add one row's metric values at its step (``step``: one derived by the caller, used instead of
        the row's); LogFormatError when the step cannot be an int64."""
        if step is None:
            raw_step = row.get(step_key) if step_key else None
            step_f = to_float(raw_step) if raw_step is not None else None
            if step_f is HUGE:
                self.huge_steps += 1
                return
            if step_f is None or not math.isfinite(step_f):
                if fallback_step is None:
                    self.rows_without_step += 1
                    return
                step = fallback_step
            elif not STEP_MIN <= step_f < STEP_MAX:
                raise step_out_of_range(step_f, where)
            else:
                self.read_steps.append(step_f)
                step = int(step_f)
        wall = _num(row.get(wall_key)) if wall_key else None
        for key, value in row.items():
            if key in skip or key == step_key or key == wall_key or value is None:
                continue
            x = to_float(value)
            if x is HUGE:
                self.huge[key] += 1
                continue
            if x is None:
                self.non_numeric[key] += 1
                continue
            self.codes.append(self.tags.setdefault(key, len(self.tags)))
            self.steps.append(step)
            self.walls.append(math.nan if wall is None else wall)
            self.values.append(x)

    def points(self) -> RawPoints:
        return RawPoints(tuple(self.tags), np.asarray(self.codes, np.int32), np.asarray(self.steps, np.int64),
                         np.asarray(self.walls, np.float64), np.asarray(self.values, np.float64))

    def notes(self) -> list[Note]:
        out = fractional_steps_note(self.source, np.asarray(self.read_steps, np.float64))
        if self.rows_without_step:
            out.append(Note("dropped", f"{self.source}: {self.rows_without_step} row(s) without a step value were "
                            "not used", count=self.rows_without_step))
        # A field that is never numeric is metadata (e.g. "mode": "train"), not a dropped point;
        # a metric that is numeric in some rows and not in others lost points.
        dropped = {k: n for k, n in self.non_numeric.items() if k in self.tags}
        ignored = sorted(k for k in self.non_numeric if k not in self.tags)
        if self.huge_steps:
            out.append(Note("dropped", f"{self.source}: {self.huge_steps} row(s) whose step is an integer too large "
                            "for a 64-bit float were not used", count=self.huge_steps))
        out += non_numeric_notes(self.source, dropped, ignored, "value(s) in metric fields", "field(s)")
        if self.huge:
            total = sum(self.huge.values())
            detail = ", ".join(f"{k} x{v}" for k, v in sorted(self.huge.items())[:10])
            out.append(Note("dropped", f"{self.source}: {total} value(s) that are integers too large for a 64-bit "
                            f"float were not used ({detail})", count=total))
        return out


SPLIT_FIELDS = ("split", "phase", "mode", "event", "stage")
#: A split value is a short name, and a split field has few of them (else it is data, not a split).
_SPLIT_VALUE = re.compile(r"^[A-Za-z][\w.-]{0,31}$")
MAX_SPLITS = 8
_EVAL_VALUES = frozenset({"val", "valid", "validation", "eval", "evaluation", "test", "dev"})


@dataclass(frozen=True)
class RecordPlan:
    """How each record of a JSONL file is read.

    Attributes:
        prefixes: record index -> tag prefix of its metrics.
        steps: record index -> step that replaces the one written.
        skip: fields that are no metric in this file (the split field).
        notes: what was decided, with counts.
    """

    prefixes: dict[int, str] = field(default_factory=dict)
    steps: dict[int, int] = field(default_factory=dict)
    skip: frozenset[str] = frozenset()
    notes: tuple[Note, ...] = ()


def _int(value: Any) -> int | None:
    x = _num(value)
    return int(x) if x is not None and math.isfinite(x) and x == int(x) and abs(x) < 2.0**62 else None


def split_field(records: list[Mapping[str, Any]]) -> str | None:
    """The field whose values tell train from validation records, when a metric is logged under two of them."""
    for name in SPLIT_FIELDS:
        keys_by_value: dict[str, set[str]] = {}
        usable = True
        for r in records:
            value = r.get(name)
            if value is None:
                continue
            if not isinstance(value, str) or not _SPLIT_VALUE.match(value) or (
                    value not in keys_by_value and len(keys_by_value) == MAX_SPLITS):
                usable = False
                break
            keys_by_value.setdefault(value, set()).update(
                k for k, v in r.items() if k != name and k not in NON_METRIC_KEYS and _num(v) is not None)
        if not usable or len(keys_by_value) < 2:
            continue
        seen: set[str] = set()
        for keys in keys_by_value.values():
            if seen & keys:
                return name
            seen |= keys
    return None


def prefixed(record: Mapping[str, Any], prefix: str, step_key: str | None, skip: frozenset[str]) -> dict[str, Any]:
    """The record with its metric keys under ``prefix/`` (a key already named for it, 'val_loss', is kept)."""
    out = {}
    for k, v in record.items():
        keep = k in NON_METRIC_KEYS or k in skip or k == step_key or any(
            k.startswith(prefix + sep) for sep in "_/-.")
        out[k if keep else f"{prefix}/{k}"] = v
    return out


def _mmengine(records: list[Mapping[str, Any]], source: str) -> RecordPlan | None:
    train = [r for r in records if "iter" in r and "step" in r]
    val = [i for i, r in enumerate(records) if "step" in r and "iter" not in r]
    if not train or not val:
        return None
    last_of_epoch: dict[int, int] = {}
    for r in train:
        epoch, step = _int(r.get("epoch")), _int(r.get("step"))
        if epoch is not None and step is not None:
            last_of_epoch[epoch] = max(last_of_epoch.get(epoch, step), step)
    steps = {}
    epochs = [_int(records[i].get("step")) for i in val]
    if last_of_epoch and all(e is not None and e in last_of_epoch for e in epochs):
        steps = {i: last_of_epoch[e] for i, e in zip(val, epochs) if e is not None}
        how = ("carry their epoch as the step; each was placed at the last logged training iteration of that "
               "epoch, its tags")
    else:  # an iteration-based runner: validation steps are iterations already
        how = "are tagged"
    note = Note("split_tags", f"{source}: {len(val)} MMEngine validation record(s) {how} under val/", count=len(val))
    return RecordPlan(prefixes={i: "val" for i in val}, steps=steps, notes=(note,))


def _epoch_counter(records: list[Mapping[str, Any]], step_key: str, split: str | None) -> dict[int, int] | None:
    """Global steps when ``step_key`` counts within the epoch, else None."""
    def is_eval(r: Mapping[str, Any]) -> bool:
        return split is not None and str(r.get(split, "")).lower() in _EVAL_VALUES

    length: dict[int, int] = {}
    last: tuple[int, int] | None = None
    resets = 0
    for r in records:
        epoch, it = _int(r.get("epoch")), _int(r.get(step_key))
        if epoch is None or it is None:
            if step_key in r:
                return None
            continue
        if is_eval(r):
            continue
        if last is not None:
            if epoch < last[0] or (it < last[1]) != (epoch > last[0]):
                return None  # a restart, or a counter that does not restart with the epoch
            resets += epoch > last[0]
        length[epoch] = max(length.get(epoch, it), it)
        last = (epoch, it)
    if not resets:
        return None
    offset, total = {}, 0
    for epoch in sorted(length):
        offset[epoch] = total
        total += length[epoch]
    steps = {}
    for i, r in enumerate(records):
        epoch, it = _int(r.get("epoch")), _int(r.get(step_key))
        if epoch is None or it is None or epoch not in offset:
            continue
        steps[i] = offset[epoch] + (length[epoch] if is_eval(r) else it)
    return steps


def plan(records: list[Mapping[str, Any]], step_key: str, source: str) -> RecordPlan:
    """How to read ``records`` (flattened JSON objects in file order)."""
    mm = _mmengine(records, source)
    if mm is not None:
        return mm
    notes: list[Note] = []
    split = split_field(records)
    prefixes: dict[int, str] = {}
    if split is not None:
        prefixes = {i: str(r[split]) for i, r in enumerate(records) if isinstance(r.get(split), str)}
        values = sorted(set(prefixes.values()))
        notes.append(Note("split_tags", f"{source}: records of {len(values)} kinds interleaved by their '{split}' field "
                          f"({', '.join(values)}); each record's metrics are tagged '<{split}>/<metric>'",
                          count=len(prefixes)))
    steps = _epoch_counter(records, step_key, split) or {}
    if steps:
        notes.append(Note("derived_step", f"{source}: '{step_key}' counts within each epoch (it restarts when the "
                          f"epoch goes up); step = the iterations of earlier epochs (their largest logged '{step_key}') "
                          f"+ '{step_key}'" + (", validation records at the end of their epoch" if split else ""),
                          count=len(steps)))
    return RecordPlan(prefixes, steps, frozenset({split}) if split else frozenset(), tuple(notes))


_SNIFF_LINES = 20
_BLANK = object()
_TOO_DEEP = object()
_REPEATED = object()


def _parse_line(raw: bytes) -> object:
    """The JSON value of one line: _BLANK for an empty line, _TOO_DEEP when it nests deeper than the
    parser can go, _REPEATED when an object in it repeats a key, None when it is not JSON."""
    text = raw.strip()
    if not text:
        return _BLANK
    try:
        value = loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    except RecursionError:
        return _TOO_DEEP
    return _REPEATED if isinstance(value, RepeatedKeys) else value


def sniff(path: Path) -> str:
    """The step key of a JSONL log, or LogFormatError saying why it is not one."""
    with open(path, "rb") as fh:
        head = [fh.readline(1 << 20) for _ in range(_SNIFF_LINES)]
    objs = [flatten(obj) for obj in map(_parse_line, head) if isinstance(obj, dict)]
    if not objs:
        raise LogFormatError("no JSON object per line in its first lines: not a JSONL log")
    for obj in objs:
        key = find_key(obj, STEP_KEYS)
        if key is not None and any(k != key and to_float(v) is not None for k, v in obj.items()):
            return key
    raise LogFormatError("JSON lines without a step key (step, global_step, iteration, iter, current_steps, ...) "
                         "and a numeric value")


def read_jsonl(path: Path, step_key: str) -> tuple[RawPoints, list[Note]]:
    """Points and notes of one JSONL log; LogFormatError when a step does not fit an int64."""
    rows = RowCollector(source=path.name)
    notes: list[Note] = []
    bad_lines = 0
    too_deep = 0
    repeated = 0
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    last_unterminated = bool(data) and not data.endswith(b"\n")
    records: list[tuple[int, dict[str, Any]]] = []  # (line index, flattened object)
    for i, raw in enumerate(lines):
        obj = _parse_line(raw)
        if obj is _BLANK:
            continue
        if obj is _TOO_DEEP:
            too_deep += 1
            continue
        if obj is _REPEATED:
            repeated += 1
            continue
        if obj is None:
            if last_unterminated and i == len(lines) - 1:
                notes.append(Note("truncated", f"{path.name}: the last line is cut off (an interrupted write); "
                                  "it was not used", count=1))
            else:
                bad_lines += 1
            continue
        if not isinstance(obj, dict):
            bad_lines += 1
            continue
        records.append((i, flatten(obj)))
    # How records are read can depend on the whole file (a split field is one only if records of two
    # kinds share a metric), so the plan is made once every line is parsed.
    how = plan([flat for _, flat in records], step_key, path.name)
    skip = NON_METRIC_KEYS | how.skip
    for j, (i, flat) in enumerate(records):
        key = step_key if step_key in flat else find_key(flat, STEP_KEYS)
        prefix = how.prefixes.get(j)
        row = prefixed(flat, prefix, key, skip) if prefix else flat
        rows.add_row(row, key, where=f"line {i + 1}", skip=skip, step=how.steps.get(j))
    if bad_lines:
        notes.append(Note("dropped", f"{path.name}: {bad_lines} line(s) that are not JSON objects were not used",
                          count=bad_lines))
    if repeated:
        notes.append(Note("dropped", f"{path.name}: {repeated} line(s) repeating a key in one object (a damaged "
                          "line: which value is meant is unknowable) were not used", count=repeated))
    if too_deep:
        notes.append(Note("dropped", f"{path.name}: {too_deep} line(s) nested too deeply to parse were not used",
                          count=too_deep))
    return rows.points(), notes + list(how.notes) + rows.notes()


# ---- trainer_state.json (analyzer/ingest/hf_trainer.py before the vectorised reader) ----

_SUMMARY_MARKERS = ("train_runtime", "total_flos")


def read_trainer_state(path: Path):
    """(points, notes, summary entries) of one trainer_state.json, row by row."""
    state = loads(path.read_text(encoding="utf-8"))
    rows = RowCollector(source=path.name)
    summaries = []
    repeated = 0
    for i, entry in enumerate(state["log_history"]):
        if not isinstance(entry, dict):
            rows.rows_without_step += 1
            continue
        if isinstance(entry, RepeatedKeys):
            repeated += 1
            continue
        if any(m in entry for m in _SUMMARY_MARKERS):
            summaries.append(entry)
            continue
        rows.add_row(entry, "step", where=f"log_history entry {i}")
    notes = rows.notes()
    if repeated:
        notes.append(Note("dropped", f"{path.name}: {repeated} log_history entr(ies) repeating a key (a damaged file: "
                          "two entries run together) were not used", count=repeated))
    return rows.points(), notes, summaries
