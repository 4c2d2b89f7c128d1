"""A run's points grown in place: old frame + new points -> a `Run` the engine judges as it would a log.

The frame a `Run` holds is the restart policy's output; appending new points to it and applying the
policy again gives what applying it to every point ever written would (a kept point can only be
superseded by a later one, and the later ones are all here). So a growing run never re-reads its
history: only its new points are parsed, and the frame is rebuilt by vectorised concatenation.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl

from analyzer.frame import RawPoints, RestartPolicy, apply_restart_policy, nonfinite_note
from analyzer.roles import assign_roles
from analyzer.types import Format, Note, Run

#: Notes that describe the whole history and are recomputed on every rebuild.
_RECOMPUTED = ("nonfinite",)


def points_of(frame: pl.DataFrame) -> RawPoints:
    """A run's frame back as `RawPoints` (tags from its Enum or strings; rows in frame order)."""
    if frame.height == 0:
        return RawPoints.empty()
    tag = frame.get_column("tag")
    if isinstance(tag.dtype, pl.Enum):
        tags = tuple(tag.dtype.categories.to_list())
        codes = tag.to_physical().to_numpy().astype(np.int32, copy=False)
    else:
        as_cat = tag.cast(pl.String)
        tags = tuple(dict.fromkeys(as_cat.to_list()))
        index = {t: i for i, t in enumerate(tags)}
        codes = np.fromiter((index[t] for t in as_cat.to_list()), np.int32, count=frame.height)
    return RawPoints(tags, codes, frame.get_column("step").to_numpy().astype(np.int64, copy=False),
                     frame.get_column("wall_time").to_numpy().astype(np.float64, copy=False),
                     frame.get_column("value").to_numpy().astype(np.float64, copy=False)).compact()


def build_run(run_id: str, fmt: Format, raw: RawPoints, *, sources: Sequence[str] = (),
              hparams: Mapping[str, Any] | None = None, notes: Sequence[Note] = (),
              roles: Mapping[str, str] | None = None, restarts: RestartPolicy = "latest") -> Run:
    """A `Run` from points in write order, as the loader builds one: restart policy, non-finite note, roles."""
    frame, restart_notes = apply_restart_policy(raw, restarts)
    kept = [n for n in notes if n.kind not in _RECOMPUTED]
    nf = nonfinite_note(raw)
    counts = dict(zip(raw.tags, np.bincount(raw.tag_codes, minlength=len(raw.tags)).tolist())) if len(raw) else {}
    return Run(id=run_id, format=fmt, sources=tuple(sources), points=frame, hparams=dict(hparams or {}),
               notes=tuple(kept + restart_notes + ([nf] if nf is not None else [])),
               roles=assign_roles(counts, dict(roles or {})))


def grown(run: Run, new: RawPoints, notes: Sequence[Note], *, roles: Mapping[str, str] | None = None,
          restarts: RestartPolicy = "latest") -> Run:
    """``run`` with ``new`` points appended after its history, and ``notes`` as its notes (the caller
    keeps what still holds: restart notes of the history are not found again, its frame is purged)."""
    raw = RawPoints.concat([points_of(run.points), new])
    return build_run(run.id, run.format, raw, sources=run.sources, hparams=run.hparams, notes=notes, roles=roles,
                     restarts=restarts)
