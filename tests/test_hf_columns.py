"""A big trainer_state.json's log_history read by columns (analyzer/ingest/hf_columns.py) means what the exact
reader means: the same points, notes, run info and errors as the old reader (every entry a Python object, kept
as the fallback) and the row-by-row reference (tests/jsonl_reference.py), and the same choice among checkpoint
copies. Files are generated small, with the size threshold lowered so that every one takes the columnar path
where it can; what it cannot vouch for must fall back, not read otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.errors import LogFormatError
from analyzer.ingest import hf_columns, hf_trainer
from analyzer.ingest.hf_columns import ColumnarHistory
from tests import jsonl_reference
from tests.test_jsonl_columns import _by_tag

KEYS = ["step", "loss", "grad_norm", "learning_rate", "epoch", "eval_loss", "eval_runtime", "train_runtime",
        "total_flos", "x:y", "a b", "Step", "global_step"]
NUMBERS = st.one_of(st.integers(-5, 10**6), st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from(
    [0.0, -0.0, 5e-324, 1e308, 2**53 + 1, 2**63, 2**64, 10**30, 1e-05, 0.1]))
ODD = st.sampled_from([None, "x", "1.5", "NaN", True, [1], {"b": 1}, float("nan"), float("inf"), 10**400, "},{",
                       "a\nb"])
#: Edits of the written text, each of which the columnar path must refuse or read as the exact reader does.
EDITS = [
    ('"step": ', '"step": 1, "step": '),  # a repeated key
    ('"loss": ', '"lo\\u0073s": '),  # an escape that means the same key
    ('"loss": ', '"lo\\u003as": '),  # an escaped colon
    ('"loss": ', '"\\ud800": '),  # a lone surrogate
    ('"loss": ', '"lo},ss": '),  # the entry separator inside a key
    ('"loss": ', '"lo\nss": '),  # a raw newline inside a key (not JSON)
    ("}\n  ]", "},\n  ]"),  # a trailing comma (not JSON)
    ("}\n  ]", "}\n  ,]"),
    ("},\n    {", "}\n    {"),  # a missing comma
    ("},\n    {", "},,\n    {"),
    ("},\n    {", "} ,\n    {"),  # a comma not right after the brace: valid, read the old way
    ('"log_history": [', '"x": {"log_history": []}, "log_history": ['),
    ('"log_history": [', '"log\\u005fhistory": [], "log_history": ['),  # the key twice (one spelled with an escape)
    ('"max_steps": ', '"trial": [{"a": 1}], "max_steps": '),  # a list ending in an object after the history
    ('"max_steps": ', '"max_steps": 1, "max_steps": '),  # a top-level key repeated
    ("\n", "\r\n"),
    ("\n", "\n\t"),
    ("[", "[ "),
    ('"loss": ', '"loss": 1}, {"loss": '),
    ("1", "NaN"),
    ("5", "Infinity"),
    ("2", "null"),
    ("0", "-0"),
    ('"loss": ', '"loss": [1, {"a": 2}], "z": '),
]


@st.composite
def hf_states(draw) -> str:
    history: list = []
    dirty = draw(st.booleans())  # else every entry an object of numbers: what the columnar path takes
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.integers(0, 40)) if dirty else 2
        if kind == 0:
            history.append(draw(st.sampled_from([1, "x", None, [1, 2], {}])))
            continue
        keys = draw(st.lists(st.sampled_from(KEYS + ["é"] if dirty else KEYS), min_size=1, max_size=5, unique=True))
        entry = {k: draw(st.integers(0, 1000) if k == "step" and draw(st.integers(0, 9)) else NUMBERS) for k in keys}
        if kind == 1:
            entry[draw(st.sampled_from(KEYS))] = draw(ODD)
        history.append(entry)
    state = {"best_metric": None, "global_step": draw(st.integers(0, 100)), "log_history": history, "max_steps": 100,
             "stateful_callbacks": draw(st.sampled_from([{}, {"a": {"b": [1, 2]}}])), "trial_params": None}
    indent = draw(st.sampled_from([2, 2, None, 4, 0]))
    text = json.dumps(state, indent=indent)
    if dirty and draw(st.booleans()):
        old, new = draw(st.sampled_from(EDITS))
        if old in text:
            text = text.replace(old, new, 1) if draw(st.booleans()) else text.replace(old, new)
    return text


def _read(path: Path, fast: bool, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(hf_columns, "MIN_FAST_BYTES", 0 if fast else 1 << 62)
    try:
        state = hf_trainer.load_state(path)
        pts, notes, info = hf_trainer.read_trainer_state(path, state)
    except LogFormatError as exc:
        return ("error", str(exc)), None
    return (_by_tag(pts), sorted((n.kind, n.message, n.count) for n in notes), info,
            hf_trainer.progress_key(state)), type(state["log_history"])


CASES = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@CASES
@given(text=hf_states())
def test_columns_read_what_the_old_reader_and_the_reference_read(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("hf") / "trainer_state.json"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    with pytest.MonkeyPatch.context() as mp:
        old, _ = _read(path, False, mp)
        new, _ = _read(path, True, mp)
    assert new == old
    if old[0] != "error":
        pts, notes, summaries = jsonl_reference.read_trainer_state(path)
        assert old[0] == _by_tag(pts)
        assert old[1] == sorted((n.kind, n.message, n.count) for n in notes)


def _plain_history(n: int) -> list[dict]:
    history: list[dict] = []
    for step in range(1, n + 1):
        history.append({"epoch": step / n, "grad_norm": 1.0 + step % 7 / 3, "learning_rate": 5e-05,
                        "loss": 2.5 / step, "step": step})
        if step % 10 == 0:
            history.append({"epoch": step / n, "eval_loss": 1.0 / step, "eval_runtime": 1.5, "step": step})
    history.append({"epoch": 1.0, "step": n, "total_flos": 1.0, "train_loss": 0.5, "train_runtime": 60.0})
    return history


@pytest.mark.parametrize("indent", [2, None, 4])
def test_a_plain_history_is_read_by_columns(tmp_path, monkeypatch, indent):
    """The columnar path is taken (not refused every time) for what the HF Trainer writes, in any layout."""
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"global_step": 30, "log_history": _plain_history(30), "max_steps": 30,
                                "trial_params": None}, indent=indent))
    old, old_type = _read(path, False, monkeypatch)
    new, new_type = _read(path, True, monkeypatch)
    assert issubclass(old_type, list) and new_type is ColumnarHistory
    assert new == old
    assert list(new[0][0]) == ["grad_norm", "learning_rate", "loss", "eval_loss", "eval_runtime"]
    assert new[2]["final/train_runtime"] == 60.0


@pytest.mark.parametrize("old, new", EDITS)
def test_every_edit_reads_as_the_old_reader_reads_it(tmp_path, monkeypatch, old, new):
    text = json.dumps({"best_metric": None, "log_history": _plain_history(25), "max_steps": 25}, indent=2)
    assert old in text
    for edited in (text.replace(old, new, 1), text.replace(old, new)):
        path = tmp_path / "trainer_state.json"
        path.write_bytes(edited.encode("utf-8", "surrogatepass"))
        assert _read(path, True, monkeypatch)[0] == _read(path, False, monkeypatch)[0], (old, new)


#: Documents built so that only one check tells the columnar reading from the exact one.
TEXTS = [
    # the first "log_history" is a nested one; the top-level key is spelled with an escape
    '{"log\\u005fhistory": [], "a": {"log_history": [{"loss": 1, "step": 1}, {"loss": 2, "step": 2}]}}',
    # a key holding an escaped colon (one colon more than the text) and a repeated key (one fewer)
    '{"log_history": [{"lo\\u003ass": 1, "step": 1}, {"loss": 1, "loss": 2, "step": 2}, {"loss": 3, "step": 3}]}',
    # a trailing comma, then whitespace
    '{"log_history": [{"loss": 1, "step": 1}, {"loss": 2, "step": 2},\n  ]}',
    '{"log_history": [{"loss": 1, "step": 1}, {"loss": 2, "step": 2}  ,  ]}',
    # an integer beyond 64 bits in the summary entry: read as the document's parse reads it
    '{"log_history": [{"loss": 1, "step": 1}, {"train_runtime": 100000000000000000000000000000, "step": 1}]}',
    '{"x": NaN, "log_history": [{"loss": 1, "step": 1}, {"train_runtime": 100000000000000000000000000000}]}',
]


@pytest.mark.parametrize("text", TEXTS)
def test_documents_that_one_check_tells_apart(tmp_path, monkeypatch, text):
    path = tmp_path / "trainer_state.json"
    path.write_text(text)
    assert _read(path, True, monkeypatch)[0] == _read(path, False, monkeypatch)[0]


def _copies(root: Path, current: list[dict], checkpoints: dict[int, list[dict]]) -> list[Path]:
    def write(path: Path, history: list[dict], when: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"global_step": len(history), "log_history": history}, indent=2))
        os.utime(path, (when, when))
    paths = []
    for i, (ck, history) in enumerate(sorted(checkpoints.items())):
        paths.append(root / f"checkpoint-{ck}" / "trainer_state.json")
        write(paths[-1], history, 1000.0 + 10 * i)
    paths.append(root / "trainer_state.json")
    write(paths[-1], current, 2000.0)
    return paths


def _decision(paths: list[Path], root: Path, fast: bool, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(hf_columns, "MIN_FAST_BYTES", 0 if fast else 1 << 62)
    copies = [hf_trainer.StateCopy(p, hf_trainer.load_state(p), p.stat().st_mtime, p.parent == root) for p in paths]
    assert all(isinstance(c.state["log_history"], ColumnarHistory if fast else list) for c in copies)
    got = hf_trainer.choose_copy(copies)
    return got.read.path, got.merged, got.notes


def test_checkpoint_copies_are_chosen_as_before(tmp_path, monkeypatch):
    history = _plain_history(40)
    rerun = [dict(e, loss=e["loss"] * 2) if "loss" in e and e["step"] > 12 else e for e in history[:30]]
    steps_as_floats = [dict(e, step=float(e["step"])) for e in history[:20]]  # the same values, written otherwise
    scenarios = {
        "prefixes": (history, {10: history[:11], 20: history[:22]}),
        "rerun": (rerun, {10: history[:11], 30: history[:33]}),
        "respelled": (history, {20: steps_as_floats}),
        "longer_checkpoint": (history[:20], {30: history[:33]}),
    }
    for name, (current, checkpoints) in scenarios.items():
        root = tmp_path / name
        paths = _copies(root, current, checkpoints)
        assert _decision(paths, root, True, monkeypatch) == _decision(paths, root, False, monkeypatch), name


def test_an_entry_is_read_whole_from_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(hf_columns, "MIN_FAST_BYTES", 0)
    history = _plain_history(5000)  # past the entries found by a walk from the start
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": history}, indent=2))
    got = hf_trainer.load_state(path)["log_history"]
    assert isinstance(got, ColumnarHistory) and len(got) == len(history)
    for i in (len(history) - 1, 0, 1, 4095, 4096, 4097, len(history) // 2, len(history) - 2, len(history) - 1):
        assert got.entry(i) == history[i]
    assert got.entries() == history
