"""Turning row-shaped logs (dicts of metric fields) into points, counting every drop; the keys and notes
that tables share (their columns become points in `metric_columns`).

Shared by the CSV, JSONL and HF trainer_state readers: they differ in how rows are found, not
in how a row of "step + metric columns" becomes (tag, step, value) points.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.types import Note

#: Keys that count steps, most specific first. `_step` is what W&B exports write; `num_updates` is
#: fairseq's (``train_``/``valid_`` prefixed in its end-of-epoch JSON records).
STEP_KEYS = ("global_step", "step", "_step", "iteration", "iter", "current_steps", "Step", "it", "steps",
             "global_steps", "num_steps", "trainer/global_step", "num_updates", "train_num_updates",
             "valid_num_updates")
EPOCH_KEYS = ("epoch", "Epoch", "epochs")
WALL_KEYS = ("wall_time", "Wall time", "timestamp", "time", "_timestamp")
#: Columns that describe a row rather than measure something.
NON_METRIC_KEYS = frozenset(STEP_KEYS + EPOCH_KEYS + WALL_KEYS + ("_runtime", "mode", "phase", "split"))


class RepeatedKeys(dict):
    """A JSON object in which a key appeared twice (here or in an object inside it).

    No logger writes that; a damaged file does (deleted or duplicated lines of an indented JSON
    document merge two records), and the json module would silently keep the last value."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs) or any(isinstance(v, RepeatedKeys) for _, v in pairs):
        return RepeatedKeys(out)
    return out


def loads(text: str | bytes) -> Any:
    """json.loads, with every object that repeats a key (or holds one that does) a `RepeatedKeys`."""
    return json.loads(text, object_pairs_hook=_pairs)


def find_key(keys: Iterable[str], candidates: tuple[str, ...]) -> str | None:
    present = set(keys)
    for c in candidates:
        if c in present:
            return c
    lowered = {k.lower(): k for k in present}
    for c in candidates:
        if c.lower() in lowered:
            return lowered[c.lower()]
    return None


def to_float(value: Any) -> float | None:
    """A logged value as a float: numbers and numeric strings ("2.31", "nan", "inf"). JSON true/false are no
    number (a flag is not a loss), nor is an integer beyond float range (a 400-digit "loss")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return None
    return None


#: Steps are stored as int64; a step outside this range cannot be a training step counter.
STEP_MIN, STEP_MAX = -(2.0**63), 2.0**63


def flatten(obj: Mapping[Any, Any], sep: str = "/", prefix: str = "", *, max_keys: int | None = None) -> dict[str, Any]:
    """Nested dicts become ``sep``-joined keys ('/' is how most tools name nested metrics).

    Iterative, so a hostile nesting depth costs memory, never Python's recursion limit; with
    ``max_keys``, LogFormatError past that many keys (a YAML alias bomb expands exponentially).
    """
    out: dict[str, Any] = {}
    stack: list[tuple[str, Iterator[tuple[Any, Any]]]] = [(prefix, iter(obj.items()))]
    visited = 0
    while stack:
        pre, items = stack[-1]
        for key, value in items:
            visited += 1
            if max_keys is not None and visited > max_keys:
                raise LogFormatError(f"more than {max_keys:,} keys when flattened: not a run's configuration")
            name = f"{pre}{key}"
            if isinstance(value, Mapping):
                stack.append((name + sep, iter(value.items())))
                break  # depth first, so keys come out in their written order
            out[name] = value
        else:
            stack.pop()
    return out


def fractional_steps_note(source: str, steps: np.ndarray) -> list[Note]:
    """A note counting the step values that are not whole numbers (each read at the whole step toward zero),
    so a fractional epoch used as the step is never folded into its neighbours unsaid."""
    fractional = steps != np.trunc(steps)
    k = int(fractional.sum())
    if not k:
        return []
    example = float(steps[int(np.argmax(fractional))])
    return [Note("fractional_step", f"{source}: {k} step value(s) are not whole numbers (e.g. {example:g}): each was "
                 f"read at the whole step toward zero ({int(example)})", count=k)]


def step_out_of_range(step: float, where: str) -> LogFormatError:
    """The error that rejects a file whose step does not fit a 64-bit step counter."""
    return LogFormatError(f"step {step:g} ({where}) is outside the range of a 64-bit step counter; "
                          "the file was not read")


@dataclass
class RowCollector:
    """Accumulates points from rows, counting what could not be used and why."""

    source: str
    tags: dict[str, int] = field(default_factory=dict)
    codes: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    non_numeric: Counter[str] = field(default_factory=Counter)
    rows_without_step: int = 0

    def add_row(self, row: Mapping[str, Any], step_key: str | None, *, fallback_step: int | None = None,
                wall_key: str | None = None, skip: frozenset[str] = NON_METRIC_KEYS, where: str = "a row",
                step: int | None = None) -> None:
        """Add one row's metric values at its step (``step``: one derived by the caller, used instead of
        the row's); LogFormatError when the step cannot be an int64."""
        if step is None:
            raw_step = row.get(step_key) if step_key else None
            step_f = to_float(raw_step) if raw_step is not None else None
            if step_f is None or not math.isfinite(step_f):
                if fallback_step is None:
                    self.rows_without_step += 1
                    return
                step = fallback_step
            elif not STEP_MIN <= step_f < STEP_MAX:
                raise step_out_of_range(step_f, where)
            else:
                step = int(step_f)
        wall = to_float(row.get(wall_key)) if wall_key else None
        for key, value in row.items():
            if key in skip or key == step_key or key == wall_key or value is None:
                continue
            x = to_float(value)
            if x is None:
                self.non_numeric[key] += 1
                continue
            self.codes.append(self.tags.setdefault(key, len(self.tags)))
            self.steps.append(step)
            self.walls.append(math.nan if wall is None else wall)
            self.values.append(x)

    def points(self) -> RawPoints:
        return RawPoints(tuple(self.tags), np.asarray(self.codes, np.int32), np.asarray(self.steps, np.int64),
                         np.asarray(self.walls, np.float64), np.asarray(self.values, np.float64))

    def notes(self) -> list[Note]:
        out = []
        if self.rows_without_step:
            out.append(Note("dropped", f"{self.source}: {self.rows_without_step} row(s) without a step value were "
                            "not used", count=self.rows_without_step))
        # A field that is never numeric is metadata (e.g. "mode": "train"), not a dropped point;
        # a metric that is numeric in some rows and not in others lost points.
        dropped = {k: n for k, n in self.non_numeric.items() if k in self.tags}
        ignored = sorted(k for k in self.non_numeric if k not in self.tags)
        return out + non_numeric_notes(self.source, dropped, ignored, "value(s) in metric fields", "field(s)")


def non_numeric_notes(source: str, dropped: Mapping[str, int], ignored: list[str], what: str,
                      kind: str) -> list[Note]:
    """Notes counting non-numeric entries of metric columns (lost points) and all-text columns (ignored)."""
    out = []
    if dropped:
        total = sum(dropped.values())
        detail = ", ".join(f"{k} x{n}" for k, n in sorted(dropped.items())[:10])
        out.append(Note("dropped", f"{source}: {total} non-numeric {what} were not used ({detail})", count=total))
    if ignored:
        out.append(Note("ignored_fields", f"{source}: non-numeric {kind} ignored: {', '.join(ignored[:10])}",
                        count=len(ignored)))
    return out
