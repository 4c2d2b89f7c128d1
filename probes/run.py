"""`steadytrain probe SPEC.yaml`: run the spec's plans, analyze the trials, say which fix worked.

Trials run sequentially, one process per local GPU (`gpus`), or as Ray tasks (`ray`). Each trial
writes its own TensorBoard run; the analyzer then reads them like any other logs, so the probe's
verdicts are the same judgement the report makes.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.errors import ConfigError
from analyzer.ingest.load import LoadOptions
from analyzer.pipeline import analyze
from analyzer.types import Diagnosis, Severity
from probes.mechanism import Attribution, attribute
from probes.outcome import ProbeOutcome, TrialOutcome
from probes.spec import PLAN_KINDS, ProbeSpec, TrialConfig, load_spec
from probes.verdict import Replay, judge_replay

_UNSTABLE = ("early_instability", "mid_instability", "divergence")

log = logging.getLogger(__name__)


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


def _judged(res: Any, d: Diagnosis | None) -> TrialOutcome:
    verdict = "divergence" if res.infeasible else (d.verdict if d else "insufficient_data")
    findings = d.findings if d else ()
    # the analyzer's own heights: x the level each event departed from (x the initial loss for an early rise)
    spikes = [v for f in findings if isinstance(v := getattr(f.evidence, "ratio", None), float) and math.isfinite(v)]
    unstable = [f for f in findings if f.verdict in _UNSTABLE and f.severity >= Severity.WARN]
    first = min(unstable, key=lambda f: f.start_step) if unstable else None
    peak = getattr(first.evidence, "peak_step", None) if first is not None else None
    return TrialOutcome(res, verdict, max(spikes) if spikes else None, tuple(f.kind for f in findings),
                        first.start_step if first is not None else None,
                        peak if isinstance(peak, int) else (first.start_step if first is not None else None))


def _judge(log_dir: str) -> Diagnosis | None:
    report = analyze([log_dir], load_options=LoadOptions(cache_dir=None))
    return report.diagnoses[0] if report.diagnoses else None


def _search(spec: ProbeSpec, out: Path, results: list[Any], executor: str, address: str | None,
            progress: bool) -> list[Any]:
    """lr_search: 10^-0.5 steps down, largest first, skipping factors at or below one already known to work;
    stops at the first without the instability (each trial judged by the analyzer as it finishes)."""
    known_ok = [r.lr_factor for r in results if r.plan == "lr_sweep" and not r.infeasible
                and (d := _judge(r.log_dir)) is not None and d.verdict == "stable"]
    floor = max(known_ok, default=0.0)
    done: list[Any] = []
    for t in spec.trials("lr_search"):
        if t.lr_factor <= floor * 1.01 or any(abs(r.lr_factor - t.lr_factor) < 1e-3 * t.lr_factor for r in results):
            continue
        (res,) = _execute([(spec, t, "lr_search", spec.device, str(_trial_dir(out, len(results) + len(done), t)),
                            progress)], executor, address)
        done.append(res)
        d = _judge(res.log_dir)
        if res.interrupted or (not res.infeasible and d is not None and d.verdict == "stable"):
            break
    return done


def _data_driven(results: list[Any]) -> bool:
    """The same settings were unstable and skipping the window's batches was not: a lower LR does not remove
    bad batches, so the LR search is not run."""
    base = next((r for r in results if r.plan == "baseline"), None)
    skip = next((r for r in results if r.plan == "skip_window"), None)
    if base is None or skip is None:
        return False
    d_base, d_skip = _judge(base.log_dir), _judge(skip.log_dir)
    unstable = base.infeasible or (d_base is not None and d_base.verdict != "stable")
    return unstable and not skip.infeasible and d_skip is not None and d_skip.verdict == "stable"


def _layer_series(d: Diagnosis) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for tag in d.run.tags:
        parts = tag.split("/")
        if len(parts) >= 3 and parts[0] == "layers":
            s = d.run.series(tag)
            if s is not None:
                out.setdefault("/".join(parts[1:-1]), {})[parts[-1]] = (s.steps, s.values)
    return out


def _overridden(spec: ProbeSpec, steps: int | None, device: str, data: str | None, data_order: str | None,
                scale: dict[str, float] | None) -> ProbeSpec:
    """The spec with the command line's settings over its own."""
    if steps is not None:
        spec = replace(spec, steps=steps)
    if device != "auto":
        spec = replace(spec, device=device)
    if data is not None:
        spec = replace(spec, data=str(Path(data).resolve()) if Path(data).exists() else data)
    if data_order is not None:
        spec = replace(spec, data_order=data_order)
    if scale:
        spec = replace(spec, scale=scale)
    if (data is not None or scale) and not spec.own_run:
        raise ConfigError("--data and --scale apply to a spec that re-runs the run itself (workload: run); this spec's "
                          f"workload is {spec.workload}")
    return spec


