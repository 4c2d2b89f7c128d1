"""Write small logs with the real tools' writers (or their exact layouts), for the tests."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np


def curve(n: int, *, start: float = 2.3, end: float = 0.3, noise: float = 0.02, seed: int = 0,
          spike_at: int | None = None, spike_height: float = 6.0) -> np.ndarray:
    """A loss that falls like a real one, with optional one-off spike."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    loss = end + (start - end) * np.exp(-t / max(n / 4, 1))
    loss = loss * np.exp(noise * rng.standard_normal(n))
    if spike_at is not None:
        loss[spike_at] *= spike_height
    return loss


def write_summarywriter(logdir: Path, scalars: dict[str, Sequence[float]], *, steps: Iterable[int] | None = None,
                        start_step: int = 0) -> Path:
    """PyTorch's SummaryWriter, as a training script would use it."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(logdir))
    n = len(next(iter(scalars.values())))
    step_list = list(steps) if steps is not None else list(range(start_step, start_step + n))
    for i, step in enumerate(step_list):
        for tag, values in scalars.items():
            writer.add_scalar(tag, float(values[i]), step)
    writer.close()
    return logdir


def write_tensorboardx(logdir: Path, scalars: dict[str, Sequence[float]]) -> Path:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(logdir=str(logdir))
    n = len(next(iter(scalars.values())))
    for step in range(n):
        for tag, values in scalars.items():
            writer.add_scalar(tag, float(values[step]), step)
    writer.close()
    return logdir


def export_tensorboard_json(logdir: Path, out_dir: Path) -> list[Path]:
    """What TensorBoard's scalar chart "Download JSON" saves, for every run and tag under ``logdir``: the body its
    scalars plugin serves (through TensorBoard's own data provider and JSON cleansing), named as the UI names it."""
    from tensorboard import context as tb_context
    from tensorboard.backend import json_util
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.scalar import scalars_plugin

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    plugin = scalars_plugin.ScalarsPlugin(base_plugin.TBContext(data_provider=provider, logdir=str(logdir)))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for run, tags in sorted(multiplexer.PluginRunToTagToContent("scalars").items()):
        for tag in sorted(tags):
            body, _ = plugin.scalars_impl(tb_context.RequestContext(), tag, run, "", "json")
            path = out_dir / f"run-{run.replace('/', '_')}-tag-{tag.replace('/', '_')}.json"
            path.write_text(json.dumps(json_util.Cleanse(body)))
            written.append(path)
    return written


def write_tf2_tensor_scalars(logdir: Path, scalars: dict[str, Sequence[float]], *, dtype: str = "float32",
                             encoding: str = "float_val") -> Path:
    """What tf.summary.scalar writes in TF2: a rank-0 tensor with 'scalars' plugin metadata on the
    first event of each tag, built with tensorboard's compat protos and its own event writer."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorboard.plugins.scalar import metadata as scalar_metadata
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    dt = {"float32": types_pb2.DT_FLOAT, "float64": types_pb2.DT_DOUBLE, "float16": types_pb2.DT_HALF}[dtype]
    np_dt = {"float32": "<f4", "float64": "<f8", "float16": "<f2"}[dtype]
    writer = EventFileWriter(str(logdir))
    n = len(next(iter(scalars.values())))
    for step in range(n):
        values = []
        for tag, series in scalars.items():
            x = float(series[step])
            t = tensor_pb2.TensorProto(dtype=dt, tensor_shape=tensor_shape_pb2.TensorShapeProto())
            if encoding == "tensor_content":
                t.tensor_content = np.array(x, dtype=np_dt).tobytes()
            elif dtype == "float32":
                t.float_val.append(x)
            elif dtype == "float64":
                t.double_val.append(x)
            else:
                t.half_val.append(int(np.array(x, dtype="<f2").view("<u2")))
            md = scalar_metadata.create_summary_metadata(display_name=tag, description="") if step == 0 else None
            values.append(summary_pb2.Summary.Value(tag=tag, tensor=t, metadata=md))
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)))
    writer.close()
    return logdir


def write_lightning_csv(version_dir: Path, train_loss: Sequence[float], *, val_every: int = 50,
                        lr: float = 1e-3, log_every: int = 1, hparams: dict | None = None) -> Path:
    """Lightning CSVLogger's layout: sparse rows, train_loss_step / val_loss / lr-Adam, epoch + step."""
    version_dir.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = max(val_every, 1)
    rows = []
    for step in range(0, len(train_loss), log_every):
        epoch = step // steps_per_epoch
        rows.append({"epoch": epoch, "lr-Adam": lr, "step": step, "train_loss_step": train_loss[step],
                     "train_loss_epoch": "", "val_loss": ""})
        if (step + 1) % val_every == 0:
            rows.append({"epoch": epoch, "lr-Adam": "", "step": step, "train_loss_step": "",
                         "train_loss_epoch": float(np.mean(train_loss[step + 1 - val_every:step + 1])),
                         "val_loss": train_loss[step] * 1.1})
    with open(version_dir / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", "lr-Adam", "step", "train_loss_epoch", "train_loss_step",
                                           "val_loss"])
        w.writeheader()
        w.writerows(rows)
    hp = hparams if hparams is not None else {"lr": lr, "batch_size": 32, "optimizer": "adam"}
    (version_dir / "hparams.yaml").write_text("".join(f"{k}: {v}\n" for k, v in hp.items()))
    return version_dir / "metrics.csv"


