"""lr_bump: step changes that do not come back: an LR that jumps at one step, and resumes that lost
the optimizer and scheduler state.

Model: a 2x128 ReLU MLP on the clean 10-class teacher task (trivial 2.25; it gets to ~0.5 in 1500
steps), Adam, batch 64, 1500 steps.

Measured (median loss per 75 steps):
- Adam 0.001 multiplied x50 at step 800: 0.53 -> 1.4-1.67 within 75 steps and it stays there (3x,
  never recovers) while the unbumped control stays at 0.5: mid_instability. x20: only 0.53 -> 0.91,
  about 20% of the progress: used only where verification confirms it.
- Adam 0.003 multiplied x20 at step 100 (6.7% of training): 0.55 -> 2.89 at the next step, then
  ~1.5-1.8 for the rest of the run vs 0.55 for the control: early_instability. x30 at step 100:
  0.55 -> 5.2, then flat at the trivial loss (2.26) for good: a collapse after learning, divergence.
- Adam, warmup 100 + cosine to peak 0.03-0.05, resumed at step 1000-1200 without the optimizer
  state and with the schedule back at its peak: 0.51 -> 0.86 (peak 0.03) or 0.7 -> 1.1 (0.05) and
  it stays above the control (0.5) for the rest of the run: mid_instability where verification
  confirms a jump of >= 1.5x that holds >= 15% of the progress above the control.
A resume that restored everything (the log re-writes the steps from the checkpoint on: steps go
back), a x1.5 bump and plain runs are stable. Controls: the same seed without the bump/reset.
"""

from __future__ import annotations

from benchmarks.corpus.families import Family, habit, targs
from benchmarks.corpus.spec import Habit, RunSpec

FAMILY = Family("lr_bump", "2x128 MLP, clean teacher task", "Adam (const or warmup+cosine)",
                "LR x10-x30 at one step (mid or early), resume resetting optimizer+scheduler (mid), "
                "correct resumes and small bumps (stable)")

MLP = dict(family="lr_bump", task="teacher_cls", task_args=targs(depth=2, width=128), optimizer="adam",
           batch_size=64, steps=1500, lr=0.001, eval_every=100)
COS = {**MLP, "schedule": "cosine", "warmup": 100}


def specs() -> list[RunSpec]:
    out: list[RunSpec] = []
    i = 0
    for seed in range(8):
        factor, at = ((50.0, 800), (40.0, 600), (40.0, 1000), (20.0, 700))[seed % 4]
        out.append(RunSpec(name=f"s{seed}_bump_x{factor:g}_at{at}", label="mid_instability", shape="step_change",
                           bump=(at, factor), seed=seed, habit=habit(i), control=(("bump", None),),
                           verify_args=(("event_step", at),), **MLP))
        i += 1
    for seed in range(4):
        factor = (20.0, 15.0)[seed % 2]
        out.append(RunSpec(name=f"s{seed}_bump_x{factor:g}_at100", label="early_instability", shape="early_step_change",
                           bump=(100, factor), seed=seed, habit=habit(i, sparse_ok=False), control=(("bump", None),),
                           verify_args=(("event_step", 100),), **{**MLP, "lr": 0.003}))
        i += 1
    for seed in range(5):
        out.append(RunSpec(name=f"s{seed}_bump_x30_at100_collapse", label="divergence", shape="collapse_after_learning",
                           bump=(100, 30.0), seed=seed, habit=habit(i), control=(("bump", None),),
                           **{**MLP, "lr": 0.003}))
        i += 1
    for seed in range(6):
        peak, at = ((0.05, 1000), (0.04, 1100))[seed % 2]
        out.append(RunSpec(name=f"s{seed}_resume_reset_peak{peak:g}_at{at}", label="mid_instability",
                           shape="step_change", reset_at=at, seed=seed, habit=habit(i), control=(("reset_at", None),),
                           verify_args=(("event_step", at),), **{**COS, "lr": peak}))
        i += 1
    for seed in range(3):
        out.append(RunSpec(name=f"s{seed}_resumed_ok", label="stable", shape="plain", seed=seed + 10,
                           habit=Habit(fmt=("tb", "jsonl", "tb")[seed], restart=(900 + 50 * seed, 700)),
                           **{**COS, "lr": 0.01}))
        out.append(RunSpec(name=f"s{seed}_bump_x1.5", label="stable", shape="plain", bump=(700, 1.5), seed=seed + 10,
                           habit=habit(i), control=(("bump", None),), **MLP))
        i += 1
        out.append(RunSpec(name=f"s{seed}_nobump", label="stable", shape="plain", seed=seed + 20, habit=habit(i),
                           **{**COS, "lr": 0.003}))
        i += 1
    return out
