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

import re
from dataclasses import dataclass

import numpy as np

from analyzer.ingest.json_points import Prefixes
from analyzer.ingest.json_table import NULL, NUMBER, JsonTable
from analyzer.ingest.tabular import NON_METRIC_KEYS, PROGRESS_KEYS, progress_step
from analyzer.types import Note

SPLIT_FIELDS = ("split", "phase", "mode", "event", "stage")
#: A split value is a short name, and a split field has few of them (else it is data, not a split).
_SPLIT_VALUE = re.compile(r"^[A-Za-z][\w.-]{0,31}$")
MAX_SPLITS = 8
_EVAL_VALUES = frozenset({"val", "valid", "validation", "eval", "evaluation", "test", "dev"})


@dataclass(frozen=True)
class RecordPlan:
    """How each record of a JSONL file is read (records are a `JsonTable`'s, in file order).

    Attributes:
        prefixes: tag prefix of each record's metrics, if any record has one.
        steps: (mask, steps): records whose step is derived, and that step.
        skip: fields that are no metric in this file (the split field).
        notes: what was decided, with counts.
    """

    prefixes: Prefixes | None = None
    steps: tuple[np.ndarray, np.ndarray] | None = None
    skip: frozenset[str] = frozenset()
    notes: tuple[Note, ...] = ()


def _strings(table: JsonTable, name: str) -> np.ndarray:
    """The string each record holds under ``name`` (None where it holds no string)."""
    col = table.columns.get(name)
    if col is None or col.text is None:
        return np.full(table.n, None, dtype=object)
    return col.text


def _is_str(text: np.ndarray) -> np.ndarray:
    return np.array([v is not None for v in text.tolist()], dtype=bool)


def split_field(table: JsonTable) -> str | None:
    """The field whose values tell train from validation records, when a metric is logged under two of them."""
    for name in SPLIT_FIELDS:
        kind = table.kind(name)
        given = kind > NULL  # r.get(name) is not None
        if not given.any():
            continue
        text = _strings(table, name)
        is_text = given & _is_str(text)
        if bool((given & ~is_text).any()):
            continue
        values = list(dict.fromkeys(text[given].tolist()))
        if len(values) > MAX_SPLITS or len(values) < 2 or not all(_SPLIT_VALUE.match(v) for v in values):
            continue
        metrics = [k for k in table.columns if k != name and k not in NON_METRIC_KEYS]
        seen: set[str] = set()
        for value in values:
            rows = given & (text == value)
            keys = {k for k in metrics if bool((table.columns[k].kind[rows] == NUMBER).any())}
            if seen & keys:
                return name
            seen |= keys
    return None


def _mmengine(table: JsonTable, source: str) -> RecordPlan | None:
    has_iter, has_step = table.present("iter"), table.present("step")
    train = has_iter & has_step
    val = has_step & ~has_iter
    if not train.any() or not val.any():
        return None
    epoch_ok, epoch = table.integers("epoch")
    step_ok, step = table.integers("step")
    known = train & epoch_ok & step_ok
    last_of_epoch: dict[int, int] = {}
    if known.any():
        epochs, first = np.unique(epoch[known], return_inverse=True)
        last = np.full(epochs.size, np.iinfo(np.int64).min)
        np.maximum.at(last, first, step[known])
        last_of_epoch = dict(zip(epochs.tolist(), last.tolist()))
    val_rows = np.flatnonzero(val)
    steps = None
    if last_of_epoch and bool(step_ok[val_rows].all()) and all(e in last_of_epoch for e in step[val_rows].tolist()):
        derived = np.zeros(table.n, np.int64)
        derived[val_rows] = [last_of_epoch[e] for e in step[val_rows].tolist()]
        steps = (val.copy(), derived)
        how = ("carry their epoch as the step; each was placed at the last logged training iteration of that "
               "epoch, its tags")
    else:  # an iteration-based runner: validation steps are iterations already
        how = "are tagged"
    note = Note("split_tags", f"{source}: {val_rows.size} MMEngine validation record(s) {how} under val/",
                count=int(val_rows.size))
    return RecordPlan(prefixes=Prefixes(np.where(val, 0, -1), ("val",)), steps=steps, notes=(note,))


