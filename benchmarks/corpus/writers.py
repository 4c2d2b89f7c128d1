"""Write a Record the way a real tool would have logged it, in one of four layouts.

The Record holds every step; the Habit decides what a log shows (cadence, HF's mean since the last
log or the step's own value, rounding, which signals). Layouts, each as the tool writes it:

- tb: torch.utils.tensorboard.SummaryWriter event files (a restart adds a second event file that
  re-logs steps from the checkpoint on, as a resumed job does).
- lightning: CSVLogger's lightning_logs/version_0/metrics.csv (one row per logging call, sparse
  columns, step and epoch) and hparams.yaml.
- hf: the Trainer's trainer_state.json (log_history entries with loss, grad_norm, learning_rate,
  epoch, step; eval entries; the closing train_runtime summary; a checkpoint-N copy) and, for some
  runs, LLaMA-Factory's trainer_log.jsonl beside it (the same history written twice: one run).
- jsonl: one JSON object per line with a step key (step, iteration or global_step).

A run lives in its own directory runs/<family>/<run>/; non-sweep logs sit one level below it
(tb/, lightning_logs/version_0/, out/, metrics.jsonl) so that two unrelated runs of one family are
never siblings that differ only in LR (which a sweep finder would rightly group). Sweep trials are
siblings under runs/<family>/<sweep>/ with a config.json each, differing in lr and identity fields.

write() returns what the log shows (steps and values of the train loss, eval loss and grad norm
actually written) so verification can check the shape is visible at that cadence.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus.spec import RunSpec
from benchmarks.corpus.train import Record

# Tag spellings of the tools, so a corpus run is not always named like the last one.
TB_TAGS = (
    {"loss": "train/loss", "grad_norm": "train/grad_norm", "lr": "train/lr", "eval": "eval/loss"},
    {"loss": "loss", "grad_norm": "grad_norm", "lr": "lr", "eval": "val_loss"},
    {"loss": "Loss/train", "grad_norm": "grad_norm/total", "lr": "learning_rate", "eval": "Loss/valid"},
)
JSONL_KEYS = (
    {"step": "step", "loss": "loss", "grad_norm": "grad_norm", "lr": "lr", "eval": "eval_loss"},
    {"step": "iteration", "loss": "total_loss", "grad_norm": "grad_norm", "lr": "lr", "eval": "val_loss"},
    {"step": "global_step", "loss": "train_loss", "grad_norm": "gnorm", "lr": "learning_rate", "eval": "valid_loss"},
)


@dataclass
class Logged:
    """What the written log shows, on the record's 0-based step axis."""

    steps: np.ndarray
    loss: np.ndarray
    eval_steps: np.ndarray
    eval_loss: np.ndarray
    grad_norm: np.ndarray | None


def logged_points(spec: RunSpec, rec: Record) -> Logged:
    h = spec.habit
    n = len(rec.loss)
    if h.every == 1:
        steps = np.arange(n)
    else:
        # HF/Lightning log after every `every`-th optimizer step; HF also logs the first step
        steps = np.arange(h.every - 1, n, h.every)
        if h.fmt == "hf":
            steps = np.unique(np.concatenate([[0], steps]))
    if h.mode == "mean":
        vals = []
        prev = -1
        for s in steps:
            window = rec.loss[prev + 1:s + 1]
            fin = window[np.isfinite(window)]
            # HF's logging_nan_inf_filter: non-finite steps are left out of the mean; a window with
            # none finite logs 0.0 (with a NaN grad norm beside it)
            vals.append(float(fin.mean()) if fin.size else (0.0 if h.fmt == "hf" else float("nan")))
            prev = s
        loss = np.array(vals)
    else:
        loss = rec.loss[steps]
    gn = rec.grad_norm[steps] if h.grad_norm else None
    if h.digits is not None:
        loss = np.round(loss, h.digits)
        gn = np.round(gn, h.digits) if gn is not None else None
    ev_steps, ev = (rec.eval_steps, rec.eval_loss) if h.eval else (np.zeros(0, np.int64), np.zeros(0))
    if h.digits is not None:
        ev = np.round(ev, h.digits)
    if h.crash_after_nan:
        bad = np.nonzero(~np.isfinite(rec.loss))[0]
        if bad.size:
            stop = int(bad[0]) + 3  # the job died a few steps after the first NaN
            keep = steps <= stop
            steps, loss = steps[keep], loss[keep]
            gn = gn[keep] if gn is not None else None
            ke = ev_steps <= stop
            ev_steps, ev = ev_steps[ke], ev[ke]
    return Logged(steps, loss, ev_steps, ev, gn)


