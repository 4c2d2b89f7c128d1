"""The numbers of each recommendation, typed (a renamed field is a type error, not a blank cell), as `Evidence`
is for findings.

Reporters, the live hand-over and the probe specs read the fields by name; the JSON report's ``params`` is
`as_dict()` (fields marked optional appear only when set, as they always have). For code written against
the mapping they used to be, a plan also answers ``plan["max_norm"]`` and ``plan.get(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Iterator, Mapping


def _optional() -> Any:
    """A field the JSON names only when it was set (None otherwise)."""
    return field(default=None, metadata={"optional": True})


@dataclass(frozen=True)
class Plan(Mapping[str, Any]):
    """Base class: the settings of one recommendation."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("optional") and value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    # Mapping: read like the dict it was (r.params["max_norm"]), but typed where it is built.
    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())


@dataclass(frozen=True)
class ClipPlan(Plan):
    """Clip the global gradient norm at ``max_norm`` (playbook §6).

    Attributes:
        max_norm: the threshold (the ``percentile`` of the unclipped grad norm, rounded to 6 decimals).
        percentile / n_values / p50 / p90 / p99: where it comes from.
        fraction_clipped_overall / fraction_clipped_early: how often it would have clipped (overall, in the first
            ``early_end_step`` steps).
        from_steps_before: a diverged run's threshold comes from the steps before this one (None: all steps).
        grad_norm_at_onset / threshold_reaching_unstable_steps / fraction_clipped_at_that_threshold: whether p90
            reaches the unstable steps, and what a threshold that does would clip.
        clipping_insufficient: that threshold clips > max_clipped_fraction of all updates: lower the LR instead.
    """

    max_norm: float
    percentile: float
    n_values: int
    p50: float
    p90: float
    p99: float
    fraction_clipped_overall: float
    fraction_clipped_early: float
    early_end_step: int
    from_steps_before: int | None
    grad_norm_at_onset: float | None = _optional()
    threshold_reaching_unstable_steps: float | None = _optional()
    fraction_clipped_at_that_threshold: float | None = _optional()
    clipping_insufficient: bool | None = _optional()


@dataclass(frozen=True)
class WarmupPlan(Plan):
    """A linear LR warmup (playbook §5): a safe first run, then the sweep that finds the shortest one.

    Attributes:
        warmup_steps / post_warmup_steps / lr: the safe first run (the longest candidate under the cap, at ``lr``).
        sweep_warmup_steps / sweep_base_lr: the sweep (orders of magnitude under the cap, at the base LR to reach).
        max_train_steps / cap_steps: the run's length and the cap (warmup_max_fraction of it).
        unstable_lr: the LR that was unstable. extend_training_to: the total steps when warmup needs more training.
    """

    warmup_steps: int
    post_warmup_steps: int
    lr: float | None
    sweep_warmup_steps: tuple[int, ...]
    sweep_base_lr: float | None
    max_train_steps: int | None
    cap_steps: int | None
    unstable_lr: float | None
    extend_training_to: int | None


@dataclass(frozen=True)
class LowerLr(Plan):
    """Lower the LR in force where the instability began (the playbook's last resort).

    Attributes:
        current_lr: the LR at ``at_step`` (None when none is logged or configured). suggested_lr: factor x it.
    """

    current_lr: float | None
    suggested_lr: float | None
    factor: float
    at_step: int


@dataclass(frozen=True)
class OptimizerChange(Plan):
    """Try another optimizer: ``current`` -> ``try_`` (named ``try`` in the JSON)."""

    current: str
    try_: str

    def as_dict(self) -> dict[str, Any]:
        return {"current": self.current, "try": self.try_}


@dataclass(frozen=True)
class ArchitectureHint(Plan):
    """Residual connections and normalization (Pre-LN): the hyperparameters that point there."""

    hparams: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"hparams": dict(self.hparams)}


@dataclass(frozen=True)
class LogMetric(Plan):
    """Log a metric the diagnosis needs: ``metric``, and for a too-sparse loss how often it is logged now."""

    metric: str
    current_interval_steps: int | None = _optional()
    suggested_interval_steps: int | None = _optional()
