"""Fuzzing every reader with corruptions of small real files of every format (hypothesis).

Each case is a directory holding one template run (written by the real writer: PyTorch's
SummaryWriter, TF2 tensor scalars, Lightning's CSV layout, HF Trainer's trainer_state.json,
JSONL, an MLflow file store, TensorBoard's CSV export, a Keras CSV) with one of its files
corrupted, plus an untouched JSONL run. Corruptions: truncate, flip bits, splice in random
bytes, splice in or duplicate a stretch of the file itself, delete a stretch, deep nesting,
a huge line, odd encodings (UTF-16, BOM, CRLF, Latin-1 and NUL bytes), an empty file, a
dangling link in its place. Every case checks, through the whole pipeline (read, diagnose,
JSON report, terminal report, HTML report without figures):

1. no uncaught exception;
2. every file is accounted for in the report's inputs, exactly once;
3. no point is read that was not written. Strictly for TensorBoard files (every record's CRC
   is checked) and for corruptions that keep lines whole (truncation, encodings, whole lines
   duplicated or dropped); text formats carry no checksum, so a changed byte inside a line
   can change that line's numbers, and there the check is that it cannot change more than
   the points of the lines it touched.

Values at the extremes (steps of 1e30, +-1e308, NaN, inf, subnormals, -0.0) are fuzzed
through the writers themselves: a point must then be read exactly as written, or its file
rejected with a reason. Output paths are fuzzed too (an input spelled every way: itself, via
``..``, a symlink, a hard link, another file in the input directory; a FIFO, /dev/null, stdout,
both outputs the same) through `inspect`, `report` and `watch`: the inputs keep every byte and
the answer is a report or one line, never an internal error. So are URLs with credentials
(random users and passwords with ':', '/', quotes, '%', for memory://, https://, s3:// and an
unknown scheme), with -v and --debug: neither appears in anything printed. The bounded run here takes well under a minute; the long run
(>= 100,000 cases) is `python benchmarks/fuzz_long.py` (figures in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.pipeline import analyze
from reporters import html as html_report
from reporters.json_report import report_dict
from reporters.terminal import render_inspect
from tests.writers import (curve, export_tensorboard_json, hf_log_history, write_jsonl, write_lightning_csv, write_mlflow_run,
                           write_summarywriter, write_tf2_tensor_scalars, write_trainer_state)

OPTS = LoadOptions(cache_dir=None, workers=1)
KEEP_ALL = LoadOptions(cache_dir=None, workers=1, restarts="keep_all")
N = 16  # steps per template run: small files, so a case costs milliseconds


def _count(name: str) -> None:
    """Cases run per test, for the long run's figures (benchmarks/fuzz_long.py)."""
    path = os.environ.get("STEADYTRAIN_FUZZ_STATS")
    if path:
        with open(path, "a") as fh:
            fh.write(name + "\n")


# -- templates: (files relative to the run's root, which of them hold points, points per line) -------------------


def _tb(root: Path) -> None:
    write_summarywriter(root / "tb", {"train/loss": curve(N), "train/grad_norm": curve(N, seed=1) + 1,
                                      "train/lr": np.full(N, 1e-3)})


def _tf2(root: Path) -> None:
    write_tf2_tensor_scalars(root / "tf2", {"epoch_loss": curve(N), "epoch_lr": [0.1] * N})


def _lightning(root: Path) -> None:
    write_lightning_csv(root / "lightning_logs" / "version_0", curve(N), val_every=5)


def _hf(root: Path) -> None:
    loss = curve(N * 10)
    write_trainer_state(root / "out", hf_log_history(loss, grad_norm=loss * 2, eval_steps=50), max_steps=N * 10,
                        checkpoints=[80])


def _jsonl(root: Path) -> None:
    write_jsonl(root / "metrics.jsonl", [{"step": i, "loss": float(v), "lr": 0.01, "nested": {"acc": i / N}}
                                         for i, v in enumerate(curve(N))])


