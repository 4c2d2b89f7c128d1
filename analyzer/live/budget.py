"""When a Monitor may judge: the share of wall time its copies and judgements may take, and what they cost.

A judgement costs ~4-6 ms plus ~1 ms per 1,000 points of history (the engine reads the whole curve), so
judging every N steps would slow a long run more and more. A due judgement is deferred instead while the
time spent so far plus the next judgement's expected cost would exceed ``max_overhead`` of the wall time
since the first update: the cost stays under that share by construction, and a long run is judged less
often rather than slowed down. Recording itself is not counted (see `analyzer.live.monitor`). Mixed into
`Monitor`, whose state it reads and which owns recording, flushing and the judgement itself.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from analyzer.config import AnalysisConfig
from analyzer.engine import diagnose_run
from analyzer.frame import RawPoints
from analyzer.live.finding import LiveFinding
from analyzer.live.history import build_run
from analyzer.live.transfer import Transfer

# The warm-up used to live in monitor.py: its message stays under the logger users set up for the Monitor.
log = logging.getLogger("analyzer.live.monitor")

#: The engine's cost floor for one judgement (a short history), before the first one is measured.
_FIRST_COST = 0.005


class Budget:
    """The judging-budget half of `Monitor` (see the module doc)."""

    every_n_steps: int
    max_overhead: float | None
    _rows: list[tuple[int, Any, Any, Any, Any]]
    _extra: list[tuple[int, dict[str, Any]]]
    _transfers: list[Transfer]
    _due: bool
    _points: int
    _points_judged: int
    _last_step: int | None
    _judged_step: int | None
    _next_check: int
    _t0: float | None
    _first_step: int
    _spent: float
    _last_cost: float
    _judgements: int
    _deferred: int

    # Monitor's: declared here so that the budget can time them.
    def _collect(self, only_ready: bool = False) -> None:
        raise NotImplementedError

    def _judge(self) -> LiveFinding | None:
        raise NotImplementedError

    def _maybe_judge(self, step: int) -> LiveFinding | None:
        if self._transfers and not all(t.ready() for t in self._transfers):
            return None  # a copy is still on its way: judge at a later step, never wait for the device
        if self.max_overhead is not None:
            assert self._t0 is not None
            elapsed = time.perf_counter() - self._t0
            wait = (self._spent + self._expected_cost()) / self.max_overhead - elapsed  # seconds until it fits
            if wait > 0:
                self._deferred += 1
                # Look again when it should fit, at the loop's pace so far (in steps): not a clock read every
                # few steps. A loop that speeds up is looked at early (and waits again), one that slows down late.
                per_step = elapsed / max(step - self._first_step, 1)
                steps = int(wait / per_step) if per_step > 0 else self.every_n_steps
                self._next_check = step + min(max(1, steps), 20 * self.every_n_steps)
                return None
        return self._timed_judge()

    def _expected_cost(self) -> float:
        """What the next judgement will cost: the last one's, grown with the history (the engine reads all
        of it); before any, the engine's floor (~5 ms), so even the first waits for its share of time."""
        if not self._judgements:
            return _FIRST_COST
        points = (self._points + 2 * len(self._rows) + len(self._extra)  # a row is ~2 points (loss, LR)
                  + sum(len(s) for t in self._transfers for s in t.steps.values()))
        return self._last_cost * max(1.0, points / max(self._points_judged, 1))

    def _timed_judge(self) -> LiveFinding | None:
        started = time.perf_counter()
        self._collect()
        self._due = False
        self._judged_step = self._last_step
        if self._last_step is not None:
            self._next_check = self._last_step + self.every_n_steps
        try:
            return self._judge()
        finally:
            self._last_cost = time.perf_counter() - started
            self._spent += self._last_cost
            self._judgements += 1
            self._points_judged = self._points

    @property
    def stats(self) -> dict[str, float | int]:
        """How often it judged, how often it deferred, and the share of the wall time its copies, judgements
        and decisions took."""
        wall = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        return {"judgements": self._judgements, "deferred": self._deferred, "seconds_judging": self._spent,
                "last_judgement_seconds": self._last_cost, "wall_seconds": wall,
                "overhead": self._spent / wall if wall > 0 else 0.0,
                "points": self._points}


_WARM = False


def warm_up() -> None:
    """Judge a small synthetic run once per process, when a Monitor is made (before training): the
    engine's first judgement in a process costs ~70 ms of one-off work (then ~5 ms), which would
    otherwise land on a training step and take a long run's budget for seconds."""
    global _WARM
    if _WARM:
        return
    _WARM = True
    steps = np.arange(64)
    raw = RawPoints.from_columns({"loss": (steps, np.full(64, math.nan), 2.0 / (steps + 1.0))})
    try:
        diagnose_run(build_run("warm-up", "jsonl", raw), AnalysisConfig())
    except Exception as exc:  # noqa: BLE001 - a warm-up is only about speed
        log.debug("warm-up judgement failed: %s", exc)
