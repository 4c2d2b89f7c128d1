"""A JSON document that holds whole series: one object, a metric per key.

Two shapes that tools and scripts write:

- Sacred's FileStorageObserver ``metrics.json``: ``{"train.loss": {"steps": [...], "values": [...],
  "timestamps": ["2024-05-01T12:00:00.000000", ...]}, ...}`` (``_run.log_scalar``; the timestamps are UTC).
- A Keras ``History`` dumped as it is (``json.dump(model.fit(...).history, f)``): ``{"loss": [...],
  "val_loss": [...], ...}``, one value per epoch. The step is the position in the list (epoch 0 first), or an
  ``epoch``/``step`` list beside them. Only lists as long as the loss's are read as metrics: a list of another
  length is counted in a note, as nothing places its values.

A configuration also holds lists of numbers (``"betas": [0.9, 0.999]``): a document is read only when it holds a
Sacred series, or a list of at least 3 numbers under a key that names a loss.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest.tabular import EPOCH_KEYS, STEP_KEYS, STEP_MAX, STEP_MIN, to_float
from analyzer.types import Note

_MIN_POINTS = 3
_MAX_BYTES = 64 << 20  # a document is parsed whole: a bigger one (a dataset's annotations) is no metrics dump
_MAX_SACRED_BYTES = 2 << 30  # Sacred's own file of a long run (3 metrics x 700k steps: 128 MB)
_HEAD_BYTES = 1 << 20
#: What the head of such a document shows before it is parsed: a Sacred series or a list of numbers under a loss
#: key (a folder's other JSON files, configs and annotations, are not parsed whole to find out).
_LOOKS_LIKE = re.compile(rb'"steps"\s*:\s*\[|"[^"]*[Ll][Oo][Ss][Ss][^"]*"\s*:\s*\[\s*[-+0-9.NI]')


@dataclass(frozen=True)
class Shape:
    """Which of the two shapes the document is: "sacred" or "lists"."""

    kind: str


def _load(path: Path, *, sacred: bool = True) -> Any:
    if path.stat().st_size > (_MAX_SACRED_BYTES if sacred else _MAX_BYTES):
        raise LogFormatError("a JSON document too large to be a dump of metric series")
    try:
        return json.loads(path.read_bytes().removeprefix(b"\xef\xbb\xbf"))
    except (ValueError, RecursionError):
        raise LogFormatError("not a JSON document") from None


def _is_sacred_series(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("steps"), list) and isinstance(value.get("values"), list)
            and len(value["steps"]) == len(value["values"]))


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and len(value) >= _MIN_POINTS and all(
        to_float(v) is not None or v is None for v in value)


def _loss_list(doc: dict[str, Any]) -> str | None:
    """The loss of a Keras History: a document of lists only (a config's ``"loss_weights": [1, 0.5]`` sits among
    scalars and strings), one of them a loss (``loss``, ``val_loss``; not ``loss_weights`` or ``fold_losses``)."""
    if not all(isinstance(v, list) for v in doc.values()):
        return None
    return next((k for k, v in doc.items() if k.lower().endswith("loss") and _numbers(v)), None)


def sniff(path: Path) -> Shape:
    """The shape of a JSON document of series; LogFormatError when it is none."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    head = head.removeprefix(b"\xef\xbb\xbf")
    if head.lstrip()[:1] != b"{":
        raise LogFormatError("not a JSON object")
    if not _LOOKS_LIKE.search(head):
        raise LogFormatError("a JSON object without metric series (Sacred's {name: {steps, values}} or Keras' "
                             "{loss: [...], ...})")
    doc = _load(path, sacred=b'"values"' in head)
    if not isinstance(doc, dict):
        raise LogFormatError("not a JSON object")
    if any(_is_sacred_series(v) for v in doc.values()):
        return Shape("sacred")
    if _loss_list(doc) is not None:
        return Shape("lists")
    raise LogFormatError("a JSON object without metric series (Sacred's {name: {steps, values}} or Keras' "
                         "{loss: [...], ...})")


def _floats(values: list[Any]) -> np.ndarray:
    return np.array([math.nan if (f := to_float(v)) is None else f for v in values], dtype=np.float64)


def _whole(steps: np.ndarray) -> np.ndarray:
    """Which steps are whole numbers a 64-bit step counter holds."""
    return np.isfinite(steps) & (steps == np.floor(steps)) & (steps >= STEP_MIN) & (steps < STEP_MAX)


def _wall(stamp: Any) -> float:
    try:
        return datetime.fromisoformat(str(stamp)).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return math.nan


def _sacred(doc: dict[str, Any], name: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], list[Note]]:
    columns: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    odd = [k for k, v in doc.items() if not _is_sacred_series(v)]
    for tag, series in doc.items():
        if tag in odd:
            continue
        steps = _floats(series["steps"])
        keep = _whole(steps)
        stamps = series.get("timestamps")
        walls = (np.array([_wall(s) for s in stamps]) if isinstance(stamps, list) and len(stamps) == len(steps)
                 else np.full(len(steps), math.nan))
        columns[str(tag)] = (steps[keep].astype(np.int64), walls[keep], _floats(series["values"])[keep])
        if not keep.all():
            odd.append(f"{tag} ({int((~keep).sum())} point(s) without a whole step)")
    notes = [Note("ignored_fields", f"{name}: {len(odd)} entr(ies) not read as series ({', '.join(odd[:5])})",
                  count=len(odd))] if odd else []
    return columns, notes


def _lists(doc: dict[str, Any], name: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], list[Note]]:
    loss = _loss_list(doc)
    assert loss is not None  # sniffed
    n = len(doc[loss])
    counter = next((k for k in STEP_KEYS + EPOCH_KEYS if isinstance(doc.get(k), list) and len(doc[k]) == n), None)
    steps = _floats(doc[counter]) if counter is not None else np.arange(n, dtype=np.float64)
    keep = _whole(steps)
    walls = np.full(int(keep.sum()), math.nan)
    columns = {str(k): (steps[keep].astype(np.int64), walls, _floats(v)[keep]) for k, v in doc.items()
               if k != counter and isinstance(v, list) and len(v) == n and _numbers(v)}
    other = [str(k) for k in doc if k != counter and str(k) not in columns]
    notes = [Note("derived_step", f"{name}: the step is each value's position in its list (epoch 0 first)",
                  count=n)] if counter is None else []
    if other:
        notes.append(Note("ignored_fields", f"{name}: {len(other)} entr(ies) that are no list of {n} numbers (the "
                          f"length of '{loss}') were not read ({', '.join(other[:5])})", count=len(other)))
    return columns, notes


def read(path: Path, shape: Shape) -> tuple[RawPoints, list[Note]]:
    """Every series of the document as points."""
    doc = _load(path)
    if not isinstance(doc, dict):
        raise LogFormatError("not a JSON object")
    columns, notes = (_sacred if shape.kind == "sacred" else _lists)(doc, path.name)
    if not columns:
        raise LogFormatError("no metric series in the document")
    return RawPoints.from_columns(columns), notes
