"""Every other format with its real layout, discovery accounting, roles, and bad input."""

import json

import numpy as np
import pytest

from analyzer.errors import InputError
from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.roles import assign_roles
from tests.writers import (curve, hf_log_history, write_jsonl, write_lightning_csv, write_mlflow_run,
                           write_summarywriter, write_trainer_state)

OPTS = LoadOptions(cache_dir=None)


def _by_id(runs):
    return {r.id: r for r in runs}


def test_lightning_csv_sparse_rows_and_hparams(tmp_path):
    loss = curve(200)
    write_lightning_csv(tmp_path / "lightning_logs" / "version_0", loss, val_every=50, lr=3e-4)
    (run,), inputs = load_runs([tmp_path], OPTS)
    assert run.id == "lightning_logs/version_0" and run.format == "lightning_csv"
    assert run.roles.train_loss == "train_loss_step" and run.roles.eval_loss == "val_loss"
    assert run.roles.lr == "lr-Adam"
    s = run.series("train_loss_step")
    assert len(s) == 200 and np.allclose(s.values, loss)
    assert len(run.series("val_loss")) == 4
    assert run.hparams["lr"] == 3e-4
    assert {i.reason for i in inputs} == {"CSV (lightning)", "hparams"}


def test_hf_trainer_state_merges_checkpoints_and_ignores_summary(tmp_path):
    loss = curve(300)
    write_trainer_state(tmp_path / "out", hf_log_history(loss, grad_norm=loss * 2), max_steps=300,
                        checkpoints=[100, 200])
    (run,), inputs = load_runs([tmp_path], OPTS)
    assert run.id == "out" and run.format == "hf_trainer_state"
    assert run.roles.as_dict() == {"train_loss": "loss", "eval_loss": "eval_loss", "grad_norm": "grad_norm",
                                   "lr": "learning_rate"}
    s = run.series("loss")
    assert s.steps.tolist() == list(range(10, 301, 10))  # no summary point at the end
    assert "train_loss" not in run.tags
    assert run.hparams["max_steps"] == 300
    merged = [i for i in inputs if "checkpoint copy" in i.reason]
    assert len(merged) == 2 and all(i.status == "read" and i.run == "out" for i in merged)
    assert any(n.kind == "merged" and n.count == 2 for n in run.notes)


def test_jsonl_by_content_with_string_values_and_truncated_line(tmp_path):
    rows = [{"iteration": i, "total_loss": f"{v:.4f}", "lr": 0.02, "mode": "train", "nested": {"acc": 0.5}}
            for i, v in enumerate(curve(40))]
    p = write_jsonl(tmp_path / "metrics.log", rows)
    with open(p, "a") as fh:
        fh.write('{"iteration": 40, "total_loss": "0.3')  # the job died mid-write
    (run,), _ = load_runs([tmp_path], OPTS)
    assert run.format == "jsonl" and run.roles.train_loss == "total_loss"
    assert len(run.series("total_loss")) == 40 and "nested/acc" in run.tags
    assert any(n.kind == "truncated" for n in run.notes)


def test_jsonl_counter_reset_is_a_restart(tmp_path):
    rows = [{"iter": i, "loss": 1.0 / (i + 1)} for i in range(30)] + [{"iter": i, "loss": 0.5} for i in range(20, 40)]
    write_jsonl(tmp_path / "log.jsonl", rows)
    (run,), _ = load_runs([tmp_path], OPTS)
    assert run.series("loss").steps.tolist() == list(range(40))
    assert [n.count for n in run.notes if n.kind == "restart"] == [10]


def test_mlflow_file_store(tmp_path):
    write_mlflow_run(tmp_path / "mlruns", "0", "a1b2", {"train/loss": curve(30), "grad_norm": curve(30)},
                     {"learning_rate": 0.01, "optimizer": "sgd"})
    (run,), inputs = load_runs([tmp_path], OPTS)
    assert run.id == "mlruns/0/a1b2" and run.format == "mlflow"
    assert run.roles.train_loss == "train/loss" and run.roles.grad_norm == "grad_norm"
    assert run.hparams["learning_rate"] == "0.01"
    assert len(run.series("train/loss")) == 30
    assert any("experiment metadata" in i.reason for i in inputs)


def test_tensorboard_exported_csv_and_keras_csv(tmp_path):
    exp = tmp_path / "exports"
    exp.mkdir()
    for tag in ("loss", "grad_norm"):
        lines = ["Wall time,Step,Value"] + [f"{1700000000 + i},{i * 10},{v}" for i, v in enumerate(curve(25))]
        (exp / f"run-lr_0.1-tag-{tag}.csv").write_text("\n".join(lines) + "\n")
    keras = tmp_path / "keras"
    keras.mkdir()
    (keras / "training.log.csv").write_text("epoch,loss,val_loss\n" + "".join(
        f"{e},{1 / (e + 1)},{1.2 / (e + 1)}\n" for e in range(12)))
    runs = _by_id(load_runs([tmp_path], OPTS)[0])
    tb = runs["exports/lr_0.1"]
    assert set(tb.tags) == {"loss", "grad_norm"} and tb.series("loss").steps[-1] == 240
    assert tb.hparams["lr (from run name)"] == 0.1
    k = runs["keras/training.log.csv"]
    assert k.roles.train_loss == "loss" and k.roles.eval_loss == "val_loss" and len(k.series("loss")) == 12


