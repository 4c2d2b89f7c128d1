"""Per-block state of a probe trial, recorded cheaply: gradient norms, update-to-weight ratios, Adam
second-moment norms and activation RMS, per parameter group (a Transformer block, the embeddings, the
head).

Parameters are grouped once by name: up to the first numeric part (``transformer.h.3``, ``layers.11``,
``net.0``), else the first two parts (``transformer.wte``, ``lm_head``). Each recorded step costs a few
fused ops on the device and no host sync: one ``_foreach_norm`` over all gradients (and weights, the
step's updates, Adam's exp_avg_sq) folded into per-group norms with one ``index_add``, and a forward
hook per group taking its output's RMS. The (4, groups) result of each step stays on the device until
the runner's flush, which copies the whole window at once. The update needs the weights before the step:
a copy of the parameters on recorded steps (``layer_every`` > 1 makes that rarer on big models). After the
step, one fused ``_foreach_norm`` over the weights, the updates and Adam's exp_avg_sq (and the gradients'
norms taken before clipping) and one ``index_add`` give all four statistics of every group.
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
        self.active = False
        self.acts: dict[int, torch.Tensor] = {}
        self.hooks: list[Any] = []
        modules = dict(model.named_modules())
        # hooked only on recorded steps: a module with a hook takes torch's slower call path
        self.hooked = [(gi, modules[g]) for gi, g in enumerate(self.groups) if g in modules]
        self.prev: list[torch.Tensor] | None = None
        self.grad_norms: torch.Tensor | None = None
        self.grad_at: list[int] = []
        self._indices: dict[tuple[tuple[int, ...], tuple[int, ...]], torch.Tensor] = {}
        self._nan = torch.tensor(float("nan"), device=device)
        self.rows: list[torch.Tensor] = []
        self.steps: list[int] = []

    def _hook(self, gi: int) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(out, torch.Tensor) and out.is_floating_point():
                self.acts[gi] = out.detach().float().pow(2).mean().sqrt()
        return hook

    def before_forward(self, record: bool) -> None:
        self.active = record
        self.acts = {}
        if record and not self.hooks:
            self.hooks = [module.register_forward_hook(self._hook(gi)) for gi, module in self.hooked]

    def before_step(self) -> None:
        """On a recorded step, before clipping and the update: the per-tensor gradient norms (unclipped, as the
        global one is logged) and a copy of the weights the optimizer is about to change."""
        if not self.active:
            return
        with torch.no_grad():
            have = [i for i, p in enumerate(self.params) if p.grad is not None]
            grads = [self.params[i].grad for i in have]
            self.grad_norms = torch.stack(torch._foreach_norm(grads)).float() if grads else None  # type: ignore[arg-type]
            self.grad_at = have
            self.prev = list(torch._foreach_mul([p.detach() for p in self.params], 1.0))

    def _index(self, grads: list[int], moments: list[int]) -> torch.Tensor:
        """Where each norm of after_step's one fused call goes: weights, updates, Adam v, gradients (x groups)."""
        key = (tuple(grads), tuple(moments))
        if key not in self._indices:
            n = len(self.groups)
            self._indices[key] = torch.cat([self.index, self.index + n, self.index[moments] + 2 * n,
                                            self.index[grads] + 3 * n])
        return self._indices[key]

    def after_step(self, step: int) -> None:
        if not self.active or self.prev is None:
            self.active = False
            self.close()
            return
        with torch.no_grad():
            weights = [p.detach() for p in self.params]
            moments = [i for i, p in enumerate(self.params) if "exp_avg_sq" in self.optimizer.state.get(p, {})]
            tensors = weights + list(torch._foreach_sub(weights, self.prev)) + \
                [self.optimizer.state[self.params[i]]["exp_avg_sq"] for i in moments]
            norms = torch.stack(torch._foreach_norm(tensors)).float()  # one fused call for three statistics
            have = self.grad_at if self.grad_norms is not None else []
            if self.grad_norms is not None:
                norms = torch.cat([norms, self.grad_norms])
            n = len(self.groups)
            folded = torch.zeros(4 * n, device=norms.device).index_add(0, self._index(have, moments), norms * norms)
            weight, update, adam_v, grad = folded.sqrt().view(4, n)
            if not moments:
                adam_v = torch.full_like(weight, float("nan"))
            acts = torch.stack([self.acts.get(i, self._nan) for i in range(n)]).to(weight.device)
            self.rows.append(torch.stack([grad, update / weight.clamp_min(1e-30), adam_v, acts]))
            self.steps.append(step)
        self.prev, self.grad_norms = None, None
        self.active = False
        self.close()

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
        self.hooks = []
