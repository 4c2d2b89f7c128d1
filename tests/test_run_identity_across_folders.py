"""One training = one run across folders, on runs written by the real tools: the HF Trainer's output folder
(checkpoints and TensorBoard), an HF run resumed into its output folder, a rerun into it that left an earlier
run's checkpoints behind, a W&B offline run resumed into a second folder, a Lightning run resumed with
``ckpt_path`` into ``version_1``; and the look-alikes that must stay apart (a sweep in one folder, two seeds,
two different diverged runs)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.ingest.load import LoadOptions, load_runs
from tests.trainings import hf_trainer, lightning_fit, wandb_offline
from tests.writers import curve, write_jsonl, write_summarywriter

OPTS = LoadOptions(cache_dir=None)


def _notes(run, kind):
    return [n.message for n in run.notes if n.kind == kind]


def _read_entries(inputs, root: Path):
    return {str(Path(i.path).relative_to(root)): i for i in inputs if i.status == "read"}


# ---- the HF Trainer's output folder ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    """plain/out: one training; resumed/out: killed at step 25, resumed from checkpoint-20 (a callback also writes
    a scalar only TensorBoard gets); rerun/out: trained, then trained again into the same folder in half precision
    without loss scaling (its loss is NaN from step 6), leaving the first run's checkpoint-30 and -40 behind."""
    root = tmp_path_factory.mktemp("hf")
    hf_trainer(root / "plain" / "out")
    hf_trainer(root / "resumed" / "out", stop_at=25, extra_tb_metric=True)
    hf_trainer(root / "resumed" / "out", resume=True, extra_tb_metric=True)
    hf_trainer(root / "rerun" / "out")
    for f in (root / "rerun" / "out").rglob("*"):  # the first run was an hour before the rerun
        os.utime(f, (f.stat().st_atime - 3600, f.stat().st_mtime - 3600))
    hf_trainer(root / "rerun" / "out", max_steps=20, lr=1e-2, half=True, nan_filter=False, save_state=True)
    return root


def test_hf_output_folder_with_tensorboard_reporting_is_one_run(hf_folders):
    root = hf_folders / "plain"
    runs, inputs = load_runs([root], OPTS)
    (run,) = runs
    assert run.id == "out" and run.format == "hf_trainer_state"  # the training's own record, its folder's name
    assert run.roles.as_dict() == {"train_loss": "loss", "eval_loss": "eval_loss", "grad_norm": "grad_norm",
                                   "lr": "learning_rate"}
    assert not any(t.startswith(("train/", "eval/")) for t in run.tags)  # TensorBoard's names of the same metrics
    (folded,) = [m for m in _notes(run, "merged") if "holds the same history" in m]
    assert folded.startswith("folder out/runs/") and "20 of 20 train-loss values" in folded
    (events,) = [e for p, e in _read_entries(inputs, root).items() if "tfevents" in p]
    assert events.run == "out" and "the same history as folder out" in events.reason


def test_hf_run_resumed_into_its_output_folder_is_one_run(hf_folders):
    root = hf_folders / "resumed"
    assert len(list((root / "out" / "runs").iterdir())) == 2  # each attempt wrote its own TensorBoard folder
    runs, inputs = load_runs([root], OPTS)
    (run,) = runs
    assert run.id == "out"
    (resumed,) = _notes(run, "resumed")
    assert "resumed at step 22 from folder out/runs/" in resumed and "2 of 2 train-loss values" in resumed
    extra = run.series("train/tokens_per_second")  # only TensorBoard had it: kept, over both attempts
    assert extra is not None and extra.steps.tolist() == list(range(2, 41, 2))
    assert extra.values[-1] == 1040.0
    assert run.role_series("train_loss").steps.tolist() == list(range(2, 41, 2))
    assert {e.run for e in _read_entries(inputs, root).values()} == {"out"}