def test_every_file_is_accounted_for(tmp_path):
    write_summarywriter(tmp_path / "tb", {"loss": curve(20)})
    (tmp_path / "tb" / "config.json").write_text(json.dumps({"optimizer": {"lr": 0.1}}))
    (tmp_path / "notes.md").write_text("hello")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "nometrics.csv").write_text("name,comment\nfoo,bar\n")
    (tmp_path / "state.json").write_text(json.dumps({"not": "a trainer state"}))
    runs, inputs = load_runs([tmp_path], OPTS)
    files = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert {i.path for i in inputs} == {str(p) for p in files}
    assert runs[0].hparams["optimizer.lr"] == 0.1
    skipped = {i.path.rsplit("/", 1)[-1]: i.reason for i in inputs if i.status == "skipped"}
    assert set(skipped) == {"notes.md", "empty.csv", "nometrics.csv", "state.json"}


def test_a_file_inside_an_add_hparams_folder_is_accounted_for(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "run"))
    for step, value in enumerate(curve(30)):
        writer.add_scalar("loss", float(value), step)
    writer.add_hparams({"lr": 0.1}, {"hp/final_loss": 0.3})  # a timestamp-named sub-folder with its own events
    writer.close()
    (sub,) = [d for d in (tmp_path / "run").iterdir() if d.is_dir()]
    (sub / "notes.txt").write_text("hello")
    runs, inputs = load_runs([tmp_path], OPTS)
    assert len(runs) == 1 and runs[0].hparams["lr"] == 0.1
    assert {i.path for i in inputs} == {str(p) for p in tmp_path.rglob("*") if p.is_file()}
    assert [i.reason for i in inputs if i.path.endswith("notes.txt")] == [
        "in an add_hparams folder of a TensorBoard run (only its event files are read)"]


def test_fractional_steps_are_counted_not_silently_floored(tmp_path):
    write_jsonl(tmp_path / "j" / "log.jsonl", [{"step": s / 2, "loss": 2.0 / (s + 1)} for s in range(40)])
    (tmp_path / "c").mkdir()
    rows = "".join(f"{e / 4},{2.0 / (e + 1)!r}\n" for e in range(40))  # fractional epochs as the only counter
    (tmp_path / "c" / "history.csv").write_text("epoch,loss\n" + rows)
    runs, _ = load_runs([tmp_path], OPTS)
    counts = {}
    for run in runs:
        (note,) = [n for n in run.notes if n.kind == "fractional_step"]
        assert "toward zero" in note.message, note.message
        counts[run.format] = note.count
    assert counts == {"jsonl": 20, "csv": 30}
    whole = [{"step": s, "loss": 2.0 / (s + 1)} for s in range(40)]
    write_jsonl(tmp_path / "w" / "log.jsonl", whole)
    (run,) = load_runs([tmp_path / "w"], OPTS)[0]
    assert not [n for n in run.notes if n.kind == "fractional_step"]


def test_bad_paths_raise_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_runs([tmp_path / "missing"], OPTS)
    with pytest.raises(InputError, match="no files found"):
        load_runs([tmp_path], OPTS)
    (tmp_path / "a.txt").write_text("not a log")
    with pytest.raises(InputError, match="no readable training logs"):
        load_runs([tmp_path], OPTS)


def test_nan_and_inf_are_kept_as_data(tmp_path):
    loss = curve(30)
    loss[10], loss[20] = np.nan, np.inf
    write_summarywriter(tmp_path, {"loss": loss})
    (run,), _ = load_runs([tmp_path], OPTS)
    v = run.series("loss").values
    assert np.isnan(v[10]) and np.isinf(v[20]) and len(v) == 30
    assert any(n.kind == "nonfinite" and n.count == 2 for n in run.notes)


