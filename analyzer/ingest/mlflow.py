"""MLflow file store runs: mlruns/<experiment>/<run>/metrics/<name> ("timestamp value step" per
line; '/' in a metric name is a sub-directory), params/<name> and tags/mlflow.runName."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from analyzer.frame import RawPoints
from analyzer.ingest.tabular import STEP_MAX, STEP_MIN, step_out_of_range
from analyzer.types import Note

# polars refuses an integer column's cell that is not [+-]digits (the whole file is then read line by line);
# the value's spelling is checked by _NUMBER
_SCHEMA = {"ts": pl.Int64, "value": pl.String, "step": pl.Int64}
_NUMBER = r"^-?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)$"  # str(float) of every value, as MLflow writes it
_NUMBER_BYTES = b"0123456789.-+eEnaif"  # every byte of a number as str(float) spells it
_LINE_BYTES = _NUMBER_BYTES + b" \n"


def is_run_dir(path: Path) -> bool:
    return (path / "metrics").is_dir() and ((path / "meta.yaml").is_file() or (path / "params").is_dir())


def metric_tag(run_dir: Path, path: Path) -> str:
    return path.relative_to(run_dir / "metrics").as_posix()


def read_metric_file(run_dir: Path, path: Path) -> tuple[RawPoints, list[Note]]:
    """One metric's points; LogFormatError when a step does not fit an int64."""
    tag = metric_tag(run_dir, path)
    notes: list[Note] = []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # a cut-off last line could read as a wrong number: drop it, say so
        data = data[: data.rfind(b"\n") + 1]
        notes.append(Note("truncated", f"metrics/{tag}: the last line has no line end (an interrupted write); "
                          "it was not used", count=1))
    columns = _columns(data)
    if columns is None:
        columns, bad = _parse_lines(data.decode("utf-8", errors="replace"))
        if bad:
            notes.append(Note("dropped", f"metrics/{tag}: {bad} malformed line(s) were not used", count=bad))
    return RawPoints.from_columns({tag: columns}), notes


def _parse_lines(text: str) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], int]:
    """(steps, walls, values) line by line, and how many lines were malformed: what any file is read as."""
    steps: list[int] = []
    walls: list[float] = []
    values: list[float] = []
    bad = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            ts, value = float(parts[0]), float(parts[1])
            step = _step(parts[2]) if len(parts) > 2 else len(steps)
        except (ValueError, IndexError, OverflowError):
            bad += 1
            continue
        if not STEP_MIN <= step < STEP_MAX:
            raise step_out_of_range(step, f"line {lineno}")
        steps.append(int(step))
        walls.append(ts / 1000.0)
        values.append(value)
    return (np.asarray(steps, np.int64), np.asarray(walls, np.float64), np.asarray(values, np.float64)), bad


def _step(text: str) -> int | float:
    """A step as MLflow writes it (an int, exact to the last of its 64 bits: through a float the largest steps
    would round, int64's last one out of range) or another spelling of a whole number (``3.0``, ``1e3``)."""
    try:
        return int(text)
    except ValueError:
        step = float(text)
        if not math.isfinite(step):
            raise ValueError(text) from None
        return step


def _columns(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(steps, walls, values) of the lines MLflow writes (``timestamp value step``, or ``timestamp value``
    before steps were logged), read as columns by polars; None where that reading could differ from
    `_parse_lines` (any other character, spacing or number spelling, a blank or malformed line, a step outside
    int64): then the file is read line by line. Python reads a line per microsecond; a run logging every step
    writes millions."""
    if not data:
        return None
    # a byte of no number and no separator (a tab, a CR, a letter): Python's split() would not see the fields
    # polars sees. bytes.translate and count scan at memory speed (a numpy byte table took 4x as long)
    if data[0] not in _NUMBER_BYTES or data.translate(None, _LINE_BYTES):
        return None
    spaces, lines = data.count(b" "), data.count(b"\n")
    # polars takes its columns from the first line: a store from before steps has two, lines with one more
    # after it would lose their step (the count of spaces below sees that)
    schema = _SCHEMA if data[: data.index(b"\n")].count(b" ") == 2 else {"ts": pl.Int64, "value": pl.String}
    try:
        frame = pl.read_csv(data, has_header=False, separator=" ", schema=schema, quote_char=None,
                            truncate_ragged_lines=True)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, ValueError):
        return None
    # every line holds the first line's fields, all of them: no null anywhere (a short line's missing fields, the
    # empty field between two spaces or before a leading one, a blank line polars reads as a row), and then the
    # spaces counted are exactly the separators of those fields (a longer line or a trailing space, truncated by
    # polars, leaves one over; a blank line polars skips leaves a newline over); a short line and a long one
    # cannot make up for each other
    if (frame.height != lines or any(frame.null_count().row(0)) or spaces != (len(schema) - 1) * frame.height
            or not bool(frame.get_column("value").str.contains(_NUMBER).all())):
        return None
    # polars' Int64 column holds every step that fits a 64-bit counter, exactly (one that does not fails the read
    # above); a line without a step is at the count of lines so far
    steps = (frame.get_column("step").to_numpy() if "step" in frame.columns
             else np.arange(frame.height, dtype=np.int64))
    walls = frame.get_column("ts").cast(pl.Float64).to_numpy() / 1000.0
    return steps, walls, frame.get_column("value").cast(pl.Float64).to_numpy()


def read_params(run_dir: Path) -> dict[str, Any]:
    """params/<name> files and the run name."""
    params: dict[str, Any] = {}
    params_dir = run_dir / "params"
    if params_dir.is_dir():
        for p in sorted(params_dir.rglob("*")):
            if p.is_file():
                params[p.relative_to(params_dir).as_posix()] = p.read_text(encoding="utf-8", errors="replace").strip()
    run_name = run_dir / "tags" / "mlflow.runName"
    if run_name.is_file():
        params["mlflow.runName"] = run_name.read_text(encoding="utf-8", errors="replace").strip()
    return params


def read_mlflow_run(run_dir: Path, metric_files: list[Path]) -> tuple[RawPoints, list[Note], dict[str, Any]]:
    """Every metric of a run (the loader reads file by file, so that one bad file skips only itself)."""
    parts: list[RawPoints] = []
    notes: list[Note] = []
    for path in metric_files:
        pts, more = read_metric_file(run_dir, path)
        parts.append(pts)
        notes += more
    return RawPoints.concat(parts), notes, read_params(run_dir)
