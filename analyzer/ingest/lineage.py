"""One training across folders: resumed runs joined, copies in nearby folders folded (`nearby`).

`identity` decides what the logs of one folder are; this module decides across folders, after it,
from the points read (never from a folder's name), so that it holds for layouts it has never seen:

- *W&B resumes*: run folders of one W&B run id (``wandb.init(id=..., resume=...)`` writes a new
  ``run-<date>-<id>/`` per resume) are one run, concatenated in the order they were written. The
  id is W&B's own identity of the run, so it is taken as given.
- *restarts*: a run of the same format in a sibling folder (a logdir with a new timestamp,
  Lightning's ``version_1`` after ``fit(ckpt_path=...)``, the HF Trainer's new ``runs/<date>_<host>``)
  or a log file beside it, that starts later than another and continues it: it starts within a
  few logging intervals after the other's last step, or inside its range with the overlapping
  train-loss values agreeing (a resumed run repeats the steps after its checkpoint); with no
  overlap, its loss starts where the other stopped, not where it began. Separate trials look
  alike and stay apart: trials of a sweep (different settings), seeds and reruns start again at
  the first step, and runs written at the same time are not one. NaN never counts as agreement.
- *copies* (`nearby`): two runs of different formats in nearby folders whose train losses agree.

Every decision is a note of the run it concerns, and the input entries of a joined or folded run's
files name the run they went into.
"""

from __future__ import annotations

import bisect
import posixpath
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import polars as pl

from analyzer.frame import SCHEMA, RestartPolicy
from analyzer.ingest.identity import Member, agreement
from analyzer.ingest.nearby import fold_copies
from analyzer.ingest.runparts import Place, Renames, rebuild, where
from analyzer.types import InputFile, Note, Run

#: A later run continues an earlier one when it starts within this many of their logging intervals after it.
_MAX_GAP_INTERVALS = 3
#: Re-executed steps after a resume agree to this relative precision (the same batch on the same weights;
#: kernels that are not deterministic move the last digits).
_RESUME_RTOL = 1e-2
_MIN_AGREE_SHARE = 0.9
#: Runs whose logged wall times overlap by more than this were written at the same time: not one run resumed.
_CONCURRENT_S = 60.0
#: Hyperparameter keys that name, place or time a run, or size its schedule: they differ between the
#: folders of one resumed training (a new output folder, ``ckpt_path``, a longer ``max_steps``).
_VOLATILE_WORDS = ("dir", "path", "name", "id", "time", "date", "version", "wandb", "output", "log", "checkpoint",
                   "ckpt", "run", "host", "save", "resume", "uuid", "git", "commit", "final", "global_step",
                   "project", "tag", "notes", "url", "device", "runtime", "max_steps", "epochs", "num_train_epochs",
                   "max_epochs", "total_steps")


def resolve(members: Sequence[Member], runs: list[Run], inputs: list[InputFile], restarts: RestartPolicy,
            roles: Mapping[str, str]) -> list[Run]:
    """``runs`` (as `identity.resolve` left them) with W&B resumes and restarts joined and nearby copies folded;
    ``inputs`` entries of the files of joined or folded runs are rewritten in place."""
    places = {m.run.id: Place.of(m.home, m.lineage, m.per_file) for m in members}
    renames = Renames()
    runs = _join_wandb_resumes(runs, places, renames, restarts, roles)
    runs = _join_restarts(runs, places, renames, restarts, roles)
    runs = fold_copies(runs, places, renames, roles)
    renames.apply(inputs)
    return runs


def families(directories: Iterable[str]) -> dict[str, str]:
    """A key per run directory such that runs this module may join or fold share it, for a caller that reads
    the runs in parts (the Ray executor): a directory's parent (its siblings: restarts, W&B resumes), or
    the family of a run directory at most two levels above it (``out/`` above ``out/runs/<date>_<host>/``).
    Copies in cousin folders (``logs/csv/version_0`` and ``logs/tb/version_0``) are not one family: keys that
    chained every folder near another would put a whole tree in one part."""
    dirs = sorted({d.replace("\\", "/").rstrip("/") or "/" for d in directories}, key=lambda d: (d.count("/"), d))
    known = set(dirs)
    key: dict[str, str] = {}
    for d in dirs:
        parent = posixpath.dirname(d)
        above = [a for a in (parent, posixpath.dirname(parent)) if a in known and a != d]
        key[d] = key[above[0]] if above else parent
    return key


# ---- joining the parts of one training written into several folders ----

def _walls(run: Run) -> np.ndarray:
    walls = run.points.get_column("wall_time").to_numpy()
    return walls[np.isfinite(walls)]


