"""Printed logs whose step and metrics are not on one line: blocks and tables.

Two layouts the line-by-line readers (`analyzer.ingest.text_patterns`, `analyzer.ingest.text_generic`)
cannot see, because no single line holds named numbers over a counter:

- *blocks*: a step printed on a line of its own, then one named number per line below it, as
  OLMo's trainer (``[step=10/739328]`` then ``    train/CrossEntropyLoss=10.85``) and Composer's
  console logger (``[batch=16/100]:`` then ``\\t Train loss/train/total: 7.21``) print;
- *tables*: a header line of column names, then one row of numbers per step or epoch, as fastai
  (``epoch  train_loss  valid_loss  accuracy  time``), spaCy (``E  #  LOSS TOK2VEC ...``) and a
  Trainer table copied from a notebook (``Step  Training Loss  Validation Loss``) print; columns
  split on tabs, runs of two or more spaces, or ``|`` (a markdown table).

Both read only the lines the line readers left, and only a layout that repeats (three blocks or
rows at least), with a counter the header names, so a config dump or a results table of numbers
is not taken for a training log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from analyzer.ingest.tabular import STEP_MAX, STEP_MIN, fractional_steps_note, step_out_of_range
from analyzer.ingest.text_layout import NUM_MARK, learn_layout
from analyzer.ingest.text_numbers import recipes
from analyzer.ingest.text_points import TextPoints
from analyzer.roles import EVAL_WORDS
from analyzer.types import Note

#: A layout is read when it repeats at least this often (blocks, or a table's rows).
MIN_REPEATS = 3

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?i:nan|inf|infinity)"
#: OLMo prints values above 1,000 with thousands separators.
_GROUPED = r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?"
#: One named number alone on a line (a block's item): a key that starts with a letter (up to five words:
#: ``Train loss/train/total``, ``optim/LR (group 0)``), ``=`` or ``:``, the number.
_ITEM = (rf"^\s*(?P<key>[A-Za-z_][^\s:=]*(?: [^\s:=]+){{0,4}}?)\s*[:=]\s*(?P<value>{_GROUPED}|{_NUMBER})"
         r"(?P<unit>ms|s|%)?\s*$")  # a unit joins the tag, as on a metric line (``time/step=2.3ms`` -> ``time/step_ms``)
_DIGIT_RUN = "[0-9]+"
#: The step of an evaluation block with no training block before it: its items are dropped, and counted.
NO_STEP = np.iinfo(np.int64).min


@dataclass(frozen=True)
class StackedRead:
    """What the stacked readers took from a log's remaining lines.

    Attributes:
        rows / steps: the line and step of every point-bearing line read (ascending rows), for placing messages.
        taken: every line used (headers, separator rules, items, table rows).
        notes: what was read, in words.
    """

    rows: np.ndarray
    steps: np.ndarray
    taken: np.ndarray
    notes: tuple[Note, ...]


_NOTHING = StackedRead(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), ())


def read_stacked(lines: pl.DataFrame, values: TextPoints, name: str) -> StackedRead:
    """Blocks, then tables, among ``lines`` (``row``, ``line``: the lines no line reader took) -> ``values``."""
    blocks = _read_blocks(lines, values, name)
    if len(blocks.taken):
        lines = without_rows(lines, blocks.taken)
    tables = _read_tables(lines, values, name)
    if not len(tables.taken):
        return blocks
    rows = np.concatenate([blocks.rows, tables.rows])
    order = np.argsort(rows, kind="stable")
    return StackedRead(rows[order], np.concatenate([blocks.steps, tables.steps])[order],
                       np.sort(np.concatenate([blocks.taken, tables.taken])), blocks.notes + tables.notes)


def without_rows(lines: pl.DataFrame, rows: np.ndarray) -> pl.DataFrame:
    """``lines`` but those at ``rows``."""
    return lines.filter(pl.Series(~np.isin(lines.get_column("row").to_numpy(), rows)))


# -- blocks -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Headers:
    """The header lines of one shape: their rows and steps, an example, and whether they head an evaluation."""

    rows: np.ndarray
    steps: np.ndarray
    example: str
    evaluation: bool


def _header_steps(headers: pl.DataFrame) -> _Headers | None:
    """The header lines of one shape when they are a counter with nothing measured beside it; None otherwise.

    Whole numbers with names may stand beside the counter (a logging prefix's ``host:0 olmo.train:816``);
    a measured value (``loss 2.31``) makes the line a metric line, which the line reader reads."""
    example = str(headers.get_column("line")[0])
    layout = learn_layout(example)
    if layout.measured:
        return None
    rows = headers.get_column("row").to_numpy().astype(np.int64)
    if layout.step is None and layout.epoch is None:
        # no counter: an evaluation's block when its items say so (OLMo heads eval metrics with the
        # evaluator's label, ``eval/<label>/CrossEntropyLoss=...``): at the step of the training block before it
        keys = headers.get_column("next_key").to_list()
        if all(k and set(re.split(r"[^a-z]+", k.lower())) & EVAL_WORDS for k in keys):
            return _Headers(rows, np.full(len(rows), NO_STEP, np.int64), example, True)
        return None
    made = recipes(example)

    def run_of(position: int | None) -> int | None:
        # the counter's digit run (a counter is an integer: one run, a sign at most beside it); the shape fixes
        # its index on every line
        if position is None or position >= len(made):
            return None
        parts = made[position][0]
        runs = [q for q in parts if isinstance(q, int)]
        return runs[0] if len(runs) == 1 and "".join(q for q in parts if isinstance(q, str)) in ("", "-", "+") else None

    runs = headers.get_column("line").str.extract_all(_DIGIT_RUN)
    position = layout.step if layout.step is not None else layout.epoch
    counter = run_of(position)
    if counter is None or position is None:
        return None

    def column(run: int, sign: int = 1) -> np.ndarray:
        values = runs.list.get(run).cast(pl.Int64, strict=False)
        if values.null_count():  # more digits than an int64 holds
            i = int(values.is_null().arg_true()[0])
            raise step_out_of_range(float(runs[i][run]), f"line {int(rows[i]) + 1}")
        return sign * values.to_numpy().astype(np.int64)

    # the shape keeps a sign printed before the digits: every line of it has one
    steps = column(counter, -1 if made[position][0][0] == "-" else 1)
    epoch, total = run_of(layout.epoch), run_of(layout.step_total)
    if layout.step is not None and layout.within_epoch and epoch is not None and total is not None:
        # a batch counter that starts again every epoch: (epoch - first epoch) x batches per epoch + batch
        epochs = column(epoch)
        steps = (epochs - epochs.min()) * column(total) + steps
    # an evaluation counting its own batches (Composer's ``[Eval batch=10/10] Eval on eval data:``)
    evaluation = layout.kind in EVAL_WORDS and layout.counter == "batch"
    if not evaluation and len(np.unique(steps)) * 2 < len(steps):
        return None  # a counter that does not advance (a finished progress bar, ``782/782``) heads no blocks
    return _Headers(rows, steps, example, evaluation)


def _placed(found: list[_Headers]) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, steps) of every header in row order; an evaluation's header takes the step of the training header
    before it (none before it: NO_STEP, it places nothing)."""
    training = [h for h in found if not h.evaluation]
    if not training:
        return None
    t_rows, t_steps = np.concatenate([h.rows for h in training]), np.concatenate([h.steps for h in training])
    order = np.argsort(t_rows)
    t_rows, t_steps = t_rows[order], t_steps[order]
    rows, steps = [t_rows], [t_steps]
    for h in found:
        if h.evaluation:
            before = np.searchsorted(t_rows, h.rows) - 1
            rows.append(h.rows)
            steps.append(np.where(before >= 0, t_steps[np.maximum(before, 0)], NO_STEP))
    all_rows, all_steps = np.concatenate(rows), np.concatenate(steps)
    order = np.argsort(all_rows)
    return all_rows[order], all_steps[order]


def _read_blocks(lines: pl.DataFrame, values: TextPoints, name: str) -> StackedRead:
    """A counter alone on a line, its metrics one per line below it."""
    if lines.height < 2 * MIN_REPEATS:
        return _NOTHING
    items = lines.get_column("line").str.extract_groups(_ITEM)
    is_item = items.struct.field("key").is_not_null().to_numpy()
    if is_item.sum() < MIN_REPEATS:
        return _NOTHING
    # a header is the line just before a block's first item
    before = np.zeros(lines.height, dtype=bool)
    before[:-1] = is_item[1:] & ~is_item[:-1]
    next_key = items.struct.field("key").shift(-1)
    candidates = (lines.with_columns(next_key.alias("next_key")).filter(pl.Series(before))
                  .with_columns(pl.col("line").str.replace_all(_DIGIT_RUN, NUM_MARK).alias("shape")))
    found = [h for (_,), group in candidates.partition_by("shape", as_dict=True, maintain_order=True).items()
             if group.height >= MIN_REPEATS and (h := _header_steps(group)) is not None]
    headers = _placed(found)
    if headers is None:
        return _NOTHING
    h_rows, h_steps = headers
    rows = lines.get_column("row").to_numpy().astype(np.int64)
    index = np.arange(lines.height)
    is_header = np.isin(rows, h_rows)
    # an item belongs to the header above it when nothing but items lies between them
    last_header = np.maximum.accumulate(np.where(is_header, index, -1))
    last_other = np.maximum.accumulate(np.where(~is_header & ~is_item, index, -1))
    member = is_item & (last_header > last_other) & (last_header >= 0)
    owner = np.searchsorted(h_rows, rows[last_header[member]])
    if int(member.sum()) < MIN_REPEATS:
        return _NOTHING
    item_rows, item_steps = rows[member], h_steps[owner]
    ok = item_steps != NO_STEP
    picked = items.filter(pl.Series(member)).filter(pl.Series(ok))
    frame = pl.DataFrame({"row": item_rows[ok], "step": item_steps[ok],
                          "key": picked.struct.unnest().select(pl.concat_str(
                              [pl.col("key"), pl.col("unit").replace({"%": "percent"})], separator="_",
                              ignore_nulls=True)).to_series(),
                          "value": picked.struct.field("value").str.replace_all(",", "", literal=True)})
    for (key,), part in frame.partition_by("key", as_dict=True, maintain_order=True).items():
        values.add_column(str(key), part.get_column("row").to_numpy(), part.get_column("step").to_numpy(),
                          part.get_column("value"))
    used = np.unique(owner)
    taken = np.sort(np.concatenate([h_rows[used], item_rows]))
    notes = [Note("layout", f"{name}: {len(used):,} block(s) of one metric per line under a step line read "
                  f"({int(ok.sum()):,} metric line(s)), like {_shown(found[0].example)}", count=int(ok.sum()))]
    if not ok.all():
        lost = int((~ok).sum())
        notes.append(Note("dropped", f"{name}: {lost:,} metric line(s) of evaluation blocks printed before any "
                          "training step were not used (no step to place them at)", count=lost))
    return StackedRead(item_rows[ok], item_steps[ok], taken, tuple(notes))


# -- tables -----------------------------------------------------------------------------------------------------

_COLUMN_SPLIT = re.compile(r"\t+| {2,}|\s*\|\s*")
#: A progress bar a row is the description of (ultralytics: ``... 640: 100%|██████████| 8/8 [00:02<00:00]``).
_BAR_TAIL = re.compile(r":?\s+\d{1,3}%\|.*$")
#: A counter cell printed as a fraction (ultralytics' ``1/55``): the count is its numerator.
_FRACTION_CELL = re.compile(r"^(\d+)/\d+$")
_RULE = re.compile(r"^[\s\-=|:+]+$")
_NUMERIC = re.compile(rf"^(?:{_NUMBER})$")
_STEP_COLUMNS = frozenset({"step", "steps", "iter", "iteration", "iterations", "it", "update", "updates",
                           "global_step", "global step", "#"})
_EPOCH_COLUMNS = frozenset({"epoch", "epochs", "ep", "e"})


def _columns(line: str) -> list[str]:
    inner = line.strip()
    if inner.startswith("|"):
        inner = inner.strip("|")
    return [c.strip() for c in _COLUMN_SPLIT.split(inner.strip())]


def _cells(line: str, markdown: bool, width: int) -> list[str]:
    """A row's cells: split as its header was (a cell may hold a space: the Trainer's ``No log``), else on any
    whitespace (a value as wide as its column leaves one space); a progress bar after the row is not a cell."""
    inner = line.strip()
    if markdown:
        return [c.strip() for c in inner.strip("|").split("|")]
    if "%|" in inner:
        inner = _BAR_TAIL.sub("", inner)
    columns = [c.strip() for c in _COLUMN_SPLIT.split(inner)]
    return columns if len(columns) == width else inner.split()


def _count(cell: str) -> str | None:
    """A counter cell's number as text (``1/55`` -> ``1``), None when it holds none."""
    if _NUMERIC.match(cell):
        return cell
    fraction = _FRACTION_CELL.match(cell)
    return fraction.group(1) if fraction else None


def _counter_column(names: list[str]) -> int | None:
    lowered = [n.lower() for n in names]
    for wanted in (_STEP_COLUMNS, _EPOCH_COLUMNS):
        for i, n in enumerate(lowered):
            if n in wanted:
                return i
    return None


def _header_candidates(lines: pl.DataFrame) -> list[int]:
    """Indices (into ``lines``) of lines that could head a table: two or more columns of names, no digit alone."""
    text = lines.get_column("line")
    # a column named exactly as a counter, between column breaks: cheap to test on every line, and rare
    counter = "|".join(re.escape(n) for n in sorted(_STEP_COLUMNS | _EPOCH_COLUMNS, key=len, reverse=True))
    column_break = r"\t| {2,}|\|"
    maybe = (text.str.contains(rf"(?i)(?:^|{column_break})\s*(?:{counter})\s*(?:$|{column_break})")
             & text.str.contains(column_break) & ~text.str.contains(r"[0-9]\s*$")).fill_null(False)
    return [int(i) for i in maybe.arg_true().to_list()]


def _read_tables(lines: pl.DataFrame, values: TextPoints, name: str) -> StackedRead:
    """A header of column names, then rows of numbers (a separator rule may follow the header)."""
    text = lines.get_column("line").to_list()
    rows = lines.get_column("row").to_numpy().astype(np.int64)
    tables: dict[tuple[str, ...], list[tuple[int, list[list[str]], list[int]]]] = {}
    used = np.zeros(len(text), dtype=bool)
    for h in _header_candidates(lines):
        if used[h]:
            continue
        names = _columns(text[h])
        counter = _counter_column(names)
        if len(names) < 2 or counter is None or any(_NUMERIC.match(n) for n in names):
            continue
        markdown = text[h].strip().startswith("|")
        at = h + 1
        if at < len(text) and _RULE.match(text[at]):
            at += 1
        while at < len(text) and not (text[at] or "").strip():  # ultralytics prints a blank line under its header
            at += 1
        body: list[list[str]] = []
        body_at: list[int] = []
        while at < len(text):
            cells = _cells(text[at] or "", markdown, len(names))
            count = _count(cells[counter]) if len(cells) == len(names) else None
            if count is None:
                break
            cells[counter] = count
            body.append(cells)
            body_at.append(at)
            at += 1
        if body:
            used[h:at] = True
            tables.setdefault(tuple(names), []).append((h, body, body_at))
    point_rows, point_steps, taken, notes = [], [], [], []
    for header, parts in tables.items():
        body_at = [i for _, _, b in parts for i in b]
        if len(body_at) < MIN_REPEATS:
            continue
        counter = _counter_column(list(header))
        assert counter is not None
        table = [row for _, body, _ in parts for row in body]
        at_rows = rows[np.asarray(body_at)]
        steps = np.asarray([float(c[counter]) for c in table])
        if not np.isfinite(steps).all():
            continue
        outside = (steps < STEP_MIN) | (steps >= STEP_MAX)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise step_out_of_range(float(steps[i]), f"line {int(rows[body_at[i]]) + 1}")
        steps_i = steps.astype(np.int64)
        for j, column in enumerate(header):
            if j != counter and column.lower() not in _STEP_COLUMNS | _EPOCH_COLUMNS:
                values.add_column(column, at_rows, steps_i, pl.Series(column, [c[j] for c in table], dtype=pl.String))
        point_rows.append(at_rows)
        point_steps.append(steps_i)
        taken.append(np.concatenate([rows[h:b[-1] + 1] for h, _, b in parts]))
        notes.append(Note("layout", f"{name}: a table of {len(header)} column(s) read ({len(body_at):,} row(s) "
                          f"under {len(parts):,} header line(s) like {_shown(text[parts[0][0]])}; step: "
                          f"{header[counter]!r})", count=len(body_at)))
        notes += fractional_steps_note(name, steps)
    if not point_rows:
        return _NOTHING
    r, s = np.concatenate(point_rows), np.concatenate(point_steps)
    order = np.argsort(r, kind="stable")
    return StackedRead(r[order], s[order], np.sort(np.concatenate(taken)), tuple(notes))


def _shown(line: str, width: int = 60) -> str:
    line = line.strip()
    return repr(line if len(line) <= width else line[: width - 3] + "...")
