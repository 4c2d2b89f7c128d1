"""CSV logs: Lightning CSVLogger, Keras CSVLogger, TensorBoard's exported CSV, generic wide/long CSV.

A CSV whose cells are all numbers or empty is read by polars straight into float columns; one that
holds anything else (a stray "N/A", a text column, a space before a number) is read as text and cast
per column, so that a stray "N/A" costs one counted cell, not a whole column. "nan"/"inf" stay data
either way: both ways give the same points and notes (tests/test_csv_typed_read.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest.tabular import EPOCH_KEYS, STEP_KEYS, WALL_KEYS, MetricColumns, find_key, frame_to_points
from analyzer.types import Note

CsvKind = Literal["lightning", "keras", "tb_export", "long", "wide"]
TB_EXPORT_HEADER = ("Wall time", "Step", "Value")
_TAG_COLS = ("tag", "metric", "name", "key", "series")
_VALUE_COLS = ("value", "val", "Value")


@dataclass(frozen=True)
class CsvShape:
    kind: CsvKind
    columns: tuple[str, ...]


def first_line(path: Path, limit: int = 65536) -> tuple[str, bool]:
    """A CSV's first line as text (at most ``limit`` bytes) and whether it ended within them; LogFormatError
    when it is not UTF-8 text."""
    with open(path, "rb") as fh:
        first = fh.readline(limit)
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LogFormatError("not UTF-8 text") from exc
    if "\x00" in text:
        raise LogFormatError("binary content, not CSV")
    return text, first.endswith(b"\n") or len(first) < limit


def read_header(path: Path) -> list[str]:
    text, _ = first_line(path)
    return [c.strip().strip('"') for c in text.rstrip("\r\n").split(",")]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_OTHER_SEPARATORS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def sniff(path: Path) -> CsvShape:
    """Which CSV layout a file has, or LogFormatError saying why it is not a usable log."""
    cols = read_header(path)
    if len(cols) >= 3 and cols[0] == "" and all(cols[1:3]):
        cols = cols[1:]  # pandas' to_csv() writes its index as a first column with no name
    if len(cols) < 2 or any(c == "" for c in cols[:2]):
        if len(cols) == 1:
            for sep, name in _OTHER_SEPARATORS.items():
                if sep in cols[0]:
                    raise LogFormatError(
                        f"its header is one column holding '{sep}': a {name}-separated file? Only comma-separated "
                        f"CSV is read; convert it, e.g. pandas.read_csv(path, sep='{sep}').to_csv(new_path, "
                        "index=False)")
        raise LogFormatError("no header row with at least two named columns")
    if all(_is_number(c) for c in cols if c):
        raise LogFormatError("its first line holds numbers, not column names: no header row")
    if tuple(cols[:3]) == TB_EXPORT_HEADER:
        return CsvShape("tb_export", tuple(cols))
    lowered = {c.lower() for c in cols}
    if path.name == "metrics.csv" and ({"step", "epoch"} & lowered):
        return CsvShape("lightning", tuple(cols))
    if find_key(cols, _TAG_COLS) and find_key(cols, _VALUE_COLS) and find_key(cols, STEP_KEYS + EPOCH_KEYS):
        return CsvShape("long", tuple(cols))
    if cols[0].lower() == "epoch" and not find_key(cols, STEP_KEYS):
        return CsvShape("keras", tuple(cols))
    return CsvShape("wide", tuple(cols))


_UTF8_CHUNK = 1 << 20


def _is_utf8(data: bytes) -> bool:
    """Whether ``data`` is UTF-8, without decoding it whole (a str of the file would be 1-4 times its size)."""
    if data.isascii():
        return True
    view, start, n = memoryview(data), 0, len(data)
    while start < n:
        end = data.find(b"\n", min(start + _UTF8_CHUNK, n))  # a line end never splits a UTF-8 sequence
        end = n if end < 0 else end + 1
        try:
            str(view[start:end], "utf-8")
        except UnicodeDecodeError:
            return False
        start = end
    return True


def _without_undecodable_lines(data: bytes) -> tuple[bytes, int]:
    """``data`` without its lines that are not UTF-8 (one damaged byte costs its line, not the file: polars
    refuses the whole file), and how many were dropped. The whole file is checked first: the common case is
    one pass."""
    if _is_utf8(data):
        return data, 0
    kept, bad = [], 0
    for line in data.split(b"\n"):
        try:
            line.decode("utf-8")
            kept.append(line)
        except UnicodeDecodeError:
            bad += 1
    return b"\n".join(kept), bad


def _usable_bytes(path: Path) -> tuple[bytes, list[Note]]:
    """The file's bytes without a cut-off last line and without lines that are not UTF-8, each noted."""
    notes: list[Note] = []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        # A cut-off last row could read as a wrong number ("2.3" of "2.31"): drop it, say so.
        cut = data.rfind(b"\n")
        data = data[: cut + 1] if cut >= 0 else b""
        notes.append(Note("truncated", f"{path.name}: the last line has no line end (an interrupted write); "
                          "it was not used", count=1))
    data, bad = _without_undecodable_lines(data)
    if bad:
        notes.append(Note("dropped", f"{path.name}: {bad} line(s) that are not UTF-8 text (a damaged byte) were not "
                          "used", count=bad))
    return data, notes


