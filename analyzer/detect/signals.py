"""Measurements on one run's curves, computed once and shared by every check.

Nothing here judges: it finds spike events against a robust trailing baseline, the smoothed
rise above the running best, and the early/late statistics the checks compare. Loss is worked
on in log space when it is positive (a 3x spike is a 3x spike at loss 5 or at loss 0.05);
negative losses (log-likelihood objectives) are worked on as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from analyzer.config import AnalysisConfig
from analyzer.types import Series


@dataclass(frozen=True)
class SpikeEvent:
    """An upward excursion of a curve above its trailing baseline.

    Attributes:
        start_step / peak_step: where it began and peaked.
        end_step: the last step still above the recovery band (== peak_step for a one-point blip).
        baseline: the curve's trailing median just before the event (in the curve's units).
        peak: the value at the peak.
        ratio: peak / baseline (NaN when the curve is not positive).
        z: peak height in robust sigmas.
        points: how many logged points it lasted before recovering (or to the end).
        elevated: how many of those were still at least ``min_ratio`` x the baseline (the spike proper).
        recovered_step: first step back within the recovery band, None if it never came back.
    """

    start_step: int
    peak_step: int
    end_step: int
    baseline: float
    peak: float
    ratio: float
    z: float
    points: int
    elevated: int
    recovered_step: int | None
    start_index: int
    peak_index: int


@dataclass(frozen=True)
class Curve:
    """A finite, transformed view of a series with its robust baseline and noise."""

    steps: np.ndarray
    raw: np.ndarray  # finite values as logged
    y: np.ndarray  # log(raw) when positive, else raw
    log_space: bool
    baseline: np.ndarray  # trailing median of y over the points before each point
    sigma: np.ndarray  # robust noise of y (from point-to-point differences), floored
    smooth: np.ndarray  # trailing median of y including the point (for level comparisons)

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    def to_raw(self, y: float) -> float:
        return float(np.exp(y)) if self.log_space else float(y)


def _rolling_median(values: np.ndarray, window: int, min_samples: int = 1) -> np.ndarray:
    return pl.Series(values).rolling_median(window_size=window, min_samples=min_samples).to_numpy()


def make_curve(series: Series, cfg: AnalysisConfig, *, min_spread: float | None = None) -> Curve | None:
    finite = np.isfinite(series.values)
    steps = series.steps[finite]
    raw = series.values[finite]
    if raw.size < 2:
        return None
    log_space = bool(np.all(raw > 0))
    y = np.log(raw) if log_space else raw.astype(np.float64)
    w = cfg.baseline_window
    base = np.empty_like(y)
    base[0] = y[0]
    base[1:] = _rolling_median(y, w)[:-1]
    diffs = np.abs(np.diff(y, prepend=y[0]))
    noise = _rolling_median(diffs[1:], w, 1) if y.size > 1 else np.zeros(0)
    sigma = np.empty_like(y)
    sigma[0] = noise[0] if noise.size else 0.0
    sigma[1:] = np.concatenate([[noise[0]], noise[:-1]]) if noise.size else 0.0
    sigma *= 1.4826 / np.sqrt(2.0)
    if min_spread is None:
        min_spread = cfg.min_log_spread if log_space else cfg.min_log_spread * max(float(np.median(np.abs(y))), 1e-12)
    sigma = np.maximum(sigma, min_spread)
    smooth_w = max(5, y.size // 100)
    smooth = _rolling_median(y, smooth_w)
    return Curve(steps, raw, y, log_space, base, sigma, smooth)


def spike_events(curve: Curve, *, min_ratio: float, z_min: float, recover_ratio: float) -> list[SpikeEvent]:
    """Upward spike events: z above the trailing baseline and at least ``min_ratio`` x it."""
    y, base, sigma = curve.y, curve.baseline, curve.sigma
    z = (y - base) / sigma
    if curve.log_space:
        big = (y - base) >= np.log(min_ratio)
    else:
        big = np.ones_like(y, dtype=bool)
    hits = np.flatnonzero((z > z_min) & big)
    hits = hits[hits > 0]
    events: list[SpikeEvent] = []
    i = 0
    band = np.log(recover_ratio) if curve.log_space else 0.0
    n = y.size
    while i < hits.size:
        start = int(hits[i])
        b = base[start]
        limit = b + (band if curve.log_space else 3 * sigma[start])
        after = np.flatnonzero(y[start + 1:] <= limit)
        rec = start + 1 + int(after[0]) if after.size else None
        stop = rec if rec is not None else n
        peak = start + int(np.argmax(y[start:stop]))
        events.append(SpikeEvent(
            start_step=int(curve.steps[start]), peak_step=int(curve.steps[peak]),
            end_step=int(curve.steps[stop - 1]), baseline=curve.to_raw(b), peak=float(curve.raw[peak]),
            ratio=float(np.exp(y[peak] - b)) if curve.log_space else float("nan"),
            z=float((y[peak] - b) / sigma[start]), points=stop - start,
            elevated=int(np.sum(y[start:stop] - b >= (np.log(min_ratio) if curve.log_space else z_min * sigma[start]))),
            recovered_step=int(curve.steps[rec]) if rec is not None else None,
            start_index=start, peak_index=peak,
        ))
        while i < hits.size and hits[i] < stop:
            i += 1
    return events


@dataclass(frozen=True)
class Rise:
    """The largest sustained rise of the smoothed curve above its running best after ``start``."""

    start_step: int
    peak_step: int
    best_before: float
    peak: float
    ratio: float
    end_level: float
    recovered_fraction: float  # 1 = back to the best level by the end, 0 = still at the peak


def largest_rise(curve: Curve, start_index: int = 0) -> Rise | None:
    if not curve.log_space or len(curve) - start_index < 5:
        return None
    s = curve.smooth
    best = np.minimum.accumulate(s)
    excess = s - best
    excess[:start_index] = 0.0
    peak = int(np.argmax(excess))
    if excess[peak] <= 0:
        return None
    # where it left the best level: the last point before the peak that sat at the running best
    at_best = np.flatnonzero(excess[:peak + 1] <= 1e-12)
    start = int(at_best[-1]) if at_best.size else 0
    tail = max(3, len(curve) // 20)
    end_level = float(np.median(curve.y[-tail:]))
    peak_y = s[peak]
    rec = float((peak_y - end_level) / (peak_y - best[peak])) if peak_y > best[peak] else 1.0
    return Rise(int(curve.steps[start]), int(curve.steps[peak]), float(np.exp(best[peak])), float(np.exp(peak_y)),
                float(np.exp(excess[peak])), float(np.exp(end_level)), float(np.clip(rec, 0.0, 1.0)))


def early_end_index(steps: np.ndarray, cfg: AnalysisConfig) -> int:
    """Index of the first point after the early phase."""
    if steps.size == 0:
        return 0
    lo, hi = int(steps[0]), int(steps[-1])
    cutoff = lo + cfg.early_fraction * (hi - lo)
    idx = int(np.searchsorted(steps, cutoff, side="right"))
    return min(max(idx, cfg.early_min_points), steps.size)
