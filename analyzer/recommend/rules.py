"""Findings -> recommendations, in the playbook's order of preference:
warmup (early instability), gradient clipping (early and mid), optimizer, architecture, and
lowering the learning rate only as the last resort. Every number is computed from the run.
"""

from __future__ import annotations

import math

import numpy as np

from analyzer.config import AnalysisConfig
from analyzer.detect.context import RunContext
from analyzer.plans import ArchitectureHint, ClipPlan, LogMetric, LowerLr, OptimizerChange, WarmupPlan
from analyzer.recommend import snippets
from analyzer.types import Finding, Recommendation, Severity
from analyzer.verdicts import UNSTABLE

PLAYBOOK_LOWER = "Playbook §4: lowering the learning rate is the last resort, once warmup and clipping are tried."


def playbook_clip(cfg: AnalysisConfig) -> str:
    return (f"Playbook §6: choose the clipping threshold from the {cfg.clip_percentile:g}th percentile of the "
            "unclipped gradient norm, just above the typical norm; if it takes > "
            f"{cfg.max_clipped_fraction:.0%} of updates clipped, lower the LR instead.")


def playbook_warmup(cfg: AnalysisConfig) -> str:
    return ("Playbook §5: warmup is the best fix for early instability; sweep warmup_steps over orders of "
            f"magnitude (the largest <= {cfg.warmup_max_fraction:.0%} of max_train_steps), post_warmup_steps = "
            f"{cfg.post_warmup_factor:g} x warmup_steps, aim for a base LR {cfg.warmup_lr_factor:g}x the unstable "
            "one, and pick the SHORTEST warmup that is stable.")


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _max_train_steps(ctx: RunContext) -> int | None:
    """The run's length in steps: its configured max steps, else what the log spans (its last step, or
    last - first where steps do not count from 0: a log at steps -200..-1 is 200 steps long, not 0)."""
    if ctx.facts.max_steps:
        return ctx.facts.max_steps
    rng = ctx.run.step_range()
    if not rng:
        return None
    length = max(rng[1], rng[1] - rng[0])
    return length if length > 0 else None


def departure_step(findings: list[Finding]) -> int | None:
    """Where a diverged run left its course (None when it did not diverge): the earliest start of its
    divergence findings, or of an instability that ran on into the divergence without coming back (a
    regime from step 1,500 that ends in the explosion). Advice for a diverged run comes from the steps
    before: the diverged steps say nothing about what a healthy run looks like."""
    unstable = [f for f in findings if f.verdict in UNSTABLE
                and f.severity >= Severity.WARN]
    diverged = [f.start_step for f in unstable if f.verdict == "divergence"]
    if not diverged:
        return None
    start = min(diverged)
    led_into = [f.start_step for f in unstable if f.start_step < start and (f.end_step is None or f.end_step >= start)]
    return min([start, *led_into])


def run_lr(ctx: RunContext) -> float | None:
    """The configured LR, else the largest one logged."""
    lr = ctx.facts.lr
    if lr is None and ctx.lr is not None:
        finite = ctx.lr.values[np.isfinite(ctx.lr.values)]
        if finite.size:
            lr = float(np.max(finite))
    return float(lr) if lr else None


