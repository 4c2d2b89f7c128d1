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

from analyzer.ingest.text_layout import BAR_MARK, NUM_MARK, LineLayout, learn_layout
from analyzer.ingest.text_numbers import TOKEN, Recipe, recipes, runs_expression
from analyzer.roles import EVAL_WORDS
from analyzer.ingest.text_points import TextPoints
from analyzer.types import Note

#: A kind counted by a leading integer or a key-less N/M needs this many lines of its own.
MIN_LINES = 3
#: Progress-bar glyphs (block elements, box drawing, and Keras' ``[=====>....]``): they change with
#: every redraw, so they are folded in the template.
_BAR_GLYPHS = re.compile(r"[\u2580-\u259f\u2500-\u257f][\u2580-\u259f\u2500-\u257f ]*|\[[=>.]{3,}\]")
_SPACES = re.compile(r"\s+")
_TOKEN = re.compile(TOKEN)
NONFINITE_WORD = r"(?i)\b(?:nan|inf|infinity)\b"


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


@dataclass(frozen=True)
class _Shape:
    """Lines whose text is the same but for their digits (one such example is read for the whole shape)."""

    example: str
    recipes: list[Recipe]
    lines: pl.DataFrame  # row, line


def line_kinds(lines: pl.DataFrame) -> tuple[list[LineKind], int, dict[int, list[_Shape]]]:
    """The metric line kinds and epoch-header kinds among ``lines`` (``row``, ``line``), most lines first; how
    many lines hold named numbers but no counter (they are not read); and the shapes of each kind's lines."""
    # lines with a number in them (a NaN printed as a word is a number: ``val loss nan``)
    candidates = lines.filter((pl.col("line").str.contains("[0-9]") | pl.col("line").str.contains(NONFINITE_WORD))
                              .fill_null(False))
    if candidates.is_empty():
        return [], 0, {}
    # Lines that differ only in their digits have one template: one cheap pass finds them, and the number
    # tokens of one example per shape are read in Python.
    shaped = candidates.with_columns(pl.col("line").str.replace_all("[0-9]+", NUM_MARK).alias("shape"))
    groups = shaped.group_by("shape", maintain_order=True).agg(pl.len().alias("n"),
                                                                pl.col("line").first().alias("example"))
    folded: dict[str, tuple[list[str], str, int]] = {}
    for shape, n, example in groups.iter_rows():
        template = _fold(_TOKEN.sub(lambda m: NUM_MARK + (m.group("ua") or m.group("ub") or ""), example))
        shapes, first, count = folded.get(template, ([], example, 0))
        shapes.append(shape)
        folded[template] = (shapes, first, count + n)
    kinds: list[tuple[str, str, LineLayout, list[str], int]] = []
    no_counter = 0
    for template, (shapes, example, n) in folded.items():
        if NUM_MARK not in template or not re.search(r"[A-Za-z]", template):
            continue
        layout = learn_layout(example)
        if layout.is_metric_line or layout.is_header or (layout.is_stepless_evaluation and n >= 2):
            kinds.append((template, example, layout, shapes, n))
        elif layout.metrics:
            no_counter += n
    if not kinds:
        return [], no_counter, {}
    kinds.sort(key=lambda k: -k[4])
    index = pl.DataFrame({"shape": [sh for k in kinds for sh in k[3]],
                          "id": list(range(sum(len(k[3]) for k in kinds)))}, schema={"shape": pl.String,
                                                                                      "id": pl.Int32})
    taken = shaped.join(index, on="shape", how="inner", maintain_order="left")
    parts = {int(i): part.select("row", "line") for (i,), part in taken.partition_by("id", as_dict=True).items()}
    shapes_of: dict[int, list[_Shape]] = {}
    out: list[LineKind] = []
    shape_id = 0
    for i, (template, example, layout, shapes, _) in enumerate(kinds):
        mine = []
        for _ in shapes:
            part = parts[shape_id]
            mine.append(_Shape(part.get_column("line")[0], recipes(part.get_column("line")[0]), part))
            shape_id += 1
        shapes_of[i] = mine
        rows = np.sort(np.concatenate([sh.lines.get_column("row").to_numpy().astype(np.int64) for sh in mine]))
        out.append(LineKind(template, example, layout, rows))
    return out, no_counter, shapes_of


def _numbers(shapes: list[_Shape], n_numbers: int) -> pl.DataFrame:
    """The numbers of a kind's lines (Float64 columns ``n0``.. by position), in row order."""
    frames = []
    for sh in shapes:
        runs = sh.lines.select("row", pl.col("line").str.extract_groups(runs_expression(sh.example)).alias("r"))
        runs = runs.unnest("r")
        columns = []
        for j, (parts, constant) in enumerate(sh.recipes[:n_numbers]):
            if constant is not None:
                columns.append(pl.lit(constant, dtype=pl.Float64).alias(f"n{j}"))
                continue
            pieces = [pl.lit(p) if isinstance(p, str) else pl.col(f"r{p}") for p in parts]
            text = pieces[0] if len(pieces) == 1 else pl.concat_str(pieces)
            columns.append(text.cast(pl.Float64, strict=False).alias(f"n{j}"))
        frames.append(runs.select("row", *columns))
    got = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal")
    return got.sort("row") if len(frames) > 1 else got


