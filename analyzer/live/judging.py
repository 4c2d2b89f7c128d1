"""Judging the runs one poll changed: in this process, or in worker processes when many changed.

Judging is the floor of a poll (~6-8 ms a run: the engine reads the whole curve), so when hundreds of
runs grow between two polls their judgements go to a pool of worker processes, kept for the watcher's
life (a worker's first judgement pays the engine's imports once). Reading stays in this process: it is
incremental (the tails of each file live here) and cheap next to judging. A run crosses to a worker
pickled (its frame is a few KB to a few MB); what comes back is the judgement without the run (the
caller has it) and the run's sweep facts, not its measured context.

Fewer runs than ``parallel_from`` (or one worker) are judged here: a pool costs ~1 ms a run in
transfers, and its start-up (~1-2 s, once) only pays for itself on large polls.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Sequence

from analyzer.config import AnalysisConfig
from analyzer.engine import diagnose_run
from analyzer.sweep import SweepFacts, sweep_facts
from analyzer.types import Diagnosis, Run

log = logging.getLogger(__name__)

Judged = tuple[Diagnosis, SweepFacts | None]
_CONFIG: AnalysisConfig | None = None  # a worker's settings, set once when it starts


def judge(run: Run, config: AnalysisConfig) -> Judged:
    """The run's diagnosis and its sweep facts (what `Watcher.report` needs of its measured context)."""
    d, ctx = diagnose_run(run, config)
    return d, sweep_facts(ctx) if ctx is not None else None


def _start_worker(config: AnalysisConfig) -> None:
    global _CONFIG
    _CONFIG = config


def _judge_in_worker(run: Run) -> tuple[Any, ...]:
    assert _CONFIG is not None
    d, facts = judge(run, _CONFIG)
    return d.verdict, d.findings, d.recommendations, d.failures, dict(d.stats), facts  # the run stays behind


class Judges:
    """Judge a batch of runs, in worker processes when the batch is large (see the module doc)."""

    def __init__(self, config: AnalysisConfig, *, workers: int = 0, parallel_from: int = 32) -> None:
        self.config = config
        self.workers = workers or (os.cpu_count() or 1)
        self.parallel_from = max(2, parallel_from)
        self._pool: ProcessPoolExecutor | None = None
        self.parallel_batches = 0  # how many batches went to the pool (tests and benchmarks read it)

    def judge(self, runs: Sequence[Run]) -> list[Judged]:
        if self.workers > 1 and len(runs) >= self.parallel_from:
            try:
                return self._in_pool(runs)
            except BrokenProcessPool as exc:  # e.g. a __main__ that cannot be re-imported (a script on stdin)
                log.warning("watch: judging in worker processes failed (%s); judging in this process", exc)
                self.workers = 1
                self.close()
        return [judge(run, self.config) for run in runs]

    def _in_pool(self, runs: Sequence[Run]) -> list[Judged]:
        if self._pool is None:
            # spawn, not fork: polars' thread pool does not survive a fork (as analyzer.ingest.load).
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"),
                                             initializer=_start_worker, initargs=(self.config,))
        chunk = max(1, len(runs) // (4 * self.workers))
        out = []
        for run, (verdict, findings, recs, failures, stats, facts) in zip(
                runs, self._pool.map(_judge_in_worker, runs, chunksize=chunk)):
            out.append((Diagnosis(run, verdict, findings, recs, failures, stats), facts))
        self.parallel_batches += 1
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
