"""Is there enough loss to judge? Says what is missing instead of guessing."""

from __future__ import annotations

import numpy as np

from analyzer.detect.checks.common import fmt
from analyzer.detect.context import RunContext
from analyzer.evidence import DataEvidence
from analyzer.types import Finding, Severity


def check_data(ctx: RunContext) -> list[Finding]:
    run, cfg = ctx.run, ctx.cfg
    if ctx.loss is None and ctx.signal == "train_loss":
        has_eval = ctx.eval_loss is not None
        return [Finding("missing_train_loss", Severity.WARN, "insufficient_data", 0, None,
                        "No train-loss tag found" + (" (and too few eval-loss points)" if has_eval else "") +
                        f" among {len(run.tags)} tag(s); name it with --role train_loss=TAG.",
                        DataEvidence(tags=tuple(run.tags[:20]), min_points=cfg.min_points))]
    s = ctx.judged
    assert s is not None
    finite = np.isfinite(s.values)
    n_all, n_finite = int(s.values.size), int(finite.sum())
    if 0 < n_finite < n_all and finite[0]:
        return []  # finite, then NaN/inf: that is divergence however short the log (check_nonfinite)
    if n_finite == 0 and np.unique(s.steps).size >= 2:
        return []  # NaN/inf at every point of a run that advanced: divergence from its first step (check_nonfinite)
    if n_finite == 0 and n_all > 0:
        return [Finding("all_nonfinite", Severity.WARN, "insufficient_data", int(s.steps[0]), None,
                        f"The only value of '{s.tag}' is NaN/inf (at one step): nothing to compare with.",
                        DataEvidence(points=0, min_points=cfg.min_points))]
    if n_finite < cfg.min_points:
        return [Finding("too_few_points", Severity.WARN, "insufficient_data", int(s.steps[0]) if n_all else 0, None,
                        f"Only {n_finite} finite point(s) in '{s.tag}' (need {cfg.min_points}, in the train or the "
                        "eval loss); log the loss more often.", DataEvidence(points=n_finite, min_points=cfg.min_points))]
    if ctx.curve is not None and float(np.ptp(ctx.curve.raw)) == 0.0:
        return [Finding("constant_loss", Severity.WARN, "insufficient_data", int(ctx.curve.steps[0]), None,
                        f"The loss '{s.tag}' is constant ({fmt(float(ctx.curve.raw[0]))}) over {n_finite} points: "
                        "it is not being optimised or not being logged.",
                        DataEvidence(points=n_finite, min_points=cfg.min_points, value=float(ctx.curve.raw[0])))]
    if ctx.signal == "eval_loss":
        n_train = int(np.isfinite(ctx.loss.values).sum()) if ctx.loss is not None else 0
        why = (f"The train loss '{ctx.loss.tag}' has only {n_train} finite point(s)" if ctx.loss is not None
               else f"No train-loss tag found among {len(run.tags)} tag(s) (name it with --role train_loss=TAG)")
        return [Finding("judged_on_eval_loss", Severity.INFO, "stable", int(s.steps[0]), None,
                        f"{why}, so the eval loss '{s.tag}' ({n_finite} points) decides the verdict.",
                        DataEvidence(points=n_train, min_points=cfg.min_points))]
    return []
