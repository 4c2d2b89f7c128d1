"""Copies of one history kept in nearby folders, in different formats: one run.

The HF Trainer writes one training into ``out/checkpoint-N/trainer_state.json`` and, with TensorBoard
reporting, ``out/runs/<date>_<host>/events...``; Lightning's CSV and TensorBoard loggers may write
``logs/csv/version_0`` and ``logs/tb/version_0``; a W&B folder lies beside the output folder. Two runs
of different formats whose folders share an ancestor at most ``_NEAR_LEVELS`` above each, and whose
train losses agree at the steps both logged, are copies of one history (two trainings do not log
the same losses; NaN never counts as agreement). The richer is read (metric roles filled, metric
curves, their points; then the outer folder), the other is folded into it with the count of
agreeing points, and its curves that the richer holds under no name are kept (the same metric is
often named differently by two writers, so names are not compared: values are). The run is named
after the outermost folder among them: the training's. Logs of one folder are `identity`'s.
"""

from __future__ import annotations

import posixpath
from dataclasses import replace
from typing import Mapping

import numpy as np
import polars as pl

from analyzer.frame import SCHEMA
from analyzer.ingest.identity import SAME_VALUE_RTOL, agreement, metric_tags, same_losses, train_loss
from analyzer.ingest.runparts import DECISION_NOTES, Place, Renames, rebuild, where
from analyzer.types import Note, Run

#: Folders are near when a common ancestor is at most this many levels above each (``out/`` and
#: ``out/runs/<date>_<host>/``; ``logs/csv/version_0`` and ``logs/tb/version_0``; ``wandb/run-x/`` and ``out/``).
_NEAR_LEVELS = 2
#: A copy's curve is a metric the keeper already has when this share of their common values agree.
_MIN_EQUAL_SHARE = 0.9
#: Copies in two folders agree at the last this many train-loss steps both logged.
_END_POINTS = 3
#: Points of each run looked up among the others' to find the runs that share its values (`_sharing`).
_PROBES = 64


def _ancestors(home: str) -> list[str]:
    out = [home]
    for _ in range(_NEAR_LEVELS):
        out.append(posixpath.dirname(out[-1]))
    return out


def _near(a: Place, b: Place) -> bool:
    """Whether a folder of ``a`` and one of ``b`` share an ancestor at most ``_NEAR_LEVELS`` above each."""
    return bool({x for h in a.homes for x in _ancestors(h)} & {x for h in b.homes for x in _ancestors(h)})


def _richness(run: Run, place: Place) -> tuple[int, int, int, int, int]:
    """Metric roles filled, metrics with a curve, their points; then the outer folder (the training's own
    record: trainer_state.json over its TensorBoard copy of as much), then all points."""
    counts = [(str(t), int(n)) for t, n in run.points.group_by("tag").len().iter_rows()]
    metrics = metric_tags(run)
    curves = [(t, n) for t, n in counts if n >= 2 and t in metrics]
    return 4 - len(run.roles.missing), len(curves), sum(n for _, n in curves), -place.depth, run.n_points


Loss = tuple[np.ndarray, np.ndarray]  # a run's train loss: (steps, values)


def _same_to_the_end(la: Loss, lb: Loss) -> bool:
    """Whether the last train-loss values both logged agree: copies of one log agree to the end of the shorter,
    while two runs from one seed and one start (a control and its variant) agree until they part."""
    _, ia, ib = np.intersect1d(la[0], lb[0], return_indices=True)
    va, vb = la[1][ia], lb[1][ib]
    compared = np.isfinite(va) | np.isfinite(vb)
    va, vb = va[compared][-_END_POINTS:], vb[compared][-_END_POINTS:]
    return bool(va.size) and bool(np.all(np.isclose(va, vb, rtol=SAME_VALUE_RTOL, atol=0.0)))


