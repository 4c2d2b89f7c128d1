"""A recommendation in a few words with its number ("warmup 1,000 steps", "clip at 1.3", "lower LR to 3e-4"):
what the report's overview and `watch`'s lines show as a run's fix. One wording, used by both."""

from __future__ import annotations

import math
from typing import Any, Sequence

from analyzer.plans import ArchitectureHint, ClipPlan, LogMetric, LowerLr, OptimizerChange, WarmupPlan
from analyzer.types import Recommendation


def short_number(x: Any) -> str:
    """A number as a person types it into a config: 3e-4, 0.03, 1.3, 4,973.

    Examples
    --------
    >>> [short_number(v) for v in (0.0003, 0.03, 1.3049, 4973.2, 1e-5, None)]
    ['3e-4', '0.03', '1.3', '4,973', '1e-5', '?']
    """
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
        return "?"
    a = abs(x)
    if a != 0 and a < 1e-2:
        mantissa, exponent = f"{x:.1e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    if a >= 100:
        return f"{x:,.0f}"
    return f"{x:.2g}" if a < 1 else f"{x:.3g}"


def fix_summary(rec: Recommendation) -> str:
    """One recommendation in a few words, with its number."""
    p = rec.params
    if isinstance(p, WarmupPlan):
        return f"warmup {short_number(p.warmup_steps)} steps"
    if isinstance(p, ClipPlan):
        text = f"clip at {short_number(p.max_norm)}"
        return text + " (not enough: lower the LR)" if p.clipping_insufficient else text
    if isinstance(p, LowerLr):
        return f"lower LR to {short_number(p.suggested_lr)}" if p.suggested_lr else f"lower LR {short_number(p.factor)}x"
    if isinstance(p, OptimizerChange):
        return f"try {p.try_} instead of {p.current}"
    if isinstance(p, ArchitectureHint):
        return "normalise before the residual add (Pre-LN)"
    if isinstance(p, LogMetric):
        return f"log {p.metric}"
    return rec.rationale.split(". ")[0]


def top_fix(recs: Sequence[Recommendation]) -> str:
    """The first real fix in the playbook's order, in a few words: a clip threshold that cannot tame the
    instability gives way to lowering the LR, and advice to log a metric shows only when it is all there is."""
    real = [r for r in recs if r.kind != "log_metric"] or list(recs)
    if any(r.kind == "lower_lr" for r in real):
        real = [r for r in real if not (isinstance(r.params, ClipPlan) and r.params.clipping_insufficient)]
    if not real:
        return ""
    return fix_summary(min(real, key=lambda r: r.priority))
