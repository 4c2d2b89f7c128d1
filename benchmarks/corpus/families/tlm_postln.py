"""tlm_postln: a Post-LN causal Transformer LM (Norm(x + f(x))), AdamW (betas 0.9/0.98, wd 0.01),
linear warmup + cosine to 0, 800 steps.

Task as tlm_preln (2nd-order Markov chain, trivial loss 3.44); model 2 blocks, d 64, seq 16,
batch 16 (~10 ms a step). Measured: peak lr 0.005 learns steadily to ~1.2. Peak lr 0.02 reaches
~3.05 within the warmup, then the loss rises back to ~3.2 and sits there, thrashing, for ~300
steps while the LR is high, recovering only as the cosine decays (to ~2.75 at the end) while the
0.005 control goes to 1.2: the sustained unstable regime. With 200 warmup steps it starts after
warmup (~25% of training: mid_instability); with 20 warmup steps it starts at step ~95, which
the early runs put inside the first 10% by training 1200 steps (early_instability).
At peak 0.03 the loss goes back to the trivial level and recovers little before the end.

Labels: stable (peak 0.005, 0.003 and 0.008), sustained_regime mid / early by where the gap to the
0.005 control starts (verified, never assumed).
"""

from __future__ import annotations

from benchmarks.corpus.families import Family, habit, targs
from benchmarks.corpus.spec import RunSpec

FAMILY = Family("tlm_postln", "Post-LN Transformer LM (2x64, seq 16) on a 2nd-order Markov chain",
                "AdamW b2 0.98, warmup + cosine", "stable at peak <= 0.008; sustained unstable regime at "
                "peak 0.02 (mid after a 200-step warmup, early after 20)")

TA = targs(d_model=64, layers=2, seq=16, order=2, norm_first=False)
BASE = dict(family="tlm_postln", task="markov_lm", task_args=TA, optimizer="adamw", betas=(0.9, 0.98),
            weight_decay=0.01, steps=800, batch_size=16, schedule="cosine", eval_every=50)


def specs() -> list[RunSpec]:
    out: list[RunSpec] = []
    i = 0
    for seed in (0, 1, 2, 3, 4):
        out.append(RunSpec(name=f"s{seed}_peak0.02_wu200", label="mid_instability", shape="sustained_regime",
                           lr=0.02, warmup=200, seed=seed, habit=habit(i), control=(("lr", 0.005),), **BASE))
        i += 1
    for seed in (0, 1, 2):  # 1200 steps: the regime starts ~step 95, inside the first 10%
        out.append(RunSpec(name=f"s{seed}_peak0.02_wu20", label="early_instability", shape="sustained_regime",
                           lr=0.02, warmup=20, seed=seed, habit=habit(i, sparse_ok=False), control=(("lr", 0.005), ("warmup", 200)),
                           **{**BASE, "steps": 1200}))
        i += 1
    for seed, lr in ((0, 0.005), (1, 0.003), (2, 0.008)):
        out.append(RunSpec(name=f"s{seed}_peak{lr:g}_stable", label="stable", shape="plain", lr=lr, warmup=200,
                           seed=seed, habit=habit(i), **BASE))
        i += 1
    return out
