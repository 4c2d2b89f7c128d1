"""`steadytrain probe SPEC.yaml`: run the spec's plans, analyze the trials, say which fix worked.

Trials run sequentially, one process per local GPU (`gpus`), or as Ray tasks (`ray`). Each trial
writes its own TensorBoard run; the analyzer then reads them like any other logs, so the probe's
verdicts are the same judgement the report makes.
"""

from __future__ import annotations

import json
import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.errors import ConfigError
from analyzer.ingest.load import LoadOptions
from analyzer.pipeline import analyze
from analyzer.types import Diagnosis
from probes.spec import PLAN_KINDS, ProbeSpec, TrialConfig, load_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialOutcome:
    """A trial's result joined with the analyzer's verdict on its logs."""

    result: Any  # probes.runner.TrialResult
    verdict: str
    max_spike_ratio: float | None
    findings: tuple[str, ...]


@dataclass(frozen=True)
class ProbeOutcome:
    spec: ProbeSpec
    trials: tuple[TrialOutcome, ...]
    conclusion: str
    smallest_fix: str | None
    out_dir: str
    report_html: str
    report_json: str
    summary: str


def _trial_dir(out: Path, index: int, trial: TrialConfig) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in trial.name).strip("_")
    return out / "trials" / f"{index:02d}_{safe}"


def _run_one(args: tuple[ProbeSpec, TrialConfig, str, str, str, bool]) -> Any:
    from probes.runner import resolve_device, run_trial

    spec, trial, plan, device, log_dir, progress = args
    return run_trial(spec, trial, plan, device=resolve_device(device), log_dir=Path(log_dir), progress=progress)


def _execute(jobs: list[tuple[ProbeSpec, TrialConfig, str, str, str, bool]], executor: str,
             address: str | None) -> list[Any]:
    if executor == "sequential" or (executor == "gpus" and len(jobs) <= 1):
        done = []
        for job in jobs:
            done.append(_run_one(job))
            if done[-1].interrupted:  # Ctrl-C: keep what ran, start nothing new
                break
        return done
    if executor == "gpus":
        import torch

        n = torch.cuda.device_count()
        if n == 0:
            raise ConfigError("--executor gpus: no CUDA device here; use --executor sequential")
        jobs = [(s, t, p, f"cuda:{i % n}", d, False) for i, (s, t, p, _, d, _) in enumerate(jobs)]
        with ProcessPoolExecutor(max_workers=n, mp_context=get_context("spawn")) as pool:
            return list(pool.map(_run_one, jobs))
    if executor == "ray":
        from analyzer.distributed import connect_ray

        ray, _ = connect_ray(address)  # an unreachable --address is one line within a bounded time
        gpus = 1 if any(j[3].startswith("cuda") for j in jobs) else 0
        remote = ray.remote(num_gpus=gpus)(_run_one)
        return ray.get([remote.remote(j) for j in jobs])
    raise ConfigError(f"--executor {executor!r}: expected sequential, gpus or ray")


def _check_executor(executor: str, device: str) -> None:
    """Refuse before any trial runs: `gpus` without a GPU would otherwise quietly train on the CPU."""
    if executor not in ("sequential", "gpus", "ray"):
        raise ConfigError(f"--executor {executor!r}: expected sequential, gpus or ray")
    if executor != "gpus":
        return
    if device == "cpu":
        raise ConfigError("--executor gpus runs one trial per GPU, but the device is cpu (--device or the spec's "
                          "device); use --executor sequential for CPU trials")
    import torch

    if torch.cuda.device_count() == 0:
        raise ConfigError("--executor gpus: no CUDA device here (torch.cuda.device_count() is 0); use --executor "
                          "sequential, or ray for a cluster")


def _derive_clips(spec: ProbeSpec, baseline_grad: np.ndarray | None) -> tuple[float, ...]:
    """Clip candidates: p90 of the baseline's unclipped grad norm, then tighter (playbook §6)."""
    if baseline_grad is not None and baseline_grad.size:
        p90 = float(np.percentile(baseline_grad[np.isfinite(baseline_grad)], 90))
        return (p90, p90 / 2, p90 / 4)
    return spec.clip_candidates


_CLEARLY_BETTER = 0.9  # a fix of a stable baseline must reach a best loss at most 0.9x the baseline's


