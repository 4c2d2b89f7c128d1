"""MLflow file store runs: mlruns/<experiment>/<run>/metrics/<name> ("timestamp value step" per
line; '/' in a metric name is a sub-directory), params/<name> and tags/mlflow.runName."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from analyzer.frame import RawPoints
from analyzer.types import Note


def is_run_dir(path: Path) -> bool:
    return (path / "metrics").is_dir() and ((path / "meta.yaml").is_file() or (path / "params").is_dir())


def read_mlflow_run(run_dir: Path, metric_files: list[Path]) -> tuple[RawPoints, list[Note], dict[str, Any]]:
    columns: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    notes: list[Note] = []
    metrics_dir = run_dir / "metrics"
    for path in metric_files:
        tag = path.relative_to(metrics_dir).as_posix()
        steps, walls, values = [], [], []
        bad = 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if not parts:
                continue
            try:
                ts, value = float(parts[0]), float(parts[1])
                step = int(float(parts[2])) if len(parts) > 2 else len(steps)
            except (ValueError, IndexError):
                bad += 1
                continue
            steps.append(step)
            walls.append(ts / 1000.0)
            values.append(value)
        if bad:
            notes.append(Note("dropped", f"metrics/{tag}: {bad} malformed line(s) were not used", count=bad))
        columns[tag] = (np.asarray(steps), np.asarray(walls), np.asarray(values))
    params: dict[str, Any] = {}
    params_dir = run_dir / "params"
    if params_dir.is_dir():
        for p in sorted(params_dir.rglob("*")):
            if p.is_file():
                params[p.relative_to(params_dir).as_posix()] = p.read_text(encoding="utf-8", errors="replace").strip()
    run_name = run_dir / "tags" / "mlflow.runName"
    if run_name.is_file():
        params["mlflow.runName"] = run_name.read_text(encoding="utf-8", errors="replace").strip()
    return RawPoints.from_columns(columns), notes, params
