"""The canonical long frame (tag, step, wall_time, value) and the restart policy.

Readers hand over points in the order they were written (`RawPoints`); this module turns them
into the polars frame a `Run` holds, after applying the restart policy: a step going backwards
means the job was restarted from a checkpoint, and by default (as TensorBoard's purge does)
the latest attempt wins. Every superseded point is counted in a note, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import polars as pl

from analyzer.types import Note

RestartPolicy = Literal["latest", "keep_all"]
RESTART_POLICIES: tuple[RestartPolicy, ...] = ("latest", "keep_all")

SCHEMA = {"tag": pl.String, "step": pl.Int64, "wall_time": pl.Float64, "value": pl.Float64}


@dataclass(frozen=True)
class RawPoints:
    """Points in write order: ``tags[tag_codes[i]]`` at ``steps[i]`` had ``values[i]``."""

    tags: tuple[str, ...]
    tag_codes: np.ndarray  # int32
    steps: np.ndarray  # int64
    wall_times: np.ndarray  # float64 (NaN when the format has no wall time)
    values: np.ndarray  # float64

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    @staticmethod
    def empty() -> RawPoints:
        return RawPoints((), np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))

    def compact(self) -> RawPoints:
        """The same points with tags that have no point removed from the tag table."""
        used = np.unique(self.tag_codes)
        if used.size == len(self.tags):
            return self
        remap = np.full(len(self.tags), -1, dtype=np.int32)
        remap[used] = np.arange(used.size, dtype=np.int32)
        return RawPoints(tuple(self.tags[i] for i in used.tolist()), remap[self.tag_codes], self.steps,
                         self.wall_times, self.values)

    @staticmethod
    def concat(parts: Sequence[RawPoints]) -> RawPoints:
        """Join parts in order, re-coding tags into one shared table."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return RawPoints.empty()
        if len(parts) == 1:
            return parts[0]
        table: dict[str, int] = {}
        codes = []
        for p in parts:
            remap = np.array([table.setdefault(t, len(table)) for t in p.tags], dtype=np.int32)
            codes.append(remap[p.tag_codes] if remap.size else p.tag_codes)
        return RawPoints(
            tuple(table),
            np.concatenate(codes),
            np.concatenate([p.steps for p in parts]),
            np.concatenate([p.wall_times for p in parts]),
            np.concatenate([p.values for p in parts]),
        )

    @staticmethod
    def from_columns(columns: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> RawPoints:
        """From {tag: (steps, wall_times, values)}, each tag's points in write order."""
        parts = []
        for tag, (steps, walls, values) in columns.items():
            n = len(steps)
            parts.append(RawPoints((tag,), np.zeros(n, np.int32), np.asarray(steps, np.int64),
                                   np.asarray(walls, np.float64), np.asarray(values, np.float64)))
        return RawPoints.concat(parts)


def apply_restart_policy(raw: RawPoints, policy: RestartPolicy = "latest") -> tuple[pl.DataFrame, list[Note]]:
    """The canonical frame for ``raw`` and a note per restart found.

    With "latest", a point is kept only if no later point of the same tag has a step at or
    below it: a restart at step s supersedes what the earlier attempt logged at steps >= s,
    and a step logged twice keeps its last write. With "keep_all" every point stays.
    """
    notes: list[Note] = []
    n = len(raw)
    if n == 0:
        return pl.DataFrame(schema=SCHEMA), notes
    if len(raw.tags) != len(set(raw.tags)):
        raise ValueError("duplicate tags in RawPoints")
    grouped = bool(np.all(raw.tag_codes[1:] >= raw.tag_codes[:-1]))
    if grouped and bool(np.all((raw.steps[1:] > raw.steps[:-1]) | (raw.tag_codes[1:] != raw.tag_codes[:-1]))):
        # The common case (readers group by tag; no step went back): nothing to purge, nothing to sort.
        return build_frame(raw.tags, raw.tag_codes, raw.steps, raw.wall_times, raw.values), notes
    order = np.arange(n) if grouped else np.argsort(raw.tag_codes, kind="stable")  # by tag, write order within
    codes = raw.tag_codes[order]
    steps = raw.steps[order]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [n]])
    keep = np.ones(n, dtype=bool)
    for lo, hi in zip(starts.tolist(), ends.tolist()):
        s = steps[lo:hi]
        if hi - lo < 2 or bool(np.all(s[1:] > s[:-1])):
            continue
        suffix_min = np.minimum.accumulate(s[::-1])[::-1]
        later_min = np.concatenate([suffix_min[1:], [np.iinfo(np.int64).max]])
        kept = s < later_min
        keep[lo:hi] = kept
        tag = raw.tags[int(codes[lo])]
        backward = np.flatnonzero(s[1:] < s[:-1]) + 1
        dropped = int((~kept).sum())
        if backward.size:
            restart_steps = [int(s[j]) for j in backward.tolist()]
            shown = ", ".join(f"{int(s[j - 1])}->{int(s[j])}" for j in backward.tolist()[:10])
            more = f" and {len(restart_steps) - 10} more" if len(restart_steps) > 10 else ""
            action = (f"{dropped} point(s) of the earlier attempt(s) superseded, latest attempt kept"
                      if policy == "latest" else "all attempts kept (restart policy keep_all)")
            notes.append(Note(kind="restart",
                              message=f"{tag}: step went back {len(restart_steps)} time(s) ({shown}{more}); {action}",
                              count=dropped if policy == "latest" else 0, step=restart_steps[0]))
        elif dropped and policy == "latest":
            notes.append(Note(kind="duplicate_steps",
                              message=f"{tag}: {dropped} step(s) logged more than once; the last write of each kept",
                              count=dropped))
    if policy == "keep_all":
        keep[:] = True
    # `order` groups points by tag in write order; under "latest" the kept points of a tag already have
    # strictly increasing steps, so the frame needs no sort. keep_all sorts by step within each tag.
    sel = order[keep]
    if policy == "keep_all":
        sel = sel[np.lexsort((raw.steps[sel], raw.tag_codes[sel]))]
    frame = build_frame(raw.tags, raw.tag_codes[sel], raw.steps[sel], raw.wall_times[sel], raw.values[sel])
    return frame, notes


def build_frame(tags: tuple[str, ...], codes: np.ndarray, steps: np.ndarray, wall_times: np.ndarray,
                values: np.ndarray) -> pl.DataFrame:
    """The canonical frame; the tag column is a polars Enum of the run's tags (4 bytes a row, not a string)."""
    tag_type = pl.Enum(list(tags))
    return pl.DataFrame({
        # The indices as a Series (a view of the array): given the array, polars converts it first, and its
        # allocator keeps that copy's pages (~17 bytes a point) for the rest of the process.
        "tag": pl.Series("tag", list(tags), dtype=tag_type).gather(pl.Series(codes.astype(np.uint32, copy=False))),
        "step": steps, "wall_time": wall_times, "value": values,
    })


def nonfinite_note(raw: RawPoints) -> Note | None:
    """NaN/inf are data (the divergence signal); they are counted, not dropped."""
    bad = ~np.isfinite(raw.values)
    if not bad.any():
        return None
    codes, steps = raw.tag_codes[bad], raw.steps[bad]
    parts = []
    for code in np.unique(codes)[:10].tolist():
        mine = codes == code
        parts.append(f"{raw.tags[code]} x{int(mine.sum())} (first at step {int(steps[mine].min())})")
    return Note(kind="nonfinite", message="non-finite values kept as data: " + ", ".join(parts),
                count=int(bad.sum()), step=int(steps.min()))
