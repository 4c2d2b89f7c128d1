"""One training = one run: folding together what discovery found as several runs of one folder.

Three cases, all decided from the points read, never from a file's name, so that they hold for
layouts this module has never seen (across folders: `lineage`):
- *copies*: two logs of different formats in one folder that hold the same history (LLaMA-Factory's
  trainer_log.jsonl beside its trainer_state.json, Detectron2's metrics.json beside its event files,
  Lightning's CSV and TensorBoard loggers sharing a version folder): their training losses agree at
  the steps both logged (NaN never counts as agreement). Two logs of one format with one history
  are two runs (a deterministic rerun). The richer copy (more metrics with a curve, then more
  points) is the run; the other is listed as folded into it, with the evidence.
- *summaries*: a log of one step whose metric values are another run's last values (W&B's
  ``files/wandb-summary.json`` beside the run's printed output): a summary of that run.
- *parts*: several metric files of one run folder (metrics.jsonl plus diagnostics.jsonl, a
  train.csv and an eval.csv) that each hold different metrics over the same steps: one run
  with all their tags. A tag both hold is kept from the part with the training loss and
  prefixed with its file's name in the others. Runs of a sweep written to one folder share their
  metrics, so they never merge.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl

from analyzer.frame import SCHEMA
from analyzer.roles import assign_roles
from analyzer.types import InputFile, Note, Run

#: Two train-loss values are the same logged value when they agree to this relative precision (one copy may
#: round to 4 decimals, as LLaMA-Factory's trainer_log does).
SAME_VALUE_RTOL = 1e-3
#: Copies need this many common steps, and this share of them equal.
_MIN_COMMON_STEPS = 3
_MIN_EQUAL_SHARE = 0.9
#: Parts must overlap in steps by this share of the shorter one's range.
_MIN_STEP_OVERLAP = 0.5
#: Tags that any log of a run may carry beside its own metrics: they do not make two files the same metrics.
_BOOKKEEPING = {"epoch", "step", "global_step", "iteration", "iter", "lr", "learning_rate", "time", "timestamp",
                "elapsed_time", "remaining_time", "percentage", "total_steps", "current_steps", "data_time",
                "eta_seconds", "samples", "tokens", "wall_time"}


@dataclass(frozen=True)
class Member:
    """A run as read, with the folder it belongs to (a checkpoint copy's run folder, a file's directory)."""

    run: Run
    home: str
    per_file: bool  # a log file that is a run of its own (JSONL, CSV, text), not a run directory
    lineage: str | None = None  # an identity its writer gave it beyond the folder (a W&B run id)


def train_loss(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of the run's train loss, None when it has too few points to be compared."""
    series = run.role_series("train_loss")
    if series is None or series.steps.size < _MIN_COMMON_STEPS:
        return None
    return series.steps, series.values


def agreement(sa: np.ndarray, va: np.ndarray, sb: np.ndarray, vb: np.ndarray,
              rtol: float = SAME_VALUE_RTOL) -> tuple[int, int]:
    """(equal, compared) values of two series at the steps both logged.

    NaN never counts as agreement: two different runs that both diverged are NaN at the same steps.
    A step where both are non-finite is no evidence either way and is not compared; a step where one
    is finite and the other not is a disagreement."""
    _, ia, ib = np.intersect1d(sa, sb, assume_unique=False, return_indices=True)
    xa, xb = va[ia], vb[ib]
    fa, fb = np.isfinite(xa), np.isfinite(xb)
    compared = fa | fb
    equal = fa & fb & np.isclose(xa, xb, rtol=rtol, atol=0.0)
    return int(equal.sum()), int(compared.sum())


def same_history(a: Run, b: Run) -> tuple[int, int] | None:
    """(equal, compared) train-loss points when ``a`` and ``b`` are copies of one history, else None."""
    return same_losses(train_loss(a), train_loss(b))


def same_losses(la: tuple[np.ndarray, np.ndarray] | None,
                lb: tuple[np.ndarray, np.ndarray] | None) -> tuple[int, int] | None:
    """`same_history` of two train losses as (steps, values)."""
    if la is None or lb is None:
        return None
    equal, compared = agreement(la[0], la[1], lb[0], lb[1])
    if compared < _MIN_COMMON_STEPS:
        return None
    return (equal, compared) if equal >= _MIN_EQUAL_SHARE * compared else None


