"""HuggingFace Trainer's trainer_state.json: `log_history` entries become points.

Training entries carry loss / grad_norm / learning_rate, evaluation entries eval_*; the last
entry of a finished run is a summary (train_runtime, an *averaged* train_loss) and is kept as
hparams-like run info, not as a point, or it would read as a final loss jump.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
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
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
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
