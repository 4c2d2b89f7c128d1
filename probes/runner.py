"""One probe trial: a short training run that logs every step as TensorBoard events.

Reads top to bottom: fresh model from the seed -> optimizer -> per step: LR from the pure
schedule, forward (bf16/fp16 autocast on CUDA when asked), backward, unscale, measure the
UNCLIPPED global grad norm and clip, step. Values stay on the device in a small buffer and are
copied to the host every `log_every` steps (one sync per flush, not per step); the divergence
stop (NaN/inf, or loss > divergence_factor x best and above its start) is checked at each flush.
Ctrl-C ends a trial after writing every step it ran.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from analyzer.errors import ConfigError
from probes.events import EventLog
from probes.layers import LayerRecorder
from probes.optim import make_optimizer  # noqa: F401 - re-exported for the benchmarks
from probes.setup import TrialSetup, own_setup, workload_setup
from probes.spec import ProbeSpec, TrialConfig


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
    interrupted: bool = False
    first_step: int = 0
    lr_factor: float = 1.0
    skip: tuple[int, int] | None = None
    used: tuple[str, ...] = ()


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return torch.device(device)


NormFn = Callable[[list[torch.Tensor]], "list[torch.Tensor] | torch.Tensor"]


def grad_norm_fn(params: Sequence[torch.Tensor]) -> NormFn:
    """A function measuring the gradients' global L2 norm (what clip_grad_norm_ measures), chosen once
    per trial because on small models its per-step cost shows. ``get_total_norm`` regroups the
    tensors by device and dtype in Python on every call (124 us for the 36 tensors of
    builtin:early_residual_mlp, a 3 ms step). Instead:

    - CUDA: the fused per-tensor norms (one kernel), combined for all k steps at the flush
      (``combine_norms``) unless the step itself needs the total (clipping);
    - CPU: whichever costs less by a model fitted to in-loop measurements on this project's 2-core
      machine: per-tensor norms ~4 us a tensor (each dispatched, then stacked at the flush); one norm
      over a flat copy ~25 us plus the copy at ~5 GB/s. Measured (per-tensor vs flat): 6 tensors/88 KB
      21 vs 28 us; 25 tensors/311 KB 96 vs 50 us; 36 tensors/277 KB 109 vs 60 us; at 52 tensors/4.3 MB
      the flat copy made a 26 ms step 3.6% slower than the bare loop (-0.9% with per-tensor norms);
    - mixed devices or dtypes, sparse gradients: ``get_total_norm``.
    """
    foreach_norm = getattr(torch, "_foreach_norm", None)
    flatten = getattr(torch._utils, "_flatten_dense_tensors", None)
    uniform = bool(params) and len({(p.device, p.dtype) for p in params}) == 1 and not any(p.is_sparse for p in params)
    if not uniform or foreach_norm is None:
        return torch.nn.utils.get_total_norm
    zero = torch.zeros((), device=params[0].device)
    nbytes = sum(p.numel() * p.element_size() for p in params)
    flat_cost_us, parts_cost_us = 25 + nbytes / 5000, 4 * len(params)
    if params[0].device.type == "cpu" and flatten is not None and flat_cost_us < parts_cost_us:
        def flat(grads: list[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
            return torch.linalg.vector_norm(flatten(grads)) if grads else zero

        return flat

    def parts(grads: list[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        return list(foreach_norm(grads)) if grads else zero

    return parts


def combine_norms(measured: list[list[torch.Tensor] | torch.Tensor]) -> torch.Tensor:
    """Global norms (1-d, one per step) from ``grad_norm_fn`` results: per-tensor parts
    of the same length are combined in one stacked op, anything else step by step."""
    if not measured:
        return torch.zeros(0)
    if all(isinstance(m, list) for m in measured) and len({len(m) for m in measured}) == 1:
        flat = torch.stack([t for m in measured for t in m])
        return torch.linalg.vector_norm(flat.view(len(measured), -1), dim=1)
    return torch.stack([torch.linalg.vector_norm(torch.stack(m)) if isinstance(m, list) else m for m in measured])


class _StepRecorder:
    """Per-step values held on the device; at each flush (the one host sync) written as events and
    checked for the divergence stop. Steps are numbered from ``first_step`` (the run's own numbering)."""

    def __init__(self, log: EventLog, clip: float | None, divergence_factor: float, first_step: int = 0,
                 layers: LayerRecorder | None = None) -> None:
        self.log, self.clip, self.factor, self.first_step, self.layers = log, clip, divergence_factor, first_step, layers
        self.losses: list[torch.Tensor] = []
        self.norms: list[list[torch.Tensor] | torch.Tensor] = []
        self.lrs: list[float] = []
        self.evals: list[torch.Tensor | None] = []
        self.wall_times: list[float] = []
        self.best = math.inf
        self.last_loss: float | None = None
        self.clipped_total = 0
        self.steps_logged = 0
        self.initial_level = math.inf  # median loss of the first window
        self.stop: str | None = None

    def add(self, loss: torch.Tensor, norm: list[torch.Tensor] | torch.Tensor, lr: float,
            eval_loss: torch.Tensor | None) -> None:
        self.losses.append(loss)
        self.norms.append(norm)
        self.lrs.append(lr)
        self.evals.append(eval_loss)
        self.wall_times.append(time.time())

    def _layer_columns(self, first: int, m: int, walls: list[float]) -> dict[str, np.ndarray]:
        """Per-layer columns for the flushed steps: merged into the step events when every step was recorded,
        else written as events of their own."""
        if self.layers is None:
            return {}
        steps, columns = self.layers.take()
        if not steps:
            return {}
        if steps == list(range(first, first + len(steps))) and len(steps) >= m:
            return {tag: values[:m] for tag, values in columns.items()}
        for i, step in enumerate(steps):
            if step < first + m:
                self.log.write(walls[min(step - first, len(walls) - 1)], step,
                               {tag: float(values[i]) for tag, values in columns.items()})
        return {}

    def flush(self) -> str | None:
        """Write the pending steps; returns why the trial must stop (NaN/inf, runaway), or None."""
        losses, norms, lrs, evals, walls = self.losses, self.norms, self.lrs, self.evals, self.wall_times
        # fresh lists first: a flush interrupted by Ctrl-C and called again must not write a step twice
        self.losses, self.norms, self.lrs, self.evals, self.wall_times = [], [], [], [], []
        n = len(losses)
        if n == 0:
            return self.stop
        first = self.first_step + self.steps_logged
        host_loss = torch.stack(losses).float().cpu().numpy()
        host_norm = combine_norms(norms).float().cpu().numpy()
        bad = np.flatnonzero(~np.isfinite(host_loss))
        m = int(bad[0]) + 1 if bad.size else n  # steps after a NaN/inf ran on broken weights: not logged
        clipped = host_norm[:m] > self.clip if self.clip is not None else np.zeros(m, dtype=bool)
        layer_columns = self._layer_columns(first, m, walls)
        self.log.write_steps(np.array(walls[:m]), first, {
            "train/loss": host_loss[:m], "train/grad_norm": host_norm[:m], "train/lr": np.array(lrs[:m]),
            "train/clipped": clipped.astype(np.float32), **layer_columns})
        present = [(i, e) for i, e in enumerate(evals[:m]) if e is not None]
        if present:
            for (i, _), value in zip(present, torch.stack([e for _, e in present]).float().cpu().tolist()):
                self.log.write(walls[i], first + i, {"eval/loss": value})
        self.steps_logged += m
        self.clipped_total += int(clipped.sum())
        finite = host_loss[:m][np.isfinite(host_loss[:m])]
        if finite.size:
            self.best = min(self.best, float(finite.min()))
            self.last_loss = float(finite[-1])
        if bad.size:
            self.stop = f"loss became {float(host_loss[bad[0]])} at step {first + int(bad[0])}"
        elif self.steps_logged == m:
            self.initial_level = float(np.median(host_loss))
        else:
            # Runaway: the window's median (not one outlier batch) beyond divergence_factor x best AND
            # above where training started; near-zero best losses make the ratio alone fire on noise.
            level = float(np.median(host_loss))
            if level > self.factor * self.best and level > self.initial_level:
                self.stop = (f"loss {level:.3g} (median of steps {first}-{first + n - 1}) exceeded "
                             f"{self.factor:g}x its best {self.best:.3g} and its starting level "
                             f"{self.initial_level:.3g}")
        self.log.flush()
        return self.stop


@dataclass(frozen=True)
class _Precision:
    """Autocast and loss scaling for one trial: autocast only on CUDA, a GradScaler only for float16
    (bfloat16 has float32's range, nothing underflows)."""

    amp: Callable[[], Any]
    scaler: torch.amp.GradScaler | None


def _precision(dtype: str, device: torch.device) -> _Precision:
    amp_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    use_amp = amp_dtype is not None and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp and amp_dtype == torch.float16 else None
    amp: Callable[[], Any] = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if use_amp \
        else contextlib.nullcontext
    return _Precision(amp, scaler)


_StepValues = tuple[torch.Tensor, "list[torch.Tensor] | torch.Tensor", float, "torch.Tensor | None"]


class _Stepper:
    """One optimizer update of the trial at a time; returns what the recorder logs for it. The unclipped
    norm is measured after unscaling and before clipping, so the log shows what the run's gradient was."""

    def __init__(self, spec: ProbeSpec, trial: TrialConfig, setup: TrialSetup,
                 scaler: torch.amp.GradScaler | None) -> None:
        self.setup, self.opt, self.scaler, self.clip = setup, setup.optimizer, scaler, trial.clip
        self.first, self.layer_every, self.eval_interval = setup.first_step, spec.layer_every, spec.eval_interval
        self.params = [p for g in self.opt.param_groups for p in g["params"] if p.requires_grad]
        self.measure_norm = grad_norm_fn(self.params)
        self.layers = LayerRecorder(setup.model, self.opt) if spec.layer_stats and spec.own_run else None
        self._lrs_set: list[float] = []

    def _set_lrs(self, step: int) -> list[float]:
        lrs = self.setup.lrs_at(step)
        if lrs != self._lrs_set:  # only when the schedule moved: a constant LR costs the loop nothing
            for group, lr in zip(self.opt.param_groups, lrs):
                group["lr"] = lr
            self._lrs_set = lrs
        return lrs

    def _norm_then_clip(self) -> list[torch.Tensor] | torch.Tensor:
        # the UNCLIPPED global norm, logged as is
        grad_norm = self.measure_norm([p.grad for p in self.params if p.grad is not None])
        if self.clip is not None:
            if isinstance(grad_norm, list):
                grad_norm = combine_norms([grad_norm])[0]
            torch.nn.utils.clip_grads_with_norm_(self.params, self.clip, grad_norm)
        return grad_norm

    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()

    def _eval_loss(self, step: int) -> torch.Tensor | None:
        if self.setup.evaluate is None or (step - self.first + 1) % self.eval_interval != 0:
            return None
        self.setup.model.eval()
        eval_loss = self.setup.evaluate()
        self.setup.model.train()
        return eval_loss

    def step(self, step: int) -> _StepValues:
        lrs = self._set_lrs(step)
        batch = self.setup.batch_for(step)
        if self.layers is not None:
            self.layers.before_forward((step - self.first) % self.layer_every == 0)
        self.opt.zero_grad(set_to_none=True)
        loss = self.setup.forward_backward(batch)
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)  # clip the true gradient, not the scaled one
        if self.layers is not None:
            self.layers.before_step()  # the per-block gradient before clipping
        grad_norm = self._norm_then_clip()
        self._optimizer_step()
        if self.layers is not None:
            self.layers.after_step(step)
        return loss, grad_norm, lrs[0], self._eval_loss(step)


