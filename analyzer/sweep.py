"""LR sweeps: runs that differ only in learning rate; lr*, infeasible trials, edge of instability.

Playbook §3: find lr*; look at the LRs just above it; if the best LR sits at the edge of the
feasible region (the next larger LR is infeasible or its training loss goes up), the model is
suffering from optimization instability and fixing that will likely allow a higher, better LR.

Grouping needs positive evidence that runs share a configuration (spec/failure-shapes.md, "Run
identity in the wild"): the same non-empty hyperparameters but the LR and identity fields (paths,
names, timestamps, seeds: seeds make replicates, not different configs), or run paths that differ
only where they spell the LR. Runs in one folder with no hyperparameters are not a sweep.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from analyzer.config import AnalysisConfig
from analyzer.detect.context import RunContext
from analyzer.hparams import LR_KEYS
from analyzer.recommend.rules import run_lr
from analyzer.types import Diagnosis, SweepDiagnosis
from analyzer.verdicts import INSTABILITY

#: Hyperparameter keys that name or locate a run rather than configure it (matched as words in the
#: lower-cased key), and the derived summaries some trackers store beside the config.
_IDENTITY_WORDS = ("dir", "path", "name", "id", "seed", "time", "date", "version", "wandb", "output", "log",
                   "checkpoint", "ckpt", "run", "host", "save", "resume", "uuid", "git", "commit", "final",
                   "global_step", "project", "tag", "notes", "url", "device", "runtime")
_DATA_WORDS = ("train_path", "val_path", "data_path", "dataset_path", "train_file", "valid_file", "data_dir")
#: A trainer's bookkeeping (how long, how often to log/evaluate/save): two unrelated fine-tunes share it,
#: so it must match within a sweep but is no evidence that runs share a configuration.
_BOOKKEEPING = frozenset({"max_steps", "num_train_epochs", "train_batch_size", "logging_steps", "eval_steps",
                          "save_steps", "max_epochs", "epochs", "num_epochs", "eval_interval", "log_interval",
                          "val_interval", "checkpoint_interval", "save_interval", "eval_batch_size"})
#: With at least this many configuration keys in common, runs in different folders can be one sweep.
_MIN_SHARED_HPARAMS = 3
#: What a sweep runner adds to each trial's folder name beside its configuration: Ray Tune's
#: ``<trainable>_<id>_00003_3_lr=0.1000_2024-05-01_12-00-00`` (trial number twice, then the start time).
_TRIAL_TOKENS = re.compile(r"_\d{5}_\d+(?=_)|_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}")
_NUMBER = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)(?![0-9])", re.IGNORECASE)


def _is_lr_key(key: str) -> bool:
    leaf = re.split(r"[./]", key)[-1].lower()
    return key in LR_KEYS or leaf in ("lr", "learning_rate", "base_lr", "max_lr", "peak_lr")


def _is_identity_key(key: str) -> bool:
    low = key.lower()
    if any(w in low for w in _DATA_WORDS):
        return False  # the data a run trains on is configuration
    words = re.split(r"[^a-z0-9]+", low)
    return any(w in words or any(part.startswith(w) for part in words) for w in _IDENTITY_WORDS) or low.startswith(
        "lr (")


def _without_lr(text: str, lr: float) -> tuple[str, bool]:
    """``text`` with every number equal to ``lr`` replaced by '*', and whether any was."""
    found = False

    def sub(m: re.Match[str]) -> str:
        nonlocal found
        try:
            v = float(m.group(1))
        except ValueError:
            return m.group(0)
        if v > 0 and math.isclose(v, lr, rel_tol=1e-6):
            found = True
            return "*"
        return m.group(0)

    return _NUMBER.sub(sub, text), found


def _signature(d: Diagnosis, lr: float) -> tuple[tuple, bool]:
    """(what must match for two runs to be trials of one sweep, whether that match is positive evidence)."""
    items = []
    for k, v in sorted(d.run.hparams.items()):
        if _is_lr_key(k) or _is_identity_key(k):
            continue
        # a string may spell the LR (an output path); a number equal to the LR is its own setting
        items.append((k, _without_lr(v, lr)[0] if isinstance(v, str) else str(v)))
    path, lr_in_path = _without_lr(d.run.id, lr)
    path = _TRIAL_TOKENS.sub("", path)  # a trial's index and start time name the trial, not its configuration
    evidence = [k for k, _ in items if re.split(r"[./]", k)[-1].lower() not in _BOOKKEEPING]
    if lr_in_path:
        where = path  # names that differ only in an LR token
    elif len(evidence) >= _MIN_SHARED_HPARAMS:
        where = ""  # a whole configuration in common: the folders are identity
    else:
        where = path.rsplit("/", 1)[0] if "/" in path else ""  # a thin configuration: siblings only
    return (where, d.run.format, tuple(items)), bool(evidence) or lr_in_path


def _score(ctx: RunContext, use_eval: bool) -> tuple[float | None, float | None, float | None]:
    """(best, final, initial) loss of the ranking metric; None where not finite."""
    if use_eval and ctx.eval_loss is not None:
        v = ctx.eval_loss.values
        fin = v[np.isfinite(v)]
        if fin.size == 0:
            return None, None, None
        init = float(ctx.curve.start) if ctx.curve is not None else None
        return float(fin.min()), float(v[-1]) if np.isfinite(v[-1]) else None, init
    c = ctx.curve
    if c is None or len(c) == 0:
        return None, None, None
    best = float(np.min(c.level_raw))
    tail = max(1, int(len(c) * 0.05))
    last_ok = ctx.judged is not None and np.isfinite(ctx.judged.values[-1])
    final = float(np.median(c.raw[-tail:])) if last_ok else None
    return best, final, c.start


def _progress(ctx: RunContext) -> tuple[float, float] | None:
    """(start, best level) of the judged train loss: what a trial learned, whatever the ranking metric."""
    c = ctx.curve
    if c is None or len(c) == 0:
        return None
    return c.start, float(np.min(c.level_raw))


@dataclass(frozen=True)
class SweepFacts:
    """What LR-sweep analysis needs of one run: a few numbers, measured where the run was judged (a Ray
    worker sends these back instead of the run's curves; `find_sweeps` gives the same answer from either).

    Attributes:
        lr: the run's LR (`run_lr`), None when it has none.
        has_eval: whether the run logged an eval loss.
        eval_score / train_score: (best, final, initial) of the eval loss and of the judged train loss.
        progress: (start, best level) of the judged curve.
    """

    lr: float | None
    has_eval: bool
    eval_score: tuple[float | None, float | None, float | None]
    train_score: tuple[float | None, float | None, float | None]
    progress: tuple[float, float] | None


def sweep_facts(ctx: RunContext) -> SweepFacts | None:
    """The facts of a measured run; None when it has no judged curve (it can be no sweep's trial)."""
    if ctx.curve is None:
        return None
    return SweepFacts(run_lr(ctx), ctx.eval_loss is not None, _score(ctx, True), _score(ctx, False), _progress(ctx))


def find_sweeps(diagnoses: Sequence[Diagnosis], contexts: Mapping[str, RunContext | SweepFacts],
                cfg: AnalysisConfig) -> list[SweepDiagnosis]:
    facts = {rid: c if isinstance(c, SweepFacts) else sweep_facts(c) for rid, c in contexts.items()}
    groups: dict[tuple, list[tuple[float, Diagnosis]]] = {}
    for d in diagnoses:
        fact = facts.get(d.run.id)
        if fact is None or fact.lr is None:
            continue
        key, evident = _signature(d, fact.lr)
        if evident:
            groups.setdefault(key, []).append((fact.lr, d))
    sweeps = []
    for members in groups.values():
        lrs = sorted({lr for lr, _ in members})
        if len(lrs) < cfg.min_sweep_runs:
            continue
        sweeps.append(_judge_sweep(sorted(members, key=lambda m: (m[0], m[1].run.id)),
                                   {d.run.id: facts[d.run.id] for _, d in members}, cfg))  # type: ignore[misc]
    return sweeps


def _judge_sweep(members: list[tuple[float, Diagnosis]], facts: Mapping[str, SweepFacts],
                 cfg: AnalysisConfig) -> SweepDiagnosis:
    use_eval = all(facts[d.run.id].has_eval for _, d in members)
    metric = "eval_loss (best)" if use_eval else "train_loss (best smoothed)"
    rows = []
    for lr, d in members:
        fact = facts[d.run.id]
        best, final, _ = fact.eval_score if use_eval else fact.train_score
        rows.append((lr, d, best, final, fact.progress))
    # abnormally high loss: learned far less than the best trial did (playbook §2, infeasible trials)
    top_progress = max((p[0] - p[1] for *_, p in rows if p is not None), default=0.0)
    ids, lrs, scores, infeasible, unstable = [], [], [], [], []
    per_run: list[dict[str, Any]] = []
    for lr, d, best, final, prog in rows:
        never_trained = prog is not None and prog[0] > 0 and prog[1] >= cfg.infeasible_ratio * prog[0]
        learned_little = (prog is not None and top_progress > 0
                          and prog[0] - prog[1] < cfg.infeasible_progress_share * top_progress)
        is_infeasible = d.verdict == "divergence" or best is None or never_trained or learned_little
        ids.append(d.run.id)
        lrs.append(lr)
        scores.append(None if is_infeasible else best)
        if is_infeasible:
            infeasible.append(d.run.id)
        elif d.verdict in INSTABILITY:
            unstable.append(d.run.id)
        per_run.append({"run": d.run.id, "lr": lr, "best": best, "final": final, "verdict": d.verdict,
                        "infeasible": is_infeasible})
    feasible = [i for i, s in enumerate(scores) if s is not None]
    evidence: dict[str, Any] = {"metric": metric, "per_run": per_run}
    if not feasible:
        return SweepDiagnosis(tuple(ids), tuple(lrs), tuple(scores), metric, None, None, tuple(infeasible),
                              tuple(unstable), False, "Every trial of this sweep is infeasible: lower the LR range.",
                              evidence)
    # replicates (seeds) at one LR: rank each LR by its mean score
    by_lr: dict[float, list[float]] = {}
    for i in feasible:
        by_lr.setdefault(lrs[i], []).append(float(scores[i]))  # type: ignore[arg-type]
    best_lr = min(by_lr, key=lambda lr: (float(np.mean(by_lr[lr])), lr))
    b = min((i for i in feasible if lrs[i] == best_lr), key=lambda i: scores[i])  # type: ignore[arg-type, return-value]
    higher = sorted({lr for lr in lrs if lr > best_lr})
    edge = False
    if not higher:
        msg = (f"lr* = {best_lr:.3g} ({ids[b]}, {metric} {scores[b]:.4g}) is the LARGEST LR tried: extend the sweep "
               "upward before concluding anything about instability.")
    else:
        nxt = higher[0]
        at_next = [i for i in range(len(ids)) if lrs[i] == nxt]
        bad = [i for i in at_next if ids[i] in infeasible or ids[i] in unstable]
        edge = 2 * len(bad) >= len(at_next)  # most replicates at the next LR are unstable or infeasible
        above_desc = ", ".join(f"{lrs[i]:.3g}: " + ("infeasible" if ids[i] in infeasible else per_run[i]["verdict"])
                               for i in range(len(ids)) if lrs[i] > best_lr)
        if edge:
            factor = cfg.warmup_lr_factor
            state = "infeasible" if any(ids[i] in infeasible for i in bad) else "unstable"
            evidence.update({"unstable_lr": nxt, "base_lr_to_try_with_warmup": nxt * factor})
            msg = (f"lr* = {best_lr:.3g} ({ids[b]}, {metric} {scores[b]:.4g}) sits at the edge of instability: the next "
                   f"larger LR {nxt:.3g} is {state} (LRs above lr*: {above_desc}). Playbook §3: the model is "
                   "suffering from optimization instability; fixing it (warmup, clipping) will likely allow a higher "
                   f"LR and better results. Try warmup with base LR {nxt * factor:.3g} ({factor:g}x the unstable LR) "
                   "and confirm with a run at 5-10x lr*.")
        else:
            msg = (f"lr* = {best_lr:.3g} ({ids[b]}, {metric} {scores[b]:.4g}); the next larger LR {nxt:.3g} "
                   f"still trains stably (LRs above lr*: {above_desc}): instability is not what limits the LR.")
    if best_lr == min(lrs) and len(set(lrs)) > 1:
        msg += f" lr* is also the SMALLEST LR tried: extend the sweep below {best_lr:.3g} as well."
    evidence["lr_star_run"] = ids[b]
    evidence["log10_lr_range"] = [math.log10(min(lrs)), math.log10(max(lrs))]
    return SweepDiagnosis(tuple(ids), tuple(lrs), tuple(scores), metric, ids[b], best_lr, tuple(infeasible),
                          tuple(unstable), edge, msg, evidence)
