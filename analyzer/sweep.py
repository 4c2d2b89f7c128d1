"""LR sweeps: runs that differ only in learning rate; lr*, infeasible trials, edge of instability.

Playbook §3: find lr*; look at the LRs just above it; if the best LR sits at the edge of the
feasible region (the next larger LR is infeasible or its training loss goes up), the model is
suffering from optimization instability and fixing that will likely allow a higher, better LR.
"""

from __future__ import annotations

import math
import posixpath
import re
from typing import Any, Mapping, Sequence

import numpy as np

from analyzer.config import AnalysisConfig
from analyzer.detect.context import RunContext
from analyzer.hparams import LR_KEYS, _LR_IN_NAME
from analyzer.recommend.rules import run_lr
from analyzer.types import Diagnosis, SweepDiagnosis

_IGNORED_HPARAM_WORDS = ("seed", "run_name", "runname", "output_dir", "logging_dir", "log_dir", "timestamp",
                         "version", "final/", "lr (from run name)", "global_step", "name", "id")


def _is_lr_key(key: str) -> bool:
    leaf = re.split(r"[./]", key)[-1]
    return key in LR_KEYS or leaf in ("lr", "learning_rate", "base_lr", "max_lr", "peak_lr")


def _signature(d: Diagnosis) -> tuple:
    items = []
    for k, v in sorted(d.run.hparams.items()):
        if _is_lr_key(k) or any(w in k.lower() for w in _IGNORED_HPARAM_WORDS):
            continue
        items.append((k, str(v)))
    run_id = d.run.id
    if _LR_IN_NAME.search(run_id):
        where = _LR_IN_NAME.sub(lambda m: m.group(0).replace(m.group(1), "*"), run_id)
    else:
        where = posixpath.dirname(run_id)
    return (where, d.run.format, tuple(items))


def _score(ctx: RunContext, use_eval: bool) -> tuple[float | None, float | None, float | None]:
    """(best, final, initial) loss of the ranking metric; None where not finite."""
    if use_eval and ctx.eval_loss is not None:
        v = ctx.eval_loss.values
        fin = v[np.isfinite(v)]
        if fin.size == 0:
            return None, None, None
        init = float(ctx.curve.raw[0]) if ctx.curve is not None else None
        return float(fin.min()), float(v[-1]) if np.isfinite(v[-1]) else None, init
    c = ctx.curve
    if c is None or len(c) == 0:
        return None, None, None
    best = float(np.exp(c.smooth.min())) if c.log_space else float(c.smooth.min())
    tail = max(1, int(len(c) * 0.05))
    last_ok = ctx.loss is not None and np.isfinite(ctx.loss.values[-1])
    final = float(np.median(c.raw[-tail:])) if last_ok else None
    return best, final, float(c.raw[0])


def find_sweeps(diagnoses: Sequence[Diagnosis], contexts: Mapping[str, RunContext],
                cfg: AnalysisConfig) -> list[SweepDiagnosis]:
    groups: dict[tuple, list[tuple[float, Diagnosis]]] = {}
    for d in diagnoses:
        ctx = contexts.get(d.run.id)
        if ctx is None:
            continue
        lr = run_lr(ctx)
        if lr is None or d.verdict == "insufficient_data" and ctx.loss is None:
            continue
        groups.setdefault(_signature(d), []).append((lr, d))
    sweeps = []
    for members in groups.values():
        lrs = sorted({lr for lr, _ in members})
        if len(members) < cfg.min_sweep_runs or len(lrs) < cfg.min_sweep_runs:
            continue
        sweeps.append(_judge_sweep(sorted(members, key=lambda m: (m[0], m[1].run.id)), contexts, cfg))
    return sweeps


def _judge_sweep(members: list[tuple[float, Diagnosis]], contexts: Mapping[str, RunContext],
                 cfg: AnalysisConfig) -> SweepDiagnosis:
    use_eval = all(contexts[d.run.id].eval_loss is not None for _, d in members)
    metric = "eval_loss (best)" if use_eval else "train_loss (best smoothed)"
    ids, lrs, scores, infeasible, unstable = [], [], [], [], []
    per_run: list[dict[str, Any]] = []
    for lr, d in members:
        ctx = contexts[d.run.id]
        best, final, initial = _score(ctx, use_eval)
        never_trained = best is not None and initial is not None and initial > 0 and best >= cfg.infeasible_ratio * initial
        is_infeasible = d.verdict == "divergence" or best is None or never_trained
        ids.append(d.run.id)
        lrs.append(lr)
        scores.append(None if is_infeasible else best)
        if is_infeasible:
            infeasible.append(d.run.id)
        elif d.verdict in ("early_instability", "mid_instability"):
            unstable.append(d.run.id)
        per_run.append({"run": d.run.id, "lr": lr, "best": best, "final": final, "verdict": d.verdict,
                        "infeasible": is_infeasible})
    feasible = [i for i, s in enumerate(scores) if s is not None]
    evidence: dict[str, Any] = {"metric": metric, "per_run": per_run}
    if not feasible:
        return SweepDiagnosis(tuple(ids), tuple(lrs), tuple(scores), metric, None, None, tuple(infeasible),
                              tuple(unstable), False, "Every trial of this sweep is infeasible: lower the LR range.",
                              evidence)
    b = min(feasible, key=lambda i: (scores[i], lrs[i]))
    best_lr = lrs[b]
    above = [i for i in range(len(ids)) if lrs[i] > best_lr]
    edge = False
    if not above:
        msg = (f"lr* = {best_lr:.3g} ({ids[b]}, {metric} {scores[b]:.4g}) is the LARGEST LR tried: extend the sweep "
               "upward before concluding anything about instability.")
    else:
        nxt = above[0]
        nxt_bad = ids[nxt] in infeasible or ids[nxt] in unstable
        edge = nxt_bad
        above_desc = ", ".join(f"{lrs[i]:.3g}: " + ("infeasible" if ids[i] in infeasible else per_run[i]["verdict"])
                               for i in above)
        if edge:
            factor = cfg.warmup_lr_factor
            evidence.update({"unstable_lr": lrs[nxt], "base_lr_to_try_with_warmup": lrs[nxt] * factor})
            msg = (f"lr* = {best_lr:.3g} ({ids[b]}, {metric} {scores[b]:.4g}) sits at the edge of instability: the next "
                   f"larger LR {lrs[nxt]:.3g} is {'infeasible' if ids[nxt] in infeasible else 'unstable'} "
                   f"(LRs above lr*: {above_desc}). Playbook §3: the model is suffering from optimization "
                   "instability; fixing it (warmup, clipping) will likely allow a higher LR and better results. "
                   f"Try warmup with base LR {lrs[nxt] * factor:.3g} (10x the unstable LR) and confirm with a run "
                   "at 5-10x lr*.")
        else:
            msg = (f"lr* = {best_lr:.3g} ({ids[b]}, {metric} {scores[b]:.4g}); the next larger LR {lrs[nxt]:.3g} "
                   f"still trains stably (LRs above lr*: {above_desc}): instability is not what limits the LR.")
    if b == 0 and len(lrs) > 1:
        msg += f" lr* is also the SMALLEST LR tried: extend the sweep below {best_lr:.3g} as well."
    evidence["lr_star_run"] = ids[b]
    evidence["log10_lr_range"] = [math.log10(min(lrs)), math.log10(max(lrs))]
    return SweepDiagnosis(tuple(ids), tuple(lrs), tuple(scores), metric, ids[b], best_lr, tuple(infeasible),
                          tuple(unstable), edge, msg, evidence)
