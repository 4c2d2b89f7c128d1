"""JSONL dialects whose records need more than "a step key and metric keys" to read right.

- A split field (``split``, ``phase``, ``mode``, ``event``, ``stage``) interleaving train and
  validation records: when one metric key is logged under two of its values (``{"split":
  "train", "loss": ..}`` and ``{"split": "val", "loss": ..}``), every metric of a record is
  prefixed by its split value (``train/loss``, ``val/loss``) instead of tangling into one tag. A
  file where no key is shared keeps its names (nothing is tangled there).
- MMEngine's ``vis_data/scalars.json``: training records carry ``iter`` and ``step`` (the global
  iteration); validation records carry only ``step``, which an epoch-based runner sets to the
  *epoch*. Those are placed at the last logged iteration of their epoch, under ``val/``.
- Per-epoch iteration counters (MMDetection 2.x's ``*.log.json``: ``mode``, ``epoch``, ``iter``
  counting within the epoch): when the counter goes back exactly where the epoch goes up, the step
  is the iterations of the earlier epochs (the largest logged per epoch) plus the counter, and a
  validation record sits at the end of its epoch.

fairseq's JSON lines need nothing here: ``num_updates`` (``train_``/``valid_`` prefixed in end-of-
epoch records) is a step key and string values are read as numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from analyzer.ingest.tabular import NON_METRIC_KEYS, to_float
from analyzer.types import Note

SPLIT_FIELDS = ("split", "phase", "mode", "event", "stage")
#: A split value is a short name, and a split field has few of them (else it is data, not a split).
_SPLIT_VALUE = re.compile(r"^[A-Za-z][\w.-]{0,31}$")
MAX_SPLITS = 8
_EVAL_VALUES = frozenset({"val", "valid", "validation", "eval", "evaluation", "test", "dev"})


@dataclass(frozen=True)
class RecordPlan:
    """How each record of a JSONL file is read.

    Attributes:
        prefixes: record index -> tag prefix of its metrics.
        steps: record index -> step that replaces the one written.
        skip: fields that are no metric in this file (the split field).
        notes: what was decided, with counts.
    """

    prefixes: dict[int, str] = field(default_factory=dict)
    steps: dict[int, int] = field(default_factory=dict)
    skip: frozenset[str] = frozenset()
    notes: tuple[Note, ...] = ()


def _int(value: Any) -> int | None:
    x = to_float(value)
    return int(x) if x is not None and math.isfinite(x) and x == int(x) and abs(x) < 2.0**62 else None


def split_field(records: list[Mapping[str, Any]]) -> str | None:
    """The field whose values tell train from validation records, when a metric is logged under two of them."""
    for name in SPLIT_FIELDS:
        keys_by_value: dict[str, set[str]] = {}
        usable = True
        for r in records:
            value = r.get(name)
            if value is None:
                continue
            if not isinstance(value, str) or not _SPLIT_VALUE.match(value) or (
                    value not in keys_by_value and len(keys_by_value) == MAX_SPLITS):
                usable = False
                break
            keys_by_value.setdefault(value, set()).update(
                k for k, v in r.items() if k != name and k not in NON_METRIC_KEYS and to_float(v) is not None)
        if not usable or len(keys_by_value) < 2:
            continue
        seen: set[str] = set()
        for keys in keys_by_value.values():
            if seen & keys:
                return name
            seen |= keys
    return None


def prefixed(record: Mapping[str, Any], prefix: str, step_key: str | None, skip: frozenset[str]) -> dict[str, Any]:
    """The record with its metric keys under ``prefix/`` (a key already named for it, 'val_loss', is kept)."""
    out = {}
    for k, v in record.items():
        keep = k in NON_METRIC_KEYS or k in skip or k == step_key or any(
            k.startswith(prefix + sep) for sep in "_/-.")
        out[k if keep else f"{prefix}/{k}"] = v
    return out


def _mmengine(records: list[Mapping[str, Any]], source: str) -> RecordPlan | None:
    train = [r for r in records if "iter" in r and "step" in r]
    val = [i for i, r in enumerate(records) if "step" in r and "iter" not in r]
    if not train or not val:
        return None
    last_of_epoch: dict[int, int] = {}
    for r in train:
        epoch, step = _int(r.get("epoch")), _int(r.get("step"))
        if epoch is not None and step is not None:
            last_of_epoch[epoch] = max(last_of_epoch.get(epoch, step), step)
    steps = {}
    epochs = [_int(records[i].get("step")) for i in val]
    if last_of_epoch and all(e is not None and e in last_of_epoch for e in epochs):
        steps = {i: last_of_epoch[e] for i, e in zip(val, epochs) if e is not None}
        how = ("carry their epoch as the step; each was placed at the last logged training iteration of that "
               "epoch, its tags")
    else:  # an iteration-based runner: validation steps are iterations already
        how = "are tagged"
    note = Note("split_tags", f"{source}: {len(val)} MMEngine validation record(s) {how} under val/", count=len(val))
    return RecordPlan(prefixes={i: "val" for i in val}, steps=steps, notes=(note,))


def _epoch_counter(records: list[Mapping[str, Any]], step_key: str, split: str | None) -> dict[int, int] | None:
    """Global steps when ``step_key`` counts within the epoch, else None."""
    def is_eval(r: Mapping[str, Any]) -> bool:
        return split is not None and str(r.get(split, "")).lower() in _EVAL_VALUES

    length: dict[int, int] = {}
    last: tuple[int, int] | None = None
    resets = 0
    for r in records:
        epoch, it = _int(r.get("epoch")), _int(r.get(step_key))
        if epoch is None or it is None:
            if step_key in r:
                return None
            continue
        if is_eval(r):
            continue
        if last is not None:
            if epoch < last[0] or (it < last[1]) != (epoch > last[0]):
                return None  # a restart, or a counter that does not restart with the epoch
            resets += epoch > last[0]
        length[epoch] = max(length.get(epoch, it), it)
        last = (epoch, it)
    if not resets:
        return None
    offset, total = {}, 0
    for epoch in sorted(length):
        offset[epoch] = total
        total += length[epoch]
    steps = {}
    for i, r in enumerate(records):
        epoch, it = _int(r.get("epoch")), _int(r.get(step_key))
        if epoch is None or it is None or epoch not in offset:
            continue
        steps[i] = offset[epoch] + (length[epoch] if is_eval(r) else it)
    return steps


def plan(records: list[Mapping[str, Any]], step_key: str, source: str) -> RecordPlan:
    """How to read ``records`` (flattened JSON objects in file order)."""
    mm = _mmengine(records, source)
    if mm is not None:
        return mm
    notes: list[Note] = []
    split = split_field(records)
    prefixes: dict[int, str] = {}
    if split is not None:
        prefixes = {i: str(r[split]) for i, r in enumerate(records) if isinstance(r.get(split), str)}
        values = sorted(set(prefixes.values()))
        notes.append(Note("split_tags", f"{source}: records of {len(values)} kinds interleaved by their '{split}' field "
                          f"({', '.join(values)}); each record's metrics are tagged '<{split}>/<metric>'",
                          count=len(prefixes)))
    steps = _epoch_counter(records, step_key, split) or {}
    if steps:
        notes.append(Note("derived_step", f"{source}: '{step_key}' counts within each epoch (it restarts when the "
                          f"epoch goes up); step = the iterations of earlier epochs (their largest logged '{step_key}') "
                          f"+ '{step_key}'" + (", validation records at the end of their epoch" if split else ""),
                          count=len(steps)))
    return RecordPlan(prefixes, steps, frozenset({split}) if split else frozenset(), tuple(notes))
