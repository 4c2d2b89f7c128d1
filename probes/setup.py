"""What one trial trains: the model, how a batch becomes a loss, the batches, the optimizer and the LR.

Two kinds, one interface for the runner's loop:
- the run's own model (``workload: run``): probes.models rebuilds it from the run's artifacts; batches
  are token windows (probes.data), run in micro-batches when the spec asks; the LR is the run's own
  schedule (or its logged LR) x the trial's factor x a warmup ramp from the trial's first step;
- a workload function (built-in stand-in or the user's): its model, loss and batches; the stand-in's
  schedule (probes.schedule).
Step numbers are the run's own: a replay from checkpoint-N logs its first update as the run did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from probes.schedule import lr_at
from probes.spec import ProbeSpec, TrialConfig

#: How many held-out batches the eval loss averages over.
EVAL_BATCHES = 2
#: Data index of the first held-out batch (far from any training step's).
EVAL_INDEX = 1_000_000_000


@dataclass
class TrialSetup:
    """Everything the loop needs for one trial.

    Attributes:
        model: on the trial's device. optimizer: built after the model moved (its state follows the params).
        forward_backward: runs a step's batch forward and backward (micro-batches, GradScaler), returns the
            step's loss (detached). evaluate: the held-out loss (None: no eval data).
        batch_for: log step -> the step's batch (the skip of the trial applied).
        lrs_at: log step -> each param group's LR. first_step: the log step of the first update.
        used: what was rebuilt from what, one line each (for the report).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    forward_backward: Callable[[Any], torch.Tensor]
    evaluate: Callable[[], torch.Tensor] | None
    batch_for: Callable[[int], Any]
    lrs_at: Callable[[int], list[float]]
    first_step: int = 0
    used: list[str] = field(default_factory=list)


def _data_index(step: int, trial: TrialConfig, base: int) -> int:
    """The batch a step sees: its own, or (from the skipped range on) the one as many steps later (PaLM)."""
    index = step - base
    if trial.skip is not None and step >= trial.skip[0]:
        index += trial.skip[1] - trial.skip[0] + 1
    return index


def _ramp(step: int, first: int, warmup: int) -> float:
    return min(1.0, (step - first + 1) / warmup) if warmup > 0 else 1.0


def own_setup(spec: ProbeSpec, trial: TrialConfig, device: torch.device, amp: Callable[[], Any],
              scaler: Any) -> TrialSetup:
    from probes.data import open_data
    from probes.models import build_own, group_factors, lr_of

    own = build_own(spec)
    own.model.to(device)
    opt = own.make_optimizer()
    schedule, how = lr_of(own, spec)
    ratios = group_factors(opt)
    data = open_data(spec.data, order=spec.data_order, seq_len=own.seq_len, seed=spec.seed,
                     vocab_size=own.vocab_size, tokenizer_dir=own.tokenizer_dir)
    base = 1 if (spec.source or {}).get("kind") == "hf" else 0  # HF logs the first update as step 1
    first = spec.start_step if spec.start_step else base
    micro = spec.micro_batch_size or spec.batch_size
    model = own.model

    def lrs_at(step: int) -> list[float]:
        lrs = schedule(step)
        scale = trial.lr_factor * _ramp(step, first, trial.warmup_steps)
        if len(lrs) == 1:
            return [lrs[0] * r * scale for r in ratios]
        return [lr * scale for lr in lrs]

    def forward_backward(tokens: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), device=device)
        n = tokens.shape[0]
        for chunk in tokens.split(micro):
            with amp():
                loss = own.loss_of(chunk.to(device, non_blocking=True))
            part = loss * (chunk.shape[0] / n)
            (scaler.scale(part) if scaler is not None else part).backward()
            total += part.detach().float()
        return total

    evals = [data.batch(EVAL_INDEX + i, min(spec.batch_size, 64)) for i in range(EVAL_BATCHES)]

    def evaluate() -> torch.Tensor:
        with torch.no_grad(), amp():
            return torch.stack([own.loss_of(e.to(device)).float() for e in evals]).mean()

    used = own.used + [how, f"data: {data.describe}"]
    if micro < spec.batch_size:
        used.append(f"batch {spec.batch_size} as micro-batches of {micro} (gradient accumulation)")
    return TrialSetup(model, opt, forward_backward, evaluate,
                      lambda step: data.batch(_data_index(step, trial, base), spec.batch_size), lrs_at, first, used)


def workload_setup(spec: ProbeSpec, trial: TrialConfig, device: torch.device, amp: Callable[[], Any],
                   scaler: Any) -> TrialSetup:
    from probes.optim import make_optimizer
    from probes.workloads import build

    model, loss_fn, train_batch, eval_batches = build(spec.workload, dict(spec.workload_args),
                                                      batch_size=spec.batch_size, seed=spec.seed)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(spec, params, trial.lr)
    evals = [(x.to(device), y.to(device)) for x, y in eval_batches]

    def forward_backward(batch: Any) -> torch.Tensor:
        x, y = batch
        with amp():
            loss = loss_fn(model(x.to(device, non_blocking=True)), y.to(device, non_blocking=True))
        (scaler.scale(loss) if scaler is not None else loss).backward()
        return loss.detach()

    def evaluate() -> torch.Tensor:
        with torch.no_grad(), amp():
            return torch.stack([loss_fn(model(ex), ey).float() for ex, ey in evals]).mean()

    def lrs_at(step: int) -> list[float]:
        lr = lr_at(step, base_lr=trial.lr, total_steps=trial.steps, warmup_steps=trial.warmup_steps,
                   post_warmup_steps=trial.post_warmup_steps, decay=spec.decay)
        return [lr] * len(opt.param_groups)

    return TrialSetup(model, opt, forward_backward, evaluate if evals else None,
                      lambda step: train_batch(_data_index(step, trial, 0)), lrs_at, 0,
                      [f"workload {spec.workload}" + (" (a stand-in showing the class of failure, not the run)"
                                                      if spec.workload.startswith("builtin:") else "")])
