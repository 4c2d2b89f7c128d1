"""The checks: each judges the measured `RunContext` against the config and returns findings.

Check ids are stable strings (they appear in the JSON and name the report's partials). A check
that raises becomes a `CheckFailure`; the other checks still run (see `run_checks`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from analyzer.detect.context import RunContext
from analyzer.detect.signals import SpikeEvent
from analyzer.types import CheckFailure, Finding, Severity

Check = Callable[[RunContext], list[Finding]]


def _fmt(x: float) -> str:
    if x is None or not np.isfinite(x):
        return str(x)
    a = abs(x)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{x:.3g}"
    return f"{x:.4g}"


def check_data(ctx: RunContext) -> list[Finding]:
    """Is there enough train loss to judge? Says what is missing instead of guessing."""
    run, cfg = ctx.run, ctx.cfg
    if ctx.loss is None:
        has_eval = ctx.eval_loss is not None
        return [Finding("missing_train_loss", Severity.WARN, "insufficient_data", 0, None,
                        "No train-loss tag found" + (" (only eval loss)" if has_eval else "") +
                        f" among {len(run.tags)} tag(s); name it with --role train_loss=TAG.",
                        {"tags": run.tags[:20]})]
    n_all = len(ctx.loss)
    n_finite = int(np.isfinite(ctx.loss.values).sum())
    finite = np.isfinite(ctx.loss.values)
    if 0 < n_finite < n_all and finite[0]:
        return []  # finite, then NaN/inf: that is divergence however short the log (check_nonfinite)
    if n_finite == 0 and n_all > 0:
        return [Finding("all_nonfinite", Severity.WARN, "insufficient_data", int(ctx.loss.steps[0]), None,
                        f"All {n_all} train-loss values of '{ctx.loss.tag}' are NaN/inf: nothing to compare with.",
                        {"points": n_all})]
    if n_finite < cfg.min_points:
        return [Finding("too_few_points", Severity.WARN, "insufficient_data", int(ctx.loss.steps[0]), None,
                        f"Only {n_finite} finite train-loss point(s) in '{ctx.loss.tag}' (need {cfg.min_points}); "
                        "log the loss more often.", {"points": n_finite, "min_points": cfg.min_points})]
    if ctx.curve is None:
        return []
    if float(np.ptp(ctx.curve.raw)) == 0.0:
        return [Finding("constant_loss", Severity.WARN, "insufficient_data", int(ctx.curve.steps[0]), None,
                        f"The train loss '{ctx.loss.tag}' is constant ({_fmt(float(ctx.curve.raw[0]))}) over "
                        f"{n_finite} points: it is not being optimised or not being logged.",
                        {"value": float(ctx.curve.raw[0]), "points": n_finite})]
    return []


def check_nonfinite(ctx: RunContext) -> list[Finding]:
    """NaN/inf loss = divergence; an isolated non-finite grad norm with finite loss = fp16 skipped step."""
    out: list[Finding] = []
    loss, grad = ctx.loss, ctx.grad
    if loss is not None and ctx.curve is not None and len(ctx.curve):
        bad = ~np.isfinite(loss.values)
        if bad.any():
            first = int(np.argmax(bad))
            after = bad[first:]
            last_ok = np.isfinite(loss.values[-1])
            frac = float(after.mean())
            step = int(loss.steps[first])
            prev = loss.values[:first][np.isfinite(loss.values[:first])]
            ev = {"first_nonfinite_step": step, "nonfinite_points": int(bad.sum()), "points_after": int(after.size),
                  "fraction_after": round(frac, 4), "last_finite_loss": float(prev[-1]) if prev.size else None}
            if not last_ok or frac > 0.5:
                out.append(Finding("divergence_nonfinite", Severity.FAIL, "divergence", step, None,
                                   f"Loss became {loss.values[first]} at step {step} and "
                                   f"{'never recovered' if not last_ok else f'stayed non-finite for {frac:.0%} of later points'}"
                                   f" (last finite loss {_fmt(ev['last_finite_loss'] or float('nan'))}).", ev))
            else:
                phase = "early_instability" if ctx.curve is not None and step <= (ctx.early_end_step or 0) else "mid_instability"
                out.append(Finding("nonfinite_loss_transient", Severity.WARN, phase, step, int(loss.steps[-1]),
                                   f"{int(bad.sum())} non-finite loss value(s) from step {step}, with finite "
                                   "values after: a transient overflow.", ev))
    if grad is not None and grad.values.size:
        gbad = ~np.isfinite(grad.values)
        if gbad.any():
            steps = grad.steps[gbad]
            loss_zero_at_nan = 0
            if loss is not None:
                common = np.isin(loss.steps, steps)
                loss_zero_at_nan = int(np.sum(loss.values[common] == 0.0))
            tail_bad = bool(gbad[-max(3, gbad.size // 20):].all())
            ev = {"nonfinite_grad_points": int(gbad.sum()), "first_step": int(steps[0]),
                  "loss_zero_at_those_steps": loss_zero_at_nan}
            if loss_zero_at_nan or (tail_bad and not any(f.kind == "divergence_nonfinite" for f in out)):
                why = ("the logged loss is exactly 0.0 at those steps: HF Trainer's NaN filter hides a NaN loss"
                       if loss_zero_at_nan else "the grad norm stays NaN/inf to the end: the weights are NaN")
                out.append(Finding("divergence_nonfinite_grad", Severity.FAIL, "divergence", int(steps[0]), None,
                                   f"Grad norm non-finite from step {int(steps[0])} ({int(gbad.sum())} point(s)); {why}.",
                                   ev))
            elif not any(f.kind == "divergence_nonfinite" for f in out):
                out.append(Finding("fp16_skipped_steps", Severity.INFO, "stable", int(steps[0]), int(steps[-1]),
                                   f"{int(gbad.sum())} isolated non-finite grad-norm value(s) with the loss unaffected: "
                                   "mixed-precision loss-scaler skipped steps, not divergence.", ev))
    return out


def _describe_event(ev: SpikeEvent, what: str = "loss") -> str:
    back = (f"back to baseline at step {ev.recovered_step}" if ev.recovered_step is not None
            else "never back to baseline")
    ratio = f" ({_fmt(ev.ratio)}x)" if np.isfinite(ev.ratio) else ""
    return (f"{what} rose from {_fmt(ev.baseline)} (trailing median) to {_fmt(ev.peak)}{ratio} at step "
            f"{ev.peak_step}, lasting {ev.points} logged point(s); {back}")


def _event_evidence(ev: SpikeEvent) -> dict:
    return {"start_step": ev.start_step, "peak_step": ev.peak_step, "end_step": ev.end_step,
            "baseline": ev.baseline, "peak": ev.peak, "ratio": ev.ratio, "z": round(ev.z, 2), "points": ev.points,
            "elevated_points": ev.elevated, "recovered_step": ev.recovered_step}


def _is_periodic(events: list[SpikeEvent], cv_max: float, max_ratio: float) -> bool:
    """Regular, modest bumps (per-epoch data order or epoch-averaged logging), not big spikes."""
    if len(events) < 4:
        return False
    ratios = [e.ratio for e in events if np.isfinite(e.ratio)]
    if ratios and float(np.median(ratios)) >= max_ratio:
        return False
    gaps = np.diff([e.start_step for e in events])
    return bool(gaps.mean() > 0 and gaps.std() / gaps.mean() <= cv_max)


def early_measures(ctx: RunContext) -> dict:
    """The early-phase numbers the early check judges (also reported as evidence)."""
    c, cfg = ctx.curve, ctx.cfg
    assert c is not None
    e = min(ctx.early_end, len(c))
    y = c.y
    init = y[0]
    early, late = y[:e], y[e:]
    # Steadiness: early points at or near their running best (noise allowance from the late phase).
    late_sigma = float(np.median(c.sigma[e:])) if late.size else float(np.median(c.sigma[:e]))
    tol = 3.0 * max(late_sigma, ctx.cfg.min_log_spread)
    near_best = early <= np.minimum.accumulate(early) + tol
    steady = float(near_best.mean())
    d2_early = np.abs(np.diff(early, 2)) if early.size > 2 else np.zeros(0)
    d2_late = np.abs(np.diff(late, 2)) if late.size > 2 else np.zeros(0)
    rough_e = float(np.median(d2_early)) if d2_early.size else 0.0
    rough_l = float(np.median(d2_late)) if d2_late.size else 0.0
    thrash = rough_e / max(rough_l, cfg.min_log_spread / 4) if d2_early.size else 0.0
    max_i = int(np.argmax(early)) if early.size else 0
    rise = float(np.exp(early[max_i] - init)) if c.log_space else float("nan")
    grad_ratio = float("nan")
    g = ctx.grad_curve
    if g is not None and len(g) > 4 and g.log_space:
        cut = int(np.searchsorted(g.steps, c.steps[e - 1], side="right"))
        if 0 < cut < len(g):
            grad_ratio = float(np.quantile(g.raw[:cut], 0.9) / np.median(g.raw[cut:]))
    events = [ev for ev in ctx.loss_events if ev.start_index < e]
    return {"early_end_step": int(c.steps[e - 1]), "initial_loss": float(c.raw[0]),
            "early_max_loss": float(c.raw[max_i]), "early_max_step": int(c.steps[max_i]),
            "rise_vs_initial": rise, "steady_fraction": round(steady, 3), "thrash_ratio": round(thrash, 3),
            "early_grad_p90_over_late_median": grad_ratio, "early_spike_events": len(events)}


def check_early(ctx: RunContext) -> list[Finding]:
    """Early instability: loss up instead of down, thrashing, or grad norm far above its later
    level while the loss is not falling steadily, in the first part of training."""
    c, cfg = ctx.curve, ctx.cfg
    if c is None or len(c) < cfg.min_points or ctx.early_end >= len(c):
        return []
    m = early_measures(ctx)
    not_steady = m["steady_fraction"] < cfg.steady_fraction
    reasons = []
    if np.isfinite(m["rise_vs_initial"]) and m["rise_vs_initial"] >= cfg.early_rise_ratio:
        reasons.append(f"loss rose to {_fmt(m['early_max_loss'])} at step {m['early_max_step']}, "
                       f"{_fmt(m['rise_vs_initial'])}x the initial {_fmt(m['initial_loss'])}")
    if not_steady and m["thrash_ratio"] >= cfg.early_thrash_ratio:
        reasons.append(f"the loss thrashed ({_fmt(m['thrash_ratio'])}x the later step-to-step roughness; only "
                       f"{m['steady_fraction']:.0%} of early points near their running best)")
    gr = m["early_grad_p90_over_late_median"]
    if not_steady and np.isfinite(gr) and gr >= cfg.early_grad_ratio:
        reasons.append(f"the grad norm's early p90 was {_fmt(gr)}x its later median while the loss was not "
                       "falling steadily")
    if not reasons:
        return []
    e = min(ctx.early_end, len(c))
    # Where it settled: the first point after which the loss stays below the initial loss.
    above = np.flatnonzero(c.y[:e] > c.y[0] + np.log(1.1) if c.log_space else c.y[:e] > c.y[0])
    settle_i = int(above[-1]) + 1 if above.size else 1
    settle_i = min(settle_i, len(c) - 1)
    m["settled_step"] = int(c.steps[settle_i])
    tail = max(3, int(len(c) * cfg.tail_fraction))
    m["final_loss"] = float(np.median(c.raw[-tail:]))
    recovered = c.log_space and m["final_loss"] < m["initial_loss"]
    m["recovered"] = bool(recovered)
    msg = ("Early instability (first " f"{m['early_end_step']} steps): " + "; ".join(reasons) + ". " +
           (f"It settled by step {m['settled_step']} and training went on (final loss {_fmt(m['final_loss'])}): "
            "unstable-then-recovered runs often end up slow; warmup usually fixes this."
            if recovered else "It did not settle below the initial loss."))
    return [Finding("early_instability", Severity.WARN, "early_instability", int(c.steps[0]), m["settled_step"],
                    msg, m)]


def check_mid(ctx: RunContext) -> list[Finding]:
    """Mid-training instability: a sudden rise after steady progress that comes (or is coming) back."""
    c, cfg = ctx.curve, ctx.cfg
    if c is None or len(c) < cfg.min_points:
        return []
    e = ctx.early_end
    events = [ev for ev in ctx.loss_events if ev.start_index >= e]
    out: list[Finding] = []
    if _is_periodic(events, cfg.periodic_cv, cfg.mid_blip_ratio):
        gaps = np.diff([ev.start_step for ev in events])
        return [Finding("periodic_pattern", Severity.INFO, "stable", events[0].start_step, events[-1].end_step,
                        f"{len(events)} regular loss bumps every ~{int(np.mean(gaps))} steps: a per-epoch pattern "
                        "(data order, epoch-averaged logging), not instability.",
                        {"events": len(events), "mean_gap_steps": float(np.mean(gaps))})]
    blips = 0
    for ev in events:
        grad_ev = ctx.grad_spike_near(ev.start_index, ev.peak_index)
        # One high point is that batch's own loss; instability is the damage that lasts after it.
        if ev.elevated < cfg.mid_min_points:
            blips += 1
            continue
        if ev.recovered_step is None:
            continue  # never came back: the divergence check judges it
        ev_d = _event_evidence(ev)
        text = "Mid-training instability: " + _describe_event(ev) + "."
        if grad_ev is not None:
            lead = ev.peak_step - grad_ev.peak_step
            ev_d.update({"grad_spike_step": grad_ev.peak_step, "grad_spike_ratio": grad_ev.ratio,
                         "grad_leads_by_steps": lead})
            text += (f" The grad norm spiked {_fmt(grad_ev.ratio)}x its running median at step {grad_ev.peak_step}"
                     + (f", {lead} step(s) before the loss peak." if lead > 0 else "."))
        out.append(Finding("mid_instability", Severity.WARN, "mid_instability", ev.start_step, ev.recovered_step,
                           text, ev_d))
    r = ctx.rise
    early_end_step = ctx.early_end_step or 0
    progressed = r is not None and r.best_before < float(c.raw[0]) / 1.1
    if (r is not None and r.ratio >= cfg.plateau_ratio and not out and r.recovered_fraction >= 0.5
            and r.start_step > early_end_step and progressed):
        out.append(Finding("mid_instability", Severity.WARN, "mid_instability", r.start_step, None,
                           f"Mid-training instability: after steady decrease to {_fmt(r.best_before)}, the smoothed "
                           f"loss rose to {_fmt(r.peak)} ({_fmt(r.ratio)}x) by step {r.peak_step}, then fell again "
                           f"({r.recovered_fraction:.0%} of the way back by the end).",
                           {"best_before": r.best_before, "peak": r.peak, "ratio": r.ratio,
                            "peak_step": r.peak_step, "recovered_fraction": r.recovered_fraction}))
    if blips:
        out.append(Finding("one_point_blips", Severity.INFO, "stable", events[0].start_step, None,
                           f"{blips} one-point loss blip(s) that came straight back; not instability.",
                           {"count": blips}))
    return out


def check_divergence(ctx: RunContext) -> list[Finding]:
    """Divergence: loss exploding and never coming back, or collapsing to a flat plateau after learning."""
    c, cfg = ctx.curve, ctx.cfg
    if c is None or len(c) < cfg.min_points or not c.log_space:
        return []
    tail = max(3, int(len(c) * cfg.tail_fraction))
    final = float(np.median(c.y[-tail:]))
    best_i = int(np.argmin(c.smooth))
    best = float(c.smooth[best_i])
    ratio = float(np.exp(final - best))
    half = max(2, tail // 2)
    recent = float(np.median(c.y[-half:]))
    earlier = float(np.median(c.y[-2 * half:-half])) if len(c) > 2 * half else recent
    falling = recent < earlier - np.log(1.1)
    initial = float(c.y[0])
    ev = {"final_loss": float(np.exp(final)), "best_loss": float(np.exp(best)), "best_step": int(c.steps[best_i]),
          "final_over_best": ratio, "initial_loss": float(np.exp(initial)), "tail_points": tail,
          "still_falling_at_end": bool(falling)}
    if final >= initial + np.log(cfg.explode_ratio):
        ev["final_over_initial"] = float(np.exp(final - initial))
        return [Finding("divergence_explosion", Severity.FAIL, "divergence", int(c.steps[1]), None,
                        f"Loss exploded and never came back: it ended at {_fmt(ev['final_loss'])}, "
                        f"{_fmt(ev['final_over_initial'])}x the initial {_fmt(ev['initial_loss'])}.", ev)]
    if best_i >= len(c) - tail or falling:
        return []
    unrecovered = [e for e in ctx.loss_events if e.recovered_step is None and e.start_index >= 1]
    start = unrecovered[0].start_step if unrecovered else (ctx.rise.start_step if ctx.rise else int(c.steps[best_i]))
    learned = initial - best >= np.log(1.5)
    tail_y = c.y[-tail:]
    flat = float(np.median(np.abs(np.diff(tail_y)))) <= max(2 * cfg.min_log_spread, 0.02) if tail > 2 else False
    if ratio >= cfg.plateau_ratio and learned and flat:
        ev["below_initial"] = bool(final < initial)
        return [Finding("divergence_collapse", Severity.FAIL, "divergence", start, None,
                        f"Training collapsed: after reaching {_fmt(ev['best_loss'])} the loss jumped to a flat plateau "
                        f"at {_fmt(ev['final_loss'])} ({_fmt(ratio)}x the best"
                        + (", still below the initial loss: a collapse to a trivial solution)." if final < initial
                           else ").") + " It never recovered.", ev)]
    if ratio >= cfg.explode_ratio:
        return [Finding("divergence_explosion", Severity.FAIL, "divergence", start, None,
                        f"Loss exploded: final {_fmt(ev['final_loss'])} is {_fmt(ratio)}x the best "
                        f"{_fmt(ev['best_loss'])} (step {ev['best_step']}) and did not come back.", ev)]
    return []


def check_progress(ctx: RunContext) -> list[Finding]:
    """A log from the start of training whose loss never fell: nothing unstable to see, nothing learned.

    The same ratio that makes an LR sweep's trial infeasible (best >= infeasible_ratio x the initial
    loss; initial here is the median of the first 3 points, robust to one odd first batch). A log
    that starts late (a resumed job, the tail of a long run) can be flat at convergence: not judged.
    """
    c, cfg = ctx.curve, ctx.cfg
    if c is None or len(c) < cfg.min_points or not c.log_space or ctx.loss is None:
        return []
    if not np.isfinite(ctx.loss.values).all():
        return []  # NaN/inf: check_nonfinite's and check_divergence's to judge
    if int(c.steps[0]) > max(10, int(0.01 * int(c.steps[-1]))):
        return []
    initial = float(np.median(c.raw[:3]))
    best_i = int(np.argmin(c.smooth))
    best = c.to_raw(float(c.smooth[best_i]))
    if best < cfg.infeasible_ratio * initial:
        return []
    ev = {"initial_loss": initial, "best_loss": best, "best_step": int(c.steps[best_i]),
          "best_over_initial": best / initial, "steps": int(c.steps[-1] - c.steps[0]), "threshold": cfg.infeasible_ratio}
    return [Finding("no_progress", Severity.WARN, "stable", int(c.steps[0]), None,
                    f"No progress: over {ev['steps']} steps the loss never fell below {cfg.infeasible_ratio:g}x its "
                    f"initial {_fmt(initial)} (best {_fmt(best)} at step {ev['best_step']}). Nothing unstable to "
                    "judge, but nothing learned: an LR sweep would count this trial infeasible. Look for an LR far "
                    "too low, dead units after an early blow-up (see grad-norm outliers), or labels the model "
                    "cannot fit.", ev)]


def check_grad_norm(ctx: RunContext) -> list[Finding]:
    """Grad-norm outliers (context for clipping) and a logged norm that looks already clipped."""
    g = ctx.grad_curve
    out: list[Finding] = []
    if g is None or len(g) < ctx.cfg.min_points:
        return out
    top = float(np.max(g.raw))
    at_top = float(np.mean(np.abs(g.raw - top) <= 1e-6 * max(abs(top), 1e-12)))
    if at_top >= 0.2 and len(g) >= 20:
        out.append(Finding("grad_norm_looks_clipped", Severity.WARN, "stable", int(g.steps[0]), None,
                           f"{at_top:.0%} of '{ctx.grad.tag if ctx.grad else ''}' values sit exactly at its maximum "
                           f"{_fmt(top)}: this is the clipped norm. Log the UNCLIPPED global norm "
                           "(torch.nn.utils.clip_grad_norm_ returns it) to choose a threshold.",
                           {"fraction_at_max": at_top, "max": top}))
    if ctx.grad_events:
        worst = max(ctx.grad_events, key=lambda e: e.ratio)
        out.append(Finding("grad_norm_outliers", Severity.INFO, "stable", ctx.grad_events[0].start_step, None,
                           f"{len(ctx.grad_events)} grad-norm outlier(s) above {_fmt(ctx.cfg.grad_spike_ratio)}x the "
                           f"running median; the largest {_fmt(worst.ratio)}x at step {worst.peak_step}.",
                           {"count": len(ctx.grad_events), "max_ratio": worst.ratio, "max_step": worst.peak_step}))
    return out


#: The checks, in order. Ids are stable: JSON readers and report partials use them.
CHECKS: tuple[tuple[str, Check], ...] = (
    ("data", check_data),
    ("nonfinite", check_nonfinite),
    ("early", check_early),
    ("mid", check_mid),
    ("divergence", check_divergence),
    ("progress", check_progress),
    ("grad_norm", check_grad_norm),
)


def run_checks(ctx: RunContext) -> tuple[list[Finding], list[CheckFailure]]:
    findings: list[Finding] = []
    failures: list[CheckFailure] = []
    for check_id, check in CHECKS:
        try:
            found = check(ctx)
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            failures.append(CheckFailure(check_id, ctx.run.id, type(exc).__name__, str(exc)))
            continue
        findings += found
        if check_id == "data" and found:
            break  # nothing else can be judged without a usable train loss
    return findings, failures
