"""Divergence without NaN: how a run ENDED, judged from its tail against its start and its best.

The shapes that end a run (spec/failure-shapes.md), each unrecovered at the end of the log:
- explosion: the loss ends far above where it started (``explode_ratio``), or above its start and
  not coming down;
- collapse: after learning, a jump that undoes at least ``collapse_share`` of the progress to a DEAD
  plateau: the grad norm falls ``grad_floor_ratio``x to a floor, or the loss's own noise collapses
  (a network that outputs a constant sees no batch-to-batch variation); the plateau can sit below the
  initial loss (the label prior, the unigram entropy);
- dead after a blow-up: the loss blows up ``blowup_ratio``x above its start, then learns nothing;
- dead network: the grad norm falls to a floor while the loss never gets below where it started;
- regression: a run that never learned and ended well above where it started.
A jump that is still noisy and alive (an LR bump, a resume that reset the scheduler), coming back or
not, is an instability (instability.py), not a divergence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from analyzer.detect.chance import ChancePlateau, chance_level, pinned_at_chance
from analyzer.detect.checks.common import SIGNAL_WORDS, fmt
from analyzer.detect.context import RunContext
from analyzer.detect.curve import Curve
from analyzer.evidence import DivergenceEvidence
from analyzer.types import Finding, FindingKind, Severity


def _grad_drop(ctx: RunContext, start_step: int, tail_start_step: int, *, peak: bool = False) -> float | None:
    """The grad norm before ``start_step`` (its median there, or with ``peak`` the highest its trailing
    median reached) over its median from ``tail_start_step`` on: how far it fell."""
    g = ctx.grad_curve
    if g is None or len(g) < ctx.cfg.min_points:
        return None
    early = g.steps < start_step
    after = np.abs(g.raw[g.steps >= tail_start_step])
    if early.sum() < 3 or after.size < 3:
        return None
    before = float(np.max(np.exp(g.base[early]))) if peak else float(np.median(np.abs(g.raw[early])))
    denom = float(np.median(after))
    return before / denom if denom > 0 else float("inf")


_KIND: dict[str, FindingKind] = {"explosion": "divergence_explosion", "collapse": "divergence_collapse",
                                 "dead_after_blowup": "divergence_dead_after_blowup",
                                 "regression": "divergence_regression", "uniform": "divergence_uniform"}


def check_divergence(ctx: RunContext) -> list[Finding]:
    """How the run ended (`_ending`); a dead plateau that sits at ln K says K (uniform predictions), and a
    loss pinned at ln K after a blow-up, thrashing, lost progress or a grad-norm collapse is divergence
    even when no other shape fits."""
    c, cfg = ctx.curve, ctx.cfg
    if c is None or len(c) < cfg.min_points:
        return []
    found = _ending(ctx)
    if found:
        f = found[0]
        ev = f.evidence
        assert isinstance(ev, DivergenceEvidence)
        named = chance_level(ev.final, ctx.run.hparams, tolerance=cfg.chance_tolerance) \
            if ev.mode in ("collapse", "dead_after_blowup") and c.log_space else None
        if named is not None:
            k, source = named
            text = (f.message.rstrip(".") + f"; it sits at ln {k:,} = {fmt(math.log(k))} ({source}): uniform "
                    f"predictions over {k:,} outcomes.")
            found = [replace(f, message=text, evidence=replace(ev, chance_k=k))] + found[1:]
        return found
    uniform = _uniform(ctx)
    if uniform is None:
        return []
    plateau, why = uniform
    best_i = int(np.argmin(c.level_raw))
    ev = DivergenceEvidence(ctx.signal, "uniform", int(c.steps[plateau.start]), c.start, float(c.level_raw[best_i]),
                            int(c.steps[best_i]), plateau.median, 1.0, 0.0, 0.0, chance_k=plateau.k)
    return [Finding("divergence_uniform", Severity.FAIL, "divergence", ev.start_step, None,
                    f"Divergence ({SIGNAL_WORDS[ctx.signal]}): from step {ev.start_step:,} to the end the loss sits "
                    f"at {fmt(plateau.median)}, ln {plateau.k:,} = {fmt(plateau.level)} ({plateau.source}), with "
                    f"next to no batch-to-batch noise ({plateau.noise:.2%}): the network predicts uniformly over "
                    f"{plateau.k:,} outcomes (chance), {why}.", ev)]


@dataclass(frozen=True)
class _Tail:
    """How the judged curve ended, measured once for every way of diverging (measure, then judge, then word).

    Attributes:
        tail: the last points judged as the end (after a late jump that never came back, what came after it).
        final / best / initial: the tail's median, the best smoothed level, the loss at the start (raw units).
        best_i: where the best level is. learned: initial - best. noise: the tail's per-point noise (raw).
        tail_change: the tail's first half minus its second (> 0: still falling).
    """

    ctx: RunContext
    c: Curve
    tail: int
    final: float
    best: float
    best_i: int
    initial: float
    learned: float
    noise: float
    tail_change: float

    def finding(self, mode: str, start_i: int, text: str, share: float = 0.0, rec: float = 0.0, slope: float = 0.0,
                grad_drop: float | None = None, peak_over_initial: float | None = None) -> list[Finding]:
        c, ctx = self.c, self.ctx
        ev = DivergenceEvidence(ctx.signal, mode, int(c.steps[start_i]), self.initial, self.best,  # type: ignore[arg-type]
                                int(c.steps[self.best_i]), self.final, round(share, 4), round(rec, 3), round(slope, 3),
                                grad_drop, peak_over_initial)
        return [Finding(_KIND[mode], Severity.FAIL, "divergence", int(c.steps[start_i]), None,
                        f"Divergence ({SIGNAL_WORDS[ctx.signal]}): {text}", ev)]

    @property
    def made_progress(self) -> bool:
        return self.learned > max(self.ctx.cfg.min_progress_share * abs(self.initial), 3 * self.noise)


def _measure_tail(ctx: RunContext, c: Curve) -> _Tail:
    n, cfg = len(c), ctx.cfg
    tail = max(3, int(n * cfg.tail_fraction))
    # a jump in the last part of the log that never came back: the tail is what came after it
    late = [e.start for e in (*ctx.spikes, *ctx.regimes) if e.recovered is None and n - tail < e.start <= n - 3]
    if late:
        tail = n - min(late)
    level = c.level_raw
    best_i = int(np.argmin(level))
    half = max(1, tail // 2)
    return _Tail(ctx, c, tail, float(np.median(c.raw[-tail:])), float(level[best_i]), best_i, c.start,
                 c.start - float(level[best_i]), float(np.median(c.sigma_raw[-tail:])),
                 float(np.median(c.raw[-tail:-tail + half]) - np.median(c.raw[-half:])))


def _ending(ctx: RunContext) -> list[Finding]:
    """How the run ended: the first of the ways of diverging that fits, in the order of the module docstring."""
    c, cfg = ctx.curve, ctx.cfg
    if c is None or len(c) < cfg.min_points:
        return []
    t = _measure_tail(ctx, c)
    for judge in (_exploded, _oscillated, _never_learned, _dead_after_blowup_finding):
        found = judge(t)
        if found:
            return found
    return _lost_what_it_learned(t)


def _exploded(t: _Tail) -> list[Finding]:
    """Ended far above where it started."""
    c, cfg = t.c, t.ctx.cfg
    magnitude = max(abs(t.initial), 3 * t.noise, 1e-300)
    exploded = (t.final >= cfg.explode_ratio * t.initial if c.log_space
                else t.final - t.initial >= (cfg.explode_ratio - 1) * magnitude)
    if not exploded:
        return []
    above = np.flatnonzero(c.level_raw > t.initial)
    start_i = int(above[0]) if above.size else t.best_i
    return t.finding("explosion", start_i,
                     f"the loss exploded and never came back: it ended at {fmt(t.final)}, "
                     + (f"{fmt(t.final / t.initial)}x " if c.log_space else "far above ")
                     + f"its initial {fmt(t.initial)}.", (t.final - t.best) / max(t.learned, t.noise, 1e-300), 0.0,
                     t.tail_change / max(t.final - t.best, 1e-300))


def _oscillated(t: _Tail) -> list[Finding]:
    """Swung up and down across the whole run and ended above where it started: it never learned."""
    c, cfg, n = t.c, t.ctx.cfg, len(t.c)
    swings = _swings(c, cfg.oscillation_ratio)
    if swings < cfg.oscillation_min_swings:
        return []
    fifth = max(3, n // 5)  # with that many swings, a fifth of the run holds whole cycles: its median is their centre
    head, end = float(np.median(c.raw[:fifth])), float(np.median(c.raw[-fifth:]))
    lo, hi = np.percentile(c.level_raw, [5, 95])
    # never learned: the run starts inside its own swings (a run that learned first starts far above them)
    if end <= head + 2 * t.noise / np.sqrt(fifth) or t.initial > hi:
        return []
    return t.finding("regression", 0,
                     f"the loss swung up and down across the whole run ({swings} swings of its smoothed level between "
                     f"{fmt(float(lo))} and {fmt(float(hi))}), and the last fifth of it sits at {fmt(end)}, above the "
                     f"first ({fmt(head)}): it never learned (an oscillation at a too-high LR).")


def _never_learned(t: _Tail) -> list[Finding]:
    """Never learned, and ended above where it started (the first value counts: a fine-tune starts low)."""
    c, cfg = t.c, t.ctx.cfg
    if t.made_progress:
        return []
    ref = min(c.first, t.initial)
    worse = (t.final >= cfg.regress_ratio * ref if c.log_space
             else t.final - ref >= (cfg.regress_ratio - 1) * max(abs(ref), 3 * t.noise))
    if not (worse and t.final - ref > 2 * t.noise and _corroborated(t.ctx)):
        return []
    return t.finding("regression", 0,
                     f"the run never learned: it ended at {fmt(t.final)}, "
                     + (f"{fmt(t.final / ref)}x " if c.log_space else "above ")
                     + f"where it started ({fmt(ref)}), and never got meaningfully below that.")


def _dead_after_blowup_finding(t: _Tail) -> list[Finding]:
    """A blow-up, then nothing learned."""
    blow = _dead_after_blowup(t.ctx, t.initial)
    if blow is None:
        return []
    c = t.c
    peak_i, peak_ratio, best_after = blow
    return t.finding("dead_after_blowup", peak_i,
                     f"the loss blew up to {fmt(float(c.raw[peak_i]))} ({fmt(peak_ratio)}x its initial "
                     f"{fmt(t.initial)}) at step {int(c.steps[peak_i]):,}, and afterwards never got below "
                     f"{fmt(best_after)}: nothing was learned after the blow-up (\"it settled\" is wrong).",
                     grad_drop=_grad_drop(t.ctx, int(c.steps[-t.tail]), int(c.steps[-t.tail]), peak=True),
                     peak_over_initial=peak_ratio)


def _lost_what_it_learned(t: _Tail) -> list[Finding]:
    """Learned, then lost most of it to a dead plateau (or above where it started) and did not come back; a live,
    unrecovered step change is instability.py's to judge, unless the network is dead."""
    c, cfg, n = t.c, t.ctx.cfg, len(t.c)
    if t.best_i >= n - t.tail or not t.made_progress:
        return _dead_network(t)
    jump = t.final - t.best
    share = jump / t.learned
    if share < cfg.collapse_share or t.tail_change > cfg.flat_tail_share * jump:
        return []  # undid less than collapse_share, or still coming back: instability.py's to judge
    level = c.level_raw
    peak = float(np.max(level[t.best_i:]))
    rec = float(np.clip((peak - t.final) / (peak - t.best), 0.0, 1.0)) if peak > t.best else 0.0
    left = np.flatnonzero(level[t.best_i:] > t.best + 0.5 * jump)
    start_i = t.best_i + int(left[0]) if left.size else t.best_i
    slope = t.tail_change / jump
    jump_drop = _grad_drop(t.ctx, int(c.steps[start_i]), int(c.steps[-t.tail]))
    dead_grad = jump_drop is not None and jump_drop >= cfg.grad_floor_ratio
    quiet = _quieter(c, slice(max(0, start_i - 3 * c.window), start_i), t.tail)
    if dead_grad or quiet >= cfg.noise_floor_ratio:
        text = (f"after reaching {fmt(t.best)} (step {int(c.steps[t.best_i]):,}) the loss jumped to a dead plateau at "
                f"{fmt(t.final)} from step {int(c.steps[start_i]):,}, undoing {share:.0%} of what it had learned, "
                "and never came back")
        if dead_grad:
            text += f"; the grad norm fell {fmt(jump_drop)}x to a floor at the same time (a dead network)"
        else:
            text += f"; its batch-to-batch noise fell {fmt(quiet)}x (a network that outputs a constant)"
        if t.final < t.initial:
            text += f" (still below the initial {fmt(t.initial)}: a collapse to a trivial solution)"
        return t.finding("collapse", start_i, text + ".", share, rec, slope, jump_drop)
    if t.final > t.initial and t.tail_change <= 0:
        return t.finding("explosion", start_i,
                         f"after reaching {fmt(t.best)} (step {int(c.steps[t.best_i]):,}) the loss rose from step "
                         f"{int(c.steps[start_i]):,} above where it started and stayed there: it ended at "
                         f"{fmt(t.final)} (initial {fmt(t.initial)}) and is not coming back.", share, rec, slope,
                         jump_drop)
    return _dead_network(t)


