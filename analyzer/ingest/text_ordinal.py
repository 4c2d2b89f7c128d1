"""Printed logs that print no step at all: ``print(f"training loss: {loss.item()}")`` once per step.

The last resort of the text reader (`analyzer.ingest.textlog`), taken only when no line of the file
has a counter (no known pattern, no layout of `text_generic`, no block or table of `text_stacked`):
the most common kind of line that holds a loss (its layout learned by
`analyzer.ingest.text_layout.learn_layout`) and repeats is read in order, the k-th such line at step k,
and a note says so (the script's logging interval is unknown: steps count printed lines). Evaluation
lines that print no step (``validation loss: 2.41``) take the step of the training line before them
(step 0 before the first); an evaluation line a known tool's pattern claims keeps that tool's rule
(build-nanogpt's ``validation loss: X`` takes the step of the line after it). Lines of the same metrics that
printed NaN or inf are the same kind.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from analyzer.ingest.text_generic import NONFINITE_WORD
from analyzer.ingest.text_layout import NUM_MARK, LineLayout, learn_layout
from analyzer.ingest.text_numbers import TOKEN
from analyzer.ingest.text_points import TextPoints
from analyzer.roles import assign_roles
from analyzer.types import Note

#: The training kind must print at least this many lines.
MIN_LINES = 3
#: At most this many of the most common line shapes are read for their layout (a noisy log has many shapes).
MAX_SHAPES = 200
_NUMBER_PART = r"^[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?|^[-+]?(?i:nan|inf(?:inity)?)"


def _shapes(lines: pl.DataFrame) -> list[tuple[str, int, LineLayout, pl.DataFrame]]:
    """(shape, lines, layout, the lines) of the most common shapes holding named numbers and no counter."""
    candidates = lines.filter((pl.col("line").str.contains("[0-9]") | pl.col("line").str.contains(NONFINITE_WORD))
                              .fill_null(False))
    if candidates.is_empty():
        return []
    shaped = candidates.with_columns(pl.col("line").str.replace_all("[0-9]+", NUM_MARK)
                                     .str.replace_all(NONFINITE_WORD, NUM_MARK).alias("shape"))
    counts = shaped.group_by("shape").agg(pl.len().alias("n"), pl.col("line").first().alias("example"))
    out = []
    for shape, n, example in counts.sort("n", descending=True).head(MAX_SHAPES).iter_rows():
        layout = learn_layout(example)
        if layout.metrics and layout.step is None and layout.epoch is None and layout.measured:
            out.append((shape, n, layout, shaped.filter(pl.col("shape") == shape).select("row", "line")))
    return out


def _tags(layout: LineLayout) -> tuple[str, ...]:
    return tuple(m.tag for m in layout.metrics)


def _numbers(lines: pl.DataFrame, layout: LineLayout) -> dict[str, pl.Series]:
    """Each metric's values on ``lines`` (all of one shape: the same token positions on every line)."""
    tokens = lines.get_column("line").str.extract_all(TOKEN)
    out = {}
    for m in layout.metrics:
        text = tokens.list.get(m.position, null_on_oob=True).str.extract(f"({_NUMBER_PART})")
        out[m.tag] = text.cast(pl.Float64, strict=False) * m.scale
    return out


def read_ordinal(lines: pl.DataFrame, values: TextPoints, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                            list[Note]]:
    """The training lines of ``lines`` at steps 1, 2, ... and evaluation lines at the step before them ->
    ``values``: (rows and steps of the lines read, the rows taken, notes); nothing when no kind qualifies."""
    nothing: tuple[np.ndarray, np.ndarray, np.ndarray, list[Note]] = (np.empty(0, np.int64), np.empty(0, np.int64),
                                                                      np.empty(0, np.int64), [])
    shapes = _shapes(lines)
    training = [s for s in shapes if not s[2].is_stepless_evaluation and assign_roles(
        {t: s[1] for t in _tags(s[2])}).train_loss is not None]
    if not training:
        return nothing
    main = max(training, key=lambda s: s[1])
    kind = [s for s in training if _tags(s[2]) == _tags(main[2])]
    n_lines = sum(s[1] for s in kind)
    if n_lines < MIN_LINES:
        return nothing
    train_rows = np.sort(np.concatenate([s[3].get_column("row").to_numpy().astype(np.int64) for s in kind]))
    train_steps = np.arange(1, len(train_rows) + 1, dtype=np.int64)
    evaluations = [s for s in shapes if s[2].is_stepless_evaluation]
    for shape in kind + evaluations:
        rows = shape[3].get_column("row").to_numpy().astype(np.int64)
        if shape in kind:
            steps = train_steps[np.searchsorted(train_rows, rows)]
        else:  # the training line printed before it; step 0 before the first
            before = np.searchsorted(train_rows, rows) - 1
            steps = np.where(before >= 0, train_steps[np.maximum(before, 0)], 0)
        for tag, column in _numbers(shape[3], shape[2]).items():
            values.add_column(tag, rows, steps, column)
    taken = np.sort(np.concatenate([s[3].get_column("row").to_numpy().astype(np.int64) for s in kind + evaluations]))
    # every line read, at its step, for placing messages
    before = np.searchsorted(train_rows, taken, side="right") - 1
    steps = np.where(before >= 0, train_steps[np.maximum(before, 0)], 0)
    note = Note("layout", f"{name}: no line prints a step: {n_lines:,} line(s) like {main[3].get_column('line')[0]!r} "
                "read in order, the k-th at step k (steps count printed lines: multiply by the script's logging "
                "interval for optimizer steps)", count=n_lines)
    return taken, steps, taken, [note]