def _text_frame(data: bytes) -> pl.DataFrame:
    try:
        df = pl.read_csv(data, infer_schema=False, truncate_ragged_lines=True)
    except Exception as exc:  # noqa: BLE001 - polars raises several types for malformed CSV
        raise LogFormatError(f"cannot be parsed as CSV ({type(exc).__name__})") from exc
    padded = [c for c in df.columns if c != c.strip()]
    if padded and len({c.strip() for c in df.columns}) == len(df.columns):
        # Fixed-width CSV (ultralytics 8.0-8.2 writes '%23s,' headers and '%23.5g,' values): names and cells padded.
        df = df.rename({c: c.strip() for c in padded}).with_columns(pl.all().str.strip_chars())
    return df


def read_text_frame(path: Path) -> tuple[pl.DataFrame, list[Note]]:
    """Every cell as text (cast per column later); columns by position, the header row sets the width; a
    cut-off last row is dropped and noted."""
    data, notes = _usable_bytes(path)
    return _text_frame(data), notes


def _typed_frame(data: bytes, text_keys: Sequence[str], names: Sequence[str] | None = None) -> pl.DataFrame | None:
    """The frame with every column Float64 (the one named by ``text_keys``, if any, text), or None when that
    would not mean what the text frame cast per column means: a cell that is not a number nor empty (polars
    refuses the file), a space or tab in a data row (polars' reader takes " 1" as 1, the cast counts it as
    text), a padded header (fixed-width CSV, whose cells the text path strips). ``names``: the columns polars
    reads off the header line, when known (the chunks of a file share its header)."""
    header_end = data.find(b"\n")
    if header_end < 0 or data.find(b" ", header_end) >= 0 or data.find(b"\t", header_end) >= 0:
        return None
    try:
        if names is None:
            names = pl.read_csv(data[: header_end + 1], infer_schema=False, truncate_ragged_lines=True).columns
        if any(c != c.strip() for c in names):
            return None
        text = find_key(names, tuple(text_keys)) if text_keys else None
        dtypes = [pl.String if c == text else pl.Float64 for c in names]
        return pl.read_csv(data, infer_schema=False, schema_overrides=dtypes, truncate_ragged_lines=True)
    except Exception:  # noqa: BLE001 - a non-numeric cell, or malformed CSV: the text path reads or refuses it
        return None


def read_frame(path: Path, text_keys: Sequence[str] = ()) -> tuple[pl.DataFrame, list[Note]]:
    """The CSV's columns (by position, the header row sets the width; a cut-off last row dropped and noted),
    for `frame_to_points`: Float64 where every cell is a number or empty, else every column as text to be
    cast per column (the column named by ``text_keys`` stays text either way). The same points and notes
    as `read_text_frame`, with a float frame in place of a frame of strings in the common case."""
    data, notes = _usable_bytes(path)
    df = _typed_frame(data, text_keys)
    if df is None:
        df = _text_frame(data)
    return df, notes


