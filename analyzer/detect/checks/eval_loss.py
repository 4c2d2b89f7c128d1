"""Instability the eval loss shows when the train loss is too noisy to: a per-batch train loss at
small batch sizes wobbles more than a regime moves it, while the eval loss, averaged over many
batches, moves clearly. It counts only when the train loss does not keep falling meanwhile (that is
overfitting, check_overfit's), and only when the train loss itself shows no instability."""

from __future__ import annotations

from analyzer.detect.checks.common import describe, event_evidence, share_of, signal_words
from analyzer.detect.checks.early_rise import early_rise
from analyzer.detect.checks.eval_agreement import grokking
from analyzer.detect.checks.instability import is_big, judge_events
from analyzer.detect.context import RunContext
from analyzer.types import Finding, FindingKind, Severity
from analyzer.verdicts import VERDICT, Verdict


def check_eval_instability(ctx: RunContext) -> list[Finding]:
    e, c, cfg = ctx.eval_curve, ctx.curve, ctx.cfg
    if e is None or c is None or not ctx.eval_regimes or len(c) < cfg.min_points:
        return []
    if any(j.big and j.lasting for j in judge_events(ctx)) or early_rise(ctx) is not None:
        return []  # the train loss speaks for itself
    out: list[Finding] = []
    for ev in ctx.eval_regimes:
        share = share_of(ctx, ev, e)
        if not is_big(ctx, ev, share) or ev.points < cfg.regime_min_points or grokking(ctx, ev, e):
            continue
        start_step, peak_step = int(e.steps[ev.start]), int(e.steps[ev.peak])
        # the train loss over the same span: falling while the eval loss rises is overfitting
        train_start = float(c.level_raw[c.index_of_step(start_step)])
        train_peak = float(c.level_raw[c.index_of_step(peak_step)])
        if train_peak < train_start - 2.0 * float(c.level_sigma[c.index_of_step(peak_step)]) * train_start:
            continue
        evidence = event_evidence(ctx, ev, curve=e, signal="eval_loss")
        early = start_step <= ctx.early_cut
        verdict: Verdict = "early_instability" if early else "mid_instability"
        kind: FindingKind = "early_instability" if early else "mid_instability"
        phase = VERDICT[verdict].label
        out.append(Finding(kind, Severity.WARN, verdict, evidence.start_step, evidence.recovered_step,
                           f"{phase}, an unstable regime ({signal_words(ctx, 'eval_loss')}): "
                           f"{describe(ctx, evidence)}; the train loss did not fall meanwhile "
                           f"({train_start:.4g} -> {train_peak:.4g}).", evidence))
        break  # one regime says it; the report is not a list of eval wobbles
    return out
