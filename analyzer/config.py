"""Every threshold the judgement uses, with its default and why (echoed in every report).

Defaults come from the Deep Learning Tuning Playbook (spec/playbook.md) where it gives a number
(p90 clipping, >50% clipped = lower the LR instead, warmup candidates, 10% cap, 2x post-warmup,
10x base LR, 5% extension rule, 10-20x grad-norm outliers) and from the labeled benchmark corpus
(benchmarks/corpus) where it does not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from analyzer.errors import ConfigError


@dataclass(frozen=True)
class AnalysisConfig:
    # -- data sufficiency
    min_points: int = 8
    """Fewer finite train-loss points than this: insufficient_data."""

    # -- phases
    early_fraction: float = 0.1
    """The early phase is the first this-fraction of the logged step range."""
    early_min_points: int = 6
    """...but at least this many points (short runs)."""

    # -- spike detection on log loss (robust trailing baseline)
    baseline_window: int = 25
    """Trailing points whose median is the baseline a point is compared with."""
    spike_z: float = 6.0
    """A point is a spike when it is this many robust sigmas above the trailing median..."""
    loss_spike_ratio: float = 1.3
    """...and at least this many times the baseline loss."""
    min_log_spread: float = 0.01
    """Floor of the robust sigma in log space (rounded values, perfectly smooth curves)."""
    recover_ratio: float = 1.15
    """An event has recovered when the loss is back within this factor of its pre-event baseline."""

    # -- mid-training instability
    mid_min_points: int = 3
    """A mid-training spike must stay above loss_spike_ratio x baseline for this many logged points
    (a one-point blip is that batch's own loss; instability is what lasts after it)."""
    mid_blip_ratio: float = 2.5
    """Regular bumps whose median height is below this many times the baseline are a per-epoch pattern."""
    grad_spike_ratio: float = 10.0
    """A gradient-norm outlier: this many times its running median (playbook: 10-20x)."""
    grad_lead_points: int = 5
    """A grad-norm spike this many points before a loss spike is reported as leading it."""
    periodic_cv: float = 0.15
    """Spike events this regular in spacing (coefficient of variation) are a per-epoch pattern."""

    # -- early instability
    early_rise_ratio: float = 1.5
    """Early loss above this many times the initial loss: loss went up instead of down."""
    early_thrash_ratio: float = 3.0
    """Early point-to-point roughness this many times the later roughness: thrashing."""
    early_grad_ratio: float = 10.0
    """Early grad norm this many times its later median (while loss is not falling steadily)."""
    steady_fraction: float = 0.8
    """Loss 'falls steadily' when this fraction of early points sit at or near the running minimum."""

    # -- divergence
    explode_ratio: float = 3.0
    """Final loss this many times the best loss, never coming back: divergence."""
    plateau_ratio: float = 2.0
    """After learning, a flat plateau this many times above the best loss: collapse (divergence)."""
    tail_fraction: float = 0.1
    """The 'final loss' is the median of this last fraction of points."""

    # -- sweeps
    min_sweep_runs: int = 3
    """At least this many runs differing only in LR make a sweep."""
    infeasible_ratio: float = 0.95
    """A sweep trial whose best loss stays above this many times its initial loss never trained: infeasible."""

    # -- recommendations
    clip_percentile: float = 90.0
    """Clip threshold = this percentile of the unclipped grad norm (playbook: p90)."""
    max_clipped_fraction: float = 0.5
    """Needing more than this fraction of updates clipped = lowering the LR instead (playbook)."""
    warmup_candidates: tuple[int, ...] = (10, 1000, 10000, 100000)
    """Warmup sweep candidates (orders of magnitude, playbook)."""
    warmup_max_fraction: float = 0.1
    """The largest warmup candidate must not exceed this fraction of max_train_steps."""
    warmup_extend_fraction: float = 0.05
    """Warmup longer than this fraction of training: extend training by the warmup."""
    post_warmup_factor: float = 2.0
    """post_warmup_steps = this x warmup_steps."""
    warmup_lr_factor: float = 10.0
    """Base LR to try with warmup = this x the unstable LR."""
    lower_lr_factor: float = 0.3
    """Last resort: multiply the LR by this."""

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @staticmethod
    def docs() -> dict[str, str]:
        """Field name -> its doc line (read from this file's attribute docstrings)."""
        import ast
        import inspect

        tree = ast.parse(inspect.getsource(AnalysisConfig))
        out: dict[str, str] = {}
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                out[node.target.id] = str(nxt.value.value)  # type: ignore[union-attr]
        return out

    def with_overrides(self, overrides: Mapping[str, Any]) -> AnalysisConfig:
        """A copy with ``overrides`` applied; a one-line ConfigError for an unknown name or bad value."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for name, raw in overrides.items():
            key = name.replace("-", "_")
            if key not in known:
                raise ConfigError(f"unknown setting {name!r}; known settings: {', '.join(sorted(known))}")
            current = getattr(self, key)
            try:
                if isinstance(current, tuple):
                    items = raw.split(",") if isinstance(raw, str) else list(raw)
                    value: Any = tuple(int(x) for x in items)
                elif isinstance(current, bool):
                    value = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
                else:
                    value = type(current)(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"setting {name}={raw!r}: expected {type(current).__name__}") from None
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"setting {name}={raw!r}: must not be negative")
            changes[key] = value
        return replace(self, **changes)
