"""What changed in a run's judgement since the last look, as one printable line and a hand-over.

Shared by `steadytrain watch` (a run's logs grew) and the in-process Monitor (the history grew):
both judge with `diagnose_run` and compare the new Diagnosis with the previous one. A change is
a new verdict, or a warn/fail finding of a kind (or a count of a kind) the last judgement did
not have. A finding whose start moves by a few steps as the curve grows is the same finding.

`LiveFinding` hands over to `steadytrain probe`: its probe spec is the one `steadytrain report`
would write for the run, made by `analyzer.live.probe_handover` (loaded only when a spec is asked for).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from analyzer.recommend.summary import top_fix
from analyzer.recommend.snippets import framework_for
from analyzer.types import Diagnosis, Finding, Recommendation, Severity
from analyzer.verdicts import FAIL_ON_LEVELS, UNSTABLE, VERDICT, FailOn, Verdict, gated, reaches

if TYPE_CHECKING:
    from probes.spec import ProbeSpec

#: The verdicts at or above each --fail-on / stop_on level (the same ladder as `inspect --fail-on`).
AT_OR_ABOVE: Mapping[FailOn, tuple[Verdict, ...]] = {level: gated(level) for level in FAIL_ON_LEVELS}
at_or_above = reaches  # the name the live modules use
log = logging.getLogger(__name__)
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def clean(text: object) -> str:
    """Run names come from untrusted paths: control characters shown as escapes, never sent to a terminal."""
    return str(text).translate(_CONTROLS)


def _notable(d: Diagnosis) -> Counter[tuple[str, str]]:
    return Counter((f.kind, f.verdict) for f in d.findings if f.severity >= Severity.WARN)


def fix_text(recs: tuple[Recommendation, ...]) -> str:
    """The first real fix in a few words, worded as the report's overview words it (analyzer.recommend.summary)."""
    return top_fix(recs)


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
        was = f" (was {VERDICT[self.previous].badge})" if self.previous is not None and changed else ""
        if changed:  # the finding that makes the verdict, else the first new one
            head = next((f for f in self.diagnosis.findings if f.verdict == self.verdict and f.severity >= Severity.WARN),
                        self.new[0] if self.new else self.diagnosis.headline)
        else:
            head = self.new[0] if self.new else None
        text = f"{self.run_id}: {VERDICT[self.verdict].badge}{was}" + ("" if changed else ", new finding")
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

    @property
    def framework(self) -> str:
        """The framework the run trains with ("pytorch", "lightning", "hf_trainer"): its snippets come first."""
        return framework_for(self.diagnosis.run.format)

    def restart_plan(self) -> dict[str, Any]:
        """The PaLM recipe as data: restart from a checkpoint at or before ``last_good_step`` and skip the
        batches of the steps after it up to where the instability was detected. Each recommendation
        carries the snippet for the run's framework."""
        good = self.last_good_step
        framework = self.framework
        return {
            "run": self.run_id, "verdict": self.verdict, "detected_at_step": self.step, "framework": framework,
            "first_unstable_step": self.first_unstable_step, "last_good_step": good,
            "skip_batches_of_steps": [good + 1, self.step] if good is not None else None,
            "findings": [{"kind": f.kind, "severity": f.severity.label, "start_step": f.start_step,
                          "end_step": f.end_step, "message": f.message} for f in self.diagnosis.findings
                         if f.severity >= Severity.WARN],
            "recommendations": [{"kind": r.kind, "params": _json_safe(r.params.as_dict()), "rationale": r.rationale,
                                 "snippet": r.snippets.get(framework)} for r in self.recommendations],
        }

    def write_restart_plan(self, path: str | Path) -> Path:
        """Written atomically (analyzer.outputs): a crash mid-write never leaves half a plan beside a checkpoint."""
        from analyzer.outputs import write_atomic

        return write_atomic(path, json.dumps(self.restart_plan(), indent=2, allow_nan=False, default=str) + "\n")

    def probe_spec(self) -> ProbeSpec | None:
        """The probe `steadytrain report` would write for this run (None for a stable run)."""
        from analyzer.live import probe_handover

        return probe_handover.spec_for(self.diagnosis)

    def probe_spec_yaml(self) -> str | None:
        """The probe spec as the YAML `steadytrain probe` reads."""
        from analyzer.live import probe_handover

        return probe_handover.spec_yaml(self.diagnosis)

    def write_probe_spec(self, path: str | Path) -> Path | None:
        """Write the probe spec (``steadytrain probe PATH`` runs it); None when the run is not flagged."""
        from analyzer.live import probe_handover

        return probe_handover.write_spec(self.diagnosis, path)


    def hand_over(self, *, rank: int = 0, probe_spec: bool = True) -> HandOver:
        """What acting on this finding needs, small enough to send to the other ranks."""
        spec = None
        if probe_spec:
            try:
                spec = self.probe_spec_yaml()
            except Exception as exc:  # noqa: BLE001 - the checkpoint and its plan are what matter; the spec is a bonus
                log.warning("steadytrain: the probe spec could not be made (%s: %s)", type(exc).__name__, exc)
        return HandOver(self.run_id, rank, self.step, self.verdict, self.last_good_step, self.line(),
                        self.restart_plan(), spec)


@dataclass(frozen=True)
class HandOver:
    """What acting on a `LiveFinding` needs, in plain values: under DDP it goes from the rank that found it
    to every rank (all save the checkpoint together; rank 0 writes these files and logs the line).

    Attributes:
        run_id / step / verdict / last_good_step: as the finding's.
        rank: the rank whose judgement found it (0 in a single process).
        line: the finding's one line.
        restart_plan: `LiveFinding.restart_plan` (JSON-safe).
        probe_spec: the probe spec's YAML (None when the run is not flagged or it was not asked for).
    """

    run_id: str
    rank: int
    step: int
    verdict: Verdict
    last_good_step: int | None
    line: str
    restart_plan: Mapping[str, Any]
    probe_spec: str | None

    @property
    def stem(self) -> str:
        """The checkpoint's name without its suffix: the detection step and the last good step."""
        good = self.last_good_step
        return f"steadytrain-step={self.step}-last_good={good if good is not None else 'none'}"

    def write(self, plan: str | Path, spec: str | Path) -> list[Path]:
        """The restart plan (JSON) and the probe spec (YAML, when there is one); the paths written."""
        out = [_write_text(Path(plan), json.dumps(self.restart_plan, indent=2, allow_nan=False, default=str) + "\n")]
        if self.probe_spec is not None:
            out.append(_write_text(Path(spec), self.probe_spec))
        return out


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


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
