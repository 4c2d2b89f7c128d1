"""Where in training a log starts: at the beginning, or in the middle (a resumed job, the second file of a
run, a log whose step counter starts again at 0).

A log that starts mid-training has no early phase in it, and its first point is not the loss the run
started from: judging it as a fresh start makes a resume spike an "early instability" and measures
every rise against the little progress made inside the log (issue 16). A person reads it off the
schedule: the first logged step is far from 0; the LR at the first point is already decayed from the
configured one and falling; the configured warmup is not in the log (its LR starts at the peak); or an
LM's first loss is far below ln(vocab_size), the loss of a fresh model, while the LR is not ramping up
from zero (a fine-tune starts low too, but at the bottom of its own warmup).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analyzer.facts import RunFacts
from analyzer.types import Series

@dataclass(frozen=True)
class LogStart:
    """Where the log starts in its training.

    Attributes:
        mid_training: the log starts after the beginning of training (its early phase is not in it).
        reason: what showed it, in words (None at the beginning).
        by_schedule: it was read off the LR, the warmup or the loss rather than the step counter (the steps
            themselves start near 0, so the first point would otherwise be taken for the start of training).
    """

    mid_training: bool
    reason: str | None = None
    by_schedule: bool = False


def where_log_starts(loss_steps: np.ndarray, loss_first: float | None, lr: Series | None, facts: RunFacts,
                     early_cut: int) -> LogStart:
    """Where the log whose judged curve starts at ``loss_steps[0]`` with ``loss_first`` sits in its training."""
    if loss_steps.size == 0:
        return LogStart(False)
    first_step = int(loss_steps[0])
    if first_step > max(early_cut, 0):
        return LogStart(True, f"its first logged step is {first_step:,}")
    if lr is None:
        return LogStart(False)
    ok = np.isfinite(lr.values) & (lr.values > 0)
    values = lr.values[ok]
    if values.size < 3:
        return LogStart(False)
    lr0, peak_logged = float(values[0]), float(np.max(values))
    later = float(values[min(values.size - 1, max(2, values.size // 10))])
    falling = later < lr0 * (1 - 1e-3)
    ramping = lr0 < 0.5 * peak_logged  # the bottom of a warmup
    configured = facts.lr
    if configured is not None and falling and not ramping and lr0 < 0.8 * configured:
        return LogStart(True, f"its LR at the first point ({lr0:.3g}) is already decayed from the configured "
                        f"{configured:.3g} and falling", by_schedule=True)
    warmup = facts.warmup_steps
    if warmup is not None and warmup >= 3 and not ramping and lr0 >= 0.9 * peak_logged:
        return LogStart(True, f"the configured warmup ({warmup:,} steps) is not in the log: its LR starts at "
                        f"its peak {lr0:.3g}", by_schedule=True)
    vocab = facts.vocab_size
    if vocab is not None and vocab >= 100 and loss_first is not None and not ramping \
            and 0 < loss_first < 0.5 * math.log(vocab):
        return LogStart(True, f"its first loss ({loss_first:.4g}) is far below ln({vocab:,}) = "
                        f"{math.log(vocab):.4g}, a fresh model's, and its LR is not ramping up", by_schedule=True)
    return LogStart(False)
