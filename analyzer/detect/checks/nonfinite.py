"""NaN/inf: in the loss it is divergence (or a transient overflow when finite values follow); in
the grad norm alone, with the loss unaffected, it is a mixed-precision loss-scaler skipping steps."""

from __future__ import annotations

import numpy as np

from analyzer.detect.checks.common import fmt
from analyzer.detect.context import RunContext
from analyzer.evidence import NonfiniteEvidence, Signal
from analyzer.types import Finding, Series, Severity, Verdict


def _nonfinite_series(ctx: RunContext) -> Series | None:
    """The loss whose NaN/inf is judged: the train loss when it holds any (a train loss that turned NaN after
    a few points leaves too few finite ones to be the judged signal, and the eval loss then judged may never
    have been evaluated after it), else the judged series."""
    if ctx.loss is not None and ctx.loss.values.size and not np.isfinite(ctx.loss.values).all():
        return ctx.loss
    return ctx.judged


def check_nonfinite(ctx: RunContext) -> list[Finding]:
    """NaN/inf in the loss: divergence when it never becomes finite again, whatever the number of points (a
    loss NaN from its second logged point on, or at every point of a run whose steps advanced); a
    transient overflow when finite values follow."""
    out: list[Finding] = []
    loss, grad = _nonfinite_series(ctx), ctx.grad
    if loss is not None and loss.values.size and (np.isfinite(loss.values).any() or np.unique(loss.steps).size >= 2):
        bad = ~np.isfinite(loss.values)
        if bad.any():
            first = int(np.argmax(bad))
            if bad[-1]:  # a loss NaN to the end diverged where that last stretch began; an earlier inf was transient
                good = np.flatnonzero(~bad)
                first = int(good[-1]) + 1 if good.size else 0
            after = bad[first:]
            last_ok = bool(np.isfinite(loss.values[-1]))
            frac = float(after.mean())
            step = int(loss.steps[first])
            prev = loss.values[:first][np.isfinite(loss.values[:first])]
            signal: Signal = "train_loss" if loss is ctx.loss else ctx.signal
            ev = NonfiniteEvidence(signal, step, int(bad.sum()), int(after.size), round(frac, 4),
                                   float(prev[-1]) if prev.size else None)
            if not last_ok or frac > 0.5:
                how = "never recovered" if not last_ok else f"stayed non-finite for {frac:.0%} of later points"
                text = (f"Loss '{loss.tag}' became {loss.values[first]} at step {step:,} and {how} (last finite loss "
                        f"{fmt(ev.last_finite_value)})." if prev.size else
                        f"Loss '{loss.tag}' is {loss.values[first]} at every one of its {int(bad.sum())} logged points "
                        f"(steps {step:,}-{int(loss.steps[-1]):,}): the run diverged before its first log.")
                out.append(Finding("divergence_nonfinite", Severity.FAIL, "divergence", step, None, text, ev))
            else:
                phase: Verdict = "early_instability" if step <= ctx.early_cut else "mid_instability"
                out.append(Finding("nonfinite_loss_transient", Severity.WARN, phase, step, int(loss.steps[-1]),
                                   f"{int(bad.sum())} non-finite loss value(s) from step {step:,}, with finite "
                                   "values after: a transient overflow.", ev))
    diverged = any(f.kind == "divergence_nonfinite" for f in out)
    if grad is not None and grad.values.size:
        gbad = ~np.isfinite(grad.values)
        if gbad.any():
            steps = grad.steps[gbad]
            zero_loss = 0
            if ctx.loss is not None:
                common = np.isin(ctx.loss.steps, steps)
                zero_loss = int(np.sum(ctx.loss.values[common] == 0.0))
            tail_bad = bool(gbad[-max(3, gbad.size // 20):].all())
            ev = NonfiniteEvidence("grad_norm", int(steps[0]), int(gbad.sum()), loss_zero_at_those_steps=zero_loss)
            if zero_loss or (tail_bad and not diverged):
                why = ("the logged loss is exactly 0.0 at those steps: HF Trainer's NaN filter hides a NaN loss"
                       if zero_loss else "the grad norm stays NaN/inf to the end: the weights are NaN")
                out.append(Finding("divergence_nonfinite_grad", Severity.FAIL, "divergence", int(steps[0]), None,
                                   f"Grad norm non-finite from step {int(steps[0]):,} ({int(gbad.sum())} point(s)); "
                                   f"{why}.", ev))
            elif not diverged:
                out.append(Finding("fp16_skipped_steps", Severity.INFO, "stable", int(steps[0]), int(steps[-1]),
                                   f"{int(gbad.sum())} isolated non-finite grad-norm value(s) with the loss unaffected: "
                                   "mixed-precision loss-scaler skipped steps, not divergence.", ev))
    return out