def test_a_rerun_into_the_same_output_folder_is_read_not_the_earlier_runs_checkpoints(hf_folders, tmp_path):
    root = hf_folders / "rerun"
    out = tmp_path / "report.json"
    res = CliRunner().invoke(main, ["inspect", str(root), "--no-cache", "--json", str(out), "--fail-on", "divergence"])
    assert res.exit_code == 1, res.output  # the NaN of the current run is not hidden by the older copy
    report = json.loads(out.read_text())
    current = next(r for r in report["runs"] if r["id"] == "out")
    assert current["verdict"] == "divergence" and current["stats"]["step_range"] == [2, 20]
    stale = [n["message"] for n in current["notes"] if n["kind"] == "stale_copy"]
    assert len(stale) == 2 and all("and out/trainer_state.json disagree from step 2" in m for m in stale)
    assert {m.split(" and ")[0] for m in stale} == {"checkpoint-30/trainer_state.json",
                                                    "checkpoint-40/trainer_state.json"}
    old = {i["path"].split("/out/")[1]: i for i in report["inputs"] if "/out/checkpoint-" in i["path"]
           and i["path"].endswith("trainer_state.json")}
    assert "an earlier run's trainer state" in old["checkpoint-40/trainer_state.json"]["reason"]
    assert "prefix" in old["checkpoint-20/trainer_state.json"]["reason"]  # the rerun's own checkpoint

    # Without the top-level file (no save_state()), the newest checkpoint is the current run's.
    copy = tmp_path / "rerun_no_state"
    shutil.copytree(root, copy)  # copytree keeps the files' times
    (copy / "out" / "trainer_state.json").unlink()
    runs, _ = load_runs([copy], OPTS)
    current_run = next(r for r in runs if r.id == "out")
    assert current_run.step_range() == (2, 20) and np.isnan(current_run.role_series("train_loss").values[2:]).all()


# ---- W&B --------------------------------------------------------------------------------------------------

_WANDB_RESUMES = """
    import wandb

    # a job preempted at step 30 and resumed with the same id: wandb.init(id=..., resume="allow")
    for attempt in range(2):
        run = wandb.init(project="p", id="resumed01", resume="allow", config={"lr": 3e-4, "layers": 2})
        for i in range(30 * attempt, 30 * attempt + 30):
            wandb.log({"train/loss": 2.0 / (1 + i / 10), "grad_norm": 1.0 + (i % 5) / 10})
        wandb.finish()

    # what the HF Trainer's and Lightning's W&B callbacks do: log against their own global step
    for attempt in range(2):
        run = wandb.init(project="p", id="resumed02", resume="allow", config={"lr": 1e-3})
        wandb.define_metric("trainer/global_step")
        wandb.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        for i in range(20 * attempt, 20 * attempt + 20):
            wandb.log({"train_loss": 3.0 / (1 + i / 5), "trainer/global_step": 10 * i})
        wandb.finish()

    # two seeds of one config: two ids
    for seed in (1, 2):
        run = wandb.init(project="p", id=f"seed{seed}", config={"lr": 3e-4, "seed": seed})
        for i in range(30):
            wandb.log({"train/loss": 2.0 / (1 + i / 10) + seed / 100})
        wandb.finish()
"""


