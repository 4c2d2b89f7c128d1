"""The vectorised JSONL reader means what the row-by-row one meant (tests/jsonl_reference.py), line for line.

Random files mix everything a line can be: objects of numbers, numeric and other strings, NaN and
Infinity tokens, nulls, bools, lists, nested objects, repeated keys, colons inside strings and keys
(also written as ``\\u003a``), blank and whitespace lines, text that is not JSON, JSON that is not an
object, lines nested past the parser's limit, a cut last line, split fields and per-epoch counters.
They are read with blocks small enough that polars blocks, orjson blocks and the exact parser all
take part, and the points (tags in order, each tag's steps and values in order), notes and errors
must be the reference reader's exactly.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.errors import LogFormatError
from analyzer.ingest import jsonl
from analyzer.ingest.jsonl import read_jsonl
from tests import jsonl_reference

KEYS = ["step", "global_step", "iter", "epoch", "loss", "val_loss", "grad_norm", "lr", "split", "mode", "a/b",
        "Step", "x:y", "val/loss", "time", "acc", "\ud800k"]
SCALARS = st.one_of(
    st.integers(-5, 50), st.integers(-(2**70), 2**70), st.sampled_from([2**63, -(2**63) - 1, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.1, 2.5, 1e308, -0.0, 5e-324]),
    st.sampled_from(["2.5", " 3 ", "nan", "inf", "1_000", "", "train", "val", "eval", "test", "hello:world",
                     "{x", "true", "false", "[1]", "Infinity", "\ud800", "\U0001f600", "a\tb", "x: NaN", "y:Infinity}",
                     'he said "k": NaN, "j": 1', "null", "a: null"]),
    st.booleans(), st.none(),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                   st.fixed_dictionaries({"b": SCALARS}, optional={"c": st.fixed_dictionaries({"d": SCALARS})}))


def _obj_line(draw) -> str:
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=6, unique=True))
    obj = {k: draw(VALUES) for k in keys}
    if "split" in obj or "mode" in obj:
        obj[draw(st.sampled_from(["split", "mode"]))] = draw(st.sampled_from(["train", "val", "train", "eval"]))
    text = json.dumps(obj, separators=draw(st.sampled_from([(", ", ": "), (",", ":")])))
    tweak = draw(st.integers(0, 30))
    if tweak == 0 and len(obj) > 1:  # a repeated key: the first key written again
        text = text[:-1] + ", " + json.dumps(next(iter(obj))) + ": 1}"
    elif tweak == 1:
        text = text.replace(":", "\\u003a", 1) if '":' not in text[:3] else text
        text = text[:-1] + ', "k\\u003a": 1}' if len(text) > 2 else text
    return text


@st.composite
def lines(draw) -> str:
    out = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.integers(0, 40))
        if kind == 0:
            out.append(draw(st.sampled_from(["", "   ", "\t", "\r"])))
        elif kind == 1:
            out.append(draw(st.sampled_from(["not json", '{"step": 1, "lo', "[1, 2]", "3", '"s"', "{}",
                                             '{"step": NaN, "loss": 1}', '{"step": 2, "loss": -Infinity}'])))
        elif kind == 2:
            out.append('{"step": 9, "x": ' + "[" * 1100 + "]" * 1100 + "}")
        elif kind == 3:
            out.append('{"step": 9, "x": ' + "[" * 150 + "]" * 150 + "}")
        else:
            out.append(_obj_line(draw))
    text = "\n".join(out)
    return text if draw(st.booleans()) else text + "\n"


@st.composite
def epoch_counters(draw) -> str:
    rows = []
    for epoch in range(1, draw(st.integers(2, 4)) + 1):
        for it in draw(st.lists(st.integers(1, 60), min_size=1, max_size=4, unique=True).map(sorted)):
            rows.append({"mode": "train", "epoch": epoch, "iter": it, "loss": 1.0 / (epoch * it)})
        if draw(st.booleans()):
            rows.append({"mode": "val", "epoch": epoch, "iter": 7, "acc": epoch / 10})
    if draw(st.booleans()):
        rows.insert(0, {"env_info": "x: y", "seed": 0})
    return "".join(json.dumps(r) + "\n" for r in rows)


@st.composite
def mmengine(draw) -> str:
    rows = []
    for it in range(10, 10 * draw(st.integers(2, 12)), 10):
        rows.append({"lr": 0.1, "loss": 1 / it, "epoch": 1 + it // 40, "iter": it, "step": it})
        if it % 40 == 0:
            rows.append({"acc": it / 1000, "step": draw(st.sampled_from([it // 40, it, 99]))})
    return "".join(json.dumps(r) + "\n" for r in rows)


def _by_tag(points) -> tuple[tuple[str, ...], dict[str, tuple[list[int], list[float]]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for i, tag in enumerate(points.tags):
        mine = points.tag_codes == i
        out[tag] = (points.steps[mine].tolist(), [repr(v) for v in points.values[mine].tolist()])
    return points.tags, out


def _read(read, path):
    try:
        pts, notes = read(path, jsonl.sniff(path))
    except LogFormatError as exc:
        return "error", str(exc)
    return _by_tag(pts), sorted((n.kind, n.message, n.count) for n in notes)


def _same(tmp_path, text: str, monkeypatch, block: int) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(text.encode())
    try:
        jsonl.sniff(path)
    except LogFormatError:
        return
    expected = _read(jsonl_reference.read_jsonl, path)
    monkeypatch.setattr(jsonl, "BLOCK_BYTES", block)
    assert _read(read_jsonl, path) == expected


CASES = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@CASES
@given(text=st.one_of(lines(), epoch_counters(), mmengine()), block=st.sampled_from([1, 200, 1 << 20]))
def test_reads_what_the_row_by_row_reader_read(tmp_path_factory, text, block):
    with pytest.MonkeyPatch.context() as mp:
        _same(tmp_path_factory.mktemp("j"), text, mp, block)


def test_polars_and_orjson_blocks_agree_on_a_long_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3000):
        row = {"step": i, "loss": float(rng.normal()), "grad_norm": float(rng.random())}
        if i % 100 == 0:
            row["val_loss"] = None if i % 300 == 0 else float(rng.random())
        if i % 777 == 0:
            row["loss"] = math.nan
        if i == 1500:
            row["note"] = "restart at 12:30:01"
        rows.append(json.dumps(row))
    rows[2000] = rows[2000][:-1] + ', "loss": 3}'  # a repeated key
    rows[2500] = rows[2500][:20]  # a cut line in the middle
    _same(tmp_path, "\n".join(rows) + "\n", monkeypatch, 1 << 20)
    _same(tmp_path, "\n".join(rows) + "\n", monkeypatch, 4096)


# ---- trainer_state.json ----

HF_KEYS = ["step", "loss", "grad_norm", "learning_rate", "epoch", "eval_loss", "train_runtime", "total_flos", "x:y"]


@st.composite
def trainer_states(draw) -> str:
    history = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.integers(0, 20))
        if kind == 0:
            history.append(draw(st.sampled_from([1, "x", None, [1, 2]])))
            continue
        keys = draw(st.lists(st.sampled_from(HF_KEYS), min_size=1, max_size=5, unique=True))
        history.append({k: draw(VALUES) for k in keys})
    state = {"global_step": draw(st.integers(0, 100)), "max_steps": 100, "log_history": history,
             "best_model_checkpoint": draw(st.sampled_from([None, "out/checkpoint-5", "C:\\\\runs\\\\x"]))}
    text = json.dumps(state, indent=draw(st.sampled_from([None, 2])))
    if draw(st.integers(0, 6)) == 0 and '"step": ' in text:  # a key written twice (two entries run together)
        at = text.index('"step": ')
        text = text[:at] + '"step": 1, ' + text[at:]
    return text


def _hf(read, path):
    from analyzer.ingest import hf_trainer
    try:
        if read is None:
            pts, notes, info = hf_trainer.read_trainer_state(path)
            finals = sorted(k for k in info if k.startswith("final/"))
        else:
            pts, notes, summaries = read(path)
            finals = sorted({f"final/{k}" for s in summaries for k, v in s.items()
                             if k != "step" and isinstance(v, (str, int, float, bool))})
    except (LogFormatError, ValueError) as exc:
        return "error", type(exc).__name__
    return _by_tag(pts), sorted((n.kind, n.message, n.count) for n in notes), finals


@CASES
@given(text=trainer_states())
def test_trainer_state_reads_what_the_row_by_row_reader_read(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("hf") / "trainer_state.json"
    path.write_text(text)
    expected = _hf(jsonl_reference.read_trainer_state, path)
    got = _hf(None, path)
    if expected[0] == "error":
        assert got[0] == "error"
    else:
        assert got == expected


@pytest.mark.parametrize("odd", ["NaN", "true", "Infinity", '"NaN"', '"true"'])
def test_a_split_field_holding_a_non_string_is_no_split(tmp_path, monkeypatch, odd):
    """polars reads NaN (quoted for it) and true as strings: a split field holding one must not become a split."""
    rows = [f'{{"mode": "{m}", "step": {i}, "loss": {1.0 / (i + 1)}}}' for i, m in enumerate(["train", "val"] * 20)]
    rows.insert(7, f'{{"mode": {odd}, "step": 7, "loss": 0.5}}')
    for block in (1 << 20, 256):
        _same(tmp_path, "\n".join(rows) + "\n", monkeypatch, block)