@pytest.mark.parametrize("tags,expected", [
    (["train/loss", "val/loss", "train/grad_norm", "lr-Adam"],
     {"train_loss": "train/loss", "eval_loss": "val/loss", "grad_norm": "train/grad_norm", "lr": "lr-Adam"}),
    (["Loss/train", "Loss/validation", "gradient_norm", "optimizer/lr"],
     {"train_loss": "Loss/train", "eval_loss": "Loss/validation", "grad_norm": "gradient_norm", "lr": "optimizer/lr"}),
    (["train_loss_step", "train_loss_epoch", "grad_norm_clipped", "lr-SGD"],
     {"train_loss": "train_loss_step", "eval_loss": None, "grad_norm": "grad_norm_clipped", "lr": "lr-SGD"}),
    (["eval/loss", "eval/accuracy"], {"train_loss": None, "eval_loss": "eval/loss", "grad_norm": None, "lr": None}),
    # camelCase names, and the loss named by what it is (OLMo, Composer); a total still beats one of its terms
    (["train/ZLoss", "train/CrossEntropyLoss", "eval/c4/CrossEntropyLoss", "optim/total_grad_norm"],
     {"train_loss": "train/CrossEntropyLoss", "eval_loss": "eval/c4/CrossEntropyLoss",
      "grad_norm": "optim/total_grad_norm", "lr": None}),
    (["Train metrics/train/LanguageCrossEntropy", "Train loss/train/total", "Eval metrics/eval/LanguageCrossEntropy",
      "Train lr-DecoupledAdamW/group0"],
     {"train_loss": "Train loss/train/total", "eval_loss": "Eval metrics/eval/LanguageCrossEntropy", "grad_norm": None,
      "lr": "Train lr-DecoupledAdamW/group0"}),
    (["loss_ce", "loss_mask", "loss_dice", "total_loss", "lr"],
     {"train_loss": "total_loss", "eval_loss": None, "grad_norm": None, "lr": "lr"}),
    (["trainLoss", "valLoss"], {"train_loss": "trainLoss", "eval_loss": "valLoss", "grad_norm": None, "lr": None}),
    # Meta's lingua: "step: 10  acc: 0  loss: 3.2345  grad: 1.23e+00  ...  lr: 3.00e-04"
    (["acc", "loss", "grad", "flops", "wps", "lr"], {"train_loss": "loss", "eval_loss": None, "grad_norm": "grad",
                                                     "lr": "lr"}),
])
def test_role_names_real_tools_use(tags, expected):
    assert assign_roles({t: 10 for t in tags}).as_dict() == expected


def test_role_override(tmp_path):
    write_summarywriter(tmp_path, {"objective": curve(20), "gn": curve(20)})
    (run,), _ = load_runs([tmp_path], LoadOptions(cache_dir=None, roles={"train_loss": "objective",
                                                                         "grad_norm": "gn"}))
    assert run.roles.train_loss == "objective" and run.roles.grad_norm == "gn"


def test_a_pandas_csv_with_its_unnamed_index_column(tmp_path):
    # df.to_csv(path) writes the index first under an empty name (a W&B `run.history()` export, a script's own table)
    import pandas as pd

    loss = curve(40)
    pd.DataFrame({"_step": np.arange(40) * 10, "_runtime": np.arange(40) * 1.5, "train/loss": loss}).to_csv(
        tmp_path / "history.csv")
    (run,), _ = load_runs([tmp_path], OPTS)
    assert run.roles.train_loss == "train/loss" and "" not in run.tags
    assert run.series("train/loss").steps.tolist() == list(range(0, 400, 10))
    other = tmp_path / "no_step"
    other.mkdir()
    pd.DataFrame({"loss": loss, "accuracy": np.linspace(0.1, 0.9, 40)}).to_csv(other / "metrics_table.csv")
    (run,), _ = load_runs([other], OPTS)
    assert run.series("loss").steps.tolist() == list(range(40)) and "index" not in run.tags


def test_a_wandb_summary_of_one_metric_is_the_runs_summary_not_a_run(tmp_path):
    # wandb < 0.10 kept wandb-history.jsonl (one JSON object per log call) beside wandb-summary.json (the last
    # values); a run that logged one metric besides its LR has a summary of one metric value
    folder = tmp_path / "wandb" / "run-20190101_000000-abc123"
    folder.mkdir(parents=True)
    loss = curve(30)
    rows = [{"_step": i, "_runtime": 1.5 * i, "_timestamp": 1546300800 + i, "loss": float(v), "lr": 1e-4}
            for i, v in enumerate(loss)]
    (folder / "wandb-history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "wandb-summary.json").write_text(json.dumps(rows[-1]))
    (run,), _ = load_runs([tmp_path], OPTS)
    assert run.series("loss").steps.tolist() == list(range(30))
    assert any("summary" in n.message for n in run.notes)


def test_a_pandas_index_of_names_is_not_a_step(tmp_path):
    import pandas as pd

    pd.DataFrame({"loss": curve(20), "acc": np.linspace(0.1, 0.9, 20)},
                 index=[f"run{i}" for i in range(20)]).to_csv(tmp_path / "metrics_table.csv")
    (run,), _ = load_runs([tmp_path], OPTS)
    assert run.series("loss").steps.tolist() == list(range(20)) and "index" not in run.tags
