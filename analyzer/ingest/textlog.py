"""Text logs: a training job's stdout (a Slurm .out file, a console capture), recognised by content.

`sniff` reads the head of a file (and a window from its middle) and names the dialects whose
metric lines it holds; `read_text_log` reads every line of the file. The dialects and their line
patterns are in `analyzer.ingest.text_patterns` (megatron, nemo, nanogpt, hf_trainer_print,
fairseq_text); lines of any other layout are read by `text_stacked` and `text_generic`.

Every line is accounted for: read as a metric line, read as an instability message, ignored as
noise (warnings, progress bars, tracebacks, other prints: counted in a note), or reported (a line
a pattern claimed but that could not be read: counted as dropped). Progress bars that redraw
with ``\\r`` are split into their redraws, ANSI colour codes are removed, a number printed as a tensor or
numpy scalar (``tensor(2.31, device='cuda:0')``, ``np.float32(2.31)``) is read as the number, CRLF is LF, bytes
that are not UTF-8 become U+FFFD, and a cut-off last line is not read (a cut number would be a wrong value).

Instability messages in the same output become points on dedicated tags: at each step where at
least one appeared, the number of such message lines placed there (every rank that prints one
counts), or for the loss scale the last scale announced:

- ``log_events/overflow_skip``: mixed-precision gradient overflows that skipped the optimizer step
  (apex "Gradient overflow.  Skipping step", DeepSpeed "OVERFLOW! ... Skipping step" and "Grad
  overflow on iteration", fairseq "gradient overflow detected").
- ``log_events/loss_scale``: the new loss scale a message announces ("reducing loss scale to X",
  "Attempted loss scale: X, reducing to Y" -> Y, fairseq "setting loss scale to: X").
- ``log_events/nan_warning``: NaN/inf warnings about a loss, a gradient or a tensor.
- ``log_events/oom``: out-of-memory errors.

A message's step is the step of the last metric line before it (the next one before the first).

Examples
--------
>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "job.out"
>>> _ = p.write_text("".join(f"iter {i}: loss {3 - i / 10:.4f}, time 10.00ms, mfu 30.00%\\n" for i in range(4)))
>>> dialect = sniff(p)
>>> dialect.name
'nanogpt'
>>> points, notes = read_text_log(p, dialect)
>>> sorted(points.tags), points.steps.tolist()[:4]
(['loss', 'mfu_percent', 'time_ms'], [0, 1, 2, 3])
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest.text_generic import read_generic
from analyzer.ingest.text_items import LineItems, count_notes, items_of
from analyzer.ingest.text_lines import BLOCK_BYTES, ahead, blocks, clean, lines_of as _lines, plain_numbers
from analyzer.ingest.text_points import TextPoints
from analyzer.ingest.text_ordinal import read_ordinal
from analyzer.ingest.text_stacked import read_stacked, without_rows
from analyzer.ingest.text_stream import PatternStream, claim, line_steps
from analyzer.ingest.text_patterns import DIALECTS, EVENT_PATTERNS, LINE_PATTERNS, LinePattern
from analyzer.types import Note

#: sniff reads this much of the head, and a window this big from the middle of a larger file
#: (a job's preamble -- argument dumps, NCCL chatter -- can fill the head without one metric line).
SNIFF_HEAD_BYTES = 1 << 20
SNIFF_MIDDLE_BYTES = 1 << 18
#: A dialect is claimed when this many sampled lines are its metric lines, or at least 2 are and
#: they are half the non-blank sampled lines (a short log).
SNIFF_MIN_LINES = 3
#: The dialect name of lines read by their learned layout (analyzer.ingest.text_generic).
GENERIC = "any layout"


@dataclass(frozen=True)
class TextDialect:
    """What `sniff` found in a text log.

    Attributes:
        names: the dialects whose metric lines the sample holds, most lines first.
        matched_lines: sampled lines that are metric lines of those dialects.
        sampled_lines: non-blank lines sampled.
    """

    names: tuple[str, ...]
    matched_lines: int
    sampled_lines: int

    @property
    def name(self) -> str:
        """The main dialect (the one with the most sampled lines)."""
        return self.names[0]


def _sample(path: Path) -> tuple[bytes, bool]:
    """The head of the file and, for a larger file, a window from its middle (whole lines only); and
    whether the middle was sampled."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        if size <= SNIFF_HEAD_BYTES + SNIFF_MIDDLE_BYTES:
            return fh.read(), False
        head = fh.read(SNIFF_HEAD_BYTES)
        fh.seek(size // 2)
        middle = fh.read(SNIFF_MIDDLE_BYTES)
    # The cut ends of both windows could read as half a metric line.
    return head[: head.rfind(b"\n") + 1] + middle[middle.find(b"\n") + 1: middle.rfind(b"\n") + 1], True


def sniff(path: Path) -> TextDialect:
    """The dialects of a text log, from its head; LogFormatError saying why when it is not one.

    Cheap: reads at most ~1.25 MB. A dialect needs `SNIFF_MIN_LINES` metric lines in the sample
    (or 2 that are half of a short file), so JSONL, CSV and prose are not claimed.
    """
    sample, middle = _sample(path)
    data = clean(sample)
    if b"\x00" in data[:4096]:
        raise LogFormatError("binary content (NUL bytes in its head): not a text log")
    lines = _lines(data).to_frame().with_row_index("row")
    counts = {d: 0 for d in DIALECTS}
    claimed, rest = claim(lines, list(LINE_PATTERNS))
    rest = plain_numbers(rest)
    for p, got in claimed:
        counts[p.dialect] += got.height
    total = rest.height + sum(counts.values())
    found = sorted((d for d, k in counts.items() if k >= SNIFF_MIN_LINES or (k >= 2 and 2 * k >= total)),
                   key=lambda d: -counts[d])
    if not found:
        # a step on a line of its own or a table, then any line-by-line layout, as read_text_log reads them
        stacked = read_stacked(rest, TextPoints(path.name), path.name)
        k_rows, _, _, _ = read_generic(without_rows(rest, stacked.taken), TextPoints(path.name), path.name)
        counts[GENERIC] = len(k_rows) + len(stacked.rows)
        if not counts[GENERIC]:
            counts[GENERIC] = len(read_ordinal(rest, TextPoints(path.name), path.name)[0])
        if counts[GENERIC] >= SNIFF_MIN_LINES:
            found = [GENERIC]
    if not found:
        where = f"the {total:,} non-blank line(s) sampled from its head" + (" and middle" if middle else "")
        best = max(DIALECTS, key=lambda d: counts[d])
        if counts[best]:
            raise LogFormatError(f"only {counts[best]} {best} metric line(s) in {where}: too few to tell a training "
                                 f"log from other text (at least {SNIFF_MIN_LINES} needed)")
        raise LogFormatError(f"no line holds named numbers over a step counter (like 'step 100 | loss 2.31') in {where}"
                             f": not a text training log; sampled: {_show(rest)}")
    return TextDialect(tuple(found), sum(counts[d] for d in found), total)


def _show(lines: pl.DataFrame, k: int = 3, width: int = 60) -> str:
    """The first ``k`` non-blank lines of a sample, shortened, for a refusal."""
    shown = []
    for text in lines.get_column("line").head(50).to_list():
        if text and text.strip():
            text = text.strip()
            shown.append(repr(text if len(text) <= width else text[: width - 3] + "..."))
        if len(shown) == k:
            break
    return ", ".join(shown) or "(nothing but blank lines)"


def _place(rows: np.ndarray, known_rows: np.ndarray, known_steps: np.ndarray, *, after: bool) -> tuple[np.ndarray,
                                                                                                        int]:
    """Steps for lines at ``rows`` from the metric lines around them: the one before (``after``=False: the
    one after), falling back to the other side; also how many fell back."""
    if after:
        idx = np.searchsorted(known_rows, rows, side="left")
        fallback = idx >= len(known_rows)
        idx = np.where(fallback, len(known_rows) - 1, idx)
    else:
        idx = np.searchsorted(known_rows, rows, side="right") - 1
        fallback = idx < 0
        idx = np.where(fallback, 0, idx)
    return known_steps[idx], int(fallback.sum())


@dataclass
class _Lines:
    """What reading a text log's lines block by block leaves: each pattern's share, the unclaimed lines."""

    streams: list[PatternStream]
    rest: list[pl.DataFrame]
    n_lines: int = 0
    unterminated: bool = False
    claimed_lines: int = 0


def read_text_log(path: Path, dialect: TextDialect, *, block_bytes: int | None = BLOCK_BYTES) -> tuple[RawPoints,
                                                                                                        list[Note]]:
    """Points and notes of one text log in the given dialect(s); LogFormatError when a step does not fit an int64.

    In four steps, each reading what the ones before left: the lines a known pattern claims, the lines of those
    patterns that print no step, metric lines of any layout, then instability messages; the rest is noise.
    The file is read in blocks of about ``block_bytes`` (None: at once), with the same result (`text_lines`,
    `text_stream`): a block holds its lines' numbers, not its text, so memory follows the numbers."""
    patterns = [p for p in LINE_PATTERNS if p.dialect in dialect.names]
    try:
        read: _Lines | None = _read_lines(path, patterns, block_bytes)
    except LogFormatError:
        if block_bytes is None:
            raise
        read = None  # the whole file names the first such line of the first pattern
    if read is None or not all(s.agrees() for s in read.streams):
        read = _read_lines(path, patterns, None)
    return _points(read, dialect, path.name)


def _read_lines(path: Path, patterns: list[LinePattern], block_bytes: int | None) -> _Lines:
    """Every block's lines: claimed by a pattern (`PatternStream.take`) or kept as unclaimed."""
    read = _Lines([PatternStream(p, path.name) for p in patterns], [])
    for block_no, block in enumerate(ahead(blocks(path, block_bytes))):
        lines = block.lines
        read.n_lines += lines.height
        read.unterminated = block.unterminated
        claimed, rest = claim(lines, patterns)
        read.rest.append(plain_numbers(rest))
        for stream, (p, got) in zip(read.streams, claimed):
            if got.is_empty():
                continue
            stream.seen = True
            read.claimed_lines += got.height
            if block.unterminated and int(got.get_column("row")[-1]) == read.n_lines - 1:
                got = got.head(got.height - 1)  # a cut number would be a wrong value
                stream.truncated = True
            if p.step_from == "ordinal":  # a tqdm bar redrawn just before the line may hold the step
                first = int(lines.get_column("row")[0])
                before = (got.get_column("row").cast(pl.Int64) - 1).clip(0, None) - first + 1
                context = pl.concat([pl.Series("line", [block.before], pl.String), lines.get_column("line")])
                got = got.with_columns(context.gather(before).alias("previous"))
            stream.take(got, block_no)
    return read


def _points(read: _Lines, dialect: TextDialect, name: str) -> tuple[RawPoints, list[Note]]:
    """The points and notes of the lines read."""
    values = TextPoints(name)
    rest = pl.concat(read.rest) if len(read.rest) > 1 else read.rest[0]
    read.rest = []
    k_rows, k_steps, deferred, notes = _read_claimed(read.streams, values, name)
    counted = len(k_rows) > 0
    if counted:
        notes += _place_deferred(deferred, k_rows, k_steps, values, name)
    rest, k_rows, k_steps, generic_lines, generic_notes = _read_any_layout(rest, read.n_lines, read.unterminated,
                                                                           k_rows, k_steps, values, name)
    notes += generic_notes
    if not counted:  # lines that take a neighbour's step, once the lines of any layout are read
        notes += _place_deferred(deferred, k_rows, k_steps, values, name)
    event_rows, event_notes = _events(rest, k_rows, k_steps, values)
    notes += event_notes
    noise = rest.height - event_rows
    if noise:
        blank = read.n_lines - rest.height - read.claimed_lines - generic_lines
        notes.append(Note("noise", f"{name}: {noise:,} of {read.n_lines:,} line(s) are no metric line of "
                          f"{'/'.join(dialect.names)} and were ignored (warnings, progress bars, tracebacks, other "
                          f"prints; {blank:,} more are blank)", count=noise))
    points, value_notes = values.points()
    return points, notes + value_notes


def _read_claimed(streams: list[PatternStream], values: TextPoints, name: str) -> tuple[np.ndarray, np.ndarray,
                                                                                       list[tuple[LinePattern,
                                                                                                  LineItems]],
                                                                                       list[Note]]:
    """The lines a known pattern claimed -> ``values``: (rows and steps of the metric lines in row order, the
    lines that take a neighbour's step, notes)."""
    notes: list[Note] = []
    known_rows: list[np.ndarray] = []
    known_steps: list[np.ndarray] = []
    deferred: list[tuple[LinePattern, LineItems]] = []
    for s in streams:
        p = s.p
        if not s.seen:
            continue
        if s.truncated:
            notes.append(Note("truncated", f"{name}: the last line is cut off (an interrupted write); it was not "
                              "read", count=1))
        if s.streamed:
            notes += count_notes(p, s.counts, name)
            without = s.without
            rows, steps = s.replay(values)
        else:
            parsed = items_of(p, pl.concat(s.held) if len(s.held) > 1 else s.held[0], name)
            s.held = []
            notes += parsed.notes
            if p.step_from in ("previous", "next"):
                deferred.append((p, parsed))
                continue
            rows, steps = line_steps(parsed.lines, name)
            without = parsed.lines.height - len(rows)
            values.add(parsed, rows, steps, p)
        if without:
            notes.append(Note("dropped", f"{name}: {without} {p.name} line(s) without a readable step were not read",
                              count=without))
        known_rows.append(rows)
        known_steps.append(steps)
    k_rows = np.concatenate(known_rows) if known_rows else np.zeros(0, np.int64)
    k_steps = np.concatenate(known_steps) if known_steps else np.zeros(0, np.int64)
    # Patterns are read one after another; messages and step-less lines are placed by row, so rows must be in order.
    order = np.argsort(k_rows, kind="stable")
    return k_rows[order], k_steps[order], deferred, notes


def _place_deferred(deferred: list[tuple[LinePattern, LineItems]], k_rows: np.ndarray, k_steps: np.ndarray,
                    values: TextPoints, name: str) -> list[Note]:
    """Lines that print no step -> ``values`` at the step of the metric line before (or after) them; notes."""
    notes: list[Note] = []
    for p, parsed in deferred:
        n = parsed.lines.height
        if not len(k_rows):
            notes.append(Note("dropped", f"{name}: {n} {p.name} line(s) with no metric line to take a step from were "
                              "not read", count=n))
            continue
        rows = parsed.lines.get_column("row").to_numpy().astype(np.int64)
        steps, _ = _place(rows, k_rows, k_steps, after=p.step_from == "next")
        values.add(parsed, rows, steps, p)
        side = "after" if p.step_from == "next" else "before"
        notes.append(Note("derived_step", f"{name}: {n} {p.name} line(s) print no step; each took the step of the "
                          f"metric line {side} it", count=n))
    return notes


def _read_any_layout(rest: pl.DataFrame, n_lines: int, unterminated: bool, k_rows: np.ndarray, k_steps: np.ndarray,
                     values: TextPoints, name: str) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, int, list[Note]]:
    """Blocks and tables, then metric lines of any layout, among the lines no pattern claimed -> ``values``: (the
    lines still unread, the metric lines' rows and steps with these merged in row order, how many lines were read,
    notes). Blocks first: their item lines are named numbers without a counter, which the line reader counts as
    unread."""
    # A cut-off last line is not read (a cut number would be a wrong value).
    whole = rest.filter(pl.col("row") < n_lines - 1) if unterminated else rest
    stacked = read_stacked(whole, values, name)
    if len(stacked.taken):
        whole = without_rows(whole, stacked.taken)
    g_rows, g_steps, g_taken, notes = read_generic(whole, values, name)
    taken = np.concatenate([stacked.taken, np.asarray(g_taken, np.int64)])
    if not len(k_rows) and not len(taken):  # no line prints a step anywhere: lines in their order
        o_rows, o_steps, taken, o_notes = read_ordinal(whole, values, name)
        if len(taken):
            notes = [n for n in notes if n.kind != "no_step"] + o_notes
            g_rows, g_steps = o_rows, o_steps
    if len(taken):
        rest = without_rows(rest, taken)
        rows = np.concatenate([k_rows, stacked.rows, g_rows])
        order = np.argsort(rows, kind="stable")
        k_rows, k_steps = rows[order], np.concatenate([k_steps, stacked.steps, g_steps])[order]
    return rest, k_rows, k_steps, len(taken), list(stacked.notes) + notes