def _mlflow(root: Path) -> None:
    write_mlflow_run(root / "mlruns", "0", "abc", {"train/loss": curve(N), "grad_norm": curve(N, seed=2)},
                     {"learning_rate": 0.01})


def _tb_export(root: Path) -> None:
    (root / "exports").mkdir(parents=True)
    for tag, values in (("loss", curve(N)), ("lr", np.full(N, 0.1))):
        lines = ["Wall time,Step,Value"] + [f"{1700000000.5 + i},{i * 10},{float(v)!r}" for i, v in enumerate(values)]
        (root / "exports" / f"run-a-tag-{tag}.csv").write_text("\n".join(lines) + "\n")


def _tb_export_json(root: Path) -> None:
    write_summarywriter(root / "events" / "a", {"loss": curve(N), "lr": np.full(N, 0.1)})
    export_tensorboard_json(root / "events", root / "exports")
    shutil.rmtree(root / "events")


def _keras(root: Path) -> None:
    (root / "keras").mkdir(parents=True)
    rows = "".join(f"{e},{1 / (e + 1)!r},{1.2 / (e + 1)!r}\n" for e in range(N))
    (root / "keras" / "training.log.csv").write_text("epoch,loss,val_loss\n" + rows)


WRITERS = {"tensorboard": _tb, "tf2_tensors": _tf2, "lightning": _lightning, "hf_trainer": _hf, "jsonl": _jsonl,
           "mlflow": _mlflow, "tb_export_csv": _tb_export, "keras_csv": _keras, "tb_export_json": _tb_export_json}
#: How many points one line of a data file can carry (a byte changed inside a line can change these).
PER_LINE = {"tensorboard": 0, "tf2_tensors": 0, "lightning": 6, "hf_trainer": 8, "jsonl": 4, "mlflow": 1,
            "tb_export_csv": 1, "keras_csv": 3, "tb_export_json": N}  # the JSON export is one line
BINARY = {"tensorboard", "tf2_tensors"}


def _key(tag: str, step: int, value: float) -> tuple[str, int, object]:
    return tag, int(step), ("nan" if math.isnan(value) else float(value))


