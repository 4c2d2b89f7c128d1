"""The per-record reading of a W&B run's records (the exact path): a protobuf ``Record`` at a time, its
history items walked in Python into points, its config updates into the run's config.

`wandb_fast` reads most records column-wise to the same result and hands the others to `apply_record`.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analyzer.frame import RawPoints
from analyzer.ingest.tabular import STEP_MAX, STEP_MIN, flatten, non_numeric_notes
from analyzer.types import Note

#: History keys that are W&B's own bookkeeping, not metrics (``_timestamp`` becomes the wall time).
INTERNAL_KEYS = frozenset({"_step", "_runtime", "_timestamp"})



def _item_key(item: Any) -> str:
    # Newer writers set nested_key (one element for a flat key such as "train/loss"); older ones key.
    # W&B shows a nested dict's keys joined with ".".
    nested = item.nested_key
    if len(nested) == 1:
        return str(nested[0])
    return ".".join(nested) if nested else str(item.key)


def _json_value(text: str) -> Any:
    try:
        return float(text)  # most values are plain numbers; float() also reads W&B's NaN and Infinity
    except ValueError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def _item_value(item: Any, typed: bool) -> Any:
    """A history item's logged value: its typed field where the proto has them (``typed``), else JSON."""
    which = item.WhichOneof("value") if typed else None
    if which is None:
        return _json_value(item.value_json)
    if which == "none":
        return None
    return _json_value(item.json) if which == "json" else getattr(item, which)


def _number(value: Any) -> float | None:
    if type(value) is float:
        return value
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an integer past float range
            return None
    return None


@dataclass
class _StepMetrics:
    """define_metric's step metrics: which history key gives a metric its step (else ``_step``)."""

    exact: dict[str, str] = field(default_factory=dict)
    globs: list[tuple[str, str]] = field(default_factory=list)  # latest definition first
    keys: frozenset[str] = frozenset()  # the keys that are some metric's step: an x axis, not a metric
    last: dict[str, float] = field(default_factory=dict)  # each step metric's latest value (W&B's step_sync)
    resolved: dict[str, str] = field(default_factory=dict)  # key -> its step metric, until a new definition

    def define(self, metric: Any) -> None:
        if not metric.step_metric:
            return
        if metric.name:
            self.exact[metric.name] = metric.step_metric
        elif metric.glob_name:
            self.globs.insert(0, (metric.glob_name, metric.step_metric))
        self.keys = self.keys | {metric.step_metric}
        self.resolved.clear()

    def of(self, key: str) -> str:
        step = self.resolved.get(key)
        if step is None:
            globbed = (s for pattern, s in self.globs if fnmatch.fnmatchcase(key, pattern))
            step = self.exact.get(key) or next(globbed, "_step")
            self.resolved[key] = step
        return step


