"""Printed training logs of any layout: lines grouped by template, each kind read by its learned layout.

The lines no tool-specific pattern (`analyzer.ingest.text_patterns`) claimed are grouped by
*template*: the line with each number replaced by a mark, whitespace runs and progress-bar glyphs
folded (one regular-expression pass over the lines, in polars). One line of each template is read
by `analyzer.ingest.text_layout.learn_layout`, which says which number is the step, the epoch, and
which are named metrics; every line of the template is then read with one anchored expression
built from the template (one more pass over those lines only).

A template is a metric line kind when it holds named numbers over a counter. A kind whose counter
is a step key (``step``, ``iter``, ``s:``) or an epoch is read as soon as the file shows one
repeated kind; a kind counted only by a leading integer or a key-less ``N/M`` must show it itself
(three lines or more, the counter advancing), so a list of numbers is not a training log.

Steps: the counter as printed; a batch counter within an epoch (Keras' ``100/100`` after an
``Epoch 3/10`` line, Lightning's bar ``Epoch 3: ... 450/1000``, ``Epoch [3/10], Step [100/500]``
whose step starts again every epoch) becomes ``(epoch - first epoch) x batches per epoch + batch``;
an evaluation line counted only by its own batches (``Test: [ 10/50]``) takes the step of the
training line before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from analyzer.ingest.text_layout import (BAR_MARK, EVAL_WORDS, NUM_MARK, NUMBER, TOKEN, LineLayout,
                                         learn_layout)
from analyzer.ingest.text_points import TextPoints
from analyzer.types import Note

#: A kind counted by a leading integer or a key-less N/M needs this many lines of its own.
MIN_LINES = 3
#: Progress-bar glyphs (block elements, box drawing, and Keras' ``[=====>....]``): they change with
#: every redraw, so they are folded in the template.
_BAR_GLYPHS = re.compile(r"[\u2580-\u259f\u2500-\u257f][\u2580-\u259f\u2500-\u257f ]*|\[[=>.]{3,}\]")
_BAR_CLASS = r"(?:[\u2580-\u259f\u2500-\u257f][\u2580-\u259f\u2500-\u257f ]*|\[[=>.]{3,}\])"
_SPACES = re.compile(r"\s+")
_META = frozenset("\\.+*?()|[]{}^$#&-~")


@dataclass(frozen=True)
class LineKind:
    """The lines of one template and how they are laid out.

    Attributes:
        template: the folded template (numbers -> NUM_MARK, bars -> BAR_MARK, one space per run).
        example: one of its lines, as printed.
        layout: what its numbers are.
        rows: the line index of each of its lines (ascending).
    """

    template: str
    example: str
    layout: LineLayout
    rows: np.ndarray


def _fold(raw_template: str) -> str:
    return _SPACES.sub(" ", _BAR_GLYPHS.sub(BAR_MARK, raw_template)).strip()


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _META else c for c in text)


def _expression(template: str) -> str:
    """The anchored expression that reads every line of ``template``: one group per number."""
    out = []
    for piece in re.split(f"({NUM_MARK}|{BAR_MARK}| )", template):
        if piece == NUM_MARK:
            out.append(f"(?P<n{len([o for o in out if o.startswith('(?P<n')])}>{NUMBER})")
        elif piece == BAR_MARK:
            out.append(_BAR_CLASS)
        elif piece == " ":
            out.append(r"\s+")
        elif piece:
            out.append(_escape(piece))
    return r"^\s*" + "".join(out) + r"\s*$"


def line_kinds(lines: pl.DataFrame) -> tuple[list[LineKind], int, pl.DataFrame]:
    """The metric line kinds and epoch-header kinds among ``lines`` (``row``, ``line``), most lines first; how
    many lines hold named numbers but no counter (they are not read); and the lines of those kinds with the
    index of their kind (``row``, ``line``, ``kind``)."""
    candidates = lines.filter(pl.col("line").str.contains(r"\d").fill_null(False))
    empty = pl.DataFrame(schema={"row": lines.schema["row"], "line": pl.String, "kind": pl.Int32})
    if candidates.is_empty():
        return [], 0, empty
    raw = candidates.with_columns(pl.col("line").str.replace_all(TOKEN, NUM_MARK + "${ua}${ub}").alias("raw"))
    groups = raw.group_by("raw", maintain_order=True).agg(pl.len().alias("n"), pl.col("line").first().alias("example"))
    folded: dict[str, tuple[list[str], str, int]] = {}
    for template, n, example in groups.iter_rows():
        key = _fold(template)
        raws, first, count = folded.get(key, ([], example, 0))
        raws.append(template)
        folded[key] = (raws, first, count + n)
    kinds: list[tuple[str, str, LineLayout, list[str], int]] = []
    no_counter = 0
    for template, (raws, example, n) in folded.items():
        if NUM_MARK not in template or not re.search(r"[A-Za-z]", template):
            continue
        layout = learn_layout(example)
        if layout.is_metric_line or layout.is_header:
            kinds.append((template, example, layout, raws, n))
        elif layout.metrics:
            no_counter += n
    if not kinds:
        return [], no_counter, empty
    kinds.sort(key=lambda k: -k[4])
    index = pl.DataFrame({"raw": [r for k in kinds for r in k[3]],
                          "kind": [i for i, k in enumerate(kinds) for _ in k[3]]}, schema={"raw": pl.String,
                                                                                          "kind": pl.Int32})
    taken = raw.join(index, on="raw", how="inner", maintain_order="left").select("row", "line", "kind")
    rows_of = {int(i): part.get_column("row").to_numpy().astype(np.int64)
               for (i,), part in taken.partition_by("kind", as_dict=True).items()}
    return ([LineKind(t, ex, lay, rows_of[i]) for i, (t, ex, lay, _, _) in enumerate(kinds)], no_counter, taken)


def _numbers(taken: pl.DataFrame, index: int, kind: LineKind) -> pl.DataFrame:
    """The numbers of ``kind``'s lines as printed (columns ``n0``.. by position), in row order."""
    got = taken.filter(pl.col("kind") == index)
    return got.select(pl.col("line").str.extract_groups(_expression(kind.template)).alias("n")).unnest("n")