def _points(runs) -> set[tuple[str, int, object]]:  # type: ignore[no-untyped-def]
    out = set()
    for run in runs:
        for tag, step, value in run.points.select(["tag", "step", "value"]).iter_rows():
            out.add(_key(str(tag), step, value))
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@functools.lru_cache(maxsize=None)
def template(name: str) -> tuple[dict[str, bytes], frozenset, tuple[str, ...]]:
    """(files, every point written, the files that hold points) of one format's template run."""
    root = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    try:
        WRITERS[name](root / "t")
        files = _files(root / "t")
        runs, inputs = load_runs([root / "t"], KEEP_ALL)
        data = tuple(sorted(Path(i.path).relative_to(root / "t").as_posix() for i in inputs
                            if i.status == "read" and i.run and Path(i.path).as_posix() in
                            {s for r in runs for s in r.sources}))
        return files, frozenset(_points(runs)), data
    finally:
        shutil.rmtree(root, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def good_run() -> tuple[bytes, frozenset]:
    root = Path(tempfile.mkdtemp(prefix="fuzz-good-"))
    try:
        p = write_jsonl(root / "good" / "log.jsonl", [{"iter": i, "total_loss": 2.0 / (i + 1)} for i in range(N)])
        runs, _ = load_runs([root], KEEP_ALL)
        return p.read_bytes(), frozenset(_points(runs))
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- corruptions -----------------------------------------------------------------------------------------------------

#: Corruptions that keep every line of a text file whole: nothing read may differ from what was written.
LINE_SAFE = {"truncate", "utf16", "bom", "crlf", "dup_lines", "drop_lines", "empty"}


@st.composite
def corruption(draw: st.DrawFn, data: bytes) -> tuple[str, bytes]:
    n = len(data)
    kind = draw(st.sampled_from(["truncate", "flip", "splice_random", "splice_self", "duplicate", "delete",
                                 "deep_nesting", "huge_line", "utf16", "bom", "crlf", "latin1_nul", "dup_lines",
                                 "drop_lines", "empty"]))
    pos = draw(st.integers(0, n))
    if kind == "truncate":
        return kind, data[:pos]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            if out:
                i = draw(st.integers(0, len(out) - 1))
                out[i] ^= 1 << draw(st.integers(0, 7))
        return kind, bytes(out)
    if kind == "splice_random":
        return kind, data[:pos] + draw(st.binary(min_size=1, max_size=64)) + data[pos:]
    if kind in ("splice_self", "duplicate"):
        a = draw(st.integers(0, n))
        b = min(n, a + draw(st.integers(1, 256)))
        at = pos if kind == "splice_self" else b
        return kind, data[:at] + data[a:b] + data[at:]
    if kind == "delete":
        return kind, data[:pos] + data[pos + draw(st.integers(1, 128)):]
    if kind == "deep_nesting":
        depth = draw(st.sampled_from([10, 990, 5000, 100_000]))
        return kind, data[:pos] + b'\n{"step": 3, "x": ' + b"[" * depth + b"]" * depth + b"}\n" + data[pos:]
    if kind == "huge_line":
        return kind, data[:pos] + b"\n" + b"9" * draw(st.sampled_from([4096, 70_000, 1_200_000])) + b"\n" + data[pos:]
    if kind == "utf16":
        return kind, data.decode("utf-8", "replace").encode("utf-16")
    if kind == "bom":
        return kind, b"\xef\xbb\xbf" + data
    if kind == "crlf":
        return kind, data.replace(b"\n", b"\r\n")
    if kind == "latin1_nul":
        return kind, data[:pos] + draw(st.sampled_from([b"\xe9", b"\x00", b"\xff\xfe", b"\x00" * 9])) + data[pos:]
    lines = data.split(b"\n")
    if kind == "dup_lines":
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines)))
        return kind, b"\n".join(lines[:j] + [lines[i]] + lines[j:])
    if kind == "drop_lines":
        i = draw(st.integers(0, len(lines) - 1))
        return kind, b"\n".join(lines[:i] + lines[i + 1 + draw(st.integers(0, 3)):])
    return kind, b""


def _is_float(text: bytes) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _altered_lines(before: bytes, after: bytes) -> int:
    return sum((Counter(after.split(b"\n")) - Counter(before.split(b"\n"))).values())


def run_pipeline(root: Path) -> tuple[set, list]:
    """Read, diagnose and report ``root`` the way `steadytrain report --json` does (figures off: speed)."""
    report = analyze([root], load_options=OPTS)
    json.dumps(report_dict(report), allow_nan=False)
    render_inspect(report, verbose=True)
    full, most = html_report.ALL_PLOTS_UP_TO, html_report.MAX_FULL_PLOT_RUNS
    html_report.ALL_PLOTS_UP_TO = html_report.MAX_FULL_PLOT_RUNS = 0
    try:
        html_report.render_html(report)
    finally:
        html_report.ALL_PLOTS_UP_TO, html_report.MAX_FULL_PLOT_RUNS = full, most
    return _points(d.run for d in report.diagnoses), list(report.inputs)


