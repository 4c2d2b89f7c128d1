"""files -> runs -> findings -> recommendations -> Report. The one entry the CLI and API call: the local executor
(read here, judge with analyzer.engine), or the Ray one (analyzer.distributed, which runs the same engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Collection, Literal, Sequence

from analyzer.config import AnalysisConfig
from analyzer.detect.context import RunContext
from analyzer.engine import diagnose_run, make_report, verdict_of  # noqa: F401 - verdict_of: re-exported
from analyzer.errors import ConfigError
from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.types import Diagnosis, Report, SweepDiagnosis

#: Where runs are read and judged: in this process (its reading may use local worker processes), or as Ray tasks.
Executor = Literal["local", "ray"]


def analyze(paths: Sequence[str | Path] | str | Path, *, config: AnalysisConfig | None = None,
            load_options: LoadOptions | None = None, progress: bool = False, executor: Executor = "local",
            address: str | None = None,
            figure_runs: Callable[[Sequence[Diagnosis], Sequence[SweepDiagnosis]], Collection[str]] | None = None
            ) -> Report:
    """Read every run under ``paths`` and judge each, plus the LR sweeps among them.

    ``paths`` may name object stores (``s3://bucket/runs``; analyzer.ingest.remote). ``executor="ray"`` reads
    and judges the runs as Ray tasks (on the cluster at ``address``, else a local instance) and keeps only
    what the report needs of each run (analyzer.distributed); ``figure_runs`` names the runs whose role series
    must come back whole (those the HTML report draws in full).

    Examples
    --------
    >>> import analyzer
    >>> report = analyzer.analyze("sample_logs")          # doctest: +SKIP
    >>> [(d.run.id, d.verdict) for d in report.diagnoses]  # doctest: +SKIP
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    cfg = config or AnalysisConfig()
    opts = load_options or LoadOptions(progress=progress)
    if executor not in ("local", "ray"):
        raise ConfigError(f"executor {executor!r}: expected one of (local, ray)")
    if executor == "ray":
        from analyzer.distributed import analyze_on_ray

        return analyze_on_ray(list(paths), config=cfg, load_options=opts, address=address, figure_runs=figure_runs)
    runs, inputs = load_runs(paths, opts)
    diagnoses: list[Diagnosis] = []
    contexts: dict[str, RunContext] = {}
    stream = runs
    if progress and len(runs) > 20:
        from tqdm import tqdm
        stream = tqdm(runs, desc="diagnosing", unit="run", leave=False)
    for run in stream:
        d, ctx = diagnose_run(run, cfg)
        diagnoses.append(d)
        if ctx is not None:
            contexts[run.id] = ctx
    return make_report([str(p) for p in paths], inputs, diagnoses, contexts, cfg)


def diagnose(path: str | Path, **kwargs: object) -> Report:
    """Notebook API: ``analyzer.diagnose('runs/')`` -> Report (``.diagnoses``, ``.sweeps``)."""
    return analyze(path, **kwargs)  # type: ignore[arg-type]
