"""One logged series measured in units that transfer between runs: its level, its own noise band,
the progress it has made, and the rounding it was logged with. Nothing here judges.

Two spaces are used on purpose. Noise is multiplicative for a positive loss (a per-step LM loss at 6
wobbles more than at 2), so departures are measured in log space there, in robust sigmas of the
run's own noise. But how much a rise matters is measured in the loss's own units, as the share of
the progress learned so far that it undoes: 0.01 -> 0.024 after a run learned 2.5 -> 0.01 undoes
0.6% of it, however large the ratio (spec/failure-shapes.md, "Measure in units that transfer").
Losses that are not all positive (log-likelihoods, signed objectives) are worked on in their own
units throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from analyzer.config import AnalysisConfig
from analyzer.types import Series

_MAD_TO_SIGMA = 1.4826


def rolling_median(values: np.ndarray, window: int, *, center: bool = False) -> np.ndarray:
    """Rolling median, windows truncated at the ends (polars: linear-time windows in native code,
    which numpy does not offer). Centred windows are made odd."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    window = max(1, min(int(window), x.size)) | (1 if center else 0)
    (trailing,) = trailing_medians([(x, window)])
    return centred(x, trailing, window) if center else trailing


def trailing_medians(columns: list[tuple[np.ndarray, int]]) -> list[np.ndarray]:
    """Trailing rolling medians of equal-length arrays, each with its window, in one polars query
    (one engine call instead of one per array: the calls dominate a 10,000-point run's cost)."""
    frame = pl.DataFrame({f"c{i}": pl.Series(x, dtype=pl.Float64) for i, (x, _) in enumerate(columns)})
    out = frame.select([pl.col(f"c{i}").rolling_median(window_size=max(1, int(w)), min_samples=1)
                        for i, (_, w) in enumerate(columns)])
    return [out.get_column(f"c{i}").to_numpy() for i in range(len(columns))]


def centred(x: np.ndarray, trailing: np.ndarray, window: int) -> np.ndarray:
    """The centred median from the trailing one (polars' centred windows are ~3x slower): the odd
    window centred on i is the trailing window ending at i + w//2; near the end, a prefix of the
    reversed tail."""
    n = x.size
    h = window // 2
    out = np.empty(n)
    out[: max(n - h, 0)] = trailing[h:]
    m = min(n, window)
    (tail,) = trailing_medians([(x[n - m:][::-1].copy(), window)])
    i = np.arange(max(n - h, 0), n)
    out[i] = tail[np.minimum(n - 1 - i + h, m - 1)]
    return out


def decimal_quantum(raw: np.ndarray) -> float:
    """The rounding step of logged values (HF Trainer rounds to 4 decimals), 0.0 when unrounded.

    A value is taken as rounded to k decimals when every value is within 1e-9 of a multiple of
    10^-k for some k in 1..6 and the values are not all integers.
    """
    if raw.size < 4:
        return 0.0
    head = raw[:1000]  # a value of these off the grid rules a k out without a pass over a long run's values
    for k in range(1, 7):
        if _on_grid(head, k) and (head.size == raw.size or _on_grid(raw, k)):
            return 10.0 ** -k
    return 0.0


def _on_grid(raw: np.ndarray, k: int) -> bool:
    """Whether every value is within 1e-9 (relative 1e-6) of a multiple of 10^-k."""
    scaled = raw * 10.0 ** k
    return bool(np.all(np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled)) + 1e-9))


