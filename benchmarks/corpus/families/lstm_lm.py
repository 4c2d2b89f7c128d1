"""lstm_lm (held out): a character LSTM LM on pseudo-English from a small probabilistic grammar.

Text: 40 made-up words with Zipf frequencies strung by a word-bigram grammar (28 characters;
character unigram entropy 2.86 = the trivial loss). Model: 1-layer LSTM, hidden 64, seq 32,
batch 16, ~5 ms a step.

Measured: plain SGD lr 3-6 learns to ~0.65 in 800 steps. With a garbage batch about once in 150
steps after step 100 (uniform random characters: a broken shard), the unclipped update on it
damages the model: the loss is ~8 on the garbage batch, then 2.4-3.0, 1.2-1.6 on the next clean
batches, back to ~0.7 within ~4 steps, each led by a grad-norm spike ~15x its median: short
spikes, mid_instability. Clipping at 0.5 leaves only the garbage batch's own one-step blip (the
next step is back at ~0.8): stable. SGD lr 15 without warmup: the loss jumps to ~3x its start at
steps 2-4 and is back by step ~10, then trains normally to ~0.8: early_instability (control: 50
warmup steps). Adam 0.01 and SGD 3 (clean data): stable.
"""

from __future__ import annotations

from benchmarks.corpus.families import Family, habit, targs
from benchmarks.corpus.spec import RunSpec

FAMILY = Family("lstm_lm", "char LSTM (hidden 64) on grammar text", "SGD / Adam",
                "short spikes after garbage batches without clipping (mid); one-step blips with clipping "
                "(stable); early blip at SGD lr 15 (early)")

BASE = dict(family="lstm_lm", task="char_lm", batch_size=16, steps=800, eval_every=50)
CORRUPT = targs(hidden=64, seq=32, corrupt=(150, 100))
CLEAN = targs(hidden=64, seq=32)


def specs() -> list[RunSpec]:
    out: list[RunSpec] = []
    i = 0
    for seed in range(6):
        lr = (6.0, 5.0)[seed % 2]
        out.append(RunSpec(name=f"s{seed}_sgd{lr:g}_garbage", label="mid_instability", shape="short_spike",
                           task_args=CORRUPT, optimizer="sgd", lr=lr, seed=seed, habit=habit(i, sparse_ok=False),
                           control=(("clip", 0.5),), **BASE))
        i += 1
    for seed in range(4):
        out.append(RunSpec(name=f"s{seed}_sgd6_garbage_clip0.5", label="stable", shape="one_point_blips",
                           task_args=CORRUPT, optimizer="sgd", lr=6.0, clip=0.5, seed=seed + 6, habit=habit(i), **BASE))
        i += 1
    for seed in range(4):
        out.append(RunSpec(name=f"s{seed}_sgd15_nowarmup", label="early_instability", shape="early_blip",
                           task_args=CLEAN, optimizer="sgd", lr=15.0, seed=seed, habit=habit(i, sparse_ok=False),
                           control=(("warmup", 50),), **BASE))
        i += 1
    for seed in range(4):
        opt, lr = (("adam", 0.01), ("sgd", 3.0))[seed % 2]
        out.append(RunSpec(name=f"s{seed}_{opt}{lr:g}_clean", label="stable", shape="plain", task_args=CLEAN,
                           optimizer=opt, lr=lr, seed=seed + 10, habit=habit(i), **BASE))
        i += 1
    return out
