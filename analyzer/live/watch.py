"""Polling growing logs: what changed since the last poll, read incrementally, re-judged, compared.

Each poll first lists and stats every file under the watched paths (one scandir per directory,
one stat per file): a poll where nothing changed costs that and nothing else. Then:

- a JSONL log that grew: only its new complete lines are parsed (`JsonlTail`) and appended to the
  run's frame (`history.grown`; what is kept per run and how it is extended: `analyzer.live.tracking`);
- any other log of a known run that grew (TensorBoard events, a CSV, a trainer_state.json): that
  run alone is re-read with `load_runs`; for event files the decode cache decodes only the new bytes;
- a new file, a removed file of a run, or a skipped file that changed: a new file is first tried
  alone (a checkpoint or a stdout log is no run, and costs no reload); a possible new run, or a
  run that lost a file, reloads every path (the run cache returns unchanged runs without decoding).

Only runs whose files changed are judged again, with the same `diagnose_run` as `steadytrain report`,
and compared with their last judgement (`compare`): a new verdict or a new finding is a `LiveFinding`.
When many changed in one poll they are judged in worker processes (`analyzer.live.judging`).

Object-store prefixes (``s3://``, ``gs://``, ``hf://``, ...) are mirrored before each poll, fetching only
what grew (`analyzer.live.sources`); the poll then reads the mirror as it would a local directory.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

from analyzer.config import AnalysisConfig
from analyzer.errors import InputError
from analyzer.engine import make_report
from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.ingest.registry import appends_of
from analyzer.live.finding import LiveFinding, compare
from analyzer.live.judging import Judged, Judges
from analyzer.live.sources import WatchedPaths
from analyzer.live.tracking import STALE, Stat, Tracked, Tracking, stat_into
from analyzer.types import Diagnosis, InputFile, Report, Run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollResult:
    """What one poll did.

    Attributes:
        changes: runs whose verdict changed or that have a new finding, one `LiveFinding` each.
        judged: the runs judged again (their files changed).
        runs: how many runs are watched.
        new_points: points appended to the judged runs (the reloaded ones counted in full).
        reloaded: "none", "runs" (only the changed runs re-read) or "all" (every path re-read).
        seconds / list_seconds / read_seconds / judge_seconds: the poll's time and its parts.
        fetch_seconds: of which mirroring object stores (listing them, fetching what grew).
        parallel: the changed runs were judged in worker processes.
    """

    changes: tuple[LiveFinding, ...]
    judged: tuple[str, ...]
    runs: int
    new_points: int
    reloaded: str
    seconds: float
    list_seconds: float
    read_seconds: float
    judge_seconds: float
    fetch_seconds: float = 0.0
    parallel: bool = False


class Watcher(Tracking):
    """Poll log paths; each `poll()` reads what the logs appended and re-judges the runs that changed.

    Parameters
    ----------
    paths : log directories or files, as for `analyze`; object-store URLs too (``s3://bucket/runs``), mirrored
        under the cache directory (``load_options.storage_options`` for the store's settings).
    config : thresholds (defaults otherwise).
    load_options : how to read (restart policy, CRC, roles, cache, workers); the cache is what makes a re-read
        of a grown event file decode only its new bytes.
    ignore : files and directories under the paths that are not logs (the live report itself).
    parallel_from : judge the changed runs of a poll in ``load_options.workers`` worker processes (0: one per
        core) when at least this many changed.

    Call `close` when done (or use it as a context manager): it stops the worker processes and removes a
    temporary mirror.

    Examples
    --------
    >>> from analyzer.live import Watcher
    >>> w = Watcher(["runs/"])                       # doctest: +SKIP
    >>> for change in w.poll().changes:              # doctest: +SKIP
    ...     print(change.line())
    """

    def __init__(self, paths: Sequence[str | Path], *, config: AnalysisConfig | None = None,
                 load_options: LoadOptions | None = None, ignore: Iterable[str | Path] = (),
                 parallel_from: int = 32) -> None:
        if not paths:
            raise InputError("no path given: name a log directory or file, e.g. `steadytrain watch runs/`")
        self.config = config or AnalysisConfig()
        self.options = load_options or LoadOptions()
        self._sources = WatchedPaths(paths, self.options.cache_dir, self.options.storage_options)
        self.paths = self._sources.paths  # remote ones: their mirror
        for p in self.paths:
            if not p.exists():
                self._sources.close()
                raise InputError(f"{p}: no such file or directory")
        self._judges = Judges(self.config, workers=self.options.workers, parallel_from=parallel_from)
        self._ignore = {os.path.abspath(p) for p in ignore}
        self._runs: dict[str, Tracked] = {}
        self._owner: dict[str, str] = {}  # file -> run id
        self._inputs: list[InputFile] = []
        self._snap: dict[str, Stat] = {}
        self._first = True
        self.polls = 0

    # -- listing ---------------------------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Stat]:
        """(size, mtime) of every regular file under the paths, as discovery walks them (hidden and cache
        directories skipped, directory links followed once)."""
        out: dict[str, Stat] = {}
        seen: set[str] = set()
        for given in self.paths:
            root = given.absolute()
            if root.is_file():
                stat_into(out, str(root))
                continue
            stack = [str(root)]
            while stack:
                d = stack.pop()
                real = os.path.realpath(d)
                if real in seen or d in self._ignore:
                    continue
                seen.add(real)
                try:
                    with os.scandir(d) as listing:
                        for e in listing:
                            try:
                                if e.is_dir():
                                    if not e.name.startswith(".") and e.name != "__pycache__":
                                        stack.append(e.path)
                                elif e.is_file() and e.path not in self._ignore and not e.name.endswith(".tmp"):
                                    st = e.stat()
                                    out[e.path] = (st.st_size, st.st_mtime_ns)
                            except OSError:
                                continue
                except OSError:
                    continue
        return out

    # -- polling -----------------------------------------------------------------------------------------
    def poll(self) -> PollResult:
        """Look once: read what changed, judge the runs it changed, return what their judgement says."""
        t0 = time.perf_counter()
        fetch_s = self._sources.sync()
        snap = self._snapshot()
        t_list = time.perf_counter() - t0
        changed = {p for p, st in snap.items() if self._snap.get(p) != st}
        removed = set(self._snap) - set(snap)
        judge_s = 0.0
        changes: list[LiveFinding] = []
        judged: list[str] = []
        new_points = 0
        reloaded = "none"
        batches = self._judges.parallel_batches
        full = self._first or any(p in self._owner for p in removed)
        if not full:
            unowned = [p for p in changed if p not in self._owner]
            full = any(self._could_be_a_run(p) for p in unowned)
        if not full:
            by_run: dict[str, list[str]] = {}
            for p in changed:
                if p in self._owner:
                    by_run.setdefault(self._owner[p], []).append(p)
            grown_runs: list[tuple[str, Run]] = []
            for rid, files in sorted(by_run.items()):
                reloaded = "runs"
                new_run = self._read_more(rid, files, snap)
                if new_run is None:  # the run's files are not what they were: read everything again
                    full = True  # (the tails read so far are replaced by the reload's)
                    break
                grown_runs.append((rid, new_run))
            if not full and grown_runs:
                started = time.perf_counter()
                verdicts = self._judges.judge([r for _, r in grown_runs])
                judge_s += time.perf_counter() - started
                for (rid, new_run), (d, facts) in zip(grown_runs, verdicts):
                    tracked = self._runs[rid]
                    change = self._compare(new_run, d, tracked.diagnosis)
                    new_points += max(new_run.n_points - tracked.run.n_points, 0)
                    tracked.run, tracked.diagnosis, tracked.facts = new_run, d, facts
                    judged.append(rid)
                    if change is not None:
                        changes.append(change)
        if full:
            reloaded = "all"
            j, new_points = self._reload_all(snap, changes, judged)
            judge_s += j
        self._snap = snap
        self._first = False
        self.polls += 1
        total = time.perf_counter() - t0
        return PollResult(tuple(changes), tuple(judged), len(self._runs), new_points, reloaded, total,
                          t_list - fetch_s, max(0.0, total - t_list - judge_s), judge_s, fetch_s,
                          self._judges.parallel_batches > batches)

    def _could_be_a_run(self, path: str) -> bool:
        """Whether a new or changed file that belongs to no run may start one (tried alone: cheap for a
        checkpoint or a stdout log, which discovery turns down by name or by its first lines)."""
        try:
            runs, _ = load_runs([path], replace(self.options, progress=False, workers=1))
        except InputError:
            return False
        except OSError:
            return False
        return bool(runs)

    @staticmethod
    def _compare(run: Run, d: Diagnosis, previous: Diagnosis | None) -> LiveFinding | None:
        rng = run.step_range()
        return compare(previous, d, rng[1] if rng else 0, run.id)

    def _reload_all(self, snap: dict[str, Stat], changes: list[LiveFinding], judged: list[str]) -> tuple[float, int]:
        try:
            runs, inputs = load_runs(self.paths, replace(self.options, progress=False))
        except InputError as exc:  # no log yet (watching before training starts), or none left
            log.info("watch: %s", exc)
            runs, inputs = [], []
        self._inputs = inputs
        files: dict[str, list[str]] = {}
        for i in inputs:
            if i.status == "read" and i.run is not None:
                files.setdefault(i.run, []).append(i.path)
        after = self._snapshot_of([p for r in runs if appends_of(r.format) for p in files.get(r.id, [])])
        new_points = 0
        kept: dict[str, Tracked] = {}
        to_judge: list[tuple[Run, tuple[str, ...], Tracked | None]] = []
        self._owner = {}
        for run in runs:
            mine = tuple(sorted(files.get(run.id, [])))
            for p in mine:
                self._owner[p] = run.id
            old = self._runs.get(run.id)
            same = old is not None and old.files == mine and old.run.n_points == run.n_points \
                and old.run.sources == run.sources and all(self._snap.get(p) == snap.get(p) for p in mine)
            if same and old is not None:  # unchanged: keep its judgement and where its reads stopped
                if old.tail is None:
                    old.tail = self._tail_for(run, snap, after)
                if not old.events:
                    old.events = self._event_tails(run, snap, after)
                kept[run.id] = old
                continue
            to_judge.append((run, mine, old))
        started = time.perf_counter()
        verdicts: list[Judged] = self._judges.judge([run for run, _, _ in to_judge])
        judge_s = time.perf_counter() - started
        for (run, mine, old), (d, facts) in zip(to_judge, verdicts):
            tail = self._tail_for(run, snap, after)
            change = self._compare(run, d, old.diagnosis if old else None)
            new_points += run.n_points - (old.run.n_points if old else 0)
            judged.append(run.id)
            if change is not None:
                changes.append(change)
            # A JSONL tail completes a cut-off last line; an event file's cut-off record note is replaced per file.
            notes = [n for n in run.notes if n.kind != "truncated" or appends_of(run.format) == "records"]
            kept[run.id] = Tracked(run, d, facts, mine, tail, notes, events=self._event_tails(run, snap, after))
            if appends_of(run.format) == "lines" and tail is None:
                for p in mine:  # it grew while being read: read it again next poll, and make a tail then
                    snap[p] = STALE
        self._runs = kept
        return judge_s, max(new_points, 0)

    # -- the state -------------------------------------------------------------------------------------
    @property
    def diagnoses(self) -> list[Diagnosis]:
        return [t.diagnosis for _, t in sorted(self._runs.items())]

    def report(self) -> Report:
        """Every watched run's latest judgement, and the LR sweeps among them, as a `Report` (mirrored objects
        named by their URLs)."""
        where = self._sources.where
        diagnoses = [replace(d, run=where.run(d.run)) for d in self.diagnoses]
        facts = {rid: t.facts for rid, t in self._runs.items() if t.facts is not None}
        inputs = where.inputs(self._inputs) + list(where.skipped)
        return make_report(self._sources.given, inputs, diagnoses, facts, self.config)

    def close(self) -> None:
        """Stop the worker processes and remove a temporary mirror (the watcher cannot poll after this)."""
        self._judges.close()
        self._sources.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
