"""A CSV read in row chunks means what the whole file read as one polars frame meant, cell for cell.

`csv_logs.read_columns` splits a large CSV at line ends into chunks (each under the header line) and fills
numpy columns chunk by chunk. Here the chunk size is a few bytes, so hostile files (stray text cells, empty
and blank cells, ragged lines, CRLF, quoted cells holding commas and line ends, 'nan'/'inf' spellings, a
byte that is not UTF-8, blank lines, a cut last line, a pandas index column) are split everywhere a split
can fall. The oracle is the whole file read as one frame (`read_frame`), its columns and every reader's
points, notes and errors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analyzer.errors import LogFormatError
from analyzer.ingest import csv_logs
from analyzer.ingest.tabular import MetricColumns
from tests.test_csv_typed_read import NUMBERS, OTHER, _result

QUOTED = st.sampled_from(['"1.5"', '"a,b"', '"two\nlines"', '"x\r\ny"', '""', '"say ""hi"""', '" 2"'])
CELLS = st.one_of(NUMBERS, NUMBERS, NUMBERS, OTHER).filter(lambda cell: '"' not in cell)
HEADERS = [["step", "loss", "grad_norm"], ["epoch", "step", "train_loss", "val_loss"], ["epoch", "loss"],
           ["", "loss", "acc"], ["", "step", "loss"], ["time", "step", "x y"], ["   step", "    loss"],
           ["step", "loss", "loss"], ["a", "b"]]
WHOLE = 1 << 40


@st.composite
def hostile_csvs(draw) -> bytes:
    header = draw(st.sampled_from(HEADERS))
    quoted = draw(st.integers(0, 4)) == 0  # most files have no quote, so that they are split
    lines = [",".join(header)]
    for _ in range(draw(st.integers(0, 40))):
        shape = draw(st.integers(0, 12))
        if shape == 0:
            lines.append("")  # a blank line
            continue
        width = max(1, len(header) + draw(st.sampled_from([0, 0, 0, 0, -1, 1, 2])))
        cells = [draw(st.one_of(CELLS, QUOTED) if quoted else CELLS) for _ in range(width)]
        lines.append(",".join(cells))
    end = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    data = (end.join(lines) + end).encode()
    for _ in range(draw(st.integers(0, 2))):  # a damaged byte somewhere below the header
        at = draw(st.integers(data.index(b"\n") + 1, len(data)))
        data = data[:at] + b"\xff" + data[at:]
    if draw(st.booleans()):
        data = data[: draw(st.integers(data.index(b"\n") + 1, len(data)))]  # a cut (or whole) last line
    return data


def _columns(cols: MetricColumns) -> tuple[object, ...]:
    return (cols.names, cols.height, [(cols.values(n).tobytes(), cols.numeric(n).tolist(), cols.all_numbers(n))
                                      for n in cols.names])


def _outcome(fn, path: Path) -> object:
    try:
        return fn(path)
    except LogFormatError as exc:
        return ("error", str(exc))
    except Exception as exc:  # noqa: BLE001 - a reader not meant for this header raises as the whole read does
        return ("raised", type(exc).__name__, str(exc))


def _readings(path: Path) -> list[object]:
    out = [_outcome(lambda p: _columns(csv_logs.read_columns(p)[0]), path)]
    shape = csv_logs.CsvShape("wide", tuple(csv_logs.read_header(path)))  # Lightning and Keras CSVs read alike
    out.append(_outcome(lambda p: _result(lambda q: csv_logs.read_csv_log(q, shape), p), path))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=hostile_csvs(), chunk=st.integers(1, 48))
@example(data=b"step,loss\n0,1\n\n1,N/A\r\n2,nan\n3,\xff\n4,-inf\n5,1,2\n6\n", chunk=1)
@example(data=b",step,loss\n0,0,1\n1,1,x\n2,,2\n", chunk=3)
@example(data=b"step,loss\n0,1\n1,2\n", chunk=1)  # chunks end where the file ends
def test_chunked_read_means_what_the_whole_read_meant(tmp_path, monkeypatch, data, chunk):
    path = tmp_path / "metrics.csv"
    path.write_bytes(data)
    monkeypatch.setattr(csv_logs, "CHUNK_BYTES", WHOLE)
    whole = _readings(path)
    frame = _outcome(lambda p: _columns(MetricColumns.of_frame(csv_logs.read_frame(p)[0])), path)
    assert whole[0] == frame  # one chunk is the whole frame
    monkeypatch.setattr(csv_logs, "CHUNK_BYTES", chunk)
    assert _readings(path) == whole, data


def test_a_large_file_is_split_and_a_quote_keeps_it_whole(monkeypatch):
    monkeypatch.setattr(csv_logs, "CHUNK_BYTES", 8)
    data = b"step,loss\n" + b"".join(b"%d,%d.5\n" % (i, i) for i in range(100))
    chunks = list(csv_logs._chunks(data))
    assert len(chunks) > 10 and all(c.startswith(b"step,loss\n") and c.endswith(b"\n") for c in chunks)
    assert b"".join(c[len(b"step,loss\n"):] for c in chunks) == data[len(b"step,loss\n"):]
    quoted = data.replace(b"7,7.5", b'7,"7.5"')
    assert list(csv_logs._chunks(quoted)) == [quoted]


def test_columns_grow_when_the_row_estimate_falls_short():
    cols = MetricColumns(["step", "loss"], capacity=1)
    frames = [csv_logs.pl.DataFrame({"step": [float(i)] * 3, "loss": ["1", "x", ""]}) for i in range(4)]
    for df in frames:
        cols.add(df)
    assert cols.height == 12 and cols.values("step").tolist() == [float(i // 3) for i in range(12)]
    assert cols.numeric("loss").tolist() == [True, False, False] * 4 and not cols.all_numbers("loss")
    points, notes = cols.to_points(source="m.csv", step_col="step", wall_col=None)
    assert points.values.tolist() == [1.0] * 4 and np.all(points.steps == np.arange(4))
    assert [n.count for n in notes] == [4]
