"""Turning row-shaped logs (dicts or frames of metric columns) into points, counting every drop.

Shared by the CSV, JSONL and HF trainer_state readers: they differ in how rows are found, not
in how a row of "step + metric columns" becomes (tag, step, value) points.

`MetricColumns` takes a table frame by frame (row chunks of one CSV, or a whole frame) and keeps only
what the points and notes need: each cell as a float and whether it is a number, or holds anything at
all. A large CSV is read in row chunks into these arrays, not whole into one polars frame: polars' allocator
keeps the pages of the frames it frees (and of its parse buffers) for its own later use, so a whole
frame of a 50 MB file stayed part of the process's memory until the end; a chunk costs only its own size.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import polars as pl

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.types import Note

#: Keys that count steps, most specific first. `_step` is what W&B exports write: it counts `wandb.log` calls, so the
#: step metric the HF Trainer (``train/global_step``) and Lightning (``trainer/global_step``) define in W&B comes
#: first; `num_updates` is fairseq's (``train_``/``valid_`` prefixed in its end-of-epoch JSON records).
STEP_KEYS = ("global_step", "step", "train/global_step", "trainer/global_step", "_step", "iteration", "iter",
             "current_steps", "Step", "it", "steps", "global_steps", "num_steps", "num_updates", "train_num_updates",
             "valid_num_updates", "training_iteration")  # the last: Ray Tune/Train's result.json and progress.csv
#: Keys holding the step as a progress fraction, ``"<step>/<total>"`` (ms-swift's log dicts and logging.jsonl
#: print ``'global_step/max_steps': '5/94'`` and no other step).
PROGRESS_KEYS = ("global_step/max_steps",)
EPOCH_KEYS = ("epoch", "Epoch", "epochs")
WALL_KEYS = ("wall_time", "Wall time", "timestamp", "time", "_timestamp")
#: Columns that describe a row rather than measure something.
NON_METRIC_KEYS = frozenset(STEP_KEYS + PROGRESS_KEYS + EPOCH_KEYS + WALL_KEYS + ("_runtime", "mode", "phase", "split",
                                                                                  "pid", "iterations_since_restore"))
_PROGRESS = re.compile(r"^\s*(\d+)\s*/\s*\d+\s*$")


def progress_step(value: Any) -> int | None:
    """The step of a progress fraction (``"5/94"`` -> 5), None for anything else."""
    m = _PROGRESS.match(value) if isinstance(value, str) else None
    return int(m.group(1)) if m is not None and len(m.group(1)) < 19 else None


class RepeatedKeys(dict):
    """A JSON object in which a key appeared twice (here or in an object inside it).

    No logger writes that; a damaged file does (deleted or duplicated lines of an indented JSON
    document merge two records), and the json module would silently keep the last value."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs) or any(isinstance(v, RepeatedKeys) for _, v in pairs):
        return RepeatedKeys(out)
    return out


def loads(text: str | bytes) -> Any:
    """json.loads, with every object that repeats a key (or holds one that does) a `RepeatedKeys`."""
    return json.loads(text, object_pairs_hook=_pairs)


def find_key(keys: Iterable[str], candidates: tuple[str, ...]) -> str | None:
    present = set(keys)
    for c in candidates:
        if c in present:
            return c
    lowered = {k.lower(): k for k in present}
    for c in candidates:
        if c.lower() in lowered:
            return lowered[c.lower()]
    return None


