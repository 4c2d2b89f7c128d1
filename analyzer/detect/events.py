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
_FIRST_CHUNK = 8


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
    starts, stops = _events_of(y, hits, base, sigma, cfg)
    first = np.array(starts)
    end = np.array([st if st is not None else n for st in stops])
    b, s = base[first], sigma[first]
    # each event's peak (the first highest point of its span) and its points at half height or more, for all
    # events at once: segment ids over the concatenated spans
    lengths = end - first
    seg = np.repeat(np.arange(first.size), lengths)
    idx = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(first, lengths)
    top = np.maximum.reduceat(y[idx], np.cumsum(lengths) - lengths)
    at_top = np.flatnonzero(y[idx] == top[seg])
    _, first_top = np.unique(seg[at_top], return_index=True)
    peak = idx[at_top[first_top]]
    height_y = y[peak] - b
    points = np.bincount(seg, weights=(y[idx] - b[seg] >= 0.5 * height_y[seg]), minlength=first.size).astype(int)
    ref = np.asarray(curve.to_raw(b), dtype=np.float64)
    peak_raw = curve.raw[peak]
    ratio = np.exp(height_y) if curve.log_space else np.full(first.size, np.nan)
    progress = curve.start - best[first - 1]
    return [Event("spike", st, pk, e - 1, stop, r, pv, pv - r, ra, z, pr, pt, tail_level)
            for st, pk, e, stop, r, pv, ra, z, pr, pt in zip(
                first.tolist(), peak.tolist(), end.tolist(), stops, ref.tolist(), peak_raw.tolist(), ratio.tolist(),
                (height_y / s).tolist(), progress.tolist(), points.tolist())]


def _events_of(y: np.ndarray, hits: np.ndarray, base: np.ndarray, sigma: np.ndarray, cfg: AnalysisConfig
               ) -> tuple[list[int], list[int | None]]:
    """(start, recovery or None) of each event, in order: a hit inside the span of the event before it belongs
    to that event. An event almost always starts at the first hit of a run of consecutive hits (the curve
    was back below the threshold before it), so those recoveries are found together; a start inside a run
    (the event before ended there) is searched for alone."""
    first_of_run = np.r_[True, hits[1:] != hits[:-1] + 1]
    heads = hits[first_of_run]
    head_stop = dict(zip(heads.tolist(), _recoveries(y, heads, base[heads], sigma[heads], cfg).tolist()))
    hit_list = hits.tolist()
    starts: list[int] = []
    stops: list[int | None] = []
    j = 0
    while j < len(hit_list):
        h = hit_list[j]
        if h in head_stop:
            r = head_stop[h]
            stop = None if r < 0 else r
        else:
            stop = _recovery(y, h, float(base[h]), float(sigma[h]), cfg)
        starts.append(h)
        stops.append(stop)
        if stop is None:
            break
        j = int(np.searchsorted(hits, stop, side="left"))
    return starts, stops


def _recoveries(y: np.ndarray, starts: np.ndarray, b: np.ndarray, s: np.ndarray, cfg: AnalysisConfig) -> np.ndarray:
    """`_recovery` for many starts at once (-1: never back): the first points after each, in vector steps for
    all, then point by point for the few still out after ``_SEARCH_CHUNK`` points."""
    n = y.size
    out = np.full(starts.size, -1, dtype=np.int64)
    running = y[starts].copy()
    open_ = np.arange(starts.size)
    for k in range(1, _SEARCH_CHUNK + 1):
        at = starts[open_] + k
        inside = at < n
        open_, at = open_[inside], at[inside]
        if open_.size == 0:
            break
        running[open_] = np.maximum(running[open_], y[at])
        band = np.maximum(cfg.recover_z * s[open_], cfg.recover_height_fraction * (running[open_] - b[open_]))
        back = y[at] - b[open_] <= band
        out[open_[back]] = at[back]
        open_ = open_[~back]
    for j in open_.tolist():  # still out after a long stretch: search on from there
        st = int(starts[j]) + _SEARCH_CHUNK
        if st < n - 1:
            r = _recovery(y, st, float(b[j]), float(s[j]), cfg, peak=float(running[j]))
            out[j] = -1 if r is None else r
    return out


def _recovery(y: np.ndarray, start: int, b: float, s: float, cfg: AnalysisConfig, *,
              peak: float | None = None) -> int | None:
    """First index after ``start`` back within max(recover_z sigmas, a fraction of the height so far); ``peak``:
    the highest point before ``start`` of a search that began earlier."""
    n = y.size
    lo = start + 1
    running_peak = float(y[start]) if peak is None else max(peak, float(y[start]))
    chunk = _FIRST_CHUNK  # most departures are back within a few points: look there first, then further
    while lo < n:
        hi = min(n, lo + chunk)
        seg = y[lo:hi]
        peak_so_far = np.maximum(np.maximum.accumulate(seg), running_peak)
        band = np.maximum(cfg.recover_z * s, cfg.recover_height_fraction * (peak_so_far - b))
        back = np.flatnonzero(seg - b <= band)
        if back.size:
            return lo + int(back[0])
        running_peak = float(peak_so_far[-1])
        lo = hi
        chunk = min(chunk * 4, _SEARCH_CHUNK)
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
