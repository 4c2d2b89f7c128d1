"""conv_resmlp: probes' built-in cases: a WideResNet-like conv net and residual / plain MLPs.

- WideResNet (BatchNorm, pre-activation blocks, 16x16 synthetic images, 10% label noise, trivial
  ln 10), Nesterov momentum, batch 64 (at batch 32 even the warmed-up lr 2.0 thrashed), 200 steps:
  lr 2.0 without warmup -> the loss rises to ~1.8x its start within the first ~5 steps and
  recovers (early_instability); 20 warmup steps remove it (one seed of three still rose 21% of
  its progress later: dropped). Constant-LR sweep (best eval loss): 0.1 -> 0.73, 0.3 -> 0.74,
  1.0 -> 0.69, 2.0 -> 1.07 (early_instability), 5.0 -> 2.33 (infeasible): lr* = 1.0 at the edge.
- Residual MLP without normalisation (8 blocks), Adam 0.03 without warmup: loss 2.5-5.5x the
  initial value at step 1, back within ~5 steps, then normal training (early blip,
  early_instability; one seed of eight only reached 1.4x: dropped); 50 warmup steps remove it;
  at 0.04 one seed blew up for good, so 0.04 is not used. Adam 0.003 and Pre-LN blocks are stable.
- MLP with rare outlier batches (inputs x30, about 1 in 97 steps after step 150): momentum
  0.02-0.03 or Adam 0.003 without clipping (at momentum 0.05 an outlier killed the net: not used) -> loss spikes after the outliers that last several steps, led by a grad-norm
  spike 30x the median (short spikes, mid_instability); with clipping at 2 the loss no longer
  responds while the grad norm still spikes (grad_norm_spikes, stable).
- plain MLP, momentum at lr 10: NaN within ~10 steps (divergence).
"""

from __future__ import annotations

from benchmarks.corpus.families import Family, habit, targs
from benchmarks.corpus.spec import Habit, RunSpec

FAMILY = Family("conv_resmlp", "WideResNet-like conv net / residual MLP / outlier-batch MLP", "Nesterov, Adam, momentum",
                "early instability (no warmup) and its warmup fix; short mid spikes from outlier batches; grad-norm-only "
                "spikes with clipping; NaN; constant-LR WRN sweep", sweeps=("wrn_lr_sweep",))

WRN = dict(family="conv_resmlp", task="images", optimizer="nesterov", batch_size=64, steps=200, eval_every=20)
RES = dict(family="conv_resmlp", task="teacher_cls", optimizer="adam", batch_size=64, steps=400, eval_every=50)
OUT = dict(family="conv_resmlp", task="teacher_cls", batch_size=64, steps=800, eval_every=50,
           task_args=targs(depth=2, width=128, outliers=(97, 30.0, 150)))


def specs() -> list[RunSpec]:
    out: list[RunSpec] = []
    i = 0
    for seed in range(3):
        out.append(RunSpec(name=f"wrn_s{seed}_nesterov2_nowarmup", label="early_instability", shape="early_blip", lr=2.0,
                           seed=seed, habit=habit(i, sparse_ok=False), control=(("warmup", 20),), **WRN))
        i += 1
        out.append(RunSpec(name=f"wrn_s{seed}_nesterov2_warmup20", label="stable", shape="plain", lr=2.0, warmup=20,
                           seed=seed, habit=habit(i, sparse_ok=False), **WRN))
        i += 1
    resmlp = targs(model="resmlp", depth=8, width=64)
    for seed in range(8):
        lr = 0.03  # 0.04 blew up for good on one seed of three
        out.append(RunSpec(name=f"res_s{seed}_adam{lr:g}_nowarmup", label="early_instability", shape="early_blip",
                           task_args=resmlp, lr=lr, seed=seed, habit=habit(i, sparse_ok=False),
                           control=(("warmup", 50),), **RES))
        i += 1
    for seed in range(4):
        args = (dict(task_args=resmlp, lr=0.02, warmup=50), dict(task_args=resmlp, lr=0.003),
                dict(task_args=targs(model="resmlp", depth=8, width=64, res_norm="pre"), lr=0.003),
                dict(task_args=resmlp, lr=0.03, warmup=50))[seed]
        out.append(RunSpec(name=f"res_s{seed}_stable", label="stable", shape="plain", seed=seed, habit=habit(i),
                           **args, **RES))  # type: ignore[arg-type]
        i += 1
    for seed in range(9):
        opt, lr = (("momentum", 0.03), ("momentum", 0.02), ("adam", 0.003))[seed % 3]
        out.append(RunSpec(name=f"outlier_s{seed}_{opt}{lr:g}", label="mid_instability", shape="short_spike",
                           optimizer=opt, lr=lr, seed=seed, habit=habit(i, sparse_ok=False),
                           control=(("clip", 2.0),), **OUT))
        i += 1
    for seed in range(6):
        opt, lr = (("momentum", 0.03), ("adam", 0.003))[seed % 2]
        # the outlier batch's own loss is a one-step blip; the grad norm spikes; the loss does not follow
        out.append(RunSpec(name=f"outlier_s{seed}_{opt}{lr:g}_clip2", label="stable",
                           shape=("grad_norm_spikes", "one_point_blips")[seed % 3 == 2],
                           optimizer=opt, lr=lr, clip=2.0, seed=seed, habit=habit(i), **OUT))
        i += 1
    for seed in range(2):
        out.append(RunSpec(name=f"mlp_s{seed}_momentum10_nan", label="divergence", shape="nan", optimizer="momentum",
                           lr=10.0, seed=seed, habit=Habit(fmt=("jsonl", "lightning")[seed]),
                           **{**OUT, "task_args": targs(depth=2, width=256)}))
    for lr in (0.1, 0.3, 1.0, 2.0, 5.0):
        label, shape = ("stable", "plain") if lr <= 1.0 else ("early_instability", "early_blip")
        out.append(RunSpec(name=f"wrn_lr_sweep/lr_{lr:g}", label=label, shape=shape, lr=lr, seed=0,
                           habit=Habit(fmt="tb"), sweep="wrn_lr_sweep", **WRN))
    return out
