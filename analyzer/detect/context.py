"""Everything the checks of one run look at, measured once (`measure_run`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analyzer.config import AnalysisConfig
from analyzer.detect.signals import Curve, Rise, SpikeEvent, early_end_index, largest_rise, make_curve, spike_events
from analyzer.types import Run, Series


@dataclass(frozen=True)
class RunContext:
    """A run's series, curves and measured events.

    Attributes:
        loss / grad / lr / eval_loss: the role series (every point, NaN kept) or None.
        curve: finite train loss with baseline and noise; None when there are < 2 finite points.
        grad_curve: the same for the gradient norm.
        early_end: index into ``curve`` of the first point after the early phase.
        loss_events / grad_events: spike events.
        rise: the largest smoothed rise above the running best after the early phase.
    """

    run: Run
    cfg: AnalysisConfig
    loss: Series | None
    grad: Series | None
    lr: Series | None
    eval_loss: Series | None
    curve: Curve | None
    grad_curve: Curve | None
    early_end: int
    loss_events: tuple[SpikeEvent, ...] = ()
    grad_events: tuple[SpikeEvent, ...] = ()
    rise: Rise | None = None
    extra: dict = field(default_factory=dict)

    @property
    def early_end_step(self) -> int | None:
        if self.curve is None or len(self.curve) == 0:
            return None
        i = min(self.early_end, len(self.curve)) - 1
        return int(self.curve.steps[max(i, 0)])

    @property
    def max_step(self) -> int | None:
        rng = self.run.step_range()
        return rng[1] if rng else None

    def grad_spike_near(self, step_index_lo: int, step_index_hi: int) -> SpikeEvent | None:
        """A grad-norm spike between two loss-curve indices (widened by the lead allowance)."""
        if self.curve is None or not self.grad_events:
            return None
        lo_i = max(step_index_lo - self.cfg.grad_lead_points, 0)
        lo = int(self.curve.steps[lo_i])
        hi = int(self.curve.steps[min(step_index_hi, len(self.curve) - 1)])
        for ev in self.grad_events:
            if lo <= ev.peak_step <= hi or lo <= ev.start_step <= hi:
                return ev
        return None


def measure_run(run: Run, cfg: AnalysisConfig) -> RunContext:
    loss = run.role_series("train_loss")
    grad = run.role_series("grad_norm")
    curve = make_curve(loss, cfg) if loss is not None else None
    grad_curve = make_curve(grad, cfg) if grad is not None else None
    early_end = early_end_index(curve.steps, cfg) if curve is not None else 0
    loss_events: tuple[SpikeEvent, ...] = ()
    rise = None
    if curve is not None and len(curve) >= cfg.min_points:
        loss_events = tuple(spike_events(curve, min_ratio=cfg.loss_spike_ratio, z_min=cfg.spike_z,
                                         recover_ratio=cfg.recover_ratio))
        rise = largest_rise(curve, early_end)
    grad_events: tuple[SpikeEvent, ...] = ()
    if grad_curve is not None and len(grad_curve) >= cfg.min_points and grad_curve.log_space:
        grad_events = tuple(spike_events(grad_curve, min_ratio=cfg.grad_spike_ratio, z_min=cfg.spike_z,
                                         recover_ratio=np.sqrt(cfg.grad_spike_ratio)))
    return RunContext(run, cfg, loss, grad, run.role_series("lr"), run.role_series("eval_loss"), curve, grad_curve,
                      early_end, loss_events, grad_events, rise)
