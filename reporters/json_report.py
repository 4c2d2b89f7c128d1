"""Report -> the stable JSON contract (schema_version 1, spec/design.md). NaN/inf -> null."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from analyzer.display import shown
from analyzer.errors import context
from analyzer.outputs import write_atomic
from analyzer.types import Diagnosis, Report, SweepDiagnosis

T = TypeVar("T")


def _safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {shown(k): _safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_safe(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        return _safe(x.tolist())
    if isinstance(x, str):
        return shown(x)  # URL credentials redacted, undecodable bytes of names as escapes
    if x is None or isinstance(x, (int, bool)):
        return x
    return shown(x)


def run_dict(d: Diagnosis) -> dict[str, Any]:
    return {
        "id": d.run.id,
        "format": d.run.format,
        "verdict": d.verdict,
        "roles": d.run.roles.as_dict(),
        "findings": [{"kind": f.kind, "severity": f.severity.label, "start_step": f.start_step,
                      "end_step": f.end_step, "verdict": f.verdict, "message": f.message, "evidence": f.evidence.as_dict()}
                     for f in d.findings],
        "recommendations": [{"kind": r.kind, "params": r.params.as_dict(), "rationale": r.rationale,
                             "snippets": dict(r.snippets)} for r in d.recommendations],
        "notes": [{"kind": n.kind, "message": n.message, "count": n.count, "step": n.step} for n in d.run.notes],
        "hparams": dict(d.run.hparams),
        "sources": list(d.run.sources),
        "stats": dict(d.stats),
        "check_failures": [{"check": c.check, "error": c.error_type, "message": c.message} for c in d.failures],
    }


def sweep_dict(s: SweepDiagnosis) -> dict[str, Any]:
    return {"runs": list(s.runs), "lrs": list(s.lrs), "scores": list(s.scores), "metric": s.metric,
            "best_run": s.best_run, "best_lr": s.best_lr, "infeasible": list(s.infeasible),
            "unstable": list(s.unstable), "edge_of_instability": s.edge_of_instability, "message": s.message,
            "evidence": s.evidence}


def _labelled(fn: Callable[[T], dict[str, Any]], item: T, where: str) -> dict[str, Any]:
    with context(where):
        return fn(item)


def report_dict(report: Report) -> dict[str, Any]:
    return _safe({
        "schema_version": report.schema_version,
        "tool": {"name": "steadytrain", "version": report.version},
        "created": report.created,
        "roots": list(report.roots),
        "config": dict(report.config),
        "inputs": [{"path": i.path, "status": i.status, "reason": i.reason, "run": i.run} for i in report.inputs],
        "runs": [_labelled(run_dict, d, f"writing run {d.run.id!r} to the JSON report") for d in report.diagnoses],
        "sweeps": [sweep_dict(s) for s in report.sweeps],
        "unjudged": [{"run": d.run.id, "reason": _why_unjudged(d)} for d in report.unjudged()],
    })


def _why_unjudged(d: Diagnosis) -> str:
    return next((f.message for f in d.findings if f.verdict == "insufficient_data"), "no verdict could be reached")


def json_text(report: Report) -> str:
    """The JSON report as text (what `write_json` writes; ``--json -`` prints it)."""
    return json.dumps(report_dict(report), indent=2, allow_nan=False) + "\n"


def write_json(report: Report, path: str | Path) -> Path:
    """Write the JSON report atomically: rendered whole first, so a failure leaves the previous file intact."""
    return write_atomic(path, json_text(report))
