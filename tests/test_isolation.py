"""One bad file never stops the others: each reader failure is a skipped input with its reason.

Every case here killed the whole command before (issue 11): the file is written by the real
writer (or its exact layout) and then made hostile in the way the issue reproduced.
"""

import json
import os

import numpy as np
import pytest

from analyzer.ingest.load import LoadOptions, load_runs
from tests.writers import (curve, event_file, hf_log_history, write_jsonl, write_lightning_csv, write_mlflow_run,
                           write_summarywriter, write_trainer_state)

OPTS = LoadOptions(cache_dir=None)
DEEP = "[" * 100_000 + "]" * 100_000


def _with_good_run(tmp_path):
    write_summarywriter(tmp_path / "good", {"loss": curve(30)})
    return tmp_path


def _load(root):
    runs, inputs = load_runs([root], OPTS)
    files = {str(p) for p in root.rglob("*") if not p.is_dir()}
    assert {i.path for i in inputs} == files  # every file accounted for, once
    return {r.id: r for r in runs}, {os.path.relpath(i.path, root): i for i in inputs if i.status == "skipped"}


def _jsonl_step(path):
    write_jsonl(path, [{"step": 1e30 if i == 5 else i, "loss": 1.0} for i in range(20)])


def _hf_step(path):
    history = hf_log_history(curve(100))
    history[2]["step"] = 1e30
    write_trainer_state(path.parent, history, max_steps=100)


def _csv_step(path):
    path.write_text("step,loss\n" + "".join(f"{1e30 if i == 3 else i},1.0\n" for i in range(20)))


def _mlflow_step(path):
    run = write_mlflow_run(path.parent / "mlruns", "0", "r1", {"loss": curve(10), "acc": curve(10)}, {"lr": 0.1})
    (run / "metrics" / "loss").write_text("1700000000000 2.0 1e30\n1700000000001 1.0 2\n")


