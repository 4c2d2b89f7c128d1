"""One training = one run: copies of one history and parts of one run folder, from the tools' real layouts."""

from __future__ import annotations

import json

from analyzer.ingest import registry
from analyzer.ingest.load import LoadOptions, load_runs
from tests.writers import curve, hf_log_history, write_jsonl, write_summarywriter, write_trainer_state

OPTS = LoadOptions(cache_dir=None)


def _llama_factory_log(history: list[dict], total: int) -> list[dict]:
    """LLaMA-Factory's trainer_log.jsonl: one line per Trainer log, loss rounded, progress fields beside it."""
    rows = []
    for h in history:
        if "loss" in h:
            rows.append({"current_steps": h["step"], "total_steps": total, "loss": round(h["loss"], 4),
                         "learning_rate": h["learning_rate"], "epoch": h["epoch"],
                         "percentage": round(100 * h["step"] / total, 2), "elapsed_time": "0:00:26",
                         "remaining_time": "0:14:35"})
    return rows


def test_llama_factory_trainer_log_beside_trainer_state_is_one_run(tmp_path):
    out = tmp_path / "outputs"
    loss = curve(300, seed=3)
    history = hf_log_history(loss, grad_norm=curve(300, start=5, end=1, seed=4))
    write_trainer_state(out, history, max_steps=300)
    write_jsonl(out / "trainer_log.jsonl", _llama_factory_log(history, 300))
    runs, inputs = load_runs([tmp_path], OPTS)
    assert [r.id for r in runs] == ["outputs"]
    run = runs[0]
    assert run.format == "hf_trainer_state" and "grad_norm" in run.tags  # the richer copy was read
    assert any(n.kind == "merged" and "trainer_log.jsonl holds the same history (30 of 30" in n.message
               for n in run.notes)
    log_entry = next(i for i in inputs if i.path.endswith("trainer_log.jsonl"))
    assert log_entry.status == "read" and log_entry.run == "outputs" and "the same history as run outputs" in log_entry.reason


def test_detectron2_metrics_json_beside_its_event_files_is_one_run(tmp_path):
    out = tmp_path / "output"
    loss = curve(60, seed=1)
    lr = [1e-3] * 60
    steps = list(range(19, 19 + 20 * 60, 20))
    write_summarywriter(out, {"total_loss": loss, "lr": lr}, steps=steps)
    # Detectron2's JSONWriter: every scalar of the step in one line, "iteration" as the step; more scalars than TB
    write_jsonl(out / "metrics.json", ({"data_time": 0.02, "eta_seconds": 900.0 - i, "iteration": s, "lr": lr[i],
                                        "total_loss": float(loss[i]), "loss_cls": float(loss[i]) / 2}
                                       for i, s in enumerate(steps)))
    runs, inputs = load_runs([tmp_path], OPTS)
    assert len(runs) == 1, [r.id for r in runs]
    run = runs[0]
    assert "loss_cls" in run.tags and run.format == "jsonl"  # the JSON copy has more metrics: it is the run
    events = next(i for i in inputs if "tfevents" in i.path)
    assert events.status == "read" and events.run == run.id and "the same history" in events.reason


def test_metric_files_of_one_run_folder_become_one_run_with_all_tags(tmp_path):
    run_dir = tmp_path / "exp1"
    loss, gnorm = curve(200, seed=5), curve(200, start=3, end=1, seed=6)
    write_jsonl(run_dir / "metrics.jsonl", ({"step": s, "loss": float(loss[s]), "lr": 1e-3} for s in range(200)))
    write_jsonl(run_dir / "diagnostics.jsonl", ({"step": s, "grad_norm": float(gnorm[s]), "lr": 2e-3}
                                                for s in range(0, 200, 2)))
    runs, inputs = load_runs([tmp_path], OPTS)
    assert len(runs) == 1
    run = runs[0]
    assert run.id == "exp1/metrics.jsonl"
    assert run.tags == ["diagnostics/lr", "grad_norm", "loss", "lr"]  # the clashing tag prefixed in the other part
    assert run.roles.train_loss == "loss" and run.roles.grad_norm == "grad_norm" and run.roles.lr == "lr"
    assert run.series("grad_norm").values.tolist() == [float(gnorm[s]) for s in range(0, 200, 2)]
    assert {i.run for i in inputs} == {"exp1/metrics.jsonl"}


