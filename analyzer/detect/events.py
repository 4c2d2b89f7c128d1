"""Departures of a curve above its own level, found and measured (never judged here).

Two detectors, because instability has two time scales:
- spikes: points above the trailing level by more than the noise band, grouped until the curve is
  back (a loss spike lasting a few logged points, a grad-norm outlier);
- regimes: stretches where the smoothed level sits above the best level reached so far (a step
  change that recovers slowly or never, a sustained unstable regime lasting thousands of steps).
A change-point library was measured and not used (ruptures from PyPI, 2026-12; one 10,000-point
log loss with a decay and a 500-step regime, this 2-core machine): PELT took 2.6 s (l1) to 6.3 s
(l2) and cut the smooth decay into 48-123 mean-shift segments whose number depends on a per-run
penalty; binary segmentation with 10 breakpoints took 0.6 s. Either is 50-500x the ~13 ms a run
costs here, for 1,000 runs x 10,000 points that must take seconds, and both answer a two-sided
"where does the mean change" while the question is one-sided: above the best level so far, by how
much of the progress, for how long. A running minimum of a rolling median answers that in linear time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.config import AnalysisConfig
from analyzer.detect.curve import Curve

_SEARCH_CHUNK = 512


@dataclass(frozen=True)
class Event:
    """One departure of a curve above its level (indices into the curve).

    Attributes:
        shape: "spike" or "regime".
        start / peak / last: first index above the band, the highest, the last one before recovery.
        recovered: index of the first point back within the band, None if never.
        reference: the level it departed from (raw units).
        peak_value: the value (spike) or smoothed level (regime) at the peak (raw units).
        height: peak_value - reference (raw units).
        ratio: peak_value / reference (NaN when the curve is not positive).
        z: height in units of the local noise (of points for a spike, of the level for a regime).
        progress_before: what the run had learned before it (start - best level so far, raw).
        points: points at half the height or more.
        tail_level: the level at the end of the log (raw), for how much came back.
    """

    shape: str
    start: int
    peak: int
    last: int
    recovered: int | None
    reference: float
    peak_value: float
    height: float
    ratio: float
    z: float
    progress_before: float
    points: int
    tail_level: float

    def share(self, progress: float, floor: float) -> float:
        """Height as a share of ``progress`` (floored, so that a run that has learned nothing yet
        does not turn every wobble into an infinite share)."""
        return float(self.height / max(progress, floor, 1e-300))

    @property
    def recovered_fraction(self) -> float:
        if self.recovered is not None:
            return 1.0
        if self.height <= 0:
            return 1.0
        return float(np.clip((self.peak_value - self.tail_level) / self.height, 0.0, 1.0))


def _tail_level(curve: Curve, cfg: AnalysisConfig) -> float:
    tail = max(3, int(len(curve) * cfg.tail_fraction))
    return float(np.median(curve.raw[-tail:]))


def find_spikes(curve: Curve, cfg: AnalysisConfig, *, min_ratio: float = 1.0, z: float | None = None) -> list[Event]:
    """Points more than ``z`` (default ``spike_z``) sigmas above the trailing level (and ``min_ratio``
    x it), grouped into events that last until the curve is back within the recovery band."""
    y, base, sigma = curve.y, curve.base, curve.sigma
    dev = y - base
    hit = dev > (cfg.spike_z if z is None else z) * sigma
    if min_ratio > 1.0:
        hit &= (dev >= np.log(min_ratio)) if curve.log_space else (curve.raw >= min_ratio * np.abs(base))
    hit[0] = False
    hits = np.flatnonzero(hit)
    if hits.size == 0:
        return []
    best = np.minimum.accumulate(curve.level_raw)
    tail_level = _tail_level(curve, cfg)
    n = y.size
    events: list[Event] = []
    i = 0
    while i < hits.size:
        start = int(hits[i])
        b, s = base[start], sigma[start]
        stop = _recovery(y, start, b, s, cfg)
        end = stop if stop is not None else n
        seg = y[start:end]
        peak = start + int(np.argmax(seg))
        height_y = y[peak] - b
        points = int(np.sum(seg - b >= 0.5 * height_y))
        ref = float(curve.to_raw(b))
        peak_raw = float(curve.raw[peak])
        events.append(Event(
            "spike", start, peak, end - 1, stop, ref, peak_raw, peak_raw - ref,
            float(np.exp(height_y)) if curve.log_space else float("nan"), float(height_y / s),
            float(curve.start - best[start - 1]), points, tail_level))
        while i < hits.size and hits[i] < end:
            i += 1
    return events


def _recovery(y: np.ndarray, start: int, b: float, s: float, cfg: AnalysisConfig) -> int | None:
    """First index after ``start`` back within max(recover_z sigmas, a fraction of the height so far)."""
    n = y.size
    lo = start + 1
    running_peak = y[start]
    while lo < n:
        hi = min(n, lo + _SEARCH_CHUNK)
        seg = y[lo:hi]
        peak_so_far = np.maximum.accumulate(np.r_[running_peak, seg])[1:]
        band = np.maximum(cfg.recover_z * s, cfg.recover_height_fraction * (peak_so_far - b))
        back = np.flatnonzero(seg - b <= band)
        if back.size:
            return lo + int(back[0])
        running_peak = float(peak_so_far[-1])
        lo = hi
    return None


def find_regimes(curve: Curve, cfg: AnalysisConfig) -> list[Event]:
    """Stretches where the smoothed level sits more than ``regime_z`` of its own sigmas above the
    best level reached before; a stretch ends when the level is back (or makes a new best)."""
    level, lsig = curve.level, curve.level_sigma
    best_y = np.minimum.accumulate(level)
    excess = level - best_y
    above = excess > cfg.regime_z * lsig
    if not above.any():
        return []
    n = level.size
    # stretches of consecutive True, merged across gaps shorter than the level's window
    edges = np.flatnonzero(np.diff(np.r_[0, above.astype(np.int8), 0]))
    starts, stops = edges[0::2], edges[1::2]
    merged: list[list[int]] = []
    for a, b in zip(starts.tolist(), stops.tolist()):
        if merged and a - merged[-1][1] < curve.window:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    level_raw = curve.level_raw
    best_raw = np.minimum.accumulate(level_raw)
    tail_level = _tail_level(curve, cfg)
    events: list[Event] = []
    for a, b in merged:
        # where it left the best level: the last point before the stretch within the band of the best
        near = np.flatnonzero(excess[:a + 1] <= lsig[:a + 1])
        start = int(near[-1]) + 1 if near.size else a
        peak = a + int(np.argmax(excess[a:b]))
        # the centred level leaves the best up to half a window before the loss does: the regime starts
        # where the loss itself first crosses half the regime's height
        crossed = np.flatnonzero(curve.y[start:peak + 1] - best_y[start:peak + 1] >= 0.5 * excess[peak])
        start = start + int(crossed[0]) if crossed.size else min(start, a)
        ref = float(best_raw[max(start - 1, 0)])
        peak_raw = float(level_raw[peak])
        half = 0.5 * excess[peak]
        points = int(np.sum(excess[start:b] >= half))
        recovered = b if b < n else None
        events.append(Event(
            "regime", start, peak, b - 1, recovered, ref, peak_raw, peak_raw - ref,
            float(np.exp(excess[peak])) if curve.log_space else float("nan"), float(excess[peak] / lsig[peak]),
            float(curve.start - best_raw[max(start - 1, 0)]), points, tail_level))
    return events