def clip_recommendation(ctx: RunContext, findings: list[Finding], *, before: int | None = None
                        ) -> Recommendation | None:
    """The playbook's clip threshold (p90 of the unclipped grad norm); ``before``: from the steps before that
    step only (a diverged run's departure: p90 of the diverged steps, 4.97e+03, clips nothing that matters).
    None without enough grad-norm values to choose from."""
    g = ctx.grad_curve
    cfg = ctx.cfg
    if g is None or len(g) < cfg.min_points:
        return None
    if any(f.kind == "grad_norm_looks_clipped" for f in findings):
        return None
    keep = np.isfinite(g.raw) & ((g.steps < before) if before is not None else True)
    raw, steps = g.raw[keep], g.steps[keep]
    if raw.size < cfg.min_points:
        return None
    thr = float(np.percentile(raw, cfg.clip_percentile))
    overall = float(np.mean(raw > thr))
    early_cut = ctx.early_cut
    early_mask = steps <= early_cut
    early_frac = float(np.mean(raw[early_mask] > thr)) if early_mask.any() else 0.0
    p50, p99 = float(np.percentile(raw, 50)), float(np.percentile(raw, 99))
    onset: float | None = None
    tame_thr: float | None = None
    tame_frac: float | None = None
    # Would p90 touch the instability? Compare the grad norm at the unstable steps with the threshold.
    unstable_starts = [f.start_step for f in findings
                       if f.verdict in UNSTABLE and f.severity >= 1]
    needed = None
    if unstable_starts:
        # To tame an instability, clipping must reach its onset (where outlier gradients cause it): the
        # largest grad norm within a few points of where it starts. p90 reaches it if it is above p90;
        # otherwise the threshold must go below it, and we ask what share of ALL updates that clips.
        lead = cfg.grad_lead_points
        onsets = []
        for lo in unstable_starts:
            i = int(np.searchsorted(g.steps, lo))
            window = g.raw[max(0, i - lead):i + lead + 1]
            if window.size:
                onsets.append(float(np.max(window)))
        if onsets:
            onset = min(onsets)  # the hardest instability to reach decides
            tame_thr = min(thr, onset * 0.999)
            tame_frac = float(np.mean(raw > tame_thr))
            needed = tame_frac > cfg.max_clipped_fraction
    pct = f"p{cfg.clip_percentile:g}"
    if before is not None:
        after = g.raw[np.isfinite(g.raw) & (g.steps >= before)]
        top = float(np.max(after)) if after.size else 0.0
        peak = f"; from there it rose to {_fmt(top)}" if top > p99 else ""
        text = (f"Clip the global gradient norm at {_fmt(thr)} = {pct} of the {raw.size:,} unclipped grad-norm "
                f"values logged before the run diverged at step {before:,} (p50 {_fmt(p50)}, p99 {_fmt(p99)}{peak}: "
                "the diverged steps set no threshold); it would have clipped "
                f"{overall:.0%} of those steps and {early_frac:.0%} of the first {early_cut:,}. ")
    else:
        text = (f"Clip the global gradient norm at {_fmt(thr)} = {pct} of {raw.size:,} unclipped "
                f"grad-norm values (p50 {_fmt(p50)}, p99 {_fmt(p99)}); it would have clipped {overall:.0%} of steps "
                f"overall and {early_frac:.0%} of the first {early_cut:,} steps. ")
    if needed:
        assert tame_thr is not None and tame_frac is not None
        text += (f"But the grad norm during the unstable steps is not an outlier: a threshold that reaches them "
                 f"({_fmt(tame_thr)}) would clip {tame_frac:.0%} of all updates (> {cfg.max_clipped_fraction:.0%}), "
                 "which is just a lower LR in disguise. ")
    text += "If instability persists, clip harder (a lower threshold). " + playbook_clip(cfg)
    plan = ClipPlan(round(thr, 6), cfg.clip_percentile, int(raw.size), p50, thr, p99, overall, early_frac, early_cut,
                    before, onset, tame_thr, tame_frac, True if needed else None)
    return Recommendation("clip", plan, text, snippets.clip_snippets(thr), priority=20)


def _nice_down(x: float) -> int:
    """Round down to 1, 2 or 5 x a power of ten."""
    if x < 1:
        return 1
    p = 10 ** math.floor(math.log10(x))
    for m in (5, 2, 1):
        if m * p <= x:
            return int(m * p)
    return int(p)


def warmup_plan(cfg: AnalysisConfig, max_steps: int | None) -> tuple[list[int], int | None]:
    """(warmup_steps candidates, cap): the playbook's orders of magnitude up to the cap (10% of
    max_train_steps); when few candidates fit (a short run), the cap itself, rounded down, joins them."""
    cap = max(1, int(cfg.warmup_max_fraction * max_steps)) if max_steps else None
    plan = sorted(w for w in cfg.warmup_candidates if cap is None or w <= cap)
    if cap is not None and (not plan or plan[-1] < _nice_down(cap)):
        plan.append(_nice_down(cap))
    return plan, cap


