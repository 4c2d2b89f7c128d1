"""Helpers the checks share: number formatting for messages and turning a measured event into evidence."""

from __future__ import annotations

import numpy as np

from analyzer.detect.context import RunContext
from analyzer.detect.curve import Curve
from analyzer.detect.events import Event
from analyzer.evidence import ExcursionEvidence, Signal

SIGNAL_WORDS = {"train_loss": "train loss", "eval_loss": "eval loss (the train loss is too sparse)",
                "grad_norm": "grad norm"}


def signal_words(ctx: RunContext, signal: Signal | None = None) -> str:
    """Which series decided, in words."""
    if (signal or ctx.signal) == "eval_loss" and ctx.signal == "train_loss":
        return "eval loss (the noisy train loss does not show it clearly)"
    return SIGNAL_WORDS[signal or ctx.signal]


def fmt(x: float | None) -> str:
    """A number for a message: 4 significant digits, scientific when tiny or huge."""
    if x is None or not np.isfinite(x):
        return str(x)
    a = abs(x)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{x:.3g}"
    return f"{x:.4g}"


def fmt_x(ratio: float) -> str:
    """'3.2x' for a finite ratio, '' otherwise (losses that are not positive have no ratio)."""
    return f"{fmt(ratio)}x" if np.isfinite(ratio) else ""


def share_of(ctx: RunContext, ev: Event, curve: Curve | None = None) -> float:
    """The share of the progress learned before ``ev`` that it undid; NaN while the run had learned
    next to nothing (less than ``min_progress_share`` of its start, or within 3 noise sigmas), or when the log
    starts mid-training by its schedule (the progress before it is unknown): a share of almost no progress
    means nothing, and only the ratio counts then."""
    c = curve if curve is not None else ctx.curve
    assert c is not None
    if ctx.log_start.by_schedule:
        return float("nan")  # the log starts mid-training: what the run had learned before it is unknown
    floor = 3.0 * c.calm_sigma * float(c.level_raw[min(ev.start, len(c) - 1)]) if c.log_space else 3.0 * c.calm_sigma
    progress, start = ev.progress_before, c.start
    if c is not ctx.curve and c.first > c.start:
        # an eval loss beside the judged train loss: its first evaluation is the run's earliest held-out loss (the
        # median of its first three spans hundreds of steps of learning)
        progress, start = progress + (c.first - c.start), c.first
    if progress < ctx.cfg.min_progress_share * abs(start) or progress <= floor:
        return float("nan")
    return float(ev.height / progress)


def event_evidence(ctx: RunContext, ev: Event, *, curve: Curve | None = None,
                   signal: Signal | None = None) -> ExcursionEvidence:
    c = curve if curve is not None else ctx.curve
    assert c is not None
    start_step = int(c.steps[ev.start])
    peak_step = int(c.steps[ev.peak])
    rec_step = int(c.steps[ev.recovered]) if ev.recovered is not None else None
    end_step = rec_step if rec_step is not None else int(c.steps[-1])
    grad = ctx.grad_spike_near(start_step, peak_step)
    g_step = g_ratio = lead = None
    if grad is not None and ctx.grad_curve is not None:
        g_step = int(ctx.grad_curve.steps[grad.peak])
        g_ratio = round(grad.ratio, 3)
        lead = peak_step - g_step
    return ExcursionEvidence(
        signal=signal or ctx.signal, shape=ev.shape,  # type: ignore[arg-type]
        start_step=start_step, peak_step=peak_step, end_step=int(c.steps[ev.last]), recovered_step=rec_step,
        reference=ev.reference, peak=ev.peak_value, ratio=ev.ratio, share_undone=round(share_of(ctx, ev, c), 4),
        noise_z=round(ev.z, 2), points=ev.points, span_steps=end_step - start_step,
        recovered_fraction=round(ev.recovered_fraction, 3), lr_at_start=ctx.lr_at(start_step),
        lr_at_recovery=ctx.lr_at(rec_step) if rec_step is not None else None,
        grad_spike_step=g_step, grad_spike_ratio=g_ratio, grad_leads_by_steps=lead)


def _undone(share: float, ctx: RunContext) -> str:
    if not np.isfinite(share) and ctx.log_start.mid_training:
        return "judged by its ratio (the log starts mid-training: what was learned before it is unknown)"
    if not np.isfinite(share):
        return "judged by its ratio (too little progress logged before it to measure a share of)"
    if share > 1:
        return f"above the loss it started from ({share:.1f}x what it had learned)"
    return f"undoing {share:.0%} of what it had learned"


def describe(ctx: RunContext, e: ExcursionEvidence) -> str:
    """One sentence naming where, how big against what, how long, and whether it came back."""
    where = (f"steps {e.start_step:,}-{e.end_step:,}" if e.shape == "regime" and e.end_step > e.start_step
             else f"step {e.peak_step:,}")
    ratio = f" ({fmt_x(e.ratio)})" if np.isfinite(e.ratio) else ""
    if e.shape == "early_rise":
        size = (f"the loss went up from {fmt(e.reference)} to {fmt(e.peak)}{ratio} at step {e.peak_step:,}, "
                f"{e.share_undone:.0%} of all the run learns")
    elif e.shape == "regime":
        size = (f"the smoothed loss sat above its earlier best {fmt(e.reference)}, up to {fmt(e.peak)}{ratio} at "
                f"step {e.peak_step:,}, {_undone(e.share_undone, ctx)}")
    else:
        size = (f"the loss spiked from {fmt(e.reference)} to {fmt(e.peak)}{ratio} at step {e.peak_step:,}, "
                f"{_undone(e.share_undone, ctx)}, for {e.points} logged point(s)")
    if e.recovered_step is not None:
        back = f"back by step {e.recovered_step:,}"
        if e.lr_at_start and e.lr_at_recovery is not None and e.lr_at_recovery < 0.5 * e.lr_at_start:
            back += f" as the LR decayed ({fmt(e.lr_at_start)} -> {fmt(e.lr_at_recovery)})"
    else:
        back = f"not back by the end ({e.recovered_fraction:.0%} of the rise recovered)"
    text = f"{where}: {size}; {back}"
    if e.grad_spike_step is not None and e.grad_spike_ratio is not None:
        lead = e.grad_leads_by_steps or 0
        text += (f"; the grad norm spiked {fmt(e.grad_spike_ratio)}x its running median at step {e.grad_spike_step:,}"
                 + (f", {lead} step(s) before the loss peak" if lead > 0 else ""))
    return text