def _as_int(column: pl.Series) -> np.ndarray:
    x = column.cast(pl.Float64, strict=False).to_numpy()
    return np.where(np.isfinite(x), x, np.nan)


@dataclass
class _Counted:
    kind: LineKind
    rows: np.ndarray
    numbers: pl.DataFrame
    counter: np.ndarray  # float: NaN where the line holds none readable
    epoch: np.ndarray | None
    total: np.ndarray | None


def _advancing(counter: np.ndarray) -> bool:
    ok = counter[np.isfinite(counter)]
    if len(ok) < MIN_LINES or len(np.unique(ok)) < 2:
        return False
    return bool(np.mean(np.diff(ok) >= 0) >= 0.8)


def _epoch_offsets(c: _Counted, header_rows: np.ndarray, header_epochs: np.ndarray,
                   first_epoch: float) -> np.ndarray | None:
    """Global steps of a kind that counts batches within an epoch, or None when it does not."""
    epoch = c.epoch
    if epoch is None and len(header_rows):
        at = np.searchsorted(header_rows, c.rows, side="right") - 1
        epoch = np.where(at >= 0, header_epochs[np.maximum(at, 0)], np.nan)
    if epoch is None or not np.isfinite(epoch).any():
        return None
    within = c.kind.layout.within_epoch
    if not within:  # a keyed step counter: within the epoch when it starts again as the epoch changes
        ok = np.isfinite(c.counter) & np.isfinite(epoch)
        back = np.diff(c.counter[ok]) < 0
        new_epoch = np.diff(epoch[ok]) > 0
        within = bool(back.any()) and bool(np.all(new_epoch[back]))
    if not within:
        return None
    if c.total is not None and np.isfinite(c.total).any():
        per_epoch = np.where(np.isfinite(c.total), c.total, np.nanmax(c.total))
    else:
        ok = c.counter[np.isfinite(c.counter)]
        per_epoch = np.full(len(c.counter), float(ok.max() + (1 if ok.min() == 0 else 0)) if len(ok) else np.nan)
    return (epoch - first_epoch) * per_epoch + c.counter


