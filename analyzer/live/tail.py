"""Reading only what a log appended since the last look: JSONL lines and TensorBoard event records.

The loader reads a JSONL file whole (a 1,000-line log costs ~25 ms, every time it grew). A log
that a training process appends to is read from where the last read stopped instead: only new
complete lines are parsed, with the loader's own helpers (`analyzer.ingest.tabular`, the step key
`jsonl.sniff` finds), so a value means the same thing here as in `steadytrain report`. A line still
being written (no newline yet) waits for the next look.

Only plain logs are read this way. The loader reads some dialects from the whole file at once (a
``split``/``mode``/... field that tags train and validation records, MMEngine's iter/step records,
an iteration counter that restarts each epoch: `analyzer.ingest.jsonl_dialects`), and a new line
can change how every earlier one is read. A tail is not made for such a file, and a new line that
could make one (a split field, iter and step together, a step going back) stops the tail: `read_new`
returns None, as for a file that shrank or whose bytes before the last read's end changed (rewritten:
`analyzer.ingest.append_cursor` decides it, as for the decode cache and the object-store mirror), and
the caller reads the run afresh.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest.append_cursor import AppendCursor
from analyzer.ingest.jsonl_dialects import SPLIT_FIELDS
from analyzer.ingest.tabular import (NON_METRIC_KEYS, STEP_KEYS, RepeatedKeys, RowCollector, find_key, flatten, loads,
                                     non_numeric_notes, to_float)
from analyzer.types import Note

try:  # the loader's own event-file decoder; without it (a refactored ingest) event files are re-read whole
    from analyzer.ingest.tensorboard import read_event_file as _read_event_file
    from analyzer.ingest.tfrecord import frame_records as _frame_records
except ImportError:  # pragma: no cover - only when ingest moved them
    _read_event_file = None  # type: ignore[assignment]
    _frame_records = None  # type: ignore[assignment]

_BACK = 1 << 16
_SNIFF_LINES = 20
#: Notes the loader writes when it read a file as a dialect (whole-file decisions).
DIALECT_NOTES = frozenset({"split_tags", "derived_step"})


def _object(raw: bytes) -> dict[str, object] | None:
    try:
        obj = loads(raw)
    except (ValueError, RecursionError):
        return None
    return flatten(obj) if isinstance(obj, dict) and not isinstance(obj, RepeatedKeys) else None


def dialect_risk(flat: dict[str, object]) -> bool:
    """Whether a record may make the loader read the file as a dialect (see the module doc)."""
    return any(k in flat for k in SPLIT_FIELDS) or ("iter" in flat and "step" in flat)


@dataclass
class JsonlTail:
    """Where the last read of one JSONL log stopped.

    Attributes:
        path: the log.
        offset: bytes consumed; everything before was parsed.
        fingerprint: of the bytes consumed (`AppendCursor`): a rewritten file has another.
        open_line: the last consumed line had no newline yet (a whole JSON object the loader used);
            the next byte must be that newline.
        dropped: appended lines not used, by why (totals over every read, for the run's notes).
        non_numeric / rows_without_step: the row collector's counts, totals over every read.
        tags: every metric name seen in appended lines.
        step_key: the step key the loader uses for this file (`jsonl.sniff`).
        last_step: the step of the last record read (a later one below it is a restart or an epoch counter).
        dialect: a new line may make the loader read the file as a dialect (no tail for it from then on).
    """

    path: Path
    offset: int
    fingerprint: int
    step_key: str
    last_step: float | None = None
    open_line: bool = False
    dialect: bool = False  # set when a new line may make the loader read the file as a dialect
    dropped: Counter[str] = field(default_factory=Counter)
    non_numeric: Counter[str] = field(default_factory=Counter)
    rows_without_step: int = 0
    tags: set[str] = field(default_factory=set)

    @classmethod
    def at(cls, path: Path, size: int, step_key: str) -> JsonlTail | None:
        """A tail after the first ``size`` bytes, consumed as the loader does (complete lines, plus a last line
        without a newline when it already is a whole JSON object); None for a file the loader may read as a
        dialect (its first lines or its last record say so)."""
        with open(path, "rb") as fh:
            first = [_object(fh.readline(1 << 20)) for _ in range(_SNIFF_LINES)]
            end = size
            while end > 0:  # the last newline at or before size, read backwards in chunks
                start = max(0, end - _BACK)
                fh.seek(start)
                chunk = fh.read(end - start)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    end = start + cut + 1
                    break
                end = start
            fh.seek(max(0, end - _BACK))
            before = fh.read(end - max(0, end - _BACK))
            rest = fh.read(size - end)
        if any(f is not None and dialect_risk(f) for f in first):
            return None
        open_obj = _object(rest.strip()) if rest.strip() else None  # a whole record not yet ended by a newline
        last = open_obj
        if last is None:
            lines = before.rstrip(b"\n").rsplit(b"\n", 1)
            last = _object(lines[-1].strip()) if lines and lines[-1].strip() else None
        offset = size if open_obj is not None else end
        tail = cls(path, offset, AppendCursor.at(path, offset).fingerprint, step_key, open_line=open_obj is not None)
        if last is not None:
            if dialect_risk(last):
                return None
            tail.last_step = tail._step(last)
        return tail

    def _step(self, flat: dict[str, object]) -> float | None:
        key = self.step_key if self.step_key in flat else find_key(flat, STEP_KEYS)
        return to_float(flat.get(key)) if key is not None else None

    def read_new(self) -> tuple[RawPoints, int] | None:
        """(points, lines) appended since the last read; None when the file was rewritten."""
        data = AppendCursor(self.path, self.offset, self.fingerprint).read_new(back=1)
        if data is None:
            return None
        if self.offset > 0:
            before, data = data[:1], data[1:]
            if not self.open_line and before != b"\n":
                return None
        if self.open_line:
            if not data:
                return RawPoints.empty(), 0
            if data[:1] != b"\n":  # the "whole" last line went on: it was not the end of a record
                return None
            data = data[1:]
            self._consumed(1)
            self.open_line = False
        cut = data.rfind(b"\n")
        if cut < 0:
            return RawPoints.empty(), 0
        got = self._parse(data[: cut + 1], self.offset)
        if got is not None:
            self._consumed(cut + 1)
        return got

    def _consumed(self, n: int) -> None:
        cursor = AppendCursor(self.path, self.offset, self.fingerprint).moved_to(self.offset + n)
        self.offset, self.fingerprint = cursor.offset, cursor.fingerprint

    def _parse(self, data: bytes, start: int) -> tuple[RawPoints, int] | None:
        rows = RowCollector(source=self.path.name)
        lines = 0
        dropped: Counter[str] = Counter()
        last = self.last_step
        for raw in data.split(b"\n"):
            text = raw.strip()
            if not text:
                continue
            lines += 1
            try:
                obj = loads(text)
            except (UnicodeDecodeError, json.JSONDecodeError):
                dropped["that are not JSON objects"] += 1
                continue
            except RecursionError:
                dropped["nested too deeply to parse"] += 1
                continue
            if isinstance(obj, RepeatedKeys):
                dropped["repeating a key in one object"] += 1
                continue
            if not isinstance(obj, dict):
                dropped["that are not JSON objects"] += 1
                continue
            flat = flatten(obj)
            step = self._step(flat)
            if dialect_risk(flat):
                self.dialect = True  # the loader may read the whole file differently now: the caller reads it afresh
                return None
            if step is not None and last is not None and step < last:
                return None  # a restart, or an epoch counter the loader turns into steps: read afresh
            last = step if step is not None else last
            key = self.step_key if self.step_key in flat else find_key(flat, STEP_KEYS)
            try:
                rows.add_row(flat, key, where=f"a line appended after byte {start:,}", skip=NON_METRIC_KEYS)
            except LogFormatError:  # the loader refuses the whole file for this; a live tail drops the line
                dropped["with a step outside the range of a 64-bit step counter"] += 1
        self.dropped.update(dropped)
        self.last_step = last
        self.non_numeric.update(rows.non_numeric)
        self.rows_without_step += rows.rows_without_step
        self.tags.update(rows.tags)
        return rows.points(), lines

    def notes(self, known_tags: set[str]) -> list[Note]:
        """What the appended lines lost, in totals (one note per kind, not one per read)."""
        name = self.path.name
        out = [Note("dropped", f"{name}: {n} appended line(s) {what} were not used", count=n)
               for what, n in sorted(self.dropped.items())]
        if self.rows_without_step:
            out.append(Note("dropped", f"{name}: {self.rows_without_step} appended row(s) without a step value were "
                            "not used", count=self.rows_without_step))
        tags = known_tags | self.tags
        dropped = {k: n for k, n in self.non_numeric.items() if k in tags}
        ignored = sorted(k for k in self.non_numeric if k not in tags)
        return out + non_numeric_notes(name, dropped, ignored, "value(s) in metric fields of appended lines",
                                       "field(s)")




@dataclass
class EventTail:
    """Where the last read of one TensorBoard event file stopped: the end of its last whole record.

    The loader reads a grown event file from its decode cache's end offset too, but a re-read of one
    run through it costs ~7 ms of fixed work (discovery, both caches read and rewritten); this reads the
    new records with the same decoder (`read_event_file(begin=...)`, CRCs checked as the loader does).

    Attributes:
        path: the event file.
        cursor: the end of the last whole record read, and the fingerprint of the bytes before it.
    """

    path: Path
    cursor: AppendCursor

    @classmethod
    def at(cls, path: Path) -> EventTail | None:
        """A tail after the whole records the file holds now (None when this build has no event reader)."""
        if _frame_records is None:
            return None
        import numpy as np

        buf = np.fromfile(str(path), dtype=np.uint8)
        return cls(path, AppendCursor.at(path, int(_frame_records(buf).end)))

    def read_new(self, verify_crc: bool) -> Any | None:
        """The decoder's content of the records appended since the last read; None when the file shrank or
        was rewritten (the caller reads the run afresh)."""
        if _read_event_file is None:
            return None
        if not self.cursor.holds():
            return None
        try:
            content = _read_event_file(self.path, verify_crc=verify_crc, begin=self.cursor.offset)
            self.cursor = self.cursor.moved_to(int(content.end_offset))
        except OSError:
            return None
        return content


def event_notes(notes: list[Note], name: str, content: Any) -> list[Note]:
    """A run's notes after reading more of its event file ``name``, as the loader would write them: the
    file's cut-off-record note replaced by what this read found, its non-scalar count added to."""
    out = [n for n in notes if not (n.kind == "truncated" and n.source == name)]
    out += list(content.notes)
    if content.skipped_values:
        old = next((n for n in out if n.kind == "non_scalar" and n.source == name), None)
        count = content.skipped_values + (old.count if old is not None else 0)
        out = [n for n in out if n is not old]
        out.append(Note("non_scalar", f"{name}: {count} non-scalar summary value(s) (histograms, images, text, ...) "
                        "not read: this tool reads scalars", count=count, source=name))
    return out