def _summary_of(run: Run, others: Sequence[Run]) -> tuple[Run, int, int] | None:
    """(the run, matched, compared) when ``run`` is one step of values of which at least two metric values (not
    step, epoch or LR: those many runs share; one for a file named a summary) equal the last values of one other
    run, and of no other."""
    rng = run.step_range()
    if rng is None or rng[0] != rng[1]:
        return None
    metrics = metric_tags(run)
    mine = run.points.filter(pl.col("tag").cast(pl.String).is_in(list(metrics))).get_column("value").to_numpy()
    mine = mine[np.isfinite(mine)]
    # a file that says it is a summary (W&B's wandb-summary.json) needs one matching value: a run may log one metric
    needed = 1 if all(Path(s).name.lower().endswith("summary.json") for s in run.sources) else 2
    if mine.size < needed:
        return None
    hits = []
    for other in others:
        if other is run or other.n_points <= run.n_points:
            continue
        last = other.points.group_by("tag").agg(pl.col("value").last())
        theirs = last.filter(pl.col("tag").cast(pl.String).is_in(list(metric_tags(other)))).get_column("value")
        theirs_np = theirs.to_numpy()
        theirs_np = theirs_np[np.isfinite(theirs_np)]
        matched = int(sum(bool(np.any(np.isclose(v, theirs_np, rtol=SAME_VALUE_RTOL, atol=0.0))) for v in mine))
        if matched >= needed:
            hits.append((other, matched, int(mine.size)))
    return hits[0] if len(hits) == 1 else None


def _richness(run: Run) -> tuple[int, int, int]:
    """Metric roles filled, then metrics with a curve (timing and progress columns do not count), then points."""
    counts = run.points.group_by("tag").len()
    curves = {str(t) for t, n in counts.iter_rows() if n >= 2} & metric_tags(run)
    return 4 - len(run.roles.missing), len(curves), run.n_points


def metric_tags(run: Run) -> set[str]:
    return {t for t in run.tags if t.rsplit("/", 1)[-1].lower() not in _BOOKKEEPING}


def _overlap(a: Run, b: Run) -> bool:
    ra, rb = a.step_range(), b.step_range()
    if ra is None or rb is None:
        return False
    inter = min(ra[1], rb[1]) - max(ra[0], rb[0])
    shorter = min(ra[1] - ra[0], rb[1] - rb[0])
    return inter >= _MIN_STEP_OVERLAP * shorter if shorter > 0 else inter >= 0


def _stem(run: Run) -> str:
    name = Path(run.sources[0]).name if run.sources else posixpath.basename(run.id)
    return Path(name).stem or name


def _merge_parts(parts: list[Run], roles: Mapping[str, str]) -> Run:
    """One run from the parts of one; the part with the train loss first (its tags stay as they are)."""
    parts = sorted(parts, key=lambda r: (r.roles.train_loss is None, r.id))
    seen: set[str] = set()
    frames = []
    for part in parts:
        frame = part.points.with_columns(pl.col("tag").cast(pl.String))
        rename = {}
        for tag in sorted(seen & set(part.tags)):
            new, k = f"{_stem(part)}/{tag}", 2
            while new in seen or new in part.tags:
                new, k = f"{_stem(part)}~{k}/{tag}", k + 1
            rename[tag] = new
        if rename:
            frame = frame.with_columns(pl.col("tag").replace(rename))
        seen |= set(frame.get_column("tag").unique().to_list())
        frames.append(frame)
    merged = pl.concat(frames).sort(["tag", "step"], maintain_order=True)
    tags = sorted(merged.get_column("tag").unique().to_list())
    merged = merged.with_columns(pl.col("tag").cast(pl.Enum(tags))).select(list(SCHEMA))
    counts = dict(merged.group_by("tag").len().iter_rows())
    first = parts[0]
    others = ", ".join(Path(p.sources[0]).name if p.sources else p.id for p in parts[1:])
    note = Note("merged", f"{len(parts) - 1} more log file(s) of this run folder ({others}) hold other metrics over "
                f"the same steps: read as parts of this run, not as runs of their own", count=len(parts) - 1)
    hparams: dict = {}
    for p in reversed(parts):
        hparams.update(p.hparams)
    # --role notes are said again of the whole run: a tag one part lacked may be in another
    kept_notes = tuple(n for p in parts for n in p.notes if n.kind != "role_override")
    missing = tuple(Note("role_override", f"--role {role}={tag}: no such tag in this run; picked by name instead")
                    for role, tag in roles.items() if tag not in counts)
    return Run(id=first.id, format=first.format, sources=tuple(s for p in parts for s in p.sources), points=merged,
               hparams=hparams, notes=kept_notes + missing + (note,),
               roles=assign_roles({str(k): int(v) for k, v in counts.items()}, roles))


@dataclass
class _Renames:
    """What folding and joining decided: old run id -> (new run id, reason for its data files or None), and the
    data files of folded copies (their side files keep their own reason)."""

    runs: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    data_files: set[str] = field(default_factory=set)


@dataclass
class _Additions:
    """Notes and settings a kept run receives from the runs folded into it (one folder's group)."""

    notes: dict[str, list[Note]] = field(default_factory=dict)
    hparams: dict[str, dict] = field(default_factory=dict)

    def add(self, run_id: str, note: Note, hparams: Mapping[str, Any]) -> None:
        self.notes.setdefault(run_id, []).append(note)
        self.hparams.setdefault(run_id, {}).update(hparams)


