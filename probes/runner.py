"""One probe trial: a short training run that logs every step as TensorBoard events.

Reads top to bottom: fresh model from the seed -> optimizer -> per step: LR from the pure
schedule, forward (bf16/fp16 autocast on CUDA when asked), backward, unscale, measure the
UNCLIPPED global grad norm and clip, step. Values stay on the device in a small buffer and are
copied to the host every `log_every` steps (one sync per flush, not per step); the divergence
stop (NaN/inf, or loss > divergence_factor x best) is checked at each flush.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from analyzer.errors import ConfigError
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


class _EventLog:
    """Per-step scalars as TensorBoard events, one Event per step holding all values."""

    def __init__(self, log_dir: Path) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard.writer import FileWriter

        self._event, self._summary = Event, Summary
        self._writer = FileWriter(str(log_dir))

    def write(self, step: int, values: dict[str, float]) -> None:
        summary = self._summary(value=[self._summary.Value(tag=k, simple_value=v) for k, v in values.items()])
        self._writer.add_event(self._event(wall_time=time.time(), step=step, summary=summary))

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


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
    buf = torch.zeros((k, 5), device=device)  # loss, grad norm, lr, clipped, eval loss
    max_norm = trial.clip if trial.clip is not None else math.inf
    best = math.inf
    last_loss: float | None = None
    clipped_total = 0
    steps_run = 0
    stop: str | None = None
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=trial.steps, desc=trial.name, unit="step", leave=False)
    try:
        for step in range(trial.steps):
            lr = lr_at(step, base_lr=trial.lr, total_steps=trial.steps, warmup_steps=trial.warmup_steps,
                       post_warmup_steps=trial.post_warmup_steps, decay=spec.decay)
            for group in opt.param_groups:
                group["lr"] = lr
            x, y = train_batch(step)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            model.train()
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)  # clip the true gradient, not the scaled one
            else:
                loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)  # returns the UNCLIPPED norm
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            row = buf[step % k]
            row[0] = loss.detach().float()
            row[1] = grad_norm.detach().float()
            row[2] = lr
            row[3] = (grad_norm > max_norm).float()
            if spec.eval_interval and (step + 1) % spec.eval_interval == 0:
                model.eval()
                with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    row[4] = sum(loss_fn(model(ex), ey).float() for ex, ey in evals) / len(evals)
            else:
                row[4] = float("nan")
            steps_run = step + 1
            if steps_run % k == 0 or steps_run == trial.steps:
                n = (steps_run - 1) % k + 1
                host = buf[:n].cpu().tolist()  # the one CPU-GPU sync point per flush
                first = steps_run - n
                for i, (lv, gv, lrv, cv, ev) in enumerate(host):
                    values = {"train/loss": lv, "train/grad_norm": gv, "train/lr": lrv, "train/clipped": cv}
                    if not math.isnan(ev):
                        values["eval/loss"] = ev
                    log.write(first + i, values)
                    clipped_total += int(cv)
                    if not math.isfinite(lv):
                        stop = f"loss became {lv} at step {first + i}"
                        steps_run = first + i + 1  # later steps of this window ran on NaN weights: not logged
                        break
                    best = min(best, lv)
                    last_loss = lv
                # Runaway: the window's median (not one outlier batch) beyond divergence_factor x best.
                level = sorted(r[0] for r in host)[n // 2]
                if stop is None and steps_run > k and level > spec.divergence_factor * best:
                    stop = (f"loss {level:.3g} (median of steps {first}-{steps_run - 1}) exceeded "
                            f"{spec.divergence_factor:g}x its best {best:.3g}")
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