def test_a_wandb_run_resumed_into_a_second_folder_is_one_run(tmp_path):
    wandb_offline(tmp_path, _WANDB_RESUMES)
    ids = sorted(f.name[len("run-"):-len(".wandb")] for f in (tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert ids == ["resumed01", "resumed01", "resumed02", "resumed02", "seed1", "seed2"]  # a folder per attempt
    runs, inputs = load_runs([tmp_path], OPTS)
    by_id = {Path(r.sources[0]).name[len("run-"):-len(".wandb")]: r for r in runs}
    assert sorted(by_id) == ["resumed01", "resumed02", "seed1", "seed2"]
    # offline, W&B's own step counter starts again at 0 in the second folder: placed after the first
    one = by_id["resumed01"]
    loss = one.role_series("train_loss")
    assert loss.steps.tolist() == list(range(60))
    assert np.allclose(loss.values, [2.0 / (1 + i / 10) for i in range(60)])
    (note,) = _notes(one, "resumed")
    assert "resumed at step 30" in note and "the same W&B run id resumed01" in note and "started again at 0" in note
    # against the trainer's global step the steps simply continue
    two = by_id["resumed02"].role_series("train_loss")
    assert two.steps.tolist() == [10 * i for i in range(40)]
    wandb_files = [i for i in inputs if i.path.endswith("run-resumed01.wandb")]
    assert len(wandb_files) == 2 and {i.run for i in wandb_files} == {one.id}


def test_a_wandb_summary_beside_the_printed_log_is_that_runs_summary_not_a_run(tmp_path):
    # A W&B folder whose run-*.wandb was not kept (too large to commit): files/output.log, the run's printed
    # output, and files/wandb-summary.json, the final values W&B writes on sync.
    wandb_offline(tmp_path, """
        import wandb
        run = wandb.init(project="p", id="printed01")
        for i in range(40):
            row = {"loss": round(2.0 / (1 + i / 10), 4), "grad_norm": 1.0 + (i % 7) / 10,
                   "learning_rate": 3e-4 * (1 - i / 40), "epoch": round(i / 40, 3)}
            print(row)  # what the HF Trainer prints
            wandb.log({"train/" + k: v for k, v in row.items()})
        wandb.finish()
    """, console=True)
    (folder,) = (tmp_path / "wandb").glob("offline-run-*")
    (folder / "run-printed01.wandb").unlink()
    last = {"loss": round(2.0 / (1 + 39 / 10), 4), "grad_norm": 1.0 + (39 % 7) / 10, "learning_rate": 3e-4 / 40}
    (folder / "files" / "wandb-summary.json").write_text(json.dumps(
        {**{f"train/{k}": v for k, v in last.items()}, "train/epoch": 0.975, "_timestamp": 1714612829.42,
         "_runtime": 169.8, "_step": 39}))
    runs, inputs = load_runs([tmp_path], OPTS)
    (run,) = runs
    assert run.id.endswith("files/output.log") and run.format == "text_log"
    (note,) = [m for m in _notes(run, "merged") if "summary" in m]
    assert "wandb-summary.json holds this run's final values (2 of 2" in note
    summary = next(i for i in inputs if i.path.endswith("wandb-summary.json"))
    assert summary.run == run.id and "the final values of run" in summary.reason


# ---- Lightning --------------------------------------------------------------------------------------------

def test_a_lightning_run_resumed_with_ckpt_path_into_version_1_is_one_run(tmp_path):
    first = lightning_fit(tmp_path, max_steps=40)
    ckpt = Path(first.checkpoint_callback.best_model_path)
    assert ckpt.name == "epoch=1-step=40.ckpt"
    lightning_fit(tmp_path, max_steps=80, ckpt_path=ckpt)
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0", "version_1"]
    runs, inputs = load_runs([tmp_path], OPTS)
    (run,) = runs
    assert run.id == "lightning_logs/version_0"
    steps = run.role_series("train_loss").steps.tolist()
    assert steps[0] < 10 and steps[-1] >= 78 and steps == sorted(set(steps))
    (note,) = _notes(run, "resumed")
    assert note.startswith("folder lightning_logs/version_1 resumed at step 41 from folder lightning_logs/version_0")
    assert all(i.run == run.id for i in inputs if i.status == "read")
    # the same checkpoint resumed again at a lower LR: another trial, kept apart, and the report says why
    lightning_fit(tmp_path, lr=3e-4, max_steps=80, ckpt_path=ckpt)
    runs, _ = load_runs([tmp_path], OPTS)
    assert sorted(r.id for r in runs) == ["lightning_logs/version_0", "lightning_logs/version_2"]
    (apart,) = _notes(next(r for r in runs if r.id.endswith("version_2")), "kept_apart")
    assert "starts at step 41" in apart and "lr=0.0003 vs 0.003" in apart


def test_lightning_look_alikes_stay_apart_a_sweep_in_one_folder_and_two_seeds(tmp_path):
    for lr in (1e-3, 3e-3, 1e-2):
        lightning_fit(tmp_path / "sweep", lr=lr, max_steps=40)
    for seed in (1, 2):
        lightning_fit(tmp_path / "seeds", seed=seed, max_steps=40)
    runs, _ = load_runs([tmp_path], OPTS)
    assert sorted(r.id for r in runs) == [f"seeds/lightning_logs/version_{k}" for k in range(2)] + [
        f"sweep/lightning_logs/version_{k}" for k in range(3)]
    assert not any(n.kind in ("resumed", "merged") for r in runs for n in r.notes)


def test_a_restart_from_scratch_into_a_new_folder_is_not_a_resume(tmp_path):
    # The job died and was started again from step 0 (no checkpoint): two attempts, read as two runs.
    write_summarywriter(tmp_path / "logs" / "run_0101-1200", {"loss": curve(80, seed=1)})
    write_summarywriter(tmp_path / "logs" / "run_0101-1500", {"loss": curve(120, seed=2)})
    runs, _ = load_runs([tmp_path], OPTS)
    assert len(runs) == 2


# ---- copies and NaN --------------------------------------------------------------------------------------

def _diverged(tmp: Path, *, tb: Path | None = None, jsonl: Path | None = None, seed: int) -> None:
    from tests.unstable_training import UnstableTraining

    training = UnstableTraining(tb=tb, jsonl=jsonl, jump_at=5, factor=1e20, seed=seed)  # NaN from step 6
    training.train(100)
    training.close()


def test_two_different_diverged_runs_never_fold_nan_is_no_agreement(tmp_path):
    # in one folder: TensorBoard of one training and the JSONL log of another, both NaN from step 6
    _diverged(tmp_path, tb=tmp_path / "same", seed=0)
    _diverged(tmp_path, jsonl=tmp_path / "same" / "train.jsonl", seed=1)
    # in nearby folders
    _diverged(tmp_path, tb=tmp_path / "near" / "a" / "tb", seed=2)
    _diverged(tmp_path, jsonl=tmp_path / "near" / "b" / "train.jsonl", seed=3)
    runs, _ = load_runs([tmp_path], OPTS)
    assert sorted(r.id for r in runs) == ["near/a/tb", "near/b/train.jsonl", "same", "same/train.jsonl"]
    for run in runs:
        values = run.role_series("train_loss").values
        assert np.isnan(values[6:]).all() and np.isfinite(values[:6]).all()


def test_a_jsonl_log_and_its_tensorboard_copy_in_a_sub_folder_are_one_run_with_both_metrics(tmp_path):
    loss = curve(200, seed=4)
    gnorm = curve(200, start=3.0, end=1.0, seed=5)
    lr = [1e-3 * min(1.0, (s + 1) / 50) for s in range(200)]
    write_jsonl(tmp_path / "exp" / "metrics.jsonl", ({"step": s, "loss": float(loss[s]), "lr": lr[s]}
                                                       for s in range(200)))
    write_summarywriter(tmp_path / "exp" / "tb", {"train/loss": loss, "train/grad_norm": gnorm})
    runs, inputs = load_runs([tmp_path], OPTS)
    (run,) = runs
    assert run.id == "exp/metrics.jsonl"  # the outer folder's log names the training
    assert run.format == "tensorboard"  # the richer copy (a grad norm) was read ...
    assert run.roles.as_dict() == {"train_loss": "train/loss", "eval_loss": None, "grad_norm": "train/grad_norm",
                                   "lr": "lr"}  # ... and the other's LR, which it lacked, kept
    assert math.isclose(run.role_series("lr").values[-1], 1e-3)
    (note,) = [m for m in _notes(run, "merged") if "holds the same history" in m]
    assert "200 of 200" in note and "kept: lr" in note
    jsonl = next(i for i in inputs if i.path.endswith("metrics.jsonl"))
    assert jsonl.run == "exp/metrics.jsonl" and "the same history as folder exp/tb" in jsonl.reason
