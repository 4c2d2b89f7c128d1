"""overfit: a tiny training set memorised while the eval loss rises.

Task: 256 training examples of the 10-class teacher task with 20% flipped labels, 2x256 MLP,
Adam (constant or cosine), batch 32, 1500 steps, eval every 25 steps on 2048 fresh examples.
Measured: train loss falls to ~1e-4 (memorised, noisy labels included) while the eval loss bottoms
out near 1.4-1.9 by step ~100 and then climbs steadily: overfitting, not instability => stable.
Some runs log with HF's 4-decimal rounding, so the train loss shows 0.0001 -> 0.0002 steps.
"""

from __future__ import annotations

from benchmarks.corpus.families import Family, habit, targs
from benchmarks.corpus.spec import Habit, RunSpec

FAMILY = Family("overfit", "2x256 MLP on 256 examples (20% label noise)", "Adam",
                "train loss -> 1e-4 while eval loss rises (stable); rounded tiny losses")


def specs() -> list[RunSpec]:
    out: list[RunSpec] = []
    for seed in range(12):
        lr = (0.003, 0.001, 0.003, 0.01)[seed % 4]
        hb = habit(seed) if seed % 3 else Habit(fmt="hf", every=(5, 10, 25)[seed % 3], mode="mean", digits=4)
        out.append(RunSpec(family="overfit", name=f"s{seed}_adam{lr:g}", label="stable", shape="overfit",
                           task="teacher_cls", task_args=targs(depth=2, width=256, train_size=256, label_noise=0.2,
                                                               data_seed=seed % 2),
                           optimizer="adam", lr=lr, schedule=("constant", "cosine")[seed % 2], steps=1500,
                           batch_size=32, eval_every=25, seed=seed, habit=hb))
    return out
