"""A per-epoch pattern in the loss (data order, epoch-averaged logging): where in each period the loss jumps,
found with the FFT; its bumps are not instability."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.detect.context import RunContext
from analyzer.detect.curve import rolling_median


@dataclass(frozen=True)
class Grid:
    """A per-epoch period in the loss: where in each period the loss jumps up.

    Attributes:
        period: the period in logged points. phase: the point within a period where the jump is.
        acf: the detrended loss's autocorrelation at that period (how regular it is).
    """

    period: int
    phase: int
    acf: float
    tolerance: int

    def on(self, index: int) -> bool:
        d = (index - self.phase) % self.period
        return min(d, self.period - d) <= self.tolerance


def periodic_grid(ctx: RunContext) -> Grid | None:
    """A per-epoch pattern (data order, epoch-averaged logging): the loss minus its level repeats with a
    period (a clear autocorrelation peak that recurs at twice the lag). Found with the FFT in
    O(n log n); looked for only when a run has events that would otherwise be called instability."""
    c, cfg = ctx.curve, ctx.cfg
    assert c is not None
    n = len(c)
    if n < 4 * cfg.periodic_min_events:
        return None
    # the detrended loss, lightly smoothed so that per-batch noise does not drown the period
    r = rolling_median(c.y - c.level, max(3, c.window // 4), center=True)
    r = r - r.mean()
    spec = np.fft.rfft(r, 2 * n)
    acf = np.fft.irfft(spec * np.conj(spec))[:n]
    if acf[0] <= 0:
        return None
    acf = acf / acf[0]
    hi = n // cfg.periodic_min_events  # at least this many periods in the run
    if hi < 6:
        return None
    lags = np.arange(3, hi)
    inner = acf[3:hi]
    peaks = lags[1:-1][(inner[1:-1] >= inner[:-2]) & (inner[1:-1] >= inner[2:])]
    if peaks.size == 0:
        return None
    lag = int(peaks[np.argmax(acf[peaks])])
    if acf[lag] < cfg.periodic_acf or 2 * lag >= n or acf[2 * lag] < 0.5 * acf[lag]:
        return None
    profile = np.array([r[k::lag].mean() for k in range(lag)])
    jump = int(np.argmax(profile - np.roll(profile, 1)))
    return Grid(lag, jump, float(acf[lag]), max(2, int(round(cfg.periodic_cv * lag))))