def _dead_network(t: _Tail) -> list[Finding]:
    """The grad norm fell to a floor while the loss never got below where it started: a dead network."""
    c, cfg = t.c, t.ctx.cfg
    still_at_start = t.final >= (1 - cfg.dead_progress_share) * t.initial if c.log_space else False
    grad_drop = _grad_drop(t.ctx, int(c.steps[-t.tail]), int(c.steps[-t.tail]), peak=True)
    if not (still_at_start and grad_drop is not None and grad_drop >= cfg.grad_floor_ratio):
        return []
    return t.finding("collapse", t.best_i,
                     f"the grad norm fell {fmt(grad_drop)}x to a floor while the loss sits at {fmt(t.final)}, no lower "
                     f"than where it started ({fmt(c.start)}): a dead network.", 1.0, 0.0,
                     t.tail_change / max(abs(t.final - t.best), 1e-300), grad_drop)


def _swings(c: Curve, ratio: float) -> int:
    """How many times the smoothed level swings from below the lower quarter of its range to above the upper
    quarter or back, when the swings are large (the 95th percentile of the level at least ``ratio`` x its 5th,
    or for a loss that is not positive, ``ratio`` x 3 of its point scatter) and fall in both halves of the run;
    0 otherwise."""
    level = c.level
    lo, hi = np.percentile(level, [5, 95])
    if hi - lo < (np.log(ratio) if c.log_space else 3 * ratio * c.spread):
        return 0
    q1, q3 = lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo)
    outer = np.flatnonzero((level <= q1) | (level >= q3))
    side = level[outer] >= q3
    turns = outer[1:][side[1:] != side[:-1]]  # each point in the other outer quarter than the one before it
    half = len(c) // 2
    if not turns.size or turns.min() >= half or turns.max() < half:
        return 0
    return int(turns.size)



