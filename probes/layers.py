"""Per-block state of a probe trial, recorded cheaply: gradient norms, update-to-weight ratios, Adam
second-moment norms and activation RMS, per parameter group (a Transformer block, the embeddings, the
head).

Parameters are grouped once by name: up to the first numeric part (``transformer.h.3``, ``layers.11``,
``net.0``), else the first two parts (``transformer.wte``, ``lm_head``). Each recorded step costs a few
fused ops on the device and no host sync: one ``_foreach_norm`` over all gradients (and weights, the
step's updates, Adam's exp_avg_sq) folded into per-group norms with one ``index_add``, and a forward
hook per group taking its output's RMS. The (4, groups) result of each step stays on the device until
the runner's flush, which copies the whole window at once. The update needs the weights before the step:
a copy of the parameters on recorded steps (``layer_every`` > 1 makes that rarer on big models).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from torch import nn

#: What each row of a recorded step holds; the event tags are layers/<group>/<stat>.
STATS = ("grad", "update_ratio", "adam_v", "act_rms")
_NUMERIC = re.compile(r"^\d+$")


def group_name(param_name: str) -> str:
    parts = param_name.split(".")
    for i, part in enumerate(parts[:-1]):
        if _NUMERIC.match(part):
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1][:2]) or parts[0]


def tag(group: str, stat: str) -> str:
    return f"layers/{group}/{stat}"


class LayerRecorder:
    """Records STATS per group on the steps it is asked to; `take` hands the window over to the flush."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        seen: set[int] = set()
        names: list[str] = []
        params: list[torch.Tensor] = []
        for name, p in model.named_parameters():
            if p.requires_grad and id(p) not in seen:  # tied weights (wte = lm_head) counted once
                seen.add(id(p))
                names.append(group_name(name))
                params.append(p)
        self.groups = list(dict.fromkeys(names))
        self.params = params
        self.optimizer = optimizer
        device = params[0].device if params else torch.device("cpu")
        self.index = torch.tensor([self.groups.index(n) for n in names], device=device)
        self.zeros = torch.zeros(len(self.groups), device=device)
        self.active = False
        self.acts: dict[int, torch.Tensor] = {}
        self.hooks = []
        modules = dict(model.named_modules())
        for gi, group in enumerate(self.groups):
            module = modules.get(group)
            if module is not None:
                self.hooks.append(module.register_forward_hook(self._hook(gi)))
        self.prev: list[torch.Tensor] | None = None
        self.grad: torch.Tensor | None = None
        self.rows: list[torch.Tensor] = []
        self.steps: list[int] = []

    def _hook(self, gi: int) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not self.active:
                return
            out = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(out, torch.Tensor) and out.is_floating_point():
                self.acts[gi] = out.detach().float().pow(2).mean().sqrt()
        return hook

    def _fold(self, tensors: list[torch.Tensor], present: list[int]) -> torch.Tensor:
        """Per-group L2 norms of per-tensor norms (tensors of the params at ``present``)."""
        if not tensors:
            return self.zeros.clone()
        norms = torch.stack(torch._foreach_norm(tensors)).float()
        index = self.index if len(present) == len(self.params) else self.index[present]
        return self.zeros.index_add(0, index, norms * norms).sqrt()

    def before_forward(self, record: bool) -> None:
        self.active = record
        self.acts = {}

    def before_step(self) -> None:
        """On a recorded step, before clipping and the update: the per-group gradient norms (unclipped, as the
        global one is logged) and a copy of the weights the optimizer is about to change."""
        if not self.active:
            return
        with torch.no_grad():
            have = [i for i, p in enumerate(self.params) if p.grad is not None]
            self.grad = self._fold([self.params[i].grad for i in have], have)  # type: ignore[misc]
            self.prev = list(torch._foreach_mul([p.detach() for p in self.params], 1.0))

    def after_step(self, step: int) -> None:
        if not self.active:
            return
        with torch.no_grad():
            grad = self.grad if self.grad is not None else torch.full_like(self.zeros, float("nan"))
            weights = [p.detach() for p in self.params]
            weight = self._fold(weights, list(range(len(weights))))
            update = self._fold(list(torch._foreach_sub(weights, self.prev)), list(range(len(weights)))) \
                if self.prev is not None else torch.full_like(weight, float("nan"))
            v_at = [i for i, p in enumerate(self.params) if "exp_avg_sq" in self.optimizer.state.get(p, {})]
            adam_v = self._fold([self.optimizer.state[self.params[i]]["exp_avg_sq"] for i in v_at], v_at) \
                if v_at else torch.full_like(weight, float("nan"))
            acts = torch.stack([self.acts.get(i, torch.tensor(float("nan"), device=weight.device))
                                for i in range(len(self.groups))]) if self.groups else self.zeros
            self.rows.append(torch.stack([grad, update / weight.clamp_min(1e-30), adam_v, acts.to(weight.device)]))
            self.steps.append(step)
        self.prev, self.grad = None, None
        self.active = False

    def take(self) -> tuple[list[int], dict[str, np.ndarray]]:
        """The recorded steps and their columns (tag -> values), copied to the host in one transfer."""
        if not self.rows:
            return [], {}
        host = torch.stack(self.rows).cpu().numpy()  # (steps, 4, groups)
        steps = self.steps
        self.rows, self.steps = [], []
        return steps, {tag(g, s): host[:, si, gi] for si, s in enumerate(STATS) for gi, g in enumerate(self.groups)}

    def close(self) -> None:
        for h in self.hooks:
            h.remove()
