"""What a probe found, as data: each trial with the analyzer's verdict, and the whole probe's conclusion
(shared by the runner, which makes it, and the report, which renders it; torch-free)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from probes.mechanism import Attribution
from probes.spec import ProbeSpec
from probes.verdict import Replay


@dataclass(frozen=True)
class TrialOutcome:
    """A trial's result joined with the analyzer's verdict on its logs.

    Attributes:
        result: the runner's TrialResult. verdict: the analyzer's (divergence when the trial stopped on NaN/runaway).
        max_spike_ratio: the largest height of its findings, x the level they departed from.
        findings: the kinds of its findings. unstable_at / peak_at: where its first early/mid/divergence finding
            (warn or fail) began and peaked.
    """

    result: Any  # probes.runner.TrialResult
    verdict: str
    max_spike_ratio: float | None
    findings: tuple[str, ...]
    unstable_at: int | None = None
    peak_at: int | None = None


@dataclass(frozen=True)
class ProbeOutcome:
    """The probe: its spec, trials, conclusion, the smallest fix, and for the run's own model the replay's
    findings, the per-block attribution and what was rebuilt from what."""

    spec: ProbeSpec
    trials: tuple[TrialOutcome, ...]
    conclusion: str
    smallest_fix: str | None
    out_dir: str
    report_html: str
    report_json: str
    summary: str
    replay: Replay | None = None
    attribution: Attribution | None = None
    used: tuple[str, ...] = ()


def outcome_dict(o: ProbeOutcome) -> dict[str, Any]:
    return {"spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(o.spec).items()},
            "conclusion": o.conclusion, "smallest_fix": o.smallest_fix, "used": list(o.used),
            "replay": asdict(o.replay) if o.replay is not None else None,
            "attribution": asdict(o.attribution) if o.attribution is not None else None,
            "trials": [{**asdict(t.result), "verdict": t.verdict, "max_spike_ratio": t.max_spike_ratio,
                        "unstable_at": t.unstable_at, "peak_at": t.peak_at, "findings": list(t.findings)}
                       for t in o.trials]}


def dumps(obj: Any) -> str:
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x
    return json.dumps(clean(obj), indent=2)
