"""The loss going up in the first steps of a run: Adam without warmup (2-5x at steps 1-10), a thrashing start
(playbook §2), measured against the run's calm noise and its own later noise band."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.detect.context import RunContext
from analyzer.detect.curve import rolling_median
from analyzer.evidence import ExcursionEvidence


def contiguous(mask: np.ndarray, i: int) -> int:
    """Length of the run of True in ``mask`` that contains index ``i``."""
    if not mask[i]:
        return 0
    before = np.flatnonzero(~mask[:i])
    after = np.flatnonzero(~mask[i:])
    lo = int(before[-1]) + 1 if before.size else 0
    hi = i + int(after[0]) if after.size else mask.size
    return hi - lo


def _early_grad_ratio(ctx: RunContext) -> float:
    """The grad norm's early p90 over its later median (NaN without a usable grad norm)."""
    g = ctx.grad_curve
    if g is None or len(g) < ctx.cfg.min_points:
        return float("nan")
    early = g.steps <= ctx.early_cut
    if early.sum() < 2 or (~early).sum() < 2:
        return float("nan")
    later = float(np.median(np.abs(g.raw[~early])))
    return float(np.percentile(np.abs(g.raw[early]), 90) / later) if later > 0 else float("inf")


def _noise_top(ctx: RunContext) -> float:
    """The top of the run's own noise band after the early phase (y units): the 99.9th percentile of
    how far points sit above their trailing level. Heavy-tailed noise (small batches, RL) puts single
    points 2-4x above the level; an early rise must stand out from what the rest of the run does."""
    c = ctx.curve
    assert c is not None
    later = c.steps > ctx.early_cut
    if later.sum() < 20:
        return 0.0
    return float(np.percentile((c.y - c.base)[later], 99.9))


@dataclass(frozen=True)
class _Rise:
    """One early rise measured: the point ``index`` (into the curve) stands at ``peak``, ``z`` calm sigmas
    above ``reference``; ``ratio`` is peak / reference in log space (NaN otherwise)."""

    index: int
    reference: float
    peak: float
    ratio: float
    z: float


def _above_initial(ctx: RunContext, early: np.ndarray, grad_led: bool, total: float) -> _Rise | None:
    """Route 1: the highest early point above the initial loss, when it is high enough to count."""
    c, cfg = ctx.curve, ctx.cfg
    assert c is not None
    # the start: the first point, or the median of the first 3 when it is lower (one low first batch is passed
    # over by the curve): a rise at step 1 must not lift the reference it is measured against
    ref0 = c.start
    i = int(early[np.argmax(c.raw[early])])
    peak = float(c.raw[i])
    z_needed = cfg.early_z if grad_led else cfg.early_rise_z
    lasting = contiguous(c.raw >= ref0 + 0.5 * (peak - ref0), i)
    if c.log_space:
        ratio = peak / ref0
        z = float(np.log(ratio) / c.calm_sigma)
        rise_y = float(np.log(ratio))
        above = ratio >= cfg.early_rise_ratio and z >= z_needed
    else:
        ratio = float("nan")
        z = (peak - ref0) / float(c.calm_raw[i])
        rise_y = peak - ref0
        above = (peak - ref0) >= cfg.early_rise_share * total and z >= z_needed
    # A rise that lasts, or that the grad norm leads, is not noise. A one-point rise can be a heavy
    # tail of the noise: it counts only when it stands above the top of the run's own later noise band.
    if not (grad_led or lasting >= cfg.grad_led_min_points):
        above = above and rise_y > _noise_top(ctx)
    return _Rise(i, ref0, peak, ratio, z) if above else None


