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


def is_run_dir(path: Path) -> bool:
    return (path / _METRICS).is_dir() and any((path / name).is_file() for name in
                                               ("metrics.json", "params.yaml", "dvc.yaml", "report.html", "report.md"))


def is_history(run_dir: Path, path: Path) -> bool:
    """Whether ``path`` is one of the run's metric histories (the rest of the folder is summary, params, plots)."""
    return path.suffix == ".tsv" and (run_dir / _METRICS) in path.parents


def read_metric_file(run_dir: Path, path: Path) -> tuple[RawPoints, list[Note]]:
    """One metric's points, tagged by its name (its path under plots/metrics)."""
    tag = path.relative_to(run_dir / _METRICS).with_suffix("").as_posix()
    try:
        frame = pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None)
    except pl.exceptions.PolarsError as exc:
        raise LogFormatError(f"a DVCLive history that cannot be read as tab-separated values ({exc})") from None
    value = path.stem if path.stem in frame.columns else None
    if "step" not in frame.columns or value is None:
        raise LogFormatError(f"a DVCLive history without its 'step' and '{path.stem}' columns "
                             f"(header: {', '.join(frame.columns[:6])})")
    columns = [pl.col("step"), pl.col(value).alias(tag)]
    if "timestamp" in frame.columns:  # milliseconds since 1970
        columns.append((pl.col("timestamp").cast(pl.Float64, strict=False) / 1000.0).alias("wall_time"))
    points, notes = frame_to_points(frame.select(columns), source=path.name, step_col="step",
                                    wall_col="wall_time" if "timestamp" in frame.columns else None)
    return points, notes


def read_params(run_dir: Path) -> dict[str, Any]:
    """What ``Live.log_param`` wrote (params.yaml), flattened."""
    params = run_dir / "params.yaml"
    return read_side_file(params) if params.is_file() else {}