def read_generic(lines: pl.DataFrame, values: TextPoints, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                               list[Note]]:
    """Read the metric lines among ``lines`` (``row``, ``line``) into ``values``.

    Returns the rows and steps of the lines read (for placing messages), the rows of every line
    taken (metric and epoch-header lines), and notes.
    """
    kinds, no_counter, taken_lines = line_kinds(lines)
    counted: list[_Counted] = []
    for index, kind in enumerate(kinds):
        rows, numbers = kind.rows, _numbers(taken_lines, index, kind)
        lay = kind.layout
        pos = lay.step if lay.step is not None else lay.epoch
        counter = _as_int(numbers.get_column(f"n{pos}")) if pos is not None else np.full(len(rows), np.nan)
        epoch = _as_int(numbers.get_column(f"n{lay.epoch}")) if lay.epoch is not None and lay.step is not None else None
        total = _as_int(numbers.get_column(f"n{lay.step_total}")) if lay.step_total is not None else None
        counted.append(_Counted(kind, rows, numbers, counter, epoch, total))
    # Kinds that show a training log by themselves; other kinds are read when they share a counter with one
    # (``step:1000 churn:0.0`` beside ``step:N/M train_loss:X``), never a config line whose key is a counter word.
    confirmed = {_counter_name(c.kind.layout) for c in counted if _shows_a_log(c)}
    taken: list[np.ndarray] = []
    headers = [c for c in counted if c.kind.layout.is_header]
    if headers:
        header_rows = np.concatenate([c.rows for c in headers])
        header_epochs = np.concatenate([c.counter for c in headers])
        order = np.argsort(header_rows, kind="stable")
        header_rows, header_epochs = header_rows[order], header_epochs[order]
    else:
        header_rows = header_epochs = np.zeros(0)
    epochs_seen = [header_epochs] + [c.epoch for c in counted if c.epoch is not None]
    all_epochs = np.concatenate(epochs_seen) if epochs_seen else np.zeros(0)
    all_epochs = all_epochs[np.isfinite(all_epochs)]
    first_epoch = 0.0 if len(all_epochs) and all_epochs.min() == 0 else 1.0

    known_rows: list[np.ndarray] = []
    known_steps: list[np.ndarray] = []
    deferred: list[_Counted] = []
    read_kinds: list[tuple[LineKind, int]] = []
    for c in counted:
        lay = c.kind.layout
        if lay.is_header:
            if confirmed or len(headers):
                taken.append(c.rows)
            continue
        if not (_shows_a_log(c) or (lay.counter in ("step", "epoch") and _counter_name(lay) in confirmed)):
            continue
        if lay.kind in EVAL_WORDS and lay.counter == "batch":
            deferred.append(c)  # an evaluation's own batches: it belongs to the training step before it
            continue
        steps = _epoch_offsets(c, header_rows, header_epochs, first_epoch)
        steps = c.counter if steps is None else steps
        _add(values, c, steps)
        ok = np.isfinite(steps)
        known_rows.append(c.rows[ok])
        known_steps.append(steps[ok].astype(np.int64))
        taken.append(c.rows)
        read_kinds.append((c.kind, len(c.rows)))
    k_rows = np.concatenate(known_rows) if known_rows else np.zeros(0, np.int64)
    k_steps = np.concatenate(known_steps) if known_steps else np.zeros(0, np.int64)
    order = np.argsort(k_rows, kind="stable")
    k_rows, k_steps = k_rows[order], k_steps[order]
    notes: list[Note] = []
    for c in deferred:
        if not len(k_rows):
            continue
        at = np.searchsorted(k_rows, c.rows, side="right") - 1
        steps = np.where(at >= 0, k_steps[np.maximum(at, 0)], np.nan).astype(np.float64)
        _add(values, c, steps)
        taken.append(c.rows)
        read_kinds.append((c.kind, len(c.rows)))
        notes.append(Note("derived_step", f"{name}: {len(c.rows):,} {c.kind.layout.kind} line(s) count only their own "
                          f"batches (like {_quote(c.kind.example)}); each took the step of the training line before it",
                          count=len(c.rows)))
    if read_kinds:
        n = sum(k for _, k in read_kinds)
        shown = "; ".join(f"{k:,} like {_quote(kind.example)} (step: {kind.layout.step_key or 'epoch'})"
                          for kind, k in read_kinds[:3])
        more = f"; and {len(read_kinds) - 3} more kind(s)" if len(read_kinds) > 3 else ""
        notes.append(Note("layout", f"{name}: {n:,} metric line(s) read by their layout: {shown}{more}", count=n))
    if no_counter:
        notes.append(Note("no_step", f"{name}: {no_counter:,} line(s) hold named numbers but no step or epoch counter "
                          "(a final evaluation, a summary): not read as points", count=no_counter))
    all_taken = np.unique(np.concatenate(taken)) if taken else np.zeros(0, np.int64)
    return k_rows, k_steps, all_taken, notes


def _shows_a_log(c: _Counted) -> bool:
    """Named numbers over an advancing counter in enough lines; a kind counted by a leading integer or a
    key-less N/M must also print a measurement (not only counts)."""
    lay = c.kind.layout
    return lay.is_metric_line and _advancing(c.counter) and (lay.counter in ("step", "epoch") or lay.measured)


def _counter_name(layout: LineLayout) -> str:
    return layout.step_key.strip().lower() if layout.step is not None else "epoch"


def _quote(example: str, width: int = 90) -> str:
    text = example.strip()
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def _add(values: TextPoints, c: _Counted, steps: np.ndarray) -> None:
    ok = np.isfinite(steps)
    rows, st = c.rows[ok], steps[ok].astype(np.int64)
    for m in c.kind.layout.metrics:
        col = c.numbers.get_column(f"n{m.position}")
        if not ok.all():
            col = col.filter(pl.Series(ok))
        if m.scale != 1.0:
            col = col.cast(pl.Float64, strict=False) * m.scale
        values.add_column(m.tag, rows, st, col)
