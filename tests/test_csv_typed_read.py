"""CSV logs read straight into float columns mean what the text frame cast per column meant, cell for cell.

`csv_logs.read_frame` reads a CSV whose cells are all numbers or empty as Float64 columns (half the memory
of a frame of strings) and falls back to the text frame otherwise. Random files mix what a cell can be:
numbers of every spelling polars and Python write, NaN/inf spellings, empty and blank cells, text ("N/A",
"train"), numbers with a space or tab before or after them, quoted cells, steps beyond int64, short and
long (ragged) rows, CRLF line ends, a line that is not UTF-8, a cut last line, a padded (fixed-width)
header; each is read by every CSV reader (wide, Lightning, Keras, long, TensorBoard export) both ways, and
the points (tags in order, each tag's steps, wall times and values), notes and errors must be the text
path's exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analyzer.errors import LogFormatError
from analyzer.ingest import csv_logs

NUMBERS = st.one_of(
    st.integers(-5, 10**6).map(str), st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.floats(-1e6, 1e6).map(lambda x: f"{x:.6g}"),
    st.floats(-1e3, 1e3).map(lambda x: f"{x:.17e}"),
    st.sampled_from(["nan", "NaN", "NAN", "-nan", "inf", "-inf", "+inf", "Inf", "infinity", "-Infinity", "1e400",
                     "-1e-400", "9223372036854775808", "-9223372036854775809", "9223372036854775807", ".5", "5.",
                     "+1", "-0", "00012", "1E5", "1e+05", '"1.5"', '"nan"', '""', "", ""]),
)
OTHER = st.sampled_from(["", " ", "  ", "\t", "N/A", "train", "val", "None", "null", "true", "-", "0x10", "1_000",
                         "1.5f", "1..2", "--1", "e5", "1e", '" "', '" 1.5"', '"a,b"', " 1", "1 ", "\t2", " 3 ",
                         "\x0b", "\x1f", "1\r"])
# A third of the files hold numbers and empty cells only (the typed read takes them), a third one odd cell
# in a few hundred, a third anything.
MIXES = [NUMBERS, st.one_of(*[NUMBERS] * 300, OTHER), st.one_of(NUMBERS, NUMBERS, OTHER)]
HEADERS = [
    ["step", "loss", "grad_norm"], ["epoch", "step", "train_loss", "val_loss"], ["epoch", "loss", "val_loss"],
    ["step", "tag", "value"], ["epoch", "metric", "value", "wall_time"], ["a", "b"], ["loss", "acc", "lr"],
    ["Wall time", "Step", "Value"], ["   step", "    loss"], ["step", "loss", "loss"], ["time", "step", "x y"],
]


@st.composite
def csv_files(draw) -> bytes:
    header = draw(st.sampled_from(HEADERS))
    cells_of = draw(st.sampled_from(MIXES))
    lines = [",".join(header)]
    for _ in range(draw(st.integers(0, 25))):
        width = len(header) + draw(st.sampled_from([0, 0, 0, 0, 0, -1, 1]))
        cells = [draw(cells_of) for _ in range(max(width, 1))]
        if "tag" in header or "metric" in header:
            where = header.index("tag" if "tag" in header else "metric")
            if where < len(cells):
                cells[where] = draw(st.sampled_from(["loss", "acc", "step", "value", "", "a b"]))
        lines.append(",".join(cells))
    end = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    data = (end.join(lines) + end).encode()
    tweak = draw(st.integers(0, 12))
    if tweak == 0:
        data = data[:-1] + b"7"  # a cut last line
    elif tweak == 1 and len(lines) > 2:
        cut = data.index(b"\n") + 1
        data = data[:cut] + b"1,\xff\xfe,2" + end.encode() + data[cut:]  # a line that is not UTF-8
    elif tweak == 2:
        data = data.replace(b"\n", "\n\u00e9".encode(), 1)  # valid UTF-8 that is not ASCII
    return data


def _result(fn, path: Path):
    try:
        pts, notes = fn(path)
    except LogFormatError as exc:
        return ("error", str(exc))
    tags = [pts.tags[c] for c in np.unique(pts.tag_codes)]
    per_tag = {}
    for code, tag in enumerate(pts.tags):
        mine = pts.tag_codes == code
        per_tag[tag] = (pts.steps[mine].tolist(), pts.wall_times[mine].tobytes(), pts.values[mine].tobytes())
    return (tags, per_tag, [(n.kind, n.message, n.count, n.step) for n in notes])


def _readers(path: Path):
    yield "shape", lambda p: csv_logs.read_csv_log(p, csv_logs.sniff(p))
    for kind in ("wide", "long"):
        shape = csv_logs.CsvShape(kind, tuple(csv_logs.read_header(path)))  # type: ignore[arg-type]
        if kind == "long" and not csv_logs.find_key(shape.columns, csv_logs._TAG_COLS):
            continue
        yield kind, lambda p, shape=shape: csv_logs.read_csv_log(p, shape)
    yield "tb_export", csv_logs.read_tb_export


def _both(path: Path, monkeypatch) -> list[tuple[str, object, object]]:
    out = []
    for name, fn in _readers(path):
        try:
            typed = _result(fn, path)
        except (KeyError, AssertionError, pl_errors()) as exc:  # a header the reader was not meant for
            typed = ("raised", type(exc).__name__)
        with monkeypatch.context() as m:
            m.setattr(csv_logs, "_typed_frame", lambda *args: None)
            try:
                text = _result(fn, path)
            except (KeyError, AssertionError, pl_errors()) as exc:
                text = ("raised", type(exc).__name__)
        out.append((name, typed, text))
    return out


def pl_errors() -> type[Exception]:
    import polars as pl

    return pl.exceptions.ColumnNotFoundError


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=csv_files())
@example(data=b"   step,    loss\n0,1.5\n1,2.5\n")  # a padded header over unpadded cells
@example(data=b"step,loss\n0, 1.5\n1,\t2.5\n2,\" 3\"\n")  # polars' float reader takes all three
@example(data=b"step,loss,acc\n0,1.5\n1,2.5,3,4\n2,,\n3,nan,-inf\n")  # ragged rows, empty cells
@example(data=b"step,loss\r\n0,1.5\r\n1,\r\n")
@example(data=b"step,loss\n9223372036854775808,1\n")
@example(data=b"epoch,loss\n0,1\n1,2")
def test_typed_read_means_what_the_text_read_meant(tmp_path, monkeypatch, data):
    for name in ("metrics.csv", "run-a-tag-loss.csv"):
        path = tmp_path / name
        path.write_bytes(data)
        try:
            csv_logs.sniff(path)
        except LogFormatError:
            continue
        for reader, typed, text in _both(path, monkeypatch):
            assert typed == text, (reader, data)


def test_typed_read_is_taken_when_every_cell_is_a_number_or_empty(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,grad_norm,step,train_loss,val_loss\n0,1.5,0,2.3,\n0,,1,nan,\n0,1.2,2,-inf,0.5\n")
    df, notes = csv_logs.read_frame(path)
    assert df.dtypes == [csv_logs.pl.Float64] * 5 and notes == []
    path.write_text("step,tag,value\n0,loss,1.5\n1,loss,\n")
    df, _ = csv_logs.read_frame(path, csv_logs._TAG_COLS)
    assert df.dtypes == [csv_logs.pl.Float64, csv_logs.pl.String, csv_logs.pl.Float64]
    for text in ("step,loss\n0,N/A\n", "step,loss\n0, 1.5\n", "  step,  loss\n    0,  1.5\n"):
        path.write_text(text)
        df, _ = csv_logs.read_frame(path)
        assert csv_logs.pl.String in df.dtypes, text
    path.write_text("step,loss\n0,1\n1,N/A\n2,3\n")
    pts, notes = csv_logs.read_csv_log(path, csv_logs.sniff(path))
    assert pts.values.tolist() == [1.0, 3.0] and [n.count for n in notes if n.kind == "dropped"] == [1]


@pytest.mark.parametrize("data", [b"x,y\n" + "\u00e9,1\n".encode() * 300_000 + b"\xff,2\n" + b"3,4\n"])
def test_utf8_check_in_chunks_finds_a_bad_line_past_the_first_chunk(data):
    kept, bad = csv_logs._without_undecodable_lines(data)
    assert bad == 1 and kept.endswith(b"3,4\n") and len(kept) == len(data) - len(b"\xff,2\n")