@dataclass
class History:
    """Points gathered from history records, with a count of everything that could not be a point."""

    source: str
    typed: bool  # whether history items have typed value fields (newer wandb protos), besides value_json
    tags: dict[str, int] = field(default_factory=dict)
    codes: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    non_numeric: Counter[str] = field(default_factory=Counter)
    media: Counter[str] = field(default_factory=Counter)
    no_step: Counter[str] = field(default_factory=Counter)
    bad_step: Counter[str] = field(default_factory=Counter)
    step_metrics: _StepMetrics = field(default_factory=_StepMetrics)
    #: Points read by the fast path, each batch with the number of points the lists held before it.
    batches: list[tuple[int, tuple[np.ndarray, ...]]] = field(default_factory=list)

    def add(self, record: Any) -> None:
        row: dict[str, Any] = {}
        for item in record.item:
            key = _item_key(item)
            value = _item_value(item, self.typed)
            if isinstance(value, dict):  # a nested dict (or a media object) sent as one JSON value
                row.update(flatten(value, ".", f"{key}.", max_keys=10_000))
            else:
                row[key] = value
        # A logged Image, Histogram or Table arrives as parts ("img.width", "img._type"): none is a metric.
        media = {key[: -len("._type")] for key in row if key.endswith("._type")}
        for key in media:
            self.media[key] += 1
        step_keys = self.step_metrics.keys
        for key in step_keys:
            x = _number(row.get(key))
            if x is not None and math.isfinite(x):
                self.step_metrics.last[key] = x
        own_step = _number(row.get("_step"))
        if own_step is None and record.HasField("step"):
            own_step = float(record.step.num)
        wall = _number(row.get("_timestamp"))
        wall = math.nan if wall is None else wall
        for key, value in row.items():
            if key in INTERNAL_KEYS or key in step_keys or key.startswith("_wandb"):
                continue
            if media and any(key == m or key.startswith(m + ".") for m in media):
                continue
            x = _number(value)
            if x is None:
                if value is not None:
                    self.non_numeric[key] += 1
                continue
            step_key = self.step_metrics.of(key)
            step = own_step if step_key == "_step" else self.step_metrics.last.get(step_key)
            if step is None or not math.isfinite(step):
                self.no_step[step_key] += 1
                continue
            if step != math.floor(step) or not STEP_MIN <= step < STEP_MAX:
                self.bad_step[step_key] += 1
                continue
            self.codes.append(self.tags.setdefault(key, len(self.tags)))
            self.steps.append(int(step))
            self.walls.append(wall)
            self.values.append(x)

    def extend(self, codes: np.ndarray, steps: np.ndarray, walls: np.ndarray, values: np.ndarray) -> None:
        """Append points as `add` would have, one after the other (codes already in ``tags``)."""
        self.batches.append((len(self.codes), (codes, steps, walls, values)))

    def points(self) -> RawPoints:
        listed: tuple[np.ndarray, ...] = (
            np.asarray(self.codes, np.int32), np.asarray(self.steps, np.int64),
            np.asarray(self.walls, np.float64), np.asarray(self.values, np.float64))
        parts: list[list[np.ndarray]] = [[], [], [], []]
        done = 0
        for mark, batch in self.batches:
            for part, column, more in zip(parts, listed, batch):
                part += [column[done:mark], more]
            done = mark
        columns = [np.concatenate([*part, column[done:]]).astype(column.dtype, copy=False)
                   for part, column in zip(parts, listed)]
        return RawPoints(tuple(self.tags), *columns)

    def notes(self) -> list[Note]:
        out = []
        for step_key, n in sorted(self.no_step.items()):
            out.append(Note("dropped", f"{self.source}: {n} value(s) logged before their step metric "
                            f"'{step_key}' had a value were not used", count=n))
        for step_key, n in sorted(self.bad_step.items()):
            out.append(Note("dropped", f"{self.source}: {n} value(s) whose step metric '{step_key}' was not "
                            "a whole number within int64 were not used", count=n))
        dropped = {k: n for k, n in self.non_numeric.items() if k in self.tags}
        ignored = sorted(k for k in self.non_numeric if k not in self.tags)
        out += non_numeric_notes(self.source, dropped, ignored, "value(s) of numeric metrics",
                                 "history key(s)")
        if self.media:
            total = sum(self.media.values())
            shown = ", ".join(f"{k} x{n}" for k, n in sorted(self.media.items())[:10])
            out.append(Note("ignored_fields", f"{self.source}: {total} logged media value(s) (images, "
                            f"histograms, tables ...) are not scalars and were not used ({shown})",
                            count=total))
        return out


def _config_value(item: Any) -> Any:
    try:
        return json.loads(item.value_json)
    except ValueError:
        return item.value_json


def _apply_config(config: dict[str, Any], record: Any) -> None:
    for item in record.update:
        config[_item_key(item)] = _config_value(item)
    for item in record.remove:
        config.pop(_item_key(item), None)


def apply_record(raw: bytes, pb: Any, history: History, config: dict[str, Any]) -> bool:
    """Decode one record with protobuf and apply it; False when it cannot be decoded."""
    try:
        record = pb.Record.FromString(raw)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError differs between its implementations
        return False
    kind = record.WhichOneof("record_type")
    if kind == "history":
        history.add(record.history)
    elif kind == "run":
        _apply_config(config, record.run.config)
    elif kind == "config":
        _apply_config(config, record.config)
    elif kind == "metric":
        history.step_metrics.define(record.metric)
    return True