def _join(a: Run, b: Run, note: Note, restarts: RestartPolicy, roles: Mapping[str, str], offset: int = 0) -> Run:
    """``b`` appended to ``a``: what ``a`` logged of a tag at or after ``b``'s first step of it is superseded
    (restart policy "latest", as for a restart within one log) or kept beside it ("keep_all")."""
    fa = a.points.with_columns(pl.col("tag").cast(pl.String))
    fb = b.points.with_columns(pl.col("tag").cast(pl.String))
    if offset:
        fb = fb.with_columns(pl.col("step") + offset)
    superseded = 0
    if restarts == "latest":
        firsts = fb.group_by("tag").agg(pl.col("step").min().alias("_from"))
        marked = fa.join(firsts, on="tag", how="left")
        kept = marked.filter(pl.col("_from").is_null() | (pl.col("step") < pl.col("_from")))
        superseded = marked.height - kept.height
        fa = kept.drop("_from")
    frame = pl.concat([fa.select(list(SCHEMA)), fb.select(list(SCHEMA))]).sort(["tag", "step"], maintain_order=True)
    notes = [*a.notes, *b.notes, note]
    if superseded:
        notes.append(Note("restart", f"{superseded} point(s) logged before the resume at or after the step it "
                          "resumed from were superseded by the resumed run's", count=superseded, step=note.step))
    return rebuild(a, frame, a.sources + b.sources, {**a.hparams, **b.hparams}, notes, roles)


def _join_wandb_resumes(runs: list[Run], places: dict[str, Place], renames: Renames, restarts: RestartPolicy,
                        roles: Mapping[str, str]) -> list[Run]:
    groups: dict[str, list[Run]] = {}
    for r in runs:
        lineage = places[r.id].lineage
        if lineage is not None and r.format == "wandb":
            groups.setdefault(lineage, []).append(r)
    joined: dict[str, Run] = {}
    gone: set[str] = set()
    for run_id, parts in groups.items():
        if len(parts) < 2:
            continue

        def written(r: Run) -> tuple[float, str]:
            walls = _walls(r)
            return (float(walls.min()) if walls.size else float("inf")), r.id

        parts.sort(key=written)
        whole = parts[0]
        for part in parts[1:]:
            ra, rb = whole.step_range(), part.step_range()
            offset, at = 0, None
            if ra is None or rb is None:
                how = "no steps to place it by"
            elif rb[0] > ra[1]:
                at, how = rb[0], "its steps continue the earlier folder's"
            elif rb[0] <= ra[0]:
                # an offline resume cannot know where the run stopped: W&B's own step counter starts again
                offset, at = ra[1] + 1 - rb[0], ra[1] + 1
                how = (f"its W&B steps started again at {rb[0]} (an offline resume does not know the last step), "
                       f"so its points were placed after step {ra[1]}")
            else:
                at, how = rb[0], f"it goes back to step {rb[0]} (resumed from an earlier step)"
            note = Note("resumed", f"{where(part, places)} resumed at step {at} from {where(parts[0], places)}: "
                        f"the same W&B run id {run_id}, read as one run in the order written; {how}",
                        count=1, step=at)
            renames.add(part, whole.id, f"W&B run {run_id} resumed at step {at}: read as part of run {{run}}")
            places[whole.id].homes |= places[part.id].homes
            gone.add(part.id)
            whole = _join(whole, part, note, restarts, roles, offset)
        joined[parts[0].id] = whole
    return [joined.get(r.id, r) for r in runs if r.id not in gone]


@dataclass(frozen=True, eq=False)
class _Span:
    """What deciding whether one run continues another needs: its train loss's steps and values, its timing."""

    run: Run
    steps: np.ndarray
    values: np.ndarray
    interval: float  # the median step between its logged train losses
    first_wall: float
    last_wall: float

    @property
    def start(self) -> int:
        return int(self.steps[0])

    @property
    def end(self) -> int:
        return int(self.steps[-1])


def _span(run: Run) -> _Span | None:
    series = run.role_series("train_loss")
    if series is None or len(series) < 2:
        return None
    walls = _walls(run)
    first, last = (float(walls.min()), float(walls.max())) if walls.size else (float("nan"), float("nan"))
    return _Span(run, series.steps, series.values, float(np.median(np.diff(series.steps))), first, last)


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None


def _volatile(key: str) -> bool:
    low = key.lower()
    return any(w in low for w in _VOLATILE_WORDS) or low.startswith("lr (")


