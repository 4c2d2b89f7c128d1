"""MLflow's SQLite tracking store: ``mlflow.db``, MLflow's default backend since 3.7 (``./mlruns`` before).

One database holds every run of every experiment: the ``runs`` table names them (``run_uuid``, ``name``,
``experiment_id``, ``lifecycle_stage``), ``metrics`` holds every logged value (``key``, ``value``,
``timestamp`` in ms, ``step``, ``is_nan``) and ``params`` the run's settings. MLflow writes a NaN as
``value`` 0 with ``is_nan`` 1 and an infinity as the largest double (SQL has no infinities); both are read
back as the value that was logged.

Read with the standard library's ``sqlite3``, opened read-only: MLflow's own client would need the mlflow
package with SQLAlchemy, and it runs its schema migrations on the database it opens (it would change the
user's store to read it).
"""

from __future__ import annotations

import math
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest.tabular import STEP_MAX, STEP_MIN
from analyzer.types import Note

_MAGIC = b"SQLite format 3\x00"
_METRIC_COLUMNS = frozenset({"key", "value", "timestamp", "run_uuid", "step", "is_nan"})
_RUN_COLUMNS = frozenset({"run_uuid", "name", "experiment_id", "lifecycle_stage"})
_SCHEMA = {"key": pl.String, "step": pl.Int64, "timestamp": pl.Int64, "value": pl.Float64, "is_nan": pl.Int64}
_DOUBLE_MAX = sys.float_info.max
_BATCH_ROWS = 1 << 17


@dataclass(frozen=True)
class StoreRun:
    """One MLflow run of a store: what names it, and whether it is in MLflow's trash."""

    uuid: str
    name: str
    experiment: str
    deleted: bool


@dataclass(frozen=True)
class Store:
    """The runs of one MLflow database, in the order they started."""

    runs: tuple[StoreRun, ...]


def _connect(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri()
    con = sqlite3.connect(uri + "?mode=ro", uri=True)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        con.close()
        # a WAL-mode store in a folder we may not write: read-only SQLite still wants to create its -shm file.
        # With no -wal file beside it, nothing is pending and the file on disk is the whole store. Only then: a
        # store locked by its writer ("database is locked") is never read as if nothing were writing it.
        cannot_open = getattr(exc, "sqlite_errorname", "") == "SQLITE_CANTOPEN" or "unable to open" in str(exc)
        if not cannot_open or Path(str(path) + "-wal").exists():
            raise
        con = sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True)
    return con


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]) for row in con.execute(f"PRAGMA table_info({table})")}


def sniff(path: Path) -> Store:
    """The runs of an MLflow SQLite store; LogFormatError when ``path`` is not one (or cannot be read)."""
    with open(path, "rb") as fh:
        if fh.read(len(_MAGIC)) != _MAGIC:
            raise LogFormatError("not an SQLite database")
    try:
        con = _connect(path)
        try:
            if not (_METRIC_COLUMNS <= _columns(con, "metrics") and _RUN_COLUMNS <= _columns(con, "runs")):
                raise LogFormatError("an SQLite database without MLflow's runs and metrics tables: not an MLflow "
                                     "tracking store")
            has_experiments = "name" in _columns(con, "experiments")
            rows = con.execute(  # a run whose experiment row is gone is named by the experiment's id
                "SELECT r.run_uuid, r.name, " + ("COALESCE(e.name, r.experiment_id)" if has_experiments
                                                 else "r.experiment_id") +
                ", r.lifecycle_stage FROM runs r" +
                (" LEFT JOIN experiments e ON e.experiment_id = r.experiment_id" if has_experiments else "") +
                " ORDER BY r.start_time, r.run_uuid").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise LogFormatError(f"the SQLite database cannot be read ({exc})") from None
    if not rows:
        raise LogFormatError("an MLflow tracking store without runs")
    return Store(tuple(StoreRun(str(uuid), str(name or uuid), _segment(experiment), stage == "deleted")
                       for uuid, name, experiment, stage in rows))


def _segment(experiment: Any) -> str:
    """An experiment's name as a part of run names: Databricks names experiments by workspace path
    (``/Users/me/exp``), which must not make the run's name an absolute path."""
    return str(experiment if experiment is not None else "").strip("/") or "experiment"