@dataclass(frozen=True)
class Curve:
    """A finite series with its level, noise band and progress, every array aligned with ``steps``.

    Attributes:
        steps: steps of the finite points.
        raw: the values as logged.
        y: log(raw) when every value is positive (``log_space``), else raw.
        quantum: the rounding step of the logged values (0.0 when not rounded).
        base: trailing median of y over the ``baseline_window`` points before each point.
        sigma: the local noise of y (robust sigma of point-to-point changes, trailing), floored by the
            rounding step and ``min_log_spread``.
        level: centred rolling median of y over ``window`` points (the curve without its noise).
        level_sigma: how much ``level`` wanders on its own (calm second differences a window apart), floored
            by the points' calm noise over the square root of the window and by the rounding step.
        calm_sigma: the run's calm noise in y units (25th percentile of ``sigma``).
        spread: how far the points scatter around the level (y units, interquartile range / 1.349, at
            least ``calm_sigma``): a point-to-point MAD understates skewed, heavy-tailed per-batch noise.
        start: the loss at the start of the log, in raw units (median of the first 3 points, or the first
            if lower; one low first batch is passed over).
        first: the first logged value (the start in its place when it is one low batch).
        window: the level's window in points.
    """

    steps: np.ndarray
    raw: np.ndarray
    y: np.ndarray
    log_space: bool
    quantum: float
    base: np.ndarray
    sigma: np.ndarray
    level: np.ndarray
    level_sigma: np.ndarray
    calm_sigma: float
    spread: float
    start: float
    first: float
    window: int

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    def to_raw(self, y: np.ndarray | float) -> np.ndarray | float:
        return np.exp(y) if self.log_space else y

    # The raw-unit views are cached (the instance is frozen, so they never go stale): every judged event reads
    # them, and a 1,000,000-point periodic curve has tens of thousands of events.
    @cached_property
    def level_raw(self) -> np.ndarray:
        return np.asarray(self.to_raw(self.level), dtype=np.float64)

    @cached_property
    def calm_raw(self) -> np.ndarray:
        """The calm noise in the loss's own units at each point (delta method in log space)."""
        if self.log_space:
            return self.calm_sigma * self.level_raw
        return np.full(self.level.shape, self.calm_sigma)

    @cached_property
    def sigma_raw(self) -> np.ndarray:
        """The local noise in the loss's own units (delta method in log space)."""
        if self.log_space:
            return self.sigma * self.level_raw
        return self.sigma

    def best_before(self) -> np.ndarray:
        """Running minimum of the level in raw units: the best the run had reached at each point."""
        return np.minimum.accumulate(self.level_raw)

    def progress(self) -> np.ndarray:
        """Raw progress learned by each point: start - best level so far (can be <= 0)."""
        return self.start - self.best_before()

    def index_of_step(self, step: int) -> int:
        return min(int(np.searchsorted(self.steps, step)), len(self) - 1)


