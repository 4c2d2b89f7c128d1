"""Thin a series for drawing without ever hiding a spike: each bucket keeps its min and its max.

Non-finite points are not thinned away either: they come back separately, to be drawn as marks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Decimated:
    steps: np.ndarray
    values: np.ndarray  # finite only
    nonfinite_steps: np.ndarray


def minmax_decimate(steps: np.ndarray, values: np.ndarray, max_points: int = 2000) -> Decimated:
    """At most ~``max_points`` finite points whose envelope equals the full series' envelope."""
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    bad_steps = steps[~finite]
    s, v = steps[finite], values[finite]
    n = v.size
    if n <= max_points:
        return Decimated(s, v, bad_steps)
    buckets = max(max_points // 2, 1)
    size = int(np.ceil(n / buckets))
    pad = buckets * size - n
    padded_hi = np.concatenate([v, np.full(pad, -np.inf)]).reshape(buckets, size)
    padded_lo = np.concatenate([v, np.full(pad, np.inf)]).reshape(buckets, size)
    base = np.arange(buckets) * size
    i_max = base + padded_hi.argmax(axis=1)
    i_min = base + padded_lo.argmin(axis=1)
    keep = np.unique(np.concatenate([i_min, i_max, [0, n - 1]]))
    keep = keep[keep < n]
    return Decimated(s[keep], v[keep], bad_steps)