def _events(rest: pl.DataFrame, k_rows: np.ndarray, k_steps: np.ndarray, values: TextPoints) -> tuple[int, list[Note]]:
    """Instability messages among the unclaimed lines -> log_events points in ``values``; (lines used, notes)."""
    name = values.source
    seen: list[np.ndarray] = []
    counts: dict[str, int] = {}
    before_first = 0
    col = rest.get_column("line")
    for ev in EVENT_PATTERNS:
        hits = rest.filter(col.str.contains(ev.find))
        if hits.is_empty():
            continue
        if ev.value_group is not None:
            idx = re.compile(ev.find).groupindex[ev.value_group]
            hits = hits.with_columns(pl.col("line").str.extract(ev.find, idx).alias("value"))
        rows = hits.get_column("row").to_numpy().astype(np.int64)
        seen.append(rows)
        counts[ev.tag.rsplit("/", 1)[-1]] = len(rows)
        if not len(k_rows):
            continue
        steps, fell_back = _place(rows, k_rows, k_steps, after=False)
        before_first = max(before_first, fell_back)
        # One point per step: the number of messages placed there (several between two metric lines, or one
        # per rank), or for a loss scale the last one announced.
        last_of_step = np.append(steps[1:] != steps[:-1], True)
        if ev.value_group is None:
            ends = np.flatnonzero(last_of_step)
            per_step = np.diff(np.concatenate([[-1], ends])).astype(np.float64)
            value = pl.Series("value", per_step)
        else:
            value = hits.get_column("value").filter(pl.Series(last_of_step))
        values.add_column(ev.tag, rows[last_of_step], steps[last_of_step], value)
    used = int(np.unique(np.concatenate(seen)).size) if seen else 0
    notes = []
    if used:
        detail = ", ".join(f"{k} x{n}" for k, n in counts.items())
        if len(k_rows):
            first = f"; {before_first} before the first metric line took its step" if before_first else ""
            notes.append(Note("log_events", f"{name}: {used} instability message line(s) read as log_events/* points "
                              f"({detail}), each at the step of the last metric line before it{first}", count=used))
        else:
            notes.append(Note("dropped", f"{name}: {used} instability message line(s) ({detail}) with no metric line "
                              "to take a step from were not read", count=used))
    return used, notes
