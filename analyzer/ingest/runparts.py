"""What the run-identity passes share: where each run lies, which run each folded or joined run became,
and building one run from the points of several."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import polars as pl

from analyzer.frame import SCHEMA
from analyzer.roles import assign_roles
from analyzer.types import ROLE_NAMES, InputFile, Note, Roles, Run

#: Note kinds that say how a run was assembled from several logs: a run folded into another passes them on.
DECISION_NOTES = frozenset({"resumed", "kept_apart", "stale_copy", "merged"})


@dataclass
class Place:
    """Where a run's logs lie: its home folder and those of every run joined or folded into it.

    Attributes:
        home: its own folder, absolute, '/'-separated, without a trailing '/'.
        homes: its own and those of the runs joined or folded into it.
        lineage: an identity its writer gave the run beyond its folder (a W&B run id).
        per_file: a log file that is a run of its own (JSONL, CSV, text), not a run directory.
        depth: of its own home: of two nested runs, the outer one's folder is the training's.
    """

    home: str
    homes: set[str]
    lineage: str | None
    per_file: bool
    depth: int

    @classmethod
    def of(cls, home: str, lineage: str | None, per_file: bool) -> Place:
        home = home.replace("\\", "/").rstrip("/") or "/"
        return cls(home, {home}, lineage, per_file, home.count("/"))


def where(run: Run, places: Mapping[str, Place]) -> str:
    """How a note names a run's place: its folder, or its file for a log file named as a run of its own."""
    place = places[run.id]
    named_by_folder = not place.per_file or place.home.endswith("/" + run.id) or place.home == run.id
    return f"folder {run.id}" if named_by_folder else f"file {run.id}"


@dataclass
class Renames:
    """Which run each folded or joined run became (followed through chains), and what its data files now say."""

    to: dict[str, str] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)  # data file -> the reason its input entry gets
    into: dict[str, str] = field(default_factory=dict)  # data file -> the run it was first put into

    def add(self, old: Run, new_id: str, why: str) -> None:
        """``old`` went into run ``new_id``; ``why`` is what its data files say, "{run}" naming the run they are
        finally part of (``new_id`` may itself be joined or folded later)."""
        self.to[old.id] = new_id
        for src in old.sources:
            self.why.setdefault(src, why)
            self.into.setdefault(src, new_id)

    def rename(self, old_id: str, new_id: str) -> None:
        """Run ``old_id``, and every run folded or joined into it, is now called ``new_id``."""
        self.to.pop(new_id, None)
        for k, v in list(self.to.items()):
            if v == old_id:
                self.to[k] = new_id
        self.to[old_id] = new_id

    def final(self, run_id: str) -> str:
        seen = {run_id}
        while run_id in self.to and self.to[run_id] not in seen:
            run_id = self.to[run_id]
            seen.add(run_id)
        return run_id

    def apply(self, inputs: list[InputFile]) -> None:
        for i, entry in enumerate(inputs):
            if entry.run is None:
                continue
            why = self.why.get(entry.path) if entry.status == "read" else None
            reason = why.replace("{run}", self.final(self.into[entry.path])) if why is not None else None
            run = self.final(entry.run)
            if reason is not None or run != entry.run:
                inputs[i] = InputFile(entry.path, entry.status, reason or entry.reason, run)


def rebuild(base: Run, frame: pl.DataFrame, sources: Sequence[str], hparams: Mapping[str, Any],
            notes: Sequence[Note], roles: Mapping[str, str], keep: Roles | None = None) -> Run:
    """A run of ``base``'s id and format over ``frame`` (tags as strings, sorted by tag then step), roles assigned
    again; ``keep``'s roles stay where it has one (a tag a folded copy adds never takes a role the richer copy
    filled)."""
    tags = sorted(frame.get_column("tag").unique().to_list())
    frame = frame.with_columns(pl.col("tag").cast(pl.Enum(tags))).select(list(SCHEMA))
    counts = {str(k): int(v) for k, v in frame.group_by("tag").len().iter_rows()}
    assigned = assign_roles(counts, roles)
    if keep is not None:
        assigned = Roles(**{r: getattr(keep, r) or getattr(assigned, r) for r in ROLE_NAMES})
    # --role notes are said again of the whole run: a tag one part lacked may be in another
    missing = tuple(Note("role_override", f"--role {role}={tag}: no such tag in this run; picked by name instead")
                    for role, tag in roles.items() if tag not in counts)
    kept = tuple(n for n in notes if n.kind != "role_override")
    return Run(id=base.id, format=base.format, sources=tuple(dict.fromkeys(sources)), points=frame,
               hparams=dict(hparams), notes=kept + missing, roles=assigned)
