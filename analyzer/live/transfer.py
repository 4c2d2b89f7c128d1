"""The Monitor's values on their way to the host: what a step keeps, and N steps moved in one batch.

A value given to `Monitor.update` is kept as cheaply as the loop allows: a Python float as it is; a
CPU tensor as its float at once (nothing to wait for, ~0.5 us; holding it would hold its storage); a
device tensor as itself (detached when it carries a graph), sent to the host with the others of its
N steps in one stack per device and dtype, then one copy: asynchronous into pinned memory on CUDA,
so the loop never waits for the GPU on our account.

Nothing here imports torch: a tensor is recognised by its attributes, and torch is imported only when
the caller already handed one over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def held(value: Any) -> Any:
    """What to keep of a value given to `Monitor.update` (the caller handles None and Python floats).

    Per step, inside the training loop: the fewest attribute reads that tell a CPU tensor (its float
    now) from a device tensor (itself, without its graph) and from a number (as given)."""
    is_cpu = getattr(value, "is_cpu", None)
    if is_cpu is None:  # a number (int, numpy scalar, ...): as given
        return value
    if is_cpu:
        return value.item()
    return value.detach() if value.requires_grad else value


class Transfer:
    """N steps' values on their way to the host. ``ready()`` never blocks.

    ``values`` maps a tag to its values in step order: a list (floats, tensors, or both), or one 1-d
    tensor already stacked (the all-reduced loss of a distributed run). ``keep`` maps a tag to a 1-d
    tensor of the same length whose zero entries mark values to drop once on the host (steps no rank
    logged: their mean is 0/0).
    """

    def __init__(self, steps: dict[str, np.ndarray], values: dict[str, Any], keep: dict[str, Any] | None = None) -> None:
        self.steps = steps
        self.outs: dict[str, np.ndarray] = {}
        self._copies: list[tuple[str, np.ndarray, Any, Any]] = []  # (tag, slots, pinned host tensor, cuda event)
        self._keep: dict[str, np.ndarray] = {}
        for tag, vals in (keep or {}).items():
            self._keep[tag] = np.empty(len(self.steps[tag]), np.float64)
            self._stacked(f"\0keep:{tag}", vals, self._keep[tag])
        for tag, vals in values.items():
            if not isinstance(vals, list):  # one stacked tensor
                out = self.outs[tag] = np.empty(len(self.steps[tag]), np.float64)
                self._stacked(tag, vals, out)
                continue
            if all(type(v) is float for v in vals):  # the common case of Python floats: one conversion
                self.outs[tag] = np.array(vals, np.float64)
                continue
            out = self.outs[tag] = np.empty(len(vals), np.float64)
            if all(hasattr(v, "detach") for v in vals):  # all tensors (duck-typed: torch is never imported for floats)
                self._start(tag, vals, np.arange(len(vals)), out)
                continue
            tensors = []
            for i, v in enumerate(vals):
                if hasattr(v, "detach"):
                    tensors.append(i)
                else:
                    out[i] = float(v)
            if tensors:
                self._start(tag, [vals[i] for i in tensors], np.asarray(tensors), out)

    def _start(self, tag: str, tensors: list[Any], where: np.ndarray, out: np.ndarray) -> None:
        import torch  # the caller handed us tensors: torch is loaded already

        first = tensors[0]
        device, dtype = first.device, first.dtype
        if all(t.device == device and t.dtype == dtype for t in tensors[1:]):
            groups: dict[tuple[Any, Any], list[int]] = {(device, dtype): list(range(len(tensors)))}
        else:  # a device or dtype change mid-run (rare): one stack per kind
            groups = {}
            for k, t in enumerate(tensors):
                groups.setdefault((t.device, t.dtype), []).append(k)
        for ks in groups.values():
            # one stack and one cast per device and dtype, however many steps: a handful of kernels
            group = tensors if len(ks) == len(tensors) else [tensors[k] for k in ks]
            try:
                stacked = torch.stack(group).reshape(len(group))
            except RuntimeError:  # one-element tensors of different shapes
                stacked = torch.stack([t.reshape(()) for t in group])
            self._copy(tag, stacked, where[np.asarray(ks)], out)

    def _stacked(self, tag: str, stacked: Any, out: np.ndarray) -> None:
        self._copy(tag, stacked.reshape(-1), np.arange(out.shape[0]), out)

    def _copy(self, tag: str, stacked: Any, slots: np.ndarray, out: np.ndarray) -> None:
        import torch

        if stacked.dtype != torch.float64:  # half/bfloat16/int values read as float32; float64 kept exact
            stacked = stacked.float()
        if stacked.device.type == "cuda":
            host = torch.empty(stacked.shape, dtype=stacked.dtype, pin_memory=True)
            host.copy_(stacked, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._copies.append((tag, slots, host, event))
        else:  # CPU (computed already), or a device without async copies to pinned memory: copy now
            out[slots] = stacked.cpu().numpy()

    def ready(self) -> bool:
        return all(event.query() for _, _, _, event in self._copies)

    def result(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{tag: (steps, values)}; waits for outstanding copies (called once ready, or by `Monitor.judge`)."""
        for tag, slots, host, event in self._copies:
            event.synchronize()
            if tag.startswith("\0keep:"):
                self._keep[tag[len("\0keep:"):]][slots] = host.numpy()
            else:
                self.outs[tag][slots] = host.numpy()
        out = {}
        for tag, vals in self.outs.items():
            steps = self.steps[tag]
            if tag in self._keep:
                mask = self._keep[tag] > 0
                steps, vals = steps[mask], vals[mask]
            out[tag] = (steps, vals)
        return out


@dataclass
class Column:
    """One metric's history on the host: chunks (Python lists of floats as given, arrays from tensors)
    joined into one array when judged. Floats are never converted between judgements: a flush of them
    is a list extend."""

    steps: list[Any] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def add(self, steps: Any, values: Any) -> None:
        if self.steps and isinstance(self.steps[-1], list) and isinstance(steps, (list, tuple)) \
                and isinstance(values, (list, tuple)):
            self.steps[-1].extend(steps)
            self.values[-1].extend(values)
        else:
            self.steps.append(list(steps) if isinstance(steps, (list, tuple)) else steps)
            self.values.append(list(values) if isinstance(values, (list, tuple)) else values)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.steps) != 1 or isinstance(self.steps[0], list):  # joined once, then kept joined
            self.steps = [np.concatenate([np.asarray(c, np.int64) for c in self.steps]) if self.steps
                          else np.zeros(0, np.int64)]
            self.values = [np.concatenate([np.asarray(c, np.float64) for c in self.values]) if self.values
                           else np.zeros(0)]
        return self.steps[0], self.values[0]

    def __len__(self) -> int:
        return sum(len(c) for c in self.steps)
