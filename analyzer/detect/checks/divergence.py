"""Divergence without NaN: how a run ENDED, judged from its tail against its start and its best.

Four shapes end a run (spec/failure-shapes.md); each needs the run to end unrecovered:
- explosion: the loss ends far above where it started, or loses most of what it learned and does not
  come back (thrashing high, not falling);
- collapse: after learning, a jump to a flat plateau that undoes most of the progress, often with the
  grad norm dropping to a floor (a dead network); the plateau can sit below the initial loss;
- dead after a blow-up: the loss explodes in the first steps, then sits flat: nothing learned after;
- regression: a run that never learned and ended well above where it started.
A step change that is still coming back, or that undid less than ``collapse_share`` of the
progress, is an instability (instability.py), not a divergence.
"""

from __future__ import annotations

import numpy as np

from analyzer.detect.checks.common import SIGNAL_WORDS, fmt
from analyzer.detect.context import RunContext
from analyzer.evidence import DivergenceEvidence
from analyzer.types import Finding, Severity


def _grad_drop(ctx: RunContext, start_step: int, tail_start_step: int) -> float | None:
    """Median grad norm before ``start_step`` over its median from ``tail_start_step`` on."""
    g = ctx.grad_curve
    if g is None or len(g) < ctx.cfg.min_points:
        return None
    before = g.raw[g.steps < start_step]
    after = g.raw[g.steps >= tail_start_step]
    if before.size < 3 or after.size < 3:
        return None
    denom = float(np.median(np.abs(after)))
    return float(np.median(np.abs(before)) / denom) if denom > 0 else float("inf")


