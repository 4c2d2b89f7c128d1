"""TensorBoard's JSON export (a chart's "Download JSON"), written by TensorBoard's own scalars plugin."""

from __future__ import annotations

import json

import numpy as np

from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.pipeline import analyze
from tests.writers import curve, export_tensorboard_json, write_summarywriter

OPTS = LoadOptions(cache_dir=None, workers=1)


def _series(run, tag):  # type: ignore[no-untyped-def]
    rows = run.points.filter(run.points["tag"] == tag).sort("step")
    return rows["step"].to_list(), rows["value"].to_numpy()


def test_an_export_reads_back_every_point_tensorboard_served(tmp_path):
    loss = curve(60, spike_at=40)
    loss[55] = float("nan")  # the plugin cleanses it to the string "NaN"
    write_summarywriter(tmp_path / "logs" / "run_a", {"train/loss": loss, "train/lr": np.full(60, 3e-4)})
    files = export_tensorboard_json(tmp_path / "logs", tmp_path / "exports")
    assert '"NaN"' in next(p for p in files if "loss" in p.name).read_text()

    exported, _ = load_runs([tmp_path / "exports"], OPTS)
    events, _ = load_runs([tmp_path / "logs"], OPTS)
    assert [r.format for r in exported] == ["tensorboard_json"] and len(exported) == 1
    got, want = _series(exported[0], "train_loss"), _series(events[0], "train/loss")
    assert got[0] == want[0] == list(range(60))
    np.testing.assert_array_equal(got[1], want[1])  # NaN where TensorBoard has NaN
    assert np.isnan(got[1][55])
    assert exported[0].roles.train_loss == "train_loss"


def test_the_export_and_the_event_files_get_the_same_verdict(tmp_path):
    loss = curve(300, noise=0.01)
    loss[200:] = np.linspace(loss[199], 40.0, 100)  # blows up and stays up
    write_summarywriter(tmp_path / "logs" / "run_b", {"loss": loss})
    export_tensorboard_json(tmp_path / "logs", tmp_path / "exports")
    from_export = analyze([tmp_path / "exports"], load_options=OPTS).diagnoses
    from_events = analyze([tmp_path / "logs"], load_options=OPTS).diagnoses
    assert [d.verdict for d in from_export] == [d.verdict for d in from_events] == ["divergence"]


def test_items_that_are_not_triples_are_counted_and_other_json_is_not_claimed(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    rows = [[1.7e9 + i, i, 2.0 / (i + 1)] for i in range(20)]
    (folder / "run-x-tag-loss.json").write_text(json.dumps(rows[:10] + [[1.0, 2.0], "x"] + rows[10:]))
    (folder / "layers.json").write_text(json.dumps([[1, 2, 3], [4, 5, 6]]))
    runs, inputs = load_runs([folder], OPTS)
    assert len(runs) == 1 and len(runs[0].points) == 20
    dropped = [n for n in runs[0].notes if n.kind == "dropped"]
    assert dropped and dropped[0].count == 2
    skipped = {i.path.rsplit("/", 1)[-1]: i for i in inputs if i.status == "skipped"}
    assert "not a TensorBoard JSON export" not in skipped["layers.json"].reason  # a family speaks through its last reader