def warmup_recommendation(ctx: RunContext, early: Finding, *, diverged: bool = False) -> Recommendation:
    """A warmup that is safe to paste first, and the sweep that finds the shortest one at a higher LR.

    Playbook §5: sweep warmup_steps over orders of magnitude (capped at 10% of training) at a base LR
    10x the unstable one and keep the SHORTEST that does not blow up. Pasting the 10x LR with a short
    guessed warmup would likely blow up, so the snippet is the first config to run: the CURRENT LR with
    the longest candidate under the cap; the sweep and the 10x target are stated, and the probe spec
    runs the sweep. ``diverged``: the run diverged in its early phase (``early`` is that finding): the sweep
    runs at the LR in force when it diverged, not 10x it.
    """
    cfg = ctx.cfg
    max_steps = _max_train_steps(ctx)
    plan, cap = warmup_plan(cfg, max_steps)
    safe = plan[-1]
    lr = (ctx.lr_at(early.start_step) or run_lr(ctx)) if diverged else run_lr(ctx)
    base_lr = (lr if diverged else lr * cfg.warmup_lr_factor) if lr else None
    total = (max_steps or 0)
    extend = bool(max_steps) and safe > cfg.warmup_extend_fraction * total
    params = WarmupPlan(safe, int(cfg.post_warmup_factor * safe), lr, tuple(plan), base_lr, max_steps, cap, lr,
                        total + safe if extend else None)
    cap_words = (f" (the largest <= {cfg.warmup_max_fraction:.0%} of {max_steps:,} max_train_steps)"
                 if max_steps else "")
    if diverged:
        first = ctx.run.step_range()
        when = ("from its first logged step" if first and early.start_step <= first[0]
                else f"at step {early.start_step:,} (within its first {ctx.early_cut:,} steps)")
        text = (f"Add a linear LR warmup: the run went unstable {when} and diverged; early in training warmup is "
                "the playbook's first fix. Safe first run: "
                f"warmup_steps={safe:,} at " + (f"the LR {_fmt(lr)}" if lr else "your current LR") + f"{cap_words}, then "
                f"post_warmup_steps={params.post_warmup_steps:,} at that LR before your decay. Then sweep "
                f"warmup_steps over {plan} at that LR and keep the shortest that does not diverge; "
                "`steadytrain probe` runs that sweep. ")
    else:
        text = (f"Add a linear LR warmup. Safe first run: warmup_steps={safe:,} at the current LR"
                + (f" {_fmt(lr)}" if lr else "") + f"{cap_words}, then post_warmup_steps="
                f"{params.post_warmup_steps:,} at that LR before your decay. Then find the SHORTEST warmup that "
                f"is stable at a higher LR: sweep warmup_steps over {plan}"
                + (f" at base LR {_fmt(base_lr)} ({cfg.warmup_lr_factor:g}x the unstable {_fmt(lr)})"
                   if base_lr and lr else "")
                + " and keep the shortest that does not blow up; `steadytrain probe` runs that sweep. ")
    if extend:
        text += (f"This warmup is > {cfg.warmup_extend_fraction:.0%} of training: prepend it and train "
                 f"{total:,} + {safe:,} = {total + safe:,} steps. ")
    text += playbook_warmup(cfg)
    snip_total = total + safe if extend else (max_steps or None)
    return Recommendation("warmup", params, text, snippets.warmup_snippets(safe, lr, snip_total, sweep=plan, sweep_lr=base_lr), priority=10)


def lower_lr_recommendation(ctx: RunContext, at_step: int, why: str) -> Recommendation:
    """Lower the LR in force at ``at_step`` (where the instability began or the run diverged): a schedule's
    peak or the hparams' LR may not be what the run had there."""
    factor = ctx.cfg.lower_lr_factor
    lr = ctx.lr_at(at_step) or run_lr(ctx)
    new_lr = lr * factor if lr else None
    params = LowerLr(lr, new_lr, factor, at_step)
    if lr and new_lr:
        text = (f"Lower the LR from {_fmt(lr)}, in force at step {at_step:,}, to {_fmt(new_lr)} ({factor:g}x): {why}. "
                + PLAYBOOK_LOWER)
        return Recommendation("lower_lr", params, text, snippets.lower_lr_snippets(new_lr), priority=90)
    text = (f"Lower the LR to {factor:g}x what it was at step {at_step:,} (no LR is logged or in the hyperparameters "
            f"to name it): {why}. " + PLAYBOOK_LOWER)
    return Recommendation("lower_lr", params, text, {}, priority=90)


