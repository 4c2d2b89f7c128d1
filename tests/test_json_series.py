"""JSON documents that hold whole series: Sacred's FileStorageObserver metrics.json and a dumped Keras History.

Sacred's observer writes ``{name: {"steps": [...], "values": [...], "timestamps": [iso, ...]}}`` (``_run.log_scalar``;
its ``config.json`` beside it); a Keras History is ``json.dump(history.history, f)``: ``{"loss": [...], ...}``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from analyzer.ingest.load import LoadOptions, load_runs


def _read(path: Path):  # type: ignore[no-untyped-def]
    (run,), inputs = load_runs([path], LoadOptions(cache_dir=None))
    return run, inputs


def test_sacreds_metrics_json_with_its_config(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "1"
    run_dir.mkdir(parents=True)
    steps = list(range(0, 500, 10))
    train = [2.0 + 3.0 * math.exp(-s / 100) for s in steps]
    metrics = {"train.loss": {"steps": steps, "values": train,
                              "timestamps": [f"2024-05-01T12:{s // 60:02d}:{s % 60:02d}.000000" for s in steps]},
               "val.loss": {"steps": steps[::5], "values": [v + 0.2 for v in train[::5]],
                            "timestamps": ["2024-05-01T12:00:00.000000"] * 10}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (run_dir / "config.json").write_text(json.dumps({"lr": 0.001, "seed": 1}))
    run, _ = _read(tmp_path)
    assert (run.format, run.roles.train_loss, run.roles.eval_loss) == ("json", "train.loss", "val.loss")
    got = run.series("train.loss")
    assert got.steps.tolist() == steps and got.values.tolist() == train
    assert run.hparams["lr"] == 0.001


def test_a_dumped_keras_history(tmp_path: Path) -> None:
    history = {"loss": [2.0 + 3.0 * math.exp(-e / 5) for e in range(30)],
               "val_loss": [2.2 + 3.0 * math.exp(-e / 5) for e in range(30)],
               "accuracy": [0.5 + e / 100 for e in range(30)], "learning_rate": [0.001] * 30,
               "val_top5": [0.9] * 10}  # validated every third epoch: nothing says which
    (tmp_path / "history.json").write_text(json.dumps(history))
    run, _ = _read(tmp_path / "history.json")
    assert (run.roles.train_loss, run.roles.eval_loss, run.roles.lr) == ("loss", "val_loss", "learning_rate")
    assert run.series("loss").steps.tolist() == list(range(30))
    assert run.series("val_loss").values.tolist() == history["val_loss"]
    assert "val_top5" not in run.tags and any("val_top5" in n.message for n in run.notes)


def test_a_configuration_with_lists_is_no_log(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text(json.dumps({"betas": [0.9, 0.999], "layers": [64, 128, 256, 512],
                                                     "dropout": 0.1}))
    # a loss-named list among a config's scalars, and lists that are no loss history
    (tmp_path / "train_config.json").write_text(json.dumps({"model": "resnet", "loss_weights": [1, 0.5, 0.2],
                                                            "lr": 0.1}))
    (tmp_path / "cv_results.json").write_text(json.dumps({"fold_losses": [0.5, 0.4, 0.45, 0.41, 0.47]}))
    (tmp_path / "scales.json").write_text(json.dumps({"loss_scales": [1, 2, 4, 8]}))
    try:
        load_runs([tmp_path], LoadOptions(cache_dir=None))
    except Exception as exc:  # noqa: BLE001 - the error says no log was found
        assert "no readable training logs" in str(exc)
    else:
        raise AssertionError("a model configuration was read as a log")
