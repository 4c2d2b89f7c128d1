"""The checks: each judges the measured `RunContext` against the config and returns findings.

Check ids are stable strings (they appear in the JSON and name the report's partials). A check
that raises becomes a `CheckFailure`; the other checks still run (see `run_checks`).
"""

from __future__ import annotations

from typing import Callable

from analyzer.detect.checks.data import check_data
from analyzer.detect.checks.divergence import check_divergence
from analyzer.detect.checks.eval_loss import check_eval_instability
from analyzer.detect.checks.info import check_grad_norm, check_grokking, check_overfit, check_progress
from analyzer.detect.checks.instability import check_early, check_mid
from analyzer.detect.checks.messages import check_messages, quote_messages
from analyzer.detect.checks.nonfinite import check_nonfinite
from analyzer.detect.context import RunContext
from analyzer.types import CheckFailure, Finding
from analyzer.verdicts import INSTABILITY

Check = Callable[[RunContext], list[Finding]]

#: The checks, in order. Ids are stable: JSON readers and report partials use them.
CHECKS: tuple[tuple[str, Check], ...] = (
    ("data", check_data),
    ("nonfinite", check_nonfinite),
    ("early", check_early),
    ("mid", check_mid),
    ("eval_instability", check_eval_instability),
    ("divergence", check_divergence),
    ("messages", check_messages),
    ("progress", check_progress),
    ("grad_norm", check_grad_norm),
    ("overfit", check_overfit),
    ("grokking", check_grokking),
)

_INSTABILITY = INSTABILITY


def run_checks(ctx: RunContext) -> tuple[list[Finding], list[CheckFailure]]:
    findings: list[Finding] = []
    failures: list[CheckFailure] = []
    for check_id, check in CHECKS:
        try:
            found = check(ctx)
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            failures.append(CheckFailure(check_id, ctx.run.id, type(exc).__name__, str(exc)))
            continue
        findings += found
        if check_id == "data" and any(f.verdict == "insufficient_data" for f in found):
            break  # nothing else can be judged without a usable loss
    findings = _without_divergence_aftermath(findings)
    try:
        findings = quote_messages(findings, ctx)
    except Exception as exc:  # noqa: BLE001 - the findings stand without the quotes
        failures.append(CheckFailure("messages", ctx.run.id, type(exc).__name__, str(exc)))
    return findings, failures


def _without_divergence_aftermath(findings: list[Finding]) -> list[Finding]:
    """Instability findings that start after a divergence began are the divergence itself, and a
    diverged run's "no progress" is said by its divergence finding."""
    starts = [f.start_step for f in findings if f.verdict == "divergence"]
    if not starts:
        return findings
    began = min(starts)
    return [f for f in findings
            if not (f.verdict in _INSTABILITY and f.start_step >= began) and f.kind != "no_progress"]
