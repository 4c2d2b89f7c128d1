"""A real (tiny, CPU, seeded) training that turns unstable at a known step, for the live tests.

An MLP learns labels from a fixed random teacher with Adam at lr 3e-3; at step ``jump_at`` the LR
jumps ``factor``x (a schedule bug, a bad resume): the loss leaves the level it reached, which the
engine calls mid-training instability (or divergence while it has not come back). It logs what a
training script would: loss, the unclipped global grad norm and the LR, to TensorBoard (PyTorch's
SummaryWriter) and/or a JSONL file, flushing both after every chunk of steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

JUMP_AT = 300
LR = 3e-3


def teacher_batches(seed: int = 0, dim: int = 16, classes: int = 4, batch_size: int = 32
                    ) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(dim, 32, generator=g) / dim ** 0.5
    w2 = torch.randn(32, classes, generator=g) / 4

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        x = torch.randn(batch_size, dim, generator=gen)
        return x, (torch.tanh(x @ w1) @ w2).argmax(1)

    return batch


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))


def lr_at(step: int, *, jump_at: int = JUMP_AT, factor: float = 30.0) -> float:
    return LR * (factor if step >= jump_at else 1.0)


class UnstableTraining:
    """Train step by step; ``train(n)`` runs n more steps and flushes the logs."""

    def __init__(self, *, tb: Path | None = None, jsonl: Path | None = None, jump_at: int = JUMP_AT,
                 factor: float = 30.0, seed: int = 0) -> None:
        torch.set_num_threads(1)
        self.model = mlp(seed)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.batch = teacher_batches(seed)
        self.jump_at, self.factor = jump_at, factor
        self.step = 0
        self.writer: Any = None
        if tb is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(tb))
        self.jsonl = None
        if jsonl is not None:
            jsonl.parent.mkdir(parents=True, exist_ok=True)
            self.jsonl = open(jsonl, "w")

    def train(self, n: int, on_step: Callable[[int], None] | None = None) -> None:
        for _ in range(n):
            s = self.step
            lr = lr_at(s, jump_at=self.jump_at, factor=self.factor)
            for group in self.opt.param_groups:
                group["lr"] = lr
            x, y = self.batch(s)
            loss = nn.functional.cross_entropy(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf"))  # unclipped
            self.opt.step()
            loss_f, norm_f = float(loss.detach()), float(norm)
            if self.writer is not None:
                self.writer.add_scalar("train/loss", loss_f, s)
                self.writer.add_scalar("train/grad_norm", norm_f, s)
                self.writer.add_scalar("train/lr", lr, s)
            if self.jsonl is not None:
                self.jsonl.write(json.dumps({"step": s, "loss": loss_f, "grad_norm": norm_f, "lr": lr}) + "\n")
            self.step += 1
            if on_step is not None:
                on_step(s)
        self.flush()

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()
        if self.jsonl is not None:
            self.jsonl.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()
