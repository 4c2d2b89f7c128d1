"""The fast reading of one ``.wandb`` file: `wandb_columns` reads the records it can vouch for, the exact
path (`wandb_history.apply_record`) reads the others, in file order, into the same state.

Only history and metric records change how later history records read (the tags' order, the step
metrics and their latest values), so the records are replayed as runs of fast records between
records read exactly. A run of fast history records is turned into points at once, as
`wandb_history.History.add` would have one record after the other; a short run is read exactly,
record by record (numpy's fixed cost per call would outweigh it). Records are decoded in batches,
so the arrays stay small; where a batch's columns served little (a non-scalar in most rows), the
next batches are read exactly without decoding them, but for a probe now and then.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analyzer.ingest.tabular import STEP_MAX, STEP_MIN
from analyzer.ingest.wandb_columns import HISTORY, SLOW, Columns, decode, layout
from analyzer.ingest.wandb_framing import Framed, Framing, frame
from analyzer.ingest.wandb_history import INTERNAL_KEYS, History, apply_record

_MIN_RUN = 16  # fewer fast history records than this in a row are read exactly
_PROBE_EVERY = 16
_BATCH = 1 << 15  # records per numpy pass: their arrays stay in cache (faster) and memory near the file's size


def read_fast(data: bytes, pb: Any, history: History,
              config: dict[str, Any]) -> tuple[Framing, int, int] | None:
    """(framing, records decoded, records undecodable) as `wandb_run._read_exact` gives for this
    file, with ``history`` and ``config`` updated the same; None (nothing changed) where wandb's protos
    are not the shapes the fast path knows."""
    lay = layout(pb)
    if lay is None:
        return None
    framed = frame(data)
    decoded = undecodable = idle = 0
    for lo in range(0, framed.starts.size, _BATCH):
        part = framed.part(lo, lo + _BATCH)
        # Where the columns served little (most history records read exactly: media, text, nested dicts in
        # most rows), the next batches skip them, but for one in _PROBE_EVERY, to notice when that ends.
        cols = decode(part, lay) if idle % _PROBE_EVERY == 0 else None
        done, failed, useful = _read_part(part, cols, pb, history, config)
        decoded, undecodable = decoded + done, undecodable + failed
        idle = 0 if useful else idle + 1
    return Framing(framed.corrupt_chunks, framed.orphan_chunks, framed.truncated_bytes), decoded, undecodable


def _read_part(framed: Framed, cols: Columns | None, pb: Any, history: History,
               config: dict[str, Any]) -> tuple[int, int, bool]:
    """(records decoded, records undecodable, whether the columns served) of a batch of records, read in
    order: runs of fast history records at once, the others exactly (all of them without columns)."""
    n, blob = framed.starts.size, framed.blob
    starts, ends = framed.starts.tolist(), framed.ends.tolist()
    if cols is None:
        decoded = sum(apply_record(blob[a:b], pb, history, config) for a, b in zip(starts, ends))
        return decoded, n - decoded, False
    exact = np.flatnonzero(cols.kind == SLOW)
    histories = np.flatnonzero(cols.kind == HISTORY)
    stops = np.append(exact, n)
    los = np.concatenate(([0], exact + 1))
    firsts, lasts = np.searchsorted(histories, los), np.searchsorted(histories, stops)
    decoded, replayed = n - exact.size, 0
    for lo, stop, first, last in zip(los.tolist(), stops.tolist(), firsts.tolist(), lasts.tolist()):
        if last - first >= _MIN_RUN:
            _replay(history, cols, lo, stop)
            replayed += last - first
        elif last > first:
            for i in histories[first:last].tolist():
                apply_record(blob[starts[i]: ends[i]], pb, history, config)
        if stop < n:
            decoded += apply_record(blob[starts[stop]: ends[stop]], pb, history, config)
    return decoded, n - decoded, replayed * 4 >= histories.size + exact.size


def _step_series(history: History, cols: Columns, rec: np.ndarray, key: np.ndarray,
                 value: np.ndarray) -> dict[str, np.ndarray]:
    """Per item, the latest finite value of each step metric as of its record (that record's own
    included), as `_StepMetrics.last` holds when `History.add` reads it; ``last`` updated."""
    sm = history.step_metrics
    index = {k: i for i, k in enumerate(cols.keys)}
    out = {}
    for name in sm.keys:
        hit = (key == index.get(name, -1)) & np.isfinite(value)
        at, seen = rec[hit], value[hit]
        before = sm.last.get(name)
        j = np.searchsorted(at, rec, side="right") - 1
        out[name] = np.where(j >= 0, seen[np.maximum(j, 0)] if seen.size else np.nan,
                             np.nan if before is None else before)
        if seen.size:
            sm.last[name] = float(seen[-1])
    return out


def _replay(history: History, cols: Columns, lo: int, stop: int) -> None:
    """The history records ``lo`` to ``stop`` (none read exactly) into points, notes and step metrics."""
    a, b = np.searchsorted(cols.rec, [lo, stop])
    rec, key, value = cols.rec[a:b], cols.key[a:b], cols.value[a:b]
    sm = history.step_metrics
    series = _step_series(history, cols, rec, key, value)
    present = np.flatnonzero(np.bincount(key, minlength=len(cols.keys)))
    axis = np.full(len(cols.keys), -1)  # per key: which step axis its points use (-1: not a metric)
    axes: list[str] = []
    for code in present.tolist():
        name = cols.keys[code]
        if name in INTERNAL_KEYS or name in sm.keys or name.startswith("_wandb"):
            continue
        step_key = sm.of(name)
        if step_key not in axes:
            axes.append(step_key)
        axis[code] = axes.index(step_key)
    role = axis[key]
    step = np.full(rec.size, np.nan)
    for i, step_key in enumerate(axes):
        use = role == i
        step[use] = (cols.own_step[rec[use]] if step_key == "_step" else series[step_key][use])
    finite = np.isfinite(step)
    whole = finite & (step == np.floor(step)) & (step >= STEP_MIN) & (step < STEP_MAX)
    for i, step_key in enumerate(axes):
        use = role == i
        missing, odd = int(np.count_nonzero(use & ~finite)), int(np.count_nonzero(use & finite & ~whole))
        if missing:
            history.no_step[step_key] += missing
        if odd:
            history.bad_step[step_key] += odd
    keep = (role >= 0) & whole
    import pandas as pd  # imported here: at the top it would cost every process ~0.25 s, W&B or not
    codes, firsts = pd.factorize(key[keep])
    tags = np.array([history.tags.setdefault(cols.keys[c], len(history.tags)) for c in firsts.tolist()],
                    np.int32)
    history.extend(tags[codes] if codes.size else np.zeros(0, np.int32), step[keep].astype(np.int64),
                   cols.wall[rec[keep]], value[keep])