def _hf_deep(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"log_history": ' + DEEP + "}")


@pytest.mark.parametrize("make,name,reason", [
    (_jsonl_step, "a.jsonl", "step 1e+30 (line 6) is outside the range of a 64-bit step counter"),
    (_hf_step, "trainer_state.json", "step 1e+30 (log_history entry 2) is outside the range"),
    (_csv_step, "m.csv", "step 1e+30 (data row 4, column 'step') is outside the range"),
    (_mlflow_step, "loss", "step 1e+30 (line 1) is outside the range"),
    (_hf_deep, "trainer_state.json", "nested too deeply"),
])
def test_a_file_that_cannot_be_read_is_skipped_with_its_reason(tmp_path, make, name, reason):
    root = _with_good_run(tmp_path)
    (root / "bad").mkdir()
    make(root / "bad" / name)
    runs, skipped = _load(root)
    assert "good" in runs
    (path,) = [p for p in skipped if p.endswith(name)]
    assert reason in skipped[path].reason
    if name == "loss":  # the MLflow run's other metric is still read
        (ml,) = [r for r in runs.values() if r.format == "mlflow"]
        assert ml.tags == ["acc"]


def test_a_line_nested_100k_deep_is_a_counted_bad_line(tmp_path):
    root = _with_good_run(tmp_path)
    p = write_jsonl(root / "log.jsonl", [{"step": i, "loss": 1.0 / (i + 1)} for i in range(20)])
    with open(p, "a") as fh:
        fh.write('{"step": 21, "x": ' + DEEP + "}\n")
    p2 = root / "first_line_deep.jsonl"  # the sniffer meets it first
    p2.write_text('{"step": 0, "x": ' + DEEP + "}\n" + "".join(json.dumps({"step": i, "loss": 1.0}) + "\n"
                                                             for i in range(1, 20)))
    runs, skipped = _load(root)
    assert not skipped
    for rid, n in (("log.jsonl", 20), ("first_line_deep.jsonl", 19)):
        assert len(runs[rid].series("loss")) == n
        assert any("nested too deeply" in note.message and note.count == 1 for note in runs[rid].notes)


@pytest.mark.parametrize("name,text,reason", [
    ("run-x-tag-Step.csv", "Wall time,Step,Value\n1,2,3\n", None),  # a tag named like a column
    ("run-x-tag-Wall time.csv", "Wall time,Step,Value\n1,2,3\n", None),
    ("run-x-tag-loss.csv", "Wall time,Step,Value,loss\n1,2,3,4\n", None),
    ("run-x-tag-loss.csv", 'Wall time,Step,Value\n1,"2,3\n4,5,6\n', "cannot be parsed as CSV"),
    ("run-x-tag-loss.csv", "Wall time,Step,Value\n", "has a header but no rows"),
    ("run-x-tag-loss.csv", "Wall time,Step,Value\n1,1e30,3\n", "outside the range of a 64-bit step counter"),
    ("run-x-tag-loss.csv", "Wall time,Step,Value\n1,2,abc\n", "no numeric values"),
])
def test_malformed_tensorboard_export_csv(tmp_path, name, text, reason):
    root = _with_good_run(tmp_path)
    (root / "exports").mkdir()
    (root / "exports" / name).write_text(text)
    runs, skipped = _load(root)
    if reason is None:
        tag = name[len("run-x-tag-"):-len(".csv")]
        assert runs["exports/x"].tags == [tag] and runs["exports/x"].series(tag).values.tolist() == [3.0]
    else:
        assert reason in skipped[f"exports/{name}"].reason and set(runs) == {"good"}


def test_dangling_or_binary_hparams_skip_only_themselves(tmp_path):
    root = _with_good_run(tmp_path)
    write_lightning_csv(root / "dangling", curve(50))
    os.remove(root / "dangling" / "hparams.yaml")
    os.symlink(root / "nowhere.yaml", root / "dangling" / "hparams.yaml")
    write_lightning_csv(root / "binary", curve(50))
    (root / "binary" / "hparams.yaml").write_bytes(bytes(range(256)) * 4)
    write_lightning_csv(root / "bomb", curve(50))  # a YAML alias bomb: 9^9 keys when flattened
    lines = ["a0: &a0 {x: 1, y: 2, z: 3, u: 4, v: 5, w: 6, p: 7, q: 8, r: 9}"]
    lines += [f"a{i}: &a{i} {{{', '.join(f'k{j}: *a{i - 1}' for j in range(9))}}}" for i in range(1, 10)]
    (root / "bomb" / "hparams.yaml").write_text("\n".join(lines) + "\n")
    runs, skipped = _load(root)
    assert {"dangling", "binary", "bomb"} <= set(runs)
    assert all(len(runs[r].series("train_loss_step")) == 50 for r in ("dangling", "binary", "bomb"))
    reasons = sorted(i.reason for i in skipped.values())
    assert reasons == ["a symbolic link to nothing (dangling link)", "binary content, not a YAML/JSON configuration",
                       "more than 10,000 keys when flattened: not a run's configuration"]


def test_a_fifo_is_never_opened(tmp_path):
    root = _with_good_run(tmp_path)
    os.mkfifo(root / "metrics.jsonl")  # reading it would block forever
    runs, skipped = _load(root)
    assert set(runs) == {"good"} and "not a regular file" in skipped["metrics.jsonl"].reason


def test_semicolon_separated_csv_gets_a_hint(tmp_path):
    root = _with_good_run(tmp_path)
    (root / "metrics.csv").write_text("step;loss\n0;2.3\n1;2.1\n")
    _, skipped = _load(root)
    assert "semicolon-separated" in skipped["metrics.csv"].reason and "sep=';'" in skipped["metrics.csv"].reason


def test_the_same_path_twice_counts_its_runs_once(tmp_path):
    write_summarywriter(tmp_path / "a", {"loss": curve(20)})
    write_summarywriter(tmp_path / "b", {"loss": curve(20)})
    once, inputs_once = load_runs([tmp_path], OPTS)
    for paths in ([tmp_path, tmp_path], [tmp_path, str(tmp_path) + "/", tmp_path / "a" / ".."]):
        twice, inputs_twice = load_runs(paths, OPTS)
        assert [r.id for r in twice] == [r.id for r in once] == ["a", "b"]
        assert inputs_twice == inputs_once
    nested, inputs = load_runs([tmp_path, tmp_path / "a"], OPTS)  # overlapping paths: each file once
    assert len(nested) == 2 and len(inputs) == len(inputs_once)


def test_hf_checkpoints_with_odd_global_steps_still_merge(tmp_path):
    loss = curve(100)
    write_trainer_state(tmp_path / "out", hf_log_history(loss), max_steps=100, checkpoints=[50])
    ck = tmp_path / "out" / "checkpoint-50" / "trainer_state.json"
    state = json.loads(ck.read_text())
    state["global_step"] = "fifty"  # was a TypeError comparing str with int
    ck.write_text(json.dumps(state))
    runs, _ = _load(tmp_path)
    assert len(runs["out"].series("loss")) == 10


@pytest.mark.parametrize("sidecar", [[], {"version": 3}, {"version": 3, "notes": 5}, "x", None])
def test_a_cache_sidecar_of_the_wrong_shape_is_a_miss(tmp_path, sidecar):
    write_summarywriter(tmp_path / "logs" / "a", {"loss": curve(30)})
    opts = LoadOptions(cache_dir=tmp_path / "cache")
    first, _ = load_runs([tmp_path / "logs"], opts)
    jsons = list((tmp_path / "cache").rglob("*.json"))
    assert len(jsons) == 2  # one per event file, one per run
    for p in jsons:
        good = json.loads(p.read_text())
        bad = dict(good, **sidecar) if isinstance(sidecar, dict) else sidecar
        p.write_text(json.dumps(bad))
    again, _ = load_runs([tmp_path / "logs"], opts)
    assert again[0].points.equals(first[0].points)


def test_a_cache_whose_arrays_were_damaged_is_a_miss(tmp_path):
    write_summarywriter(tmp_path / "logs" / "a", {"loss": curve(30)})
    opts = LoadOptions(cache_dir=tmp_path / "cache")
    first, _ = load_runs([tmp_path / "logs"], opts)
    for p in list((tmp_path / "cache").rglob("*.bin")) + list((tmp_path / "cache").rglob("*.arrows")):
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))
    again, _ = load_runs([tmp_path / "logs"], opts)
    assert again[0].points.equals(first[0].points)
    assert np.isfinite(again[0].series("loss").values).all()