def check_case(fmt: str, target: str, kind: str, corrupted: bytes | None) -> None:
    files, written, data_files = template(fmt)
    good_bytes, good_points = good_run()
    root = Path(tempfile.mkdtemp(prefix="fuzz-case-"))
    try:
        for rel, content in files.items():
            p = root / "t" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if rel != target:
                p.write_bytes(content)
            elif corrupted is None:
                os.symlink(root / "nowhere", p)  # a dangling link where the file was
            else:
                p.write_bytes(corrupted)
        (root / "good").mkdir()
        (root / "good" / "log.jsonl").write_bytes(good_bytes)
        read, inputs = run_pipeline(root)  # 1. no uncaught exception (the good run is always readable)
        on_disk = sorted(str(p) for p in root.rglob("*") if not p.is_dir())
        assert sorted(i.path for i in inputs) == on_disk  # 2. every file accounted for, once
        unexpected = read - written - good_points  # 3. no point read that was not written
        # An indented JSON document's records span lines: dropping lines can run two records together
        # (a repeated key gives that away; a clean merge is valid JSON): values stay ones written. A repeated
        # line is one altered line (the bound below).
        line_safe = kind in LINE_SAFE and not (fmt == "hf_trainer" and kind == "dup_lines")
        if fmt == "hf_trainer" and kind == "drop_lines" and target in data_files:
            invented = {(t, v) for t, _, v in unexpected} - {(t, v) for t, _, v in written}
            assert not invented, (kind, sorted(invented)[:5])
        elif fmt in BINARY or target not in data_files or line_safe or corrupted is None:
            assert not unexpected, (kind, sorted(unexpected)[:5])
        else:
            header_changed = fmt in ("lightning", "keras_csv", "tb_export_csv") and \
                corrupted.split(b"\n", 1)[0] != files[target].split(b"\n", 1)[0]
            if header_changed:  # renamed columns (maybe the step column: then the row number is the step, noted)
                numbers = {_key("", 0, float(x))[2] for x in re.findall(rb"[-+0-9.eEinfa]+", files[target])
                           if _is_float(x)}
                unexpected = {v for _, _, v in read} - numbers - {v for _, _, v in written | good_points}
            bound = _altered_lines(files[target], corrupted) * PER_LINE[fmt]
            assert len(unexpected) <= bound, (kind, len(unexpected), bound, sorted(unexpected)[:5])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_templates_read_back_what_the_writers_wrote():
    """The fuzz oracle ("written") is the reader's view of the clean file: check it against the writers' values."""
    for fmt in WRITERS:
        files, written, data_files = template(fmt)
        assert written and data_files, fmt
    steps = {(t, s) for t, s, _ in template("tensorboard")[1]}
    assert steps == {(t, s) for t in ("train/loss", "train/grad_norm", "train/lr") for s in range(N)}
    loss = {s: v for t, s, v in template("jsonl")[1] if t == "loss"}
    assert [loss[s] for s in range(N)] == [float(v) for v in curve(N)]
    tb = {s: v for t, s, v in template("tensorboard")[1] if t == "train/loss"}
    assert [tb[s] for s in range(N)] == [float(np.float32(v)) for v in curve(N)]


FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("fmt", sorted(WRITERS))
@FUZZ
@given(data=st.data())
def test_corrupted_files_never_crash_never_vanish_never_invent(fmt, data):
    files, _, data_files = template(fmt)
    target = data.draw(st.sampled_from(sorted(files)) if data.draw(st.integers(0, 4)) == 0
                       else st.sampled_from(data_files), label="file")
    if data.draw(st.integers(0, 40), label="dangling?") == 0:
        kind, corrupted = "dangling_link", None
    else:
        kind, corrupted = data.draw(corruption(files[target]), label="corruption")
    _count(f"corrupt[{fmt}]")
    check_case(fmt, target, kind, corrupted)


EXTREMES = [0.0, -0.0, 1.0, -2.5, 1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324, 1e-320, 1e30, -1e30,
            math.nan, math.inf, -math.inf, 3.4028235e38, 1e39]
STEPS = [0, 1, 2, 3, -1, 2**31, 2**53, 2**63 - 1024, -(2**63), 2**63, 1e30, -1e30, 9.5]


