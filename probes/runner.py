"""One probe trial: a short training run that logs every step as TensorBoard events.

Reads top to bottom: fresh model from the seed -> optimizer -> per step: LR from the pure
schedule, forward (bf16/fp16 autocast on CUDA when asked), backward, unscale, measure the
UNCLIPPED global grad norm and clip, step. Values stay on the device in a small buffer and are
copied to the host every `log_every` steps (one sync per flush, not per step); the divergence
stop (NaN/inf, or loss > divergence_factor x best) is checked at each flush.
"""

from __future__ import annotations

import contextlib
import math
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from analyzer.errors import ConfigError
from analyzer.ingest.tfrecord import masked_crc
from probes.schedule import lr_at
from probes.spec import ProbeSpec, TrialConfig
from probes.workloads import build


@dataclass(frozen=True)
class TrialResult:
    """What one trial did. ``log_dir`` holds its TensorBoard events (one run per trial)."""

    name: str
    plan: str
    lr: float
    warmup_steps: int
    clip: float | None
    steps_planned: int
    steps_run: int
    infeasible: bool
    stop_reason: str | None
    final_loss: float | None
    best_loss: float | None
    fraction_clipped: float | None
    log_dir: str
    seconds: float
    device: str


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return torch.device(device)


def make_optimizer(spec: ProbeSpec, params, lr: float) -> torch.optim.Optimizer:  # type: ignore[no-untyped-def]
    name = spec.optimizer
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=spec.weight_decay)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, nesterov=name == "nesterov",
                               weight_decay=spec.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=spec.momentum, eps=spec.eps, weight_decay=spec.weight_decay)
    raise ConfigError(f"optimizer {name!r}: expected sgd, momentum, nesterov, adam, adamw, nadam or rmsprop")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_scalar_event(wall_time: float, step: int, values: dict[str, float]) -> bytes:
    """The bytes ``Event(wall_time, step, summary=Summary(value=[Value(tag, simple_value)...]))
    .SerializeToString()`` produces (a test checks they are identical), without building protos:
    a probe writes one per step, and proto objects cost ~30 us each there."""
    body = bytearray()
    for tag, value in values.items():
        tag_b = tag.encode()
        inner = b"\x0a" + _varint(len(tag_b)) + tag_b + b"\x15" + struct.pack("<f", value)
        body += b"\x0a" + _varint(len(inner)) + inner
    out = b"\x09" + struct.pack("<d", wall_time)
    if step:
        out += b"\x10" + _varint(step & 0xFFFFFFFFFFFFFFFF)
    return out + b"\x2a" + _varint(len(body)) + bytes(body)


