"""Wide tables (a step column and metric columns, sparse cells allowed) as numpy columns, and their points.

`MetricColumns` takes a table frame by frame (row chunks of one CSV, or a whole frame) and keeps only
what the points and notes need: each cell as a float and whether it is a number, or holds anything at
all. A large CSV is read in row chunks into these arrays, not whole into one polars frame: polars' allocator
keeps the pages of the frames it frees (and of its parse buffers) for its own later use, so a whole
frame of a 50 MB file stayed part of the process's memory until the end; a chunk costs only its own size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from analyzer.frame import RawPoints
from analyzer.ingest.tabular import STEP_MAX, STEP_MIN, fractional_steps_note, non_numeric_notes, step_out_of_range
from analyzer.types import Note


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
