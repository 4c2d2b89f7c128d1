"""Parquet tables of a run's metrics, one row per logged step and one column per metric.

W&B's own answer for a run's complete history is its ``<run-id>-history`` artifact, downloaded as Parquet
(``0000.parquet``, ``0001.parquet``, ... when it is long): ``_step``, ``_timestamp`` (seconds since 1970),
``_runtime`` and a column per logged key, empty where a row did not log it. A script's own
``df.to_parquet(...)`` of its metrics is read the same way: the step is the first column STEP_KEYS names
(else an epoch column; a table with neither, a dataset's shard, is no log), the wall time a WALL_KEYS column.

Nested values (a logged dict) are struct columns: their fields become ``<column>/<field>`` tags. A column that
holds no numbers (text, media references, lists, booleans: a flag is no metric) is counted in a note, never
read. The file's footer names its columns, so recognising a file reads no row.

Read by polars (no pyarrow): only the columns with numbers are decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest.tabular import EPOCH_KEYS, NON_METRIC_KEYS, STEP_KEYS, WALL_KEYS, find_key, frame_to_points
from analyzer.types import Note

#: What a damaged file makes polars raise: a Rust panic (a BaseException) as well as its errors.
_BROKEN = (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError)
#: What parquet writers name the parts of one table (W&B's history artifact, Spark and pandas' partitioned writes).
_PART = re.compile(r"^(?:\d+|part[-_]\d+.*)$")


@dataclass(frozen=True)
class Table:
    """What the footer of a parquet file says: its step, wall-time and metric columns, and the columns that hold
    no numbers (flags, lists, dates)."""

    step: str
    wall: str | None
    metrics: tuple[str, ...]
    other: tuple[str, ...]


def _numeric(dtype: Any) -> bool:  # a polars dtype, or its class for the parameterless ones
    return bool(dtype.is_numeric()) or dtype == pl.String


def _leaves(name: str, dtype: Any) -> list[tuple[str, Any]]:
    """A column's (tag, dtype) leaves: a struct's fields as ``name/field``, recursively."""
    if isinstance(dtype, pl.Struct):
        return [leaf for f in dtype.fields for leaf in _leaves(f"{name}/{f.name}", f.dtype)]
    return [(name, dtype)]


def sniff(path: Path) -> Table:
    """The step and metric columns of a parquet file; LogFormatError when it is none or has no metric column."""
    with open(path, "rb") as fh:
        if fh.read(4) != b"PAR1":
            raise LogFormatError("not a Parquet file (no PAR1 magic)")
    try:
        schema = pl.read_parquet_schema(path)
    except _BROKEN as exc:
        raise LogFormatError(f"the Parquet file cannot be read ({_first_line(exc)})") from None
    step = find_key(schema, STEP_KEYS) or find_key(schema, EPOCH_KEYS)
    if step is None:  # a dataset's shard (text and labels) is a table of numbers too; a log counts its steps
        raise LogFormatError("a Parquet table without a step column (_step, step, global_step, iteration, epoch, "
                             "...): not a metrics log")
    wall = find_key(schema, WALL_KEYS)
    named = [name for name in schema if name not in (step, wall) and name not in NON_METRIC_KEYS]
    metrics = tuple(name for name in named if any(_numeric(d) for _, d in _leaves(name, schema[name])))
    if not metrics:
        raise LogFormatError("a Parquet table without a metric column (numbers by name)")
    return Table(step, wall, metrics, tuple(name for name in named if name not in metrics))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def is_part(path: Path) -> bool:
    """Whether the file is a numbered part of a table written as several files (``0000.parquet``)."""
    return bool(_PART.match(path.stem))


def read(path: Path, table: Table) -> tuple[RawPoints, list[Note]]:
    """Every numeric cell of the metric columns as points; notes count the columns and cells not read."""
    wanted = [table.step] + ([table.wall] if table.wall is not None else []) + list(table.metrics)
    try:
        frame = pl.read_parquet(path, columns=wanted)
    except _BROKEN as exc:
        raise LogFormatError(f"the Parquet file cannot be read ({_first_line(exc)})") from None
    frame, unread = _plain(frame)
    unread += table.other
    points, notes = frame_to_points(frame, source=path.name, step_col=table.step, wall_col=table.wall)
    if unread:
        notes.append(Note("ignored_fields", f"{path.name}: {len(unread)} column(s) that hold no numbers (flags, lists, "
                          f"dates, media) were not read "
                          f"({', '.join(unread[:5])}{', ...' if len(unread) > 5 else ''})", count=len(unread)))
    if len(points) == 0:
        raise LogFormatError("no numbers in its metric columns")
    return points, notes


def _plain(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """The columns frame_to_points reads (numbers, and text it reads as numbers where it can), the others named.
    A struct (a logged dict) becomes a column per field, named ``<column>/<field>``, down to its last level."""
    while any(isinstance(d, pl.Struct) for d in frame.schema.values()):
        frame = frame.select([
            pl.col(c).struct.rename_fields([f"{c}/{f.name}" for f in d.fields]).struct.unnest()
            if isinstance(d, pl.Struct) else pl.col(c) for c, d in frame.schema.items()])
    keep = [c for c, d in frame.schema.items() if _numeric(d)]
    return frame.select(keep), [c for c in frame.columns if c not in keep]
