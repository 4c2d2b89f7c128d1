"""Reading only what a JSONL log appended since the last look.

The loader reads a JSONL file whole (a 1,000-line log costs ~25 ms, every time it grew). A log
that a training process appends to is read from where the last read stopped instead: only new
complete lines are parsed, with the loader's own helpers (`analyzer.ingest.tabular`), so a value
means the same thing here as in `steadytrain report`. A line still being written (no newline yet)
waits for the next look. A file that shrank, or whose head or last consumed byte changed, was
rewritten: `read_new` says so (None) and the caller reads the run afresh.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest.tabular import STEP_KEYS, RepeatedKeys, RowCollector, find_key, flatten, loads, non_numeric_notes
from analyzer.types import Note

_HEAD = 64
_BACK = 1 << 16


def _is_object(raw: bytes) -> bool:
    try:
        return isinstance(loads(raw), dict)
    except (ValueError, RecursionError):
        return False


@dataclass
class JsonlTail:
    """Where the last read of one JSONL log stopped.

    Attributes:
        path: the log.
        offset: bytes consumed; everything before was parsed.
        head: the file's first bytes when the tail was made (a rewritten file has other ones).
        open_line: the last consumed line had no newline yet (a whole JSON object the loader used);
            the next byte must be that newline.
        dropped: appended lines not used, by why (totals over every read, for the run's notes).
        non_numeric / rows_without_step: the row collector's counts, totals over every read.
        tags: every metric name seen in appended lines.
    """

    path: Path
    offset: int
    head: bytes
    open_line: bool = False
    dropped: Counter[str] = field(default_factory=Counter)
    non_numeric: Counter[str] = field(default_factory=Counter)
    rows_without_step: int = 0
    tags: set[str] = field(default_factory=set)

    @classmethod
    def at(cls, path: Path, size: int) -> JsonlTail:
        """A tail after the first ``size`` bytes, consumed as the loader does: complete lines, plus a last
        line without a newline when it already is a whole JSON object."""
        with open(path, "rb") as fh:
            head = fh.read(_HEAD)
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
            fh.seek(end)
            rest = fh.read(size - end)
        if rest.strip() and _is_object(rest.strip()):
            return cls(path, size, head, open_line=True)
        return cls(path, end, head)

    def read_new(self) -> tuple[RawPoints, int] | None:
        """(points, lines) appended since the last read; None when the file was rewritten."""
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self.offset or fh.read(min(_HEAD, size)) != self.head[: min(_HEAD, size)]:
                    return None
                fh.seek(max(0, self.offset - 1))
                data = fh.read()
        except OSError:
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
            self.offset += 1
            self.open_line = False
        cut = data.rfind(b"\n")
        if cut < 0:
            return RawPoints.empty(), 0
        start = self.offset
        self.offset += cut + 1
        return self._parse(data[: cut + 1], start)

    def _parse(self, data: bytes, start: int) -> tuple[RawPoints, int]:
        rows = RowCollector(source=self.path.name)
        lines = 0
        for raw in data.split(b"\n"):
            text = raw.strip()
            if not text:
                continue
            lines += 1
            try:
                obj = loads(text)
            except (UnicodeDecodeError, json.JSONDecodeError):
                self.dropped["that are not JSON objects"] += 1
                continue
            except RecursionError:
                self.dropped["nested too deeply to parse"] += 1
                continue
            if isinstance(obj, RepeatedKeys):
                self.dropped["repeating a key in one object"] += 1
                continue
            if not isinstance(obj, dict):
                self.dropped["that are not JSON objects"] += 1
                continue
            flat = flatten(obj)
            try:
                rows.add_row(flat, find_key(flat, STEP_KEYS), where=f"a line appended after byte {start:,}")
            except LogFormatError:  # the loader refuses the whole file for this; a live tail drops the line
                self.dropped["with a step outside the range of a 64-bit step counter"] += 1
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