def _train(stepper: _Stepper, rec: _StepRecorder, steps: int, log_every: int, bar: Any) -> str | None:
    """Every step of the trial, flushed each ``log_every`` steps and after the last; returns why it stopped
    early, or None."""
    first = stepper.first
    stop: str | None = None
    for step in range(first, first + steps):
        rec.add(*stepper.step(step))
        if (step - first + 1) % log_every == 0 or step + 1 == first + steps:
            pending = len(rec.losses)
            stop = rec.flush()
            if bar is not None:
                bar.update(pending)
            if stop is not None:
                break
    return stop


def _progress_bar(trial: TrialConfig) -> Any:
    from tqdm import tqdm  # only when asked: tqdm stays off the import path of library callers

    return tqdm(total=trial.steps, desc=trial.name, unit="step", leave=False)


def _out_of_memory(spec: ProbeSpec, trial: TrialConfig) -> ConfigError:
    return ConfigError(f"CUDA out of memory in trial {trial.name!r} at batch_size={spec.batch_size} (micro-batch "
                       f"{spec.micro_batch_size or spec.batch_size}): lower micro_batch_size in the spec (the same "
                       "effective batch, accumulated), use --scale, or run with --device cpu")


def _result(trial: TrialConfig, plan: str, rec: _StepRecorder, stop: str | None, interrupted: bool,
            log_dir: Path, seconds: float, device: torch.device, setup: TrialSetup) -> TrialResult:
    steps_run = rec.steps_logged
    return TrialResult(name=trial.name, plan=plan, lr=trial.lr, warmup_steps=trial.warmup_steps, clip=trial.clip,
                       steps_planned=trial.steps, steps_run=steps_run,
                       infeasible=stop is not None and not interrupted, stop_reason=stop, interrupted=interrupted,
                       final_loss=rec.last_loss, best_loss=None if rec.best == math.inf else rec.best,
                       fraction_clipped=rec.clipped_total / steps_run if steps_run and trial.clip is not None
                       else None,
                       log_dir=str(log_dir), seconds=seconds, device=str(device),
                       first_step=setup.first_step, lr_factor=trial.lr_factor, skip=trial.skip,
                       used=tuple(setup.used))


