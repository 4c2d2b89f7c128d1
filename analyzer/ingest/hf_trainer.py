"""HuggingFace Trainer's trainer_state.json: `log_history` entries become points.

Training entries carry loss / grad_norm / learning_rate, evaluation entries eval_*; the last
entry of a finished run is a summary (train_runtime, an *averaged* train_loss) and is kept as
hparams-like run info, not as a point, or it would read as a final loss jump.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest.hf_columns import ColumnarHistory
from analyzer.ingest.hf_history import SUMMARY_MARKERS, history_points, parse_state
from analyzer.ingest.tabular import RepeatedKeys, to_float
from analyzer.types import Note

_SUMMARY_MARKERS = SUMMARY_MARKERS
_STATE_KEYS = ("max_steps", "num_train_epochs", "train_batch_size", "global_step", "logging_steps", "eval_steps")


def load_state(path: Path) -> dict[str, Any]:
    """The parsed trainer state, or LogFormatError saying why the file is not one."""
    try:
        state = parse_state(path)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LogFormatError(f"not valid JSON ({exc.__class__.__name__})") from exc
    except RecursionError:
        raise LogFormatError("JSON nested too deeply to parse: not a HuggingFace trainer state") from None
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), (list, ColumnarHistory)):
        raise LogFormatError("JSON without a 'log_history' list: not a HuggingFace trainer state")
    if isinstance(state, RepeatedKeys):
        raise LogFormatError("a trainer state repeating a key outside its log_history: a damaged file")
    return state


def _scalar(value: Any) -> bool:
    """Run info keeps plain values only (a nested structure here is not a setting, and could nest 1000 deep)."""
    return isinstance(value, (str, int, float, bool))


def read_trainer_state(path: Path, state: dict[str, Any] | None = None) -> tuple[RawPoints, list[Note], dict[str, Any]]:
    """(points, notes, run info) of one trainer_state.json; LogFormatError when a step does not fit an int64."""
    state = state if state is not None else load_state(path)
    info: dict[str, Any] = {k: state[k] for k in _STATE_KEYS if _scalar(state.get(k))}
    points, notes, summaries = history_points(state["log_history"], path.name)
    for entry in summaries:
        info.update({f"final/{k}": v for k, v in entry.items() if k != "step" and _scalar(v)})
    return points, notes, info


def progress_key(state: dict[str, Any]) -> tuple[float, int]:
    """How far a copy of the trainer state got: (global_step, history length); any value type is tolerated."""
    step = to_float(state.get("global_step"))
    return (step if step is not None and math.isfinite(step) else 0.0), len(state["log_history"])


#: Copies written within this many seconds of the newest are one save (a checkpoint and the final
#: state of one run, or files whose times a copy or a git checkout set): among them, progress decides.
_SAME_SAVE_S = 2.0


@dataclass(frozen=True)
class StateCopy:
    """One trainer_state.json of an output folder: the top-level one or a checkpoint-N/ copy."""

    path: Path
    state: dict[str, Any]
    mtime: float
    top_level: bool


@dataclass(frozen=True)
class CopiesDecision:
    """Which copy of an output folder's trainer state is read, and what became of the others.

    Attributes:
        read: the copy read: the most complete copy of the current history.
        merged: (path, why) of every other copy.
        notes: what the run's report must say: the copies merged, an earlier run's stale copies (with the
            first differing step).
    """

    read: StateCopy
    merged: tuple[tuple[Path, str], ...]
    notes: tuple[Note, ...]


def _entry_text(entry: Any) -> str:
    return json.dumps(entry, sort_keys=True, default=str)


History = list[Any] | ColumnarHistory


def first_difference(a: History, b: History) -> int | None:
    """Index of the first log_history entry where ``a`` and ``b`` differ, None when one is a prefix of the other.

    Entries are compared whole, as written (step, epoch, learning rate and every value): a checkpoint copy is
    the earlier content of the same file, so equal entries are the same record, NaN losses included. Two
    histories read by columns whose texts are one the start of the other are that without a look at each entry."""
    if isinstance(a, ColumnarHistory) and isinstance(b, ColumnarHistory) and (a.is_prefix_of(b) or b.is_prefix_of(a)):
        return None
    a, b = _as_list(a), _as_list(b)
    n = min(len(a), len(b))
    for i in range(n):
        if _entry_text(a[i]) != _entry_text(b[i]):
            return i
    return None


def _as_list(history: History) -> list[Any]:
    return history.entries() if isinstance(history, ColumnarHistory) else history


def _entry(history: History, index: int) -> Any:
    if index >= len(history):
        return None
    return history.entry(index) if isinstance(history, ColumnarHistory) else history[index]


def _step_of(history: History, index: int) -> str:
    entry = _entry(history, index)
    step = entry.get("step") if isinstance(entry, dict) else None
    return f"step {step}" if step is not None else f"log_history entry {index}"


def choose_copy(copies: list[StateCopy]) -> CopiesDecision:
    """The copy of one output folder's trainer state to read.

    The *current* history is the newest file's: a rerun into the same output folder overwrites the
    checkpoints it reaches and leaves the earlier run's later ones behind, so the furthest-reaching
    copy may be stale, and reading it would hide what the current run did (a NaN). Among copies
    written within ``_SAME_SAVE_S`` of the newest (one save; or times that a copy or checkout set),
    the top-level trainer_state.json (written by ``save_state()`` after training) comes first, then
    the furthest step. Of the copies that agree with the current history (one a prefix of the
    other) the most complete is read; a copy that disagrees is an earlier run's, named in a note
    with the first differing step, and not used.
    """
    newest = max(c.mtime for c in copies)
    recent = [c for c in copies if c.mtime >= newest - _SAME_SAVE_S]
    current = max(recent, key=lambda c: (c.top_level, progress_key(c.state)))
    history = current.state["log_history"]
    same = [c for c in copies if c is current or first_difference(c.state["log_history"], history) is None]
    read = max(same, key=lambda c: (progress_key(c.state), c.top_level))
    merged: list[tuple[Path, str]] = []
    notes: list[Note] = []
    where = _where(read.path)
    for c in copies:
        if c is read:
            continue
        if c in same:
            merged.append((c.path, "checkpoint copy of the same run's trainer state (a prefix of the most complete "
                                   f"copy, {where})"))
            continue
        i = first_difference(c.state["log_history"], history)
        assert i is not None
        at = _step_of(history, i) if i < len(history) else _step_of(c.state["log_history"], i)
        merged.append((c.path, f"an earlier run's trainer state: it disagrees with the current {_where(current.path)} "
                               f"from {at} (a rerun into the same output folder); not used"))
        notes.append(Note("stale_copy", f"{_where(c.path)} and {_where(current.path)} disagree from {at}: a rerun "
                          f"into the same output folder left the earlier run's copy behind; the newest file's history "
                          f"({_where(read.path)}) was read and the older copy was not used", count=1,
                          step=_int_step(history, c.state["log_history"], i)))
    n_same = len(same) - 1
    if n_same:
        notes.insert(0, Note("merged", f"{n_same} checkpoint copy(ies) of trainer_state.json merged into this run; "
                             f"the most complete one ({read.path.parent.name}) was read", count=n_same))
    return CopiesDecision(read, tuple(merged), tuple(notes))


def _where(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _int_step(a: History, b: History, index: int) -> int | None:
    for history in (a, b):
        entry = _entry(history, index)
        step = to_float(entry.get("step")) if isinstance(entry, dict) else None
        if step is not None and math.isfinite(step) and step == int(step) and abs(step) < 2 ** 62:
            return int(step)
    return None