def _conclude(outcomes: list[TrialOutcome]) -> tuple[str, str | None]:
    base = next((o for o in outcomes if o.result.plan == "baseline"), None)
    problem = base is not None and (base.verdict != "stable" or base.result.infeasible)
    fixes = [o for o in outcomes if o.result.plan in ("warmup_sweep", "clip_sweep", "warmup_clip")
             and o.verdict == "stable" and not o.result.infeasible]
    target = _target_sentence(outcomes)
    lr2x = next((o for o in outcomes if o.result.plan == "lr2x"), None)
    parts = []
    if base is not None:
        parts.append(f"Baseline (lr {base.result.lr:.3g}): {base.verdict}"
                     + (f", stopped: {base.result.stop_reason}" if base.result.stop_reason else "") + ".")
    if lr2x is not None:
        parts.append(f"At 2x the LR ({lr2x.result.lr:.3g}, evaluated every step): {lr2x.verdict}"
                     + (f", stopped: {lr2x.result.stop_reason}" if lr2x.result.stop_reason else "") + ".")
    if not problem and base is not None and fixes:
        # Every trial "stable": a fix only counts when it trained clearly better than the baseline
        # (e.g. a Post-LN Transformer stuck near its starting loss without warmup).
        b = base.result.best_loss
        fixes = [o for o in fixes if b is not None and o.result.best_loss is not None
                 and o.result.best_loss <= _CLEARLY_BETTER * b]
        if not fixes:
            parts.append("The baseline trained stably and no warmup or clipping trial reached a best loss clearly "
                         f"below its {b:.4g} (by {1 - _CLEARLY_BETTER:.0%}): nothing to fix at this scale.")
            return " ".join(parts + target), None
        best = min(fixes, key=lambda o: o.result.best_loss)
        parts.append(f"The baseline trained stably but was held back: {best.result.name} reached a best loss of "
                     f"{best.result.best_loss:.4g} against the baseline's {b:.4g}.")
    if not fixes:
        tried = [o for o in outcomes if o.result.plan in ("warmup_sweep", "clip_sweep", "warmup_clip")]
        if tried:
            parts.append("No warmup or clipping setting tried removed the instability: the LR must come down "
                         "(playbook §4, the last resort).")
        elif not problem:
            parts.append("The baseline trained stably: the diagnosis was not reproduced at this scale.")
        return " ".join(parts + target), None
    warm = [o for o in fixes if o.result.plan == "warmup_sweep"]
    clips = [o for o in fixes if o.result.plan == "clip_sweep" and (o.result.fraction_clipped or 0) <= 0.5]
    heavy = [o for o in fixes if o.result.plan == "clip_sweep" and (o.result.fraction_clipped or 0) > 0.5]
    smallest = None
    if warm:
        w = min(warm, key=lambda o: o.result.warmup_steps)
        smallest = f"warmup_steps={w.result.warmup_steps}"
        parts.append(f"Warmup fixed it; the shortest that worked: {w.result.warmup_steps} steps "
                     f"({', '.join(str(o.result.warmup_steps) for o in sorted(warm, key=lambda o: o.result.warmup_steps))} "
                     "worked).")
    if clips:
        c = max(clips, key=lambda o: o.result.clip)
        parts.append(f"Clipping fixed it; the loosest that worked: max_norm={c.result.clip:.3g} "
                     f"({c.result.fraction_clipped:.0%} of steps clipped).")
        smallest = smallest or f"clip max_norm={c.result.clip:.3g}"
    if heavy and not clips:
        parts.append("Only clipping more than half of all updates helped: that is a lower LR in disguise; "
                     "lower the LR instead (playbook §6).")
    return " ".join(parts + target), smallest


def _target_sentence(outcomes: list[TrialOutcome]) -> list[str]:
    """What the warmup sweep at the playbook's target LR found (playbook §5)."""
    trials = [o for o in outcomes if o.result.plan == "warmup_target"]
    if not trials:
        return []
    lr = trials[0].result.lr
    ok = sorted((o for o in trials if o.verdict == "stable" and not o.result.infeasible),
                key=lambda o: o.result.warmup_steps)
    if ok:
        return [f"At the playbook's target LR {lr:.3g}, the shortest warmup that did not blow up: "
                f"{ok[0].result.warmup_steps} steps; use it with that base LR (prepend it to your schedule)."]
    tried = ", ".join(str(o.result.warmup_steps) for o in sorted(trials, key=lambda o: o.result.warmup_steps))
    return [f"At the playbook's target LR {lr:.3g}, no warmup tried ({tried} steps) was stable: longer warmups, "
            "or a target closer to the current LR."]


def probe_out_dir(spec_path: str | Path, out_dir: str | Path | None) -> Path:
    """Where the trial logs and the probe report go: ``out_dir``, else ``<spec>_probe/`` beside the spec."""
    return Path(out_dir) if out_dir else Path(spec_path).parent / (Path(spec_path).stem + "_probe")