def test_sweep_runs_written_to_one_folder_stay_separate(tmp_path):
    for lr, seed in ((0.1, 1), (0.01, 2), (0.001, 3)):
        loss = curve(100, seed=seed)
        write_jsonl(tmp_path / f"lr_{lr}.jsonl", ({"step": s, "loss": float(loss[s])} for s in range(100)))
    runs, _ = load_runs([tmp_path], OPTS)
    assert sorted(r.id for r in runs) == ["lr_0.001.jsonl", "lr_0.01.jsonl", "lr_0.1.jsonl"]


def test_a_log_of_a_different_history_in_the_same_folder_is_not_folded(tmp_path):
    out = tmp_path / "outputs"
    history = hf_log_history(curve(300, seed=3))
    write_trainer_state(out, history, max_steps=300)
    other = hf_log_history(curve(300, seed=9))  # another training's log in the same folder
    write_jsonl(out / "trainer_log.jsonl", _llama_factory_log(other, 300))
    runs, _ = load_runs([tmp_path], OPTS)
    assert len(runs) == 2


def test_registry_recognises_each_loose_format_by_content(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"iteration": 1, "loss": 2.0}) + "\n")
    (tmp_path / "x.csv").write_text("step,loss\n1,2.0\n")
    (tmp_path / "e.csv").write_text("Wall time,Step,Value\n1.0,1,2.0\n")
    (tmp_path / "notes.txt").write_text("just some notes\n")
    assert registry.recognise(tmp_path / "m.jsonl").reader.name == "jsonl"
    assert registry.recognise(tmp_path / "x.csv").reader.name == "csv"
    assert registry.recognise(tmp_path / "e.csv").reader.name == "tb_export"
    try:
        registry.recognise(tmp_path / "notes.txt")
    except Exception as exc:  # noqa: BLE001
        assert "not a JSONL log" in str(exc)
    else:
        raise AssertionError("plain notes were recognised as a log")
    names = [r.name for r in registry.READERS]
    assert len(names) == len(set(names)) and all(r.recognised_by for r in registry.READERS)


def test_deterministic_reruns_in_one_folder_are_two_runs(tmp_path):
    loss = curve(100, seed=1)
    for name in ("run1.jsonl", "run2.jsonl"):  # the same script run twice with the same seed
        write_jsonl(tmp_path / name, ({"step": s, "loss": float(loss[s])} for s in range(100)))
    runs, _ = load_runs([tmp_path], OPTS)
    assert sorted(r.id for r in runs) == ["run1.jsonl", "run2.jsonl"]


def test_readme_format_table_names_every_reader_format():
    from pathlib import Path
    from typing import get_args

    from analyzer.types import Format

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("| source | `format` in the JSON |"):readme.index("How each is recognised and read")]
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| source")]
    listed = {ln.split("|")[2].strip().strip("`") for ln in rows}
    assert listed == set(get_args(Format)) == {r.format for r in registry.READERS}


def _nanogpt(loss) -> str:
    """nanoGPT's train.py print: iter {iter_num}: loss {lossf:.4f}, time {dt*1000:.2f}ms, mfu {mfu*100:.2f}%."""
    return "".join(f"iter {s}: loss {loss[s]:.4f}, time {100 + s:.2f}ms, mfu {30.0:.2f}%\n" for s in range(len(loss)))