def _column(numbers: pl.DataFrame, position: int | None) -> np.ndarray | None:
    """The numbers at ``position`` (NaN where not finite), or None without a position."""
    if position is None:
        return None
    x = numbers.get_column(f"n{position}").to_numpy()
    return np.where(np.isfinite(x), x, np.nan)


@dataclass
class _Counted:
    kind: LineKind
    rows: np.ndarray
    numbers: pl.DataFrame
    counter: np.ndarray  # float: NaN where the line holds none readable
    epoch: np.ndarray | None
    total: np.ndarray | None
    steps: np.ndarray | None = None  # global steps (the epoch's offset added to a batch counter)


def _advancing(counter: np.ndarray) -> bool:
    ok = counter[np.isfinite(counter)]
    if len(ok) < MIN_LINES:
        return False
    step = np.diff(ok)
    return bool(np.any(step != 0)) and bool(np.mean(step >= 0) >= 0.8)


@dataclass(frozen=True)
class _Epochs:
    """The epoch of each line from the ``Epoch 3/10`` header lines before it, and the first epoch's number."""

    header_rows: np.ndarray
    header_epochs: np.ndarray
    first: float

    def at(self, rows: np.ndarray) -> np.ndarray | None:
        if not len(self.header_rows):
            return None
        at = np.searchsorted(self.header_rows, rows, side="right") - 1
        return np.where(at >= 0, self.header_epochs[np.maximum(at, 0)], np.nan)


def _epochs(counted: list[_Counted]) -> _Epochs:
    headers = [c for c in counted if c.kind.layout.is_header]
    rows = np.concatenate([c.rows for c in headers]) if headers else np.zeros(0, np.int64)
    epochs = np.concatenate([c.counter for c in headers]) if headers else np.zeros(0)
    order = np.argsort(rows, kind="stable")
    seen = np.concatenate([epochs] + [c.epoch for c in counted if c.epoch is not None])
    seen = seen[np.isfinite(seen)]
    return _Epochs(rows[order], epochs[order], 0.0 if len(seen) and seen.min() == 0 else 1.0)


def _global_steps(c: _Counted, epochs: _Epochs) -> np.ndarray:
    """The steps of a kind's lines: its counter, or for a batch counter within an epoch the epoch's offset
    (``(epoch - first epoch) x batches per epoch``) plus the batch."""
    epoch = c.epoch if c.epoch is not None else epochs.at(c.rows)
    if epoch is None or not np.isfinite(epoch).any():
        return c.counter
    within = c.kind.layout.within_epoch
    if not within:  # a keyed step counter: within the epoch when it starts again as the epoch changes
        ok = np.isfinite(c.counter) & np.isfinite(epoch)
        back = np.diff(c.counter[ok]) < 0
        new_epoch = np.diff(epoch[ok]) > 0
        within = bool(back.any()) and bool(np.all(new_epoch[back]))
    if not within:
        return c.counter
    if c.total is not None and np.isfinite(c.total).any():
        per_epoch = np.where(np.isfinite(c.total), c.total, np.nanmax(c.total))
    else:
        ok = c.counter[np.isfinite(c.counter)]
        per_epoch = np.full(len(c.counter), float(ok.max() + (1 if ok.min() == 0 else 0)) if len(ok) else np.nan)
    return (epoch - epochs.first) * per_epoch + c.counter


def _count(kinds: list[LineKind], shapes_of: dict[int, list[_Shape]]) -> list[_Counted]:
    counted: list[_Counted] = []
    for index, kind in enumerate(kinds):
        numbers = _numbers(shapes_of[index], kind.template.count(NUM_MARK))
        lay = kind.layout
        pos = lay.step if lay.step is not None else lay.epoch
        counter = _column(numbers, pos)
        counted.append(_Counted(kind, kind.rows, numbers, counter if counter is not None else
                                np.full(len(kind.rows), np.nan),
                                _column(numbers, lay.epoch) if lay.step is not None else None,
                                _column(numbers, lay.step_total)))
    epochs = _epochs(counted)
    for c in counted:
        c.steps = _global_steps(c, epochs)
    return counted