def _plan_order(spec: ProbeSpec, plan: str | None) -> tuple[list[str], bool]:
    """The plans in the order they run, and whether the clip sweep's candidates come from the baseline."""
    requested = [plan] if plan else list(spec.plans)
    unknown = [p for p in requested if p not in PLAN_KINDS]
    if unknown:
        raise ConfigError(f"plan {unknown[0]!r}: expected one of {', '.join(PLAN_KINDS)}")
    # Clip candidates for a built-in workload come from its own baseline's unclipped grad norm (p90 and tighter).
    derive_clips = "clip_sweep" in requested and (spec.workload.startswith("builtin:") or not spec.clip_candidates)
    ordered = (["baseline"] if "baseline" in requested or derive_clips else []) + \
        [p for p in requested if p != "baseline"]
    return ordered, derive_clips


def _run_plans(spec: ProbeSpec, ordered: list[str], derive_clips: bool, out: Path, executor: str,
               address: str | None, progress: bool) -> list[Any]:
    """Every plan's trials, in order; stops after a plan where Ctrl-C interrupted a trial."""
    results: list[Any] = []
    baseline_grad = None
    for p in ordered:
        if p == "lr_search" and _data_driven(results):
            log.info("lr_search skipped: skipping the window's batches removed the instability (data-driven)")
            continue
        if p == "lr_search":
            done = _search(spec, out, results, executor, address, progress)
        else:
            plan_spec = replace(spec, clip_candidates=_derive_clips(spec, baseline_grad)) \
                if p == "clip_sweep" and derive_clips else spec
            jobs = [(plan_spec, t, p, spec.device, str(_trial_dir(out, len(results) + i, t)), progress)
                    for i, t in enumerate(plan_spec.trials(p))]
            done = _execute(jobs, executor, address)
        results += done
        if any(r.interrupted for r in done):
            break
        if p == "baseline":
            start = (spec.window or {}).get("start") if spec.own_run else None
            baseline_grad = _grad_of(done[0].log_dir, start if isinstance(start, int) else None)
    return results


@dataclass(frozen=True)
class _Conclusion:
    """What the trials say, in words, and the judgements behind the words of a replay."""

    text: str
    smallest: str | None
    replay: Replay | None = None
    attribution: Attribution | None = None


def _replay_conclusion(spec: ProbeSpec, outcomes: list[TrialOutcome], by_dir: dict[str, Diagnosis]) -> _Conclusion:
    """A replay of the run itself: was the instability reproduced, by what, which fix removed it, and (when
    reproduced) which block led it."""
    replay = judge_replay(spec, outcomes)
    attribution = None
    base = next((o for o in outcomes if o.result.plan == "baseline"), None)
    d = by_dir.get(Path(base.result.log_dir).name) if base is not None else None
    if base is not None and d is not None and base.unstable_at is not None and replay.reproduced:
        attribution = attribute(_layer_series(d), base.unstable_at, base.peak_at or base.unstable_at)
    parts = [replay.reproduced_line + ".", replay.data_line + "." if replay.data_line else "",
             replay.fixes_line, replay.lr_search_line + "." if replay.lr_search_line else "",
             ("Mechanism: " + attribution.sentence) if attribution is not None else ""]
    return _Conclusion(" ".join(x for x in parts if x), replay.smallest, replay, attribution)


