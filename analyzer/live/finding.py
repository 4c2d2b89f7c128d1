"""What changed in a run's judgement since the last look, as one printable line and a hand-over.

Shared by `steadytrain watch` (a run's logs grew) and the in-process Monitor (the history grew):
both judge with `diagnose_run` and compare the new Diagnosis with the previous one. A change is
a new verdict, or a warn/fail finding of a kind (or a count of a kind) the last judgement did
not have. A finding whose start moves by a few steps as the curve grows is the same finding.

`LiveFinding` hands over to `steadytrain probe`: its probe spec is the one `steadytrain report`
would write for the run. That needs `probes.spec`, imported only inside those methods (probes is
torch-free at import; `import analyzer` and `import analyzer.live` never load it).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

from analyzer.types import Diagnosis, Finding, Recommendation, Severity, Verdict

if TYPE_CHECKING:
    from probes.spec import ProbeSpec

FailOn = Literal["early", "mid", "divergence"]
#: The verdicts at or above each --fail-on / stop_on level (the same ladder as `inspect --fail-on`).
AT_OR_ABOVE: Mapping[FailOn, tuple[Verdict, ...]] = {
    "early": ("early_instability", "mid_instability", "divergence"),
    "mid": ("mid_instability", "divergence"),
    "divergence": ("divergence",),
}
UNSTABLE: tuple[Verdict, ...] = ("early_instability", "mid_instability", "divergence")
_BADGE = {"divergence": "DIVERGED", "mid_instability": "MID-UNSTABLE", "early_instability": "EARLY-UNSTABLE",
          "stable": "stable", "insufficient_data": "no-data"}
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def clean(text: object) -> str:
    """Run names come from untrusted paths: control characters shown as escapes, never sent to a terminal."""
    return str(text).translate(_CONTROLS)


def at_or_above(verdict: Verdict, level: FailOn | None) -> bool:
    return level is not None and verdict in AT_OR_ABOVE[level]


def _notable(d: Diagnosis) -> Counter[tuple[str, str]]:
    return Counter((f.kind, f.verdict) for f in d.findings if f.severity >= Severity.WARN)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if math.isfinite(x) else str(x)
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return str(x)


def fix_text(recs: tuple[Recommendation, ...]) -> str:
    """The first real fix (the playbook's order) in a few words; a log_metric hint only when alone."""
    real = [r for r in recs if r.kind != "log_metric"] or list(recs)
    if not real:
        return ""
    r = min(real, key=lambda rec: rec.priority)
    p = r.params
    if r.kind == "warmup":
        lr = p.get("lr")
        return f"warmup {_fmt(p.get('warmup_steps'))} steps" + (f" at lr {_fmt(lr)}" if lr else "")
    if r.kind == "clip":
        if p.get("clipping_insufficient"):
            return f"clip at {_fmt(p.get('max_norm'))} will not be enough: lower the LR"
        return f"clip grad norm at {_fmt(p.get('max_norm'))} (p{_fmt(p.get('percentile'))})"
    if r.kind == "lower_lr":
        return f"lower the LR {_fmt(p.get('current_lr'))} -> {_fmt(p.get('suggested_lr'))}"
    if r.kind == "optimizer":
        return f"try {p.get('try')} instead of {p.get('current')}"
    if r.kind == "log_metric":
        return f"log {p.get('metric')}"
    return r.rationale.split(". ")[0]


@dataclass(frozen=True)
class LiveFinding:
    """A run's judgement changed: its new verdict or a new finding, with everything to act on it.

    Attributes:
        run_id: the run (a watched run's id, or the Monitor's run_id).
        step: the last step judged (the finding was detected with the history up to here).
        verdict: the run's verdict now.
        previous: its verdict at the last judgement (None: first judgement).
        new: the warn/fail findings that are new since then (the headline when the verdict alone changed).
        diagnosis: the whole judgement: every finding, the recommendations, the run's history.
    """

    run_id: str
    step: int
    verdict: Verdict
    previous: Verdict | None
    new: tuple[Finding, ...]
    diagnosis: Diagnosis

    @property
    def recommendations(self) -> tuple[Recommendation, ...]:
        return self.diagnosis.recommendations

    @property
    def unstable(self) -> bool:
        return self.verdict in UNSTABLE

    @property
    def first_unstable_step(self) -> int | None:
        """Where the earliest early/mid/divergence finding (warn or fail) begins."""
        starts = [f.start_step for f in self.diagnosis.findings if f.verdict in UNSTABLE and f.severity >= Severity.WARN]
        return min(starts) if starts else None

    @property
    def last_good_step(self) -> int | None:
        """The last logged train-loss step before the instability began: where to restart from (PaLM:
        restart from a checkpoint before the spike and skip the batches seen during it)."""
        first = self.first_unstable_step
        if first is None:
            return None
        loss = self.diagnosis.run.role_series("train_loss")
        if loss is None:
            return first - 1 if first > 0 else None
        before = loss.steps[loss.steps < first]
        return int(before[-1]) if before.size else None

    def fix(self) -> str:
        return fix_text(self.recommendations)

    def line(self) -> str:
        """One line: the run, what it is now (and was), where, the evidence, the fix."""
        changed = self.previous != self.verdict
        was = f" (was {_BADGE[self.previous]})" if self.previous is not None and changed else ""
        if changed:  # the finding that makes the verdict, else the first new one
            head = next((f for f in self.diagnosis.findings if f.verdict == self.verdict and f.severity >= Severity.WARN),
                        self.new[0] if self.new else self.diagnosis.headline)
        else:
            head = self.new[0] if self.new else None
        text = f"{self.run_id}: {_BADGE[self.verdict]}{was}" + ("" if changed else ", new finding")
        if head is not None:
            end = f"-{head.end_step:,}" if head.end_step is not None and head.end_step != head.start_step else ""
            text += f" at step {head.start_step:,}{end} [judged to step {self.step:,}]: {head.kind}: "
            text += " ".join(head.message.split())
        else:
            text += f" [judged to step {self.step:,}]"
        others = len(self.new) - (1 if head in self.new else 0)
        if others > 0:
            text += f" (+{others} more new finding(s))"
        fix = self.fix() if self.unstable else ""
        return clean(text + (f" | fix: {fix}" if fix else ""))

    def restart_plan(self) -> dict[str, Any]:
        """The PaLM recipe as data: restart from a checkpoint at or before ``last_good_step`` and skip the
        batches of the steps after it up to where the instability was detected."""
        good = self.last_good_step
        return {
            "run": self.run_id, "verdict": self.verdict, "detected_at_step": self.step,
            "first_unstable_step": self.first_unstable_step, "last_good_step": good,
            "skip_batches_of_steps": [good + 1, self.step] if good is not None else None,
            "findings": [{"kind": f.kind, "severity": f.severity.label, "start_step": f.start_step,
                          "end_step": f.end_step, "message": f.message} for f in self.diagnosis.findings
                         if f.severity >= Severity.WARN],
            "recommendations": [{"kind": r.kind, "params": _json_safe(r.params), "rationale": r.rationale}
                                for r in self.recommendations],
        }

    def write_restart_plan(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.restart_plan(), indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
        return out

    def probe_spec(self) -> ProbeSpec | None:
        """The probe `steadytrain report` would write for this run (None for a stable run)."""
        from probes.from_report import spec_for

        return spec_for(self.diagnosis)

    def probe_spec_yaml(self) -> str | None:
        """The probe spec as the YAML `steadytrain probe` reads."""
        import tempfile

        from probes.spec import dump_spec

        spec = self.probe_spec()
        if spec is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            return dump_spec(spec, Path(tmp) / "spec.yaml").read_text(encoding="utf-8")

    def write_probe_spec(self, path: str | Path) -> Path | None:
        """Write the probe spec (``steadytrain probe PATH`` runs it); None when the run is not flagged."""
        from probes.spec import dump_spec

        spec = self.probe_spec()
        return dump_spec(spec, path) if spec is not None else None


def _json_safe(params: Mapping[str, Any]) -> dict[str, Any]:
    def safe(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, (list, tuple)):
            return [safe(x) for x in v]
        if isinstance(v, Mapping):
            return {str(k): safe(x) for k, x in v.items()}
        return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)
    return {str(k): safe(v) for k, v in params.items()}


def compare(previous: Diagnosis | None, current: Diagnosis, step: int, run_id: str | None = None) -> LiveFinding | None:
    """The change from ``previous`` to ``current``, or None when nothing worth a line changed.

    Quiet: a first judgement that finds a run stable or not judgeable yet, a move between those two,
    a finding that went away without the verdict changing (it was not worth a line when it came
    either way: the verdict says it)."""
    rid = run_id if run_id is not None else current.run.id
    quiet = ("stable", "insufficient_data")
    if previous is None:
        if current.verdict in quiet and not _notable(current):
            return None
        return LiveFinding(rid, step, current.verdict, None,
                           tuple(f for f in current.findings if f.severity >= Severity.WARN), current)
    before, now = _notable(previous), _notable(current)
    grown = now - before
    new = []
    budget = dict(grown)
    # A kind that grew from 1 to 2 findings: the later-starting one is the new one.
    for f in sorted(current.findings, key=lambda f: -f.start_step):
        key = (f.kind, f.verdict)
        if f.severity >= Severity.WARN and budget.get(key, 0) > 0:
            new.append(f)
            budget[key] -= 1
    new.sort(key=lambda f: (-int(f.severity), f.start_step))
    verdict_changed = current.verdict != previous.verdict and not (current.verdict in quiet and previous.verdict in quiet)
    if not new and not verdict_changed:
        return None
    return LiveFinding(rid, step, current.verdict, previous.verdict, tuple(new), current)
