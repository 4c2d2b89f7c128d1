"""Regenerate sample_logs/ by really training the built-in workloads (CPU, ~1 minute).

    python -m probes.sample_logs sample_logs

Each case is a real probe trial (TensorBoard events written by PyTorch's writer); some are then
re-written in the layouts other tools use (Lightning CSVLogger, HF trainer_state.json, JSONL), so
the main report shows every kind of finding in every format the analyzer reads.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from analyzer.ingest.load import LoadOptions, load_runs
from probes.runner import run_trial
from probes.spec import ProbeSpec, TrialConfig

CPU = torch.device("cpu")


def _trial(workload: str, optimizer: str, lr: float, steps: int, log_dir: Path, *, warmup: int = 0,
           clip: float | None = None, eval_interval: int = 25, seed: int = 0, **args: object) -> Path:
    spec = ProbeSpec(workload=f"builtin:{workload}", workload_args=dict(args), optimizer=optimizer, lr=lr,
                     steps=steps, eval_interval=eval_interval, seed=seed)
    run_trial(spec, TrialConfig("sample", lr, warmup, None, clip, steps), "sample", device=CPU, log_dir=log_dir)
    return log_dir


def _series(log_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    (run,), _ = load_runs([log_dir], LoadOptions(cache_dir=None))
    return {tag: (s.steps, s.values) for tag in run.tags if (s := run.series(tag)) is not None}


def write_lightning(series: dict, version_dir: Path, hparams: dict) -> None:
    """Lightning CSVLogger's layout: one row per logging call, sparse columns."""
    version_dir.mkdir(parents=True, exist_ok=True)
    steps, loss = series["train/loss"]
    _, lr = series["train/lr"]
    _, gn = series["train/grad_norm"]
    ev_steps, ev = series.get("eval/loss", (np.zeros(0, int), np.zeros(0)))
    ev_at = dict(zip(ev_steps.tolist(), ev.tolist()))
    steps_per_epoch = 100
    with open(version_dir / "metrics.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", "grad_norm", "lr-Adam", "step", "train_loss_epoch", "train_loss_step", "val_loss"])
        for s, lv, lrv, g in zip(steps.tolist(), loss.tolist(), lr.tolist(), gn.tolist()):
            w.writerow([s // steps_per_epoch, f"{g:.6g}", f"{lrv:.6g}", s, "", f"{lv:.6g}", ""])
            if s in ev_at:
                w.writerow([s // steps_per_epoch, "", "", s, "", "", f"{ev_at[s]:.6g}"])
    (version_dir / "hparams.yaml").write_text("".join(f"{k}: {v}\n" for k, v in hparams.items()))


def write_hf_state(series: dict, out_dir: Path, *, lr: float, logging_steps: int = 5) -> None:
    """HF Trainer's trainer_state.json (+ a checkpoint copy), logging every `logging_steps` steps."""
    steps, loss = series["train/loss"]
    _, gn = series["train/grad_norm"]
    ev_steps, ev = series.get("eval/loss", (np.zeros(0, int), np.zeros(0)))
    history: list[dict] = []
    n = int(steps[-1]) + 1
    for i in range(logging_steps - 1, len(steps), logging_steps):
        window = loss[i - logging_steps + 1:i + 1]
        avg = float(np.mean(window))  # Trainer logs the mean loss since the last log
        history.append({"epoch": round((i + 1) / n, 4), "grad_norm": float(gn[i]), "learning_rate": lr,
                        "loss": round(avg, 4) if np.isfinite(avg) else avg, "step": int(steps[i]) + 1})
    for s, v in zip(ev_steps.tolist(), ev.tolist()):
        history.append({"epoch": round((s + 1) / n, 4), "eval_loss": v, "eval_runtime": 0.05,
                        "eval_samples_per_second": 10240.0, "eval_steps_per_second": 20.0, "step": s + 1})
    history.sort(key=lambda h: (h["step"], "eval_loss" in h))

    def state(hist: list[dict], step: int) -> dict:
        return {"best_metric": None, "best_model_checkpoint": None, "epoch": round(step / n, 4), "eval_steps": 25,
                "global_step": step, "is_hyper_param_search": False, "is_local_process_zero": True,
                "is_world_process_zero": True, "log_history": hist, "logging_steps": logging_steps,
                "max_steps": n, "num_train_epochs": 1, "save_steps": n // 2, "total_flos": 0.0,
                "train_batch_size": 64, "trial_name": None, "trial_params": None}
    out_dir.mkdir(parents=True, exist_ok=True)
    half = n // 2
    ck = out_dir / f"checkpoint-{half}"
    ck.mkdir(exist_ok=True)
    (ck / "trainer_state.json").write_text(json.dumps(state([h for h in history if h["step"] <= half], half),
                                                      indent=2))
    (out_dir / "trainer_state.json").write_text(json.dumps(state(history, n), indent=2))


def write_jsonl_with_restart(series: dict, path: Path, *, restart_at: int, resume_from: int) -> None:
    """detectron2-style metrics.json lines; the job dies at `restart_at` and resumes from a checkpoint."""
    steps, loss = series["train/loss"]
    _, lr = series["train/lr"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for s, lv, lrv in zip(steps.tolist(), loss.tolist(), lr.tolist()):
            if s >= restart_at:
                break
            fh.write(json.dumps({"iteration": s, "total_loss": round(lv, 5), "lr": lrv, "data_time": 0.001}) + "\n")
        for s, lv, lrv in zip(steps.tolist(), loss.tolist(), lr.tolist()):
            if s >= resume_from:
                fh.write(json.dumps({"iteration": s, "total_loss": round(lv, 5), "lr": lrv, "data_time": 0.001})
                         + "\n")


def generate(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tb = out / "tensorboard"
    # Stable: the same residual MLP with Pre-LN normalization at a moderate LR.
    _trial("early_residual_mlp", "adam", 0.003, 400, tb / "resmlp_preln_stable", norm="pre")
    # Early instability: un-normalised residual MLP, Adam at lr 0.02 without warmup.
    _trial("early_residual_mlp", "adam", 0.02, 400, tb / "resmlp_early_unstable")
    # A resumed run with a truncated last record: dirty logs are data.
    resumed = tb / "resmlp_resumed"
    _trial("early_residual_mlp", "adam", 0.003, 300, resumed, norm="pre", seed=1)
    files = sorted(resumed.iterdir())
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) - 9])  # the job was killed mid-write
    with tempfile.TemporaryDirectory() as tmp:
        _trial("early_residual_mlp", "adam", 0.003, 300, Path(tmp) / "b", norm="pre", seed=2)
        later = sorted((Path(tmp) / "b").iterdir())[0]
        # A restart that re-logs steps 0..299 after the first attempt: the latest attempt wins.
        shutil.copy(later, resumed / (later.name.replace("tfevents.", "tfevents.9") if "tfevents." in later.name
                                      else later.name))
    # LR sweep (Adam, residual MLP, constant LR): lr 0.03 is early-unstable and 0.1 infeasible; lr* turns out
    # to be the smallest LR tried (0.001), so the report says to extend the sweep downwards.
    for lr in (0.001, 0.003, 0.01, 0.03, 0.1):
        _trial("early_residual_mlp", "adam", lr, 300, out / "lr_sweep" / f"lr_{lr:g}", eval_interval=25)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_p = Path(tmp)
        # Mid-training spikes from outlier batches, as a Lightning CSVLogger run.
        mid = _series(_trial("outlier_batches", "adam", 0.003, 500, tmp_p / "mid"))
        write_lightning(mid, out / "lightning_logs" / "version_0",
                        {"lr": 0.003, "optimizer": "adam", "batch_size": 64, "max_steps": 500})
        # Divergence, as an HF Trainer output dir.
        # Warmup towards a far too high peak LR: trains, then explodes once the LR passes the edge.
        div = _series(_trial("divergent_mlp", "momentum", 30.0, 400, tmp_p / "div", warmup=300))
        write_hf_state(div, out / "hf_trainer" / "divergent_run", lr=30.0)
        # A stable run as detectron2-style JSONL, restarted from a checkpoint.
        st = _series(_trial("divergent_mlp", "momentum", 0.05, 400, tmp_p / "jsonl"))
        write_jsonl_with_restart(st, out / "jsonl" / "metrics.json", restart_at=260, resume_from=200)
    (out / "README.md").write_text(README)


#: What each sample shows, with the verdict the report must give it (tests/test_sample_logs.py reads this table
#: from sample_logs/README.md and checks every row against `steadytrain report sample_logs`).
README = """# sample_logs

Real training runs of steadytrain's built-in workloads (`python -m probes.sample_logs sample_logs` regenerates
them). The verdict column is what `steadytrain report sample_logs` says of each run (a test keeps them equal).

| path | format | verdict | what happened |
|---|---|---|---|
| tensorboard/resmlp_preln_stable | TensorBoard | stable | Pre-LN residual MLP, Adam 3e-3 |
| tensorboard/resmlp_early_unstable | TensorBoard | early_instability | no-norm residual MLP, Adam 2e-2, no warmup: the loss doubles at step 1 (grad norm 10x) and sits above its start until step 5, then trains |
| tensorboard/resmlp_resumed | TensorBoard | stable | a restarted run (a second event file re-logs the steps) whose first file's last record is truncated |
| lr_sweep/lr_0.001 | TensorBoard | stable | constant-LR sweep (Adam, no-norm residual MLP): lr* = 1e-3, the smallest LR tried (the report says to extend the sweep downwards) |
| lr_sweep/lr_0.003 | TensorBoard | stable | the sweep at 3e-3: trains as well as lr* |
| lr_sweep/lr_0.01 | TensorBoard | stable | the sweep at 1e-2 |
| lr_sweep/lr_0.03 | TensorBoard | early_instability | the sweep at 3e-2: blows up 4x at step 1, then trains |
| lr_sweep/lr_0.1 | TensorBoard | divergence | the sweep at 1e-1: blows up ~600x at step 1 and never gets back below its start (infeasible) |
| lightning_logs/version_0 | Lightning CSVLogger | mid_instability | rare outlier batches: a mid-training spike led by a 37x grad-norm outlier |
| hf_trainer/divergent_run | HF trainer_state.json (+ checkpoint copy) | divergence | SGD-momentum warming up to lr 30: trains, then explodes |
| jsonl/metrics.json | detectron2-style JSONL | stable | restarted from iteration 200 after dying at 260 |
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, nargs="?", default=Path("sample_logs"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    generate(args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    logging.getLogger(__name__).info("wrote %s (%.2f MB)", args.out, size / 1e6)


if __name__ == "__main__":
    main()
