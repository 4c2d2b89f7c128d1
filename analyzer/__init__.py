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
    """All runs' points as one pandas DataFrame (run, tag, step, wall_time, value)."""
    import polars as pl

    frames = [r.points.with_columns(pl.lit(r.id).alias("run"), pl.col("tag").cast(pl.String)) for r in runs]
    if not frames:
        return pl.DataFrame(schema={"run": pl.String, "tag": pl.String, "step": pl.Int64,
                                    "wall_time": pl.Float64, "value": pl.Float64}).to_pandas()
    return pl.concat(frames).select(["run", "tag", "step", "wall_time", "value"]).to_pandas()


__all__ = [
    "AnalysisConfig", "ConfigError", "Diagnosis", "Finding", "InputError", "InputFile", "LoadOptions",
    "LogFormatError", "Note", "Recommendation", "Report", "Roles", "Run", "Series", "Severity", "SteadytrainError",
    "SweepDiagnosis", "analyze", "diagnose", "diagnose_run", "load_runs", "to_pandas",
]
