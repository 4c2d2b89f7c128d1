"""trainer_state.json read fast: the document parsed by orjson (``json`` where it holds NaN/Infinity)
and checked for what neither reports, and ``log_history`` turned into points by columns.

The exact reader (`tabular.loads`: every object that repeats a key marked) is what the file means;
the fast parse is used only when it provably agrees with it: no ``\\u003a`` escape, nothing nested
deeper than the exact parser's recursion allows, and every ``:`` of the text accounted for by a
parsed key or a colon inside a parsed string (a repeated key leaves one unaccounted for).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson

from analyzer.frame import RawPoints
from analyzer.ingest.hf_columns import ColumnarHistory, read_columnar
from analyzer.ingest.json_points import to_points
from analyzer.ingest.json_table import (MAX_DEPTH, Column, JsonTable, accounted_colons, colons_of, depth_of, plain_frame,
                                        plain_keys, table_columns)
from analyzer.ingest.json_lines import escaped_colon
from analyzer.ingest.tabular import RepeatedKeys, loads
from analyzer.types import Note

SUMMARY_MARKERS = ("train_runtime", "total_flos")


class CheckedHistory(list):
    """A log_history whose entries were all found to be objects of plain numbers, under ``keys``
    (`history_points` then reads them without looking at every value again)."""

    def __init__(self, entries: list[dict[str, Any]], keys: list[str]) -> None:
        super().__init__(entries)
        self.keys = keys


def _accounted(doc: Any) -> int | None:
    """Colons the text of ``doc`` must hold; None when something in it nests too deeply to trust the fast parse.
    A list of objects of plain numbers in it is made a `CheckedHistory`."""
    if not isinstance(doc, dict):
        return colons_of(doc) if depth_of(doc) <= MAX_DEPTH else None
    total = sum(1 + k.count(":") for k in doc)
    for name, value in doc.items():
        if isinstance(value, list) and value and set(map(type, value)) == {dict}:
            keys = plain_keys(value)
            if keys is not None:
                total += sum(map(len, value))
                doc[name] = CheckedHistory(value, keys)
                continue
            per_entry, _, deep = accounted_colons(value)
            if deep:
                return None
            total += int(per_entry.sum())
        elif depth_of(value) > MAX_DEPTH:
            return None
        else:
            total += colons_of(value)
    return total


def parse_state(path: Path) -> Any:
    """The parsed trainer state, as `tabular.loads` of its UTF-8 text gives it (a big file's ``log_history`` as a
    `ColumnarHistory` where that means the same); its exceptions when it fails."""
    state = read_columnar(path, parse_text)
    return state if state is not None else parse_text(path.read_bytes())[0]


def parse_text(data: bytes) -> tuple[Any, bool]:
    """(`tabular.loads` of the UTF-8 text ``data``, whether orjson's parse of it was used): orjson's where that
    provably gives the same (but for an integer beyond 64 bits: orjson makes it a float)."""
    if not escaped_colon(data):
        by_orjson = True
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            by_orjson = False
            try:
                doc = json.loads(data.decode("utf-8"))  # NaN/Infinity tokens, as Python's json writes them
            except (UnicodeDecodeError, ValueError, RecursionError):
                doc = None
        if doc is not None and _accounted(doc) == data.count(b":"):
            return doc, by_orjson
    return loads(data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")), False


def history_points(history: list[Any] | ColumnarHistory, source: str
                   ) -> tuple[RawPoints, list[Note], list[dict[str, Any]]]:
    """(points, notes, summary entries in order) of a log_history list."""
    entry: Callable[[int], dict[str, Any]]
    if isinstance(history, ColumnarHistory):
        n, columns, entry, index = history.n, dict(history.columns), history.entry, np.arange(history.n)
        not_objects = repeated = 0
    else:
        n, columns, entry, index, not_objects, repeated = _list_columns(history)
    summary = np.zeros(n, bool)
    for marker in SUMMARY_MARKERS:
        if marker in columns:
            summary |= columns[marker].kind != 0
    rows = np.flatnonzero(~summary)
    summaries = [entry(i) for i in np.flatnonzero(summary).tolist()]
    if summaries:
        columns = {k: c.take(rows) for k, c in columns.items()}
        columns = {k: c for k, c in columns.items() if bool((c.kind != 0).any())}
    table = JsonTable(int(rows.size), columns, lambda i: list(entry(int(rows[i]))),
                      lambda i: f"log_history entry {int(index[rows[i]])}")
    points, notes = to_points(table, "step", source=source, per_record_key=False, rows_without_step=not_objects)
    if repeated:
        notes.append(Note("dropped", f"{source}: {repeated} log_history entr(ies) repeating a key (a damaged file: "
                          "two entries run together) were not used", count=repeated))
    return points, notes, summaries


def _list_columns(history: list[Any]
                  ) -> tuple[int, dict[str, Column], Callable[[int], dict[str, Any]], np.ndarray, int, int]:
    """(records, columns, record i's entry, each record's index in the list, entries that are no object,
    entries repeating a key) of a parsed log_history."""
    if isinstance(history, CheckedHistory) or set(map(type, history)) <= {dict}:  # every entry a plain object
        entries, index = history, np.arange(len(history))
    else:
        entries = [e for e in history if type(e) is dict]
        index = np.array([i for i, e in enumerate(history) if type(e) is dict], dtype=np.int64)
    repeated = 0 if index.size == len(history) else sum(isinstance(e, RepeatedKeys) for e in history)
    not_objects = len(history) - len(entries) - repeated
    columns = plain_frame(entries, history.keys) if isinstance(history, CheckedHistory) else None
    if columns is None:
        columns = table_columns(entries)
    return len(entries), columns, entries.__getitem__, index, not_objects, repeated
