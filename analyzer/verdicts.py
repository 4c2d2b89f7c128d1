"""The verdicts a run can get: one ordered table, with what every layer says of each.

Every module that orders, names, badges or gates on verdicts reads this table (the JSON contract's names,
the terminal's badges, the report's labels, which verdicts are instability, what ``--fail-on early`` means),
so a verdict is described once.

Examples
--------
>>> most_severe(["stable", "mid_instability", "early_instability"])
'mid_instability'
>>> gated("mid")
('mid_instability', 'divergence')
>>> VERDICT["divergence"].badge, VERDICT["divergence"].label
('DIVERGED', 'Divergence')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

Verdict = Literal["stable", "early_instability", "mid_instability", "divergence", "insufficient_data"]
#: The least severe verdict a gate (``--fail-on``, a callback's ``stop_on``) acts on.
FailOn = Literal["early", "mid", "divergence"]


@dataclass(frozen=True)
class VerdictInfo:
    """One verdict and how it is shown.

    Attributes:
        name: as in the JSON report.
        badge: the terminal's badge (``inspect``, ``watch``).
        label: the HTML report's words.
        unstable: early, mid or divergence: something to fix.
        gate: the ``--fail-on`` level that names it (None for verdicts no gate names).
        level: how bad, as a number a metrics logger can plot (0 nothing to fix .. 3 diverged).
    """

    name: Verdict
    badge: str
    label: str
    unstable: bool
    gate: FailOn | None
    level: int


#: From the least to the most severe: a run's verdict is the most severe of its findings.
VERDICTS: tuple[VerdictInfo, ...] = (
    VerdictInfo("insufficient_data", "no-data", "Insufficient data", False, None, 0),
    VerdictInfo("stable", "stable", "Stable", False, None, 0),
    VerdictInfo("early_instability", "EARLY-UNSTABLE", "Early instability", True, "early", 1),
    VerdictInfo("mid_instability", "MID-UNSTABLE", "Mid-training instability", True, "mid", 2),
    VerdictInfo("divergence", "DIVERGED", "Divergence", True, "divergence", 3),
)
VERDICT: Mapping[Verdict, VerdictInfo] = {v.name: v for v in VERDICTS}
VERDICT_ORDER: tuple[Verdict, ...] = tuple(v.name for v in VERDICTS)
UNSTABLE: tuple[Verdict, ...] = tuple(v.name for v in VERDICTS if v.unstable)
#: How overviews list runs: the worst first, and runs that could not be judged before stable ones (they need a look).
REPORT_ORDER: tuple[Verdict, ...] = ("divergence", "mid_instability", "early_instability", "insufficient_data", "stable")
#: Early and mid-training instability (divergence is the other unstable verdict).
INSTABILITY: tuple[Verdict, ...] = ("early_instability", "mid_instability")
FAIL_ON_LEVELS: tuple[FailOn, ...] = tuple(v.gate for v in VERDICTS if v.gate is not None)


def gated(level: FailOn) -> tuple[Verdict, ...]:
    """The verdicts a gate at ``level`` acts on: that one and every more severe one."""
    first = next(i for i, v in enumerate(VERDICTS) if v.gate == level)
    return tuple(v.name for v in VERDICTS[first:])


def reaches(verdict: Verdict, level: FailOn | None) -> bool:
    """Whether a gate at ``level`` (None: no gate) acts on ``verdict``."""
    return level is not None and verdict in gated(level)


def most_severe(verdicts: Iterable[Verdict], default: Verdict = "stable") -> Verdict:
    return max(verdicts, key=VERDICT_ORDER.index, default=default)


def severity_rank(verdict: Verdict) -> int:
    """Position in the order (higher is more severe), for sorting."""
    return VERDICT_ORDER.index(verdict)
