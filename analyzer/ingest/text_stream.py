"""One pattern's lines of a text log read block by block, with the result of reading them all at once.

A pattern whose lines carry their own step is read in each block (`PatternStream.take`); only numbers
are kept: each column's values and the lines and steps they sit at, and counts for the notes. At the
end (`PatternStream.replay`) the columns are joined and handed to `TextPoints` in the order a
whole-file read hands them over, so tags, points and notes come out the same:

- the columns of a common layout in their order, then the other lines' items by tag, in the order
  the tags first appear among all items holding the key separator, then among the rest (a tag's
  values in that order too);
- the common layout (the first line of the most common item count, over the whole file) is chosen
  in each block from that block's lines; `PatternStream.agrees` says whether every block chose the
  one the whole file would. When one did not (a log whose lines change layout partway), the file
  is read again as one block.

Patterns whose step comes from other lines (HF's counted dicts, lines that take a neighbour's step)
keep their claimed lines and read them all at the end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from analyzer.ingest.tabular import STEP_MAX, STEP_MIN, step_out_of_range
from analyzer.ingest.text_items import Layout, common_layout, items_of
from analyzer.ingest.text_patterns import LinePattern
from analyzer.ingest.text_points import TextPoints, as_numbers, place, placed_columns

#: One block's share of a column: rows, steps, values (Float64), how many printed values were no number.
Chunk = tuple[np.ndarray, np.ndarray, pl.Series, int]


def claim(lines: pl.DataFrame, patterns: list[LinePattern]) -> tuple[list[tuple[LinePattern, pl.DataFrame]],
                                                                     pl.DataFrame]:
    """Each pattern's lines (first pattern wins) and the non-blank lines none claimed."""
    col = lines.get_column("line")
    n = len(col)
    free = np.flatnonzero(col.str.contains(r"\S").fill_null(False).to_numpy())  # blank lines are nobody's
    masks = []
    for p in patterns:
        mask = np.zeros(n, dtype=bool)
        if free.size:  # a pattern tests only the lines still free: once one claims a log, the rest cost nothing
            hit = _matching(col if free.size == n else col.gather(free), p, n // 2)
            mask[free[hit]] = True
            free = free[~hit]
        masks.append((p, mask))
    claimed = [(p, lines.filter(pl.Series(m)) if m.any() else lines.clear()) for p, m in masks]
    rest = np.zeros(n, dtype=bool)
    rest[free] = True
    return claimed, lines.filter(pl.Series(rest))


def _matching(col: pl.Series, p: LinePattern, few: int) -> np.ndarray:
    """Which of ``col``'s lines ``p`` claims: its regex is tried only on lines holding its marker, unless that is
    ``few`` lines or more (testing them twice would cost more than it saves)."""
    candidates = col.str.contains(p.marker, literal=True).fill_null(False).to_numpy() if p.marker else None
    if candidates is not None and candidates.sum() < few:
        hit = np.zeros(len(col), dtype=bool)
        where = np.flatnonzero(candidates)
        hit[where] = col.gather(where).str.contains(p.find).fill_null(False).to_numpy()
    else:
        hit = col.str.contains(p.find).fill_null(False).to_numpy()
    if p.unless is not None and hit.any():
        hit &= ~col.str.contains(p.unless).fill_null(False).to_numpy()
    return hit


def line_steps(lines: pl.DataFrame, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, int64 steps) of the lines whose step is known; LogFormatError for a step outside int64."""
    df = lines.filter(pl.col("step").is_not_null())
    step_f = df.get_column("step").cast(pl.Float64, strict=False)
    outside = step_f.is_not_null() & ((step_f < STEP_MIN) | (step_f >= STEP_MAX))
    if bool(outside.any()):
        i = int(outside.arg_true()[0])
        raise step_out_of_range(float(step_f[i]), f"{where} line {int(df.get_column('row')[i]) + 1}")
    ok = step_f.is_not_null() & step_f.is_finite()
    return (df.get_column("row").filter(ok).to_numpy().astype(np.int64),
            step_f.filter(ok).cast(pl.Int64).to_numpy())


@dataclass
class _Census:
    """What the whole file's lines of one pattern would choose their common layout from."""

    prefixes: set[str | None] = field(default_factory=set)
    seps: Counter[int | None] = field(default_factory=Counter)
    first: dict[int | None, str] = field(default_factory=dict)

    def see(self, base: pl.DataFrame) -> None:
        if len(self.prefixes) < 2:
            self.prefixes.update(base.get_column("prefix").unique().to_list())
        counted = base.group_by("seps", maintain_order=True).agg(pl.len(), pl.col("body").first())
        for seps, n, body in counted.iter_rows():
            self.seps[seps] += n
            self.first.setdefault(seps, body)

    def layout(self, p: LinePattern) -> Layout | None | str:
        """The whole file's choice (`text_items._by_layout`); a string where it cannot be told here."""
        if len(self.prefixes) != 1:
            return None
        if None in self.seps:
            return "a line without items"
        most = max(self.seps.values())
        common = max(s for s, n in self.seps.items() if n == most and s is not None)
        return common_layout(p, next(iter(self.prefixes)), common, str(self.first[common]))


@dataclass
class PatternStream:
    """One pattern's lines, taken block by block (`take`), handed to `TextPoints` at the end (`replay`)."""

    p: LinePattern
    name: str
    seen: bool = False  # the pattern claimed a line
    truncated: bool = False  # it claimed the file's cut-off last line
    held: list[pl.DataFrame] = field(default_factory=list)  # lines read at the end (not `streamed`)
    counts: Counter[str] = field(default_factory=Counter)
    without: int = 0  # lines with no readable step
    known: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # rows and steps of lines read
    columns: dict[int, tuple[str, list[Chunk]]] = field(default_factory=dict)
    items: dict[tuple[str, int], list[Chunk]] = field(default_factory=dict)
    item_order: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # (src, block, index) first seen
    layouts: set[Layout | None] = field(default_factory=set)
    census: _Census = field(default_factory=_Census)

    @property
    def streamed(self) -> bool:
        return self.p.step_from == "line"

    def take(self, got: pl.DataFrame, block_no: int) -> None:
        """One block's lines of this pattern (``row``, ``line``); LogFormatError for a step outside int64."""
        if not self.streamed:
            self.held.append(got)
            return
        if got.is_empty():
            return
        parsed = items_of(self.p, got, self.name, self.census.see)
        self.counts.update(dict(parsed.counts))
        rows, steps = line_steps(parsed.lines, self.name)
        self.without += parsed.lines.height - len(rows)
        self.known.append((rows, steps))
        self.layouts.add(parsed.layout)
        for j, (tag, at, st, values) in enumerate(placed_columns(parsed, rows, steps)):
            self.columns.setdefault(j, (tag, []))[1].append((at, st, *as_numbers(values)))
        if not parsed.items.height:
            return
        items = parsed.items.with_row_index("i")
        for (tag, src), part in items.partition_by("tag", "src", as_dict=True, maintain_order=True).items():
            key = (int(src), block_no, int(part.get_column("i")[0]))
            self.item_order[tag] = min(self.item_order.get(tag, key), key)
            at, idx, found = place(part.get_column("row"), rows)
            values = part.get_column("value")
            values = values if found.all() else values.filter(pl.Series(found))
            self.items.setdefault((tag, int(src)), []).append((at, steps[idx], *as_numbers(values)))

    def agrees(self) -> bool:
        """Every block read its lines by the common layout the whole file would choose."""
        return not self.layouts or self.layouts == {self.census.layout(self.p)}

    def replay(self, values: TextPoints) -> tuple[np.ndarray, np.ndarray]:
        """The blocks' columns -> ``values``, as one read of all the lines would add them; the rows and steps of
        the lines read."""
        # The columns of a layout share their rows and steps: joined once per block list, shared again (the
        # lists are kept with the result, so an id is never that of a freed array).
        joined: dict[tuple[int, ...], tuple[list[np.ndarray], np.ndarray]] = {}

        def join(arrays: list[np.ndarray]) -> np.ndarray:
            key = tuple(id(a) for a in arrays)
            if key not in joined:
                joined[key] = (arrays, arrays[0] if len(arrays) == 1 else np.concatenate(arrays))
            return joined[key][1]

        def add(tag: str, chunks: list[Chunk]) -> None:
            as_float = chunks[0][2] if len(chunks) == 1 else pl.concat([c[2] for c in chunks])
            values.add_numbers(tag, join([c[0] for c in chunks]), join([c[1] for c in chunks]), as_float,
                               sum(c[3] for c in chunks), self.p.missing.get(tag))

        for j in sorted(self.columns):
            add(*self.columns.pop(j))
        for tag in sorted(self.item_order, key=self.item_order.__getitem__):
            joined.clear()  # an item's arrays are its own
            add(str(tag), self.items.pop((tag, 0), []) + self.items.pop((tag, 1), []))
        rows = [r for r, _ in self.known]
        steps = [s for _, s in self.known]
        self.known = []
        return (np.concatenate(rows) if rows else np.zeros(0, np.int64),
                np.concatenate(steps) if steps else np.zeros(0, np.int64))
