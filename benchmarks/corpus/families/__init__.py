"""The corpus families and the tune/held-out split.

A family is a model/task + optimizer + schedule habit; its module's docstring says at which settings
it produces which shape (measured on this repo's 2-core CPU box) and its specs() lists the runs.
The split is by whole family (SPLIT, also written to labels.json): every shape of a held-out family
also appears in at least one tuning family (build checks this), so the held-out score measures
generalisation to new models and logging habits, not an unseen shape.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from benchmarks.corpus.spec import Habit, RunSpec

#: family -> split. Held out: three families whose shapes all also occur in tuning families.
SPLIT: dict[str, str] = {
    "tlm_preln": "tune",
    "tlm_postln": "tune",
    "relu_dying": "tune",
    "lr_bump": "tune",
    "fp16_skips": "tune",
    "overfit": "tune",
    "epoch_patterns": "tune",
    "conv_resmlp": "tune",
    "cosine_tail": "heldout",
    "small_batch": "heldout",
    "lstm_lm": "heldout",
}


@dataclass(frozen=True)
class Family:
    name: str
    model: str
    optimizer: str
    description: str
    sweeps: tuple[str, ...] = ()

    @property
    def split(self) -> str:
        return SPLIT[self.name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.corpus.families.{name}")


def family(name: str) -> Family:
    return module(name).FAMILY


def specs(name: str) -> list[RunSpec]:
    out = module(name).specs()
    names = [s.name for s in out]
    assert len(names) == len(set(names)), f"{name}: duplicate run names"
    return out


# Logging habits cycled through inside a family, so no format or cadence is tied to one shape.
DENSE = (
    Habit(fmt="tb"),
    Habit(fmt="jsonl"),
    Habit(fmt="hf", every=1, mode="mean", digits=4),
    Habit(fmt="lightning", every=1),
    Habit(fmt="tb", lr=False),
    Habit(fmt="jsonl", grad_norm=False),
)
SPARSE = (
    Habit(fmt="hf", every=10, mode="mean", digits=4),
    Habit(fmt="lightning", every=25),
    Habit(fmt="tb", every=25),
    Habit(fmt="jsonl", every=20, mode="mean"),
    Habit(fmt="hf", every=50, mode="mean", digits=4, grad_norm=False),
    Habit(fmt="tb", every=100, grad_norm=False),
)


def habit(i: int, *, sparse_ok: bool = True) -> Habit:
    """The i-th habit of a family: dense and sparse logging alternate when the shape allows it."""
    if sparse_ok and i % 2:
        return SPARSE[(i // 2) % len(SPARSE)]
    return DENSE[(i // 2 if sparse_ok else i) % len(DENSE)]


def targs(**kw: object) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(kw.items()))
