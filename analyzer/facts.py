"""What a run's settings say about it, read once: its LR, length, optimizer, batch size, warmup, clipping and
vocabulary, whatever the tool called them (hparams.yaml, config.json, TensorBoard's hparams, W&B's config, the
HF Trainer's arguments, an LR spelled in the run's path).

The recommendations, the probe specs and the judgement of where a log starts all read these facts here, so a
spelling learned once (``max_iters``, ``train_iters``, ``trainer.max_steps``) counts everywhere.

Examples
--------
>>> f = facts_of({"trainer.max_steps": "1e4", "optimizer": "AdamW", "learning_rate": 3e-4, "warmup_steps": 0})
>>> f.max_steps, f.optimizer, f.lr, f.warmup_steps
(10000, 'adamw', 0.0003, 0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from analyzer.hparams import lr_from_hparams

_MAX_STEPS = ("max_steps", "max_train_steps", "total_steps", "num_steps", "max_iters", "train_iters", "total_iters",
              "num_train_steps", "max_iter", "iterations")
_OPTIMIZER = ("optimizer", "optim", "opt", "optimizer_name", "optim_name")
_BATCH = ("batch_size", "train_batch_size", "per_device_train_batch_size", "global_batch_size")
_WARMUP = ("warmup_steps", "warmup_iters", "lr_warmup_steps", "num_warmup_steps", "warmup")
_CLIP = ("max_grad_norm", "grad_clip", "gradient_clip_val", "clip_grad_norm", "grad_clip_norm", "clip_grad")
_VOCAB = ("vocab_size", "n_vocab", "padded_vocab_size")


@dataclass(frozen=True)
class RunFacts:
    """A run's settings as the analysis uses them (None: not in the settings).

    Attributes:
        lr: the configured (peak) learning rate, or the one spelled in the run's path.
        max_steps: how long training was set to run, in optimizer steps.
        optimizer: its name, lower case (``adamw``, ``sgd``, ...).
        batch_size / warmup_steps / clip / vocab_size: as configured (clip: the max grad norm).
    """

    lr: float | None = None
    max_steps: int | None = None
    optimizer: str | None = None
    batch_size: int | None = None
    warmup_steps: int | None = None
    clip: float | None = None
    vocab_size: int | None = None


def _key_matches(key: str, names: tuple[str, ...]) -> bool:
    last = str(key).split(".")[-1].split("/")[-1]
    return last in names


def _number(hparams: Mapping[str, Any], names: tuple[str, ...]) -> float | None:
    for name in names:  # the first spelling in the list wins over later ones
        for key, value in hparams.items():
            if _key_matches(key, (name,)) and not isinstance(value, bool):
                try:
                    x = float(value.strip()) if isinstance(value, str) else float(value)
                except (TypeError, ValueError, OverflowError):
                    continue
                if math.isfinite(x) and x >= 0:
                    return x
    return None


#: A count beyond this is not a count a training run was given (a corrupted or placeholder value).
_MAX_COUNT = 10**12


def _count(hparams: Mapping[str, Any], names: tuple[str, ...], *, positive: bool = True) -> int | None:
    """A whole number as logged (10000, 1e4, "1e4", "32"); None when absent, fractional or absurd."""
    x = _number(hparams, names)
    if x is None or (positive and x <= 0) or x != int(x) or x > _MAX_COUNT:
        return None
    return int(x)


def facts_of(hparams: Mapping[str, Any]) -> RunFacts:
    """The facts in a run's settings."""
    lr = lr_from_hparams(hparams)
    if lr is None:
        named = hparams.get("lr (from run name)")
        lr = float(named) if isinstance(named, (int, float)) and named > 0 else None
    optimizer = next((str(v).lower() for k, v in hparams.items() if _key_matches(k, _OPTIMIZER) and v), None)
    clip = _number(hparams, _CLIP)
    return RunFacts(lr=lr, max_steps=_count(hparams, _MAX_STEPS), optimizer=optimizer,
                    batch_size=_count(hparams, _BATCH), warmup_steps=_count(hparams, _WARMUP, positive=False),
                    clip=clip if clip else None, vocab_size=_count(hparams, _VOCAB))
