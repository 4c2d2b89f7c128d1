"""The fast reading of W&B offline runs (wandb_framing, wandb_columns, wandb_fast) against the exact one.

The oracle: ``read_wandb_run(d)`` must give what ``read_wandb_run(d, exact=True)`` gives, bit for bit
(tags, tag codes, steps, wall times and values as raw bytes: NaN, inf and -0.0 included), the same
notes and hparams, or the same error. It is checked on runs written by the real wandb package
(offline, in a child process), on hostile byte-level edits of one of them (hypothesis), and on one
hand-built file per fallback check of the fast path: a record that only that check sends to the
exact path (removing the check makes that file's test fail).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.errors import LogFormatError
from analyzer.ingest import protowalk, wandb_columns, wandb_fast, wandb_framing
from analyzer.ingest.wandb_history import _json_value, _number
from analyzer.ingest.wandb_run import read_wandb_run
from tests.wandb_bytes import (BLOCK, base_records, chunks, field, history, item, overlong, run_dir, summary,
                               wandb_file)

pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")


# --- the oracle ------------------------------------------------------------------------------------

def _reading(folder: Path, exact: bool) -> Any:
    try:
        points, notes, hparams = read_wandb_run(folder, exact=exact)
    except LogFormatError as exc:
        return ("error", str(exc))
    columns = (points.tag_codes, points.steps, points.wall_times.view(np.uint64),
               points.values.view(np.uint64))
    return (points.tags, [(c.dtype.str, c.tolist()) for c in columns], notes, hparams)


def assert_same(folder: Path) -> Any:
    """Both readings alike; the fast one also with every run of fast records turned into points at once
    (by default a run shorter than wandb_fast._MIN_RUN is read record by record, as small files' are),
    and in batches of a few records (a file smaller than wandb_fast._BATCH is one batch; with runs of at
    least _MIN_RUN, no batch of 7 can use its columns, so most batches are read without them)."""
    exact = _reading(folder, exact=True)
    assert _reading(folder, exact=False) == exact
    defaults = wandb_fast._MIN_RUN, wandb_fast._BATCH
    try:
        for wandb_fast._MIN_RUN, wandb_fast._BATCH in ((1, defaults[1]), (1, 7), (defaults[0], 7)):
            assert _reading(folder, exact=False) == exact
    finally:
        wandb_fast._MIN_RUN, wandb_fast._BATCH = defaults
    return exact


def _kinds(data: bytes) -> np.ndarray:
    """Per record, how the fast path reads it (wandb_columns.SLOW, HISTORY or SUMMARY)."""
    columns = wandb_columns.decode(wandb_framing.frame(data), wandb_columns.layout(pb))
    assert columns is not None
    return columns.kind


# --- runs written by wandb itself ------------------------------------------------------------------

_WRITE_RUNS = textwrap.dedent("""
    import math, sys
    import numpy as np
    import wandb

    config = {"lr": 3e-4, "opt": {"name": "adamw", "b": [0.9, 0.95]}}
    run = wandb.init(project="t", id="varied01", config=config)
    wandb.define_metric("epoch")
    wandb.define_metric("val/*", step_metric="epoch")
    for i in range(60):
        row = {"train/loss": 2.0 / (i + 1), "grad_norm": 1 + i / 8, "neg_zero": -0.0, "flag": i % 2 == 0,
               "third": 1 / 3, "tiny": 5e-324, "maybe": None if i % 3 else i}
        if i % 10 == 3:
            row.update({"train/loss": math.nan, "grad_norm": math.inf, "neg": -math.inf, "none": None})
        if i % 10 == 5:
            row.update({"nested": {"a": i, "b": {"c": 0.5}}, "status": "warm", "λoss": 1.5, "big": 10 ** 30,
                        "huge": 10 ** 400})
        if i % 20 == 7:
            row["hist"] = wandb.Histogram(np.arange(10))
        if i % 10 == 9:
            row.update({"val/acc": i / 100, "epoch": i // 10})
        if i == 30:
            row["text"] = "x" * 70000  # a record longer than a block, written in pieces
        wandb.log(row, step=3 * i if i >= 40 else None)
    wandb.finish()
    for part in range(2):  # one run written twice: the second time resumed, into a folder of its own
        run = wandb.init(project="t", id="resumed1", resume="allow")
        for i in range(25):
            wandb.log({"loss": 1.0 / (25 * part + i + 1)})
        wandb.finish()
""")


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    pytest.importorskip("wandb")
    root = tmp_path_factory.mktemp("wandb_columns")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "WANDB_MODE": "offline", "WANDB_DIR": str(root),
           "WANDB_SILENT": "true", "WANDB_CONSOLE": "off", "WANDB_DISABLE_GIT": "true"}
    proc = subprocess.run([sys.executable, "-c", _WRITE_RUNS], env=env, cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found: dict[str, list[Path]] = {}
    for folder in sorted((root / "wandb").glob("offline-run-*")):  # a second folder in the same second: "-1"
        found.setdefault("resumed1" if "resumed1" in folder.name else "varied01", []).append(folder)
    assert sorted(found) == ["resumed1", "varied01"] and len(found["resumed1"]) == 2
    return found


def test_real_runs_read_the_same(real_runs: dict[str, list[Path]]) -> None:
    for folders in real_runs.values():
        for folder in folders:
            assert_same(folder)
    points_tags = assert_same(real_runs["varied01"][0])[0]
    assert {"train/loss", "nested.a", "nested.b.c", "val/acc", "λoss", "big", "flag"} <= set(points_tags)


def test_most_records_are_read_fast(real_runs: dict[str, list[Path]]) -> None:
    (data,) = [p.read_bytes() for p in real_runs["varied01"][0].glob("run-*.wandb")]
    kinds = _kinds(data)
    # 60 history rows: those with a nested dict, text, media, None or a non-ASCII key are read exactly.
    assert np.count_nonzero(kinds == wandb_columns.HISTORY) >= 30
    assert np.count_nonzero(kinds == wandb_columns.SLOW) < 0.25 * kinds.size


def test_resumed_run_files_in_one_folder(real_runs: dict[str, list[Path]], tmp_path: Path) -> None:
    files = {f"run-resumed1-{i}.wandb": next(folder.glob("run-*.wandb")).read_bytes()
             for i, folder in enumerate(real_runs["resumed1"])}
    files["run-varied01.wandb"] = next(real_runs["varied01"][0].glob("run-*.wandb")).read_bytes()
    reading = assert_same(run_dir(tmp_path, files))
    assert any(n.kind == "merged" for n in reading[2])


# --- hostile edits ---------------------------------------------------------------------------------

@st.composite
def _edits(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    where = chunks(data)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["cut", "flip", "zero", "rewrite", "header"]))
        if how == "cut":
            del out[draw(st.integers(0, len(out))):]
        elif how == "flip" and len(out) > 7:
            at = draw(st.integers(7, len(out) - 1))
            out[at] ^= draw(st.integers(1, 255))
        elif how == "zero" and len(out) > 7:
            at, size = draw(st.integers(7, len(out) - 1)), draw(st.integers(1, 40000))
            out[at: at + size] = bytes(len(out[at: at + size]))
        elif where:
            pos, length = draw(st.sampled_from(where))
            if pos + 7 + length > len(out):
                continue
            if how == "header":
                out[pos + 4: pos + 7] = draw(st.binary(min_size=3, max_size=3))
            elif length:  # change the record's bytes and fix the CRC: the decoders meet the change
                at = pos + 7 + draw(st.integers(0, length - 1))
                out[at] = draw(st.integers(0, 255))
                out[pos: pos + 4] = struct.pack("<I", zlib.crc32(bytes(out[pos + 6: pos + 7 + length])))
    return bytes(out)


@pytest.fixture(scope="module")
def small_run(real_runs: dict[str, list[Path]]) -> bytes:
    return next(real_runs["varied01"][0].glob("run-*.wandb")).read_bytes()


def test_hostile_edits_read_the_same(small_run: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = run_dir(tmp_path_factory.mktemp("edits"), {})

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data: st.DataObject) -> None:
        edited = data.draw(_edits(small_run))
        (folder / "run-x.wandb").write_bytes(edited)
        assert_same(folder)
        _same_framing(edited)

    check()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 70000), min_size=0, max_size=12), st.data())
def test_framing_of_any_layout(sizes: list[int], data: st.DataObject) -> None:
    """Records of any size (pieces across blocks, blocks' padded tails), then cut, zeroed or flipped."""
    file = bytearray(wandb_file([bytes([i % 251]) * n for i, n in enumerate(sizes)]))
    for _ in range(data.draw(st.integers(0, 3))):
        if len(file) <= 7:
            break
        at = data.draw(st.integers(7, len(file) - 1))
        how = data.draw(st.sampled_from(["cut", "flip", "zero"]))
        if how == "cut":
            del file[at:]
        elif how == "flip":
            file[at] ^= 1 << data.draw(st.integers(0, 7))
        else:
            file[at: at + 7] = bytes(len(file[at: at + 7]))
    _same_framing(bytes(file))


def _same_framing(file: bytes) -> wandb_framing.Framing:
    framing = wandb_framing.Framing()
    reference = list(wandb_framing.records(file, framing))
    framed = wandb_framing.frame(file)
    assert [framed.buf[a:b].tobytes() for a, b in zip(framed.starts, framed.ends)] == reference
    assert (framed.corrupt_chunks, framed.orphan_chunks, framed.truncated_bytes) == (
        framing.corrupt_chunks, framing.orphan_chunks, framing.truncated_bytes)
    return framing


def test_framing_edge_cases() -> None:
    file = wandb_file([b"a" * 100, b"b" * 50000, b"c" * 40000, b"d" * 10])
    first = next(pos for pos, length in chunks(file) if file[pos + 6] == 2)
    # cut right after a FIRST piece: no torn chunk, but a record left pending
    assert _same_framing(file[: first + 7 + struct.unpack_from("<H", file, first + 4)[0]]).truncated_bytes
    # a chunk that crosses its block's end, with a valid CRC: corrupt all the same
    payload = b"x" * (BLOCK - 7 - 7 + 5)
    crossing = b":W&B\xe1\xbe\x00" + struct.pack("<IHB", zlib.crc32(b"\x01" + payload), len(payload), 1) + payload
    assert _same_framing(crossing + wandb_file([b"y" * 10])[7:]).corrupt_chunks == 1
    # a length running past the file's end in a block before the last: the read ends there, before
    # the next block's corrupt chunk
    at = next(pos for pos, _ in chunks(file) if pos >= BLOCK)
    torn = bytearray(file)
    torn[at + 4: at + 6] = struct.pack("<H", 65535)
    torn[2 * BLOCK + 20] ^= 1
    assert _same_framing(bytes(torn)).truncated_bytes == len(file) - at


# --- value_json texts ------------------------------------------------------------------------------

_TEXTS = st.one_of(
    st.text(alphabet="0123456789.eE+-", max_size=30),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "nan", "inf", "-NaN", "1_0", " 1", "1 ", "1e400", "-0",
                     "true", "false", "null", "True", "nul", "-Infinityy", "Infinit",
                     "1e-400", "9" * 400, "true", "null", "{}", '"1"', "1.5\\u0000", "٣", "1e99999"]),
    st.floats().map(repr), st.floats().map(lambda x: f"{x:.17g}"), st.integers(-10 ** 30, 10 ** 30).map(str))


@settings(max_examples=200, deadline=None)
@given(st.lists(_TEXTS, min_size=1, max_size=40))
def test_values_read_as_float_reads_them(texts: list[str]) -> None:
    raw = [t.encode() for t in texts]
    buf = np.frombuffer(b"".join(raw) + bytes(32), np.uint8)
    lengths = np.array([len(r) for r in raw], np.int64)
    value, ok, null = wandb_columns._values(buf, np.cumsum(lengths) - lengths, lengths)
    for text, x, read, none in zip(texts, value.tolist(), ok.tolist(), null.tolist()):
        got = _json_value(text)
        want = _number(got)
        if none:
            assert got is None, text
        elif read:  # the fast path reads only what float() reads to the same number (NaN's bits too)
            assert want is not None and struct.pack("<d", x) == struct.pack("<d", want), text
    assert ok[[t in ("NaN", "Infinity", "-Infinity", "1.5", "-0") for t in texts]].all()


# --- one file per fallback check -------------------------------------------------------------------

_ITEM = field(1, item("a", "1"))
_INFO = field(200, b"\x0a\x05ab")  # a _RecordInfo whose stream_id runs past its end: protobuf refuses it
# Each: records that the fast path leaves to the exact path for one reason only.
_ONE_CHECK = {
    "a second history field (protobuf merges them)": history(9, [("a", "1")]) + field(2, field(1, item("b", "2"))),
    "a num varint longer than 10 bytes": b"\x08" + b"\xff" * 10 + b"\x01" + field(2, _ITEM),
    "a length varint longer than 5 bytes": b"\x08\x05\x12" + overlong(len(_ITEM), 6) + _ITEM,
    "a history field running past its record": b"\x08\x05" + field(2, b"\x0a\x40" + item("a", "1")),
    "a history record with _info": b"\x08\x05" + field(2, _ITEM + _INFO),
    "a summary record with _info": summary(5, field(1, field(2, b"a") + field(16, b"1")) + _INFO),
    "two steps (protobuf merges them)": b"\x08\x05" + field(2, _ITEM + field(2, b"\x08\x05") + field(2, b"")),
    "a step with another field": history(5, [("a", "1")], step=b"\x10\x05"),
    "a summary item's field running past its item": summary(5, field(1, b"\x12\x01a\x82\x01\x09" + b"1")),
    "a nested key of two parts": history(5, [field(2, b"a") + field(2, b"b") + field(16, b"1")]),
    "an item whose first field is no key": history(5, [field(9, b"x") + field(16, b"1.5")]),
    "a typed value": history(5, [pb.HistoryItem(nested_key=["a"], text="2.5").SerializeToString()]),
    "a key twice": history(5, [("a", "1"), ("a", "2")]),
    "a media key": history(5, [("img._type", "1")]),
    "a key not ASCII": history(5, [("λ", "1")]),
    "a value with a NUL at its end": history(5, [("a", "1.5\x00")]),
    "a value longer than 24 bytes": history(5, [("a", "1" * 30)]),
    "a value that is not UTF-8": history(5, [field(2, b"a") + field(16, b"\xff")]),
    "a summary string that is not UTF-8": summary(5, field(1, field(2, b"a") + field(16, b"\xff"))),
    # field number 0, which no protobuf parser accepts (an unknown field of another number it keeps)
    "a summary item's field numbered 0": summary(5, field(1, field(0, b"a") + field(16, b"1"))),
    "a summary item's field numbered 0 in a two-byte tag": summary(5, field(1, b"\x82\x00\x01a" + field(16, b"1"))),
}


@pytest.mark.parametrize("case", sorted(_ONE_CHECK))
def test_each_fallback_check(case: str, tmp_path: Path) -> None:
    records = base_records(20)
    records[21:21] = [_ONE_CHECK[case]]  # amid fast records, so the runs around it are read fast
    data = wandb_file(records + base_records(20)[1:])
    kinds = _kinds(data)
    assert kinds[21] == wandb_columns.SLOW
    assert np.count_nonzero(kinds == wandb_columns.HISTORY) == 40
    assert_same(run_dir(tmp_path, {"run-x.wandb": data}))


def test_step_metrics_across_runs_of_fast_records(tmp_path: Path) -> None:
    """define_metric records amid history ones: the latest step metric value carries across exact ones;
    steps that are not finite, not whole or past int64 are counted; W&B's own keys are no metrics."""
    records = base_records(3)
    records.append(pb.Record(num=50, metric=pb.MetricRecord(name="epoch")).SerializeToString())
    glob = pb.MetricRecord(glob_name="val/*", step_metric="epoch")
    records.append(pb.Record(num=51, metric=glob).SerializeToString())
    for i in range(80):
        row = [("val/loss", repr(i / 7)), ("_step", str(i)), ("_wandb.runtime", str(i))]
        if i % 9 == 4:
            row.append(("epoch", ["NaN", "2.5", "1e30", "Infinity", str(i // 9)][i % 5]))
        records.append(history(60 + i, row))
        if i == 40:
            records.append(pb.Record(num=200, metric=pb.MetricRecord(name="val/late", step_metric="_step"))
                           .SerializeToString())
    reading = assert_same(run_dir(tmp_path, {"run-x.wandb": wandb_file(records)}))
    assert {n.kind for n in reading[2]} >= {"dropped"}


def test_hash_collision_reads_the_batch_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = wandb_file(base_records(30))
    monkeypatch.setattr(protowalk, "_mix", lambda h, word, k: np.zeros_like(h))  # every key hashes alike
    assert wandb_columns.decode(wandb_framing.frame(data), wandb_columns.layout(pb)) is None
    assert_same(run_dir(tmp_path, {"run-x.wandb": data}))


class _Retyped:
    """A descriptor (or field) as another wandb release might define it: the same, but for some fields."""

    def __init__(self, real: Any, **changed: Any) -> None:
        self._real, self._changed = real, changed

    def __getattr__(self, name: str) -> Any:
        return self._changed[name] if name in self._changed else getattr(self._real, name)


def _protos(**messages: Any) -> Any:
    return _Retyped(pb, **{name: _Retyped(getattr(pb, name), DESCRIPTOR=d) for name, d in messages.items()})


def test_protos_of_another_shape_are_read_exactly() -> None:
    assert wandb_columns.layout(pb) is not None
    record = pb.Record.DESCRIPTOR
    num_as_text = _Retyped(record.fields_by_name["num"], type=9)  # Record.num a string
    fields = {**record.fields_by_name, "num": num_as_text}
    assert wandb_columns.layout(_protos(Record=_Retyped(record, fields_by_name=fields))) is None
    # a HistoryRecord whose items are of another message (here SummaryItem, with the same fields)
    assert wandb_columns.layout(_Retyped(pb, HistoryItem=pb.SummaryItem)) is None
    item = pb.SummaryItem.DESCRIPTOR
    numbered = [*item.fields, _Retyped(item.fields[0], type=3, number=20)]  # a summary item field no string
    assert wandb_columns.layout(_protos(SummaryItem=_Retyped(item, fields=numbered))) is None