class _EventLog:
    """Per-step scalars as TensorBoard event files, one Event (all of the step's values) per record.

    The TFRecord framing is written here because tensorboard's RecordWriter, without TensorFlow,
    computes CRC32C in pure Python (~15 us a record); the `crc32c` package does the same in C.
    """

    def __init__(self, log_dir: Path) -> None:
        import socket

        from tensorboard.compat.proto.event_pb2 import Event

        log_dir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.steadytrain"
        self._file = open(log_dir / name, "wb")
        self._record(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())

    def _record(self, data: bytes) -> None:
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", masked_crc(header)) + data + struct.pack("<I", masked_crc(data)))

    def write(self, step: int, values: dict[str, float]) -> None:
        self._record(encode_scalar_event(time.time(), step, values))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def run_trial(spec: ProbeSpec, trial: TrialConfig, plan: str, *, device: torch.device, log_dir: Path,
              progress: bool = False) -> TrialResult:
    """Train one trial; every step logged; stops early (infeasible) on NaN/inf or runaway loss."""
    torch.manual_seed(spec.seed)
    model, loss_fn, train_batch, eval_batches = build(spec.workload, dict(spec.workload_args),
                                                      batch_size=spec.batch_size, seed=spec.seed)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(spec, params, trial.lr)
    amp_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(spec.dtype)
    use_amp = amp_dtype is not None and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp and amp_dtype == torch.float16 else None
    evals = [(x.to(device), y.to(device)) for x, y in eval_batches]
    log = _EventLog(log_dir)
    k = max(1, min(spec.log_every, trial.steps))
    # Per-step values stay on the device in these lists; one stack + copy per flush is the only sync.
    losses: list[torch.Tensor] = []
    norms: list[torch.Tensor] = []
    evals_at: list[torch.Tensor | None] = []
    lrs: list[float] = []
    clip = trial.clip
    best = math.inf
    last_loss: float | None = None
    clipped_total = 0
    steps_run = 0
    stop: str | None = None
    amp = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if use_amp else contextlib.nullcontext
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=trial.steps, desc=trial.name, unit="step", leave=False)
    model.train()
    try:
        for step in range(trial.steps):
            lr = lr_at(step, base_lr=trial.lr, total_steps=trial.steps, warmup_steps=trial.warmup_steps,
                       post_warmup_steps=trial.post_warmup_steps, decay=spec.decay)
            for group in opt.param_groups:
                group["lr"] = lr
            x, y = train_batch(step)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with amp():
                loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)  # clip the true gradient, not the scaled one
            else:
                loss.backward()
            grads = [p.grad for p in params if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads)  # the UNCLIPPED global norm, logged as is
            if clip is not None:
                torch.nn.utils.clip_grads_with_norm_(params, clip, grad_norm)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            losses.append(loss.detach())
            norms.append(grad_norm.detach())
            lrs.append(lr)
            if spec.eval_interval and (step + 1) % spec.eval_interval == 0:
                model.eval()
                with torch.no_grad(), amp():
                    evals_at.append(sum(loss_fn(model(ex), ey).float() for ex, ey in evals) / len(evals))
                model.train()
            else:
                evals_at.append(None)
            steps_run = step + 1
            if steps_run % k == 0 or steps_run == trial.steps:
                n = len(losses)
                first = steps_run - n
                # the one CPU-GPU sync point per flush
                host_loss = torch.stack(losses).float().cpu().tolist()
                host_norm = torch.stack(norms).float().cpu().tolist()
                present = [e for e in evals_at if e is not None]
                host_eval = iter(torch.stack(present).cpu().tolist()) if present else iter(())
                for i in range(n):
                    lv, gv = host_loss[i], host_norm[i]
                    clipped = clip is not None and gv > clip
                    values = {"train/loss": lv, "train/grad_norm": gv, "train/lr": lrs[i],
                              "train/clipped": float(clipped)}
                    if evals_at[i] is not None:
                        values["eval/loss"] = next(host_eval)
                    log.write(first + i, values)
                    clipped_total += int(clipped)
                    if not math.isfinite(lv):
                        stop = f"loss became {lv} at step {first + i}"
                        steps_run = first + i + 1  # later steps of this window ran on NaN weights: not logged
                        break
                    best = min(best, lv)
                    last_loss = lv
                # Runaway: the window's median (not one outlier batch) beyond divergence_factor x best.
                level = sorted(host_loss)[n // 2]
                if stop is None and steps_run > k and level > spec.divergence_factor * best:
                    stop = (f"loss {level:.3g} (median of steps {first}-{steps_run - 1}) exceeded "
                            f"{spec.divergence_factor:g}x its best {best:.3g}")
                losses.clear()
                norms.clear()
                evals_at.clear()
                lrs.clear()
                log.flush()
                if bar is not None:
                    bar.update(n)
                if stop is not None:
                    break
    except KeyboardInterrupt:
        stop = "interrupted (Ctrl-C); what was logged is kept"
        raise
    except torch.cuda.OutOfMemoryError:
        raise ConfigError(f"CUDA out of memory in trial {trial.name!r} at batch_size={spec.batch_size}: lower "
                          "batch_size in the spec, or run with --device cpu") from None
    finally:
        log.close()
        if bar is not None:
            bar.close()
    return TrialResult(name=trial.name, plan=plan, lr=trial.lr, warmup_steps=trial.warmup_steps, clip=trial.clip,
                       steps_planned=trial.steps, steps_run=steps_run,
                       infeasible=stop is not None and not stop.startswith("interrupted"), stop_reason=stop,
                       final_loss=last_loss, best_loss=None if best == math.inf else best,
                       fraction_clipped=clipped_total / steps_run if steps_run and trial.clip is not None else None,
                       log_dir=str(log_dir), seconds=time.perf_counter() - started, device=str(device))
