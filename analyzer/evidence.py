"""The numbers behind each finding, typed (a renamed field is a type error, not a blank cell).

Every finding carries one of these. Reporters read the fields by name; the JSON report and the HTML
evidence table use `as_dict()`. Values are JSON-safe scalars (float, int, str, bool, None).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

#: Which logged series decided a finding.
Signal = Literal["train_loss", "eval_loss", "grad_norm"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """Base class: the measured numbers of one finding."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True, slots=True)
class DataEvidence(Evidence):
    """Why a run cannot be judged.

    Attributes:
        points: finite train-loss points found.
        min_points: how many a verdict needs.
        tags: the run's tags (first 20), when no train-loss tag was found.
        value: the constant value, for a constant loss.
    """

    points: int = 0
    min_points: int = 0
    tags: tuple[str, ...] = ()
    value: float | None = None


@dataclass(frozen=True, slots=True)
class NonfiniteEvidence(Evidence):
    """NaN/inf values in a logged series.

    Attributes:
        signal: the series holding them.
        first_step: the first non-finite step.
        nonfinite_points: how many points are NaN/inf.
        points_after: points from the first non-finite one to the end.
        fraction_after: share of those that are non-finite.
        last_finite_value: the last finite value before the first non-finite one.
        loss_zero_at_those_steps: (grad norm) how many of those steps log a loss of exactly 0.0
            (HF Trainer's NaN filter).
    """

    signal: Signal
    first_step: int
    nonfinite_points: int
    points_after: int = 0
    fraction_after: float = 0.0
    last_finite_value: float | None = None
    loss_zero_at_those_steps: int = 0


@dataclass(frozen=True, slots=True)
class ExcursionEvidence(Evidence):
    """A departure of the loss above its own level: a short spike, a regime, or an early rise.

    Attributes:
        signal: the series that decided (train loss; eval loss when the train loss is too sparse).
        shape: "spike" (a few logged points), "regime" (a sustained stretch: a step change or an
            unstable regime), or "early_rise" (above the initial loss in the first steps).
        start_step / peak_step: where it left its level and where it peaked.
        end_step: the last step of the stretch (before recovery, or the last step logged).
        recovered_step: first step back within the noise band of the earlier level; None if never.
        reference: the level it is measured from (trailing median, best level so far, or the initial
            loss), in the loss's units.
        peak: the loss at the peak (a spike) or the smoothed level at the peak (a regime).
        ratio: peak / reference (NaN for losses that are not positive).
        share_undone: (peak - reference) / the progress learned before it: the share of what
            training had achieved that the event undid (> 1 means above the initial loss).
        noise_z: peak - reference in units of the run's local noise.
        points: logged points at or above half the height (how long it really lasted).
        span_steps: steps from start to recovery (or to the end).
        recovered_fraction: how much of the height was recovered by the end of the log (1 = all).
        lr_at_start / lr_at_recovery: the logged LR there, when an LR is logged.
        grad_spike_step / grad_spike_ratio / grad_leads_by_steps: a grad-norm spike at its onset.
    """

    signal: Signal
    shape: Literal["spike", "regime", "early_rise"]
    start_step: int
    peak_step: int
    end_step: int
    recovered_step: int | None
    reference: float
    peak: float
    ratio: float
    share_undone: float
    noise_z: float
    points: int
    span_steps: int
    recovered_fraction: float
    lr_at_start: float | None = None
    lr_at_recovery: float | None = None
    grad_spike_step: int | None = None
    grad_spike_ratio: float | None = None
    grad_leads_by_steps: int | None = None


