"""Whether the eval loss agrees with what the train loss shows: the eval loss, averaged over many held-out
batches at one moment, tells the model's state from one batch's own loss. Used by the instability checks to
confirm a short spike or a regime the train loss's scatter hides, to dismiss a train-loss departure the eval
loss did not share, and to recognise grokking (an eval hump while the train loss sits near zero)."""

from __future__ import annotations

import numpy as np

from analyzer.detect.context import RunContext
from analyzer.detect.curve import Curve
from analyzer.detect.events import Event


def eval_confirms(ctx: RunContext, ev: Event) -> bool:
    """A short train-loss spike the eval loss shows too: an evaluation between the logged point before the spike
    and its recovery stands at least half the spike's height (log units) above the median of the three evaluations
    before it, and ``spike_z`` of the eval loss's calm noise. One train point can be that batch's own loss; the
    eval loss, averaged over many held-out batches at that moment, is the model's."""
    c, e, cfg = ctx.curve, ctx.eval_curve, ctx.cfg
    if c is None or e is None or ctx.signal != "train_loss" or not (c.log_space and e.log_space):
        return False
    lo = int(c.steps[max(ev.start - 1, 0)])
    hi = int(c.steps[ev.recovered]) if ev.recovered is not None else int(c.steps[-1])
    inside = np.flatnonzero((e.steps > lo) & (e.steps <= hi))
    if inside.size == 0 or inside[0] < 3 or not np.isfinite(ev.ratio) or ev.ratio <= 1:
        return False
    before = float(np.median(e.y[inside[0] - 3:inside[0]]))
    rise = float(np.max(e.y[inside])) - before
    return rise >= 0.5 * np.log(ev.ratio) and rise >= cfg.spike_z * e.calm_sigma


def eval_rose_with(ctx: RunContext, ev: Event, height_y: float) -> bool:
    """The eval loss sat up with a train-loss regime that the train loss's own scatter hides: its evaluations inside
    the regime have a median at least half the regime's height (log units) and ``spike_z`` of its calm noise above
    its best before the regime."""
    c, e, cfg = ctx.curve, ctx.eval_curve, ctx.cfg
    if c is None or e is None or ctx.signal != "train_loss" or not (c.log_space and e.log_space):
        return False
    lo = int(c.steps[ev.start])
    hi = int(c.steps[ev.recovered]) if ev.recovered is not None else int(c.steps[-1])
    inside = (e.steps >= lo) & (e.steps <= hi)
    before = e.steps < lo
    if inside.sum() < 2 or not before.any():
        return False
    rise = float(np.median(e.y[inside]) - np.min(e.y[before]))
    return rise >= 0.5 * height_y and rise >= cfg.spike_z * e.calm_sigma


def eval_disagrees(ctx: RunContext, ev: Event, share: float) -> bool:
    """The eval loss, averaged over many batches, did not rise with the (noisier) train loss: the train
    loss's departure is its per-batch noise. The eval must rise beyond 3 of its calm noise sigmas and,
    when both have learned something, undo at least ``eval_agree_share`` of the share of the progress
    the train loss undid. Asked only when ``eval_min_points`` eval points fall inside the departure (a
    short spike between two evaluations is the train loss's to say; a regime between two evaluations
    must leave the next one no better than the last one before it), and only of departures within a
    few of the train loss's own per-batch scatter (``eval_confirm_z`` x its spread): a larger one
    speaks for itself."""
    c, e, cfg = ctx.curve, ctx.eval_curve, ctx.cfg
    if e is None or c is None or len(e) < cfg.min_points:
        return False
    height_y = np.log(ev.peak_value / ev.reference) if c.log_space and ev.reference > 0 else ev.height
    if height_y >= cfg.eval_confirm_z * c.spread:
        return False
    lo = int(c.steps[ev.start])
    hi = int(c.steps[ev.recovered]) if ev.recovered is not None else int(c.steps[-1])
    inside = (e.steps >= lo) & (e.steps <= hi)
    before = e.steps < lo
    if not before.any():
        return False
    best_before = float(np.min(e.raw[before]))
    noise = 3.0 * e.calm_sigma * (best_before if e.log_space else 1.0)  # its calm noise, at its level then
    if inside.sum() < cfg.eval_min_points:
        # a regime between two evaluations: the eval after it kept improving on the one before it
        after = np.flatnonzero(e.steps > hi)
        if ev.shape != "regime" or after.size == 0:
            return False
        last_before = float(e.raw[np.flatnonzero(before)[-1]])
        return float(e.raw[after[0]]) <= last_before + noise
    progress = max(e.start - best_before, 0.0)
    rise = float(np.max(e.raw[inside])) - best_before
    if rise <= noise:
        return True
    if np.isfinite(share) and progress > noise:
        return rise / progress < cfg.eval_agree_share * share
    return False


def grokking(ctx: RunContext, ev: Event, eval_curve: Curve) -> bool:
    """An eval-loss hump while the train loss is near zero, after which the eval loss falls back below where it
    was: memorisation, then generalisation (grokking), not instability. Near zero: the train loss logged during
    the hump (else the last one before it) has a median of at most ``grok_train_share`` of its first value."""
    if ctx.loss is None or ev.recovered is None:
        return False
    ok = np.isfinite(ctx.loss.values)
    steps, values = ctx.loss.steps[ok], ctx.loss.values[ok]
    lo, hi = int(eval_curve.steps[ev.start]), int(eval_curve.steps[ev.recovered])
    during = values[(steps >= lo) & (steps <= hi)]
    if during.size == 0:  # no train point inside the hump: the last one before it
        during = values[steps <= lo][-1:]
    if values.size < 2 or during.size == 0 or not values[0] > 0:
        return False
    memorised = float(np.median(during)) <= ctx.cfg.grok_train_share * float(values[0])
    return memorised and ev.tail_level <= ev.reference
