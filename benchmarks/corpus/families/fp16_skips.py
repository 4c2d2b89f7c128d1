"""fp16_skips: fp16 dynamic loss scaling, emulated for real on CPU.

Each step the loss is multiplied by the scale, the gradients are cast to float16; on inf/NaN the
step is skipped (the LR schedule does not advance) and the scale halves, else the gradients are
unscaled and applied, and every `growth` good steps the scale doubles (torch's GradScaler rule,
with a shorter growth interval so skips recur within a short run).

Models: 2x128 MLP and 8-block residual MLP with Pre-LN (teacher task), Adam, warmup + cosine,
1000 steps. Measured: from scale 2^16 the scale settles where fp16 overflows, so every ~50-200
steps one step is skipped with an inf grad norm, the loss unaffected (the fp32 control's curve
within noise): stable. At momentum lr 6 (no warmup) the loss goes NaN in ~10 steps and stays
NaN (skipping cannot save it): divergence.
"""

from __future__ import annotations

from benchmarks.corpus.families import Family, habit, targs
from benchmarks.corpus.spec import Habit, RunSpec

FAMILY = Family("fp16_skips", "2x128 MLP / Pre-LN residual MLP, teacher task", "Adam + fp16 loss scaling",
                "isolated inf grad norms on skipped steps, loss unaffected (stable); NaN at far too high LR")

BASE = dict(family="fp16_skips", task="teacher_cls", optimizer="adam", batch_size=64, steps=1000, lr=0.003,
            schedule="cosine", warmup=50, eval_every=100)


def specs() -> list[RunSpec]:
    out: list[RunSpec] = []
    i = 0
    for seed in range(10):
        ta = targs(depth=2, width=128) if seed % 2 == 0 else targs(model="resmlp", depth=8, width=64, res_norm="pre")
        growth = (50, 100, 200, 100)[seed % 4]
        out.append(RunSpec(name=f"s{seed}_fp16_g{growth}", label="stable", shape="fp16_skips", task_args=ta,
                           seed=seed, fp16=(65536.0, growth), habit=habit(i, sparse_ok=False),
                           control=(("fp16", None),), **BASE))
        i += 1
    for seed in range(3):
        out.append(RunSpec(name=f"s{seed}_fp16_nan", label="divergence", shape="nan", task_args=targs(depth=2, width=128),
                           seed=seed, fp16=(65536.0, 100), habit=Habit(fmt=("hf", "tb", "jsonl")[seed], mode="mean"),
                           **{**BASE, "optimizer": "sgd", "lr": (20.0, 30.0, 25.0)[seed], "warmup": 0}))
    return out