def run_names(store: Store) -> dict[str, str]:
    """Each run's name within the store: ``<experiment>/<run name>``, with the start of its id where two runs of
    an experiment share a name (MLflow allows that; the report must not merge them)."""
    taken: dict[tuple[str, str], int] = {}
    for run in store.runs:
        taken[(run.experiment, run.name)] = taken.get((run.experiment, run.name), 0) + 1
    return {run.uuid: f"{run.experiment}/{run.name}" + (f" ({run.uuid[:8]})" if taken[(run.experiment, run.name)] > 1
                                                        else "") for run in store.runs}


def read_run(path: Path, run: StoreRun) -> tuple[RawPoints, list[Note], dict[str, Any]]:
    """Every metric value of one run, in the order they were written, and its params (with the run name as
    ``mlflow.runName``, as the file store keeps it). LogFormatError for a run in MLflow's trash."""
    if run.deleted:
        raise LogFormatError(f"deleted in MLflow (in its trash, until `mlflow gc`): run '{run.name}' ({run.uuid}) "
                             "not read")
    try:
        con = _connect(path)
        try:
            points, notes = _metric_points(con, run.uuid)
            params = {str(k): v for k, v in con.execute("SELECT key, value FROM params WHERE run_uuid = ?",
                                                        (run.uuid,))}
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise LogFormatError(f"the SQLite database cannot be read ({exc})") from None
    params["mlflow.runName"] = run.name
    return points, notes, params


def _metric_points(con: sqlite3.Connection, uuid: str) -> tuple[RawPoints, list[Note]]:
    """The run's metric values in write order, fetched and turned into points in batches (a run of millions of
    values as Python tuples at once would take ~200 bytes each, its key strings as many again)."""
    query = "SELECT key, step, timestamp, value, is_nan FROM metrics WHERE run_uuid = ?"
    try:  # rowid is the order MLflow inserted them: a value logged twice at one step keeps its last write
        cursor = con.execute(query + " ORDER BY rowid", (uuid,))
    except sqlite3.OperationalError:  # a table without rowids (not MLflow's own schema): its stored order
        cursor = con.execute(query, (uuid,))
    parts: list[RawPoints] = []
    bad = 0
    for rows in iter(lambda: cursor.fetchmany(_BATCH_ROWS), []):
        # polars turns a batch of rows into columns in one call; a cell of another type (SQLite does not enforce
        # column types) becomes a null and is counted, never guessed
        points, dropped = _points(_frame(rows))
        parts.append(points)
        bad += dropped
    notes = [Note("dropped", f"{bad} metric row(s) whose key, step or value was not of MLflow's type were not "
                  "used", count=bad)] if bad else []
    return RawPoints.concat(parts), notes


def _frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """A batch of rows as columns; a cell of another type than MLflow's (SQLite does not enforce column types: a
    text value, a blob, a step past int64) becomes a null, counted by `_points`, never guessed."""
    try:
        return pl.DataFrame(rows, schema=_SCHEMA, orient="row", strict=False)
    except (pl.exceptions.PolarsError, OverflowError, TypeError, ValueError):  # polars refuses such a cell
        return pl.DataFrame([tuple(_cell(v, t) for v, t in zip(row, _SCHEMA.values())) for row in rows],
                            schema=_SCHEMA, orient="row")


def _cell(value: Any, dtype: Any) -> Any:
    if dtype == pl.String:
        return value if isinstance(value, str) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if dtype == pl.Float64:
        return float(value)
    whole = isinstance(value, int) or (math.isfinite(value) and value == int(value))
    return int(value) if whole and STEP_MIN <= value < STEP_MAX else None


def _points(frame: pl.DataFrame) -> tuple[RawPoints, int]:
    """One batch's points, and how many of its rows were not usable."""
    usable = frame.select(pl.col("key").is_not_null() & pl.col("step").is_not_null() & pl.col("value").is_not_null()
                          ).to_series()
    bad = frame.height - int(usable.sum())
    if bad:
        frame = frame.filter(usable)
    keys = frame.get_column("key")
    tags = keys.unique(maintain_order=True)
    codes = keys.replace_strict(tags, pl.int_range(tags.len(), eager=True), return_dtype=pl.Int32).to_numpy()
    values = frame.get_column("value").to_numpy().copy()
    values[frame.get_column("is_nan").fill_null(0).to_numpy() != 0] = np.nan
    values[values == _DOUBLE_MAX] = np.inf
    values[values == -_DOUBLE_MAX] = -np.inf
    walls = frame.get_column("timestamp").cast(pl.Float64).to_numpy() / 1000.0
    points = RawPoints(tuple(tags.to_list()), codes.astype(np.int32), frame.get_column("step").to_numpy(), walls,
                       values)
    return points, bad
