"""Findings that are worth a look but are not instability: no progress, grad-norm outliers, a norm
that is already clipped, and overfitting."""

from __future__ import annotations

import numpy as np

from analyzer.detect.checks.common import fmt
from analyzer.detect.checks.eval_agreement import grokking
from analyzer.detect.context import RunContext
from analyzer.evidence import ClippedNormEvidence, CountEvidence, OverfitEvidence, ProgressEvidence
from analyzer.types import Finding, Severity


def check_progress(ctx: RunContext) -> list[Finding]:
    """A log from the start of training whose loss never fell: nothing unstable to see, nothing learned.

    The same ratio that makes an LR sweep's trial infeasible (best >= infeasible_ratio x the initial
    loss; initial = the median of the first 3 points, robust to one odd first batch). A log that
    starts late (a resumed job, the tail of a long run) can be flat at convergence: not judged.
    """
    c, cfg = ctx.curve, ctx.cfg
    if c is None or len(c) < cfg.min_points or not c.log_space or ctx.judged is None:
        return []
    if not np.isfinite(ctx.judged.values).all():
        return []  # NaN/inf: check_nonfinite's and check_divergence's to judge
    if int(c.steps[0]) > max(10, int(0.01 * int(c.steps[-1]))) or ctx.log_start.mid_training:
        return []
    initial = c.start
    best_i = int(np.argmin(c.level))
    best = float(c.level_raw[best_i])
    if best < cfg.infeasible_ratio * initial:
        return []
    ev = ProgressEvidence(initial, best, int(c.steps[best_i]), best / initial, int(c.steps[-1] - c.steps[0]),
                          cfg.infeasible_ratio)
    return [Finding("no_progress", Severity.WARN, "stable", int(c.steps[0]), None,
                    f"No progress: over {ev.steps:,} steps the loss never fell below {cfg.infeasible_ratio:g}x its "
                    f"initial {fmt(initial)} (best {fmt(best)} at step {ev.best_step:,}). Nothing unstable to "
                    "judge, but nothing learned: an LR sweep would count this trial infeasible. Look for an LR far "
                    "too low, dead units after an early blow-up (see grad-norm outliers), or labels the model "
                    "cannot fit.", ev)]


def check_grad_norm(ctx: RunContext) -> list[Finding]:
    """Grad-norm outliers (context for clipping) and a logged norm that looks already clipped."""
    g, cfg = ctx.grad_curve, ctx.cfg
    out: list[Finding] = []
    if g is None or len(g) < cfg.min_points:
        return out
    top = float(np.max(g.raw))
    at_top = float(np.mean(np.abs(g.raw - top) <= 1e-6 * max(abs(top), 1e-12)))
    if at_top >= 0.2 and len(g) >= 20:
        tag = ctx.grad.tag if ctx.grad else ""
        out.append(Finding("grad_norm_looks_clipped", Severity.WARN, "stable", int(g.steps[0]), None,
                           f"{at_top:.0%} of '{tag}' values sit exactly at its maximum {fmt(top)}: this is the "
                           "clipped norm. Log the UNCLIPPED global norm (torch.nn.utils.clip_grad_norm_ returns it) "
                           "to choose a threshold.", ClippedNormEvidence(round(at_top, 4), top)))
    if ctx.grad_spikes:
        worst = max(ctx.grad_spikes, key=lambda e: e.ratio)
        out.append(Finding("grad_norm_outliers", Severity.INFO, "stable", int(g.steps[ctx.grad_spikes[0].start]), None,
                           f"{len(ctx.grad_spikes)} grad-norm outlier(s) above {fmt(cfg.grad_spike_ratio)}x the "
                           f"running median; the largest {fmt(worst.ratio)}x at step {int(g.steps[worst.peak]):,}. "
                           "On their own (the loss did not respond) they are not instability, but a clip "
                           "threshold would cap them.",
                           CountEvidence(len(ctx.grad_spikes), int(g.steps[ctx.grad_spikes[0].start]),
                                         round(worst.ratio, 3), int(g.steps[worst.peak]))))
    return out


def check_grokking(ctx: RunContext) -> list[Finding]:
    """An eval-loss hump while the train loss sat near zero, the eval loss falling back below where it was:
    memorisation, then generalisation (info; the instability checks leave it out)."""
    if ctx.signal == "eval_loss" and ctx.curve is not None:
        curve, events = ctx.curve, (*ctx.spikes, *ctx.regimes)
    elif ctx.eval_curve is not None:
        curve, events = ctx.eval_curve, ctx.eval_regimes
    else:
        return []
    for ev in sorted(events, key=lambda e: -e.height):
        if ev.shape == "regime" and grokking(ctx, ev, curve):
            start, back = int(curve.steps[ev.start]), int(curve.steps[ev.recovered or ev.last])
            return [Finding("grokking", Severity.INFO, "stable", start, back,
                            f"The eval loss rose from {fmt(ev.reference)} to {fmt(ev.peak_value)} (steps {start:,}-"
                            f"{back:,}) while the train loss sat near zero, then fell back below where it was: "
                            "memorisation, then generalisation (grokking), not instability.",
                            CountEvidence(1, start))]
    return []


def check_overfit(ctx: RunContext) -> list[Finding]:
    """Eval loss rising while the train loss keeps falling: overfitting, not instability (info)."""
    e, c, cfg = ctx.eval_curve, ctx.curve, ctx.cfg
    if e is None or c is None or len(e) < 4 or len(c) < cfg.min_points or not e.log_space:
        return []
    best_i = int(np.argmin(e.level))
    tail = max(2, len(e) // 5)
    final = float(np.median(e.raw[-tail:]))
    best = float(e.level_raw[best_i])
    if best_i >= len(e) - tail or final < cfg.overfit_rise * best:
        return []
    train_at_best = float(c.level_raw[c.index_of_step(int(e.steps[best_i]))])
    train_final = float(np.median(c.raw[-max(3, len(c) // 10):]))
    if train_final >= train_at_best:
        return []
    ev = OverfitEvidence(best, int(e.steps[best_i]), final, train_at_best, train_final)
    return [Finding("overfitting", Severity.INFO, "stable", int(e.steps[best_i]), None,
                    f"The eval loss rose from its best {fmt(best)} (step {ev.eval_best_step:,}) to {fmt(final)} while "
                    f"the train loss kept falling ({fmt(train_at_best)} -> {fmt(train_final)}): overfitting (or a "
                    "train/eval mismatch), not instability. The best checkpoint is not the last (playbook §7).", ev)]
