"""epoch_patterns: periodic and one-way level changes that are not instability.

- sawtooth: a finite training set (4096 examples, 20% label noise) read in a FIXED order (no
  shuffling), 3x128 MLP, Adam 0.002, 128 steps an epoch, 12 epochs: each epoch revisits the same
  batches in the same order, so the per-step loss repeats a within-epoch profile (the early
  batches of an epoch, last seen an epoch ago, are hard again) while the epoch means fall. Lightning
  runs also log the epoch-averaged train_loss_epoch.
- step_lr: 2x128 MLP, momentum 0.1 with x0.1 drops at steps 600 and 1200 (10% label noise): the
  loss drops at each milestone.
- plateau_then_learning: 6x64 ReLU MLP, momentum 0.05, constant: the loss sits at the trivial
  level for the first ~25% of training, then learns (to ~0.9).
- tiny_loss_tail: 2048 examples of a 4-class task memorised by a 2x128 MLP (Adam, cosine, 3000
  steps) down to ~1e-3, HF-logged with 4-decimal rounding.
- noisy: batch-2 SGD on a 3x64 MLP (heavy-tailed per-step loss, smoothed curve falling).
All stable.
"""

from __future__ import annotations

from benchmarks.corpus.families import Family, habit, targs
from benchmarks.corpus.spec import Habit, RunSpec

FAMILY = Family("epoch_patterns", "MLPs on finite / noisy teacher data", "Adam / SGD-momentum",
                "per-epoch sawtooth (fixed data order), step-LR drops, long plateau then learning, tiny loss")


def specs() -> list[RunSpec]:
    out: list[RunSpec] = []
    i = 0
    for seed in range(5):
        hb = (Habit(fmt="lightning", every=1), Habit(fmt="tb"), Habit(fmt="lightning", every=4),
              Habit(fmt="jsonl"), Habit(fmt="hf", every=2, mode="mean", digits=4))[seed]
        out.append(RunSpec(family="epoch_patterns", name=f"s{seed}_sawtooth", label="stable", shape="sawtooth",
                           task="teacher_cls", task_args=targs(depth=3, width=128, train_size=4096, shuffle=False,
                                                               label_noise=0.2, data_seed=seed % 2),
                           optimizer="adam", lr=0.002, steps=1536, batch_size=32, eval_every=128, seed=seed,
                           habit=hb, verify_args=(("window", 128), ("rise", 0.25))))
    for seed in range(4):
        out.append(RunSpec(family="epoch_patterns", name=f"s{seed}_steplr", label="stable", shape="step_lr",
                           task="teacher_cls", task_args=targs(depth=2, width=128, label_noise=0.1),
                           optimizer="momentum", lr=0.1, schedule="step", milestones=(600, 1200), steps=1500,
                           batch_size=32, eval_every=100, seed=seed, habit=habit(i),
                           verify_args=(("milestones", (600, 1200)),)))
        i += 1
    for seed in range(4):
        out.append(RunSpec(family="epoch_patterns", name=f"s{seed}_plateau", label="stable",
                           shape="plateau_then_learning", task="teacher_cls", task_args=targs(depth=6, width=64),
                           optimizer="momentum", lr=0.05, steps=1500, batch_size=32, eval_every=100, seed=seed,
                           habit=habit(i)))
        i += 1
    for seed in range(3):  # batch 2 SGD on a deeper MLP: heavy-tailed per-step noise
        out.append(RunSpec(family="epoch_patterns", name=f"s{seed}_bs2_noisy", label="stable", shape="noisy",
                           task="teacher_cls", task_args=targs(depth=3, width=64, label_noise=0.05),
                           optimizer="sgd", lr=0.03, steps=2000, batch_size=2, eval_every=200, seed=seed,
                           habit=habit(i), verify_args=(("window", 301),)))
        i += 1
    for seed in range(3):
        out.append(RunSpec(family="epoch_patterns", name=f"s{seed}_tiny", label="stable", shape="tiny_loss_tail",
                           task="teacher_cls", task_args=targs(dim=16, classes=4, depth=2, width=128, train_size=2048,
                                                               data_seed=seed),
                           optimizer="adam", lr=0.003, schedule="cosine", warmup=50, steps=3000, batch_size=64,
                           eval_every=250, seed=seed, habit=Habit(fmt="hf", every=(10, 25, 50)[seed], mode="mean",
                                                                  digits=4)))
    return out
