"""relu_dying: deep ReLU MLP classifiers (no normalisation) where a too-high LR kills the network.

Task: 10-class labels from a fixed random teacher net on 32-d Gaussian inputs (label-prior entropy
2.25 nats = the trivial loss). Models: 4x128 ReLU MLP, batch 32, ~1 ms a step.

Measured:
- SGD momentum 0.9 warming up over 300 steps to peak 0.5-0.7 (constant after): learns to ~1.3-1.7
  while the LR is moderate, then collapses to a flat plateau at the trivial loss (2.26-2.30) for
  good; the grad norm drops from ~1.7 to a flat ~0.2 floor (a dead network). Peak 0.1: learns
  (1.0 by step 1200) = the control. Peak 1.0 learned too little first on one seed (not used).
  => collapse_after_learning, divergence.
- Adam at lr 0.1-1.0 without warmup: the first step explodes the loss 20x-1e7x, then it sits flat
  at the trivial loss with a flat grad-norm floor (~0.2 vs ~1.6 for Adam 0.003). => explode_then_dead,
  divergence; "it settled" is wrong.
- SGD at lr 20 / momentum at lr 6: NaN within 10 steps. => nan, divergence.
- Adam 0.001-0.003, momentum 0.05-0.1 with warmup: stable.
- The momentum constant-LR sweep (seed 0, best eval loss): 0.003 -> 1.22, 0.01 -> 0.615,
  0.03 -> 0.632, 0.1 -> 1.04 (noisy, rises 26% of its progress: ambiguous), 0.3 -> never learns
  (infeasible), 1.0 -> NaN at step 141. lr* = 0.01 with a stable 0.03 next: not at the edge (a
  sweep whose edge flag must be False; lr* wins by only ~3%).
"""

from __future__ import annotations

from benchmarks.corpus.families import Family, habit, targs
from benchmarks.corpus.spec import Habit, RunSpec

FAMILY = Family("relu_dying", "4x128 ReLU MLP, 10-class teacher task", "SGD-momentum / Adam",
                "collapse to chance after learning (warmup to too-high LR); explode then dead (Adam 0.1-1); "
                "NaN; stable; constant-LR sweep whose high LRs never learn", sweeps=("relu_momentum_sweep",))

TA = targs(depth=4, width=128)
BASE = dict(family="relu_dying", task="teacher_cls", task_args=TA, batch_size=32, steps=1200, eval_every=100)


def specs() -> list[RunSpec]:
    out: list[RunSpec] = []
    i = 0
    for seed in range(6):
        peak = (0.5, 0.7)[seed % 2]
        out.append(RunSpec(name=f"s{seed}_m_wu300_peak{peak:g}_collapse", label="divergence",
                           shape="collapse_after_learning", optimizer="momentum", lr=peak, warmup=300, seed=seed,
                           habit=habit(i), control=(("lr", 0.1),), **BASE))
        i += 1
    for seed in range(6):
        lr = (0.1, 0.3, 1.0, 0.3, 0.1, 1.0)[seed]
        out.append(RunSpec(name=f"s{seed}_adam{lr:g}_explode", label="divergence", shape="explode_then_dead",
                           optimizer="adam", lr=lr, seed=seed, habit=habit(i, sparse_ok=False),
                           control=(("lr", 0.003),), **BASE))
        i += 1
    for seed, (opt, lr) in enumerate((("sgd", 20.0), ("momentum", 6.0), ("sgd", 40.0))):
        out.append(RunSpec(name=f"s{seed}_{opt}{lr:g}_nan", label="divergence", shape="nan", optimizer=opt, lr=lr,
                           seed=seed, habit=Habit(fmt=("hf", "tb", "jsonl")[seed], mode="mean" if seed == 0 else
                                                  "instant", crash_after_nan=seed == 2), **BASE))
    for seed in range(4):
        opt, lr, wu = (("adam", 0.003, 0), ("adam", 0.001, 0), ("momentum", 0.1, 300), ("momentum", 0.05, 0))[seed]
        out.append(RunSpec(name=f"s{seed}_{opt}{lr:g}_stable", label="stable",
                           shape="plain",
                           optimizer=opt, lr=lr, warmup=wu, seed=seed, habit=habit(i), **BASE))
        i += 1
    intended = {0.003: ("stable", "plain"), 0.01: ("stable", "plain"), 0.03: ("stable", "plain"),
                0.1: ("stable", "plain"), 0.3: ("stable", "never_learns"), 1.0: ("divergence", "nan")}
    for k, (lr, (label, shape)) in enumerate(intended.items()):
        out.append(RunSpec(name=f"relu_momentum_sweep/run-{k}", label=label, shape=shape, optimizer="momentum",
                           lr=lr, seed=0, habit=Habit(fmt="jsonl"), sweep="relu_momentum_sweep", **BASE))
    return out