def _uniform(ctx: RunContext) -> tuple[ChancePlateau, str] | None:
    """The loss pinned at ln K to the end, reached through something that killed the network: a blow-up or
    thrashing above ln K, progress below it that was lost, or the grad norm falling to a floor. A run that
    starts at chance and never moves learned nothing (no_progress), which is not divergence."""
    c, cfg = ctx.curve, ctx.cfg
    assert c is not None
    n = len(c)
    plateau = pinned_at_chance(c.raw, ctx.run.hparams, tolerance=cfg.chance_tolerance, max_noise=cfg.chance_noise,
                               min_points=max(cfg.min_points, int(n * cfg.tail_fraction)))
    if plateau is None or plateau.start == 0:
        return None
    before = c.raw[: plateau.start]
    peak = float(np.max(before))
    if peak >= cfg.early_rise_ratio * plateau.level:
        return plateau, f"after the loss went up to {fmt(peak)} at step {int(c.steps[int(np.argmax(before))]):,}"
    low = float(np.min(c.level_raw[: plateau.start]))
    if low <= (1 - cfg.dead_progress_share) * plateau.level:
        return plateau, f"after it had learned down to {fmt(low)}"
    at = int(c.steps[plateau.start])
    drop = _grad_drop(ctx, at, at)
    if drop is not None and drop >= cfg.grad_floor_ratio:
        return plateau, f"with the grad norm fallen {fmt(drop)}x to a floor"
    return None



