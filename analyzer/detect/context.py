"""Everything the checks of one run look at, measured once (`measure_run`).

The judged signal is the train loss; when it has too few points (a trainer that logs the train
loss every 500 steps but evaluates every 100), the eval loss carries the verdict and the findings
say so (spec/failure-shapes.md, "Sparse logging").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, TypeVar

import numpy as np

from analyzer.config import AnalysisConfig
from analyzer.detect.curve import Curve, early_cut_step, make_curve
from analyzer.detect.events import Event, find_regimes, find_spikes
from analyzer.detect.start import LogStart, where_log_starts
from analyzer.facts import RunFacts, facts_of
from analyzer.evidence import Signal
from analyzer.types import Run, Series

T = TypeVar("T")


@dataclass(frozen=True)
class RunContext:
    """A run's series, curves and measured events.

    Attributes:
        loss / grad / lr / eval_loss: the role series (every point, NaN kept) or None.
        signal: which series is judged ("train_loss", or "eval_loss" when the train loss is too sparse).
        judged: that series.
        curve: the judged series measured (None with fewer than 2 finite points).
        grad_curve / eval_curve: the grad norm and the eval loss measured.
        early_cut: the last step of the early phase.
        spikes / regimes: departures of the judged curve above its level.
        grad_spikes: grad-norm outliers (>= grad_spike_ratio x the trailing level).
        eval_regimes: regimes of the eval loss (when the train loss is judged): an averaged eval loss
            shows a regime that a noisy per-batch train loss hides.
        facts: what the run's settings say (its LR, length, optimizer, warmup, ...), read once.
        memo: judgements several checks share (the judged events), computed once per run (`remember`).
        log_start: where in training the log starts; a log that starts mid-training has no early phase
            (``early_cut`` is before its first step) and, when that was read off the schedule, no known
            progress before it (a rise is then judged by its ratio alone).
    """

    run: Run
    cfg: AnalysisConfig
    loss: Series | None
    grad: Series | None
    lr: Series | None
    eval_loss: Series | None
    signal: Signal
    judged: Series | None
    curve: Curve | None
    grad_curve: Curve | None
    eval_curve: Curve | None
    early_cut: int
    spikes: tuple[Event, ...] = ()
    regimes: tuple[Event, ...] = ()
    grad_spikes: tuple[Event, ...] = ()
    eval_regimes: tuple[Event, ...] = ()
    log_start: LogStart = LogStart(False)
    facts: RunFacts = RunFacts()
    memo: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def remember(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per run: the checks share what they judge (e.g. every event's share and phase)."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]  # type: ignore[return-value]

    @property
    def max_step(self) -> int | None:
        rng = self.run.step_range()
        return rng[1] if rng else None

    @property
    def total_progress(self) -> float:
        """What the judged curve learned over the whole log: start - best level (raw units)."""
        if self.curve is None:
            return 0.0
        return float(self.curve.start - np.min(self.curve.level_raw))

    def progress_floor(self, index: int) -> float:
        """The smallest progress a share is taken of: a few noise sigmas (raw units) at ``index``."""
        assert self.curve is not None
        return 3.0 * float(self.curve.sigma_raw[min(index, len(self.curve) - 1)])

    def lr_at(self, step: int) -> float | None:
        if self.lr is None or len(self.lr) == 0:
            return None
        i = int(np.searchsorted(self.lr.steps, step, side="right")) - 1
        v = float(self.lr.values[max(i, 0)])
        return v if np.isfinite(v) else None

    def grad_spike_near(self, start_step: int, peak_step: int) -> Event | None:
        """A grad-norm spike from ``grad_lead_points`` logged points before an event's start to its peak."""
        g = self.grad_curve
        if g is None or not self.grad_spikes:
            return None
        i = int(np.searchsorted(g.steps, start_step))
        lo = int(g.steps[max(i - self.cfg.grad_lead_points, 0)])
        for ev in self.grad_spikes:
            step = int(g.steps[ev.peak])
            if lo <= step <= peak_step:
                return ev
        return None


def _finite_count(s: Series | None) -> int:
    return int(np.isfinite(s.values).sum()) if s is not None else 0


def measure_run(run: Run, cfg: AnalysisConfig) -> RunContext:
    loss = run.role_series("train_loss")
    grad = run.role_series("grad_norm")
    eval_loss = run.role_series("eval_loss")
    signal: Signal = "train_loss"
    judged = loss
    if _finite_count(loss) < cfg.min_points and _finite_count(eval_loss) >= cfg.min_points:
        signal, judged = "eval_loss", eval_loss
    curve = make_curve(judged, cfg) if judged is not None else None
    grad_curve = make_curve(grad, cfg, with_level=False) if grad is not None else None
    eval_curve = make_curve(eval_loss, cfg) if eval_loss is not None and signal == "train_loss" else None
    spikes: tuple[Event, ...] = ()
    regimes: tuple[Event, ...] = ()
    early_cut = 0
    log_start = LogStart(False)
    facts = facts_of(run.hparams)
    if curve is not None:
        early_cut = early_cut_step(curve.steps, cfg)
        log_start = where_log_starts(curve.steps, curve.first, run.role_series("lr"), facts, early_cut)
        if log_start.mid_training:
            early_cut = min(early_cut, int(curve.steps[0]) - 1)
        if len(curve) >= cfg.min_points:
            spikes = tuple(find_spikes(curve, cfg))
            regimes = tuple(find_regimes(curve, cfg))

    grad_spikes: tuple[Event, ...] = ()
    if grad_curve is not None and len(grad_curve) >= cfg.min_points and grad_curve.log_space:
        grad_spikes = tuple(find_spikes(grad_curve, cfg, min_ratio=cfg.grad_spike_ratio))
    eval_regimes: tuple[Event, ...] = ()
    if eval_curve is not None and len(eval_curve) >= cfg.min_points:
        eval_regimes = tuple(find_regimes(eval_curve, cfg))
    return RunContext(run, cfg, loss, grad, run.role_series("lr"), eval_loss, signal, judged, curve, grad_curve,
                      eval_curve, early_cut, spikes, regimes, grad_spikes, eval_regimes, log_start, facts)