def level_window(n: int, cfg: AnalysisConfig) -> int:
    """Points in the level's window: a fixed minimum, growing with the run so that a long run's
    level is not its noise (odd, so the median sits on a point)."""
    w = max(cfg.level_min_window, int(round(n * cfg.level_window_fraction)))
    w = min(w, max(3, n // 3))
    return w | 1


def make_curve(series: Series, cfg: AnalysisConfig, *, with_level: bool = True) -> Curve | None:
    """Measure one series; None when it has fewer than 2 finite points. ``with_level=False`` skips the
    centred level (the grad norm needs only its spikes): ``level`` is then the trailing ``base``."""
    finite = np.isfinite(series.values)
    steps = series.steps[finite]
    raw = series.values[finite].astype(np.float64)
    if raw.size < 2:
        return None
    log_space = bool(np.all(raw > 0))
    y = np.log(raw) if log_space else raw.copy()
    quantum = decimal_quantum(raw)
    n = y.size
    w = cfg.baseline_window
    win = level_window(n, cfg)
    diffs = np.abs(np.diff(y, prepend=y[0]))
    diffs[0] = diffs[1] if n > 1 else 0.0
    wanted = [(y, w), (diffs, w)] + ([(y, win)] if with_level else [])
    medians = trailing_medians(wanted)
    base = np.empty_like(y)
    base[0] = y[0]
    base[1:] = medians[0][:-1]
    sigma = medians[1].copy()  # noise seen up to each point
    # the point-to-point MAD of an i.i.d. series is sqrt(2) x its own MAD
    sigma *= _MAD_TO_SIGMA / np.sqrt(2.0)
    # floors: the rounding step (0.0001 -> 0.0002 is one quantum, not a 2x spike) and a minimum spread
    scale = np.abs(raw) if log_space else np.full(n, max(float(np.median(np.abs(raw))), 1e-12))
    if quantum > 0:
        q_floor = np.log1p(quantum / np.maximum(scale, quantum)) if log_space else np.full(n, quantum)
    else:
        q_floor = np.zeros(n)
    spread_floor = cfg.min_log_spread if log_space else cfg.min_log_spread * scale
    sigma = np.maximum(np.maximum(sigma, q_floor), spread_floor)
    level = centred(y, medians[2], win) if with_level else base
    # The points' CALM noise: a thrashing regime inflates the local noise and would hide itself behind
    # it. Calm = the quieter quarter of the run's own noise estimates.
    calm = float(np.percentile(sigma, 25))
    level_sigma = np.maximum(_level_noise(level, win, calm), np.maximum(q_floor, 0.0))
    start, first = _start(raw, y, log_space, cfg)
    q25, q75 = np.percentile(y - level, [25, 75]) if with_level else (0.0, 0.0)
    spread = max(float(q75 - q25) / 1.349, calm)
    return Curve(steps, raw, y, log_space, quantum, base, sigma, level, level_sigma, calm, spread, start, first, win)


def _start(raw: np.ndarray, y: np.ndarray, log_space: bool, cfg: AnalysisConfig) -> tuple[float, float]:
    """The loss at the start of the log: the median of its first 3 points, unless the very first is lower (a
    blow-up at steps 1-2 must not become the reference it is measured against), or unless the first point is
    one low batch: below each of the next nine points by more than ``spike_z`` of their own noise, but by less
    than ``early_rise_ratio`` x, while those agree with each other (a blip at steps 1-3 comes back down). An easy
    first batch is not where training started. Returns (start, first): the first logged value, or for one low
    first batch the start in its place."""
    first = float(raw[0])
    start = min(float(np.median(raw[:3])), first)
    if raw.size < 20 or (log_space and first <= 0):
        return start, first
    ahead = y[1:min(raw.size, 31)]
    noise = max(_MAD_TO_SIGMA * float(np.median(np.abs(np.diff(ahead)))) / np.sqrt(2.0), 1e-12)
    y0 = float(y[0])
    head, rest = float(np.median(y[1:4])), float(np.median(y[4:10]))
    below_all = y0 < float(np.min(y[1:10])) and float(np.min(y[1:10])) - y0 > cfg.spike_z * noise
    # a batch, not a blow-up: the next points are less than early_rise_ratio x it (a rise at step 1 that large is
    # the run's own early instability, measured from the first point)
    modest = not log_space or head - y0 < np.log(cfg.early_rise_ratio)
    if below_all and modest and abs(head - rest) <= cfg.spike_z * noise:
        start = float(np.median(raw[1:4]))
        return start, start
    return start, first


def _level_noise(level: np.ndarray, win: int, calm: float) -> float:
    """How much the level wanders on its own, measured on the level itself (not derived from the
    points' noise: per-batch noise is skewed and heavy-tailed in log space, and its running minimum
    sits in the low tail). Levels one window apart are independent draws; second differences at that
    lag cancel a linear trend (a short, falling eval curve is trend, not noise), and their calm (25th
    percentile) absolute value is 0.3186 x sqrt(6) sigma for normal noise. At least the median of w
    points' own scatter, 1.25 x calm / sqrt(w), which is all a short curve gets."""
    floor = 1.25 * calm / np.sqrt(win)
    if level.size < 8 * win:
        return floor  # too few independent levels: a bump or a bend would be taken for noise
    d2 = np.abs(level[2 * win:] - 2 * level[win:-win] + level[:-2 * win])
    return max(float(np.percentile(d2, 25)) / (0.3186 * np.sqrt(6.0)), floor)


def early_cut_step(steps: np.ndarray, cfg: AnalysisConfig) -> int:
    """The last step of the early phase: the first ``early_fraction`` of training.

    Steps count from 0 (the start of training), not from the first logged step: a log that starts
    late (a resumed job) has no early phase in it.
    """
    if steps.size == 0:
        return 0
    return int(cfg.early_fraction * max(int(steps[-1]), 1))
