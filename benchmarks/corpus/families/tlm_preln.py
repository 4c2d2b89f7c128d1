"""tlm_preln: a tiny Pre-LN causal Transformer LM, AdamW (wd 0.01), 30 warmup steps + cosine.

Task: next-token prediction on a fixed sparse second-order Markov chain (vocab 32, 3 successors per
context; unigram entropy 3.44 nats = the trivial loss, entropy rate ~0.7). Model: 2 blocks, d 32,
4 heads, seq 16, batch 16, 600 steps (~5 ms a step on one CPU thread).

Measured (seed 0, best eval loss): lr 0.003 -> 2.45, 0.01 -> 1.71, 0.02 -> 1.49, 0.03 -> 1.49,
0.05 -> 1.70, 0.07 -> 1.96, 0.1 -> 2.97 (stuck near the trivial loss for half the run, then slow
learning: less than a quarter of what lr 0.03 learned; its plateau is seed-dependent, so that
trial is ambiguous), 0.3 -> 3.41 (never learns, no blow-up), 1.0 -> the loss explodes to ~30-110x
its initial value at the end of warmup (steps 30-60) and then sits flat at the trivial loss for
good, with a flat grad-norm floor (~0.4; the lr 0.03 control's is ~0.8, so an LM's dead floor is
not 10x lower). Constant LR 0.1 without warmup never learns (3.44).

Shapes and labels: stable (lr 0.01-0.05; fp16 loss scaling with skipped steps), never_learns
(constant 0.1: stable, no_progress), explode_then_dead (lr 1.0: divergence, verified against lr
0.03 as control). The LR sweep (0.003 ... 1.0, one config.json per trial with differing identity
fields) has lr* = 0.03 at the edge: 0.1 is infeasible (abnormally high loss), 0.3 never learns and
1.0 blows up.
"""

from __future__ import annotations

from benchmarks.corpus.families import Family, habit, targs
from benchmarks.corpus.spec import Habit, RunSpec

FAMILY = Family("tlm_preln", "Pre-LN Transformer LM (2x32, seq 16) on a 2nd-order Markov chain", "AdamW, warmup 30 + cosine",
                "LR from small to collapse; fp16 skips; plateau at 0.07; never learns at constant 0.1; "
                "explode-then-dead at 1.0; LR sweep with lr* at the edge", sweeps=("preln_lr_sweep",))

TA = targs(d_model=32, layers=2, seq=16, order=2, norm_first=True)
BASE = dict(family="tlm_preln", task="markov_lm", task_args=TA, optimizer="adamw", weight_decay=0.01, steps=600,
            batch_size=16, schedule="cosine", warmup=30, eval_every=50)


def specs() -> list[RunSpec]:
    out: list[RunSpec] = []
    i = 0
    for seed in (1, 2, 3):
        for lr in (0.01, 0.02, 0.03):
            out.append(RunSpec(name=f"s{seed}_adamw{lr:g}_stable", label="stable", shape="plain", lr=lr, seed=seed,
                               habit=habit(i), **BASE))
            i += 1
    for seed in (1, 2):
        out.append(RunSpec(name=f"s{seed}_fp16", label="stable", shape="fp16_skips", lr=0.01, seed=seed,
                           fp16=(65536.0, 50), habit=habit(i, sparse_ok=False), control=(("fp16", None),), **BASE))
        i += 1
        out.append(RunSpec(name=f"s{seed}_adamw0.05_stable", label="stable", shape="plain", lr=0.05,
                           seed=seed, habit=habit(i), **BASE))
        i += 1
    for seed in (1, 2, 3):
        out.append(RunSpec(name=f"s{seed}_const0.1_nolearn", label="stable", shape="never_learns", lr=0.1, seed=seed,
                           habit=habit(i), **{**BASE, "schedule": "constant", "warmup": 0}))
        i += 1
        out.append(RunSpec(name=f"s{seed}_adamw1_explode", label="divergence", shape="explode_then_dead", lr=1.0,
                           seed=seed, habit=habit(i, sparse_ok=False), control=(("lr", 0.03),), **BASE))
        i += 1
    # the LR sweep: constant habit (TensorBoard every step + eval every 50), config.json per trial; no weight
    # decay, so no run above differs from a trial only in LR and seed (a sweep finder would rightly group it)
    intended = {0.003: ("stable", "plain"), 0.01: ("stable", "plain"), 0.03: ("stable", "plain"),
                0.1: ("stable", "plateau_then_learning"), 0.3: ("stable", "never_learns"),
                1.0: ("divergence", "explode_then_dead")}
    for k, (lr, (label, shape)) in enumerate(intended.items()):
        out.append(RunSpec(name=f"preln_lr_sweep/trial_{k}", label=label, shape=shape, lr=lr, seed=0,
                           habit=Habit(fmt="tb"), sweep="preln_lr_sweep",
                           control=(("lr", 0.03),) if label == "divergence" else None,
                           **{**BASE, "weight_decay": 0.0}))
    return out
