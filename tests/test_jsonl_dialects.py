"""JSONL dialects: fairseq's JSON bar, split/phase/mode/event fields, MMEngine scalars.json, MMDetection log.json.

Fixtures are written the way each tool writes them: fairseq's JsonProgressBar (``json.dumps`` of
stats formatted with ``'{:g}'``, end-of-epoch keys prefixed ``train_``/``valid_``), MMEngine's
LoggerHook (training records with ``iter`` and ``step``, validation records whose ``step`` is the
epoch), MMCV 1.x's TextLoggerHook (``mode``, ``epoch``, ``iter`` within the epoch; a validation
record's ``iter`` is the number of validation batches).
"""

from __future__ import annotations

import json

import pytest

from analyzer.errors import LogFormatError
from analyzer.frame import apply_restart_policy
from analyzer.ingest import textlog
from analyzer.ingest.jsonl import read_jsonl, sniff
from analyzer.ingest.load import LoadOptions, load_runs
from tests.writers import points_by_tag, write_jsonl


series = points_by_tag


def read(path):
    pts, notes = read_jsonl(path, sniff(path))
    return series(pts), {n.kind: n for n in notes}


def fairseq_stats(stats: dict, *, epoch: int, update: float | None = None, tag: str | None = None) -> dict:
    """JsonProgressBar: epoch, update, then every stat through format_stat ('{:g}' strings)."""
    out: dict = {"epoch": epoch}
    if update is not None:
        out["update"] = round(update, 3)
    for k, v in stats.items():
        out[f"{tag}_{k}" if tag else k] = "{:g}".format(v)
    return out


def test_fairseq_json_log(tmp_path):
    rows = [fairseq_stats({"loss": 9.377 - u / 1000, "ppl": 665.2, "wps": 288.7, "num_updates": u, "lr": 4e-05 * u,
                           "gnorm": 19.777, "loss_scale": 4, "train_wall": 57}, epoch=1, update=u / 1000)
            for u in (100, 200, 300)]
    rows.append(fairseq_stats({"loss": 8.1, "ppl": 274.4, "num_updates": 300, "best_loss": 8.1}, epoch=1, tag="valid"))
    rows.append(fairseq_stats({"loss": 9.0, "num_updates": 300, "lr": 0.012}, epoch=1, tag="train"))
    p = write_jsonl(tmp_path / "train.log", rows)
    assert sniff(p) == "num_updates"
    got, notes = read(p)
    assert got["loss"] == ([100, 200, 300], [9.277, 9.177, 9.077])
    assert got["lr"] == ([100, 200, 300], [0.004, 0.008, 0.012])
    assert got["loss_scale"][1] == [4.0] * 3 and got["gnorm"][1] == [19.777] * 3
    assert got["valid_loss"] == ([300], [8.1]) and got["valid_best_loss"] == ([300], [8.1])
    assert got["train_loss"] == ([300], [9.0])
    assert not any(k.endswith("num_updates") for k in got)
    assert "dropped" not in notes
    (run,), _ = load_runs([tmp_path], LoadOptions(cache_dir=None))
    assert (run.format, run.roles.train_loss, run.roles.eval_loss, run.roles.grad_norm, run.roles.lr) == (
        "jsonl", "loss", "valid_loss", "gnorm", "lr")


@pytest.mark.parametrize("field", ["split", "phase", "mode", "event"])
def test_train_and_val_records_interleaved_by_a_field(tmp_path, field):
    rows = []
    for step in range(0, 50, 10):
        rows.append({field: "train", "step": step, "loss": 2.0 - step / 100, "lr": 0.1})
        if step % 20 == 0:
            rows.append({field: "val", "step": step, "loss": 2.5 - step / 100, "val_acc": 0.5 + step / 100})
    p = write_jsonl(tmp_path / "metrics.jsonl", rows)
    got, notes = read(p)
    assert got["train/loss"] == ([0, 10, 20, 30, 40], [2.0, 1.9, 1.8, 1.7, 1.6])
    assert got["val/loss"] == ([0, 20, 40], [2.5, 2.3, 2.1])
    assert got["train/lr"][0] == [0, 10, 20, 30, 40]
    assert got["val_acc"] == ([0, 20, 40], [0.5, 0.7, 0.9])  # already named for its split
    assert set(got) == {"train/loss", "train/lr", "val/loss", "val_acc"}
    assert notes["split_tags"].count == 8 and f"'{field}'" in notes["split_tags"].message
    frame, restart_notes = apply_restart_policy(read_jsonl(p, sniff(p))[0])
    assert not restart_notes  # untangled: no step goes back


def test_a_split_field_that_tangles_nothing_keeps_the_names(tmp_path):
    rows = [{"split": "train", "step": s, "loss": 1.0} for s in range(5)] + [{"split": "val", "step": 4,
                                                                              "val_loss": 1.5}]
    got, notes = read(write_jsonl(tmp_path / "a.jsonl", rows))
    assert set(got) == {"loss", "val_loss"} and "split_tags" not in notes


