"""Early and mid-training instability: which measured departures matter, and in which phase.

A departure matters when it is out of the run's own noise band (found so by events.py), lasts
(a one-point blip is that batch's own loss), and is big in units that transfer: it undoes at least
``min_undone_share`` of the progress learned before it, or it reaches ``spike_ratio`` x its level
while undoing at least ``min_share_for_ratio`` of the progress (a tiny-loss wiggle, however large
its ratio, does not). Before a run has learned anything, a share means nothing and only the ratio
counts. The phase is where it starts: the first ``early_fraction`` of training is early.
A regime (a sustained stretch above the best level) absorbs the spikes inside it, so a 2,800-step
unstable regime is reported as one regime, not as 8-point events (spec/failure-shapes.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from analyzer.detect.checks.common import SIGNAL_WORDS, describe, event_evidence, fmt, fmt_x, share_of
from analyzer.detect.context import RunContext
from analyzer.detect.curve import Curve, rolling_median
from analyzer.detect.events import Event
from analyzer.evidence import CountEvidence, ExcursionEvidence, PatternEvidence
from analyzer.types import Finding, Severity

Phase = Literal["early", "mid"]


@dataclass(frozen=True)
class Judged:
    """A measured event with what the judgement made of it."""

    event: Event
    phase: Phase
    share: float  # NaN when the run had learned nothing before it
    big: bool  # big enough in transferable units
    lasting: bool  # lasted more than one logged point (spikes) / regime_min_points (regimes)


def is_big(ctx: RunContext, ev: Event, share: float) -> bool:
    """Big in units that transfer: a share of the progress, or a ratio with a floor on the share."""
    cfg = ctx.cfg
    if np.isfinite(share) and share >= cfg.min_undone_share:
        return True
    by_ratio = np.isfinite(ev.ratio) and ev.ratio >= cfg.spike_ratio
    return bool(by_ratio and (not np.isfinite(share) or share >= cfg.min_share_for_ratio))


def judge_events(ctx: RunContext) -> list[Judged]:
    """Every spike and regime of the judged curve, judged (big? lasting? which phase?); once per run."""
    return ctx.remember("judged_events", lambda: _judge_events(ctx))


def _judge_events(ctx: RunContext) -> list[Judged]:
    c, cfg = ctx.curve, ctx.cfg
    if c is None:
        return []
    events = (*ctx.spikes, *ctx.regimes)
    steps = c.steps.tolist()
    big_enough = _big_enough(ctx, events)
    out = []
    for ev, maybe in zip(events, big_enough):
        phase: Phase = "early" if steps[ev.start] <= ctx.early_cut else "mid"
        if not maybe:  # the common case on a long noisy curve: judged in one vectorised pass
            out.append(Judged(ev, phase, share_of(ctx, ev), False, False))
            continue
        share = share_of(ctx, ev)
        if ev.shape == "regime":
            lasting = ev.points >= cfg.regime_min_points
        else:
            led = ctx.grad_spike_near(steps[ev.start], steps[ev.peak]) is not None
            needed = cfg.grad_led_min_points if led else cfg.spike_min_points
            # A spike lasts when it holds half its height for that many points, or when it takes that many
            # points to come back (a sharp peak that decays over several points: a slingshot spike); a one-point
            # blip is back at the next point.
            back = ev.recovered if ev.recovered is not None else len(c)
            lasting = ev.points >= needed or back - ev.start >= needed or _eval_confirms(ctx, ev)
        big = (is_big(ctx, ev, share) and _out_of_band(ctx, ev) and not _eval_disagrees(ctx, ev, share)
               and not (ctx.signal == "eval_loss" and grokking(ctx, ev, c)))
        out.append(Judged(ev, phase, share, big, lasting))
    return out


def _eval_confirms(ctx: RunContext, ev: Event) -> bool:
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


def _big_enough(ctx: RunContext, events: tuple[Event, ...]) -> np.ndarray:
    """Which events `is_big` could call big, for all of them at once (a 1,000,000-point periodic curve has tens
    of thousands of spikes): the same share and ratio tests as `share_of` and `is_big`, vectorised."""
    c, cfg = ctx.curve, ctx.cfg
    assert c is not None
    if not events:
        return np.zeros(0, dtype=bool)
    start = np.array([ev.start for ev in events])
    height = np.array([ev.height for ev in events])
    ratio = np.array([ev.ratio for ev in events])
    progress = np.array([ev.progress_before for ev in events])
    if ctx.log_start.by_schedule:
        share = np.full(len(events), np.nan)
    else:
        calm = c.calm_sigma * c.level_raw[np.minimum(start, len(c) - 1)] if c.log_space else np.full(len(events),
                                                                                                     c.calm_sigma)
        known = (progress >= cfg.min_progress_share * abs(c.start)) & (progress > 3.0 * calm)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(known, height / np.where(known, progress, 1.0), np.nan)
    finite = np.isfinite(share)
    by_share = finite & (share >= cfg.min_undone_share)
    by_ratio = np.isfinite(ratio) & (ratio >= cfg.spike_ratio) & (~finite | (share >= cfg.min_share_for_ratio))
    return by_share | by_ratio


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


def _out_of_band(ctx: RunContext, ev: Event) -> bool:
    """A regime stands out of the run's own scatter: its height is at least ``regime_spread_z`` x how far the
    run's points scatter around their level, or the eval loss sat up with it. A noisy run's level wanders;
    measured from the lowest it has dipped to, a later patch of ordinary high points looks like a regime (issue 16)."""
    c = ctx.curve
    assert c is not None
    if ev.shape != "regime":
        return True
    height_y = np.log(ev.peak_value / ev.reference) if c.log_space and ev.reference > 0 else ev.height
    return bool(height_y >= ctx.cfg.regime_spread_z * c.spread) or _eval_rose_with(ctx, ev, height_y)


def _eval_rose_with(ctx: RunContext, ev: Event, height_y: float) -> bool:
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


def _eval_disagrees(ctx: RunContext, ev: Event, share: float) -> bool:
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


def _fold(ctx: RunContext, events: list[Judged]) -> list[list[Judged]]:
    """Group significant events into episodes: overlapping events are one (a regime absorbs the spikes
    inside it), and so is an event that starts before the calm after the previous episode has lasted
    as long as that episode (a thrashing regime dips back to its old level between bursts)."""
    c = ctx.curve
    assert c is not None
    last = len(c) - 1
    groups: list[list[Judged]] = []
    spans: list[tuple[int, int]] = []  # (first step, step where it was back)
    for j in sorted(events, key=lambda j: (j.event.start, j.event.shape != "regime")):
        lo = int(c.steps[j.event.start])
        hi = int(c.steps[j.event.recovered if j.event.recovered is not None else last])
        if spans and lo <= spans[-1][1] + (spans[-1][1] - spans[-1][0]):
            groups[-1].append(j)
            spans[-1] = (spans[-1][0], max(spans[-1][1], hi))
        else:
            groups.append([j])
            spans.append((lo, hi))
    return groups


def _main(group: list[Judged]) -> Judged:
    """The event that describes a group: its regime if it has one, else its largest spike."""
    regimes = [j for j in group if j.event.shape == "regime"]
    pool = regimes or group
    return max(pool, key=lambda j: (j.event.height, j.event.points))


def _episode_evidence(ctx: RunContext, group: list[Judged]) -> ExcursionEvidence:
    """The evidence of an episode: its main event's numbers over the whole episode's span."""
    c = ctx.curve
    assert c is not None
    ev = event_evidence(ctx, _main(group).event)
    first = min(j.event.start for j in group)
    never = any(j.event.recovered is None for j in group)
    back = None if never else max(j.event.recovered for j in group if j.event.recovered is not None)
    start_step = int(c.steps[first])
    rec_step = int(c.steps[back]) if back is not None else None
    end_step = rec_step if rec_step is not None else int(c.steps[-1])
    if len(group) == 1:
        return ev
    return replace(ev, start_step=start_step, recovered_step=rec_step,
                   end_step=int(c.steps[max(j.event.last for j in group)]), span_steps=end_step - start_step,
                   lr_at_start=ctx.lr_at(start_step), lr_at_recovery=ctx.lr_at(rec_step) if rec_step is not None
                   else None, recovered_fraction=ev.recovered_fraction if never else 1.0)


def _contiguous(mask: np.ndarray, i: int) -> int:
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
    calm = c.calm_raw
    total = max(ctx.total_progress, ctx.progress_floor(0))
    grad_led = _early_grad_ratio(ctx) >= cfg.early_grad_ratio  # NaN compares False
    if not grad_led:
        # the first steps only: later in the early phase the spike and regime detectors judge against
        # the loss's level, and a long noisy early phase would give noise many chances here
        early = early[early < cfg.early_blip_points]
        if early.size == 0:
            return None
    # the start: the first point, or the median of the first 3 when it is lower (one low first batch is passed
    # over by the curve): a rise at step 1 must not lift the reference it is measured against
    ref0 = c.start
    # route 1: above the initial loss
    i = int(early[np.argmax(c.raw[early])])
    peak = float(c.raw[i])
    z_needed = cfg.early_z if grad_led else cfg.early_rise_z
    lasting = _contiguous(c.raw >= ref0 + 0.5 * (peak - ref0), i)
    if c.log_space:
        ratio = peak / ref0
        z = float(np.log(ratio) / c.calm_sigma)
        rise_y = float(np.log(ratio))
        above_initial = ratio >= cfg.early_rise_ratio and z >= z_needed
    else:
        ratio = float("nan")
        z = (peak - ref0) / float(calm[i])
        rise_y = peak - ref0
        above_initial = (peak - ref0) >= cfg.early_rise_share * total and z >= z_needed
    # A rise that lasts, or that the grad norm leads, is not noise. A one-point rise can be a heavy
    # tail of the noise: it counts only when it stands above the top of the run's own later noise band.
    if not (grad_led or lasting >= cfg.grad_led_min_points):
        above_initial = above_initial and rise_y > _noise_top(ctx)
    ref = ref0
    if not above_initial:
        # route 2: above the best so far, by a real share of what the run learns. "Best so far" is the
        # running minimum of a trailing 3-point median: it follows a steep descent (a centred level runs
        # ahead of it) without taking one low, noisy batch as the best.
        head = c.raw[: early[-1] + 1].copy()
        head[0] = c.first  # one low first batch is passed over (Curve.first)
        best_so_far = np.minimum.accumulate(rolling_median(head, 3))
        rise = c.raw[early] - best_so_far[early]
        k = int(np.argmax(rise))
        i, height = int(early[k]), float(rise[k])
        ref, peak = float(best_so_far[i]), float(c.raw[i])
        z = height / float(calm[i])
        lasting = _contiguous(c.raw >= ref + 0.5 * height, i)
        # without the grad norm's word, a rise must last and stand far out of the noise
        corroborated = (grad_led and z >= cfg.early_z) or (lasting >= cfg.grad_led_min_points and z >= cfg.spike_z)
        if height / total < cfg.min_undone_share or not corroborated:
            return None
        ratio = peak / ref if c.log_space else float("nan")
    share = (peak - ref) / total
    after = np.flatnonzero(c.raw[i:] <= ref * 1.05 if c.log_space else c.raw[i:] <= ref)
    rec = i + int(after[0]) if after.size else None
    rec_step = int(c.steps[rec]) if rec is not None else None
    end = rec_step if rec_step is not None else int(c.steps[-1])
    first_step = int(c.steps[early[0]])
    return ExcursionEvidence(
        signal=ctx.signal, shape="early_rise", start_step=first_step, peak_step=int(c.steps[i]), end_step=end,
        recovered_step=rec_step, reference=ref, peak=peak, ratio=ratio, share_undone=round(share, 4),
        noise_z=round(z, 2), points=_contiguous(c.raw >= ref + 0.5 * (peak - ref), i),
        span_steps=end - first_step, recovered_fraction=1.0 if rec is not None else 0.0,
        lr_at_start=ctx.lr_at(first_step), lr_at_recovery=ctx.lr_at(rec_step) if rec_step is not None else None)


@dataclass(frozen=True)
class Grid:
    """A per-epoch period in the loss: where in each period the loss jumps up.

    Attributes:
        period: the period in logged points. phase: the point within a period where the jump is.
        acf: the detrended loss's autocorrelation at that period (how regular it is).
    """

    period: int
    phase: int
    acf: float
    tolerance: int

    def on(self, index: int) -> bool:
        d = (index - self.phase) % self.period
        return min(d, self.period - d) <= self.tolerance


def periodic_grid(ctx: RunContext) -> Grid | None:
    """A per-epoch pattern (data order, epoch-averaged logging): the loss minus its level repeats with a
    period (a clear autocorrelation peak that recurs at twice the lag). Found with the FFT in
    O(n log n); looked for only when a run has events that would otherwise be called instability."""
    c, cfg = ctx.curve, ctx.cfg
    assert c is not None
    n = len(c)
    if n < 4 * cfg.periodic_min_events:
        return None
    # the detrended loss, lightly smoothed so that per-batch noise does not drown the period
    r = rolling_median(c.y - c.level, max(3, c.window // 4), center=True)
    r = r - r.mean()
    spec = np.fft.rfft(r, 2 * n)
    acf = np.fft.irfft(spec * np.conj(spec))[:n]
    if acf[0] <= 0:
        return None
    acf = acf / acf[0]
    hi = n // cfg.periodic_min_events  # at least this many periods in the run
    if hi < 6:
        return None
    lags = np.arange(3, hi)
    inner = acf[3:hi]
    peaks = lags[1:-1][(inner[1:-1] >= inner[:-2]) & (inner[1:-1] >= inner[2:])]
    if peaks.size == 0:
        return None
    lag = int(peaks[np.argmax(acf[peaks])])
    if acf[lag] < cfg.periodic_acf or 2 * lag >= n or acf[2 * lag] < 0.5 * acf[lag]:
        return None
    profile = np.array([r[k::lag].mean() for k in range(lag)])
    jump = int(np.argmax(profile - np.roll(profile, 1)))
    return Grid(lag, jump, float(acf[lag]), max(2, int(round(cfg.periodic_cv * lag))))


def _significant(ctx: RunContext) -> tuple[list[list[Judged]], int, list[Judged], Grid | None]:
    """(episodes, one-point blips, events that are a per-epoch pattern, the pattern's grid); once per run."""
    return ctx.remember("significant", lambda: _find_significant(ctx))


def _find_significant(ctx: RunContext) -> tuple[list[list[Judged]], int, list[Judged], Grid | None]:
    c = ctx.curve
    assert c is not None
    judged = judge_events(ctx)
    sig = [j for j in judged if j.big and j.lasting]
    grid = periodic_grid(ctx) if sig else None
    pattern: list[Judged] = []
    if grid is not None:
        on_grid = [j for j in sig if grid.on(j.event.start)]
        shares = [j.share for j in on_grid if np.isfinite(j.share)]
        if not shares or float(np.median(shares)) < ctx.cfg.periodic_max_share:
            pattern = on_grid
            sig = [j for j in sig if j not in on_grid]
    blips = sum(1 for j in judged if j.big and not j.lasting and j.event.shape == "spike")
    return _fold(ctx, sig), blips, pattern, grid


def check_early(ctx: RunContext) -> list[Finding]:
    """Early instability: a departure that starts in the first part of training, or the loss rising
    above its initial value there."""
    if ctx.curve is None or len(ctx.curve) < ctx.cfg.min_points:
        return []
    groups, _, _, grid = _significant(ctx)
    early = [g for g in groups if g[0].phase == "early"]
    rise = early_rise(ctx)
    if rise is not None:
        grid = grid or periodic_grid(ctx)
        if grid is not None and grid.on(ctx.curve.index_of_step(rise.peak_step)):
            rise = None  # the first epoch boundary of a per-epoch pattern
    if not early and rise is None:
        return []
    if early:
        main = _main(early[0])
        ev = _episode_evidence(ctx, early[0])
        if rise is not None and main.event.shape == "spike" and rise.peak >= ev.peak:
            ev = rise
    else:
        assert rise is not None
        ev = rise
    n_events = sum(len(g) for g in early)
    extra = f" ({n_events} departures in the early phase)" if n_events > 1 else ""
    tail = ("unstable-then-recovered runs often end up slow; warmup usually fixes this."
            if ev.recovered_step is not None else "it did not come back.")
    msg = (f"Early instability in the first {ctx.early_cut:,} steps ({SIGNAL_WORDS[ctx.signal]}): "
           f"{describe(ctx, ev)}{extra}. The playbook's early instability (§2): {tail}")
    return [Finding("early_instability", Severity.WARN, "early_instability", ev.start_step, ev.recovered_step,
                    msg, ev)]


def check_mid(ctx: RunContext) -> list[Finding]:
    """Mid-training instability: a departure after the early phase, one finding per regime or spike."""
    c = ctx.curve
    if c is None or len(c) < ctx.cfg.min_points:
        return []
    groups, blips, pattern, grid = _significant(ctx)
    mid = [g for g in groups if g[0].phase == "mid"]
    out: list[Finding] = []
    if pattern and grid is not None:
        first, last = pattern[0].event, pattern[-1].event
        gap = float(np.median(np.diff(c.steps))) * grid.period
        pat = PatternEvidence(len(pattern), round(gap, 1), round(grid.acf, 3))
        out.append(Finding("periodic_pattern", Severity.INFO, "stable", int(c.steps[first.start]),
                           int(c.steps[last.last]),
                           f"{len(pattern)} loss bump(s) at the same point of a ~{gap:,.0f}-step period (the "
                           f"detrended loss repeats with autocorrelation {grid.acf:.2f}): a per-epoch pattern (data "
                           "order, epoch-averaged logging), not instability.", pat))
    for g in mid:
        main = _main(g)
        ev = _episode_evidence(ctx, g)
        more = f" ({len(g) - 1} more departure(s) inside it)" if len(g) > 1 else ""
        if main.event.shape == "spike" and main.event.points < ctx.cfg.grad_led_min_points and _eval_confirms(ctx,
                                                                                                         main.event):
            more += "; the eval loss rose with it (not one batch's own loss)"
        kind = "an unstable regime" if main.event.shape == "regime" else "a loss spike"
        out.append(Finding("mid_instability", Severity.WARN, "mid_instability", ev.start_step, ev.recovered_step,
                           f"Mid-training instability, {kind} ({SIGNAL_WORDS[ctx.signal]}): {describe(ctx, ev)}"
                           f"{more}.", ev))
    if blips:
        first_blip = next(j.event for j in judge_events(ctx) if j.big and not j.lasting)
        out.append(Finding("one_point_blips", Severity.INFO, "stable", int(c.steps[first_blip.start]), None,
                           f"{blips} one-point loss blip(s) that came straight back (each is that batch's own "
                           f"loss, e.g. {fmt(first_blip.peak_value)}{' = ' + fmt_x(first_blip.ratio) if np.isfinite(first_blip.ratio) else ''}"
                           " its level); not instability.",
                           CountEvidence(blips, int(c.steps[first_blip.start]))))
    return out
