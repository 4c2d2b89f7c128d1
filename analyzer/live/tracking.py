"""What `Watcher` keeps of each watched run, and how it reads what a run appended since the last poll.

A run is kept with its latest points and judgement, the files it was read from, and where the reads of
its growing files stopped: a `JsonlTail` for a plain JSONL log, an `EventTail` per TensorBoard event
file. A run whose files grew is then extended with only the new lines or records (`history.grown`);
when that cannot be done (a file rewritten, a line that makes it a dialect, an earlier event file
grown) the run alone is re-read, and when that fails too the poll reads every path again. A tail is
made only when the file did not change while the loader read it, so it starts exactly where that read
stopped. Mixed into `Watcher`, which owns the listing, the judging and the poll itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from analyzer.errors import InputError, LogFormatError
from analyzer.ingest import jsonl
from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.ingest.registry import appends_of
from analyzer.live.history import grown
from analyzer.live.tail import DIALECT_NOTES, EventTail, JsonlTail, event_notes
from analyzer.sweep import SweepFacts
from analyzer.types import Diagnosis, Note, Run

Stat = tuple[int, int]  # (size, mtime_ns)
STALE: Stat = (-1, -1)  # a file to look at again next poll


@dataclass
class Tracked:
    """One watched run: its latest points and judgement, and how to read what it appends."""

    run: Run
    diagnosis: Diagnosis
    facts: SweepFacts | None  # what the LR-sweep grouping needs of its measured context
    files: tuple[str, ...]  # every file read for it (data and side files)
    tail: JsonlTail | None = None
    notes: list[Note] = field(default_factory=list)  # the run's notes but what the tail recounts
    no_tail: bool = False  # a JSONL log the loader reads as a dialect: read whole each time it grows
    events: dict[str, EventTail] = field(default_factory=dict)  # event file -> where its last read stopped


def stat_into(out: dict[str, Stat], path: str) -> None:
    """``path``'s (size, mtime) into ``out``; a file gone since it was listed is left out, as a removed one."""
    try:
        st = os.stat(path)
    except OSError:
        return
    out[path] = (st.st_size, st.st_mtime_ns)


class Tracking:
    """The per-run half of `Watcher` (see the module doc)."""

    options: LoadOptions
    _runs: dict[str, Tracked]

    def _snapshot_of(self, paths: list[str]) -> dict[str, Stat]:
        out: dict[str, Stat] = {}
        for p in paths:
            stat_into(out, p)
        return out

    def _tail_for(self, run: Run, before: dict[str, Stat], after: dict[str, Stat]) -> JsonlTail | None:
        """A tail after what the loader read of a plain JSONL run: only when the file did not change while it
        was read (then what it read is exactly the file as listed before)."""
        if appends_of(run.format) != "lines" or len(run.sources) != 1 or any(n.kind in DIALECT_NOTES for n in run.notes):
            return None
        old = self._runs.get(run.id)
        if old is not None and old.no_tail:
            return None
        path = run.sources[0]
        st = before.get(path)
        if st is None or st == STALE or after.get(path) != st:
            return None
        try:
            return JsonlTail.at(Path(path), st[0], jsonl.sniff(Path(path)))
        except (OSError, LogFormatError):
            return None

    def _event_tails(self, run: Run, before: dict[str, Stat], after: dict[str, Stat]) -> dict[str, EventTail]:
        """Tails after what the loader read of a TensorBoard run's event files (none when one changed while
        it was read: then its next growth re-reads the run)."""
        if appends_of(run.format) != "records":
            return {}
        out = {}
        for path in run.sources:
            st = before.get(path)
            if st is None or st == STALE or after.get(path) != st:
                return {}
            try:
                tail = EventTail.at(Path(path))
            except OSError:
                return {}
            if tail is None:
                return {}
            out[path] = tail
        return out

    def _read_more(self, rid: str, files: list[str], snap: dict[str, Stat]) -> Run | None:
        """Run ``rid`` with what it appended; None when it must be found afresh."""
        tracked = self._runs[rid]
        run = tracked.run
        new_run: Run | None = None
        if tracked.tail is not None and files == [str(tracked.tail.path)]:
            got = tracked.tail.read_new()
            if got is None:  # rewritten (read afresh), or a line that may make it a dialect (read whole from now on)
                tracked.no_tail = tracked.tail.dialect
                tracked.tail = None
            else:
                points, _lines = got
                known = set(run.tags)
                new_run = grown(run, points, tracked.notes + tracked.tail.notes(known), roles=self.options.roles,
                                restarts=self.options.restarts)
                tracked.notes += [n for n in new_run.notes if n.kind in ("restart", "duplicate_steps")]
        last = run.sources[-1] if run.sources else None
        if new_run is None and last is not None and files == [last] and last in tracked.events:
            # Only the run's latest event file grew (the usual case): its new records, in write order after
            # everything the run has. An earlier file growing would interleave: the run is re-read then.
            content = tracked.events[last].read_new(self.options.verify_crc)
            if content is None:
                tracked.events = {}
            else:
                tracked.notes = event_notes(tracked.notes, Path(last).name, content)
                base = replace(run, hparams={**run.hparams, **content.hparams}) if content.hparams else run
                new_run = grown(base, content.points, tracked.notes, roles=self.options.roles,
                                restarts=self.options.restarts)
                tracked.notes += [n for n in new_run.notes if n.kind in ("restart", "duplicate_steps")]
        if new_run is None:
            new_run = self._reread(tracked, snap)
        return new_run

    def _reread(self, tracked: Tracked, snap: dict[str, Stat]) -> Run | None:
        """Run ``tracked`` read again alone, matched by its source files; None when that fails."""
        run = tracked.run
        if not run.sources:
            return None
        sources = [Path(s) for s in run.sources]
        # A one-file run is read alone (side files beside it are not found then: their hparams are kept below);
        # a run of several files (event files, MLflow metrics) from the directory that holds them all.
        target = sources[0] if len(sources) == 1 else Path(os.path.commonpath([str(s.parent) for s in sources]))
        try:
            runs, _ = load_runs([target], replace(self.options, progress=False, workers=1))
        except InputError:
            return None
        match = [r for r in runs if set(r.sources) == set(run.sources)]
        if len(match) != 1:
            return None
        # Side files beside a one-file run are not found when the file is read alone: keep what they gave.
        new = replace(match[0], id=run.id, hparams={**run.hparams, **match[0].hparams})
        after = self._snapshot_of(list(new.sources))
        tracked.tail = self._tail_for(new, snap, after)
        tracked.events = self._event_tails(new, snap, after)
        tracked.notes = [n for n in new.notes if n.kind != "truncated" or appends_of(new.format) == "records"]
        if appends_of(new.format) == "lines" and tracked.tail is None:
            for p in new.sources:
                snap[p] = STALE
        return new
