"""The probe's LR schedule as a pure function of the step (no torch, no state)."""

from __future__ import annotations

import math


def lr_at(step: int, *, base_lr: float, total_steps: int, warmup_steps: int = 0,
          post_warmup_steps: int | None = None, decay: str = "constant") -> float:
    """LR for optimizer step ``step`` (0-based).

    1. warmup: linear from base_lr/warmup_steps up to base_lr over ``warmup_steps`` (playbook §5);
    2. constant at base_lr for ``post_warmup_steps`` (None: until the end);
    3. decay ("linear" or "cosine") to 0 by ``total_steps``; "constant" keeps base_lr.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if decay == "constant" or post_warmup_steps is None:
        return base_lr
    start = warmup_steps + post_warmup_steps
    if step < start:
        return base_lr
    span = max(total_steps - start, 1)
    frac = min((step - start) / span, 1.0)
    if decay == "linear":
        return base_lr * (1.0 - frac)
    if decay == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    raise ValueError(f"decay {decay!r}: expected constant, linear or cosine")