def test_two_jobs_printing_different_metrics_in_one_folder_stay_two_runs(tmp_path):
    from tests.test_text_logs import megatron_line

    loss = curve(100, seed=1)
    (tmp_path / "slurm-100.out").write_text("".join(megatron_line(10 * (s + 1), float(loss[s])) for s in range(100)))
    (tmp_path / "slurm-101.out").write_text(_nanogpt(curve(1000, seed=2)))  # another training: its own loss
    runs, _ = load_runs([tmp_path], OPTS)
    assert sorted(r.id for r in runs) == ["slurm-100.out", "slurm-101.out"]


def test_a_run_that_took_a_copy_is_never_folded_itself(tmp_path):
    loss = curve(100, seed=1)
    write_jsonl(tmp_path / "a_rerun.jsonl", ({"step": s, "loss": round(float(loss[s]), 4)} for s in range(100)))
    (tmp_path / "train.log").write_text(_nanogpt(loss))
    write_jsonl(tmp_path / "c_metrics.jsonl", ({"step": s, "loss": float(loss[s]), "lr": 1e-3, "grad_norm": 1.0 + s % 3}
                                               for s in range(100)))
    runs, inputs = load_runs([tmp_path], OPTS)
    ids = {r.id for r in runs}
    assert ids == {"a_rerun.jsonl", "c_metrics.jsonl"}  # the JSONL rerun stays; the printed copy folds into the richest
    assert all(i.run in ids for i in inputs)  # every file names a run that exists
    log = next(i for i in inputs if i.path.endswith("train.log"))
    assert log.run == "c_metrics.jsonl" and "the same history" in log.reason


def test_panel_exports_of_different_runs_in_one_folder_never_merge(tmp_path):
    from tests.test_wandb import _triple, _write_panel

    la, lb, ga, gc = (curve(60, seed=k) for k in range(4))
    _write_panel(tmp_path / "loss.csv", ["Step", *_triple("run-a", "train/loss"), *_triple("run-b", "train/loss")],
                 [[s, la[s], la[s], la[s], lb[s], lb[s], lb[s]] for s in range(60)])
    _write_panel(tmp_path / "gnorm.csv", ["Step", *_triple("run-a", "grad_norm"), *_triple("run-c", "grad_norm")],
                 [[s, ga[s], ga[s], ga[s], gc[s], gc[s], gc[s]] for s in range(60)])
    runs, _ = load_runs([tmp_path], OPTS)
    assert {r.id: r.tags for r in runs} == {"run-a": ["grad_norm", "train/loss"], "run-b": ["train/loss"],
                                            "run-c": ["grad_norm"]}


def test_a_link_to_a_log_beside_it_is_not_a_second_run(tmp_path):
    loss = curve(50, seed=1)
    write_jsonl(tmp_path / "train_20241203.jsonl", ({"step": s, "loss": float(loss[s])} for s in range(50)))
    (tmp_path / "latest.jsonl").symlink_to("train_20241203.jsonl")
    runs, inputs = load_runs([tmp_path], OPTS)
    assert [r.id for r in runs] == ["train_20241203.jsonl"]
    link = next(i for i in inputs if i.path.endswith("latest.jsonl"))
    assert link.status == "skipped" and "a link to train_20241203.jsonl" in link.reason


def test_a_folded_copy_gives_its_settings_and_names_what_it_alone_held(tmp_path):
    from tests.writers import write_lightning_csv

    version = tmp_path / "lightning_logs" / "version_0"
    loss = curve(200, seed=4)
    write_lightning_csv(version, loss, val_every=50, hparams={"lr": 0.003, "batch_size": 64})
    write_summarywriter(version, {"train_loss_step": loss})  # TensorBoardLogger into the same version folder
    runs, inputs = load_runs([tmp_path], OPTS)
    (run,) = runs
    assert run.hparams["lr"] == 0.003 and run.roles.eval_loss == "val_loss"  # the CSV (it has val_loss) is kept
    hp = next(i for i in inputs if i.path.endswith("hparams.yaml"))
    assert hp.reason == "hparams"
