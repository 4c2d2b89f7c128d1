"""DVCLive folders, as ``Live.log_metric`` / ``Live.log_param`` / ``Live.next_step`` write them
(https://dvc.org/doc/dvclive/live/log_metric): ``plots/metrics/<name>.tsv`` per metric with the header
``timestamp	step	<basename>`` (the timestamp in ms; newer releases leave it out for ``timestamp=False``),
``metrics.json`` with the latest values, ``params.yaml`` with the parameters."""

from __future__ import annotations

import json
import math
from pathlib import Path

from click.testing import CliRunner

from analyzer.cli import main
from analyzer.ingest.load import LoadOptions, load_runs


def _history(path: Path, name: str, rows: list[tuple[int, float]], *, timestamp: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    head = ("timestamp\t" if timestamp else "") + f"step\t{name}\n"
    path.write_text(head + "".join((f"{1623671484747 + 100 * s}\t" if timestamp else "") + f"{s}\t{v}\n"
                                   for s, v in rows))


def _dvclive(root: Path, *, timestamp: bool = True) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    live = root / "dvclive"
    train = [(s, 2.0 + 3.0 * math.exp(-s / 100)) for s in range(0, 500, 10)]
    val = [(s, 2.2 + 3.0 * math.exp(-s / 100)) for s in range(0, 500, 50)]
    _history(live / "plots" / "metrics" / "train" / "loss.tsv", "loss", train, timestamp=timestamp)
    _history(live / "plots" / "metrics" / "val" / "loss.tsv", "loss", val, timestamp=timestamp)
    _history(live / "plots" / "metrics" / "lr.tsv", "lr", [(s, 1e-3) for s, _ in train], timestamp=timestamp)
    (live / "metrics.json").write_text(json.dumps({"step": 490, "train": {"loss": train[-1][1]},
                                                    "val": {"loss": val[-1][1]}, "lr": 1e-3}, indent=4))
    (live / "params.yaml").write_text("epochs: 5\noptimizer:\n  lr: 0.001\n")
    return train, val


def test_a_dvclive_folder_is_one_run_with_every_history(tmp_path: Path) -> None:
    train, val = _dvclive(tmp_path)
    (run,), inputs = load_runs([tmp_path], LoadOptions(cache_dir=None))
    assert run.format == "dvclive" and run.id == "dvclive"
    assert (run.roles.train_loss, run.roles.eval_loss, run.roles.lr) == ("train/loss", "val/loss", "lr")
    assert list(zip(run.series("train/loss").steps.tolist(), run.series("train/loss").values.tolist())) == train
    assert list(zip(run.series("val/loss").steps.tolist(), run.series("val/loss").values.tolist())) == val
    assert run.hparams["optimizer.lr"] == 0.001 and run.hparams["epochs"] == 5
    read = {Path(i.path).relative_to(tmp_path).as_posix(): i.reason for i in inputs if i.status == "read"}
    assert "summary" in read["dvclive/metrics.json"] and len(read) == 5  # accounted for, not read as points


def test_histories_without_timestamps_and_a_damaged_one(tmp_path: Path) -> None:
    train, _ = _dvclive(tmp_path, timestamp=False)
    (tmp_path / "dvclive" / "plots" / "metrics" / "grad_norm.tsv").write_text("wall\tgrad_norm\n0\t1.0\n")
    (run,), inputs = load_runs([tmp_path], LoadOptions(cache_dir=None))
    assert run.series("train/loss").values.tolist() == [v for _, v in train]
    (bad,) = [i for i in inputs if i.status == "skipped"]
    assert bad.path.endswith("grad_norm.tsv") and "header" in bad.reason
    result = CliRunner().invoke(main, ["inspect", str(tmp_path), "--no-cache"])
    assert result.exit_code == 0 and "1 skipped" in result.output


def test_a_dvclive_folder_shared_with_a_trainer_and_odd_histories(tmp_path: Path) -> None:
    from tests.writers import hf_log_history

    train, _ = _dvclive(tmp_path)
    live = tmp_path / "dvclive"
    (live / "metrics.json").unlink()
    (live / "params.yaml").unlink()  # a run that crashed before its first summary: the histories still say DVCLive
    _history(live / "plots" / "metrics" / "step.tsv", "step", [(s, float(s)) for s, _ in train])  # a metric "step"
    # an older release headed the value column with the metric's whole name
    (live / "plots" / "metrics" / "eval").mkdir()
    (live / "plots" / "metrics" / "eval" / "acc.tsv").write_text("step\teval/acc\n0\t0.5\n10\t0.6\n")
    (run,), _ = load_runs([tmp_path], LoadOptions(cache_dir=None))
    assert run.series("step").values.tolist() == [float(s) for s, _ in train]
    assert run.series("eval/acc").values.tolist() == [0.5, 0.6]
    # DVCLive writing into an HF Trainer's output folder: the trainer's state is still read, as its own run
    out = tmp_path / "hf"
    out.mkdir()
    _dvclive(out)
    (out / "dvclive" / "trainer_state.json").write_text(json.dumps({"global_step": 600, "log_history": hf_log_history([2.0 + 3.0 * math.exp(-i / 100) for i in range(600)])}))
    runs, inputs = load_runs([out], LoadOptions(cache_dir=None))
    state = [i for i in inputs if i.path.endswith("trainer_state.json")]
    assert state and "DVCLive" not in state[0].reason and {r.format for r in runs} >= {"hf_trainer_state"}