def test_event_file_flipped_inside_a_value_is_dropped_in_a_cached_read_too(tmp_path):
    from tests.writers import flip_byte

    write_summarywriter(tmp_path / "logs" / "a", {"loss": curve(30)})
    flip_byte(event_file(tmp_path / "logs" / "a"), 6)
    opts = LoadOptions(cache_dir=tmp_path / "cache")
    for _ in range(2):  # decoded, then from the run cache
        (run,), _ = load_runs([tmp_path / "logs"], opts)
        assert len(run.series("loss")) == 29 and any(n.kind == "corrupt" for n in run.notes)


def test_walk_follows_linked_runs_not_loops_and_skips_hidden_directories(tmp_path):
    write_summarywriter(tmp_path / "elsewhere" / "run", {"loss": curve(20)})
    root = _with_good_run(tmp_path / "logs")
    os.symlink(tmp_path / "elsewhere" / "run", root / "linked")  # a run linked in: read
    os.symlink(root, root / "loop")  # a cycle: not followed twice
    write_summarywriter(root / ".hidden", {"loss": curve(20)})
    runs, inputs = load_runs([root], OPTS)
    assert [r.id for r in runs] == ["good", "linked"]
    reasons = {os.path.relpath(i.path, root): i.reason for i in inputs if i.status == "skipped"}
    assert reasons == {".hidden": "hidden or cache directory, not searched",
                       "loop": "directory already searched (a symlink loop or a second link to it)"}


def test_json_records_run_together_by_a_damaged_file_are_not_used(tmp_path):
    """Deleting lines of an indented trainer_state.json can merge two log_history entries; a repeated key
    gives that away (json would keep the last value silently)."""
    loss = curve(100)
    write_trainer_state(tmp_path / "out", hf_log_history(loss, eval_steps=50), max_steps=100)
    p = tmp_path / "out" / "trainer_state.json"
    text = p.read_text()
    merged = text.replace('"step": 10\n    },\n    {\n      "epoch"', '"step": 10,\n      "epoch"', 1)
    assert merged != text
    p.write_text(merged)
    (tmp_path / "log.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 1.5, "loss": 9.9}\n'
                                        '{"step": 3, "loss": 1.25, "extra": {"a": 1, "a": 2}}\n{"step": 4, "loss": 1.1}\n')
    runs, _ = _load(tmp_path)
    hf = runs["out"]
    assert hf.series("loss").steps.tolist() == list(range(30, 101, 10))  # entries 10 and 20 ran together
    assert any(n.message == "trainer_state.json: 1 log_history entr(ies) repeating a key (a damaged file: two "
               "entries run together) were not used" for n in hf.notes)
    js = runs["log.jsonl"]
    assert js.series("loss").steps.tolist() == [1, 4]
    assert any("2 line(s) repeating a key" in n.message and n.count == 2 for n in js.notes)


HUGE = 10**400  # a 400-digit integer: json reads it, no float holds it


def test_one_value_too_large_for_a_float_is_one_skipped_point(tmp_path):
    """Issue 17 item 4: a 400-digit loss or step drops that point (noted), never the file; true/false are no loss."""
    rows = [{"step": i, "loss": 1.0 / (i + 1), "is_best": i == 3} for i in range(20)]
    rows[5]["loss"] = HUGE
    rows[9]["step"] = HUGE
    rows[12]["loss"] = True
    write_jsonl(tmp_path / "j" / "log.jsonl", rows)
    history = hf_log_history(curve(100))
    history[1]["loss"] = HUGE
    history[3]["step"] = -HUGE
    history[4]["loss"] = False
    write_trainer_state(tmp_path / "hf", history, max_steps=100)
    runs, skipped = _load(tmp_path)
    assert not skipped
    jl, hf = runs["j/log.jsonl"], runs["hf"]
    assert jl.series("loss").steps.tolist() == [s for s in range(20) if s not in (5, 9, 12)]
    assert "is_best" not in jl.tags  # a flag, not a metric
    train = [h for h in history if "loss" in h]
    assert hf.series("loss").steps.tolist() == [h["step"] for h in train if h not in (history[1], history[3],
                                                                                       history[4])]
    for run, source in ((jl, "log.jsonl"), (hf, "trainer_state.json")):
        messages = {n.message: n.count for n in run.notes}
        assert messages[f"{source}: 1 value(s) that are integers too large for a 64-bit float were not used "
                        "(loss x1)"] == 1
        assert messages[f"{source}: 1 row(s) whose step is an integer too large for a 64-bit float were not "
                        "used"] == 1
        assert messages[f"{source}: 1 non-numeric value(s) in metric fields were not used (loss x1)"] == 1
