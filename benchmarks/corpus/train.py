"""The corpus's own training loop: one RunSpec in, a per-step Record out.

Why not probes.runner: the corpus needs LR bumps, resumes that lose the optimizer state, fp16
dynamic loss scaling with skipped steps, finite datasets with epochs and the whole run recorded
every step (writers then apply the logging habits). It reads top to bottom:

    seed -> task (model, data) -> optimizer -> per step: LR from the pure schedule (spec.lr_at),
    forward, backward (scaled and cast to float16 when emulating AMP), UNCLIPPED global grad norm,
    clip, step (skipped when the fp16 grads overflowed) -> eval every eval_every steps.

Once the loss is non-finite the parameters are NaN and every later step would be too, so the rest
of the run is filled with NaN without computing it (what a trainer that keeps going would log).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.corpus.spec import RunSpec, lr_at
from benchmarks.corpus.tasks import build_task


@dataclass
class Record:
    """Every step of one run (index = 0-based optimizer step)."""

    loss: np.ndarray
    grad_norm: np.ndarray  # unclipped; inf/NaN on fp16-skipped steps
    lr: np.ndarray
    skipped: np.ndarray  # bool: the optimizer step was skipped (fp16 overflow)
    eval_steps: np.ndarray
    eval_loss: np.ndarray
    trivial: float
    floor: float | None
    steps_per_epoch: int | None
    seconds: float


def make_optimizer(spec: RunSpec, params) -> torch.optim.Optimizer:  # type: ignore[no-untyped-def]
    name, lr, wd = spec.optimizer, spec.lr, spec.weight_decay
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, nesterov=name == "nesterov", weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=spec.betas, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=spec.betas, weight_decay=wd)
    raise ValueError(f"optimizer {name!r}: expected sgd, momentum, nesterov, adam or adamw")


def _evaluate(task, model) -> float:  # type: ignore[no-untyped-def]
    model.eval()
    with torch.no_grad():
        vals = [float(task.loss_fn(model(x), y)) for x, y in task.eval_batches]
    model.train()
    return float(np.mean(vals))


def train(spec: RunSpec) -> Record:
    t0 = time.perf_counter()
    torch.manual_seed(spec.seed)
    task = build_task(spec.task, spec.args(), seed=spec.seed, batch_size=spec.batch_size)
    model = task.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(spec, params)
    n = spec.steps
    loss_a, gn_a, lr_a = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    skipped = np.zeros(n, dtype=bool)
    ev_steps: list[int] = []
    ev_vals: list[float] = []
    pos = 0  # schedule position: what a scheduler's step counter would say
    scale, good = (spec.fp16[0], 0) if spec.fp16 else (1.0, 0)
    for step in range(n):
        if spec.reset_at is not None and step == spec.reset_at:
            # the resume restored the weights but not the optimizer or scheduler: fresh Adam moments,
            # and the schedule starts again right after its warmup (at the peak LR)
            opt = make_optimizer(spec, params)
            pos = spec.warmup
        lr = lr_at(spec, pos, step)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = task.batch(step)
        out = model(x)
        if spec.fp16:
            out = out.to(torch.float16).float()  # autocast hands fp16 logits to the loss: they overflow at 65504
        loss = task.loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        if spec.fp16:
            (loss * scale).backward()
            grads = [p.grad for p in params if p.grad is not None]
            half = [g.to(torch.float16) for g in grads]  # what fp16 gradients would hold
            finite = all(bool(torch.isfinite(h).all()) for h in half)
            if finite:
                for g, h in zip(grads, half):
                    g.copy_(h.float() / scale)  # unscale before measuring and clipping
                gn = float(torch.nn.utils.get_total_norm(grads))
                good += 1
                if good % spec.fp16[1] == 0:
                    scale *= 2.0
            else:
                gn = float("inf")
                scale /= 2.0
                good = 0
        else:
            loss.backward()
            gn = float(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
            finite = True
        if finite and spec.clip is not None and gn > spec.clip:
            coef = spec.clip / (gn + 1e-6)
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(coef)
        if finite:
            opt.step()
            pos += 1
        loss_a[step], gn_a[step], lr_a[step], skipped[step] = float(loss.detach()), gn, lr, not finite
        if spec.eval_every and ((step + 1) % spec.eval_every == 0 or step == n - 1):
            ev_steps.append(step)
            ev_vals.append(_evaluate(task, model))
        if not np.isfinite(loss_a[step]):
            # NaN parameters stay NaN: fill the rest as a trainer that keeps going would log it
            for s in range(step + 1, n):
                lr_a[s] = lr_at(spec, pos + s - step, s)
                if spec.eval_every and ((s + 1) % spec.eval_every == 0 or s == n - 1):
                    ev_steps.append(s)
                    ev_vals.append(float("nan"))
            break
    return Record(loss_a, gn_a, lr_a, skipped, np.array(ev_steps, dtype=np.int64), np.array(ev_vals), task.trivial,
                  task.floor, task.steps_per_epoch, time.perf_counter() - t0)