def _epoch_counter(table: JsonTable, step_key: str, split: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(mask, global steps) when ``step_key`` counts within the epoch, else None."""
    if "epoch" not in table.columns:
        return None  # no record has an epoch: nothing counts within one
    epoch_ok, epoch = table.integers("epoch")
    it_ok, it = table.integers(step_key)
    both = epoch_ok & it_ok
    if bool((~both & table.present(step_key)).any()):
        return None
    if split is not None:
        text = _strings(table, split)
        is_eval = np.array([isinstance(v, str) and v.lower() in _EVAL_VALUES for v in text.tolist()], dtype=bool)
    else:
        is_eval = np.zeros(table.n, bool)
    seq = np.flatnonzero(both & ~is_eval)
    if seq.size < 2:
        return None
    e, i = epoch[seq], it[seq]
    up = e[1:] > e[:-1]
    if bool((e[1:] < e[:-1]).any()) or bool(((i[1:] < i[:-1]) != up).any()):
        return None  # a restart, or a counter that does not restart with the epoch
    if not up.any():
        return None
    epochs, which = np.unique(e, return_inverse=True)
    length = np.full(epochs.size, np.iinfo(np.int64).min)
    np.maximum.at(length, which, i)
    offsets = np.concatenate([[0], np.cumsum(length[:-1], dtype=np.int64)])
    rows = np.flatnonzero(both)
    at = np.searchsorted(epochs, epoch[rows])
    at_ok = (at < epochs.size)
    at_ok[at_ok] = epochs[at[at_ok]] == epoch[rows][at_ok]
    rows, at = rows[at_ok], at[at_ok]
    derived = np.zeros(table.n, np.int64)
    derived[rows] = offsets[at] + np.where(is_eval[rows], length[at], it[rows])
    mask = np.zeros(table.n, bool)
    mask[rows] = True
    return mask, derived


def _progress_steps(table: JsonTable, step_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(mask, steps) of the records whose ``step_key`` holds a progress fraction (``"5/94"`` -> 5)."""
    found = [progress_step(v) for v in _strings(table, step_key).tolist()]
    mask = np.array([f is not None for f in found], dtype=bool)
    return mask, np.array([f if f is not None else 0 for f in found], dtype=np.int64)


def plan(table: JsonTable, step_key: str, source: str) -> RecordPlan:
    """How to read the records of ``table`` (flattened JSON objects in file order)."""
    mm = _mmengine(table, source)
    if mm is not None:
        return mm
    notes: list[Note] = []
    split = split_field(table)
    prefixes = None
    if split is not None:
        text = _strings(table, split)
        given = _is_str(text)
        values = list(dict.fromkeys(text[given].tolist()))
        code_of = {v: i for i, v in enumerate(values)}
        codes = np.array([code_of[v] if v is not None else -1 for v in text.tolist()], dtype=np.int64)
        prefixes = Prefixes(codes, tuple(values))
        shown = sorted(values)
        notes.append(Note("split_tags", f"{source}: records of {len(shown)} kinds interleaved by their '{split}' field "
                          f"({', '.join(shown)}); each record's metrics are tagged '<{split}>/<metric>'",
                          count=int(given.sum())))
    steps = _progress_steps(table, step_key) if step_key in PROGRESS_KEYS else _epoch_counter(table, step_key, split)
    if steps is not None and step_key in PROGRESS_KEYS:
        notes.append(Note("derived_step", f"{source}: the step is the first number of '{step_key}' (a progress "
                          "fraction, '<step>/<total>')", count=int(steps[0].sum())))
    elif steps is not None:
        notes.append(Note("derived_step", f"{source}: '{step_key}' counts within each epoch (it restarts when the "
                          f"epoch goes up); step = the iterations of earlier epochs (their largest logged '{step_key}') "
                          f"+ '{step_key}'" + (", validation records at the end of their epoch" if split else ""),
                          count=int(steps[0].sum())))
    return RecordPlan(prefixes, steps, frozenset({split}) if split else frozenset(), tuple(notes))
