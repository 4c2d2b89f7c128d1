"""cosine_tail (held out): long cosine schedules that reach a tiny loss, logged the HF way.

Task: 2048 examples of a 4-class teacher task (16-d inputs, trivial ~1.38), 2x128 MLP memorises
them: Adam(W), 50 warmup steps + cosine to 0 over 3000 steps, batch 64. Measured: the loss goes
1.39 -> ~1e-3, and late per-step bumps like 0.01 -> 0.024 (one hard batch) are a tiny share of the
1.38 learned: stable. Logged as HF trainer_state.json (mean loss since the last log, 4-decimal
rounding, so 0.0001 -> 0.0002 quantisation steps show), eval every 250 steps; some as TensorBoard
every step. An HF-style LR sweep on fresh data of the same task (3e-4 ... 1e-1, 1500 steps,
config.json with lr and identity fields): best eval loss 0.315, 0.297, 0.281, 0.260, 0.269, 0.307;
lr* = 0.01, and 0.1 jumps to 1.5x its initial loss right after warmup.
"""

from __future__ import annotations

from benchmarks.corpus.families import Family, targs
from benchmarks.corpus.spec import Habit, RunSpec

FAMILY = Family("cosine_tail", "2x128 MLP memorising 2048 examples (4 classes)", "Adam/AdamW, warmup 50 + cosine",
                "tiny final loss (~1e-3) with late noise bumps, HF rounding to 4 decimals; HF-style LR sweep",
                sweeps=("cosine_hf_sweep",))

BASE = dict(family="cosine_tail", task="teacher_cls", batch_size=64, steps=3000, schedule="cosine", warmup=50,
            eval_every=250)


def specs() -> list[RunSpec]:
    out: list[RunSpec] = []
    for seed in range(12):
        opt = ("adam", "adamw")[seed % 2]
        lr = (0.003, 0.004, 0.002, 0.005, 0.003)[seed % 5]
        hb = (Habit(fmt="hf", every=10, mode="mean", digits=4), Habit(fmt="hf", every=50, mode="mean", digits=4),
              Habit(fmt="tb"), Habit(fmt="hf", every=25, mode="mean", digits=4, grad_norm=False),
              Habit(fmt="jsonl", every=5, digits=4))[seed % 5]
        out.append(RunSpec(name=f"s{seed}_{opt}{lr:g}", label="stable", shape="tiny_loss_tail",
                           task_args=targs(dim=16, classes=4, depth=2, width=128, train_size=2048, data_seed=seed % 3),
                           optimizer=opt, lr=lr, weight_decay=0.01 if opt == "adamw" else 0.0, seed=seed, habit=hb,
                           **BASE))
    # fresh data (no memorising): the eval loss ranks LRs clearly (0.01: 0.260; 0.03: 0.269; 3e-3: 0.281)
    for k, lr in enumerate((3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)):
        label, shape = ("stable", "plain") if lr < 0.1 else ("early_instability", "early_blip")
        out.append(RunSpec(name=f"cosine_hf_sweep/run_{k}", label=label, shape=shape,
                           task_args=targs(dim=16, classes=4, depth=2, width=128),
                           optimizer="adamw", lr=lr, weight_decay=0.01, seed=0, sweep="cosine_hf_sweep",
                           habit=Habit(fmt="hf", every=25, mode="mean", digits=4),
                           **{**BASE, "steps": 1500, "eval_every": 100}))
    return out