def read_generic(lines: pl.DataFrame, values: TextPoints, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                               list[Note]]:
    """Read the metric lines among ``lines`` (``row``, ``line``) into ``values``.

    Returns the rows and steps of the lines read (for placing messages), the rows of every line
    taken (metric and epoch-header lines), and notes.
    """
    kinds, no_counter, shapes_of = line_kinds(lines)
    counted = _count(kinds, shapes_of)
    # Kinds that show a training log by themselves; other kinds are read when they share a counter with one
    # (``step:1000 churn:0.0`` beside ``step:N/M train_loss:X``, an evaluation counting its own batches), never a
    # config line whose key is a counter word.
    shown = [c for c in counted if _shows_a_log(c)]
    confirmed = {_counter_name(c.kind.layout) for c in shown}
    confirmed_tags = {m.tag for c in shown for m in c.kind.layout.metrics}
    taken: list[np.ndarray] = []
    known_rows: list[np.ndarray] = []
    known_steps: list[np.ndarray] = []
    deferred: list[_Counted] = []
    read_kinds: list[tuple[LineKind, int]] = []
    for c in counted:
        lay = c.kind.layout
        evaluation = (lay.kind in EVAL_WORDS and lay.counter == "batch" and lay.measured) or lay.is_stepless_evaluation
        if lay.is_header:
            if confirmed:
                taken.append(c.rows)
            continue
        same_counter = _counter_name(lay) in confirmed
        # a rare variant of a confirmed kind (its NaN lines, its last line): the same counter and metric names
        variant = same_counter and bool({m.tag for m in lay.metrics} & confirmed_tags)
        if not (_shows_a_log(c) or (confirmed and (evaluation or variant or (lay.counter in ("step", "epoch")
                                                                            and same_counter)))):
            continue
        if evaluation:
            deferred.append(c)  # an evaluation's own batches: it belongs to the training step before it
            continue
        assert c.steps is not None
        _add(values, c, c.steps)
        ok = np.isfinite(c.steps)
        known_rows.append(c.rows[ok])
        known_steps.append(c.steps[ok].astype(np.int64))
        taken.append(c.rows)
        read_kinds.append((c.kind, len(c.rows)))
    k_rows = np.concatenate(known_rows) if known_rows else np.zeros(0, np.int64)
    k_steps = np.concatenate(known_steps) if known_steps else np.zeros(0, np.int64)
    order = np.argsort(k_rows, kind="stable")
    k_rows, k_steps = k_rows[order], k_steps[order]
    notes = _place_evaluations(deferred, k_rows, k_steps, values, taken, read_kinds, name)
    notes += _notes(read_kinds, no_counter, name)
    all_taken = np.sort(np.concatenate(taken)) if taken else np.zeros(0, np.int64)  # kinds hold disjoint lines
    return k_rows, k_steps, all_taken, notes


def _place_evaluations(deferred: list[_Counted], k_rows: np.ndarray, k_steps: np.ndarray, values: TextPoints,
                       taken: list[np.ndarray], read_kinds: list[tuple[LineKind, int]], name: str) -> list[Note]:
    notes: list[Note] = []
    for c in deferred:
        if not len(k_rows):
            continue
        # the training line before; before the first one, the first one's step (an evaluation at the start)
        at = np.searchsorted(k_rows, c.rows, side="right") - 1
        steps = k_steps[np.maximum(at, 0)].astype(np.float64)
        _add(values, c, steps)
        taken.append(c.rows)
        read_kinds.append((c.kind, len(c.rows)))
        what = "print no step" if c.kind.layout.is_stepless_evaluation else "count only their own batches"
        notes.append(Note("derived_step", f"{name}: {len(c.rows):,} evaluation line(s) {what} (like "
                          f"{_quote(c.kind.example)}); each took the step of the training line before it",
                          count=len(c.rows)))
    return notes


def _counter_words(layout: LineLayout) -> str:
    """Where a kind of line's step comes from, for the note that lists the kinds read."""
    if layout.step_key:
        return layout.step_key
    if layout.epoch is not None:
        return "epoch"
    return "the training line before it"


def _notes(read_kinds: list[tuple[LineKind, int]], no_counter: int, name: str) -> list[Note]:
    notes: list[Note] = []
    if read_kinds:
        n = sum(k for _, k in read_kinds)
        shown = "; ".join(f"{k:,} like {_quote(kind.example)} (step: {_counter_words(kind.layout)})"
                          for kind, k in read_kinds[:3])
        more = f"; and {len(read_kinds) - 3} more kind(s)" if len(read_kinds) > 3 else ""
        notes.append(Note("layout", f"{name}: {n:,} metric line(s) read by their layout: {shown}{more}", count=n))
    if no_counter:
        notes.append(Note("no_step", f"{name}: {no_counter:,} line(s) hold named numbers but no step or epoch counter "
                          "(a final evaluation, a summary): not read as points", count=no_counter))
    return notes


def _shows_a_log(c: _Counted) -> bool:
    """Named numbers over an advancing counter in enough lines; a kind counted by a leading integer or a
    key-less N/M must also print a measurement (not only counts)."""
    lay = c.kind.layout
    steps = c.steps if c.steps is not None else c.counter
    return lay.is_metric_line and _advancing(steps) and (lay.counter in ("step", "epoch") or lay.measured)


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
            col = col * m.scale
        values.add_column(m.tag, rows, st, col)