def resolve(members: Sequence[Member], inputs: list[InputFile], roles: Mapping[str, str]) -> list[Run]:
    """The runs, one per training; ``inputs`` entries of files folded or merged are rewritten in place."""
    by_home: dict[str, list[Member]] = {}
    for m in members:
        by_home.setdefault(m.home, []).append(m)
    renames = _Renames()
    out: list[Run] = []
    for group in by_home.values():
        if len(group) < 2 or not any(m.per_file for m in group):
            out.extend(m.run for m in group)
            continue
        runs = [m.run for m in group]
        per_file = {m.run.id for m in group if m.per_file}
        added = _Additions()
        _fold_summaries(runs, per_file, renames, added)
        folded = _fold_copies(runs, per_file, renames, added)
        kept = [r if r.id not in added.notes else
                replace(r, notes=r.notes + tuple(added.notes[r.id]), hparams={**added.hparams[r.id], **r.hparams})
                for r in runs if r.id not in folded]
        out.extend(r for r in kept if r.id not in per_file)
        out.extend(_join_parts([r for r in kept if r.id in per_file], roles, renames))
    for i, entry in enumerate(inputs):
        if entry.run is not None and entry.run in renames.runs:
            new_id, reason = renames.runs[entry.run]
            own_data = entry.path in renames.data_files
            inputs[i] = InputFile(entry.path, entry.status,
                                  reason if (reason and own_data and entry.status == "read") else entry.reason, new_id)
    return out


def _fold_summaries(runs: list[Run], per_file: set[str], renames: _Renames, added: _Additions) -> None:
    """A run that is one step of another run's final values (W&B's wandb-summary.json beside the run's output)
    becomes that run's summary: removed from ``runs``."""
    for r in [r for r in runs if r.id in per_file]:
        found = _summary_of(r, runs)
        if found is None:
            continue
        target, matched, total = found
        runs.remove(r)
        why = (f"the final values of run {target.id} ({matched} of its {total} metric values equal that run's last "
               "ones): a summary of it, not a run of its own")
        renames.runs[r.id] = (target.id, why)
        renames.data_files.update(r.sources)
        added.add(target.id, Note(
            "merged", f"{', '.join(Path(s).name for s in r.sources)} holds this run's final values ({matched} of "
            f"{total} metric values equal its last ones): read as its summary, not as a run", count=1), r.hparams)


def _fold_copies(runs: list[Run], per_file: set[str], renames: _Renames, added: _Additions) -> set[str]:
    """The ids of poorer copies folded into the richest run of their history. Keepers are taken richest first, so
    a run that received a copy is never folded itself (no chains), and a keeper takes at most one copy per format
    (two same-format copies of one history are reruns, not copies of each other)."""
    folded: set[str] = set()
    order = sorted(runs, key=_richness, reverse=True)
    for i, keeper in enumerate(order):
        if keeper.id in folded:
            continue
        took_formats: set[str] = set()
        for copy in order[i + 1:]:
            if (copy.id in folded or copy.id in added.notes or copy.format in took_formats
                    or not ({copy.id, keeper.id} & per_file) or keeper.format == copy.format
                    or set(keeper.sources) & set(copy.sources)):
                continue
            agree = same_history(copy, keeper)
            if agree is None:
                continue
            folded.add(copy.id)
            took_formats.add(copy.format)
            files = ", ".join(Path(s).name for s in copy.sources)
            why = (f"the same history as run {keeper.id} ({agree[0]} of {agree[1]} train-loss values at common "
                   f"steps equal), which has more metrics or points: folded into it, not read as a second run")
            renames.runs[copy.id] = (keeper.id, why)
            unread = sorted(metric_tags(copy) - set(keeper.tags))
            lost = (f"; its metrics {', '.join(unread[:5])}{' ...' if len(unread) > 5 else ''} are not in the "
                    "richer copy and were not read") if unread else ""
            added.add(keeper.id, Note(
                "merged", f"{files} holds the same history ({agree[0]} of {agree[1]} common train-loss points "
                f"equal); this run's richer copy was read{lost}", count=1), copy.hparams)
            renames.data_files.update(copy.sources)
    return folded


def _join_parts(loose: list[Run], roles: Mapping[str, str], renames: _Renames) -> list[Run]:
    """Per-file logs of one folder holding different metrics over the same steps, joined into one run each."""
    clusters: list[list[Run]] = []
    for r in loose:
        for cluster in clusters:
            # parts hold other metrics of one training: at most one of them a training of its own (a loss)
            if (not (r.roles.train_loss and any(c.roles.train_loss for c in cluster))
                    and all(not (metric_tags(r) & metric_tags(c)) and _overlap(r, c)
                            and not (set(r.sources) & set(c.sources)) for c in cluster)):
                cluster.append(r)
                break
        else:
            clusters.append([r])
    out: list[Run] = []
    for cluster in clusters:
        if len(cluster) == 1:
            out.append(cluster[0])
            continue
        merged = _merge_parts(cluster, roles)
        for part in cluster:
            if part.id != merged.id:
                renames.runs[part.id] = (merged.id, None)
        out.append(merged)
    return out
