"""The analysis engine every executor runs: judge one run (`diagnose_run`) and assemble a `Report` from judged
runs (`make_report`). The local path (analyzer.pipeline), the Ray tasks (analyzer.distributed) and the watcher
(analyzer.live.watch) import this module; it imports none of them.
"""

from __future__ import annotations

import datetime as _dt
from importlib import metadata
from typing import Mapping, Sequence

import numpy as np

from analyzer.config import AnalysisConfig
from analyzer.detect.checks import run_checks
from analyzer.detect.context import RunContext, measure_run
from analyzer.display import shown
from analyzer.recommend.rules import recommend
from analyzer.sweep import SweepFacts, find_sweeps
from analyzer.types import CheckFailure, Diagnosis, Finding, InputFile, Report, Run, Severity, SweepDiagnosis, Verdict
from analyzer.verdicts import most_severe


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


def version() -> str:
    try:
        return metadata.version("steadytrain")
    except metadata.PackageNotFoundError:
        return "0+unknown"



def make_report(roots: Sequence[str], inputs: Sequence[InputFile], diagnoses: Sequence[Diagnosis],
                facts: Mapping[str, RunContext | SweepFacts], cfg: AnalysisConfig, *,
                sweeps: Sequence[SweepDiagnosis] | None = None) -> Report:
    """The report of judged runs: the LR sweeps among them found from ``facts`` (each run's context or the facts
    a Ray task or the watcher kept of it) unless ``sweeps`` were found already, inputs in path order, the settings
    used, when and by which version."""
    if sweeps is None:
        sweeps = find_sweeps(list(diagnoses), facts, cfg)
    return Report(roots=tuple(shown(r) for r in roots), inputs=tuple(sorted(inputs, key=lambda i: i.path)),
                  diagnoses=tuple(diagnoses), sweeps=tuple(sweeps), config=cfg.as_dict(),
                  created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), version=version())