def _interrupted_note(spec: ProbeSpec, ordered: list[str], results: list[Any], conclusion: str) -> str:
    """The conclusion, prefixed by what Ctrl-C left out when a trial was interrupted."""
    interrupted = next((r for r in results if r.interrupted), None)
    if interrupted is None:
        return conclusion
    planned = sum(len(spec.trials(p)) for p in ordered if p != "lr_search")
    return (f"Interrupted (Ctrl-C) in trial {interrupted.name!r} after {interrupted.steps_run} of "
            f"{interrupted.steps_planned} steps; {len(results)} of {planned} planned trials ran, and what "
            f"follows covers only those. {conclusion}")


def _summary(outcome: ProbeOutcome, html: Path, out: Path) -> str:
    """The terminal's text: one line a trial, then the conclusion and where the reports are."""
    lines = [f"{'trial':32s} {'plan':12s} {'lr':>8s} {'warmup':>6s} {'clip':>8s} {'verdict':18s} {'final':>8s} "
             f"{'clipped':>7s}"]
    for o in outcome.trials:
        r = o.result
        lines.append(f"{r.name[:32]:32s} {r.plan:12s} {r.lr:8.3g} {r.warmup_steps:6d} "
                     f"{(f'{r.clip:.3g}' if r.clip else '-'):>8s} {o.verdict:18s} "
                     f"{(f'{r.final_loss:.4g}' if r.final_loss is not None and math.isfinite(r.final_loss) else '-'):>8s} "
                     f"{(f'{r.fraction_clipped:.0%}' if r.fraction_clipped is not None else '-'):>7s}")
    used, smallest = outcome.used, outcome.smallest_fix
    head = ["Re-ran: " + "; ".join(used), ""] if outcome.spec.own_run and used else []
    return "\n".join(head + lines + ["", outcome.conclusion] + ([f"Smallest change that removed it: {smallest}"]
                                                                if smallest else []) +
                     [f"Probe report: {html}", f"Trial logs: {out / 'trials'}"])


def run_probe(spec_path: str | Path, *, device: str = "auto", out_dir: str | Path | None = None,
              plan: str | None = None, steps: int | None = None, executor: str = "sequential",
              address: str | None = None, progress: bool = False, data: str | None = None,
              data_order: str | None = None, scale: dict[str, float] | None = None) -> ProbeOutcome:
    spec = _overridden(load_spec(spec_path), steps, device, data, data_order, scale)
    _check_executor(executor, spec.device)
    ordered, derive_clips = _plan_order(spec, plan)
    out = probe_out_dir(spec_path, out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _run_plans(spec, ordered, derive_clips, out, executor, address, progress)
    report = analyze([out / "trials"], load_options=LoadOptions(cache_dir=None))
    by_dir = {Path(d.run.id).name: d for d in report.diagnoses}
    outcomes = [_judged(res, by_dir.get(Path(res.log_dir).name)) for res in results]
    concluded = _replay_conclusion(spec, outcomes, by_dir) if spec.own_run else _Conclusion(*_conclude(outcomes))
    conclusion = _interrupted_note(spec, ordered, results, concluded.text)
    used = results[0].used if results else ()
    from probes.report import write_probe_report

    partial = ProbeOutcome(spec, tuple(outcomes), conclusion, concluded.smallest, str(out), "", "", "",
                           concluded.replay, concluded.attribution, tuple(used))
    html, js = write_probe_report(partial, report, out)
    return replace(partial, report_html=str(html), report_json=str(js), summary=_summary(partial, html, out))


#: A replay's clip candidates come from its steps before the flagged window when it has at least this many.
_MIN_HEALTHY_POINTS = 5


def _grad_of(log_dir: str, before: int | None = None) -> np.ndarray | None:
    """The trial's unclipped grad norms; with ``before``, only those of earlier steps (a replay's healthy
    stretch: its p90 is what the run's logged p90 would have been, not the blow-up's)."""
    from analyzer.ingest.load import load_runs

    runs, _ = load_runs([log_dir], LoadOptions(cache_dir=None))
    s = runs[0].series("train/grad_norm") if runs else None
    if s is None:
        return None
    if before is not None and int((s.steps < before).sum()) >= _MIN_HEALTHY_POINTS:
        return s.values[s.steps < before]
    return s.values


