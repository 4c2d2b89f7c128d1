"""steadytrain's analyzer: read training logs, judge their stability, recommend fixes.

No rendering and no torch here: `import analyzer` stays light (a test checks it).

Examples
--------
>>> import analyzer
>>> report = analyzer.diagnose("sample_logs")                 # doctest: +SKIP
>>> {d.run.id: d.verdict for d in report.diagnoses}           # doctest: +SKIP
"""

from typing import Any

from analyzer.config import AnalysisConfig
from analyzer.errors import ConfigError, InputError, LogFormatError, SteadytrainError
from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.pipeline import analyze, diagnose, diagnose_run
from analyzer.types import (
    Diagnosis,
    Finding,
    InputFile,
    Note,
    Recommendation,
    Report,
    Roles,
    Run,
    Series,
    Severity,
    SweepDiagnosis,
)


def to_pandas(runs: list[Run]) -> Any:
    """All runs' points as one pandas DataFrame (run, tag, step, wall_time, value).

    ``run`` and ``tag`` are pandas Categoricals (a long frame repeats them on every row); ``step`` is
    int64, ``wall_time`` and ``value`` float64 (NaN/inf kept: they are the divergence signal).
    Built from numpy columns: polars' own ``to_pandas`` needs pyarrow, which is not a dependency.
    """
    import numpy as np
    import pandas as pd
    import polars as pl

    run_table: dict[str, int] = {}
    tag_table: dict[str, int] = {}
    run_codes, tag_codes, steps, walls, values = [], [], [], [], []
    for run in runs:
        points = run.points
        tag = points.get_column("tag")
        if isinstance(tag.dtype, pl.Enum):
            # Physical codes index the Enum's categories: re-code them into the table shared by all runs.
            names, local = tag.dtype.categories.to_list(), tag.to_physical().to_numpy()
        else:
            names = tag.unique(maintain_order=True).cast(pl.String).to_list()
            local = tag.cast(pl.String).replace_strict(names, range(len(names)), return_dtype=pl.Int64)
            local = local.to_numpy()
        remap = np.array([tag_table.setdefault(name, len(tag_table)) for name in names], dtype=np.int64)
        tag_codes.append(remap[local.astype(np.int64, copy=False)] if remap.size else local.astype(np.int64))
        run_codes.append(np.full(points.height, run_table.setdefault(run.id, len(run_table)), dtype=np.int64))
        steps.append(points.get_column("step").to_numpy())
        walls.append(points.get_column("wall_time").to_numpy())
        values.append(points.get_column("value").to_numpy())

    def column(parts: list[Any], dtype: type) -> Any:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

    return pd.DataFrame({
        "run": pd.Categorical.from_codes(column(run_codes, np.int64), categories=list(run_table)),
        "tag": pd.Categorical.from_codes(column(tag_codes, np.int64), categories=list(tag_table)),
        "step": column(steps, np.int64),
        "wall_time": column(walls, np.float64),
        "value": column(values, np.float64),
    })


__all__ = [
    "AnalysisConfig", "ConfigError", "Diagnosis", "Finding", "InputError", "InputFile", "LoadOptions",
    "LogFormatError", "Note", "Recommendation", "Report", "Roles", "Run", "Series", "Severity", "SteadytrainError",
    "SweepDiagnosis", "analyze", "diagnose", "diagnose_run", "load_runs", "to_pandas",
]