def run_trial(spec: ProbeSpec, trial: TrialConfig, plan: str, *, device: torch.device, log_dir: Path,
              progress: bool = False) -> TrialResult:
    """Train one trial; every step logged; stops early (infeasible) on NaN/inf or runaway loss.

    Ctrl-C ends the trial after writing every step it ran; the result says "interrupted" and
    the caller decides whether to go on.
    """
    torch.manual_seed(spec.seed)  # before the setup: the model's initial weights come from the seed
    precision = _precision(spec.dtype, device)
    make = own_setup if spec.own_run else workload_setup
    setup = make(spec, trial, device, precision.amp, precision.scaler)
    stepper = _Stepper(spec, trial, setup, precision.scaler)
    log = EventLog(log_dir)
    rec = _StepRecorder(log, trial.clip, spec.divergence_factor, setup.first_step, stepper.layers)
    log_every = max(1, min(spec.log_every, trial.steps))
    interrupted = False
    started = time.perf_counter()
    bar = _progress_bar(trial) if progress else None
    setup.model.train()
    try:
        stop = _train(stepper, rec, trial.steps, log_every, bar)
    except KeyboardInterrupt:
        stop = rec.flush()
        if stop is None:
            interrupted = True
            stop = "interrupted (Ctrl-C) after writing every step it ran"
    except torch.cuda.OutOfMemoryError:
        raise _out_of_memory(spec, trial) from None
    finally:
        log.close()
        if stepper.layers is not None:
            stepper.layers.close()
        if bar is not None:
            bar.close()
    return _result(trial, plan, rec, stop, interrupted, log_dir, time.perf_counter() - started, device, setup)
