"""DVCLive folders (``dvclive/`` by default): a tab-separated history file per metric.

``Live.log_metric("train/loss", v)`` appends a row to ``<dir>/plots/metrics/train/loss.tsv`` (header
``timestamp	step	loss``, the timestamp in milliseconds; without it when the metric is logged with
``timestamp=False`` in newer releases); the metric's name is its path under ``plots/metrics``.
``metrics.json`` holds the latest values only (a summary, not read as points) and ``params.yaml`` the
parameters ``Live.log_param`` wrote (read as hparams).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.hparams import read_side_file
from analyzer.ingest.tabular import frame_to_points
from analyzer.types import Note

_METRICS = Path("plots") / "metrics"
#: What DVCLive writes in its folder (the rest of a folder it shares with a trainer is the trainer's).
_OWN = frozenset({"plots", "metrics.json", "params.yaml", "dvc.yaml", "report.html", "report.md", "artifacts"})


def _history_header(path: Path) -> list[str] | None:
    """The columns of a DVCLive history's header (``[timestamp,] step, <name>``), None when it is none."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(4096).decode("utf-8", errors="replace").rstrip("\r\n").split("\t")
    except OSError:
        return None
    return first if 2 <= len(first) <= 3 and first[-2] == "step" and (len(first) == 2 or first[0] == "timestamp") \
        else None


def is_run_dir(path: Path) -> bool:
    """A folder with plots/metrics/ holding a DVCLive history (the summary and params are written later, and a
    run that crashed early has none)."""
    metrics = path / _METRICS
    if not metrics.is_dir():
        return False
    return any(_history_header(tsv) is not None for tsv in metrics.rglob("*.tsv"))


def owns(run_dir: Path, path: Path) -> bool:
    """Whether DVCLive wrote ``path`` in its folder ``run_dir``."""
    return path.relative_to(run_dir).parts[0] in _OWN


def is_history(run_dir: Path, path: Path) -> bool:
    """Whether ``path`` is one of the run's metric histories (the rest of the folder is summary, params, plots)."""
    return path.suffix == ".tsv" and (run_dir / _METRICS) in path.parents


def read_metric_file(run_dir: Path, path: Path) -> tuple[RawPoints, list[Note]]:
    """One metric's points, tagged by its name (its path under plots/metrics); the columns are taken by their
    place, ``[timestamp,] step, value`` (a metric may be named ``step``; older releases headed the value column
    with the metric's whole name)."""
    tag = path.relative_to(run_dir / _METRICS).with_suffix("").as_posix()
    header = _history_header(path)
    if header is None:
        raise LogFormatError("a DVCLive history without its '[timestamp,] step, <metric>' header")
    names = ["timestamp", "step", "value"][-len(header):]
    try:
        frame = pl.read_csv(path, separator="\t", has_header=False, skip_rows=1, new_columns=names,
                            infer_schema=False, quote_char=None)
    except pl.exceptions.PolarsError as exc:
        raise LogFormatError(f"a DVCLive history that cannot be read as tab-separated values ({exc})") from None
    step, wall = ("step", "timestamp") if tag not in ("step", "timestamp") else ("step (DVCLive)", "timestamp (DVCLive)")
    columns = [pl.col("step").alias(step), pl.col("value").alias(tag)]
    if "timestamp" in names:  # milliseconds since 1970
        columns.append((pl.col("timestamp").cast(pl.Float64, strict=False) / 1000.0).alias(wall))
    return frame_to_points(frame.select(columns), source=path.name, step_col=step,
                           wall_col=wall if "timestamp" in names else None)


def read_params(run_dir: Path) -> dict[str, Any]:
    """What ``Live.log_param`` wrote (params.yaml), flattened."""
    params = run_dir / "params.yaml"
    return read_side_file(params) if params.is_file() else {}
