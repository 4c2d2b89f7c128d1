"""The points a text log's lines and messages hold, gathered one tag column at a time.

Each pattern hands over columns of values (numbers, or text as printed) with the lines they came
from; the steps come from the lines whose step is known. What is not a number is counted per tag
(a tag never numeric is an ignored item, not lost points), and the result is grouped by tag in
write order, as `analyzer.frame.apply_restart_policy` takes it without sorting.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl

from analyzer.frame import RawPoints
from analyzer.ingest.tabular import non_numeric_notes
from analyzer.ingest.text_items import LineItems
from analyzer.ingest.text_patterns import LinePattern
from analyzer.types import Note


class TextPoints:
    """The points of every pattern and message, one tag column at a time, counting what is not a number."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tags: dict[str, int] = {}
        self.parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # code, rows, steps, values
        self.non_numeric: Counter[str] = Counter()
        self.placeholders: Counter[str] = Counter()

    def add(self, parsed: LineItems, rows: np.ndarray, steps: np.ndarray, p: LinePattern) -> None:
        """The values of one pattern's lines; ``rows``/``steps``: the lines whose step is known (ascending rows)."""
        for tag, at, st, values in placed_columns(parsed, rows, steps):
            self.add_column(tag, at, st, values, p.missing.get(tag))
        if parsed.items.height:
            for (tag,), part in parsed.items.partition_by("tag", as_dict=True, maintain_order=True).items():
                at, idx, found = place(part.get_column("row"), rows)
                values = part.get_column("value")
                values = values if found.all() else values.filter(pl.Series(found))
                self.add_column(str(tag), at, steps[idx], values, p.missing.get(str(tag)))

    def add_column(self, tag: str, rows: np.ndarray, steps: np.ndarray, values: pl.Series,
                   missing: float | None = None) -> None:
        """Points of one tag at ``steps`` (written at line ``rows``) from values as printed (or as numbers)."""
        self.add_numbers(tag, rows, steps, *as_numbers(values), missing)

    def add_numbers(self, tag: str, rows: np.ndarray, steps: np.ndarray, as_float: pl.Series, n_bad: int,
                    missing: float | None = None) -> None:
        """`add_column` of values already made numbers (`as_numbers`): ``n_bad`` of them were not numbers."""
        if n_bad:
            self.non_numeric[tag] += n_bad
        n_null = as_float.null_count()
        x = as_float.to_numpy() if not n_null else as_float.fill_null(np.nan).to_numpy()
        keep = None if not n_null else ~as_float.is_null().to_numpy()
        if missing is not None:
            placeholder = x == missing if keep is None else keep & (x == missing)
            if placeholder.any():
                self.placeholders[f"{tag} {missing:g}"] += int(placeholder.sum())
                keep = ~placeholder if keep is None else keep & ~placeholder
        if keep is not None:
            if not keep.any():
                return
            rows, steps, x = rows[keep], steps[keep], x[keep]
        if len(x):
            code = self.tags.setdefault(tag, len(self.tags))
            self.parts.append((code, rows, steps, x))

    def points(self) -> tuple[RawPoints, list[Note]]:
        """All points grouped by tag (tags in the order of their first line), write order within each."""
        dropped = {t: n for t, n in self.non_numeric.items() if t in self.tags}
        ignored = sorted(t for t in self.non_numeric if t not in self.tags)
        notes = non_numeric_notes(self.source, dropped, ignored, "value(s) of metric items", "item(s)")
        if self.placeholders:
            total = sum(self.placeholders.values())
            notes.append(Note("ignored_fields", f"{self.source}: {total} placeholder value(s) printed before anything "
                              f"was measured ({', '.join(sorted(self.placeholders))}) were not used", count=total))
        if not self.parts:
            return RawPoints.empty(), notes
        first_row: dict[int, int] = {}
        for code, rows, _, _ in self.parts:
            first_row[code] = min(first_row.get(code, 1 << 62), int(rows[0]))
        old = sorted(first_row, key=lambda c: (first_row[c], c))
        remap = np.empty(len(self.tags), np.int32)
        remap[old] = np.arange(len(old), dtype=np.int32)
        names = {c: t for t, c in self.tags.items()}
        parts = sorted(self.parts, key=lambda part: remap[part[0]])  # stable: a tag's parts keep their order
        codes = np.concatenate([np.full(len(r), remap[c], np.int32) for c, r, _, _ in parts])
        steps = np.concatenate([s for _, _, s, _ in parts]).astype(np.int64)
        values = np.concatenate([v for _, _, _, v in parts])
        if len({c for c, _, _, _ in parts}) < len(parts):  # a tag read by two patterns: interleave by line
            rows = np.concatenate([r for _, r, _, _ in parts])
            order = np.lexsort((rows, codes))
            codes, steps, values = codes[order], steps[order], values[order]
        return RawPoints(tuple(names[c] for c in old), codes, steps, np.full(len(steps), np.nan), values), notes


def as_numbers(values: pl.Series) -> tuple[pl.Series, int]:
    """Values as printed (or numbers) as Float64, and how many printed values are not numbers (null where so)."""
    if values.dtype == pl.Float64:
        return values, values.null_count()
    as_float = values.cast(pl.Float64, strict=False)
    return as_float, as_float.null_count() - values.null_count()


def place(at: pl.Series, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lines ``at`` that have a step (rows[idx] == line): (those lines, their index in rows, mask over ``at``)."""
    at_np = at.to_numpy().astype(np.int64)
    idx = np.searchsorted(rows, at_np)
    found = idx < len(rows)
    found[found] = rows[idx[found]] == at_np[found]
    return at_np[found], idx[found], found


def placed_columns(parsed: LineItems, rows: np.ndarray,
                   steps: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray, pl.Series]]:
    """(tag, rows, steps, values) of each column of ``parsed`` at the lines whose step is known (``rows``,
    ``steps``); the columns of a layout share their rows and steps (one array each, not one per column)."""
    shared: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    out = []
    for c in parsed.columns:
        if id(c.rows) not in shared:
            at, idx, found = place(c.rows, rows)
            shared[id(c.rows)] = (at, steps[idx], found)
        at, st, found = shared[id(c.rows)]
        out.append((c.tag, at, st, c.values if found.all() else c.values.filter(pl.Series(found))))
    return out
