"""Which block moved first: the per-layer attribution of a reproduced instability (numpy only).

From the replay trial's per-block series (probes.layers: gradient norm, update/weight ratio, Adam
second-moment norm, activation RMS) and where the analyzer says the loss left its level: each block's
level is the median over the steps before the loss's onset (the first steps when there are fewer
than MIN_BASELINE of them); a block *rose* at the first step from LOOKBACK steps before the onset to
AFTER steps past the loss's peak where its gradient norm reached RISE x its level. The block that rose
first (the larger rise on a tie) is where the instability started; its lead is how many steps before
the loss it rose (negative: after). Its update/weight ratio rising before its gradient says the step
size moved first (an LR or optimizer-state cause), not the gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from probes.layers import STATS

#: A block's gradient norm at this many times its own level has risen (the playbook calls 10-20x an outlier
#: of the global norm; one block of many moves the global norm less, so the bar is lower).
RISE = 3.0
#: How many steps before the loss's onset a block's rise is looked for.
LOOKBACK = 50
#: Fewer steps than this before the onset: the level is the first recorded step (an early instability).
MIN_BASELINE = 3
#: ...and up to this many steps after the loss's peak (a gradient that follows the loss: the step size moved).
AFTER = 20


@dataclass(frozen=True)
class BlockMove:
    """One block around the instability.

    Attributes:
        group: the parameter group (a block, the embeddings, the head).
        rise_step: the first step its gradient norm reached RISE x its level (None: it never did).
        update_rise_step: the first step its update/weight ratio reached RISE x its level.
        grad_ratio: its largest gradient norm from the lookback to the loss's peak, x its level.
        update_ratio_before / update_ratio_peak: its update/weight ratio at its level and its largest there.
        adam_v_ratio: its Adam second-moment norm's largest, x its level (NaN without Adam).
        act_rms_ratio: its output's RMS largest, x its level (NaN when it has no module output).
    """

    group: str
    rise_step: int | None
    grad_ratio: float
    update_rise_step: int | None
    update_ratio_before: float
    update_ratio_peak: float
    adam_v_ratio: float
    act_rms_ratio: float


@dataclass(frozen=True)
class Attribution:
    """The blocks ordered by when their gradient rose; ``sentence`` says it in one line."""

    loss_start: int
    loss_peak: int
    blocks: tuple[BlockMove, ...]
    sentence: str

    @property
    def first(self) -> BlockMove | None:
        return self.blocks[0] if self.blocks and self.blocks[0].rise_step is not None else None


def _level(values: np.ndarray, steps: np.ndarray, onset: int) -> float:
    before = values[(steps < onset) & np.isfinite(values)]
    before = before[-LOOKBACK:]
    if before.size >= MIN_BASELINE:
        return float(np.median(before))
    finite = values[np.isfinite(values)]
    return float(finite[0]) if finite.size else math.nan


def _ratio(values: np.ndarray, level: float) -> float:
    finite = values[np.isfinite(values)]
    if not finite.size or not (level > 0):
        return math.nan
    return float(finite.max() / level)


def attribute(series: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], loss_start: int,
              loss_peak: int) -> Attribution | None:
    """``series``: group -> stat -> (steps, values). None when no block's gradient was recorded."""
    moves = []
    lo, hi = loss_start - LOOKBACK, max(loss_peak, loss_start) + AFTER
    for group, stats in series.items():
        if "grad" not in stats:
            continue
        steps, grad = stats["grad"]
        level = _level(grad, steps, loss_start)
        inside = (steps >= lo) & (steps <= hi)
        risen = np.flatnonzero(inside & np.isfinite(grad) & (grad >= RISE * level)) if level > 0 else np.zeros(0, int)
        ratios = {}
        for stat in STATS[1:]:
            if stat in stats:
                s_steps, values = stats[stat]
                ratios[stat] = (_level(values, s_steps, loss_start),
                                values[(s_steps >= lo) & (s_steps <= hi)])
        upd_level, upd = ratios.get("update_ratio", (math.nan, np.zeros(0)))
        upd_rise = None
        if "update_ratio" in stats and upd_level > 0:
            u_steps, u_values = stats["update_ratio"]
            up = np.flatnonzero((u_steps >= lo) & (u_steps <= hi) & np.isfinite(u_values) & (u_values >= RISE * upd_level))
            upd_rise = int(u_steps[up[0]]) if up.size else None
        moves.append(BlockMove(
            group=group, rise_step=int(steps[risen[0]]) if risen.size else None,
            grad_ratio=_ratio(grad[inside], level), update_rise_step=upd_rise, update_ratio_before=upd_level,
            update_ratio_peak=float(np.nanmax(upd)) if upd.size and np.isfinite(upd).any() else math.nan,
            adam_v_ratio=_ratio(*reversed(ratios["adam_v"])) if "adam_v" in ratios else math.nan,
            act_rms_ratio=_ratio(*reversed(ratios["act_rms"])) if "act_rms" in ratios else math.nan))
    if not moves:
        return None
    moves.sort(key=lambda m: (m.rise_step is None, m.rise_step if m.rise_step is not None else 0,
                              -(m.grad_ratio if math.isfinite(m.grad_ratio) else 0.0)))
    return Attribution(loss_start, loss_peak, tuple(moves), _sentence(moves, loss_start, loss_peak))


def _sentence(moves: list[BlockMove], start: int, peak: int) -> str:
    risen = [m for m in moves if m.rise_step is not None]
    if not risen:
        top = max(moves, key=lambda m: m.grad_ratio if math.isfinite(m.grad_ratio) else 0.0)
        return (f"No block's gradient rose to {RISE:g}x its level before the loss peaked (step {peak:,}); the largest "
                f"move was {top.group} ({top.grad_ratio:.2g}x): not a gradient-led instability at block level.")
    first = risen[0]
    assert first.rise_step is not None
    lead = start - first.rise_step
    when = (f"{lead} step{'s' if lead != 1 else ''} before the loss left its level (step {start:,})" if lead > 0 else
            f"at the step the loss left its level ({start:,})" if lead == 0 else
            f"{-lead} step{'s' if lead != -1 else ''} after the loss left its level (step {start:,})")
    text = f"{first.group}'s gradient rose first: {first.grad_ratio:.3g}x its level at step {first.rise_step:,}, {when}"
    if math.isfinite(first.update_ratio_peak) and math.isfinite(first.update_ratio_before) and \
            first.update_ratio_before > 0:
        text += (f"; its update/weight ratio went {first.update_ratio_before:.2g} -> {first.update_ratio_peak:.2g} "
                 f"({first.update_ratio_peak / first.update_ratio_before:.3g}x)")
        if first.update_rise_step is not None and first.update_rise_step < first.rise_step:
            text += (f", rising already at step {first.update_rise_step:,}, before its gradient: the step size moved "
                     "first (the LR or the optimizer's state), not the gradient")
    if math.isfinite(first.adam_v_ratio):
        text += f", Adam's second moment {first.adam_v_ratio:.3g}x"
    if math.isfinite(first.act_rms_ratio):
        text += f", its output RMS {first.act_rms_ratio:.3g}x"
    others = [f"{m.group} ({m.grad_ratio:.3g}x at {m.rise_step:,})" for m in risen[1:4]]
    if others:
        text += "; then " + ", ".join(others)
    return text + "."