def _above_best(ctx: RunContext, early: np.ndarray, grad_led: bool, total: float) -> _Rise | None:
    """Route 2: the early point highest above the best so far, when it undoes a real share of what the run
    learns and something besides its height says it is not noise."""
    c, cfg = ctx.curve, ctx.cfg
    assert c is not None
    # "Best so far" is the running minimum of a trailing 3-point median: it follows a steep descent (a
    # centred level runs ahead of it) without taking one low, noisy batch as the best.
    head = c.raw[: early[-1] + 1].copy()
    head[0] = c.first  # one low first batch is passed over (Curve.first)
    best_so_far = np.minimum.accumulate(rolling_median(head, 3))
    rise = c.raw[early] - best_so_far[early]
    k = int(np.argmax(rise))
    i, height = int(early[k]), float(rise[k])
    ref, peak = float(best_so_far[i]), float(c.raw[i])
    z = height / float(c.calm_raw[i])
    lasting = contiguous(c.raw >= ref + 0.5 * height, i)
    # without the grad norm's word, a rise must last and stand far out of the noise
    corroborated = (grad_led and z >= cfg.early_z) or (lasting >= cfg.grad_led_min_points and z >= cfg.spike_z)
    if height / total < cfg.min_undone_share or not corroborated:
        return None
    return _Rise(i, ref, peak, peak / ref if c.log_space else float("nan"), z)


def _evidence(ctx: RunContext, rise: _Rise, early: np.ndarray, total: float) -> ExcursionEvidence:
    """The rise's evidence: from the first early point to where the loss came back to the reference."""
    c = ctx.curve
    assert c is not None
    i, ref, peak = rise.index, rise.reference, rise.peak
    share = (peak - ref) / total
    after = np.flatnonzero(c.raw[i:] <= ref * 1.05 if c.log_space else c.raw[i:] <= ref)
    rec = i + int(after[0]) if after.size else None
    rec_step = int(c.steps[rec]) if rec is not None else None
    end = rec_step if rec_step is not None else int(c.steps[-1])
    first_step = int(c.steps[early[0]])
    return ExcursionEvidence(
        signal=ctx.signal, shape="early_rise", start_step=first_step, peak_step=int(c.steps[i]), end_step=end,
        recovered_step=rec_step, reference=ref, peak=peak, ratio=rise.ratio, share_undone=round(share, 4),
        noise_z=round(rise.z, 2), points=contiguous(c.raw >= ref + 0.5 * (peak - ref), i),
        span_steps=end - first_step, recovered_fraction=1.0 if rec is not None else 0.0,
        lr_at_start=ctx.lr_at(first_step), lr_at_recovery=ctx.lr_at(rec_step) if rec_step is not None else None)


def early_rise(ctx: RunContext) -> ExcursionEvidence | None:
    """The loss going UP in its first ``early_blip_points`` logged points (in the whole early phase when
    the grad norm there is ``early_grad_ratio``x its later level), measured against the run's calm
    noise (the first points' own noise is made of the rise itself). Two routes:
    - above its initial value by ``early_rise_ratio`` and ``early_rise_z`` calm sigmas (``early_z`` with
      early grad-norm outliers) (Adam without warmup: 2-5x at steps 1-10);
    - above its best so far by ``min_undone_share`` of everything the run learns, either with the grad
      norm far above its later level (``early_z`` calm sigmas suffice) or lasting two points and
      ``spike_z`` calm sigmas high (a thrashing start, playbook §2).
    """
    c, cfg = ctx.curve, ctx.cfg
    if c is None or len(c) < cfg.min_points:
        return None
    early = np.flatnonzero(c.steps <= ctx.early_cut)
    early = early[early > 0]
    if early.size == 0:
        return None
    total = max(ctx.total_progress, ctx.progress_floor(0))
    grad_led = _early_grad_ratio(ctx) >= cfg.early_grad_ratio  # NaN compares False
    if not grad_led:
        # the first steps only: later in the early phase the spike and regime detectors judge against
        # the loss's level, and a long noisy early phase would give noise many chances here
        early = early[early < cfg.early_blip_points]
        if early.size == 0:
            return None
    rise = _above_initial(ctx, early, grad_led, total) or _above_best(ctx, early, grad_led, total)
    return _evidence(ctx, rise, early, total) if rise is not None else None