@pytest.mark.parametrize("values", [
    [f"finished batch {i}" for i in range(4)],  # free text: a message, not a split
    [f"kind{i}" for i in range(12)],  # too many values to be splits
])
def test_fields_that_are_not_splits(tmp_path, values):
    rows = [{"event": v, "step": i, "loss": 1.0 / (i + 1)} for i, v in enumerate(values)]
    got, notes = read(write_jsonl(tmp_path / "a.jsonl", rows))
    assert set(got) == {"loss"} and got["loss"][0] == list(range(len(values)))


def test_mmengine_scalars_json_epoch_based(tmp_path):
    rows = []
    for it in range(50, 450, 50):
        epoch = 1 + (it - 1) // 200
        rows.append({"lr": 0.02, "data_time": 0.01, "loss": 10 / it, "time": 0.3, "epoch": epoch, "iter": it,
                     "memory": 3000, "step": it})
        if it % 200 == 0:
            rows.append({"coco/bbox_mAP": epoch / 10, "data_time": 0.02, "time": 0.1, "step": epoch})
    got, notes = read(write_jsonl(tmp_path / "vis_data" / "scalars.json", rows))
    assert got["val/coco/bbox_mAP"] == ([200, 400], [0.1, 0.2])
    assert got["val/data_time"] == ([200, 400], [0.02, 0.02])
    assert got["data_time"][0] == list(range(50, 450, 50))
    assert got["loss"][1][0] == 0.2
    assert "last logged training iteration" in notes["split_tags"].message


def test_mmengine_scalars_json_iteration_based(tmp_path):
    rows = [{"lr": 0.02, "loss": 10 / it, "iter": it, "memory": 3000, "data_time": 0.01, "step": it}
            for it in range(100, 1100, 100)]
    rows.insert(5, {"accuracy/top1": 71.5, "data_time": 0.02, "step": 500})
    got, notes = read(write_jsonl(tmp_path / "scalars.json", rows))
    assert got["val/accuracy/top1"] == ([500], [71.5]) and got["val/data_time"] == ([500], [0.02])
    assert got["data_time"][0] == list(range(100, 1100, 100))


def test_mmdetection_log_json_counts_iterations_within_each_epoch(tmp_path):
    rows: list[dict] = [{"env_info": "sys.platform: linux\nPython: 3.8", "config": "model = dict(...)", "seed": 0}]
    for epoch in (1, 2, 3):
        for it in (50, 100, 150):
            rows.append({"mode": "train", "epoch": epoch, "iter": it, "lr": 0.02, "memory": 3500, "data_time": 0.01,
                         "loss_cls": 1.0 / (epoch * it), "loss": 2.0 / (epoch * it), "grad_norm": 5.0, "time": 0.4})
        rows.append({"mode": "val", "epoch": epoch, "iter": 625, "lr": 0.02, "bbox_mAP": epoch / 10})
    got, notes = read(write_jsonl(tmp_path / "20230101_120000.log.json", rows))
    assert got["train/loss"][0] == [50, 100, 150, 200, 250, 300, 350, 400, 450]
    assert got["train/loss"][1][3] == 2.0 / 100
    assert got["val/bbox_mAP"] == ([150, 300, 450], [0.1, 0.2, 0.3])  # at the end of each epoch
    assert "counts within each epoch" in notes["derived_step"].message
    assert notes["dropped"].count == 1  # the environment record has no step


def test_a_counter_that_does_not_restart_with_the_epoch_or_a_resume_is_left_alone(tmp_path):
    rows = [{"epoch": 1 + it // 100, "iter": it, "loss": 1.0} for it in range(0, 300, 25)]  # a global counter
    got, notes = read(write_jsonl(tmp_path / "a.jsonl", rows))
    assert got["loss"][0] == list(range(0, 300, 25)) and "derived_step" not in notes
    resumed = [{"epoch": e, "iter": it, "loss": 1.0} for e in (1, 2, 3) for it in (10, 20)]
    resumed += [{"epoch": 2, "iter": it, "loss": 0.5} for it in (10, 20)]  # restarted from epoch 2
    got, notes = read(write_jsonl(tmp_path / "b.jsonl", resumed))
    assert "derived_step" not in notes and got["loss"][0] == [10, 20] * 4


def test_fairseq_json_bar_on_stdout_is_a_text_log_not_jsonl(tmp_path):
    # On stdout the JSON bar's lines carry the logging prefix; only --log-file writes bare JSON lines.
    lines = ["2021-03-08 12:31:00 | INFO | train_inner | " + json.dumps(fairseq_stats(
        {"loss": 9.3 - u / 100, "num_updates": u}, epoch=1, update=u / 1000)) for u in (1, 2, 3, 4)]
    p = tmp_path / "stdout.log"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogFormatError, match="not a JSONL log"):
        sniff(p)
    pts, _ = textlog.read_text_log(p, textlog.sniff(p))
    assert series(pts)["loss"] == ([1, 2, 3, 4], [9.29, 9.28, 9.27, 9.26])
