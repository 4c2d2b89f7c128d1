"""Ray Tune / Ray Train trial folders: ``result.json`` (a JSON line per ``train.report``/``tune.report``, the step in
``training_iteration``), ``progress.csv`` (the same rows, flattened) and ``params.json`` (the trial's config), in a
folder named after the trial and its config (``train_fn_<id>_00000_0_lr=0.0100_<date>``)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from analyzer.ingest.load import LoadOptions, load_runs


def _trial(root: Path, lr: float, *, with_csv: bool, index: int = 0) -> list[float]:
    # Ray's trial folder: <trainable>_<experiment id>_<trial number, 5 digits>_<trial number>_<config>_<start time>
    trial = root / f"train_fn_abc12_{index:05d}_{index}_lr={lr:.4f}_2024-05-01_12-00-{index:02d}"
    trial.mkdir(parents=True)
    losses = [2.0 + 3.0 * math.exp(-i * lr) for i in range(1, 51)]
    rows = [{"loss": v, "timestamp": 1714564800 + i, "checkpoint_dir_name": None, "done": i == 50,
             "training_iteration": i, "trial_id": "abc12_00000", "date": "2024-05-01_12-00-00",
             "time_this_iter_s": 0.5, "time_total_s": i * 0.5, "pid": 1234, "hostname": "node", "node_ip": "10.0.0.1",
             "config": {"lr": lr}, "time_since_restore": i * 0.5, "iterations_since_restore": i}
            for i, v in enumerate(losses, 1)]
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (trial / "params.json").write_text(json.dumps({"lr": lr}))
    if with_csv:
        keys = [k for k in rows[0] if k != "config"] + ["config/lr"]
        with open(trial / "progress.csv", "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(keys)
            out.writerows([[r[k] for k in keys[:-1]] + [lr] for r in rows])
    return losses


def test_ray_tune_trials_are_read_at_their_training_iteration(tmp_path: Path) -> None:
    losses = {lr: _trial(tmp_path, lr, with_csv=lr == 0.1, index=i) for i, lr in enumerate((0.01, 0.1))}
    runs, _ = load_runs([tmp_path], LoadOptions(cache_dir=None))
    assert len(runs) == 2  # the trial with both files is one run
    for run in runs:
        lr = run.hparams["lr"]
        got = run.series("loss")
        assert got.steps.tolist() == list(range(1, 51)) and got.values.tolist() == losses[lr]
        if run.format == "jsonl":  # Ray's bookkeeping is no metric (the CSV copy keeps its columns)
            assert not {"pid", "iterations_since_restore", "training_iteration"} & set(run.tags)


def test_counters_beside_the_step_and_a_measurement_named_like_one(tmp_path: Path) -> None:
    # an iteration count that never goes down is a counter (no metric, said in a note); an RL episode's num_steps,
    # which goes up and down, is a measurement
    (tmp_path / "progress.csv").write_text("step,iter,episode_reward,num_steps,loss,pid\n" + "".join(
        f"{i},{i},{i * 0.5},{100 + (i * 37) % 50},{2 - i / 100},4242\n" for i in range(50)))
    (run,), _ = load_runs([tmp_path], LoadOptions(cache_dir=None))
    assert sorted(run.tags) == ["episode_reward", "loss", "num_steps"]
    assert any("iter" in n.message and "pid" in n.message for n in run.notes)


def test_a_ray_tune_lr_sweep_is_found(tmp_path: Path) -> None:
    from analyzer.pipeline import analyze

    for i, lr in enumerate((0.001, 0.01, 0.05, 0.1)):
        _trial(tmp_path / "train_fn_2024-05-01_12-00-00", lr, with_csv=False, index=i)
    report = analyze(tmp_path, load_options=LoadOptions(cache_dir=None))
    (sweep,) = report.sweeps
    assert sorted(sweep.lrs) == [0.001, 0.01, 0.05, 0.1]  # trial numbers and start times are no configuration
