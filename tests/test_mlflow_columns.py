"""MLflow file store metric files read by columns (polars) must read as the line-by-line parser reads them.

Files are built from the lines MLflow's FileStore writes (``f"{timestamp} {value} {step}"``, ``str(float)`` of
the value, older stores without a step) mixed with every line the column path must hand back to the line-by-line
parser: other spacings and whitespace, Python-only number spellings (``1_000``, ``Infinity``, ``+1``), blank,
short, long and non-numeric lines, steps outside int64, a cut-off last line, non-ASCII bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.errors import LogFormatError
from analyzer.ingest import mlflow
from analyzer.ingest.mlflow import _columns, _parse_lines, read_metric_file

_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
_CANONICAL = st.tuples(st.integers(0, 2 ** 45), _FLOATS, st.integers(-2 ** 62, 2 ** 62))
_ODD = st.sampled_from([
    "", " ", "1700 0.5", "1700  0.5 3", " 1700 0.5 3", "1700 0.5 3 ", "1700\t0.5\t3", "1700 0.5\r",
    "1700 1_000 3", "1700 Infinity 3", "1700 +1 3", "1700 NaN 3", "1700 0.5 3 9", "1700 abc 3", "1700",
    "1700 0.5 1e3", "1700 0.5 9223372036854775808", "1700 0.5 -9223372036854775809", "1700 0.5 inf", "1700 .5 3",
    "1700 0.5 nan", "1700 1e400 3", "1700 0.5 3\x0c", "1700 \u00e9 3", "1700 0.5 3\u00a0", "1700.5 0.5 3",
    "1700 0.5 +3", "+1700 0.5 3", "1700 0.5 -", "- 0.5 3", "1700 0.5 3-", "1700 0.5 --3", "1700 0.5 3e", "1700 - 3",
    "1700 0.5 00012", "1700 0.5 -0", "1700 . 3", "1700 -nan 3", "1700 +inf 3", "1700 1e5 3", "1700 e5 3", "1700 1e 3",
    "5", "1700 0.5 3 0", "1 2 3 4", "007", "+3 007 0.5", "1700 0.5 1.5e",
])


def _read(path: Path) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray] | None, object]:
    """(the column path's reading or None, the line parser's reading or the error it raised)."""
    data = path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    try:
        exact: object = _parse_lines(data.decode("utf-8", errors="replace"))
    except LogFormatError as exc:
        exact = exc
    return _columns(data), exact


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


@settings(max_examples=400, deadline=None)
@given(st.lists(_CANONICAL, min_size=1, max_size=30), st.booleans(),
       st.lists(st.tuples(st.integers(0, 30), _ODD), max_size=3), st.booleans())
def test_columns_read_as_the_lines_do(tmp_path_factory, written, with_step, odd, cut) -> None:  # type: ignore[no-untyped-def]
    # a store writes every line alike: with its step, or (before MLflow logged steps) without
    lines = [f"{ts} {v}" + (f" {step}" if with_step else "") for ts, v, step in written]
    for at, line in odd:
        lines.insert(min(at, len(lines)), line)
    path = tmp_path_factory.mktemp("m") / "loss"
    path.write_bytes(("\n".join(lines) + ("" if cut else "\n")).encode())
    fast, exact = _read(path)
    if isinstance(exact, LogFormatError):
        assert fast is None
        return
    assert isinstance(exact, tuple)
    columns, bad = exact
    if fast is None:
        assert odd or cut or bad or not all(_plain(line) for line in lines)
        return
    assert bad == 0
    assert all(_same(np.asarray(f), np.asarray(e)) for f, e in zip(fast, columns))


def _plain(line: str) -> bool:
    return all(c in "0123456789.-+eEnaif " for c in line)


def test_the_lines_mlflow_writes_take_the_column_path(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    values = [2.5, float("nan"), float("inf"), -float("inf"), 1e-05, 1e20, -0.0, 3e-4]
    path = tmp_path / "metrics" / "train" / "loss"
    path.parent.mkdir(parents=True)
    path.write_text("".join(f"{1_700_000_000_000 + i} {v} {i * 10}\n" for i, v in enumerate(values)))

    def no_line_parser(text: str) -> object:
        raise AssertionError("read line by line")

    monkeypatch.setattr(mlflow, "_parse_lines", no_line_parser)
    points, notes = read_metric_file(tmp_path, path)
    assert points.tags == ("train/loss",) and not notes
    assert points.steps.tolist() == [i * 10 for i in range(len(values))]
    got = points.values.tolist()
    assert all((math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
               for a, b in zip(got, values))
    assert points.wall_times.tolist() == [(1_700_000_000_000 + i) / 1000.0 for i in range(len(values))]


def test_a_short_line_and_a_long_one_do_not_make_up_for_each_other(tmp_path: Path) -> None:
    # one line without its step and value, one with a field too many: their spaces add up to two per line
    lines = [f"{1000 + i} {1.0 / (i + 1)} {i}" for i in range(50)]
    lines[10] += " 0"
    lines.append("1700000000")
    path = tmp_path / "loss"
    path.write_text("\n".join(lines) + "\n")
    fast, exact = _read(path)
    assert fast is None
    assert isinstance(exact, tuple) and exact[1] == 1 and len(exact[0][0]) == 50


def test_a_cut_last_line_is_counted_in_the_summary(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from analyzer.cli import main

    run = tmp_path / "mlruns" / "0" / "r1"
    (run / "metrics").mkdir(parents=True)
    (run / "meta.yaml").write_text("run_id: r1\nexperiment_id: '0'\n")
    lines = [f"{1_700_000_000_000 + i} {3.0 - 0.05 * i} {i}" for i in range(40)]
    (run / "metrics" / "loss").write_text("\n".join(lines) + "\n1700000000040 0.")  # killed mid-write
    result = CliRunner().invoke(main, ["inspect", str(tmp_path), "--no-cache", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "1 point(s)/record(s) dropped or superseded" in result.output


def test_steps_are_exact_to_the_last_bit_of_int64(tmp_path: Path) -> None:
    # through a float the step 2**53 + 1 read as 2**53 and int64's largest refused the file as out of range
    big = [2 ** 53 + 1, 2 ** 63 - 1, -(2 ** 63)]
    path = tmp_path / "loss"
    path.write_text("".join(f"{1700 + i} 0.5 {step}\n" for i, step in enumerate(big)))
    fast, exact = _read(path)
    assert fast is not None and isinstance(exact, tuple)
    assert fast[0].tolist() == big and exact[0][0].tolist() == big
    path.write_text("1700 0.5 1e3\n1701 0.5 3.0\n")  # other spellings of a whole step: the line parser's
    assert _read(path)[0] is None and _parse_lines(path.read_text())[0][0].tolist() == [1000, 3]