def _quieter(c: Curve, before: slice, tail: int) -> float:
    """How many times quieter the loss's point-to-point changes are in the last ``tail`` points than in
    ``before`` (unfloored: a network that outputs a constant logs a constant); 1.0 without a reference."""
    b = np.abs(np.diff(c.y[before]))
    a = np.abs(np.diff(c.y[-tail:]))
    if b.size < 2 or a.size < 2:
        return 1.0
    return float(np.median(b) / max(float(np.median(a)), 1e-12 * max(float(np.median(b)), 1e-300)))


def _episode_start(ctx: RunContext, index: int) -> int:
    """The first index of the chain of overlapping departures (spikes, regimes) that holds ``index``."""
    n = len(ctx.curve) if ctx.curve is not None else 0
    spans = sorted((e.start, e.recovered if e.recovered is not None else n) for e in (*ctx.spikes, *ctx.regimes))
    lo = hi = index
    changed = True
    while changed:
        changed = False
        for a, b in spans:
            if a <= hi and b >= lo and (a < lo or b > hi):
                lo, hi = min(lo, a), max(hi, b)
                changed = True
    return lo


def _corroborated(ctx: RunContext) -> bool:
    """A regression judged on the eval loss (sparse train loss) needs the train loss not to disagree."""
    if ctx.signal != "eval_loss" or ctx.loss is None:
        return True
    v = ctx.loss.values[np.isfinite(ctx.loss.values)]
    return v.size < 2 or bool(v[-1] >= v[0])