def hf_log_history(loss: Sequence[float], *, grad_norm: Sequence[float] | None = None, lr: float = 5e-5,
                   logging_steps: int = 10, eval_steps: int = 100) -> list[dict]:
    """log_history exactly as transformers.Trainer writes it (keys and order)."""
    history: list[dict] = []
    n = len(loss)
    for step in range(logging_steps, n + 1, logging_steps):
        entry = {"epoch": round(step / n, 4), "grad_norm": float(grad_norm[step - 1]) if grad_norm is not None else 1.0,
                 "learning_rate": lr, "loss": round(float(loss[step - 1]), 4), "step": step}
        history.append(entry)
        if step % eval_steps == 0:
            history.append({"epoch": round(step / n, 4), "eval_loss": float(loss[step - 1]) * 1.05,
                            "eval_runtime": 1.23, "eval_samples_per_second": 100.0, "eval_steps_per_second": 12.5,
                            "step": step})
    history.append({"epoch": 1.0, "step": n, "total_flos": 12345.0, "train_loss": float(np.mean(loss)),
                    "train_runtime": 60.0, "train_samples_per_second": 10.0, "train_steps_per_second": 1.0})
    return history


def write_trainer_state(out_dir: Path, history: list[dict], *, max_steps: int, checkpoints: Sequence[int] = ()) -> Path:
    """output_dir/trainer_state.json plus checkpoint-N/trainer_state.json prefixes, as Trainer saves."""
    def state(hist: list[dict], step: int) -> dict:
        return {"best_metric": None, "best_model_checkpoint": None, "epoch": 1.0, "eval_steps": 100,
                "global_step": step, "is_hyper_param_search": False, "is_local_process_zero": True,
                "is_world_process_zero": True, "log_history": hist, "logging_steps": 10, "max_steps": max_steps,
                "num_input_tokens_seen": 0, "num_train_epochs": 1, "save_steps": 500, "stateful_callbacks": {},
                "total_flos": 12345.0, "train_batch_size": 8, "trial_name": None, "trial_params": None}
    out_dir.mkdir(parents=True, exist_ok=True)
    for ck in checkpoints:
        d = out_dir / f"checkpoint-{ck}"
        d.mkdir(exist_ok=True)
        prefix = [h for h in history if h.get("step", 0) <= ck and "train_runtime" not in h]
        (d / "trainer_state.json").write_text(json.dumps(state(prefix, ck), indent=2))
    (out_dir / "trainer_state.json").write_text(json.dumps(state(history, max_steps), indent=2))
    return out_dir / "trainer_state.json"


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def write_mlflow_run(root: Path, exp: str, run: str, metrics: dict[str, Sequence[float]], params: dict) -> Path:
    """MLflow's file store layout (mlflow.tracking FileStore)."""
    run_dir = root / exp / run
    (run_dir / "metrics").mkdir(parents=True, exist_ok=True)
    (run_dir / "params").mkdir(exist_ok=True)
    (run_dir / "tags").mkdir(exist_ok=True)
    (root / exp / "meta.yaml").write_text(f"experiment_id: '{exp}'\nname: default\n")
    (run_dir / "meta.yaml").write_text(f"run_id: {run}\nexperiment_id: '{exp}'\nstatus: 3\n")
    for name, values in metrics.items():
        p = run_dir / "metrics" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(f"{1700000000000 + i} {v} {i}\n" for i, v in enumerate(values)))
    for k, v in params.items():
        (run_dir / "params" / k).write_text(str(v))
    (run_dir / "tags" / "mlflow.runName").write_text(run)
    return run_dir


def truncate_file(path: Path, nbytes: int) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size - nbytes)


def flip_byte(path: Path, offset_from_end: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(-offset_from_end, os.SEEK_END)
        b = fh.read(1)
        fh.seek(-offset_from_end, os.SEEK_END)
        fh.write(bytes([b[0] ^ 0x5A]))


def event_file(logdir: Path) -> Path:
    return next(p for p in sorted(logdir.iterdir()) if "tfevents" in p.name)


def finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


Writer = Callable[..., Path]


def points_by_tag(points) -> dict[str, tuple[list[int], list[float]]]:
    """A reader's RawPoints as {tag: (steps, values)} in write order, for exact assertions."""
    out = {}
    for i, tag in enumerate(points.tags):
        m = points.tag_codes == i
        out[tag] = (points.steps[m].tolist(), points.values[m].tolist())
    return out