def _extreme_files(fmt: str, steps: list, values: list, root: Path) -> None:
    rows = list(zip(steps, values))
    if fmt == "jsonl":
        with open(root / "x.jsonl", "w") as fh:
            for s, v in rows:
                fh.write(json.dumps({"step": s, "loss": v}) + "\n")  # json writes NaN/Infinity, as Python loggers do
    elif fmt == "csv":
        (root / "x.csv").write_text("step,loss\n" + "".join(f"{s!r},{v!r}\n" for s, v in rows))
    elif fmt == "hf_trainer":
        history = [{"epoch": 0.1, "loss": v, "step": s} for s, v in rows]
        write_trainer_state(root / "out", history, max_steps=10)
    elif fmt == "mlflow":
        run = write_mlflow_run(root / "mlruns", "0", "r", {"loss": [0.0]}, {})
        (run / "metrics" / "loss").write_text("".join(f"1700000000000 {v!r} {s!r}\n" for s, v in rows))
    else:
        write_summarywriter(root / "tb", {"loss": [v for _, v in rows]},
                            steps=[int(s) if isinstance(s, int) and -(2**63) <= s < 2**63 else i
                                   for i, (s, _) in enumerate(rows)])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "hf_trainer", "mlflow", "tensorboard"])
@FUZZ
@given(rows=st.lists(st.tuples(st.sampled_from(STEPS), st.sampled_from(EXTREMES)), min_size=1, max_size=12))
def test_extreme_numbers_are_read_exactly_or_the_file_is_rejected(fmt, rows):
    _count(f"extreme[{fmt}]")
    steps, values = [s for s, _ in rows], [v for _, v in rows]
    root = Path(tempfile.mkdtemp(prefix="fuzz-extreme-"))
    try:
        _extreme_files(fmt, steps, values, root)
        (root / "good").mkdir()
        (root / "good" / "log.jsonl").write_bytes(good_run()[0])
        read, inputs = run_pipeline(root)
        assert sorted(i.path for i in inputs) == sorted(str(p) for p in root.rglob("*") if not p.is_dir())
        read -= good_run()[1]
        if fmt == "tensorboard":  # float32 on disk; integer steps only
            tb_steps = [int(s) if isinstance(s, int) and -(2**63) <= s < 2**63 else i for i, s in enumerate(steps)]
            with np.errstate(over="ignore"):  # 1e308 is inf in float32, as the writer stored it
                expected = {_key("loss", s, float(np.float32(v))) for s, v in zip(tb_steps, values)}
            assert read <= expected
            return
        in_range = [isinstance(s, int) and -(2**63) <= s < 2**63 or isinstance(s, float) and abs(s) < 2**63
                    for s in steps]
        expected = {_key("loss", int(s), float(v)) for s, v, ok in zip(steps, values, in_range) if ok}
        assert read <= expected, sorted(read - expected)[:5]
        skipped = [i for i in inputs if i.status == "skipped"]
        if not all(in_range):
            assert read == set() and any("outside the range of a 64-bit step counter" in i.reason for i in skipped)
        else:
            last = {}  # a step read is its last write (the restart policy drops what a restart superseded)
            for s, v in zip(steps, values):
                last[int(s)] = _key("loss", int(s), float(v))
            assert all(last[s] == (t, s, v) for t, s, v in read), sorted(read)[:5]
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- outputs and URL credentials: nothing destroyed, nothing leaked ---------------------------------------------------

def _output_case(root: Path, how: str, inputs: dict[Path, bytes], tag: str) -> Path | str:
    """An output path spelled ``how`` relative to the input log under ``root``; files it creates are named
    with ``tag`` (the two outputs of a case never collide by accident); ``inputs`` gains what must survive."""
    log = root / "runs" / "a" / "metrics.jsonl"
    inputs[log] = log.read_bytes()
    if how == "the input":
        return log
    if how == "via ..":
        return root / "runs" / "a" / ".." / "a" / "metrics.jsonl"
    if how == "symlink":
        (root / f"link{tag}.jsonl").symlink_to(log)
        return root / f"link{tag}.jsonl"
    if how == "hard link":
        os.link(log, root / f"hard{tag}.jsonl")
        return root / f"hard{tag}.jsonl"
    if how == "another file in the input":
        (root / "runs" / f"notes{tag}.txt").write_text("mine")
        inputs[root / "runs" / f"notes{tag}.txt"] = b"mine"
        return root / "runs" / f"notes{tag}.txt"
    if how == "fifo":
        os.mkfifo(root / f"pipe{tag}")
        return root / f"pipe{tag}"
    if how == "/dev/null":
        return Path("/dev/null")
    if how == "stdout":
        return "-"
    if how == "new file in the input":
        return root / "runs" / f"report{tag}.out"
    return root / "out" / f"report{tag}.out"  # an ordinary new file


