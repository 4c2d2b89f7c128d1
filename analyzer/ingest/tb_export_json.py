"""TensorBoard's JSON export: a scalar chart's "Download JSON" (run-<run>-tag-<tag>.json, one tag per file).

The scalars plugin writes ``[[wall_time, step, value], ...]``; non-finite values are cleansed to the
strings "NaN", "Infinity" and "-Infinity" on the way out, so they are read back as numbers here.
Files of one run's tags join by the run part of their names, as the CSV export's do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest.csv_logs import tb_export_tag
from analyzer.ingest.tabular import frame_to_points
from analyzer.types import Note

#: The head of an export: a list whose first item is a [wall_time, step, value] triple, the wall time in seconds
#: since 1970 (a list of small number triples is some other JSON).
_HEAD = re.compile(rb'\s*\[\s*\[\s*[1-9][0-9]{8,}(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?\s*,\s*-?[0-9]+(?:\.0+)?\s*,\s*(?:-?[0-9.eE+-]+|"(?:NaN|-?Infinity)")\s*\]')


def sniff(path: Path) -> None:
    """Whether the file starts like a TensorBoard JSON export (LogFormatError says why not)."""
    with open(path, "rb") as fh:
        head = fh.read(256)
    if not _HEAD.match(head):
        raise LogFormatError("not a TensorBoard JSON export (a list of [wall_time, step, value])")


def read(path: Path) -> tuple[RawPoints, list[Note]]:
    """One tag's points, named after the file, every [wall_time, step, value] triple counted."""
    try:
        rows: Any = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise LogFormatError(f"not valid JSON ({exc})") from None
    if not isinstance(rows, list) or not rows:
        raise LogFormatError("an empty TensorBoard JSON export")
    triples = [r for r in rows if isinstance(r, list) and len(r) == 3]
    notes: list[Note] = []
    if len(triples) < len(rows):
        bad = len(rows) - len(triples)
        notes.append(Note("dropped", f"{path.name}: {bad} item(s) that are not [wall_time, step, value] were not used",
                          count=bad, source=path.name))
    # Columns as text, cast once: numbers and the plugin's "NaN"/"Infinity" strings read alike.
    frame = pl.DataFrame({name: [str(r[i]) for r in triples] for i, name in enumerate(("wall_time", "step", "value"))})
    _, tag = tb_export_tag(path)
    points, more = frame_to_points(frame, source=path.name, step_col="step", wall_col="wall_time")
    if len(points) == 0:
        raise LogFormatError("no numeric values in its [wall_time, step, value] items")
    return RawPoints((tag,), points.tag_codes, points.steps, points.wall_times, points.values), notes + more
