"""The probe spec that re-runs the flagged run itself, from its folder (torch-free).

From the diagnosis: the flagged window (where the first instability began, peaked and ended, the last
good step before it) and the run's logged LR over the steps to replay. From the folder
(probes.artifacts): the checkpoint at or before the last good step, or the architecture for a fresh
start, and the run's own settings (optimizer, betas, clipping, batch size, precision, schedule).

A spec written from a log never carries what would exhaust a machine: the steps are the window and
a tail after it (at most MAX_STEPS), and a batch whose estimated activations exceed
ACTIVATION_BUDGET_GIB runs as micro-batches with gradient accumulation (the same effective batch);
the notes say so.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.plans import ClipPlan
from analyzer.evidence import ExcursionEvidence
from analyzer.types import Diagnosis, Finding, Severity
from probes.artifacts import Checkpoint, choose, find_checkpoints
from probes.spec import OPTIMIZERS, ProbeSpec

_UNSTABLE = ("early_instability", "mid_instability", "divergence")
#: The longest replay a spec asks for (steps); the window and its tail usually need far fewer.
MAX_STEPS = 2000
#: A replay goes on this many steps (or the window's length, if longer) past the window's end: recovery shows.
TAIL_STEPS = 30
#: Estimated activation memory a spec's micro-batch may need (GiB); the device is unknown when it is written.
ACTIVATION_BUDGET_GIB = 8.0
#: The longest sequence a spec asks for (a 128k-context model is probed at this length unless edited).
MAX_SEQ_LEN = 2048
#: lr_trace keeps at most this many points of the logged LR (change points first).
TRACE_POINTS = 200


def flagged_window(d: Diagnosis) -> dict[str, Any] | None:
    """Where the first instability (warn or fail) began, peaked and ended, and the last good step before it."""
    flagged = [f for f in d.findings if f.verdict in _UNSTABLE and f.severity >= Severity.WARN]
    if not flagged:
        return None
    first: Finding = min(flagged, key=lambda f: f.start_step)
    rng = d.run.step_range()
    end = first.end_step if first.end_step is not None else (rng[1] if rng else first.start_step)
    ev = first.evidence
    out: dict[str, Any] = {"start": int(first.start_step), "end": int(max(end, first.start_step)),
                           "verdict": first.verdict}
    if isinstance(ev, ExcursionEvidence):
        out["peak"] = int(ev.peak_step)
        out["ratio"] = float(ev.ratio) if math.isfinite(ev.ratio) else None
    loss = d.run.role_series("train_loss")
    before = loss.steps[loss.steps < first.start_step] if loss is not None else np.zeros(0, dtype=np.int64)
    out["last_good"] = int(before[-1]) if before.size else None
    clip = next((r for r in d.recommendations if r.kind == "clip"), None)
    p90 = clip.params.max_norm if clip is not None and isinstance(clip.params, ClipPlan) else None
    if isinstance(p90, (int, float)) and math.isfinite(p90) and p90 > 0:
        out["grad_p90"] = float(p90)
    return out


def _run_dirs(d: Diagnosis) -> list[Path]:
    dirs: list[Path] = []
    for s in d.run.sources:
        p = Path(s)
        folder = p if p.is_dir() else p.parent
        if folder.name.startswith("checkpoint-"):  # HF: the run is the folder holding checkpoint-N/
            folder = folder.parent
        if folder not in dirs:
            dirs.append(folder)
    return dirs


def lr_trace(d: Diagnosis, first: int, last: int) -> tuple[tuple[int, float], ...]:
    """The logged LR over [first, last] (and the last value before it), thinned to TRACE_POINTS keeping jumps."""
    lr = d.run.role_series("lr")
    if lr is None or not len(lr):
        return ()
    ok = np.isfinite(lr.values) & (lr.values >= 0)
    steps, values = lr.steps[ok], lr.values[ok]
    lo = max(int(np.searchsorted(steps, first, side="right")) - 1, 0)
    hi = int(np.searchsorted(steps, last, side="right"))
    steps, values = steps[lo:hi], values[lo:hi]
    if steps.size == 0:
        return ()
    if steps.size > TRACE_POINTS:
        change = np.abs(np.diff(np.log(np.maximum(values, 1e-30)))) > 0.05
        keep = set(np.flatnonzero(change).tolist()) | set((np.flatnonzero(change) + 1).tolist())
        keep |= set(np.linspace(0, steps.size - 1, TRACE_POINTS // 2).astype(int).tolist())
        idx = sorted(keep)[: TRACE_POINTS * 2]
        steps, values = steps[idx], values[idx]
    return tuple((int(s), float(f"{v:.6g}")) for s, v in zip(steps, values))


def _width_depth(ck: Checkpoint) -> tuple[int | None, int | None]:
    a = ck.model_args
    width = next((a[k] for k in ("n_embd", "hidden_size", "d_model", "width") if isinstance(a.get(k), int)), None)
    depth = next((a[k] for k in ("n_layer", "num_hidden_layers", "layers", "depth") if isinstance(a.get(k), int)), None)
    return width, depth


def micro_batch(batch: int, seq_len: int | None, ck: Checkpoint) -> tuple[int | None, str | None]:
    """A micro-batch whose estimated activations fit ACTIVATION_BUDGET_GIB: ~70 bytes x width x depth per
    token in fp32 (Korthikanti et al. 2022 count 34 bytes per token per width unit per layer in 16-bit,
    without the attention matrix); None when the whole batch fits or the model's size is not known."""
    width, depth = _width_depth(ck)
    if not (width and depth and seq_len):
        return None, None
    per_sample = 70.0 * width * depth * seq_len
    need = per_sample * batch / 2**30
    if need <= ACTIVATION_BUDGET_GIB:
        return None, None
    micro = max(1, int(ACTIVATION_BUDGET_GIB * 2**30 // per_sample))
    while batch % micro:
        micro -= 1
    return micro, (f"the batch of {batch} needs ~{need:.0f} GiB of activations by estimate: it runs as micro-batches of "
                   f"{micro} with {batch // micro} accumulation steps (the same effective batch); edit micro_batch_size "
                   f"for your device")


def _find_data(ck: Checkpoint, dirs: list[Path]) -> str | None:
    """nanoGPT's token file: data/<dataset>/train.bin (train.py reads it relative to where it ran), or a
    train.bin beside the run."""
    dataset = ck.settings.get("dataset")
    for root in dirs:
        for base in (root, root.parent, root.parent.parent):
            for candidate in ([base / "data" / dataset / "train.bin"] if isinstance(dataset, str) else []) + \
                    [base / "train.bin"]:
                if candidate.is_file():
                    return str(candidate.resolve())
    return None


def own_run_spec(d: Diagnosis, stand_in: ProbeSpec) -> ProbeSpec | None:
    """The spec that re-runs the run itself, or None when its folder holds no checkpoint or model config."""
    window = flagged_window(d)
    if window is None:
        return None
    dirs = _run_dirs(d)
    ck, why = choose(find_checkpoints(dirs), window.get("last_good"))
    if ck is None:
        return None
    s = ck.settings
    notes = [f"the run itself: {ck.architecture} ({ck.kind}); {why}"]
    if ck.kind == "lightning" and ck.class_path is None:
        notes.append("the LightningModule's class is not recorded (LightningCLI records it): set source.class_path "
                     "to package.module.Class before probing")
    if s.get("optimizer_note"):
        notes.append(str(s["optimizer_note"]))
    resume = ck.path is not None
    start = ck.first_step if resume else 0
    rng = d.run.step_range()
    last_logged = rng[1] if rng else window["end"]
    if resume:
        span = window["end"] - start + 1
        steps = span + max(TAIL_STEPS, window["end"] - window["start"])
    else:
        steps = max(60, 3 * window["end"])
    steps = max(steps, 20)
    if steps > MAX_STEPS:
        notes.append(f"the replay would need {steps:,} steps to cover the window and a tail: clamped to {MAX_STEPS:,}")
        steps = MAX_STEPS
    if not resume and last_logged > 0:
        steps = min(steps, max(last_logged + 1, 20))
    lr: float = s["lr"] if isinstance(s.get("lr"), (int, float)) and s["lr"] > 0 else stand_in.lr
    seq: int | None = s["seq_len"] if isinstance(s.get("seq_len"), int) else None
    if seq and seq > MAX_SEQ_LEN:
        notes.append(f"sequences of {seq:,} tokens (the model's context) clamped to {MAX_SEQ_LEN:,}")
        seq = MAX_SEQ_LEN
    batch: int = s["batch_size"] if isinstance(s.get("batch_size"), int) and s["batch_size"] > 0 else stand_in.batch_size
    if "batch_size" not in s:
        notes.append(f"the run's batch size is not in its files: {batch} is a placeholder (set batch_size; with "
                     "--data-order sequential the replay reads the run's batches only at its batch size)")
    micro, why_micro = micro_batch(batch, seq, ck)
    if why_micro:
        notes.append(why_micro)
    data = _find_data(ck, dirs) if ck.kind == "nanogpt" else None
    notes.append(f"data: {data} (nanoGPT's token file for this run)" if data else
                 "NO DATA GIVEN: the probe trains on a synthetic token stream; an instability that depends on the "
                 "run's data may not recur. Give the run's data with --data (a token .bin, a datasets folder, a "
                 ".txt/.jsonl file for the run's tokenizer, or module:function)")
    notes.append(f"clip candidates: p90 of the logged unclipped grad norm ({stand_in.clip_candidates[0]:.3g}) and tighter"
                 if stand_in.clip_candidates else "clip candidates: p90 of the replay's own unclipped grad norm (the "
                 "log has none) and tighter")
    trace = lr_trace(d, start, start + steps)
    plans = ["baseline"] + (["skip_window"] if resume else []) + ["clip_sweep", "lr_sweep", "warmup_sweep", "lr_search"]
    opt = str(s.get("optimizer") or stand_in.optimizer)
    source = {"kind": ck.kind, "architecture": ck.architecture, "config": str(ck.config) if ck.config else None,
              "checkpoint": str(ck.path) if resume else None, "checkpoint_step": ck.step if resume else None,
              "class_path": ck.class_path, "model_args": _jsonable(dict(ck.model_args)),
              "settings_from": list(ck.settings_from), "resume_note": why}
    betas = s.get("betas")
    return replace(
        stand_in, workload="run", workload_args={}, source=source, data=data, seq_len=seq, start_step=start,
        window=window, lr_trace=trace, schedule=_jsonable(s.get("schedule")),
        micro_batch_size=micro, optimizer=opt if opt in OPTIMIZERS else "adamw", lr=float(lr),
        betas=(float(betas[0]), float(betas[1])) if isinstance(betas, list) else stand_in.betas,
        eps=float(s.get("eps", stand_in.eps)), weight_decay=float(s.get("weight_decay", 0.0)),
        clip=s.get("clip"), batch_size=batch, steps=int(steps), dtype=str(s.get("dtype") or "float32"),
        seed=int(s["seed"]) if isinstance(s.get("seed"), int) and s["seed"] >= 0 else 0,
        eval_interval=max(10, steps // 20), warmup_steps=0, post_warmup_steps=None, decay="constant",
        plans=tuple(plans), warmup_candidates=(10, 50, 100), notes=tuple(notes))


def _jsonable(value: Any) -> Any:
    """Settings as YAML-safe plain values (nested dicts/lists of numbers and text)."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return None