OUTPUT_SPELLINGS = ["the input", "via ..", "symlink", "hard link", "another file in the input", "fifo", "/dev/null",
                    "stdout", "new file in the input", "ordinary"]


@pytest.mark.parametrize("command", ["inspect", "report", "watch"])
@FUZZ
@given(html=st.sampled_from(OUTPUT_SPELLINGS), js=st.sampled_from(OUTPUT_SPELLINGS),
       same=st.booleans(), given_as_file=st.booleans())
def test_outputs_never_destroy_an_input_a_device_or_each_other(command, html, js, same, given_as_file):
    """Whatever the output paths, the inputs keep every byte, devices stay devices, no file named '-'
    appears, and the answer is a report (exit 0) or one line (exit 2), never an internal error."""
    from click.testing import CliRunner

    from analyzer.cli import main

    _count(f"outputs[{command}]")
    root = Path(tempfile.mkdtemp(prefix="fuzz-outputs-"))
    cwd = os.getcwd()
    try:
        os.chdir(root)
        (root / "runs" / "a").mkdir(parents=True)
        (root / "runs" / "a" / "metrics.jsonl").write_bytes(good_run()[0])
        inputs: dict[Path, bytes] = {}
        json_out = _output_case(root, js, inputs, "1")
        html_out = json_out if same else _output_case(root, html, inputs, "2")
        source = root / "runs" / "a" / "metrics.jsonl" if given_as_file else root / "runs"
        if given_as_file:  # the log alone is the input: a file beside it is the user's to overwrite
            inputs = {p: b for p, b in inputs.items() if p.name == "metrics.jsonl"}
        args = [command, str(source), "--no-cache", "--json", str(json_out)]
        args += [] if command == "inspect" else ["-o", str(html_out)]
        args += ["--once"] if command == "watch" else []
        res = CliRunner().invoke(main, args)
        assert res.exit_code in (0, 2), (args, res.output)
        if res.exit_code == 2:
            assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
        for path, before in inputs.items():
            assert path.read_bytes() == before, (args, path)
        assert not (root / "-").exists() and os.path.exists("/dev/null") and not Path("/dev/null").is_file()
        if str(json_out) == "-" and res.exit_code == 0:
            assert json.loads(res.stdout)["schema_version"] == 1
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)


SECRET_CHARS = st.text(alphabet="abcXYZ0189-._~!$&'()*+,;=:/%", min_size=1, max_size=24)


@pytest.mark.parametrize("scheme", ["memory", "https", "zz", "s3"])
@FUZZ
@given(user=st.text(alphabet="abcXYZ0189-._~", min_size=1, max_size=12), password=SECRET_CHARS,
       rest=st.sampled_from(["bucket/runs", "bucket", "bucket/a@b/runs", "host/x/"]), flags=st.sampled_from(
           [[], ["-v"], ["-v", "--debug"]]))
def test_url_credentials_appear_in_no_output(scheme, user, password, rest, flags):
    """A URL with credentials in it, through the whole command (-v and --debug included): the user and the
    password are in no line printed, no message and no exception text."""
    from click.testing import CliRunner

    from analyzer.cli import main

    _count(f"url_credentials[{scheme}]")
    user, password = f"U{user}Q", f"P{password}Q"  # marked: found only where they leaked, never by chance
    authority = f"{user}:{password}"
    host = "127.0.0.1:9/" + rest if scheme == "https" else rest
    url = f"{scheme}://{authority}@{host}"
    extra = ["--storage-option", "endpoint_url=not-a-url"] if scheme == "s3" else []
    res = CliRunner().invoke(main, [*flags, "inspect", url, "--no-cache", *extra])
    assert res.exit_code == 2, res.output
    text = res.stdout + res.stderr
    assert password not in text and user not in text, text
    assert f"{scheme}://***@" in text, text