def run_probe(spec_path: str | Path, *, device: str = "auto", out_dir: str | Path | None = None,
              plan: str | None = None, steps: int | None = None, executor: str = "sequential",
              address: str | None = None, progress: bool = False) -> ProbeOutcome:
    spec = load_spec(spec_path)
    if steps is not None:
        spec = replace(spec, steps=steps)
    if device != "auto":
        spec = replace(spec, device=device)
    _check_executor(executor, spec.device)
    requested = [plan] if plan else list(spec.plans)
    unknown = [p for p in requested if p not in PLAN_KINDS]
    if unknown:
        raise ConfigError(f"plan {unknown[0]!r}: expected one of {', '.join(PLAN_KINDS)}")
    # Clip candidates for a built-in workload come from its own baseline's unclipped grad norm (p90 and tighter).
    derive_clips = "clip_sweep" in requested and (spec.workload.startswith("builtin:") or not spec.clip_candidates)
    ordered = (["baseline"] if "baseline" in requested or derive_clips else []) + \
        [p for p in requested if p != "baseline"]
    out = probe_out_dir(spec_path, out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: list[Any] = []
    baseline_grad = None
    for p in ordered:
        plan_spec = replace(spec, clip_candidates=_derive_clips(spec, baseline_grad)) \
            if p == "clip_sweep" and derive_clips else spec
        jobs = [(plan_spec, t, p, spec.device, str(_trial_dir(out, len(results) + i, t)), progress)
                for i, t in enumerate(plan_spec.trials(p))]
        done = _execute(jobs, executor, address)
        results += done
        if any(r.interrupted for r in done):
            break
        if p == "baseline":
            baseline_grad = _grad_of(done[0].log_dir)
    report = analyze([out / "trials"], load_options=LoadOptions(cache_dir=None))
    by_dir = {Path(r).name: d for d in report.diagnoses for r in [d.run.id]}
    outcomes = []
    for res in results:
        d: Diagnosis | None = by_dir.get(Path(res.log_dir).name)
        verdict = "divergence" if res.infeasible else (d.verdict if d else "insufficient_data")
        # the analyzer's own heights: x the level each event departed from (x the initial loss for an early rise)
        spikes = [v for f in (d.findings if d else ())
                  if isinstance(v := getattr(f.evidence, "ratio", None), float) and math.isfinite(v)]
        outcomes.append(TrialOutcome(res, verdict, max(spikes) if spikes else None,
                                     tuple(f.kind for f in (d.findings if d else ()))))
    conclusion, smallest = _conclude(outcomes)
    interrupted = next((r for r in results if r.interrupted), None)
    if interrupted is not None:
        planned = sum(len(spec.trials(p)) for p in ordered)
        conclusion = (f"Interrupted (Ctrl-C) in trial {interrupted.name!r} after {interrupted.steps_run} of "
                      f"{interrupted.steps_planned} steps; {len(results)} of {planned} planned trials ran, and what "
                      f"follows covers only those. {conclusion}")
    from probes.report import write_probe_report

    html, js = write_probe_report(spec, outcomes, conclusion, smallest, report, out)
    lines = [f"{'trial':28s} {'plan':13s} {'lr':>8s} {'warmup':>6s} {'clip':>8s} {'verdict':18s} {'final':>8s} "
             f"{'clipped':>7s}"]
    for o in outcomes:
        r = o.result
        lines.append(f"{r.name[:28]:28s} {r.plan:13s} {r.lr:8.3g} {r.warmup_steps:6d} "
                     f"{(f'{r.clip:.3g}' if r.clip else '-'):>8s} {o.verdict:18s} "
                     f"{(f'{r.final_loss:.4g}' if r.final_loss is not None and math.isfinite(r.final_loss) else '-'):>8s} "
                     f"{(f'{r.fraction_clipped:.0%}' if r.fraction_clipped is not None else '-'):>7s}")
    summary = "\n".join(lines + ["", conclusion, f"Probe report: {html}", f"Trial logs: {out / 'trials'}"])
    return ProbeOutcome(spec, tuple(outcomes), conclusion, smallest, str(out), str(html), str(js), summary)


def _grad_of(log_dir: str) -> np.ndarray | None:
    from analyzer.ingest.load import load_runs

    runs, _ = load_runs([log_dir], LoadOptions(cache_dir=None))
    s = runs[0].series("train/grad_norm") if runs else None
    return s.values if s is not None else None


def outcome_dict(o: ProbeOutcome) -> dict[str, Any]:
    return {"spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(o.spec).items()},
            "conclusion": o.conclusion, "smallest_fix": o.smallest_fix,
            "trials": [{**asdict(t.result), "verdict": t.verdict, "max_spike_ratio": t.max_spike_ratio,
                        "findings": list(t.findings)} for t in o.trials]}


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