def _differing_settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Settings both runs have with different values (not names, paths, times or schedule lengths)."""
    return sorted(k for k in set(a) & set(b) if not _volatile(k) and str(a[k]) != str(b[k]))


@dataclass(frozen=True)
class _Verdict:
    joins: bool
    why: str
    strength: tuple[float, ...] = ()  # among several runs it continues, the strongest evidence wins


def _continues(a: _Span, b: _Span, where: str) -> _Verdict | None:
    """Whether ``b`` is ``a`` resumed; None when nothing says it might be (no note then).

    It might be when it starts some logging intervals after ``a`` began (a trial, seed or rerun starts
    again at the first step), no later than a few intervals after ``a`` ended, was written after ``a``
    began, and its values say so: the steps both logged agree (a resume repeats the steps after its
    checkpoint), or, with at most one such step, it logs at ``a``'s pace and its loss starts where ``a``
    stopped rather than where ``a`` began. Then settings that differ, or times that overlap, still make
    it a run of its own (another trial), with the reason.
    """
    pace = max(a.interval, b.interval, 1.0)
    if b.start <= a.start + 2 * pace or b.start > a.end + _MAX_GAP_INTERVALS * pace:
        return None
    if np.isfinite(a.first_wall) and np.isfinite(b.first_wall) and b.first_wall < a.first_wall:
        return None
    equal, compared = agreement(a.steps, a.values, b.steps, b.values, rtol=_RESUME_RTOL)
    if compared >= 2:
        if equal == 0:
            return None  # nothing in common: another training
        if equal < _MIN_AGREE_SHARE * compared:
            return _Verdict(False, f"only {equal} of its {compared} train-loss values at the steps {where} also "
                            "logged agree with it")
        evidence = f"{equal} of {compared} train-loss values at the steps both logged agree"
        strength: tuple[float, ...] = (1.0, float(equal), float(a.end))
    else:
        if equal < compared or not 1 / 1.5 <= b.interval / max(a.interval, 1.0) <= 1.5:
            return None  # another pace of logging, or its one common value differs: nothing says it resumed
        head = _median(b.values[np.isfinite(b.values)][:3])
        finite_a = a.values[np.isfinite(a.values)]
        a_head, a_tail = _median(finite_a[:3]), _median(finite_a[-3:])
        if head is None or a_head is None or a_tail is None or abs(head - a_tail) > abs(head - a_head):
            return None  # its loss starts nearer where ``a`` began than where it stopped
        evidence = f"its loss starts at {head:.4g}, where the other stopped: {a_tail:.4g} at step {a.end}"
        strength = (0.0, -abs(head - a_tail), float(a.end))
    if np.isfinite(a.last_wall) and np.isfinite(b.first_wall) and b.first_wall < a.last_wall - _CONCURRENT_S:
        return _Verdict(False, f"it was written while {where} still was (their times overlap)")
    differ = _differing_settings(a.run.hparams, b.run.hparams)
    if differ:
        shown = ", ".join(f"{k}={b.run.hparams[k]!r} vs {a.run.hparams[k]!r}" for k in differ[:3])
        return _Verdict(False, f"its settings differ from {where}'s ({shown}{' ...' if len(differ) > 3 else ''}): "
                        "another trial")
    return _Verdict(True, evidence, strength)


def _join_restarts(runs: list[Run], places: dict[str, Place], renames: Renames, restarts: RestartPolicy,
                   roles: Mapping[str, str]) -> list[Run]:
    groups: dict[tuple[str, str], list[Run]] = {}  # same format, sibling folders (or one folder's log files)
    for r in runs:
        groups.setdefault((r.format, posixpath.dirname(places[r.id].home)), []).append(r)
    result = {r.id: r for r in runs}
    gone: set[str] = set()
    for group in groups.values():
        if len(group) < 2:
            continue
        spans = sorted((s for s in map(_span, group) if s is not None), key=lambda s: (s.start, s.run.id))
        heads: list[_Span] = []  # runs not joined into another, by start step (a join only moves a head's end)
        starts: list[int] = []
        for b in spans:
            earlier = heads[: bisect.bisect_left(starts, b.start)]
            verdicts = [(v, a) for a in earlier for v in [_continues(a, b, where(a.run, places))] if v is not None]
            joins = [(v, a) for v, a in verdicts if v.joins]
            if not joins:
                if verdicts:  # it looked like a resume: say why it is not one
                    v, a = max(verdicts, key=lambda va: va[1].end)
                    result[b.run.id] = replace(result[b.run.id], notes=result[b.run.id].notes + (Note(
                        "kept_apart", f"starts at step {b.start}, inside or just after {where(a.run, places)}, as a "
                        f"resumed run would; kept as a run of its own: {v.why}", step=b.start),))
                at = bisect.bisect_right(starts, b.start)
                heads.insert(at, b)
                starts.insert(at, b.start)
                continue
            v, a = max(joins, key=lambda va: va[0].strength)
            note = Note("resumed", f"{where(b.run, places)} resumed at step {b.start} from {where(a.run, places)} "
                        f"({v.why}): read as one run", count=1, step=b.start)
            renames.add(b.run, a.run.id, f"resumed at step {b.start} from {where(a.run, places)}: read as part of "
                        "run {run}")
            joined = _join(result[a.run.id], result[b.run.id], note, restarts, roles)
            result[a.run.id] = joined
            places[a.run.id].homes |= places[b.run.id].homes
            gone.add(b.run.id)
            heads[next(i for i, h in enumerate(heads) if h is a)] = _span(joined) or a  # it may be resumed again
    return [result[r.id] for r in runs if r.id not in gone]
