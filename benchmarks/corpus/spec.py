"""What one corpus run is: the training configuration, how it is logged, and what it should show.

A :class:`RunSpec` is plain data (frozen, hashable, JSON-able) so a family's list of specs can be
fingerprinted: a family is retrained only when its specs change. ``label`` and ``shape`` are the
*intended* regime and failure shape; verify.py checks the recorded curve against them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

CLASSES = ("stable", "early_instability", "mid_instability", "divergence")


@dataclass(frozen=True)
class Habit:
    """How a run is logged: the format and the habits of the tool that wrote it.

    fmt: tb (torch SummaryWriter), lightning (CSVLogger metrics.csv + hparams.yaml), hf
    (trainer_state.json), jsonl (one object per line). every: log the train loss every N steps;
    mode: "instant" (the step's own value) or "mean" (the mean since the last log, HF's habit);
    digits: round logged values (HF rounds to 4); grad_norm / lr: log them or not; eval: log the eval
    loss; restart: (die_at, resume_from) the job died after step die_at and resumed from a checkpoint
    at resume_from, re-logging those steps (steps go back in the log); crash_after_nan: stop the log
    a few steps after the loss went non-finite (a run that crashed) instead of logging NaN to the end.
    """

    fmt: str = "tb"
    every: int = 1
    mode: str = "instant"
    digits: int | None = None
    grad_norm: bool = True
    lr: bool = True
    eval: bool = True
    restart: tuple[int, int] | None = None
    crash_after_nan: bool = False


@dataclass(frozen=True)
class RunSpec:
    family: str
    name: str  # the run's directory under runs/<family>/
    label: str  # intended regime (one of CLASSES)
    shape: str  # the failure shape (failure-shapes.md) this run is designed to show
    task: str
    task_args: tuple[tuple[str, Any], ...] = ()
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    steps: int = 500
    batch_size: int = 32
    schedule: str = "constant"  # constant | cosine | linear | step
    warmup: int = 0
    min_lr_ratio: float = 0.0  # cosine/linear end at lr * min_lr_ratio
    milestones: tuple[int, ...] = ()  # step schedule: lr *= gamma at each
    gamma: float = 0.1
    bump: tuple[int, float] | None = None  # (step, factor): the LR is multiplied by factor from that step on
    reset_at: int | None = None  # a resume that lost the optimizer state and restarted the schedule at peak
    clip: float | None = None
    fp16: tuple[float, int] | None = None  # dynamic loss scaling: (initial scale, growth interval)
    seed: int = 0
    eval_every: int | None = None
    habit: Habit = field(default_factory=Habit)
    control: tuple[tuple[str, Any], ...] | None = None  # overrides that remove the cause: the paired control run
    sweep: str | None = None  # name of the LR sweep this run is a trial of
    verify_args: tuple[tuple[str, Any], ...] = ()  # shape-specific parameters of the verification rule
    note: str = ""

    @property
    def run_id(self) -> str:
        return f"{self.family}/{self.name}"

    def args(self) -> dict[str, Any]:
        return dict(self.task_args)

    def control_spec(self) -> "RunSpec | None":
        if self.control is None:
            return None
        over = dict(self.control)
        if "habit" not in over:
            over["habit"] = Habit(fmt="tb")  # controls are never written, only compared against
        return dataclasses.replace(self, name=self.name + "__control", control=None, sweep=None, **over)

    def to_config(self) -> dict[str, Any]:
        """The JSON-able configuration recorded in labels.json."""
        d = dataclasses.asdict(self)
        d["task_args"] = dict(self.task_args)
        d["verify_args"] = dict(self.verify_args)
        d["control"] = {k: (dataclasses.asdict(v) if isinstance(v, Habit) else v)
                        for k, v in (self.control or ())} if self.control is not None else None
        return d

    def train_key(self) -> str:
        """Fingerprint of what the training does (not how it is named, logged or judged): two specs with
        the same train_key produce the same Record, so the build trains it once."""
        d = self.to_config()
        for k in ("family", "name", "label", "shape", "habit", "control", "sweep", "verify_args", "note"):
            d.pop(k)
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def key(self) -> str:
        """A stable fingerprint of everything that affects the training and the written log."""
        return hashlib.sha1(json.dumps(self.to_config(), sort_keys=True, default=str).encode()).hexdigest()[:12]


def lr_at(spec: RunSpec, pos: int, step: int) -> float:
    """The LR at schedule position `pos` (it stops advancing on skipped fp16 steps and jumps back on a
    bad resume) of optimizer step `step` (the bump is keyed by the real step). Pure."""
    lr = spec.lr
    if spec.warmup and pos < spec.warmup:
        lr = spec.lr * (pos + 1) / spec.warmup
    else:
        t = (pos - spec.warmup) / max(1, spec.steps - spec.warmup)
        t = min(max(t, 0.0), 1.0)
        if spec.schedule == "cosine":
            lr = spec.lr * (spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
        elif spec.schedule == "linear":
            lr = spec.lr * (1 - (1 - spec.min_lr_ratio) * t)
        elif spec.schedule == "step":
            lr = spec.lr * spec.gamma ** sum(pos >= m for m in spec.milestones)
    if spec.bump is not None and step >= spec.bump[0]:
        lr *= spec.bump[1]
    return lr