def to_float(value: Any) -> float | None:
    """A logged value as a float: numbers and numeric strings ("2.31", "nan", "inf"). JSON true/false are no
    number (a flag is not a loss), nor is an integer beyond float range (a 400-digit "loss")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return None
    return None


#: Steps are stored as int64; a step outside this range cannot be a training step counter.
STEP_MIN, STEP_MAX = -(2.0**63), 2.0**63


def flatten(obj: Mapping[Any, Any], sep: str = "/", prefix: str = "", *, max_keys: int | None = None) -> dict[str, Any]:
    """Nested dicts become ``sep``-joined keys ('/' is how most tools name nested metrics).

    Iterative, so a hostile nesting depth costs memory, never Python's recursion limit; with
    ``max_keys``, LogFormatError past that many keys (a YAML alias bomb expands exponentially).
    """
    out: dict[str, Any] = {}
    stack: list[tuple[str, Iterator[tuple[Any, Any]]]] = [(prefix, iter(obj.items()))]
    visited = 0
    while stack:
        pre, items = stack[-1]
        for key, value in items:
            visited += 1
            if max_keys is not None and visited > max_keys:
                raise LogFormatError(f"more than {max_keys:,} keys when flattened: not a run's configuration")
            name = f"{pre}{key}"
            if isinstance(value, Mapping):
                stack.append((name + sep, iter(value.items())))
                break  # depth first, so keys come out in their written order
            out[name] = value
        else:
            stack.pop()
    return out


def fractional_steps_note(source: str, steps: np.ndarray) -> list[Note]:
    """A note counting the step values that are not whole numbers (each read at the whole step toward zero),
    so a fractional epoch used as the step is never folded into its neighbours unsaid."""
    fractional = steps != np.trunc(steps)
    k = int(fractional.sum())
    if not k:
        return []
    example = float(steps[int(np.argmax(fractional))])
    return [Note("fractional_step", f"{source}: {k} step value(s) are not whole numbers (e.g. {example:g}): each was "
                 f"read at the whole step toward zero ({int(example)})", count=k)]


def step_out_of_range(step: float, where: str) -> LogFormatError:
    """The error that rejects a file whose step does not fit a 64-bit step counter."""
    return LogFormatError(f"step {step:g} ({where}) is outside the range of a 64-bit step counter; "
                          "the file was not read")


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
    rows_without_step: int = 0

    def add_row(self, row: Mapping[str, Any], step_key: str | None, *, fallback_step: int | None = None,
                wall_key: str | None = None, skip: frozenset[str] = NON_METRIC_KEYS, where: str = "a row",
                step: int | None = None) -> None:
        """Add one row's metric values at its step (``step``: one derived by the caller, used instead of
        the row's); LogFormatError when the step cannot be an int64."""
        if step is None:
            raw_step = row.get(step_key) if step_key else None
            step_f = to_float(raw_step) if raw_step is not None else None
            if step_f is None or not math.isfinite(step_f):
                if fallback_step is None:
                    self.rows_without_step += 1
                    return
                step = fallback_step
            elif not STEP_MIN <= step_f < STEP_MAX:
                raise step_out_of_range(step_f, where)
            else:
                step = int(step_f)
        wall = to_float(row.get(wall_key)) if wall_key else None
        for key, value in row.items():
            if key in skip or key == step_key or key == wall_key or value is None:
                continue
            x = to_float(value)
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
        out = []
        if self.rows_without_step:
            out.append(Note("dropped", f"{self.source}: {self.rows_without_step} row(s) without a step value were "
                            "not used", count=self.rows_without_step))
        # A field that is never numeric is metadata (e.g. "mode": "train"), not a dropped point;
        # a metric that is numeric in some rows and not in others lost points.
        dropped = {k: n for k, n in self.non_numeric.items() if k in self.tags}
        ignored = sorted(k for k in self.non_numeric if k not in self.tags)
        return out + non_numeric_notes(self.source, dropped, ignored, "value(s) in metric fields", "field(s)")


def non_numeric_notes(source: str, dropped: Mapping[str, int], ignored: list[str], what: str,
                      kind: str) -> list[Note]:
    """Notes counting non-numeric entries of metric columns (lost points) and all-text columns (ignored)."""
    out = []
    if dropped:
        total = sum(dropped.values())
        detail = ", ".join(f"{k} x{n}" for k, n in sorted(dropped.items())[:10])
        out.append(Note("dropped", f"{source}: {total} non-numeric {what} were not used ({detail})", count=total))
    if ignored:
        out.append(Note("ignored_fields", f"{source}: non-numeric {kind} ignored: {', '.join(ignored[:10])}",
                        count=len(ignored)))
    return out


@dataclass
class _Cells:
    """One column's cells, row by row (the arrays' first ``MetricColumns.height`` rows are the column)."""

    values: np.ndarray  # float64: the cell as a number; NaN when it is none (NaN and inf cells are data)
    numeric: np.ndarray  # bool: the cell is a number
    present: np.ndarray  # bool: the cell holds something (not empty, not blank text)
    not_null: int = 0  # cells that are not empty, blank text included


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    out = np.empty(size, array.dtype)
    out[: array.shape[0]] = array
    return out