def recommend(ctx: RunContext, findings: list[Finding]) -> list[Recommendation]:
    """The recommendations for a judged run, real fixes first (warmup, clip, optimizer, architecture, lower
    LR); advice to log a missing metric comes after them, never instead of them for an unstable run."""
    recs: list[Recommendation] = []
    kinds = {f.kind for f in findings}
    unstable = [f for f in findings if f.verdict in UNSTABLE
                and f.severity.value >= 1]
    departure = departure_step(findings)
    early = next((f for f in findings if f.kind == "early_instability"), None)
    if departure is not None and departure <= ctx.early_cut:  # diverged in the early phase: warmup, at that LR
        recs.append(warmup_recommendation(ctx, next(f for f in unstable if f.start_step == departure), diverged=True))
    elif early is not None:
        recs.append(warmup_recommendation(ctx, early))
    clip = (clip_recommendation(ctx, findings, before=departure) if unstable or "grad_norm_outliers" in kinds
            else None)
    if clip is not None:
        recs.append(clip)
    if unstable:
        opt = ctx.facts.optimizer
        if opt and any(k in opt for k in ("sgd", "momentum", "nesterov")):
            recs.append(Recommendation(
                "optimizer", OptimizerChange(opt, "adam"),
                f"The run uses {opt}. Playbook §4: sometimes Adam handles instabilities that Momentum can't; "
                "re-tune the LR when switching.", {"pytorch": "optimizer = torch.optim.Adam(model.parameters(), lr=LR)"},
                priority=30))
        norm_hint = {k: v for k, v in ctx.run.hparams.items()
                     if any(w in k.lower() for w in ("norm", "residual", "post_ln", "pre_ln", "norm_first"))}
        no_norm = any(str(v).lower() in ("none", "false", "0", "post", "post_ln") for v in norm_hint.values())
        if no_norm:
            recs.append(Recommendation(
                "architecture", ArchitectureHint({k: str(v) for k, v in norm_hint.items()}),
                "The hparams show no normalization / post-norm placement. Playbook §4: add residual connections "
                "and normalization, with the norm as the last operation before the residual add, x + Norm(f(x)) "
                "(Pre-LN), not Norm(x + f(x)); try zero-initialising residual branches (ReZero).",
                {"pytorch": "x = x + self.norm(self.f(x))  # and nn.init.zeros_(self.f[-1].weight)"}, priority=40))
        if departure is not None:
            recs.append(lower_lr_recommendation(
                ctx, departure, "the run diverged there" + ("" if clip is not None else
                                                            ", with no grad-norm history before it to clip at")))
        elif clip is not None and clip.params.get("clipping_insufficient"):
            recs.append(lower_lr_recommendation(
                ctx, min(f.start_step for f in unstable),
                f"clipping would need > {ctx.cfg.max_clipped_fraction:.0%} of updates clipped to tame this instability"))
        elif not recs:
            recs.append(lower_lr_recommendation(
                ctx, min(f.start_step for f in unstable), "there is no grad-norm log to choose a clip threshold from"))
    if ctx.grad is None and ctx.loss is not None:
        recs.append(Recommendation(
            "log_metric", LogMetric("grad_norm"),
            "Log the UNCLIPPED global gradient norm every step: outliers cause spurious mid-training instability, "
            "and its distribution sets the clip threshold (playbook §3.5). torch.nn.utils.clip_grad_norm_ returns it.",
            snippets.log_grad_norm_snippets(), priority=95))
    if ctx.curve is not None and len(ctx.curve) > 2 and ctx.signal == "train_loss":
        n_early = int(np.searchsorted(ctx.curve.steps, ctx.early_cut, side="right"))
        gaps = np.diff(ctx.curve.steps[: max(n_early, 3)])
        gap = int(np.median(gaps)) if gaps.size else 1
        if gap >= 10:
            recs.append(Recommendation(
                "log_metric", LogMetric("train_loss", gap, 1),
                f"The train loss is logged every ~{gap} steps early on: early instability that recovers within tens "
                "of steps is invisible at that rate (playbook §2, Figure 5). Log every step for the first ~500 steps, "
                "or run the lr2x probe, which does.", {}, priority=96))
    return sorted(recs, key=lambda r: r.priority)