#: Bytes of rows a chunk of a large CSV holds: what polars' allocator may keep of a read (see `MetricColumns`).
CHUNK_BYTES = 1 << 22


def _chunks(data: bytes) -> Iterator[bytes]:
    """``data`` as CSVs of whole lines (about CHUNK_BYTES of rows each, under the header line), together the
    rows of ``data`` in order. A quote could hold a line end inside a cell: then no split is safe, and ``data``
    is one chunk."""
    header_end = data.find(b"\n") + 1
    if not 0 < header_end < len(data) or len(data) - header_end <= CHUNK_BYTES or b'"' in data:
        yield data
        return
    lo = header_end
    while lo < len(data):
        hi = data.find(b"\n", lo + CHUNK_BYTES) + 1 or len(data)
        yield data[:hi] if lo == header_end else data[:header_end] + data[lo:hi]
        lo = hi


def _header_names(data: bytes) -> list[str] | None:
    """The columns polars reads off the first line (a file of several chunks has no quote: that is the header)."""
    try:
        return pl.read_csv(data[: data.find(b"\n") + 1], infer_schema=False, truncate_ragged_lines=True).columns
    except Exception:  # noqa: BLE001 - each chunk's reader then reads it, or refuses the file
        return None


def read_columns(path: Path) -> tuple[MetricColumns, list[Note]]:
    """The CSV's columns as `read_frame` reads them (by position, the header row sets the width; a cut-off
    last row dropped and noted), read in row chunks into numpy columns: a large file never becomes one frame."""
    data, notes = _usable_bytes(path)
    cols: MetricColumns | None = None
    names: list[str] | None = None
    for chunk in _chunks(data):
        df = _typed_frame(chunk, (), names)
        if df is None:
            df = _text_frame(chunk)
        if cols is None:
            # Rows at the first chunk's rate and a fifth more (pages never written cost no memory); more grow it.
            cols = MetricColumns(df.columns, df.height + (len(data) - len(chunk)) * (df.height + 1) * 6 // (5 * len(chunk)))
            names = _header_names(chunk) if len(chunk) < len(data) else None
        cols.add(df)
    assert cols is not None  # `_chunks` yields at least one chunk
    return cols, notes


def _read_long(path: Path) -> tuple[RawPoints, list[Note]]:
    """Points of a long CSV (a tag column, a value column and a step column), one tag per tag value."""
    df, notes = read_frame(path, _TAG_COLS)
    if df.height == 0:
        raise LogFormatError("has a header but no rows")
    tag_col = find_key(df.columns, _TAG_COLS)
    value_col = find_key(df.columns, _VALUE_COLS)
    step_col = find_key(df.columns, STEP_KEYS) or find_key(df.columns, EPOCH_KEYS)
    assert tag_col and value_col and step_col
    parts = []
    for (tag,), sub in df.group_by([tag_col], maintain_order=True):
        # Fixed column names: a tag may be named like the step column.
        pts, more = frame_to_points(sub.select(pl.col(step_col).alias("step"), pl.col(value_col).alias("value")),
                                    source=path.name, step_col="step", wall_col=None)
        if len(pts):
            parts.append(RawPoints((str(tag),), pts.tag_codes, pts.steps, pts.wall_times, pts.values))
        notes += [Note(n.kind, n.message.replace("'value'", f"'{value_col}' ({tag})"), n.count, n.step)
                  for n in more]
    return RawPoints.concat(parts), notes


def read_csv_log(path: Path, shape: CsvShape) -> tuple[RawPoints, list[Note]]:
    """Points of a wide, Lightning, Keras or long CSV (TensorBoard exports: see `read_tb_exports`)."""
    if shape.kind == "long":
        return _read_long(path)
    cols, notes = read_columns(path)
    if cols.height == 0:
        raise LogFormatError("has a header but no rows")
    steps = _step_columns(cols)
    step_col = steps[0] if steps else None
    epoch_col = find_key(cols.names, EPOCH_KEYS)
    if step_col is None and epoch_col is not None:
        step_col, epoch_col = epoch_col, None  # Keras and other per-epoch logs: the epoch is the step
    if cols.names[0] == "":  # pandas' unnamed index: the step when no column names one and it holds numbers
        numeric = cols.all_numbers("")
        if step_col is None and numeric:
            cols.rename("", "index")
        else:
            cols.drop("")
        step_col = step_col or ("index" if numeric else None)
    wall_col = find_key(cols.names, WALL_KEYS)
    counters = [c for c in steps[1:] if _counts_up(cols, c)]  # another counter beside the step is no metric
    bookkeeping = [c for c in cols.names if c in _BOOKKEEPING]
    skip = [c for c in (epoch_col, *counters, *bookkeeping) if c]
    points, more = cols.to_points(source=path.name, step_col=step_col, wall_col=wall_col, skip=skip)
    notes += more
    if counters or bookkeeping:
        notes.append(Note("ignored_fields", f"{path.name}: {len(counters) + len(bookkeeping)} column(s) counting steps "
                          f"or naming the process beside the step were not read as metrics "
                          f"({', '.join(counters + bookkeeping)})", count=len(counters) + len(bookkeeping)))
    if len(points) == 0:
        raise LogFormatError("has no numeric metric columns")
    return points, notes


#: Columns a training framework writes beside its metrics that measure nothing (Ray Tune's progress.csv).
_BOOKKEEPING = frozenset({"pid", "iterations_since_restore", "_runtime"})


def _counts_up(cols: MetricColumns, name: str) -> bool:
    """Whether a counter column never goes down (an iteration count beside the step); one that does (an RL
    episode's ``num_steps``) is a measurement."""
    values = cols.values(name)[cols.numeric(name)]
    return values.size > 1 and bool((np.diff(values) >= 0).all())


def _step_columns(cols: MetricColumns) -> list[str]:
    """The columns STEP_KEYS names, the step first: the first that holds a number in every row, else the first.
    A W&B history export has train/global_step (the HF Trainer's step metric) only in the trainer's rows and
    _step (a count of wandb.log calls) in all: the rows of the user's own wandb.log calls must keep a step."""
    found: list[str] = []
    for key in STEP_KEYS:
        name = find_key(cols.names, (key,))
        if name is not None and name not in found:
            found.append(name)
    complete = next((n for n in found if bool(cols.numeric(n).all())), None)
    return ([complete] + [n for n in found if n != complete]) if complete is not None else found


def tb_export_tag(path: Path) -> tuple[str, str]:
    """(run, tag) from TensorBoard's export name "run-<run>-tag-<tag>.csv" ('/' was written as '_')."""
    stem = path.stem
    if stem.startswith("run-") and "-tag-" in stem:
        run, tag = stem[4:].split("-tag-", 1)
        return run, tag
    return "", stem


def read_tb_export(path: Path) -> tuple[RawPoints, list[Note]]:
    """One tag from one TensorBoard-exported CSV ("Wall time,Step,Value"), named after the file."""
    df, notes = read_frame(path)
    if df.height == 0:
        raise LogFormatError("has a header but no rows")
    _, tag = tb_export_tag(path)
    # Fixed column names: the tag may itself be "Step" or collide with another column.
    sub = df.select(pl.col("Step").alias("step"), pl.col("Wall time").alias("wall_time"), pl.col("Value").alias("value"))
    pts, more = frame_to_points(sub, source=path.name, step_col="step", wall_col="wall_time")
    if len(pts) == 0:
        raise LogFormatError("no numeric values in its 'Value' column")
    return RawPoints((tag,), pts.tag_codes, pts.steps, pts.wall_times, pts.values), notes + more


def read_tb_exports(paths: list[Path]) -> tuple[RawPoints, list[Note]]:
    """One run from several exported CSVs, each file one tag."""
    parts: list[RawPoints] = []
    notes: list[Note] = []
    for path in paths:
        pts, more = read_tb_export(path)
        parts.append(pts)
        notes += more
    return RawPoints.concat(parts), notes
