"""JSONL logs: one JSON object per line with a step-like key (step, global_step, iteration, ...).

Values may be numbers or numeric strings ("2.31", as fairseq writes them with its ``num_updates``
step); nested objects become '/'-joined tags. The format is recognised by content, not by
extension: `sniff` reads the first lines only. A line that is not JSON, or is nested too deeply
for the JSON parser, is counted and skipped. Dialects that interleave train and validation
records (a ``split``/``mode``/... field, MMEngine's scalars.json, per-epoch iteration counters)
are read as `analyzer.ingest.jsonl_dialects` describes.

Reading is vectorised (`analyzer.ingest.json_lines`: polars' NDJSON reader by blocks, orjson line by
line where polars cannot take a block) and means exactly what reading each line with ``json.loads``
means; a line only the exact parser can judge is read by it, one line at a time.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest.json_points import to_points
from analyzer.ingest.json_table import JsonTable, concat_columns, table_columns
from analyzer.ingest.json_lines import NOT_JSON, NOT_OBJECT, REPEATED, TOO_DEEP, Block, read_block, read_line
from analyzer.ingest.jsonl_dialects import SPLIT_FIELDS, plan
from analyzer.ingest.tabular import NON_METRIC_KEYS, PROGRESS_KEYS, STEP_KEYS, find_key, progress_step, to_float
from analyzer.types import Note

log = logging.getLogger(__name__)

_SNIFF_LINES = 20
#: Lines are read in blocks of about this many bytes (polars reads a block at once; a block it cannot
#: take whole is read line by line, so one bad line costs its block, not the file).
BLOCK_BYTES = 8 << 20
_TEXT_KEYS = frozenset(SPLIT_FIELDS) | frozenset(PROGRESS_KEYS)


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
    parsed = [read_line(line) for line in head]
    objs = [obj for obj in parsed if isinstance(obj, dict)]
    if not objs:
        if REPEATED in parsed:
            twice = _repeated_key(next(line for line, obj in zip(head, parsed) if obj == REPEATED))
            raise LogFormatError(f"its first lines are JSON objects that repeat a key ({twice!r} twice in one object: "
                                 "which value is meant is unknowable, a damaged or hand-merged log); not read")
        raise LogFormatError("no JSON object per line in its first lines: not a JSONL log")
    for obj in objs:
        key = find_key(obj, STEP_KEYS)
        if key is None:
            key = next((k for k in PROGRESS_KEYS if progress_step(obj.get(k)) is not None), None)
        if key is not None and any(k != key and to_float(v) is not None for k, v in obj.items()):
            return key
    raise LogFormatError("JSON lines without a step key (step, global_step, iteration, iter, current_steps, ...) "
                         "and a numeric value")


class _Lines:
    """The text of one line of a file, found on demand (only messages and tag order need it)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._starts: np.ndarray | None = None

    def __getitem__(self, line: int) -> bytes:
        if line < 64:  # the first lines (where tags are usually first met): no index needed
            start = 0
            for _ in range(line):
                start = self.data.find(b"\n", start) + 1
            end = self.data.find(b"\n", start)
            return self.data[start: end if end >= 0 else len(self.data)]
        if self._starts is None:
            ends = np.flatnonzero(np.frombuffer(self.data, np.uint8) == 10)
            self._starts = np.concatenate([[0], ends + 1])
        start = int(self._starts[line])
        end = self.data.find(b"\n", start)
        return self.data[start: end if end >= 0 else len(self.data)]


def _blocks(body: bytes) -> list[tuple[int, Block]]:
    """(first line, block) over ``body`` (whole lines)."""
    out = []
    pos = line = 0
    while pos < len(body):
        end = body.find(b"\n", min(pos + BLOCK_BYTES, len(body)) - 1) + 1
        text = body[pos:end]
        out.append((line, read_block(text, _TEXT_KEYS)))
        line += text.count(b"\n")
        pos = end
    return out


def read_jsonl(path: Path, step_key: str) -> tuple[RawPoints, list[Note]]:
    """Points and notes of one JSONL log; LogFormatError when a step does not fit an int64."""
    with open(path, "rb") as fh:
        data = fh.read()
    cut = data.rfind(b"\n") + 1
    body, tail = data[:cut], data[cut:]
    blocks = _blocks(body)
    notes: list[Note] = []
    dropped: dict[str, int] = {}
    for _, block in blocks:
        for why, lines in block.dropped.items():
            dropped[why] = dropped.get(why, 0) + len(lines)
    exact = sum(b.exact_lines for _, b in blocks)
    if tail:  # a last line without its newline: used when whole, else the cut-off end of an interrupted write
        got = read_line(tail)
        exact += 1
        if isinstance(got, dict):
            blocks.append((body.count(b"\n"), Block(1, table_columns([got], _TEXT_KEYS), np.zeros(1, np.int64))))
        elif got == NOT_JSON:
            notes.append(Note("truncated", f"{path.name}: the last line is cut off (an interrupted write); "
                              "it was not used", count=1))
        else:
            dropped[got] = dropped.get(got, 0) + 1
    if exact:
        log.debug("%s: %d line(s) read by the exact JSON parser", path.name, exact)
    line_of = np.concatenate([b.lines + first for first, b in blocks]) if blocks else np.zeros(0, np.int64)
    text_of = _Lines(data)

    def key_order(i: int) -> list[str]:
        got = read_line(text_of[int(line_of[i])])
        return list(got) if isinstance(got, dict) else []

    table = JsonTable(int(line_of.size), concat_columns([(b.n, b.columns) for _, b in blocks], _TEXT_KEYS),
                      key_order, lambda i: f"line {int(line_of[i]) + 1}")
    # How records are read can depend on the whole file (a split field is one only if records of two
    # kinds share a metric), so the plan is made once every line is parsed.
    how = plan(table, step_key, path.name)
    points, row_notes = to_points(table, step_key, source=path.name, skip=NON_METRIC_KEYS | how.skip,
                                  prefixes=how.prefixes, step_override=how.steps)
    bad = dropped.get(NOT_JSON, 0) + dropped.get(NOT_OBJECT, 0)
    if bad:
        notes.append(Note("dropped", f"{path.name}: {bad} line(s) that are not JSON objects were not used", count=bad))
    if dropped.get(REPEATED):
        n = dropped[REPEATED]
        notes.append(Note("dropped", f"{path.name}: {n} line(s) repeating a key in one object (a damaged "
                          "line: which value is meant is unknowable) were not used", count=n))
    if dropped.get(TOO_DEEP):
        n = dropped[TOO_DEEP]
        notes.append(Note("dropped", f"{path.name}: {n} line(s) nested too deeply to parse were not used", count=n))
    return points, notes + list(how.notes) + row_notes