@dataclass(frozen=True, slots=True)
class DivergenceEvidence(Evidence):
    """A run that ended unrecovered.

    Attributes:
        signal: the series that decided.
        mode: "explosion" (ended far above its best or its start, not coming back), "collapse"
            (jumped to a flat plateau near its initial/trivial level after learning: a dead network), "uniform"
            (pinned at ln K, the loss of uniform predictions, after a blow-up, thrashing, learning below it or
            with the grad norm collapsed),
            "dead_after_blowup" (exploded in the first steps, then learned nothing), "regression"
            (ended well above where it started without ever making progress).
        start_step: where the unrecovered stretch began.
        initial / best / final: the loss at the start, its best smoothed level, the median of the tail.
        best_step: where the best level was reached.
        share_undone: (final - best) / (initial - best).
        recovered_fraction: how much of the jump had come back by the end.
        tail_slope_share: the tail's change over its length as a share of the jump (near 0 = flat).
        grad_drop: grad norm before the jump / in the tail (a dead network's gradient floor), if logged.
        peak_over_initial: the largest value over the initial loss (for a blow-up).
        chance_k: (mode "uniform") the K whose ln K the loss is pinned at: uniform predictions over K outcomes.
    """

    signal: Signal
    mode: Literal["explosion", "collapse", "dead_after_blowup", "regression", "uniform"]
    start_step: int
    initial: float
    best: float
    best_step: int
    final: float
    share_undone: float
    recovered_fraction: float
    tail_slope_share: float
    grad_drop: float | None = None
    peak_over_initial: float | None = None
    chance_k: int | None = None


@dataclass(frozen=True, slots=True)
class PatternEvidence(Evidence):
    """Bumps on a per-epoch period.

    Attributes:
        events: how many of the run's departures sit on the period.
        period_steps: the period.
        autocorrelation: the detrended loss's autocorrelation at that period.
    """

    events: int
    period_steps: float
    autocorrelation: float


@dataclass(frozen=True, slots=True)
class CountEvidence(Evidence):
    """How many of something, and the largest (one-point blips, grad-norm outliers, skipped steps).

    Attributes:
        count: how many.
        first_step: the first one.
        largest: the largest one's size (x its reference), if sized.
        largest_step: where the largest one is.
    """

    count: int
    first_step: int
    largest: float | None = None
    largest_step: int | None = None


@dataclass(frozen=True, slots=True)
class MessageEvidence(Evidence):
    """What a text log printed about the run's stability (overflow skips, NaN warnings, loss-scale drops).

    Attributes:
        counts: (kind, how many) pairs: overflow_skip, nan_warning, oom, skipped_iterations, nan_iterations,
            loss_scale (reductions of the loss scale).
        first_step: the first step at which one was printed.
        loss_scale_first: the first loss scale logged, if any.
        loss_scale_last: the last.
    """

    counts: tuple[tuple[str, int], ...]
    first_step: int
    loss_scale_first: float | None = None
    loss_scale_last: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "first_step": self.first_step,
                "loss_scale_first": self.loss_scale_first, "loss_scale_last": self.loss_scale_last}


@dataclass(frozen=True, slots=True)
class ClippedNormEvidence(Evidence):
    """A logged gradient norm that sits at its maximum: it is the clipped norm.

    Attributes:
        fraction_at_max: share of values exactly at the maximum.
        max: that maximum.
    """

    fraction_at_max: float
    max: float


@dataclass(frozen=True, slots=True)
class ProgressEvidence(Evidence):
    """A log from the start of training whose loss never fell.

    Attributes:
        initial / best: the initial loss (median of the first 3 points) and the best smoothed level.
        best_step: where the best was.
        best_over_initial: best / initial.
        steps: steps logged.
        threshold: the ratio below which a run counts as having learned.
    """

    initial: float
    best: float
    best_step: int
    best_over_initial: float
    steps: int
    threshold: float


@dataclass(frozen=True, slots=True)
class OverfitEvidence(Evidence):
    """Eval loss rising while the train loss keeps falling.

    Attributes:
        eval_best / eval_best_step / eval_final: the eval loss's best, where, and its last value.
        train_at_eval_best / train_final: the train loss level at those two points.
    """

    eval_best: float
    eval_best_step: int
    eval_final: float
    train_at_eval_best: float
    train_final: float
