"""small_batch (held out): batch sizes 1-8, heavy-tailed per-step noise.

Task: the 10-class teacher task, 2x128 MLP. SGD at lr 0.02-0.05 (batch 1-2) or Adam 0.001-0.003
(batch 4-8), 2000 steps: the per-step loss swings between ~0 and 3+ (a single example's loss),
while the smoothed curve falls steadily: stable. At SGD lr 0.3 with batch 2 the loss hovers around the trivial level and never learns (stable, no progress; the sweep-less
counterpart of tlm_preln's never-learns runs). SGD at lr 20-30 with batch 4: NaN within a few
steps (divergence).
"""

from __future__ import annotations

from benchmarks.corpus.families import Family, habit, targs
from benchmarks.corpus.spec import RunSpec

FAMILY = Family("small_batch", "2x128 MLP, batch 1-8", "SGD / Adam",
                "heavy-tailed small-batch noise (stable); collapse after learning at a too-high SGD LR")

BASE = dict(family="small_batch", task="teacher_cls", task_args=targs(depth=2, width=128), steps=2000, eval_every=100,
            verify_args=(("window", 301),))


def specs() -> list[RunSpec]:
    out: list[RunSpec] = []
    i = 0
    for seed in range(14):
        opt, lr, bs = (("sgd", 0.05, 2), ("sgd", 0.02, 1), ("adam", 0.001, 4), ("adam", 0.003, 8),
                       ("momentum", 0.01, 4))[seed % 5]
        out.append(RunSpec(name=f"s{seed}_{opt}{lr:g}_bs{bs}", label="stable", shape="noisy", optimizer=opt, lr=lr,
                           batch_size=bs, seed=seed, habit=habit(i), **BASE))
        i += 1
    for seed in range(3):
        out.append(RunSpec(name=f"s{seed}_sgd0.3_bs2", label="stable", shape="never_learns",
                           optimizer="sgd", lr=0.3, batch_size=2, seed=seed, habit=habit(i), **BASE))
        i += 1
    for seed in range(3):  # far too high: NaN within a few steps, logged to the end or until the job died
        out.append(RunSpec(name=f"s{seed}_sgd{(20, 30, 25)[seed]}_bs4_nan", label="divergence", shape="nan",
                           optimizer="sgd", lr=(20.0, 30.0, 25.0)[seed], batch_size=4, seed=seed,
                           habit=habit(i, sparse_ok=False), **BASE))
        i += 1
    return out