def _cells_of(df: pl.DataFrame) -> list[tuple[pl.Series, tuple[pl.Series, pl.Series] | None]]:
    """Each column's cells as floats and which are numbers and which hold something (None for a float column
    without empty cells: all are both). One polars query for the frame: each query is a round trip."""
    exprs, masked = [], []
    for i, col in enumerate(df.get_columns()):
        cell = pl.nth(i)  # by position: a column's name could read as a pattern ("^x$")
        as_float = cell if col.dtype == pl.Float64 else cell.cast(pl.Float64, strict=False)
        present = cell.is_not_null() & (cell.str.strip_chars() != "") if col.dtype == pl.String else cell.is_not_null()
        masked.append(col.dtype != pl.Float64 or col.null_count() > 0)
        exprs += [as_float.alias(f"v{i}"), as_float.is_not_null().alias(f"n{i}"), present.alias(f"p{i}")][
            : 3 if masked[-1] else 1]
    if not any(masked):  # the common chunk (all numbers): no query at all
        return [(col, None) for col in df.get_columns()]
    out = iter(df.select(exprs).get_columns())
    return [(next(out), (next(out), next(out)) if m else None) for m in masked]


class MetricColumns:
    """A table's columns by name (in column order), filled frame by frame with `add`."""

    def __init__(self, names: Sequence[str], capacity: int = 0) -> None:
        self.names = list(names)
        self.height = 0
        self._capacity = max(capacity, 0)
        self._cells = [_Cells(np.empty(self._capacity), np.empty(self._capacity, bool),
                              np.empty(self._capacity, bool)) for _ in self.names]

    @staticmethod
    def of_frame(df: pl.DataFrame) -> MetricColumns:
        cols = MetricColumns(df.columns, df.height)
        cols.add(df)
        return cols

    def add(self, df: pl.DataFrame) -> None:
        """Append the rows of ``df``, whose columns are these, in this order (any dtype polars casts to float)."""
        if df.columns != self.names:
            raise ValueError(f"a chunk's columns {df.columns} are not the table's {self.names}")
        lo, hi = self.height, self.height + df.height
        if hi > self._capacity:  # a row count estimate fell short: grow by half again, never per chunk
            self._capacity = max(hi, self._capacity + self._capacity // 2)
            for c in self._cells:
                c.values = _grown(c.values[:lo], self._capacity)
                c.numeric = _grown(c.numeric[:lo], self._capacity)
                c.present = _grown(c.present[:lo], self._capacity)
        for cells, col, (values, masks) in zip(self._cells, df.get_columns(), _cells_of(df)):
            cells.not_null += len(col) - col.null_count()
            cells.values[lo:hi] = values.to_numpy()  # nulls come as NaN; `numeric` tells them from NaN cells
            if masks is None:  # a float column without an empty cell: every cell is a number
                cells.numeric[lo:hi] = True
                cells.present[lo:hi] = True
            else:
                cells.numeric[lo:hi] = masks[0].to_numpy()
                cells.present[lo:hi] = masks[1].to_numpy()
        self.height = hi

    def _of(self, name: str) -> _Cells:
        return self._cells[self.names.index(name)]

    def values(self, name: str) -> np.ndarray:
        return self._of(name).values[: self.height]

    def numeric(self, name: str) -> np.ndarray:
        return self._of(name).numeric[: self.height]

    def all_numbers(self, name: str) -> bool:
        """Whether every cell of the column that is not empty is a number."""
        cells = self._of(name)
        return int(self.numeric(name).sum()) == cells.not_null

    def rename(self, old: str, new: str) -> None:
        if new in self.names:  # the error renaming the whole frame raised: the same outcome for the same file
            raise pl.exceptions.DuplicateError(f"column '{new}' is duplicate")
        self.names[self.names.index(old)] = new

    def drop(self, name: str) -> None:
        i = self.names.index(name)
        del self.names[i], self._cells[i]

    def to_points(self, *, source: str, step_col: str | None, wall_col: str | None,
                  skip: Iterable[str] = ()) -> tuple[RawPoints, list[Note]]:
        """The points of every metric column (one tag each, in column order) and notes counting what was not
        used: rows without a step, cells that are not numbers, columns that hold none."""
        steps, keep, notes = self._steps(source, step_col)
        walls = self.values(wall_col) if wall_col is not None else np.full(self.height, np.nan)
        skipped = set(skip) | {step_col, wall_col}
        kept: list[tuple[str, np.ndarray | None, np.ndarray, int]] = []  # (tag, rows or None for all, values, count)
        dropped: dict[str, int] = {}
        ignored: list[str] = []
        for name, cells in zip(self.names, self._cells):
            if name in skipped:
                continue
            numeric, present = cells.numeric[: self.height], cells.present[: self.height]
            if keep is not None:  # only the rows with a step count, as if the others were never there
                numeric, present = numeric & keep, present & keep
            count = int(numeric.sum())
            if count == 0:
                if bool(present.any()):
                    ignored.append(name)
                continue
            bad = int((present & ~numeric).sum())
            if bad:
                dropped[name] = bad
            kept.append((name, None if count == self.height else numeric, cells.values[: self.height], count))
        notes += non_numeric_notes(source, dropped, ignored, "cell(s) in metric columns", "column(s)")
        return _points_of_columns(kept, steps, walls), notes

    def _steps(self, source: str, step_col: str | None) -> tuple[np.ndarray, np.ndarray | None, list[Note]]:
        """Each row's step (int64, toward zero; rows without one hold 0 and are marked in the mask), the rows
        with a step (None: all), and the notes on the step column; LogFormatError for a step outside int64."""
        if step_col is None:
            note = Note("no_step_column", f"{source}: no step column; the row number is used as the step",
                        count=self.height)
            return np.arange(self.height, dtype=np.int64), None, [note]
        raw = self.values(step_col)
        has_step = self.numeric(step_col) & np.isfinite(raw)
        outside = has_step & ((raw < STEP_MIN) | (raw >= STEP_MAX))
        if bool(outside.any()):
            row = int(np.argmax(outside))
            raise step_out_of_range(float(raw[row]), f"data row {row + 1}, column '{step_col}'")
        notes: list[Note] = []
        missing = self.height - int(has_step.sum())
        if not missing:
            return raw.astype(np.int64), None, fractional_steps_note(source, raw)
        notes.append(Note("dropped", f"{source}: {missing} row(s) with no '{step_col}' value were not used",
                          count=missing))
        notes += fractional_steps_note(source, raw[has_step])
        return np.where(has_step, raw, 0.0).astype(np.int64), has_step, notes


def frame_to_points(df: pl.DataFrame, *, source: str, step_col: str | None, wall_col: str | None,
                    skip: Iterable[str] = ()) -> tuple[RawPoints, list[Note]]:
    """A wide frame (one column per metric, sparse cells allowed) -> points, vectorised."""
    return MetricColumns.of_frame(df).to_points(source=source, step_col=step_col, wall_col=wall_col, skip=skip)


def _points_of_columns(kept: list[tuple[str, np.ndarray | None, np.ndarray, int]], steps: np.ndarray,
                       walls: np.ndarray) -> RawPoints:
    """Each column's kept rows (``rows``: a mask over all rows, or None for all) as points, tag by tag in column
    order, written straight into the arrays of the result: what `RawPoints.from_columns` of per-column copies
    gives, without those copies."""
    total = sum(count for *_, count in kept)
    codes = np.empty(total, np.int32)
    out_steps = np.empty(total, np.int64)
    out_walls = np.empty(total, np.float64)
    out_values = np.empty(total, np.float64)
    lo = 0
    for code, (_, rows, values, count) in enumerate(kept):
        hi = lo + count
        codes[lo:hi] = code
        if rows is None:
            out_values[lo:hi] = values
            out_steps[lo:hi] = steps
            out_walls[lo:hi] = walls
        else:
            np.compress(rows, values, out=out_values[lo:hi])
            np.compress(rows, steps, out=out_steps[lo:hi])
            np.compress(rows, walls, out=out_walls[lo:hi])
        lo = hi
    return RawPoints(tuple(name for name, *_ in kept), codes, out_steps, out_walls, out_values)
