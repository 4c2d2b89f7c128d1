"""The optimizer a spec names, built with torch.optim's own implementations (playbook §7)."""

from __future__ import annotations

import torch

from analyzer.errors import ConfigError
from probes.spec import ProbeSpec


def make_optimizer(spec: ProbeSpec, params, lr: float) -> torch.optim.Optimizer:  # type: ignore[no-untyped-def]
    name = spec.optimizer
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=spec.weight_decay)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, nesterov=name == "nesterov",
                               weight_decay=spec.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=spec.momentum, eps=spec.eps, weight_decay=spec.weight_decay)
    raise ConfigError(f"optimizer {name!r}: expected sgd, momentum, nesterov, adam, adamw, nadam or rmsprop")