def _value_keys(steps: np.ndarray, values: np.ndarray, grid: int) -> np.ndarray:
    """One int64 key per (step, value to SAME_VALUE_RTOL): values in log-spaced buckets 4x that wide, on two grids
    offset by half a bucket, so that two values within the tolerance share a bucket on at least one grid.
    Keys may collide (the arithmetic wraps): a collision only adds a pair that is then compared in full."""
    buckets = np.floor(np.log(np.abs(values) + 1e-300) / (4 * SAME_VALUE_RTOL) + 0.5 * grid).astype(np.int64)
    buckets = buckets * 2 + (values < 0)
    return steps.astype(np.int64) * np.int64(1_000_003) + buckets * np.int64(7_919) + np.int64(grid)


def _sharing(losses: Mapping[str, Loss]) -> dict[str, set[str]]:
    """For each run, the runs that logged most of a sample of its train-loss values at the same steps.

    Copies share every value at the steps both logged, so only runs where at least half of a sample of
    points of one (``_PROBES``) are found among the other's points need comparing in full: a folder of
    hundreds of runs in two formats is not compared pair by pair. (Two runs of one recipe share a value at
    one step now and then, by chance; not half of them.)"""
    ids = sorted(losses)
    keys, owners = [], []
    for n, rid in enumerate(ids):
        steps, values = losses[rid]
        ok = np.isfinite(values)
        for grid in (0, 1):
            keys.append(_value_keys(steps[ok], values[ok], grid))
            owners.append(np.full(int(ok.sum()), n))
    all_keys, all_owners = np.concatenate(keys), np.concatenate(owners)
    order = np.argsort(all_keys, kind="stable")
    all_keys, all_owners = all_keys[order], all_owners[order]
    out: dict[str, set[str]] = {rid: set() for rid in ids}
    for n, rid in enumerate(ids):
        steps, values = losses[rid]
        ok = np.flatnonzero(np.isfinite(values))
        pick = ok if ok.size <= _PROBES else np.sort(np.random.default_rng(n).choice(ok, _PROBES, replace=False))
        if pick.size == 0:
            continue
        probe = np.concatenate([_value_keys(steps[pick], values[pick], grid) for grid in (0, 1)])
        probe_of = np.tile(np.arange(pick.size), 2)
        lo, hi = np.searchsorted(all_keys, probe, "left"), np.searchsorted(all_keys, probe, "right")
        sizes = hi - lo
        at = np.repeat(lo - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))
        hit_owner, hit_probe = all_owners[at], np.repeat(probe_of, sizes)
        other = hit_owner != n
        # a probe found in another run on either grid counts once for that run
        found = np.unique(hit_owner[other].astype(np.int64) * pick.size + hit_probe[other])
        counts = np.bincount(found // pick.size, minlength=len(ids))
        for o in np.flatnonzero(counts >= max(2, (pick.size + 1) // 2)).tolist():
            out[rid].add(ids[o])
            out[ids[o]].add(rid)
    return out


def _own_tags(copy: Run, keeper: Run) -> list[str]:
    """The copy's metric curves whose values are under no tag of the keeper (two writers often name one metric
    differently: ``train/grad_norm`` and ``grad_norm``). A single value is a summary (an averaged train_loss,
    train_runtime), not a curve."""
    theirs = [s for s in (keeper.series(t) for t in keeper.tags) if s is not None and len(s) >= 2]
    own = []
    roles = {t for t in copy.roles.as_dict().values() if t is not None}  # an LR is bookkeeping, but a role
    for tag in sorted(metric_tags(copy) | roles):
        mine = copy.series(tag)
        if mine is None or len(mine) < 2:
            continue
        for other in theirs:
            equal, compared = agreement(mine.steps, mine.values, other.steps, other.values)
            if compared >= 2 and equal >= _MIN_EQUAL_SHARE * compared:
                break
        else:
            own.append(tag)
    return own


def _fold(keeper: Run, copy: Run, agree: tuple[int, int], where: str, roles: Mapping[str, str]) -> Run:
    """``copy`` folded into ``keeper``: the keeper's points, and the copy's curves the keeper lacks."""
    own = _own_tags(copy, keeper)
    kept = (f"; its metrics that this run has under no name were kept: {', '.join(own[:5])}"
            f"{' ...' if len(own) > 5 else ''}") if own else ""
    note = Note("merged", f"{where} holds the same history ({agree[0]} of {agree[1]} train-loss values at the steps "
                f"both logged agree): folded into this run, whose richer copy was read{kept}", count=1)
    decisions = tuple(n for n in copy.notes if n.kind in DECISION_NOTES)  # how the copy itself was assembled
    hparams = {**copy.hparams, **keeper.hparams}
    if not own:
        return replace(keeper, notes=keeper.notes + decisions + (note,), hparams=hparams)
    added = (copy.points.with_columns(pl.col("tag").cast(pl.String)).filter(pl.col("tag").is_in(own))
             .with_columns(pl.when(pl.col("tag").is_in(keeper.tags)).then(pl.lit(f"{copy.format}/") + pl.col("tag"))
                           .otherwise(pl.col("tag")).alias("tag")))
    frame = pl.concat([keeper.points.with_columns(pl.col("tag").cast(pl.String)).select(list(SCHEMA)),
                       added.select(list(SCHEMA))]).sort(["tag", "step"], maintain_order=True)
    data_notes = tuple(n for n in copy.notes if n.kind not in DECISION_NOTES)  # its points are read now
    return rebuild(keeper, frame, keeper.sources + copy.sources, hparams,
                   keeper.notes + decisions + data_notes + (note,), roles, keep=keeper.roles)


def fold_copies(runs: list[Run], places: dict[str, Place], renames: Renames, roles: Mapping[str, str]) -> list[Run]:
    """``runs`` with every copy of a history kept in a nearby folder, in another format, folded into the
    richest; the run is named after the outermost folder among them."""
    if len({r.format for r in runs}) < 2:
        return runs
    losses = {r.id: loss for r in runs for loss in [train_loss(r)] if loss is not None}
    sharing = _sharing(losses)
    by_id = {r.id: r for r in runs}
    order = sorted((r for r in runs if sharing.get(r.id)), key=lambda r: _richness(r, places[r.id]), reverse=True)
    folded: set[str] = set()
    names: dict[str, str] = {}  # keeper -> the run named after the outermost folder of those folded into it
    for keeper in order:
        if keeper.id in folded or keeper.id in names:
            continue
        current, formats, outer = keeper, {keeper.format}, keeper.id
        place = places[keeper.id]
        grew = True
        while grew:  # a copy's folder brings the folders near it (a W&B folder beside out/, out/ above runs/x/)
            grew = False
            for cid in sorted(sharing[keeper.id]):
                copy = by_id[cid]
                if cid in folded or cid in names or copy.format in formats or not _near(place, places[cid]):
                    continue
                if places[cid].homes & place.homes and (places[cid].per_file or place.per_file):
                    continue  # one folder's log files are identity's to decide (reruns, copies, parts)
                agree = same_losses(losses[cid], losses[keeper.id])
                if agree is None or not _same_to_the_end(losses[cid], losses[keeper.id]):
                    continue
                current = _fold(current, copy, agree, where(copy, places), roles)
                folded.add(cid)
                formats.add(copy.format)
                place.homes |= places[cid].homes
                renames.add(copy, keeper.id, f"the same history as {where(keeper, places)} ({agree[0]} of "
                            f"{agree[1]} train-loss values at the steps both logged agree), which has more metrics or "
                            "points and was read: part of run {run}, not a second run")
                if places[cid].depth < places[outer].depth:
                    outer = cid
                grew = True
                break
        by_id[keeper.id] = current
        names[keeper.id] = outer
    out = []
    for r in runs:
        if r.id in folded:
            continue
        run, name = by_id[r.id], names.get(r.id, r.id)
        if name != r.id:  # named after the outer folder: the training's own (out/, not out/runs/<date>_<host>)
            renames.rename(r.id, name)
            run = replace(run, id=name)
        out.append(run)
    return out
