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
from analyzer.ingest.tabular import EPOCH_KEYS, NON_METRIC_KEYS, STEP_KEYS, WALL_KEYS, frame_to_points
from analyzer.types import Note

#: What a damaged file makes polars raise: a Rust panic (a BaseException) as well as its errors.
_BROKEN = (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError)
#: What writers name the parts of one table: zero-padded numbers (``0000.parquet``) or Spark's and pandas'
#: ``part-00000-...``; ``1.parquet``, ``2.parquet`` are tables of their own (seeds, trials).
_PART = re.compile(r"^(?:\d{4,}|part[-_]\d+.*)$")
#: pandas' saved index: no metric.
_INDEX_COLUMNS = frozenset({"__index_level_0__", "index", "Unnamed: 0"})


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
    """A column's (tag, dtype) leaves: a struct's fields as ``name/field``, recursively; a W&B media reference
    (a struct with a ``_type``: an image's width and size) has none."""
    if isinstance(dtype, pl.Struct):
        if any(f.name == "_type" for f in dtype.fields):
            return []
        return [leaf for f in dtype.fields for leaf in _leaves(f"{name}/{f.name}", f.dtype)]
    return [(name, dtype)]


def _schema(path: Path) -> dict[str, Any]:
    try:
        return pl.read_parquet_schema(path)
    except _BROKEN as exc:
        raise LogFormatError(f"the Parquet file cannot be read ({_first_line(exc)})") from None


def _named(schema: dict[str, Any], key: str) -> str | None:
    """The column ``key`` names, exactly or in another case."""
    return key if key in schema else next((c for c in schema if c.lower() == key.lower()), None)


def _step_column(files: list[Path], schemas: list[dict[str, Any]]) -> str | None:
    """The first step key (STEP_KEYS, then EPOCH_KEYS) that every part holds as numbers, and in every row where
    one does (a W&B history's train/global_step is missing from the rows of the user's own wandb.log calls: then
    _step, which every row has, is the step); None when no part has a numeric step column."""
    candidates = []
    for key in STEP_KEYS + EPOCH_KEYS:
        names = {_named(s, key) for s in schemas}
        name = names.pop() if len(names) == 1 else None
        if name is not None and name not in candidates and all(s[name].is_numeric() for s in schemas):
            candidates.append(name)
    for name in candidates:
        try:
            if all(pl.read_parquet(f, columns=[name]).get_column(name).null_count() == 0 for f in files):
                return name
        except _BROKEN as exc:
            raise LogFormatError(f"the Parquet file cannot be read ({_first_line(exc)})") from None
    return candidates[0] if candidates else None


def _parts(path: Path) -> list[Path]:
    """The files of the table ``path`` belongs to: its numbered sibling parts, or itself."""
    if not is_part(path):
        return [path]
    return sorted(p for p in path.parent.iterdir() if p.suffix == path.suffix and is_part(p) and p.is_file())


def sniff(path: Path) -> Table:
    """The step and metric columns of a parquet file (of every part of its table); LogFormatError when it is no
    metrics table."""
    with open(path, "rb") as fh:
        if fh.read(4) != b"PAR1":
            raise LogFormatError("not a Parquet file (no PAR1 magic)")
    schema = _schema(path)
    files = _parts(path)
    schemas = [schema if f == path else _schema(f) for f in files]
    step = _step_column(files, schemas)
    if step is None:  # a dataset's shard (text and labels) is a table of numbers too; a log counts its steps
        raise LogFormatError("a Parquet table without a numeric step column (_step, step, global_step, iteration, "
                             "epoch, ...): not a metrics log")
    wall = next((c for c in (_named(schema, k) for k in WALL_KEYS)  # seconds, or a date and time (not a duration)
                 if c is not None and (schema[c].is_numeric() or isinstance(schema[c], (pl.Datetime, pl.Date))
                                       or schema[c] in (pl.Datetime, pl.Date))), None)
    named = [name for name in schema if name not in (step, wall) and name not in NON_METRIC_KEYS
             and name not in _INDEX_COLUMNS]
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
        if table.wall is not None and frame.schema[table.wall].is_temporal():  # a date and time: seconds since 1970
            frame = frame.with_columns(pl.col(table.wall).cast(pl.Datetime("us")).dt.epoch("us").cast(pl.Float64) / 1e6)
    except _BROKEN as exc:
        raise LogFormatError(f"the Parquet file cannot be read ({_first_line(exc)})") from None
    metrics, unread = _plain(frame.select(table.metrics))
    unread += table.other
    frame = pl.concat([frame.select([table.step] + ([table.wall] if table.wall else [])), metrics], how="horizontal")
    points, notes = frame_to_points(frame, source=path.name, step_col=table.step, wall_col=table.wall)
    if unread:
        notes.append(Note("ignored_fields", f"{path.name}: {len(unread)} column(s) that hold no numbers (flags, lists, "
                          f"dates, media) were not read "
                          f"({', '.join(unread[:5])}{', ...' if len(unread) > 5 else ''})", count=len(unread)))
    if len(points) == 0:
        raise LogFormatError("no numbers in its metric columns")
    return points, notes


def _plain(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """The metric columns frame_to_points reads (numbers, and text it reads as numbers where it can), and the
    others' names. A struct (a logged dict) becomes a column per field, ``<column>/<field>``, down to its last
    level; a W&B media reference (a struct with a ``_type``) and a field named like a column already there are
    not read."""
    unread: list[str] = []
    while any(isinstance(d, pl.Struct) for d in frame.schema.values()):
        columns: dict[str, pl.Expr] = {}
        for c, d in frame.schema.items():
            if not isinstance(d, pl.Struct):
                columns.setdefault(c, pl.col(c))
            elif any(f.name == "_type" for f in d.fields):
                unread.append(c)
            else:
                for f in d.fields:
                    name = f"{c}/{f.name}"
                    if name in columns or name in frame.schema:
                        unread.append(name)
                    else:
                        columns[name] = pl.col(c).struct.field(f.name).alias(name)
        frame = frame.select(list(columns.values()))
    keep = [c for c, d in frame.schema.items() if _numeric(d)]
    return frame.select(keep), unread + [c for c in frame.columns if c not in keep]
