"""A Monitor's judgement carried across the restart it recommends: its history in a checkpoint, or
read back from the HF Trainer's own ``log_history``.

A resumed run is judged as one run: the history before the restart is the start of the curve (the
initial loss, the early phase), the steps after it are appended, and a step that goes back is read
with the same policy as a log's restarts (the latest write of a step wins). Without this, the run
that follows the advice "restart from the last good checkpoint" would be judged from a new initial
loss and a new early phase.

The state is plain values: ints, strings, and each tag's steps and values as raw little-endian
int64/float64 bytes (compact, and loadable with ``torch.load(weights_only=True)``: no numpy object is
pickled).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from analyzer.live.finding import AT_OR_ABOVE

VERSION = 1
Columns = dict[str, tuple[np.ndarray, np.ndarray]]
#: HF Trainer log keys -> the Monitor's metric names (what `HFTrainerCallback.on_log` records).
HF_KEYS = (("loss", "loss"), ("grad_norm", "grad_norm"), ("lr", "learning_rate"), ("eval_loss", "eval_loss"))


def encode(columns: Mapping[str, tuple[np.ndarray, np.ndarray]], *, run_id: str, verdict: str | None,
           checkpointed: Iterable[str], last_step: int | None) -> dict[str, Any]:
    """The state a checkpoint carries (see the module doc)."""
    return {
        "version": VERSION, "run_id": run_id, "verdict": verdict, "checkpointed": sorted(checkpointed),
        "last_step": last_step,
        "history": {tag: {"steps": np.ascontiguousarray(s, "<i8").tobytes(),
                          "values": np.ascontiguousarray(v, "<f8").tobytes()} for tag, (s, v) in columns.items()},
    }


def decode(state: Mapping[str, Any]) -> tuple[Columns, str | None, set[str], int | None]:
    """(columns, verdict, verdicts already checkpointed, last step) of a state made by `encode`; ValueError
    names what is wrong with a state that is not one."""
    if not isinstance(state, Mapping) or state.get("version") != VERSION:
        raise ValueError(f"not a steadytrain Monitor state of version {VERSION} "
                         f"(got version {state.get('version') if isinstance(state, Mapping) else type(state).__name__})")
    columns: Columns = {}
    for tag, col in dict(state.get("history") or {}).items():
        steps = np.frombuffer(col["steps"], "<i8").astype(np.int64)
        values = np.frombuffer(col["values"], "<f8").astype(np.float64)
        if steps.shape != values.shape:
            raise ValueError(f"history of {tag!r}: {steps.size} steps but {values.size} values")
        columns[str(tag)] = (steps, values)
    verdict = state.get("verdict")
    known = set(AT_OR_ABOVE["early"]) | {"stable", "insufficient_data"}
    if verdict is not None and verdict not in known:
        raise ValueError(f"verdict {verdict!r}: not a verdict")
    checkpointed = {str(v) for v in state.get("checkpointed") or ()}
    last = state.get("last_step")
    return columns, verdict, checkpointed, int(last) if last is not None else None


def from_log_history(log_history: Iterable[Mapping[str, Any]]) -> Columns:
    """The HF Trainer's ``state.log_history`` as the Monitor's columns: the entries its callback records
    (loss, grad_norm, learning_rate, eval_loss at each entry's step; the closing summary has none of them)."""
    cols: dict[str, tuple[list[int], list[float]]] = {}
    for entry in log_history:
        step = entry.get("step")
        if not isinstance(step, (int, float)) or isinstance(step, bool):
            continue
        for name, key in HF_KEYS:
            value = entry.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                steps, values = cols.setdefault(name, ([], []))
                steps.append(int(step))
                values.append(float(value))
    return {name: (np.asarray(s, np.int64), np.asarray(v, np.float64)) for name, (s, v) in cols.items()}