def hparams(spec: RunSpec) -> dict[str, Any]:
    """The run's configuration as its training script would record it."""
    h: dict[str, Any] = {"optimizer": spec.optimizer, "lr": spec.lr, "batch_size": spec.batch_size,
                         "max_steps": spec.steps, "lr_schedule": spec.schedule, "warmup_steps": spec.warmup,
                         "weight_decay": spec.weight_decay, "seed": spec.seed}
    if spec.optimizer in ("momentum", "nesterov"):
        h["momentum"] = spec.momentum
    if spec.optimizer in ("adam", "adamw"):
        h["adam_beta1"], h["adam_beta2"] = spec.betas
    h["grad_clip"] = spec.clip if spec.clip is not None else 0.0
    if spec.fp16:
        h["fp16"] = True
    for k, v in spec.task_args:
        h[f"model.{k}" if k in ("d_model", "layers", "hidden", "cell", "depth", "width", "norm_first", "model",
                                "res_norm", "batchnorm") else f"data.{k}"] = v if not isinstance(v, tuple) else str(v)
    h["task"] = spec.task
    return h


def _fmt(v: float) -> float | str:
    return v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))


def _variant(spec: RunSpec, n: int) -> int:
    return (sum(map(ord, spec.name)) + spec.seed) % n


# -- TensorBoard ----------------------------------------------------------------------------------

