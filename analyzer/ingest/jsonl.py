"""JSONL logs: one JSON object per line with a step-like key (step, global_step, iteration, ...).

Values may be numbers or numeric strings ("2.31", as fairseq writes them with its ``num_updates``
step); nested objects become '/'-joined tags. The format is recognised by content, not by
extension: `sniff` reads the first lines only. A line that is not JSON, or is nested too deeply
for the JSON parser, is counted and skipped. Dialects that interleave train and validation
records (a ``split``/``mode``/... field, MMEngine's scalars.json, per-epoch iteration counters)
are read as `analyzer.ingest.jsonl_dialects` describes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest.jsonl_dialects import plan, prefixed
from analyzer.ingest.tabular import (NON_METRIC_KEYS, STEP_KEYS, RepeatedKeys, RowCollector, find_key, flatten, loads,
                                     to_float)
from analyzer.types import Note

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


def _repeated_key(raw: bytes) -> str:
    """The first key that one object of a JSON line repeats (for the message naming it)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        found.extend(k for i, k in enumerate(keys) if k in keys[:i])
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)
    return found[0] if found else "?"


def sniff(path: Path) -> str:
    """The step key of a JSONL log, or LogFormatError saying why it is not one."""
    with open(path, "rb") as fh:
        head = [fh.readline(1 << 20) for _ in range(_SNIFF_LINES)]
    parsed = [_parse_line(line) for line in head]
    objs = [flatten(obj) for obj in parsed if isinstance(obj, dict)]
    if not objs:
        if any(obj is _REPEATED for obj in parsed):
            twice = _repeated_key(next(line for line, obj in zip(head, parsed) if obj is _REPEATED))
            raise LogFormatError(f"its first lines are JSON objects that repeat a key ({twice!r} twice in one object: "
                                 "which value is meant is unknowable, a damaged or hand-merged log); not read")
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
