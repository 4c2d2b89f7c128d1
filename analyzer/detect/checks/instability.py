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

from analyzer.detect.checks.common import SIGNAL_WORDS, describe, event_evidence, fmt, fmt_x
from analyzer.detect.checks.early_rise import early_rise
from analyzer.detect.checks.eval_agreement import eval_confirms, eval_disagrees, eval_rose_with, grokking
from analyzer.detect.checks.periodic import Grid, periodic_grid
from analyzer.detect.context import RunContext
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
    steps = c.steps
    big_enough, shares = _big_enough(ctx, events)
    early = (steps[[ev.start for ev in events]] <= ctx.early_cut).tolist() if events else []
    out = []
    for ev, maybe, is_early, share in zip(events, big_enough.tolist(), early, shares.tolist()):
        phase: Phase = "early" if is_early else "mid"
        if not maybe:  # the common case on a long noisy curve: judged in one vectorised pass
            out.append(Judged(ev, phase, share, False, False))
            continue
        if ev.shape == "regime":
            lasting = ev.points >= cfg.regime_min_points
        else:
            led = ctx.grad_spike_near(int(steps[ev.start]), int(steps[ev.peak])) is not None
            needed = cfg.grad_led_min_points if led else cfg.spike_min_points
            # A spike lasts when it holds half its height for that many points, or when it takes that many
            # points to come back (a sharp peak that decays over several points: a slingshot spike); a one-point
            # blip is back at the next point.
            back = ev.recovered if ev.recovered is not None else len(c)
            lasting = ev.points >= needed or back - ev.start >= needed or eval_confirms(ctx, ev)
        big = (is_big(ctx, ev, share) and _out_of_band(ctx, ev) and not eval_disagrees(ctx, ev, share)
               and not (ctx.signal == "eval_loss" and grokking(ctx, ev, c)))
        out.append(Judged(ev, phase, share, big, lasting))
    return out


def _big_enough(ctx: RunContext, events: tuple[Event, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Which events `is_big` could call big, and each one's `share_of`, for all of them at once (a 1,000,000-point
    periodic curve has tens of thousands of spikes): the same share and ratio tests, vectorised, every share
    computed in `share_of`'s own order of operations (the same floats, to the last bit)."""
    c, cfg = ctx.curve, ctx.cfg
    assert c is not None
    if not events:
        return np.zeros(0, dtype=bool), np.zeros(0)
    start = np.array([ev.start for ev in events])
    height = np.array([ev.height for ev in events])
    ratio = np.array([ev.ratio for ev in events])
    progress = np.array([ev.progress_before for ev in events])
    if ctx.log_start.by_schedule:
        share = np.full(len(events), np.nan)
    else:
        floor = (3.0 * c.calm_sigma * c.level_raw[np.minimum(start, len(c) - 1)] if c.log_space
                 else np.full(len(events), 3.0 * c.calm_sigma))
        known = (progress >= cfg.min_progress_share * abs(c.start)) & (progress > floor)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(known, height / np.where(known, progress, 1.0), np.nan)
    finite = np.isfinite(share)
    by_share = finite & (share >= cfg.min_undone_share)
    by_ratio = np.isfinite(ratio) & (ratio >= cfg.spike_ratio) & (~finite | (share >= cfg.min_share_for_ratio))
    return by_share | by_ratio, share


def _out_of_band(ctx: RunContext, ev: Event) -> bool:
    """A regime stands out of the run's own scatter: its height is at least ``regime_spread_z`` x how far the
    run's points scatter around their level, or the eval loss sat up with it. A noisy run's level wanders;
    measured from the lowest it has dipped to, a later patch of ordinary high points looks like a regime (issue 16)."""
    c = ctx.curve
    assert c is not None
    if ev.shape != "regime":
        return True
    height_y = np.log(ev.peak_value / ev.reference) if c.log_space and ev.reference > 0 else ev.height
    return bool(height_y >= ctx.cfg.regime_spread_z * c.spread) or eval_rose_with(ctx, ev, height_y)


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
        if main.event.shape == "spike" and main.event.points < ctx.cfg.grad_led_min_points and eval_confirms(ctx,
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