def _dead_after_blowup(ctx: RunContext, initial: float) -> tuple[int, float, float] | None:
    """(peak index, peak / initial, best level after it) for a blow-up ``blowup_ratio``x above the start
    after which the network is dead: it never got meaningfully below its start, or its loss went quiet
    (``noise_floor_ratio``), or its grad norm fell to a floor. A run that learns after a blow-up, loss
    alive and noisy, recovered: early or mid instability."""
    c, cfg = ctx.curve, ctx.cfg
    assert c is not None
    if not c.log_space:
        return None
    ref = min(c.first, initial)
    peak_i = int(np.argmax(c.raw))
    ratio = float(c.raw[peak_i] / ref)
    if ratio < cfg.blowup_ratio:
        return None
    settled = peak_i + c.window // 2 + 1
    after = c.level_raw[settled:]
    if after.size < max(cfg.min_points, c.window):
        return None
    tail = max(3, after.size // 10)
    if float(np.median(c.raw[-tail:])) > cfg.explode_ratio * ref:
        return None  # still exploded at the end: the explosion check's
    best_after = float(np.min(after))
    never_below = best_after >= (1 - cfg.dead_progress_share) * ref
    # the noise while alive: before the episode of departures that holds the blow-up began
    quiet = _quieter(c, slice(0, _episode_start(ctx, peak_i)), tail) >= cfg.noise_floor_ratio
    drop = _grad_drop(ctx, int(c.steps[peak_i]) + 1, int(c.steps[-tail]), peak=True)
    dead_grad = drop is not None and drop >= cfg.grad_floor_ratio
    if not (never_below or quiet or dead_grad):
        return None
    return peak_i, ratio, best_after
