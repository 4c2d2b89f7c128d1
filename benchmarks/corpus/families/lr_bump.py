"""lr_bump: step changes that do not come back: an LR that jumps at one step, and resumes that lost
the optimizer and scheduler state.

Models: a 2x128 MLP (Adam, 10-class teacher task with 10% label noise, trivial 2.25) and the
8-block un-normalised residual MLP (Adam, 5% label noise), batch 64, 1000-1500 steps.

Measured: Adam lr 0.001 multiplied x20 at step 500 of 1500: the loss jumps at that step and then
sits higher than the unbumped control for the rest of the run (it recovers slowly or never):
mid_instability. The same bump at step 60 (4% of training) after early progress:
early_instability. Residual MLP, Adam peak 0.02 after 50 warmup steps + cosine, resumed at step
600 without the optimizer state and with the schedule back at its peak (no warmup): the fresh Adam
moments at peak LR blow the loss up at the resume step, then it recovers over hundreds of steps:
mid_instability. The control of each is the same seed without the bump/reset. A resume that
restored everything (the log re-writes the steps from the checkpoint on: steps go back) and a x1.5
bump are stable.
"""

from __future__ import annotations

from benchmarks.corpus.families import Family, habit, targs
from benchmarks.corpus.spec import Habit, RunSpec

FAMILY = Family("lr_bump", "2x128 MLP / 8-block residual MLP, teacher task", "Adam",
                "LR x10-x30 at one step (mid or early), resume resetting optimizer+scheduler (mid), "
                "correct resumes and small bumps (stable)")

MLP = dict(family="lr_bump", task="teacher_cls", task_args=targs(depth=2, width=128, label_noise=0.1),
           optimizer="adam", batch_size=64, steps=1500, lr=0.001, eval_every=100)
RES = dict(family="lr_bump", task="teacher_cls", task_args=targs(model="resmlp", depth=8, width=64, label_noise=0.05),
           optimizer="adam", batch_size=64, steps=1000, lr=0.02, schedule="cosine", warmup=50, eval_every=100)


def specs() -> list[RunSpec]:
    out: list[RunSpec] = []
    i = 0
    for seed in range(6):
        factor = (10.0, 20.0, 30.0)[seed % 3]
        at = (500, 800, 1000)[seed % 3]
        out.append(RunSpec(name=f"s{seed}_bump_x{factor:g}_at{at}", label="mid_instability", shape="step_change",
                           bump=(at, factor), seed=seed, habit=habit(i), control=(("bump", None),),
                           verify_args=(("event_step", at),), **MLP))
        i += 1
    for seed in range(3):
        factor = (20.0, 30.0, 20.0)[seed]
        out.append(RunSpec(name=f"s{seed}_bump_x{factor:g}_at60", label="early_instability", shape="early_step_change",
                           bump=(60, factor), seed=seed, habit=habit(i, sparse_ok=False), control=(("bump", None),),
                           **MLP))
        i += 1
    for seed in range(5):
        at = (600, 500, 700, 600, 400)[seed]
        out.append(RunSpec(name=f"s{seed}_resume_reset_at{at}", label="mid_instability", shape="step_change",
                           reset_at=at, seed=seed, habit=habit(i), control=(("reset_at", None),),
                           verify_args=(("event_step", at),), **RES))
        i += 1
    for seed in range(3):
        out.append(RunSpec(name=f"s{seed}_resumed_ok", label="stable", shape="plain", seed=seed + 10,
                           habit=Habit(fmt=("tb", "jsonl", "tb")[seed], restart=(700 + 50 * seed, 500)), **RES))
        out.append(RunSpec(name=f"s{seed}_bump_x1.5", label="stable", shape="plain", bump=(700, 1.5), seed=seed + 10,
                           habit=habit(i), control=(("bump", None),), **MLP))
        i += 1
        out.append(RunSpec(name=f"s{seed}_nobump", label="stable", shape="plain", seed=seed + 20, habit=habit(i), **MLP))
        i += 1
    return out