def check_divergence(ctx: RunContext) -> list[Finding]:
    c, cfg = ctx.curve, ctx.cfg
    if c is None or len(c) < cfg.min_points:
        return []
    n = len(c)
    tail = max(3, int(n * cfg.tail_fraction))
    # a jump in the last part of the log that never came back: the tail is what came after it
    late = [e.start for e in (*ctx.spikes, *ctx.regimes) if e.recovered is None and n - tail < e.start <= n - 3]
    if late:
        tail = n - min(late)
    final = float(np.median(c.raw[-tail:]))
    level = c.level_raw
    best_i = int(np.argmin(level))
    best = float(level[best_i])
    initial = c.start
    learned = initial - best
    noise = float(np.median(c.sigma_raw[-tail:]))
    magnitude = max(abs(initial), 3 * noise, 1e-300)
    half = max(1, tail // 2)
    tail_change = float(np.median(c.raw[-tail:-tail + half]) - np.median(c.raw[-half:]))  # > 0: falling

    def finding(mode: str, start_i: int, text: str, share: float, rec: float, slope: float,
                grad_drop: float | None = None, peak_over_initial: float | None = None) -> list[Finding]:
        ev = DivergenceEvidence(ctx.signal, mode, int(c.steps[start_i]), initial, best,  # type: ignore[arg-type]
                                int(c.steps[best_i]), final, round(share, 4), round(rec, 3), round(slope, 3),
                                grad_drop, peak_over_initial)
        return [Finding(f"divergence_{mode}", Severity.FAIL, "divergence", int(c.steps[start_i]), None,
                        f"Divergence ({SIGNAL_WORDS[ctx.signal]}): {text}", ev)]

    # 1. ended far above where it started
    exploded = (final >= cfg.explode_ratio * initial if c.log_space
                else final - initial >= (cfg.explode_ratio - 1) * magnitude)
    if exploded:
        above = np.flatnonzero(level > initial)
        start_i = int(above[0]) if above.size else best_i
        return finding("explosion", start_i,
                       f"the loss exploded and never came back: it ended at {fmt(final)}, "
                       + (f"{fmt(final / initial)}x " if c.log_space else "far above ")
                       + f"its initial {fmt(initial)}.", (final - best) / max(learned, noise, 1e-300), 0.0,
                       tail_change / max(final - best, 1e-300))

    made_progress = learned > max(cfg.min_progress_share * abs(initial), 3 * noise)
    # 2. never learned, and ended above where it started (the first value counts: a fine-tune starts low)
    if not made_progress:
        ref = min(c.first, initial)
        worse = (final >= cfg.regress_ratio * ref if c.log_space
                 else final - ref >= (cfg.regress_ratio - 1) * max(abs(ref), 3 * noise))
        if worse and final - ref > 2 * noise and _corroborated(ctx):
            return finding("regression", 0,
                           f"the run never learned: it ended at {fmt(final)}, "
                           + (f"{fmt(final / ref)}x " if c.log_space else "above ")
                           + f"where it started ({fmt(ref)}), and never got meaningfully below that.",
                           0.0, 0.0, 0.0)

    # 3. an early blow-up, then nothing learned
    blow = _dead_after_blowup(ctx, initial)
    if blow is not None:
        peak_i, peak_ratio, decline = blow
        return finding("dead_after_blowup", peak_i,
                       f"the loss blew up to {fmt(float(c.raw[peak_i]))} ({fmt(peak_ratio)}x its initial "
                       f"{fmt(initial)}) at step {int(c.steps[peak_i]):,}, then sat flat: it fell only "
                       f"{decline:.0%} of the initial loss in the rest of the run. Nothing was learned after the "
                       "blow-up (\"it settled\" is wrong).", 0.0, 0.0, 0.0, peak_over_initial=peak_ratio)

    # 4. learned, then lost most of it and did not come back
    if best_i >= n - tail or not made_progress:
        return []
    jump = final - best
    share = jump / learned
    if share < cfg.collapse_share or tail_change > cfg.flat_tail_share * jump:
        return []  # undid less than collapse_share, or still coming back: instability.py's to judge
    after = level[best_i:]
    peak = float(np.max(after))
    rec = float(np.clip((peak - final) / (peak - best), 0.0, 1.0)) if peak > best else 0.0
    left = np.flatnonzero(level[best_i:] > best + 0.5 * jump)
    start_i = best_i + int(left[0]) if left.size else best_i
    grad_drop = _grad_drop(ctx, int(c.steps[start_i]), int(c.steps[-tail]))
    flat = abs(tail_change) <= cfg.flat_tail_share * jump
    dead = grad_drop is not None and grad_drop >= cfg.grad_floor_ratio
    slope = tail_change / jump
    if flat or dead:
        text = (f"after reaching {fmt(best)} (step {int(c.steps[best_i]):,}) the loss jumped to a flat plateau at "
                f"{fmt(final)} from step {int(c.steps[start_i]):,}, undoing {share:.0%} of what it had learned, "
                "and never came back")
        if dead:
            text += f"; the grad norm fell {fmt(grad_drop)}x to a floor at the same time (a dead network)"
        if final < initial:
            text += f" (still below the initial {fmt(initial)}: a collapse to a trivial solution)"
        return finding("collapse", start_i, text + ".", share, rec, slope, grad_drop)
    return finding("explosion", start_i,
                   f"after reaching {fmt(best)} (step {int(c.steps[best_i]):,}) the loss rose from step "
                   f"{int(c.steps[start_i]):,} and stayed high: it ended at {fmt(final)}, undoing {share:.0%} of what "
                   "it had learned, and is not coming back.", share, rec, slope, grad_drop)


def _corroborated(ctx: RunContext) -> bool:
    """A regression judged on the eval loss (sparse train loss) needs the train loss not to disagree."""
    if ctx.signal != "eval_loss" or ctx.loss is None:
        return True
    v = ctx.loss.values[np.isfinite(ctx.loss.values)]
    return v.size < 2 or bool(v[-1] >= v[0])


def _dead_after_blowup(ctx: RunContext, initial: float) -> tuple[int, float, float] | None:
    """(peak index, peak / initial, decline after) for an early blow-up followed by a flat run."""
    c, cfg = ctx.curve, ctx.cfg
    assert c is not None
    if not c.log_space:
        return None
    early = np.flatnonzero(c.steps <= ctx.early_cut)
    if early.size == 0:
        return None
    ref = min(c.first, initial)
    peak_i = int(early[np.argmax(c.raw[early])])
    ratio = float(c.raw[peak_i] / ref)
    if ratio < cfg.blowup_ratio:
        return None
    after = c.level_raw[peak_i + c.window:]
    if after.size < max(cfg.min_points, 3 * c.window // 2):
        return None
    settled = float(np.median(after[: max(3, after.size // 10)]))
    decline = (settled - float(np.min(after))) / ref
    if settled > cfg.explode_ratio * ref or decline >= cfg.dead_progress_share:
        return None  # still high (the explosion check's), or learned after the blow-up: early instability
    return peak_i, ratio, max(decline, 0.0)