def _write_tb(spec: RunSpec, rec: Record, lg: Logged, log_dir: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    tags = TB_TAGS[_variant(spec, len(TB_TAGS))]
    ev_at = dict(zip(lg.eval_steps.tolist(), lg.eval_loss.tolist()))

    def emit(writer: SummaryWriter, lo: int, hi: int) -> None:
        for i, s in enumerate(lg.steps.tolist()):
            if not lo <= s < hi:
                continue
            writer.add_scalar(tags["loss"], float(lg.loss[i]), s)
            if lg.grad_norm is not None:
                writer.add_scalar(tags["grad_norm"], float(lg.grad_norm[i]), s)
            if spec.habit.lr:
                writer.add_scalar(tags["lr"], float(rec.lr[s]), s)
        for s, v in ev_at.items():
            if lo <= s < hi:
                writer.add_scalar(tags["eval"], float(v), s)

    n = len(rec.loss)
    if spec.habit.restart is None:
        with SummaryWriter(str(log_dir)) as w:
            emit(w, 0, n)
    else:
        die, resume = spec.habit.restart
        with SummaryWriter(str(log_dir)) as w:
            emit(w, 0, die + 1)
        with SummaryWriter(str(log_dir), filename_suffix=".resumed") as w:  # the resumed job's own file
            emit(w, resume, n)


# -- Lightning CSVLogger ----------------------------------------------------------------------------

def _write_lightning(spec: RunSpec, rec: Record, lg: Logged, version_dir: Path) -> None:
    version_dir.mkdir(parents=True, exist_ok=True)
    spe = rec.steps_per_epoch or max(1, len(rec.loss))
    opt_name = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "momentum": "SGD", "nesterov": "SGD"}[spec.optimizer]
    cols = ["epoch", "step", "train_loss_step"]
    if lg.grad_norm is not None:
        cols.append("grad_norm")
    if spec.habit.lr:
        cols.append(f"lr-{opt_name}")
    epoch_avg = rec.steps_per_epoch is not None
    if epoch_avg:
        cols.append("train_loss_epoch")  # Lightning's on_epoch=True mean, logged at each epoch end
    if len(lg.eval_steps):
        cols.append("val_loss")
    rows: list[dict[str, Any]] = []
    for i, s in enumerate(lg.steps.tolist()):
        row = {"epoch": s // spe, "step": s, "train_loss_step": f"{lg.loss[i]:.6g}"}
        if lg.grad_norm is not None:
            row["grad_norm"] = f"{lg.grad_norm[i]:.6g}"
        if spec.habit.lr:
            row[f"lr-{opt_name}"] = f"{rec.lr[s]:.6g}"
        rows.append(row)
    for s, v in zip(lg.eval_steps.tolist(), lg.eval_loss.tolist()):
        rows.append({"epoch": s // spe, "step": s, "val_loss": f"{v:.6g}"})
    if epoch_avg:
        for e in range(len(rec.loss) // spe):
            window = rec.loss[e * spe:(e + 1) * spe]
            rows.append({"epoch": e, "step": (e + 1) * spe - 1, "train_loss_epoch": f"{np.mean(window):.6g}"})
    rows.sort(key=lambda r: (r["step"], "val_loss" in r, "train_loss_epoch" in r))
    with open(version_dir / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for row in rows:
            w.writerow(row)
    (version_dir / "hparams.yaml").write_text("".join(f"{k}: {v}\n" for k, v in hparams(spec).items()))


# -- HF Trainer -------------------------------------------------------------------------------------

def _write_hf(spec: RunSpec, rec: Record, lg: Logged, out_dir: Path, *, config: dict[str, Any] | None) -> None:
    n = len(rec.loss)
    spe = rec.steps_per_epoch or n
    digits = spec.habit.digits

    def epoch(step1: int) -> float:
        return round(step1 / spe, 4)

    def rnd(v: float) -> float:
        return round(v, digits) if digits is not None and math.isfinite(v) else v

    history: list[dict[str, Any]] = []
    for i, s in enumerate(lg.steps.tolist()):
        entry: dict[str, Any] = {"epoch": epoch(s + 1)}
        if lg.grad_norm is not None:
            entry["grad_norm"] = float(lg.grad_norm[i])
        if spec.habit.lr:
            entry["learning_rate"] = float(rec.lr[s])
        entry["loss"] = float(lg.loss[i])
        entry["step"] = s + 1
        history.append(entry)
    for s, v in zip(lg.eval_steps.tolist(), lg.eval_loss.tolist()):
        history.append({"epoch": epoch(s + 1), "eval_loss": float(v), "eval_runtime": 0.2113,
                        "eval_samples_per_second": 605.8, "eval_steps_per_second": 18.93, "step": s + 1})
    history.sort(key=lambda h: (h["step"], "eval_loss" in h))
    last = int(lg.steps[-1]) + 1 if len(lg.steps) else n
    fin = rec.loss[np.isfinite(rec.loss)]
    summary = {"epoch": epoch(last), "step": last, "total_flos": 1.2e12, "train_loss": rnd(float(fin.mean())) if fin.size
               else 0.0, "train_runtime": round(rec.seconds, 3),
               "train_samples_per_second": round(last * spec.batch_size / max(rec.seconds, 1e-3), 3),
               "train_steps_per_second": round(last / max(rec.seconds, 1e-3), 3)}

    def state(hist: list[dict[str, Any]], step: int, final: bool) -> dict[str, Any]:
        return {"best_metric": None, "best_model_checkpoint": None, "epoch": epoch(step),
                "eval_steps": spec.eval_every or 500, "global_step": step, "is_hyper_param_search": False,
                "is_local_process_zero": True, "is_world_process_zero": True,
                "log_history": hist + ([summary] if final else []), "logging_steps": spec.habit.every,
                "max_steps": n, "num_input_tokens_seen": 0, "num_train_epochs": max(1, math.ceil(n / spe)),
                "save_steps": n // 2, "stateful_callbacks": {}, "total_flos": 1.2e12,
                "train_batch_size": spec.batch_size, "trial_name": None, "trial_params": None}

    out_dir.mkdir(parents=True, exist_ok=True)
    half = n // 2
    ck = out_dir / f"checkpoint-{half}"
    ck.mkdir(exist_ok=True)
    (ck / "trainer_state.json").write_text(json.dumps(state([h for h in history if h["step"] <= half], half, False),
                                                      indent=2))
    (out_dir / "trainer_state.json").write_text(json.dumps(state(history, last, True), indent=2))
    if config is not None:
        (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    if config is None and _variant(spec, 6) == 0:
        # LLaMA-Factory writes the same history again as trainer_log.jsonl: one training, two files
        with open(out_dir / "trainer_log.jsonl", "w") as fh:
            for h in history:
                if "loss" in h:
                    fh.write(json.dumps({"current_steps": h["step"], "total_steps": n, "loss": h["loss"],
                                         "lr": h.get("learning_rate"), "epoch": h["epoch"],
                                         "percentage": round(100 * h["step"] / n, 2)}) + "\n")


# -- JSONL ------------------------------------------------------------------------------------------

def _write_jsonl(spec: RunSpec, rec: Record, lg: Logged, path: Path) -> None:
    keys = JSONL_KEYS[_variant(spec, len(JSONL_KEYS))]
    path.parent.mkdir(parents=True, exist_ok=True)
    ev_at = dict(zip(lg.eval_steps.tolist(), lg.eval_loss.tolist()))

    def lines(lo: int, hi: int) -> list[str]:
        out = []
        for i, s in enumerate(lg.steps.tolist()):
            if not lo <= s < hi:
                continue
            obj: dict[str, Any] = {keys["step"]: s, keys["loss"]: _fmt(float(lg.loss[i]))}
            if lg.grad_norm is not None:
                obj[keys["grad_norm"]] = _fmt(float(lg.grad_norm[i]))
            if spec.habit.lr:
                obj[keys["lr"]] = float(rec.lr[s])
            out.append(json.dumps(obj))
            if s in ev_at:
                out.append(json.dumps({keys["step"]: s, keys["eval"]: _fmt(float(ev_at[s]))}))
        for s, v in ev_at.items():  # evals at steps the train loss was not logged
            if lo <= s < hi and s not in set(lg.steps.tolist()):
                out.append(json.dumps({keys["step"]: s, keys["eval"]: _fmt(float(v))}))
        return out

    n = len(rec.loss)
    if spec.habit.restart is None:
        body = lines(0, n)
    else:  # the job died after die_at and the resumed one appends from its checkpoint (steps go back)
        die, resume = spec.habit.restart
        body = lines(0, die + 1) + lines(resume, n)
    path.write_text("\n".join(body) + "\n")


# -- entry point ------------------------------------------------------------------------------------

def write(spec: RunSpec, rec: Record, run_dir: Path, *, sweep_config: dict[str, Any] | None = None) -> Logged:
    """Write one run under run_dir (runs/<family>/<run> or runs/<family>/<sweep>/<trial>)."""
    lg = logged_points(spec, rec)
    fmt = spec.habit.fmt
    flat = sweep_config is not None  # sweep trials: the log sits in the trial directory itself
    if fmt == "tb":
        log_dir = run_dir if flat else run_dir / "tb"
        log_dir.mkdir(parents=True, exist_ok=True)
        _write_tb(spec, rec, lg, log_dir)
        (log_dir / ("config.json" if flat else "hparams.yaml")).write_text(
            json.dumps(sweep_config, indent=2) if flat else "".join(f"{k}: {v}\n" for k, v in hparams(spec).items()))
    elif fmt == "lightning":
        _write_lightning(spec, rec, lg, run_dir / "lightning_logs" / "version_0")
    elif fmt == "hf":
        _write_hf(spec, rec, lg, run_dir if flat else run_dir / "out", config=sweep_config)
    elif fmt == "jsonl":
        _write_jsonl(spec, rec, lg, run_dir / "metrics.jsonl")
        if flat:
            (run_dir / "config.json").write_text(json.dumps(sweep_config, indent=2))
        else:
            (run_dir / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in hparams(spec).items()))
    else:
        raise ValueError(f"habit.fmt {fmt!r}: expected tb, lightning, hf or jsonl")
    return lg
