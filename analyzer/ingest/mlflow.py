"""MLflow file store runs: mlruns/<experiment>/<run>/metrics/<name> ("timestamp value step" per
line; '/' in a metric name is a sub-directory), params/<name> and tags/mlflow.runName."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.frame import RawPoints
from analyzer.ingest.tabular import STEP_MAX, STEP_MIN, step_out_of_range
from analyzer.types import Note


def is_run_dir(path: Path) -> bool:
    return (path / "metrics").is_dir() and ((path / "meta.yaml").is_file() or (path / "params").is_dir())


def metric_tag(run_dir: Path, path: Path) -> str:
    return path.relative_to(run_dir / "metrics").as_posix()


def read_metric_file(run_dir: Path, path: Path) -> tuple[RawPoints, list[Note]]:
    """One metric's points; LogFormatError when a step does not fit an int64."""
    tag = metric_tag(run_dir, path)
    steps: list[int] = []
    walls: list[float] = []
    values: list[float] = []
    bad = 0
    notes: list[Note] = []
    text = path.read_bytes().decode("utf-8", errors="replace")
    if text and not text.endswith("\n"):  # a cut-off last line could read as a wrong number: drop it, say so
        text = text[: text.rfind("\n") + 1]
        notes.append(Note("truncated", f"metrics/{tag}: the last line has no line end (an interrupted write); "
                          "it was not used", count=1))
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            ts, value = float(parts[0]), float(parts[1])
            step_f = float(parts[2]) if len(parts) > 2 else float(len(steps))
        except (ValueError, IndexError):
            bad += 1
            continue
        if not math.isfinite(step_f):
            bad += 1
            continue
        if not STEP_MIN <= step_f < STEP_MAX:
            raise step_out_of_range(step_f, f"line {lineno}")
        steps.append(int(step_f))
        walls.append(ts / 1000.0)
        values.append(value)
    if bad:
        notes.append(Note("dropped", f"metrics/{tag}: {bad} malformed line(s) were not used", count=bad))
    return RawPoints.from_columns({tag: (np.asarray(steps, np.int64), np.asarray(walls, np.float64),
                                         np.asarray(values, np.float64))}), notes


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
