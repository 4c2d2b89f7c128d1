"""files -> runs -> findings -> recommendations -> Report. The one entry the CLI and API call."""

from __future__ import annotations

import datetime as _dt
from importlib import metadata
from pathlib import Path
from typing import Callable, Collection, Literal, Sequence

import numpy as np

from analyzer.config import AnalysisConfig
from analyzer.detect.checks import run_checks
from analyzer.detect.context import RunContext, measure_run
from analyzer.display import shown
from analyzer.errors import ConfigError
from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.recommend.rules import recommend
from analyzer.sweep import find_sweeps
from analyzer.types import (
    CheckFailure,
    Diagnosis,
    Finding,
    Report,
    Run,
    Severity,
    SweepDiagnosis,
    Verdict,
)
from analyzer.verdicts import most_severe

#: Where runs are read and judged: in this process (its reading may use local worker processes), or as Ray tasks.
Executor = Literal["local", "ray"]


def verdict_of(findings: Sequence[Finding]) -> Verdict:
    """The most severe verdict any warn/fail finding supports (divergence > mid > early > stable)."""
    if any(f.verdict == "insufficient_data" for f in findings):
        return "insufficient_data"
    judged = [f.verdict for f in findings if f.severity >= Severity.WARN and f.verdict != "insufficient_data"]
    return most_severe(judged)


def diagnose_run(run: Run, cfg: AnalysisConfig) -> tuple[Diagnosis, RunContext | None]:
    """Measure, judge and recommend for one run. A failure in measuring or recommending becomes this
    run's CheckFailure (and an insufficient_data verdict that says so), never a crash of the others."""
    # Values near +-1e308 overflow to inf inside the measurements; the checks are written for inf (it
    # compares as it should), so numpy's warnings would only print noise under the user's report.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _diagnose_run(run, cfg)


def _diagnose_run(run: Run, cfg: AnalysisConfig) -> tuple[Diagnosis, RunContext | None]:
    try:
        ctx = measure_run(run, cfg)
    except Exception as exc:  # noqa: BLE001 - one run's measurement must not stop the others
        return _failed(run, "measure", exc), None
    findings, failures = run_checks(ctx)
    findings.sort(key=lambda f: (-int(f.severity), f.start_step))
    try:
        judged = not any(f.verdict == "insufficient_data" for f in findings)
        recs = recommend(ctx, findings) if judged else [r for r in recommend(ctx, []) if r.kind == "log_metric"]
    except Exception as exc:  # noqa: BLE001 - a recommendation failure leaves the verdict standing
        recs = []
        failures.append(CheckFailure("recommend", run.id, type(exc).__name__, str(exc)))
    stats = {"points": run.n_points, "judged_points": len(ctx.curve) if ctx.curve is not None else 0,
             "judged_signal": ctx.signal, "step_range": list(run.step_range() or ()), "early_end_step": ctx.early_cut}
    return Diagnosis(run, verdict_of(findings), tuple(findings), tuple(recs), tuple(failures), stats), ctx


def _failed(run: Run, stage: str, exc: Exception) -> Diagnosis:
    failure = CheckFailure(stage, run.id, type(exc).__name__, str(exc))
    finding = Finding("analysis_failed", Severity.WARN, "insufficient_data", 0, None,
                      f"This run could not be analysed ({stage}: {type(exc).__name__}: {exc}); it has no verdict.")
    return Diagnosis(run, "insufficient_data", (finding,), (), (failure,), {"points": run.n_points})


def _version() -> str:
    try:
        return metadata.version("steadytrain")
    except metadata.PackageNotFoundError:
        return "0+unknown"


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
    sweeps = find_sweeps(diagnoses, contexts, cfg)
    return Report(roots=tuple(shown(p) for p in paths), inputs=tuple(inputs), diagnoses=tuple(diagnoses),
                  sweeps=tuple(sweeps), config=cfg.as_dict(),
                  created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), version=_version())


def diagnose(path: str | Path, **kwargs: object) -> Report:
    """Notebook API: ``analyzer.diagnose('runs/')`` -> Report (``.diagnoses``, ``.sweeps``)."""
    return analyze(path, **kwargs)  # type: ignore[arg-type]
