"""Training stdout and log files printed exactly as each tool prints them: test material for a general
printed-log reader (issue 16).

Every writer reproduces the tool's own format strings, read from the tool's source (the `source` of its
FormatSpec quotes them, with repository and path), with the noise around them that a real run leaves:
banners, argument dumps, warnings, progress-bar redraws with '\\r', nested tqdm bars, ANSI colours,
logging prefixes, generated samples, a copy of the training script. Values pass through the tool's own
rounding, so `FormatSpec.render[role](value)` is the exact text the tool prints for a value and a reader's
number can be compared with `float(render(v))` (or the text itself). NaN/inf are printed the way that
format prints them (C printf 'nan'/'-nan', Python '{:.6E}' 'NAN', Lightning's padded 'nan.0', ...).

Steps: `Curve.steps` counts completed optimizer updates (1-based); each spec says how its tool prints the
counter (`step` text, `train_step_of`/`eval_step_of` give the printed label of a point, None where the
line carries no counter, NOT_PRINTED where the tool never prints that point).

The module has no dependency on analyzer code: it is proven by tests/test_printed_formats.py with a
per-format regex oracle, independently of the reader.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from tqdm import tqdm

NOT_PRINTED = -1  # an eval point the tool never prints (e.g. the last validation of NeMo 2's printer)
T0 = datetime(2024, 5, 1, 12, 0, 0)


# --------------------------------------------------------------------------------------------------
# The curve every writer prints


@dataclass(frozen=True)
class Curve:
    """What a run logged: train loss (and optional grad norm, LR) at `steps`, eval loss at `eval_steps`.
    Steps count completed optimizer updates, 1-based; an eval step is the number of updates the
    evaluated model had (0: before training)."""

    steps: tuple[int, ...]
    train_loss: tuple[float, ...]
    total_steps: int
    eval_steps: tuple[int, ...] = ()
    eval_loss: tuple[float, ...] = ()
    grad_norm: tuple[float, ...] | None = None
    lr: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.steps)
        if len(self.train_loss) != n or any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError("steps must increase and match train_loss")
        if len(self.eval_steps) != len(self.eval_loss):
            raise ValueError("eval_steps and eval_loss differ in length")
        for extra in (self.grad_norm, self.lr):
            if extra is not None and len(extra) != n:
                raise ValueError("grad_norm / lr must match steps")
        if self.steps and (self.steps[0] < 1 or self.steps[-1] > self.total_steps):
            raise ValueError("steps must lie in 1..total_steps")

    def gn(self, i: int) -> float:
        return self.grad_norm[i] if self.grad_norm is not None else 1.0

    def lr_at(self, i: int) -> float:
        return self.lr[i] if self.lr is not None else 3e-4

    def eval_at(self) -> dict[int, float]:
        return dict(zip(self.eval_steps, self.eval_loss))


def make_curve(n: int = 60, *, every: int = 1, start: float = 10.9, end: float = 3.3, eval_every: int = 10,
               eval_at_zero: bool = False, nan_from: int | None = None, inf_at: int | None = None,
               peak_lr: float = 6e-4, seed: int = 0, total_steps: int | None = None) -> Curve:
    """A language-model-like curve of n points every `every` steps: loss falling from `start` to `end`,
    grad norm decaying, LR warm-up then cosine; eval every `eval_every` points and at the last one.
    nan_from: index from which train loss, grad norm and later evals are NaN (divergence);
    inf_at: index whose train loss is +inf (an fp16 overflow that recovers)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1)
    steps = tuple(int(x) for x in t * every)
    loss = end + (start - end) * np.exp(-t / max(n / 5, 1)) + 0.03 * rng.standard_normal(n)
    gn = 0.4 + 2.5 * np.exp(-t / max(n / 8, 1)) + 0.05 * np.abs(rng.standard_normal(n))
    warm = max(n // 10, 1)
    lr = np.where(t <= warm, peak_lr * t / warm,
                  0.1 * peak_lr + 0.45 * peak_lr * (1 + np.cos(np.pi * (t - warm) / max(n - warm, 1))))
    train = [float(x) for x in loss]
    gnl = [float(x) for x in gn]
    if inf_at is not None:
        train[inf_at] = math.inf
    if nan_from is not None:
        for i in range(nan_from, n):
            train[i] = math.nan
            gnl[i] = math.nan
    eval_idx = [i for i in range(n) if (i + 1) % eval_every == 0 or i == n - 1]
    e_steps = ([0] if eval_at_zero else []) + [steps[i] for i in eval_idx]
    e_loss = ([start + 0.05] if eval_at_zero else []) + [
        math.nan if nan_from is not None and i >= nan_from else float(loss[i] + 0.08 + 0.01 * rng.standard_normal())
        for i in eval_idx]
    return Curve(steps=steps, train_loss=tuple(train), total_steps=total_steps or steps[-1],
                 eval_steps=tuple(e_steps), eval_loss=tuple(e_loss), grad_norm=tuple(gnl),
                 lr=tuple(float(x) for x in lr))


# --------------------------------------------------------------------------------------------------
# What a format is


Points = dict[str, list[tuple[int | None, str]]]  # role -> [(printed step label or None, printed text)]
StepOf = Callable[[Curve, int], "int | None"]


@dataclass(frozen=True)
class FormatSpec:
    tool: str
    source: str  # repository, path and the format string(s) as written in that source
    roles: Mapping[str, str | None]  # train_loss / eval_loss / grad_norm / lr -> the printed key
    step: str  # how the line prints its counter
    rounding: Mapping[str, str]  # role -> the format the tool applies
    nan_text: str  # how a NaN train loss appears
    writer: Callable[..., Path]
    render: Mapping[str, Callable[[float], str]]  # role -> exact printed text of a value
    oracle: Callable[[str], Points]  # the self-test's regex reading of a written file
    train_step_of: StepOf
    eval_step_of: StepOf
    notes: str = ""
    filename: str = "train.log"  # the name the tool gives the file (main.log, log.txt, results.csv) or a stand-in
    options: Mapping[str, object] = field(default_factory=dict)  # writer kwargs the registry's check uses

    def expected(self, curve: Curve) -> Points:
        """What the oracle must find for `curve`: per role, (printed step label, printed text) in order."""
        out: Points = {}
        if self.roles.get("train_loss"):
            out["train"] = [(self.train_step_of(curve, i), self.render["train_loss"](v))
                            for i, v in enumerate(curve.train_loss)]
        if self.roles.get("eval_loss"):
            ev = [(self.eval_step_of(curve, j), self.render["eval_loss"](v)) for j, v in enumerate(curve.eval_loss)]
            out["eval"] = [p for p in ev if p[0] != NOT_PRINTED]
        for role, key in (("grad_norm", "grad_norm"), ("lr", "lr")):
            if self.roles.get(role) and role in self.render:
                vals = [curve.gn(i) if role == "grad_norm" else curve.lr_at(i) for i in range(len(curve.steps))]
                out[key] = [(self.train_step_of(curve, i), self.render[role](v)) for i, v in enumerate(vals)]
        return out


# --------------------------------------------------------------------------------------------------
# Shared printing helpers


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:  # newline='': the '\r' of redraws stay as written
        f.write(text)
    return path


def cfmt(fmt: str, v: float, negative_nan: bool = False) -> str:
    """C printf of one double as glibc prints it: Python's %-formatting agrees ('nan', 'inf', '-inf') except
    that glibc prints the sign bit of a NaN ('-nan'), which x86 produces for 0*inf and inf-inf."""
    s = fmt % v
    if negative_nan and math.isnan(v):
        s = s.replace("+nan", "-nan") if "+nan" in s else (s[1:] if s.startswith(" ") else s).replace("nan", "-nan")
    return s


def _f(spec: str) -> Callable[[float], str]:
    return lambda v: format(v, spec)


def _stamp(i: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return (T0 + timedelta(seconds=i)).strftime(fmt)


def lightning_num(n: float | int) -> str:
    """Lightning's Tqdm.format_num (lightning/pytorch/callbacks/progress/tqdm_progress.py): tqdm's
    '{:.3g}' (or str() when shorter), then a float is padded with '.' and zeros to 5 characters, so NaN
    prints 'nan.0' and 19.0 prints '19.00'. Written out because importing Lightning costs seconds."""
    padded = isinstance(n, float)
    s = tqdm.format_num(n)
    if padded and "e" not in s:
        if "." not in s and len(s) < 5:
            try:
                float(s)
            except ValueError:
                return s
            s += "."
        s += "0" * (5 - len(s))
    return s


class Screen:
    """What tqdm bars leave in a captured stream (tqdm/std.py): a refresh writes '\\r' + status + spaces
    up to the previous width; a bar at position p>0 is wrapped in '\\n'*p ... '\\x1b[A'*p (moveto);
    tqdm.write clears the bars, prints the message and redraws them; close(leave=True) ends with '\\n'."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.last: dict[int, str] = {}

    def print(self, text: str) -> None:
        self.parts.append(text + "\n")

    def status(self, s: str, pos: int = 0) -> None:
        pad = " " * max(len(self.last.get(pos, "")) - len(s), 0)
        self.parts.append("\n" * pos + "\r" + s + pad + "\x1b[A" * pos)
        self.last[pos] = s

    def write(self, msg: str) -> None:
        for pos, s in sorted(self.last.items()):
            self.parts.append("\n" * pos + "\r" + " " * len(s) + "\r" + "\x1b[A" * pos)
        self.parts.append(msg + "\n")
        for pos, s in sorted(self.last.items()):
            self.parts.append("\n" * pos + "\r" + s + "\x1b[A" * pos)

    def close(self, pos: int = 0, leave: bool = True) -> None:
        s = self.last.pop(pos, "")
        if leave:
            self.parts.append("\n" * pos + "\r" + s + ("\n" if pos == 0 else "\x1b[A" * pos))
        else:
            self.parts.append("\n" * pos + "\r" + " " * len(s) + ("\r" if pos == 0 else "\x1b[A" * pos))

    def text(self) -> str:
        return "".join(self.parts)


def bar(n: int, total: int | None, elapsed: float, **kw: object) -> str:
    """One tqdm status line, from tqdm's own formatter (deterministic: elapsed and rate are given)."""
    rate = kw.pop("rate", (n / elapsed) if elapsed > 0 and n else None)
    return tqdm.format_meter(n, total, elapsed, rate=rate, **kw)


def _segments(text: str) -> list[str]:
    """Lines as a terminal-less reader sees them: split on '\\n' and '\\r', ANSI codes and backspaces dropped."""
    clean = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).replace("\b", "")
    return [s for s in re.split(r"[\r\n]", clean) if s.strip()]


def _found(**lists: list[tuple[int | None, str]]) -> Points:
    return {k: v for k, v in lists.items()}


def _dt_ms(rng: np.random.Generator, base: float = 812.0) -> float:
    return float(base * (1 + 0.02 * rng.standard_normal()))


# A training script as the speedrun-style trainers copy it into their log (their logfile starts with the
# script's own source, so format strings with '{...}' placeholders and literal hyper-parameters come first).
_SCRIPT_EXCERPT = '''import os
import sys
with open(sys.argv[0]) as f:
    code = f.read() # read the code of this file ASAP, for logging
import time
from dataclasses import dataclass

@dataclass
class Hyperparameters:
    batch_size : int = 8*64 # batch size, in sequences, across all devices
    sequence_length : int = 1024 # sequence length, in tokens
    num_iterations : int = 3200 # number of iterations to run
    warmup_iters : int = 0
    cooldown_iters : int = 900 # number of iterations of linear warmup/cooldown
    weight_decay : float = 0
    val_loss_every : int = 125 # every how many steps to evaluate val loss? 0 for only at the end
    val_tokens : int = 10485760 # how many tokens of validation data?
args = Hyperparameters()

for step in range(args.num_iterations + 1):
    last_step = (step == args.num_iterations)
    if last_step or (args.val_loss_every > 0 and step % args.val_loss_every == 0):
        print0(f"step:{step}/{args.num_iterations} val_loss:{val_loss:.4f} train_time:{training_time_ms:.0f}ms")
    # loss: 3.28 at step 3200 is the target
    print0(f"step:{step+1}/{args.num_iterations} train_loss:{train_loss.item():.4f} train_time:{approx_time:.0f}ms")
print0(f"peak memory consumption: {torch.cuda.max_memory_allocated() // 1024 // 1024} MiB")
'''

_NVIDIA_SMI = '''Wed May  1 12:00:00 2024
+---------------------------------------------------------------------------------------+
| NVIDIA-SMI 535.104.05             Driver Version: 535.104.05   CUDA Version: 12.2     |
|-----------------------------------------+----------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id        Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |         Memory-Usage | GPU-Util  Compute M. |
|=========================================+======================+======================|
|   0  NVIDIA H100 80GB HBM3          On  | 00000000:19:00.0 Off |                    0 |
| N/A   35C    P0             118W / 700W |   1234MiB / 81559MiB |      3%      Default |
+-----------------------------------------+----------------------+----------------------+
'''


# ---- llm.c -----------------------------------------------------------------------------------------

def _zscores(values: list[float], window: int = 64) -> list[float]:
    """llm.c's OutlierDetector (llmc/outlier_detector.h): NaN until the 64-value window is full."""
    out = []
    for i, v in enumerate(values):
        if i < window:
            out.append(math.nan)
            continue
        w = np.array(values[i - window + 1:i + 1], dtype=float)
        with np.errstate(invalid="ignore"):  # an inf in the window makes the z-score NaN, as in C
            sd = float(w.std())
            out.append(0.0 if sd == 0 else float((v - w.mean()) / sd))
    return out


def _hellaswag(v: float) -> float:
    return 0.2495 if not math.isfinite(v) else min(0.35, 0.25 + 0.1 * math.exp(-(v - 3.0)))


def write_llmc_stdout(path: Path, curve: Curve, *, negative_nan: bool = False, hellaswag: bool = True,
                      sample_every: int = 0) -> Path:
    """karpathy/llm.c train_gpt2.cu stdout: its parameter table, then per loop step `val loss %f` (no
    counter; printed before 'step s+1/N'), `HellaSwag: %d/%d = %f`, generated text, and one line per step."""
    rng = np.random.default_rng(1)
    out = ["+-----------------------+----------------------------------------------------+",
           "| Parameter             | Value                                              |",
           "+-----------------------+----------------------------------------------------+",
           f"| {'train data pattern':<21} | {'dev/data/fineweb10B/fineweb_train_*.bin':<50} |",
           f"| {'output log dir':<21} | {'log124M':<50} |",
           f"| {'micro batch size B':<21} | {64:<50d} |",
           f"| {'sequence length T':<21} | {1024:<50d} |",
           f"| {'total batch size':<21} | {524288:<50d} |",
           f"| {'learning rate (LR)':<21} | {cfmt('%-50e', 6e-4)} |",
           f"| {'warmup iterations':<21} | {700:<50d} |",
           f"| {'max_steps':<21} | {curve.total_steps:<50d} |",
           f"| {'val_loss_every':<21} | {250:<50d} |",
           "+-----------------------+----------------------------------------------------+",
           f"| {'device':<21} | {'NVIDIA H100 80GB HBM3':<50} |",
           f"| {'peak TFlops':<21} | {cfmt('%-50.1f', 989.4)} |",
           f"| {'precision':<21} | {'BF16':<50} |",
           "+-----------------------+----------------------------------------------------+",
           f"| {'num_parameters':<21} | {124475904:<50d} |",
           "+-----------------------+----------------------------------------------------+",
           "num_parameters: 124475904 => bytes: 248951808",
           "allocated 237 MiB for model parameters",
           "batch_size B=64 * seq_len T=1024 * num_processes=8 and total_batch_size=524288",
           "=> setting grad_accum_steps=1",
           "allocating 40409 MiB for activations"]
    evals = curve.eval_at()
    train = {s: i for i, s in enumerate(curve.steps)}
    zl = _zscores(list(curve.train_loss))
    zg = _zscores([curve.gn(i) for i in range(len(curve.steps))])
    ema = 0.0
    for step in range(curve.total_steps + 1):
        if step in evals:
            out.append(cfmt("val loss %f", evals[step], negative_nan))
            if hellaswag and step > 0:
                ok = int(10042 * _hellaswag(evals[step]))
                out.append("".join("evaluating HellaSwag: %d/79\r" % k for k in range(0, 79, 10))
                           + "HellaSwag: %d/%d = %f" % (ok, 10042, ok / 10042))
        if sample_every and step > 0 and step % sample_every == 0:
            out += ["generating:", "---", "The meaning of life is to find your gift. The purpose of life is to give it away.", "---"]
        if step == curve.total_steps:
            break
        i = train.get(step + 1)
        if i is None:
            continue
        ms = _dt_ms(rng, 330.0)
        tps = 524288 / ms * 1000
        shown = tps  # llm.c: the first step is warm-up; later ones print the bias-corrected EMA
        if step > 0:
            ema = 0.95 * ema + 0.05 * tps
            shown = ema / (1 - 0.95 ** step)
        out.append("step %4d/%d | loss %s (%sz)| norm %s (%sz)| lr %.2e | %.2f ms | %.1f%% bf16 MFU | %.0f tok/s" % (
            step + 1, curve.total_steps, cfmt("%7.6f", curve.train_loss[i], negative_nan), cfmt("%+.2f", zl[i]),
            cfmt("%6.4f", curve.gn(i), negative_nan), cfmt("%+.2f", zg[i]), curve.lr_at(i), ms, 38.4, shown))
    out.append("total average iteration time: %f ms" % 330.1)
    return _write(path, "\n".join(out) + "\n")


def write_llmc_mainlog(path: Path, curve: Curve, *, negative_nan: bool = True, hellaswag: bool = True) -> Path:
    """karpathy/llm.c `-o DIR` log file DIR/main.log (llmc/logger.h): `s:%d tel:%.4f` (val, at the loop
    step = updates done), `s:%d eval:%.4f` (HellaSwag), `s:%d trl:%.4f lr:%.6f norm:%.2f` (0-based update)."""
    evals = curve.eval_at()
    train = {s: i for i, s in enumerate(curve.steps)}
    out = []
    for step in range(curve.total_steps + 1):
        if step in evals:
            out.append("s:%d tel:%s" % (step, cfmt("%.4f", evals[step], negative_nan)))
            if hellaswag and step > 0:
                out.append("s:%d eval:%.4f" % (step, int(10042 * _hellaswag(evals[step])) / 10042))
        i = train.get(step + 1)
        if i is not None:
            out.append("s:%d trl:%s lr:%.6f norm:%s" % (step, cfmt("%.4f", curve.train_loss[i], negative_nan),
                                                       curve.lr_at(i), cfmt("%.2f", curve.gn(i), negative_nan)))
    return _write(path, "\n".join(out) + "\n")


def write_llmc_cpu(path: Path, curve: Curve) -> Path:
    """karpathy/llm.c train_gpt2.c (the CPU reference): `val loss %f` every 10 loop steps (no counter) and
    `step %d: train loss %f (took %f ms)` with the 0-based loop step (updates done - 1)."""
    rng = np.random.default_rng(18)
    out = ["[GPT-2]", "max_seq_len: 1024", "vocab_size: 50257", "padded_vocab_size: 50304", "num_layers: 12",
           "num_heads: 12", "channels: 768", "num_parameters: 124475904", "train dataset num_batches: 1192",
           "val dataset num_batches: 128", "num_activations: 73347840"]
    evals = curve.eval_at()
    train = {s: i for i, s in enumerate(curve.steps)}
    for step in range(curve.total_steps + 1):
        if step in evals:
            out.append("val loss %f" % evals[step])
        if step > 0 and step % 20 == 0:
            out += ["generating:", "---", "Being barren savour'd, and being frail, I cannot be the brave.", "---"]
        i = train.get(step + 1)
        if i is not None:
            out.append("step %d: train loss %f (took %f ms)" % (step, curve.train_loss[i], _dt_ms(rng, 1400.0)))
    return _write(path, "\n".join(out) + "\n")


# ---- build-nanogpt ---------------------------------------------------------------------------------

_SAMPLES = ["Hello, I'm a language model, and I've been working on a new project for a while now.",
            "Hello, I'm a language model, not a program. So this article is about the language",
            "Hello, I'm a language model, so you can use this in a variety of ways. For example",
            "Hello, I'm a language model, and I want to see your answer! You are right. But"]


def _bn_eval_loop_step(curve: Curve, e: int) -> int:
    # build-nanogpt validates at the top of loop step `step` (updates done = step); its last validation
    # runs at last_step = max_steps - 1, i.e. before the final update.
    return min(e, curve.total_steps - 1)


def write_build_nanogpt_stdout(path: Path, curve: Curve, *, sample: bool = True) -> Path:
    """karpathy/build-nanogpt train_gpt2.py stdout: `validation loss: %.4f` (no counter), HellaSwag,
    samples, then `step {step:5d} | loss: {:.6f} | lr {:.4e} | norm: {:.4f} | dt: {:.2f}ms | tok/sec: {:.2f}`."""
    rng = np.random.default_rng(2)
    out = ["using device: cuda", "total desired batch size: 524288", "=> calculated gradient accumulation steps: 4",
           "found 99 shards for split train", "found 1 shards for split val",
           "num decayed parameter tensors: 50, with 124,354,560 parameters",
           "num non-decayed parameter tensors: 98, with 121,344 parameters", "using fused AdamW: True"]
    evals = {_bn_eval_loop_step(curve, e): v for e, v in curve.eval_at().items()}
    train = {s: i for i, s in enumerate(curve.steps)}
    for step in range(curve.total_steps):
        if step in evals:
            out.append(f"validation loss: {evals[step]:.4f}")
            acc = _hellaswag(evals[step])
            out.append(f"HellaSwag accuracy: {int(10042 * acc)}/10042={int(10042 * acc) / 10042:.4f}")
            if sample and step > 0:
                out += [f"rank 0 sample {j}: {t}" for j, t in enumerate(_SAMPLES)]
        i = train.get(step + 1)
        if i is not None:
            dt = _dt_ms(rng, 330.0)
            out.append(f"step {step:5d} | loss: {curve.train_loss[i]:.6f} | lr {curve.lr_at(i):.4e} | "
                       f"norm: {curve.gn(i):.4f} | dt: {dt:.2f}ms | tok/sec: {524288 / dt * 1000:.2f}")
    return _write(path, "\n".join(out) + "\n")


def write_build_nanogpt_logtxt(path: Path, curve: Curve) -> Path:
    """karpathy/build-nanogpt log/log.txt: `{step} val {:.4f}`, `{step} hella {:.4f}`, `{step} train {:.6f}`."""
    evals = {_bn_eval_loop_step(curve, e): v for e, v in curve.eval_at().items()}
    train = {s: i for i, s in enumerate(curve.steps)}
    out = []
    for step in range(curve.total_steps):
        if step in evals:
            out.append(f"{step} val {evals[step]:.4f}")
            out.append(f"{step} hella {int(10042 * _hellaswag(evals[step])) / 10042:.4f}")
        i = train.get(step + 1)
        if i is not None:
            out.append(f"{step} train {curve.train_loss[i]:.6f}")
    return _write(path, "\n".join(out) + "\n")


# ---- modded-nanogpt / parameter-golf ----------------------------------------------------------------

def write_modded_nanogpt(path: Path, curve: Curve, *, variant: str = "2024", with_code: bool = True) -> Path:
    """KellerJordan/modded-nanogpt logs/{run_id}.txt (print0 writes the logfile; console lines are the same).
    variant '2024' (records of late 2024): `step:{step+1}/{N} train_loss:{:.4f} train_time:{:.0f}ms
    step_avg:{:.2f}ms` (step_avg is 'nan' for the first steps: timed_steps = nan until step 10) and
    `step:{step}/{N} val_loss:{:.4f} ...`; variant '2025' (current train_gpt.py): train lines carry no loss."""
    rng = np.random.default_rng(3)
    out: list[str] = []
    if with_code:
        out += [_SCRIPT_EXCERPT, "=" * 100, "Running Python 3.12.7 (main, Oct  1 2024, 08:52:12) [GCC 11.4.0]",
                "Running PyTorch 2.6.0.dev20241231+cu126 compiled for CUDA 12.6", _NVIDIA_SMI, "=" * 100]
    if variant == "2025":
        out += ["Compiling model and warming up kernels (~7 minutes on first execution)",
                "Sampling steps [0, 1, 510, 511, 512, 513, 1020, 1021] for warmup", "Resetting Model"]
    evals = curve.eval_at()
    train = {s: i for i, s in enumerate(curve.steps)}
    t = 0.0
    for step in range(curve.total_steps + 1):
        if step in evals:
            if variant == "2024":
                avg = t / (step - 10) if step > 11 else math.nan
            else:
                avg = t / max(step, 1)
            out.append(f"step:{step}/{curve.total_steps} val_loss:{evals[step]:.4f} train_time:{t:.0f}ms step_avg:{avg:.2f}ms")
        if step == curve.total_steps:
            break
        t = 0.0 if step < 10 else t + _dt_ms(rng, 220.0)
        i = train.get(step + 1)
        if i is None:
            continue
        if variant == "2024":
            timed = math.nan if step <= 11 else (step - 10) + 1
            out.append(f"step:{step + 1}/{curve.total_steps} train_loss:{curve.train_loss[i]:.4f} "
                       f"train_time:{t:.0f}ms step_avg:{t / timed:.2f}ms")
        else:
            out.append(f"step:{step + 1}/{curve.total_steps} train_time:{t:.0f}ms step_avg:{t / (step + 1):.2f}ms")
    out.append("peak memory allocated: 31452 MiB reserved: 33930 MiB" if variant == "2025"
               else "peak memory consumption: 31452 MiB")
    return _write(path, "\n".join(out) + "\n")


_TORCHRUN_NOISE = [
    "W0318 14:37:59.159000 871689 site-packages/torch/distributed/run.py:852] ",
    "W0318 14:37:59.159000 871689 site-packages/torch/distributed/run.py:852] *****************************************",
    "W0318 14:37:59.159000 871689 site-packages/torch/distributed/run.py:852] Setting OMP_NUM_THREADS environment "
    "variable for each process to be 1 in default, to avoid your system being overloaded, please further tune the "
    "variable for optimal performance in your application as needed. ",
    "[W318 14:38:11.514156940 Utils.hpp:137] Warning: Environment variable NCCL_ASYNC_ERROR_HANDLING is deprecated; "
    "use TORCH_NCCL_ASYNC_ERROR_HANDLING instead (function operator())",
    "NCCL version 2.27.5+cuda12.9",
    "",
    "[2026-03-18 14:38:12] pgut1-0:871784:871848 [5] ibvwrap.c:94 NCCL WARN Call to ibv_open_device failed",
]


def write_parameter_golf(path: Path, curve: Curve, *, logfile: bool = False, warmup_steps: int = 20) -> Path:
    """openai/parameter-golf train_gpt.py (log0): `step:{step}/{iterations} train_loss:{:.4f}
    train_time:{:.0f}ms step_avg:{:.2f}ms` and `step:{step}/{iterations} val_loss:{:.4f} val_bpb:{:.4f}
    train_time:... step_avg:...`. logfile=False: the torchrun stdout (launcher warnings first); True: the
    logs/{run_id}.txt copy, which starts with the script's source and nvidia-smi."""
    rng = np.random.default_rng(4)
    out: list[str] = []
    if logfile:
        out += [_SCRIPT_EXCERPT, "=" * 100, "Running Python 3.12.3", "Running PyTorch 2.9.1+cu128", _NVIDIA_SMI, "=" * 100]
    else:
        out += _TORCHRUN_NOISE + ["logs/hf_verify_sp1024_8gpu.txt"]
    out += ["val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path=./data/tokenizers/fineweb_1024_bpe.model",
            "train_loader:dataset:fineweb10B_sp1024 train_shards:25",
            "val_loader:shards pattern=./data/datasets/fineweb10B_sp1024/fineweb_val_*.bin tokens:62021632",
            "model_params:17059912", "world_size:8 grad_accum_steps:1",
            "sdp_backends:cudnn=False flash=True mem_efficient=False math=False",
            "attention_mode:gqa num_heads:8 num_kv_heads:4",
            "tie_embeddings:True embed_lr:0.05 head_lr:0.0 matrix_lr:0.04 scalar_lr:0.04",
            f"train_batch_tokens:524288 train_seq_len:1024 iterations:{curve.total_steps} warmup_steps:{warmup_steps} "
            "max_wallclock_seconds:600.000", "seed:1337"]
    out += [f"warmup_step:{k}/{warmup_steps}" for k in range(1, warmup_steps + 1)]
    evals = curve.eval_at()
    train = {s: i for i, s in enumerate(curve.steps)}
    t = 0.0
    for step in range(curve.total_steps + 1):
        if step in evals:
            v = evals[step]
            out.append(f"step:{step}/{curve.total_steps} val_loss:{v:.4f} val_bpb:{v * 0.5907:.4f} "
                       f"train_time:{t:.0f}ms step_avg:{t / max(step, 1):.2f}ms")
        if step == curve.total_steps:
            break
        t += _dt_ms(rng, 43.5)
        i = train.get(step + 1)
        if i is not None:
            out.append(f"step:{step + 1}/{curve.total_steps} train_loss:{curve.train_loss[i]:.4f} "
                       f"train_time:{t:.0f}ms step_avg:{t / (step + 1):.2f}ms")
    last = curve.eval_loss[-1] if curve.eval_loss else 2.07
    out += ["peak memory allocated: 10184 MiB reserved: 10200 MiB", "Serialized model: 67224983 bytes",
            "Code size: 47642 bytes", "Total submission size: 67272625 bytes",
            "Serialized model int8+zlib: 15815847 bytes (payload:17178912 raw_torch:17224025 payload_ratio:3.91x)",
            "Total submission size int8+zlib: 15863489 bytes",
            f"final_int8_zlib_roundtrip val_loss:{last + 0.01:.4f} val_bpb:{(last + 0.01) * 0.5907:.4f} eval_time:1401ms",
            f"final_int8_zlib_roundtrip_exact val_loss:{last + 0.01:.8f} val_bpb:{(last + 0.01) * 0.5907:.8f}"]
    return _write(path, "\n".join(out) + "\n")


# ---- nanoGPT ---------------------------------------------------------------------------------------

def write_nanogpt(path: Path, curve: Curve) -> Path:
    """karpathy/nanoGPT train.py: `step {iter_num}: train loss {:.4f}, val loss {:.4f}` (estimate_loss on
    both splits, at updates done = iter_num) and `iter {iter_num}: loss {:.4f}, time {:.2f}ms, mfu {:.2f}%`
    (the loss of update iter_num+1; mfu is -100.00% until 5 iterations have run)."""
    rng = np.random.default_rng(5)
    out = ["Overriding config with config/train_shakespeare_char.py:", "# train a miniature character-level shakespeare model",
           "out_dir = 'out-shakespeare-char'", "eval_interval = 250 # keep frequent because we'll overfit",
           "eval_iters = 200", "log_interval = 10 # don't print too too often", "learning_rate = 1e-3 # with baby networks can afford to go a bit higher",
           f"max_iters = {curve.total_steps}", "tokens per iteration will be: 16,384",
           "found vocab_size = 65 (inside data/shakespeare_char/meta.pkl)", "Initializing a new model from scratch",
           "number of parameters: 10.65M", "num decayed parameter tensors: 26, with 10,740,096 parameters",
           "num non-decayed parameter tensors: 13, with 4,992 parameters", "using fused AdamW: True",
           "compiling the model... (takes a ~minute)"]
    evals = curve.eval_at()
    train = {s: i for i, s in enumerate(curve.steps)}
    printed = 0
    for it in range(curve.total_steps + 1):
        if it in evals:
            v = evals[it]
            out.append(f"step {it}: train loss {v - 0.05:.4f}, val loss {v:.4f}")
            if it > 0:
                out.append("saving checkpoint to out-shakespeare-char")
        i = train.get(it + 1)
        if i is not None:
            mfu = -1.0 if printed < 5 else 0.0815 + 0.001 * rng.standard_normal()
            out.append(f"iter {it}: loss {curve.train_loss[i]:.4f}, time {_dt_ms(rng, 38.0):.2f}ms, mfu {mfu * 100:.2f}%")
            printed += 1
    return _write(path, "\n".join(out) + "\n")


# ---- Megatron-LM / GPT-NeoX ------------------------------------------------------------------------

_MEGATRON_ARGS = [("accumulate_allreduce_grads_in_fp32", "True"), ("adam_beta1", "0.9"), ("adam_beta2", "0.95"),
                  ("bf16", "True"), ("clip_grad", "1.0"), ("eval_interval", "100"), ("eval_iters", "10"),
                  ("global_batch_size", "512"), ("hidden_size", "768"), ("log_interval", "10"), ("lr", "0.0006"),
                  ("lr_decay_style", "cosine"), ("lr_warmup_iters", "60"), ("micro_batch_size", "8"),
                  ("min_lr", "6e-05"), ("num_attention_heads", "12"), ("num_layers", "12"), ("seq_length", "1024"),
                  ("weight_decay", "0.1")]


def _megatron_eval_block(label: str, key: str, v: float, ppl_key: str, value_word: str = "value") -> list[str]:
    if key == "lm loss":  # Megatron-LM: PPL = exp(min(20, loss)); min(20, nan) is 20 in Python
        s = f" validation loss at {label} | {key} {value_word}: {v:.6E} | {key} PPL: {math.exp(min(20, v)):.6E} | "
    else:  # GPT-NeoX: eval_results["lm_loss_ppl"] = math.exp(lm_loss)
        s = f" validation results at {label} | {key} value: {v:.6E} | {ppl_key} value: {math.exp(min(v, 700)):.6E} | "
    return ["-" * (len(s) + 1), s, "-" * (len(s) + 1)]


def write_megatron_lm(path: Path, curve: Curve) -> Path:
    """NVIDIA/Megatron-LM megatron/training/training.py training_log (print_rank_last) and
    evaluate_and_print_results. A NaN average fails training_log's `if avg >= 0.0` and the 'lm loss' item
    is left out of the line (bf16: nothing is counted as a nan iteration)."""
    rng = np.random.default_rng(6)
    n = curve.total_steps
    out = ["using world size: 8, data-parallel size: 8, context-parallel size: 1, tensor-model-parallel size: 1, "
           "pipeline-model-parallel size: 1 ", "------------------------ arguments ------------------------"]
    out += [f"  {k} {'.' * (48 - len(k))} {v}" for k, v in _MEGATRON_ARGS + [("train_iters", str(n))]]
    out += ["-------------------- end of arguments ---------------------", "> building GPT2BPETokenizer tokenizer ...",
            " > padded vocab (size: 50257) with 47 dummy tokens (new size: 50304)", "> initializing torch distributed ...",
            " > number of parameters on (tensor, pipeline) model parallel rank (0, 0): 124475904",
            "[after model, optimizer, and learning rate scheduler are built] datetime: 2024-05-01 12:00:05.123456 ",
            "> building train, validation, and test datasets ...", " > datasets target sizes (minimum size):",
            f"    train:      {n * 512}", "    validation: 56320", "    test:       5120",
            "[after dataloaders are built] datetime: 2024-05-01 12:00:07.654321 ", "done with setup ...",
            "(min, max) time across ranks (ms):", "    model-and-optimizer-setup ......................: (1234.56, 1250.12)",
            "    train/valid/test-data-iterators-setup ..........: (567.89, 600.01)", "training ...",
            "[before the start of training step] datetime: 2024-05-01 12:00:08.123456 "]
    evals = curve.eval_at()
    prev = 0
    for i, s in enumerate(curve.steps):
        ms = _dt_ms(rng)
        stamp = (T0 + timedelta(seconds=10 + s * ms / 1000)).strftime("%Y-%m-%d %H:%M:%S.%f")
        line = f" [{stamp}] iteration {s:8d}/{n:8d} | consumed samples: {s * 512:12d} |"
        line += f" elapsed time per iteration (ms): {ms:.1f} | throughput per GPU (TFLOP/s/GPU): {ms / 6.4:.1f} |"
        line += f" learning rate: {curve.lr_at(i):.6E} | global batch size: {512:5d} |"
        avg = curve.train_loss[i]
        if avg >= 0.0:
            line += " {}: {:.6E} |".format("lm loss", avg)
        line += f" loss scale: {1.0:.1f} | grad norm: {curve.gn(i):.3f} |"
        line += " number of skipped iterations: {:3d} | number of nan iterations: {:3d} |".format(0, 0)
        out.append(line)
        if i == 0:
            out += [f"[Rank 0] (after {s} iterations) memory (MB) | allocated: 2345.67 | max allocated: 8765.43 | "
                    "reserved: 9000.00 | max reserved: 9000.00",
                    "(min, max) time across ranks (ms):", "    forward-backward ...............................: (812.34, 812.56)"]
        for e in sorted(evals):
            if prev < e <= s:
                out += _megatron_eval_block(f"iteration {e}", "lm loss", evals[e], "")
        prev = s
    if n in evals:
        out += _megatron_eval_block(f"iteration {n} on validation set", "lm loss", evals[n], "")
        out += _megatron_eval_block(f"iteration {n} on test set", "lm loss", evals[n] + 0.01, "")
    out.append("[after training is done] datetime: 2024-05-01 14:00:00.000000 ")
    return _write(path, "\n".join(out) + "\n")


def _human_flops(num: float) -> str:
    """GPT-NeoX megatron/logging.py human_readable_flops."""
    for unit in ["", "KFLOPS", "MFLOPS", "GFLOPS", "TFLOPS", "PFLOPS", "EFLOPS", "ZFLOPS"]:
        if abs(num) < 1000.0:
            return "%3.1f%s" % (num, unit)
        num /= 1000.0
    return "%.1f%s" % (num, "Yi")


def write_gpt_neox(path: Path, curve: Curve, *, pipeline_lines: bool = True) -> Path:
    """EleutherAI/gpt-neox megatron/logging.py training_log (print_rank_0) and megatron/training.py
    evaluate_and_print_results, with DeepSpeed's own lines between them: log_dist `step=N, skipped=0, lr=[..]`
    and, with pipeline parallelism, the PipelineEngine's `steps: N loss: X iter time (s): ...` (a second,
    '.4f' copy of the train loss). '{:.6E}' prints NaN as 'NAN'."""
    rng = np.random.default_rng(7)
    n = curve.total_steps
    out = ["NeoXArgs.from_ymls() ['configs/125M.yml', 'configs/local_setup.yml']",
           "INFO:root:NeoXArgs.calculate_derived() Total number of GPUs determined to be: 8",
           "-------------------- arguments --------------------",
           "  attention_config ................ ['global', 'global', 'global', 'global', 'global', 'global', 'global', "
           "'global', 'global', 'global', 'global', 'global']updated",
           "  lr .............................. 0.0006......................updated",
           f"  train_iters ..................... {n}.........................updated",
           "---------------- end of arguments ----------------",
           "[2024-05-01 12:00:01,234] [INFO] [engine.py:1085:_configure_optimizer] Using DeepSpeed Optimizer param name adam as basic optimizer",
           "[2024-05-01 12:00:02,345] [INFO] [config.py:984:print_user_config]   json = {\"train_batch_size\": 256, "
           "\"train_micro_batch_size_per_gpu\": 32, \"optimizer\": {\"type\": \"Adam\", \"params\": {\"lr\": 0.0006}}, "
           "\"steps_per_print\": 10, \"gradient_clipping\": 1.0, \"bf16\": {\"enabled\": true}}",
           " > building train, validation, and test datasets ...", "training ..."]
    evals = curve.eval_at()
    prev = 0
    for i, s in enumerate(curve.steps):
        it_s = _dt_ms(rng) / 1000
        stamp = (T0 + timedelta(seconds=10 + s * it_s)).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        out.append(f"[{stamp}] [INFO] [logging.py:96:log_dist] [Rank 0] step={s}, skipped=0, "
                   f"lr=[{curve.lr_at(i)!r}, {curve.lr_at(i)!r}], mom=[[0.9, 0.95], [0.9, 0.95]]")
        if pipeline_lines:
            out.append(f"steps: {s} loss: {curve.train_loss[i]:0.4f} iter time (s): {it_s:0.3f} samples/sec: {256 / it_s:0.3f}")
        line = " samples/sec: {:.3f} |".format(256 / it_s)
        line += " iteration {:8d}/{:8d} |".format(s, n)
        line += " elapsed time per iteration (ms): {:.1f} |".format(it_s * 1000)
        line += " learning rate: {:.3E} |".format(curve.lr_at(i))
        line += f" approx flops per GPU: {_human_flops(1.234e14 * (1 + 0.01 * rng.standard_normal()))} |"
        line += " {}: {:.6E} |".format("lm_loss", curve.train_loss[i])
        line += " number of skipped iterations: {:3d} |".format(0)
        line += " number of nan iterations: {:3d} |".format(0)
        out.append(line)
        for e in sorted(evals):
            if prev < e <= s:
                out += _megatron_eval_block(f"iteration {e}", "lm_loss", evals[e], "lm_loss_ppl")
        prev = s
    return _write(path, "\n".join(out) + "\n")


# ---- NeMo ------------------------------------------------------------------------------------------

_LIGHTNING_BANNER = ["GPU available: True (cuda), used: True", "TPU available: False, using: 0 TPU cores",
                     "HPU available: False, using: 0 HPUs"]

_NEMO_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def _epoch_pos(s: int, per_epoch: int) -> tuple[int, int]:
    return (s - 1) // per_epoch, s - ((s - 1) // per_epoch) * per_epoch


def write_nemo1(path: Path, curve: Curve, *, steps_per_epoch: int | None = None, gbs: int = 128) -> Path:
    """NeMo 1.x (MegatronGPTModel under Lightning) stderr: MegatronProgressBar (nemo/lightning/pytorch/callbacks/
    progress_bar.py, bar_format without 's/it') redrawn with '\\r'; its postfix is Lightning's progress-bar
    metrics: reduced_train_loss, global_step (logged before the update: updates done - 1), consumed_samples,
    'train_step_timing in s' and, after validation, val_loss; numbers pass through Lightning's Tqdm.format_num."""
    rng = np.random.default_rng(8)
    per = steps_per_epoch or curve.total_steps
    scr = Screen()
    for line in ["[NeMo I 2024-05-01 12:00:00 exp_manager:396] Experiments will be logged at /results/megatron_gpt/2024-05-01_12-00-00",
                 "[NeMo W 2024-05-01 12:00:00 nemo_logging:349] /usr/local/lib/python3.10/dist-packages/pytorch_lightning/"
                 "trainer/connectors/data_connector.py:441: The 'train_dataloader' does not have many workers."] + _LIGHTNING_BANNER + [
                 "", "  | Name  | Type     | Params", "-----------------------------------", "0 | model | GPTModel | 124 M ",
                 "-----------------------------------", "124 M     Trainable params", "0         Non-trainable params",
                 "124 M     Total params", "497.799   Total estimated model params size (MB)"]:
        scr.print(line)
    scr.status("Sanity Checking: 0it [00:00, ?it/s]")
    scr.status(bar(2, 2, 0.4, prefix="Sanity Checking DataLoader 0"))
    scr.close(leave=False)
    evals = curve.eval_at()
    metrics: dict[str, float] = {}
    epoch = -1
    t = 0.0
    prev = 0
    for i, s in enumerate(curve.steps):
        ep, k = _epoch_pos(s, per)
        if ep != epoch:
            epoch = ep
            scr.status(bar(0, per, 0.0, prefix=f"Epoch {ep}", bar_format=_NEMO_BAR, rate=None))
        t += (s - prev) * _dt_ms(rng, 690.0) / 1000
        metrics.update({"reduced_train_loss": curve.train_loss[i], "global_step": float(s - 1),
                        "consumed_samples": float(s * gbs), "train_step_timing in s": round(_dt_ms(rng, 690.0) / 1000, 4)})
        post = ", ".join(f"{key}={lightning_num(v)}" for key, v in metrics.items())
        scr.status(bar(k, per, t, prefix=f"Epoch {ep}", bar_format=_NEMO_BAR, postfix=post))
        for e in sorted(evals):
            if prev < e <= s:
                for j in (0, 4, 8):
                    scr.status(bar(j, 8, j * 0.05, prefix="Validation DataLoader 0"), pos=1)
                scr.close(pos=1, leave=False)
                metrics["val_loss"] = evals[e]
                post = ", ".join(f"{key}={lightning_num(v)}" for key, v in metrics.items())
                scr.status(bar(k, per, t, prefix=f"Epoch {ep}", bar_format=_NEMO_BAR, postfix=post))
        prev = s
    scr.close()
    scr.print(f"`Trainer.fit` stopped: `max_steps={curve.total_steps}` reached.")
    return _write(path, scr.text())


def _nemo2_num(val: float) -> str:
    """nemo/lightning/pytorch/callbacks/progress_printer.py format_string: an integral float prints as int,
    any other float as f'{val:.4}'."""
    return str(int(val)) if isinstance(val, float) and val.is_integer() else f"{val:.4}"


def write_nemo2(path: Path, curve: Curve, *, steps_per_epoch: int | None = None, gbs: int = 512) -> Path:
    """NeMo 2.x ProgressPrinter (nemo/lightning/pytorch/callbacks/progress_printer.py): every log_interval
    `Training epoch {e}, iteration {n}/{total} | lr: .. | global_batch_size: .. | global_step: .. |
    reduced_train_loss: .. | train_step_timing in s: .. | consumed_samples: ..` (metrics averaged over the
    interval, '{:.4}'), and `Validation: iteration {i}/{m}` lines, which carry no loss."""
    rng = np.random.default_rng(9)
    per = steps_per_epoch or curve.total_steps
    out = ["[NeMo I 2024-05-01 12:00:00 nemo_logging:393] Experiments will be logged at /results/nemo2_gpt/default/2024-05-01_12-00-00",
           "[NeMo W 2024-05-01 12:00:00 nemo_logging:405] \"update_logger_directory\" is True. Overwriting tensorboard logger \"save_dir\" to /results/tb_logs"]
    out += _LIGHTNING_BANNER + ["LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0,1,2,3,4,5,6,7]",
                                "[NeMo I 2024-05-01 12:00:05 megatron_strategy:315] Fixing mis-match between ddp-config & mcore-optimizer config",
                                "  | Name   | Type     | Params | Mode ", "--------------------------------------------",
                                "0 | module | GPTModel | 124 M  | train", "--------------------------------------------",
                                "124 M     Trainable params", "0         Non-trainable params", "124 M     Total params",
                                "497.799   Total estimated model params size (MB)"]
    evals = curve.eval_at()
    prev = 0
    for i, s in enumerate(curve.steps):
        ep, k = _epoch_pos(s, per)
        m = {"lr": curve.lr_at(i), "global_batch_size": float(gbs), "global_step": float(s - 1),
             "reduced_train_loss": curve.train_loss[i], "train_step_timing in s": round(_dt_ms(rng, 190.0) / 1000, 5),
             "consumed_samples": float(s * gbs)}
        out.append(f"Training epoch {ep}, iteration {k}/{per}" + "".join(f" | {key}: {_nemo2_num(v)}" for key, v in m.items()))
        for e in sorted(evals):
            if prev < e <= s:
                out += [f"Validation: iteration {j}/8" for j in range(1, 9)]
        prev = s
    return _write(path, "\n".join(out) + "\n")


# ---- torchtitan ------------------------------------------------------------------------------------

_TT_COLORS = {"red": "\033[31m", "green": "\033[32m", "yellow": "\033[33m", "blue": "\033[34m", "magenta": "\033[35m",
              "cyan": "\033[36m", "reset": "\033[39m", "orange": "\033[38;2;180;60;0m", "turquoise": "\033[38;2;54;234;195m"}


def write_torchtitan(path: Path, curve: Curve, *, color: bool = True) -> Path:
    """pytorch/torchtitan torchtitan/components/metrics.py MetricsProcessor.log / log_validation through the
    logger of torchtitan/tools/logging.py ('[titan] %(asctime)s - %(name)s - %(levelname)s - %(message)s'),
    with torchtitan.tools.utils.Color's ANSI codes; tps and tflops are printed with thousands separators."""
    rng = np.random.default_rng(10)
    c = _TT_COLORS if color else {k: "" for k in _TT_COLORS}

    def log(sec: float, msg: str, level: str = "INFO") -> str:
        stamp = (T0 + timedelta(seconds=sec)).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        return f"[titan] {stamp} - root - {level} - {msg}"

    out = [log(0, "Starting job: Llama 3 8B training"), log(1, "Building 1-D device mesh with ['dp_shard'], [8]"),
           log(2, "[GC] Initial GC collection. 0.00 seconds."),
           log(3, "Building llama3 8B with TransformerModelArgs(_enforced='This field is used to enforce all fields have defaults.', dim=4096, n_layers=32, n_heads=32, vocab_size=128256, norm_eps=1e-05, rope_theta=500000)"),
           log(4, f"{c['blue']}Model llama3 8B {c['red']}size: 8,030,261,248 total parameters{c['reset']}"),
           log(5, "CUDA capacity: NVIDIA H100 80GB HBM3 with 79.11GiB memory"),
           log(6, "Mixed precision training is handled by fully_shard"),
           log(7, f"Training starts at step 1, with local batch size 1, global batch size 8, sequence length 8192, total steps {curve.total_steps} (warmup 200)"),
           log(8, "Profiling active. Traces will be saved at ./outputs/profile_trace", "WARNING")]
    evals = curve.eval_at()
    prev = 0
    for i, s in enumerate(curve.steps):
        mem = 61.2 + 0.3 * rng.standard_normal()
        tps = 6500 + 100 * rng.standard_normal()
        out.append(log(10 + s * 1.3, f"{c['red']}step: {s:2}  {c['green']}loss: {curve.train_loss[i]:7.4f}  "
                                     f"{c['orange']}grad_norm: {curve.gn(i):7.4f}  "
                                     f"{c['turquoise']}memory: {mem:5.2f}GiB({mem / 79.11 * 100:.2f}%)  "
                                     f"{c['blue']}tps: {round(tps):,}  {c['cyan']}tflops: {tps * 0.0482:,.2f}  "
                                     f"{c['magenta']}mfu: {tps * 0.0482 / 9.89:.2f}%{c['reset']}"))
        for e in sorted(evals):
            if prev < e <= s:
                out.append(log(11 + s * 1.3, f"{c['yellow']}validate step: {e:2}  {c['green']}loss: {evals[e]:7.4f}  "
                                             f"{c['turquoise']}memory: {mem:5.2f}GiB({mem / 79.11 * 100:.2f}%)  "
                                             f"{c['blue']}tps: {round(tps * 3):,}{c['reset']}"))
        prev = s
    out.append(log(20 + curve.total_steps * 1.3, "Sleeping 2 seconds for other ranks to complete"))
    out.append(log(22 + curve.total_steps * 1.3, "Training completed"))
    return _write(path, "\n".join(out) + "\n")


# ---- litgpt ----------------------------------------------------------------------------------------

def write_litgpt(path: Path, curve: Curve, *, variant: str = "pretrain", accum: int = 4) -> Path:
    """Lightning-AI/litgpt litgpt/pretrain.py and litgpt/finetune/lora.py fabric.print lines: `Epoch {e} |
    iter {iter} step {step} | loss train: {:.3f}, val: {val} | iter time: {:.2f} ms (step)[ remaining time:
    {timedelta}]` where val is the last validation ('{:.3f}', or 'n/a' before the first), and after each
    validation `iter {iter}: val loss {:.4f}, val time: {:.2f} ms`. iter counts micro-batches, step updates."""
    rng = np.random.default_rng(11)
    if variant == "pretrain":
        out = ["{'data': {'class_path': 'litgpt.data.TinyLlama', 'init_args': {'data_path': 's3://tinyllama-template', 'seed': 42, "
               "'num_workers': 8}}, 'devices': 'auto', 'eval': {'interval': 1000, 'max_iters': 100, 'initial_validation': False}, "
               "'model_name': 'tiny-llama-1.1b', 'train': {'global_batch_size': 512, 'log_interval': 1, 'lr_warmup_steps': 2000, "
               "'max_norm': 1.0, 'max_tokens': 3000000000000, 'micro_batch_size': 4, 'min_lr': 4e-05}}",
               "Seed set to 42", "Time to instantiate model: 0.12 seconds.", "Total parameters: 1,100,048,384", "Validating ..."]
    else:
        out = ["{'checkpoint_dir': PosixPath('checkpoints/microsoft/phi-2'), 'data': Alpaca(mask_prompt=False, val_split_fraction=0.03865), "
               "'lora_r': 8, 'lora_alpha': 16, 'train': TrainArgs(save_interval=1000, log_interval=1, global_batch_size=16, "
               "micro_batch_size=4, lr_warmup_steps=100, epochs=5, max_steps=None)}",
               "Seed set to 1337", "Number of trainable parameters: 2,621,440", "Number of non-trainable parameters: 2,779,683,840",
               "The longest sequence length in the train data is 1079, the model's maximum sequence length is 1079 and context length is 2048",
               "Validating ..."]
    evals = curve.eval_at()
    val = "n/a"
    prev = 0
    for i, s in enumerate(curve.steps):
        it = s * accum
        ms = _dt_ms(rng, 410.0)
        line = (f"Epoch 1 | iter {it} step {s} | loss train: {curve.train_loss[i]:.3f}, val: {val} | "
                f"iter time: {ms:.2f} ms (step)")
        if variant == "pretrain":
            line += f" remaining time: {timedelta(seconds=int((curve.total_steps - s) * accum * ms / 1000 * 60))!s}"
        out.append(line)
        for e in sorted(evals):
            if prev < e <= s:
                out.append("Validating ...")
                if variant != "pretrain":
                    out += ["Recommend a movie for me to watch during the weekend and explain the reason.",
                            "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
                            "### Response:", "I would recommend 'The Shawshank Redemption' (1994), rated 9.3/10."]
                out.append(f"iter {e * accum}: val loss {evals[e]:.4f}, val time: {_dt_ms(rng, 5400.0):.2f} ms")
                val = f"{evals[e]:.3f}"
        prev = s
    out += ["Training time: 1234.56s", "Memory used: 21.57 GB"]
    return _write(path, "\n".join(out) + "\n")


# ---- HF Trainer, TRL, axolotl ----------------------------------------------------------------------

def _hf_value(v: float, variant: str, key: str) -> object:
    """A logged float as the callback hands it to str(dict): transformers 4.x (variant 'float') rounds the
    train loss to 4 decimals in Trainer._maybe_log_save_evaluate and the epoch to 2 in ProgressCallback;
    transformers >= 4.47 / 5.x ('str') turns every float into f'{v:.4g}' text."""
    if variant == "str":
        return f"{v:.4g}"
    if key == "loss":
        return round(v, 4)
    if key == "epoch":
        return round(v, 2)
    return v


def _hf_banner(n_train: int, total: int, bs: int) -> list[str]:
    return ["***** Running training *****", f"  Num examples = {n_train:,}", "  Num Epochs = 3",
            f"  Instantaneous batch size per device = {bs}",
            f"  Total train batch size (w. parallel, distributed & accumulation) = {bs}",
            "  Gradient Accumulation steps = 1", f"  Total optimization steps = {total:,}",
            "  Number of trainable parameters = 124,439,808"]


def _hf_like(curve: Curve, *, variant: str, train_extra: Callable[[int], dict[str, float]],
             eval_extra: Callable[[float], dict[str, float]], preamble: list[str], bar_on: bool = True) -> str:
    rng = np.random.default_rng(12)
    total = curve.total_steps
    per_epoch = max(total // 3, 1)
    scr = Screen()
    for line in preamble + _hf_banner(per_epoch * 8, total, 8):
        scr.print(line)
    if bar_on:
        scr.status(bar(0, total, 0.0))
    evals = curve.eval_at()
    prev = 0

    def emit(d: dict[str, object]) -> None:
        if variant == "str":
            d = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in d.items()}
        if bar_on:
            scr.write(str(d))
        else:
            scr.print(str(d))

    for i, s in enumerate(curve.steps):
        t = s * 0.31
        if bar_on:
            scr.status(bar(s, total, t, rate=3.2 + 0.01 * rng.standard_normal()))
        d: dict[str, object] = {"loss": _hf_value(curve.train_loss[i], variant, "loss"),
                                "grad_norm": curve.gn(i), "learning_rate": curve.lr_at(i)}
        d.update(train_extra(i))
        d["epoch"] = _hf_value(s / per_epoch, variant, "epoch")
        emit(d)
        for e in sorted(evals):
            if prev < e <= s:
                if bar_on:
                    for j in (0, 5, 10):
                        scr.status(bar(j, 13, j * 0.1), pos=1)
                    scr.close(pos=1, leave=False)
                else:
                    scr.print("***** Running Evaluation *****")
                ev: dict[str, object] = {"eval_loss": evals[e]}
                ev.update(eval_extra(evals[e]))
                ev.update({"eval_runtime": 4.1234, "eval_samples_per_second": 24.252, "eval_steps_per_second": 3.153,
                           "epoch": _hf_value(e / per_epoch, variant, "epoch")})
                emit(ev)
        prev = s
    finite = [v for v in curve.train_loss if math.isfinite(v)]
    emit({"train_runtime": 1234.5678, "train_samples_per_second": 19.441, "train_steps_per_second": 2.43,
          "train_loss": float(np.mean(finite)) if finite else math.nan, "epoch": _hf_value(total / per_epoch, variant, "epoch")})
    if bar_on:
        scr.status(bar(total, total, total * 0.31))
        scr.close()
    scr.print("Training completed. Do not forget to share your model on huggingface.co/models =)")
    return scr.text()


def write_hf_trainer(path: Path, curve: Curve, *, variant: str = "float") -> Path:
    """huggingface/transformers trainer_callback.py: ProgressCallback.on_log writes str(logs) through
    tqdm.write between redraws of the step bar (variant 'float': transformers 4.x, raw floats with the
    loss rounded to 4 decimals; 'str': newer releases, every float as f'{v:.4g}' text); variant 'printer':
    PrinterCallback (disable_tqdm=True), print(logs) with the '.4g' strings and no bar, so no step at all."""
    pre = ["[INFO|trainer.py:2128] 2024-05-01 12:00:00,000 >> Using auto half precision backend"]
    text = _hf_like(curve, variant="str" if variant == "printer" else variant, train_extra=lambda i: {},
                    eval_extra=lambda v: {}, preamble=pre, bar_on=variant != "printer")
    return _write(path, text)


def write_trl(path: Path, curve: Curve, *, trainer: str = "sft", variant: str = "str") -> Path:
    """huggingface/trl SFTTrainer / DPOTrainer: the HF ProgressCallback dicts with TRL's extra keys
    (SFT: num_tokens, mean_token_accuracy; DPO: rewards/chosen, rewards/rejected, rewards/accuracies,
    rewards/margins, logps/..., logits/...; eval keys prefixed 'eval_'). A DPO loss starts at ln 2."""
    def margin(v: float) -> float:
        return -math.log(math.expm1(v)) if math.isfinite(v) and v > 0 else math.nan

    if trainer == "dpo":
        def extra(i: int) -> dict[str, float]:
            m = margin(curve.train_loss[i])
            return {"rewards/chosen": 0.5 * m, "rewards/rejected": -0.5 * m,
                    "rewards/accuracies": 0.5 if not math.isfinite(m) else min(1.0, 0.5 + 0.2 * m),
                    "rewards/margins": m, "logps/chosen": -312.25 + m, "logps/rejected": -340.5 - m,
                    "logits/chosen": -2.7012, "logits/rejected": -2.6875}

        def eextra(v: float) -> dict[str, float]:
            m = margin(v)
            return {"eval_rewards/chosen": 0.5 * m, "eval_rewards/rejected": -0.5 * m, "eval_rewards/margins": m}
    else:
        def extra(i: int) -> dict[str, float]:
            return {"num_tokens": float(curve.steps[i] * 16384), "mean_token_accuracy": 0.31 + 0.5 * math.exp(-curve.train_loss[i] / 3)
                    if math.isfinite(curve.train_loss[i]) else 0.0}

        def eextra(v: float) -> dict[str, float]:
            return {"eval_num_tokens": 123456.0, "eval_mean_token_accuracy": 0.55}
    pre = [f"[INFO] Loading {'DPO' if trainer == 'dpo' else 'SFT'} dataset trl-lib/Capybara", "Tokenizing train dataset: 100%|██████████| 15806/15806 [00:08<00:00, 1843.95 examples/s]"]
    return _write(path, _hf_like(curve, variant=variant, train_extra=extra, eval_extra=eextra, preamble=pre))


def write_axolotl(path: Path, curve: Curve) -> Path:
    """axolotl-ai-cloud/axolotl: its logger ('[%(asctime)s] [%(levelname)s] [%(name)s.%(funcName)s:%(lineno)d]
    [PID:%(process)d] [RANK:%(rank)d] %(message)s') around the HF ProgressCallback dicts (transformers 4.x
    floats) with axolotl's memory keys."""
    def extra(i: int) -> dict[str, float]:
        return {"memory/max_mem_active(gib)": 14.56, "memory/max_mem_allocated(gib)": 14.56, "memory/device_mem_reserved(gib)": 14.6}

    pre = ["[2024-05-01 12:00:00,123] [INFO] [axolotl.utils.config.models.input.check_sample_packing_wo_flash:1002] "
           "[PID:1234] [RANK:0] loading config: examples/mistral/lora.yml",
           "[2024-05-01 12:00:01,234] [DEBUG] [axolotl.load_tokenizer:281] [PID:1234] [RANK:0] EOS: 2 / </s>",
           "[2024-05-01 12:00:02,345] [INFO] [axolotl.load_model:715] [PID:1234] [RANK:0] GPU memory usage after model load: 3.998GB (+0.019GB cache, +0.358GB misc)",
           "[2024-05-01 12:00:03,456] [INFO] [axolotl.train.train:173] [PID:1234] [RANK:0] Starting trainer..."]
    return _write(path, _hf_like(curve, variant="float", train_extra=extra, eval_extra=lambda v: extra(0), preamble=pre))


# ---- fairseq ---------------------------------------------------------------------------------------

def _fq(v: float, nd: int | None = 3) -> str:
    """fairseq format_stat: '{:g}' of the meter's value, which metrics.log_scalar(..., round=nd) rounded."""
    return "{:g}".format(round(v, nd) if nd is not None else v)


def write_fairseq(path: Path, curve: Curve, *, log_format: str = "simple", updates_per_epoch: int | None = None) -> Path:
    """facebookresearch/fairseq fairseq/logging/progress_bar.py through fairseq_cli/train.py's logging
    ('%(asctime)s | %(levelname)s | %(name)s | %(message)s', the logger renamed to the tag):
    simple: `epoch 001:    100 / 1234 loss=9.872, ppl=936.87, ..., num_updates=100, lr=0.0005, gnorm=1.234, ...`
    (train_inner), `epoch 001 | valid on 'valid' subset | loss 8.9 | ... | num_updates 1000` (valid) and the
    end-of-epoch `epoch 001 | loss ... ` (train); json: the same stats as JSON objects of strings, the epoch
    summaries' keys prefixed with the tag ('valid_loss', 'train_loss'). Losses are in base 2 (bits)."""
    rng = np.random.default_rng(13)
    upe = updates_per_epoch or curve.total_steps
    out = [f"{_stamp(0)} | INFO | fairseq_cli.train | {{'_name': None, 'common': {{'_name': None, 'no_progress_bar': False, "
           "'log_interval': 100, 'log_format': None, 'seed': 1, 'fp16': True}, 'optimization': {'_name': None, "
           f"'max_epoch': 0, 'max_update': {curve.total_steps}, 'clip_norm': 0.0, 'update_freq': [1], 'lr': [0.0005]}}}}",
           f"{_stamp(1)} | INFO | fairseq_cli.train | TransformerLanguageModel(",
           "  (decoder): TransformerDecoder(", "    (dropout_module): FairseqDropout()", "  )", ")",
           f"{_stamp(2)} | INFO | fairseq_cli.train | num. shared model params: 19,000,000 (num. trained: 19,000,000)",
           f"{_stamp(3)} | INFO | fairseq.trainer | begin training epoch 1", f"{_stamp(3)} | INFO | fairseq_cli.train | Start iterating over samples"]

    def emit(tag: str, text: str, sec: float) -> None:
        out.append(f"{_stamp(sec)} | INFO | {tag} | {text}")

    evals = curve.eval_at()
    prev = 0
    epoch = 1
    for i, s in enumerate(curve.steps):
        ep = (s - 1) // upe + 1
        if ep != epoch:
            losses = [v for v, st in zip(curve.train_loss, curve.steps) if (st - 1) // upe + 1 == epoch]
            _fairseq_epoch_end(emit, log_format, epoch, float(np.mean(losses)) if losses else math.nan, (epoch) * upe, s * 0.3)
            epoch = ep
            emit("fairseq.trainer", f"begin training epoch {ep}", s * 0.3)
        v = curve.train_loss[i]
        stats = {"loss": _fq(v), "ppl": _fq(2 ** v if math.isfinite(v) else v, 2), "wps": _fq(12345.6 + 50 * rng.standard_normal(), 1),
                 "ups": _fq(3.01, 2), "wpb": _fq(4096.0, 1), "bsz": _fq(8.0, 1), "num_updates": _fq(float(s), None),
                 "lr": _fq(curve.lr_at(i), None), "gnorm": _fq(curve.gn(i)), "loss_scale": _fq(128.0, 4),
                 "train_wall": _fq(s * 0.3, 0), "gb_free": _fq(10.5, 1), "wall": _fq(s * 0.31, 0)}
        k = s - (ep - 1) * upe  # the progress bar's i + 1
        if log_format == "json":
            js = {"epoch": ep, "update": round(ep - 1 + k / upe, 3), **stats}
            emit("train_inner", json.dumps(js), s * 0.31)
        else:
            emit("train_inner", "epoch {:03d}:  {:5d} / {:d} {}".format(ep, k, upe, ", ".join(f"{a}={b}" for a, b in stats.items())), s * 0.31)
        for e in sorted(evals):
            if prev < e <= s:
                ve = evals[e]
                vs = {"loss": _fq(ve), "ppl": _fq(2 ** ve if math.isfinite(ve) else ve, 2), "wps": _fq(38000.4, 1),
                      "wpb": _fq(4096.0, 1), "bsz": _fq(8.0, 1), "num_updates": _fq(float(e), None),
                      "best_loss": _fq(min(x for x in [ve] + [evals[x] for x in evals if x < e]) if math.isfinite(ve) else ve)}
                if log_format == "json":
                    emit("valid", json.dumps({"epoch": ep, **{"valid_" + a: b for a, b in vs.items()}}), s * 0.31 + 1)
                else:
                    emit("valid", f"epoch {ep:03d} | valid on 'valid' subset | " + " | ".join(f"{a} {b}" for a, b in vs.items()), s * 0.31 + 1)
                emit("fairseq.checkpoint_utils", f"Saved checkpoint checkpoints/checkpoint_{ep}_{e}.pt (epoch {ep} @ {e} updates, "
                                                 f"score {vs['loss']}) (writing took 1.23 seconds)", s * 0.31 + 2)
        prev = s
    emit("fairseq_cli.train", "end of epoch {} (average epoch stats below)".format(epoch), curve.total_steps * 0.31)
    losses = [v for v, st in zip(curve.train_loss, curve.steps) if (st - 1) // upe + 1 == epoch]
    _fairseq_epoch_end(emit, log_format, epoch, float(np.mean(losses)) if losses else math.nan, curve.total_steps,
                       curve.total_steps * 0.31, announce=False)
    emit("fairseq_cli.train", f"done training in {curve.total_steps * 0.31:.1f} seconds", curve.total_steps * 0.31 + 3)
    return _write(path, "\n".join(out) + "\n")


def _fairseq_epoch_end(emit: Callable[[str, str, float], None], log_format: str, epoch: int, mean: float,
                       updates: int, sec: float, announce: bool = True) -> None:
    if announce:
        emit("fairseq_cli.train", f"end of epoch {epoch} (average epoch stats below)", sec)
    st = {"loss": _fq(mean), "ppl": _fq(2 ** mean if math.isfinite(mean) else mean, 2), "wps": _fq(12301.2, 1),
          "ups": _fq(3.0, 2), "num_updates": _fq(float(updates), None), "train_wall": _fq(sec, 0)}
    if log_format == "json":
        emit("train", json.dumps({"epoch": epoch, **{"train_" + a: b for a, b in st.items()}}), sec)
    else:
        emit("train", f"epoch {epoch:03d} | " + " | ".join(f"{a} {b}" for a, b in st.items()), sec)


# ---- PyTorch Lightning TQDMProgressBar -------------------------------------------------------------

_PL_BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"


def write_lightning(path: Path, curve: Curve, *, steps_per_epoch: int | None = None, v_num: int = 0) -> Path:
    """Lightning-AI/pytorch-lightning TQDMProgressBar (lightning/pytorch/callbacks/progress/tqdm_progress.py):
    the main bar `Epoch {e}: ..| n/N [..<.., rate, v_num=0, train_loss=..., val_loss=...]` redrawn with
    '\\r' (refresh_rate = the curve's spacing), reset each epoch without a newline, the validation bar
    nested at position 1 ('\\n' ... '\\x1b[A'), numbers through Lightning's Tqdm.format_num ('nan.0')."""
    per = steps_per_epoch or curve.total_steps
    scr = Screen()
    for line in ["Using 16bit Automatic Mixed Precision (AMP)"] + _LIGHTNING_BANNER + [
            "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]", "", "  | Name  | Type       | Params | Mode ",
            "---------------------------------------------", "0 | model | Sequential | 1.2 M  | train",
            "1 | loss  | CrossEntropyLoss | 0 | train", "---------------------------------------------",
            "1.2 M     Trainable params", "0         Non-trainable params", "1.2 M     Total params",
            "4.800     Total estimated model params size (MB)", "5         Modules in train mode", "0         Modules in eval mode"]:
        scr.print(line)
    scr.status("Sanity Checking: |          | 0/? [00:00<?, ?it/s]")
    scr.status(bar(2, 2, 0.05, prefix="Sanity Checking DataLoader 0", bar_format=_PL_BAR, postfix=""))
    scr.close(leave=False)
    evals = curve.eval_at()
    post: dict[str, float | int] = {"v_num": v_num}
    epoch = -1
    prev = 0
    for i, s in enumerate(curve.steps):
        ep, k = _epoch_pos(s, per)
        if ep != epoch:
            epoch = ep
            scr.status(bar(0, per, 0.0, prefix=f"Epoch {ep}", bar_format=_PL_BAR, rate=None,
                           postfix=", ".join(f"{a}={lightning_num(b)}" for a, b in post.items())))
        post["train_loss"] = curve.train_loss[i]
        text = ", ".join(f"{a}={lightning_num(b)}" for a, b in post.items())
        scr.status(bar(k, per, k * 0.06, prefix=f"Epoch {ep}", bar_format=_PL_BAR, postfix=text))
        for e in sorted(evals):
            if prev < e <= s:
                scr.status("Validation: |          | 0/? [00:00<?, ?it/s]", pos=1)
                for j in (5, 10):
                    scr.status(bar(j, 10, j * 0.02, prefix="Validation DataLoader 0", bar_format=_PL_BAR, postfix=""), pos=1)
                scr.close(pos=1, leave=False)
                post["val_loss"] = evals[e]
                text = ", ".join(f"{a}={lightning_num(b)}" for a, b in post.items())
                scr.status(bar(k, per, k * 0.06, prefix=f"Epoch {ep}", bar_format=_PL_BAR, postfix=text))
        prev = s
    scr.close()
    scr.print(f"`Trainer.fit` stopped: `max_epochs={epoch + 1}` reached.")
    return _write(path, scr.text())


# ---- Keras -----------------------------------------------------------------------------------------

def keras_num(v: float) -> str:
    """Keras Progbar: f' {avg:.4f}' when abs(avg) > 1e-3, else '.4e' (so NaN, which fails the test, is 'nan')."""
    return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"


def _keras_running(final: float, frac: float) -> float:
    # the running mean the bar shows mid-epoch: a little above the epoch's mean early in the epoch
    return final * (1 + 0.15 * (1 - frac)) if math.isfinite(final) else final


def write_keras(path: Path, curve: Curve, *, variant: str = "tf2", batches: int = 1875, tty: bool = True) -> Path:
    """model.fit(verbose=1): `Epoch {e}/{E}` then the Progbar redrawn per update. variant 'tf2'
    (tf.keras 2.x, tensorflow/python/keras/utils/generic_utils.py Progbar.update): `  N/N [====>....] - ETA: 3s
    - loss: .. ` redraws and `N/N [==============================] - 5s 2ms/step - loss: .. - accuracy: ..
    - val_loss: .. - val_accuracy: ..`; tty=True redraws with '\\b'*width + '\\r', tty=False starts each update
    on a new line. variant 'keras3' (keras/src/utils/progbar.py): bold/green/white ANSI codes around
    `N/N ━━━━━━━━━━━━━━━━━━━━ 2s 18ms/step - accuracy: .. - loss: .. - val_accuracy: .. - val_loss: ..`,
    always redrawn with '\\b' and '\\r' on posix. One curve point per epoch."""
    rng = np.random.default_rng(14)
    evals = curve.eval_at()
    epochs = len(curve.steps)
    digits = int(math.log10(batches)) + 1
    parts: list[str] = []
    if variant == "tf2":
        parts.append("2024-05-01 12:00:00.123456: I tensorflow/core/platform/cpu_feature_guard.cc:193] This TensorFlow binary is "
                     "optimized with oneAPI Deep Neural Network Library (oneDNN) to use the following CPU instructions in "
                     "performance-critical operations:  AVX2 FMA\n")
    for i, s in enumerate(curve.steps):
        parts.append(f"Epoch {i + 1}/{epochs}\n")
        prev_width = 0
        loss = curve.train_loss[i]
        acc = 0.1 + 0.85 * math.exp(-loss) if math.isfinite(loss) else 0.0987
        for cur in (1, batches // 4, batches // 2, 3 * batches // 4, batches):
            final = cur == batches
            frac = cur / batches
            vals = [("loss", loss if final else _keras_running(loss, frac)), ("accuracy", acc if final else acc * (0.9 + 0.1 * frac))]
            if variant == "keras3":
                vals = vals[::-1]
            if final and s in evals:
                ve = evals[s]
                vacc = 0.1 + 0.85 * math.exp(-ve) if math.isfinite(ve) else 0.0980
                vv = [("val_loss", ve), ("val_accuracy", vacc)]
                vals += vv[::-1] if variant == "keras3" else vv
            tpu = 0.0024 + 0.0001 * rng.standard_normal()
            if variant == "tf2":
                barstr = ("%" + str(digits) + "d/%d [") % (cur, batches)
                w = int(30 * frac)
                barstr += ("=" * (w - 1) + ("=" if final else ">") if w > 0 else "") + "." * (30 - w) + "]"
                info = f" - {tpu * batches:.0f}s" if final else ""
                info = info + f" {tpu * 1000:.0f}ms/step" if final else f" - ETA: {tpu * (batches - cur):.0f}s"
                special = 0
            else:
                barstr = f"\x1b[1m{('%' + str(digits) + 'd/%d') % (cur, batches)}\x1b[0m "
                w = int(20 * frac)
                if w > 0:
                    barstr += f"\x1b[32m{'━' * w}\x1b[0m"
                barstr += f"\x1b[37m{'━' * (20 - w)}\x1b[0m"
                special = 8 + (9 if w > 0 else 0) + 9
                info = f" \x1b[1m{tpu * batches:.0f}s\x1b[0m" if final else f" \x1b[1m{tpu * (batches - cur):.0f}s\x1b[0m"
                special += 8
                info += f" {tpu * 1000:.0f}ms/step"
            for k, v in vals:
                info += f" - {k}: {keras_num(v)}"
            width = len(barstr) + len(info) - special
            lead = ("\b" * prev_width + "\r") if (tty or variant == "keras3") else "\n"
            pad = " " * max(prev_width - width, 0)
            parts.append(lead + barstr + info + pad + ("\n" if final else ""))
            prev_width = width
    return _write(path, "".join(parts))


# ---- timm ------------------------------------------------------------------------------------------

def write_timm(path: Path, curve: Curve, *, updates_per_epoch: int = 1251) -> Path:
    """huggingface/pytorch-image-models train.py (_logger, INFO lines print bare): `Train: {epoch}
    [{update_idx:>4d}/{updates_per_epoch} ({pct:>3.0f}%)]  Loss: {loss_now:#.3g} ({loss_avg:#.3g})  Time: ..
    LR: {lr:.3e}  Data: ..` and per epoch `Test: [{batch_idx:>4d}/{last_idx}]  Time: ..  Loss: {val:>7.3f}
    ({avg:>6.3f})  Acc@1: .. Acc@5: ..`; the epoch's eval loss is the average on the last Test line."""
    rng = np.random.default_rng(15)
    upe = updates_per_epoch
    out = ["Training with a single process on 1 device (cuda:0).",
           "Model resnet50 created, param count:25557032", "Data processing configuration for current model + dataset:",
           "\tinput_size: (3, 224, 224)", "\tinterpolation: bicubic", "\tmean: (0.485, 0.456, 0.406)",
           "\tstd: (0.229, 0.224, 0.225)", "\tcrop_pct: 0.95", "\tcrop_mode: center",
           "Created AdamW (adamw) optimizer: lr: 0.001, betas: (0.9, 0.999), eps: 1e-08, weight_decay: 0.05",
           "Scheduled epochs: 300. LR stepped per epoch."]
    evals = curve.eval_at()
    epoch_losses: dict[int, list[float]] = {}
    prev = 0
    for i, s in enumerate(curve.steps):
        ep, idx = (s - 1) // upe, (s - 1) % upe
        seen = epoch_losses.setdefault(ep, [])
        seen.append(curve.train_loss[i])
        avg = float(np.mean(seen))
        tv = 0.412 + 0.01 * rng.standard_normal()
        out.append(f"Train: {ep} [{idx:>4d}/{upe} ({100. * (idx + 1) / upe:>3.0f}%)]  "
                   f"Loss: {curve.train_loss[i]:#.3g} ({avg:#.3g})  Time: {tv:.3f}s, {256 / tv:>7.2f}/s  "
                   f"({tv:.3f}s, {256 / tv:>7.2f}/s)  LR: {curve.lr_at(i):.3e}  Data: {0.011:.3f} ({0.012:.3f})")
        for e in sorted(evals):
            if prev < e <= s:
                ve = evals[e]
                last = 195
                for b in (0, 50, 100, 150, last):
                    cur = ve * (1 + 0.1 * rng.standard_normal()) if b < last else ve * 1.02
                    a = ve if b == last else ve * (1 + 0.02 * rng.standard_normal())
                    acc1 = 100 * math.exp(-ve / 4) if math.isfinite(ve) else 0.1
                    out.append(f"Test: [{b:>4d}/{last}]  Time: {0.215:.3f} ({0.301:.3f})  Loss: {cur:>7.3f} ({a:>6.3f})  "
                               f"Acc@1: {acc1:>7.3f} ({acc1:>7.3f})  Acc@5: {min(acc1 + 15, 100.0):>7.3f} ({min(acc1 + 15, 100.0):>7.3f})")
                out += ["Current checkpoints:", f" ('./output/train/20240501-120000-resnet50-224/checkpoint-{ep}.pth.tar', "
                                                f"{100 * math.exp(-ve / 4) if math.isfinite(ve) else 0.1})", ""]
        prev = s
    return _write(path, "\n".join(out) + "\n")


# ---- ultralytics -----------------------------------------------------------------------------------

_YOLO_LOSSES = ("box_loss", "cls_loss", "dfl_loss")


def _yolo_losses(v: float) -> tuple[float, float, float]:
    return v, 1.7 * v if math.isfinite(v) else v, 0.9 * v + 0.35 if math.isfinite(v) else v


def write_ultralytics_stdout(path: Path, curve: Curve, *, batches: int = 8) -> Path:
    """ultralytics/ultralytics ultralytics/engine/trainer.py: per epoch the header `Epoch GPU_mem box_loss
    cls_loss dfl_loss Instances Size` ('%11s' columns) and a tqdm bar whose description is the values row
    ('%11s'*2 + '%11.4g'*n: the running mean losses), then the validator's bar and its `all` row. The names
    and the numbers sit on different lines; no val loss is printed. One curve point per epoch."""
    rng = np.random.default_rng(16)
    epochs = len(curve.steps)
    scr = Screen()
    for line in ["Ultralytics 8.2.0 🚀 Python-3.10.12 torch-2.2.1+cu121 CUDA:0 (NVIDIA A100-SXM4-40GB, 40326MiB)",
                 "engine/trainer: task=detect, mode=train, model=yolov8n.pt, data=coco8.yaml, epochs=%d, time=None, patience=100, "
                 "batch=16, imgsz=640, save=True, lr0=0.01, lrf=0.01, momentum=0.937, weight_decay=0.0005, warmup_epochs=3.0" % epochs,
                 "Model summary: 225 layers, 3157200 parameters, 3157184 gradients, 8.9 GFLOPs", "",
                 "Transferred 355/355 items from pretrained weights",
                 "\x1b[34m\x1b[1mAMP: \x1b[0mchecks passed ✅",
                 "\x1b[34m\x1b[1mtrain: \x1b[0mScanning /datasets/coco8/labels/train.cache... 4 images, 0 backgrounds, 0 corrupt: 100%|██████████| 4/4 [00:00<?, ?it/s]",
                 "\x1b[34m\x1b[1moptimizer:\x1b[0m SGD(lr=0.01, momentum=0.9) with parameter groups 57 weight(decay=0.0), 64 weight(decay=0.0005), 63 bias(decay=0.0)",
                 f"Starting training for {epochs} epochs..."]:
        scr.print(line)
    for i, s in enumerate(curve.steps):
        scr.print("")
        scr.print(("%11s" * (4 + len(_YOLO_LOSSES))) % ("Epoch", "GPU_mem", *_YOLO_LOSSES, "Instances", "Size"))
        finals = _yolo_losses(curve.train_loss[i])
        for k in range(1, batches + 1):
            running = finals if k == batches else tuple(_keras_running(x, k / batches) for x in finals)
            desc = ("%11s" * 2 + "%11.4g" * (2 + len(running))) % (f"{i + 1}/{epochs}", f"{2.31:.3g}G", *running,
                                                                  int(40 + 10 * rng.random()), 640)
            scr.status(bar(k, batches, k * 0.35, prefix=desc, bar_format="{l_bar}{bar:10}{r_bar}"))
        scr.close()
        head = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)")
        for k in (1, 2, 4):
            scr.status(bar(k, 4, k * 0.3, prefix=head, bar_format="{l_bar}{bar:10}{r_bar}"))
        scr.close()
        m = _yolo_map(curve, s)
        scr.print(("%22s" + "%11i" * 2 + "%11.3g" * 4) % ("all", 128, 929, *m))
    scr.print("")
    scr.print(f"{epochs} epochs completed in 0.031 hours.")
    return _write(path, scr.text())


def _yolo_map(curve: Curve, s: int) -> tuple[float, float, float, float]:
    v = curve.eval_at().get(s, curve.train_loss[curve.steps.index(s)])
    q = math.exp(-v) if math.isfinite(v) else 0.0
    return 0.3 + 0.5 * q, 0.2 + 0.5 * q, 0.25 + 0.5 * q, 0.15 + 0.4 * q


def write_ultralytics_csv(path: Path, curve: Curve, *, variant: str = "padded") -> Path:
    """ultralytics BaseTrainer.save_metrics → results.csv, one row per epoch. variant 'padded' (8.0-8.2):
    header '%23s,' (names right-aligned with leading spaces) and values '%23.5g,'; 'plain' (8.3+): header
    '%s,' with a 'time' column and values '%.6g,'. Val losses are whatever the last validation left
    (zeros before the first one)."""
    keys = [f"train/{k}" for k in _YOLO_LOSSES] + ["metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)",
                                                   "metrics/mAP50-95(B)"] + [f"val/{k}" for k in _YOLO_LOSSES] + [
        "lr/pg0", "lr/pg1", "lr/pg2"]
    evals = curve.eval_at()
    rows: list[str] = []
    val: tuple[float, float, float] = (0.0, 0.0, 0.0)
    for i, s in enumerate(curve.steps):
        if s in evals:
            val = _yolo_losses(evals[s])
        vals = [*_yolo_losses(curve.train_loss[i]), *_yolo_map(curve, s), *val, curve.lr_at(i), curve.lr_at(i), curve.lr_at(i)]
        if variant == "padded":
            n = len(keys) + 1
            if not rows:
                rows.append(("%23s," * n % tuple(["epoch"] + keys)).rstrip(","))
            rows.append(("%23.5g," * n % tuple([i + 1] + vals)).rstrip(","))
        else:
            n = len(keys) + 2
            if not rows:
                rows.append(("%s," * n % tuple(["epoch", "time"] + keys)).rstrip(","))
            rows.append(("%.6g," * n % tuple([i + 1, 61.234 * (i + 1)] + vals)).rstrip(","))
    return _write(path, "\n".join(rows) + "\n")


# ---- MMEngine --------------------------------------------------------------------------------------

def write_mmengine(path: Path, curve: Curve, *, iters_per_epoch: int = 500, max_epochs: int | None = None) -> Path:
    """open-mmlab/mmengine mmengine/runner/log_processor.py get_log_after_iter / get_log_after_epoch through
    MMLogger ('%(asctime)s - %(name)s - %(levelname)s - %(message)s'): `Epoch(train)  [1][ 50/500]  base_lr:
    1.0000e-02 lr: 1.0000e-02  eta: 1 day, 2:03:04  time: 0.4476  data_time: 0.0102  memory: 3948  grad_norm:
    2.7263  loss: 1.4107  loss_cls: ..` (num_digits 4) and, after each validation epoch, `Epoch(val) [1][79/79]
    accuracy/top1: 35.5200  ...` (metrics, no loss)."""
    rng = np.random.default_rng(17)
    ipe = iters_per_epoch
    me = max_epochs or max((curve.total_steps - 1) // ipe + 1, 1)

    def log(sec: float, msg: str) -> str:
        return f"{_stamp(sec, '%Y/%m/%d %H:%M:%S')} - mmengine - INFO - {msg}"

    out = [log(0, ""), "------------------------------------------------------------", "System environment:",
           "    sys.platform: linux", "    CUDA available: True", "    GPU 0: NVIDIA A100-SXM4-80GB", "    PyTorch: 2.1.0",
           "------------------------------------------------------------", "", log(1, "Config:"),
           "optim_wrapper = dict(optimizer=dict(lr=0.1, momentum=0.9, type='SGD', weight_decay=0.0001), type='OptimWrapper')",
           "param_scheduler = dict(by_epoch=True, gamma=0.1, milestones=[30, 60, 90], type='MultiStepLR')",
           f"train_cfg = dict(by_epoch=True, max_epochs={me}, val_interval=1)",
           "default_hooks = dict(logger=dict(interval=100, type='LoggerHook'))", "",
           log(2, "Checkpoints will be saved to /work_dirs/resnet50_8xb32_in1k."),
           log(3, "Exp name: resnet50_8xb32_in1k_20240501_120000")]
    evals = curve.eval_at()
    prev = 0
    for i, s in enumerate(curve.steps):
        ep, it = (s - 1) // ipe + 1, (s - 1) % ipe + 1
        lr = curve.lr_at(i)
        eta = timedelta(seconds=int((me * ipe - s) * 4.476))
        v = curve.train_loss[i]
        head = f"Epoch(train) {f'[{ep}]'.rjust(len(str(me)) + 3)}[{str(it).rjust(len(str(ipe)))}/{ipe}]  "
        msg = (head + f"base_lr: {lr:.4e} lr: {lr:.4e}  eta: {eta}  time: {0.4476 + 0.01 * rng.standard_normal():.4f}  "
               f"data_time: {0.0102:.4f}  memory: 3948  grad_norm: {curve.gn(i):.4f}  loss: {v:.4f}  "
               f"loss_cls: {0.6 * v:.4f}  loss_bbox: {0.4 * v:.4f}")
        out.append(log(10 + s * 0.45, msg))
        if it == ipe:
            out.append(log(11 + s * 0.45, "Exp name: resnet50_8xb32_in1k_20240501_120000"))
            out.append(log(11 + s * 0.45, f"Saving checkpoint at {ep} epochs"))
        for e in sorted(evals):
            if prev < e <= s:
                ve = evals[e]
                for j in (20, 40, 60):
                    out.append(log(12 + s * 0.45, f"Epoch(val) {f'[{ep}]'.rjust(len(str(me)) + 3)}[{j}/79]    eta: 0:00:0{9 - j // 10}  "
                                                  f"time: 0.0320  data_time: 0.0040  memory: 1234  "))
                top1 = 100 * math.exp(-ve / 4) if math.isfinite(ve) else 0.1
                out.append(log(13 + s * 0.45, f"Epoch(val) [{ep}][79/79]    accuracy/top1: {top1:.4f}  "
                                              f"accuracy/top5: {min(top1 + 20, 100.0):.4f}  data_time: 0.0040  time: 0.0320"))
        prev = s
    return _write(path, "\n".join(out) + "\n")


# ---- research-code styles --------------------------------------------------------------------------

def write_custom(path: Path, curve: Curve, *, style: str = "pipes", steps_per_epoch: int = 100) -> Path:
    """Typical hand-written training prints. 'pipes': `Epoch 3 | Step 1200 | loss=2.3100 | grad_norm=0.842 |
    lr=3.0e-04` and `Epoch 3 | Step 1200 | val_loss=2.4512 | val_ppl=11.60`; 'brackets': a logging prefix then
    `[step 100] loss: 2.3000 grad_norm: 1.200 lr: 3.00e-04` / `[step 100] eval loss: 2.4500`; 'pydict':
    print() of a dict per step (repr: nan, inf); 'json': json.dumps per line (NaN, Infinity)."""
    out: list[str] = []
    if style == "pipes":
        out.append(f"Config: {{'lr': 0.0003, 'batch_size': 64, 'max_steps': {curve.total_steps}, 'warmup': 100}}")
    evals = curve.eval_at()
    prev = 0
    for i, s in enumerate(curve.steps):
        v, g, lr = curve.train_loss[i], curve.gn(i), curve.lr_at(i)
        ep = (s - 1) // steps_per_epoch + 1
        if style == "pipes":
            out.append(f"Epoch {ep} | Step {s} | loss={v:.4f} | grad_norm={g:.3f} | lr={lr:.1e}")
        elif style == "brackets":
            out.append(f"{_stamp(s, '%Y-%m-%d %H:%M:%S')},{s % 1000:03d} INFO [step {s}] loss: {v:.4f} grad_norm: {g:.3f} lr: {lr:.2e}")
        elif style == "pydict":
            out.append(str({"step": s, "epoch": ep, "loss": v, "lr": lr, "grad_norm": g, "tokens_seen": s * 65536}))
        else:
            out.append(json.dumps({"step": s, "train/loss": v, "train/grad_norm": g, "train/lr": lr, "time": s * 0.5}))
        for e in sorted(evals):
            if prev < e <= s:
                ve = evals[e]
                if style == "pipes":
                    out.append(f"Epoch {ep} | Step {e} | val_loss={ve:.4f} | val_ppl={math.exp(min(ve, 700)):.2f}")
                elif style == "brackets":
                    out.append(f"{_stamp(e, '%Y-%m-%d %H:%M:%S')},{e % 1000:03d} INFO [step {e}] eval loss: {ve:.4f}")
                elif style == "pydict":
                    out.append(str({"step": e, "val_loss": ve, "val_acc": 0.5}))
                else:
                    out.append(json.dumps({"step": e, "eval/loss": ve}))
        prev = s
    return _write(path, "\n".join(out) + "\n")


# --------------------------------------------------------------------------------------------------
# Oracles: a plain regex reading of each written file (used by the self-test only)


def _rx(text: str, pattern: str, groups: tuple[int, int] = (1, 2), step: bool = True) -> list[tuple[int | None, str]]:
    out = []
    for seg in _segments(text):
        m = re.search(pattern, seg)
        if m:
            out.append((int(m.group(groups[0])) if step else None, m.group(groups[1])))
    return out


def _first_per_step(points: list[tuple[int | None, str]]) -> list[tuple[int | None, str]]:
    seen: set[int | None] = set()
    out = []
    for p in points:
        if p[0] not in seen:
            seen.add(p[0])
            out.append(p)
    return out


def _simple_oracle(train: str | None, evl: str | None, *, gn: str | None = None, lr: str | None = None,
                   train_step: bool = True, eval_step: bool = True) -> Callable[[str], Points]:
    """Patterns with (step, value) groups, or a single value group where the line has no counter."""
    def run(text: str) -> Points:
        res: Points = {}
        if train:
            res["train"] = _rx(text, train, (1, 2) if train_step else (1, 1), train_step)
        if evl:
            res["eval"] = _first_per_step(_rx(text, evl, (1, 2) if eval_step else (1, 1), eval_step)) if eval_step \
                else _rx(text, evl, (1, 1), False)
        if gn:
            res["grad_norm"] = _rx(text, gn, (1, 2) if train_step else (1, 1), train_step)
        if lr:
            res["lr"] = _rx(text, lr, (1, 2) if train_step else (1, 1), train_step)
        return res
    return run


def _oracle_megatron(text: str) -> Points:
    train: list[tuple[int | None, str]] = []
    gn: list[tuple[int | None, str]] = []
    lr: list[tuple[int | None, str]] = []
    for seg in _segments(text):
        m = re.search(r"iteration\s+(\d+)/\s*\d+ \|", seg)
        if not m:
            continue
        s = int(m.group(1))
        loss = re.search(r"\| lm loss: (\S+) \|", seg)
        train.append((s, loss.group(1) if loss else "<omitted>"))
        gn.append((s, re.search(r"grad norm: (\S+) \|", seg).group(1)))  # type: ignore[union-attr]
        lr.append((s, re.search(r"learning rate: (\S+) \|", seg).group(1)))  # type: ignore[union-attr]
    ev = _first_per_step(_rx(text, r"validation loss at iteration (\d+)(?: on validation set)? \| lm loss value: (\S+) \|"))
    return {"train": train, "eval": ev, "grad_norm": gn, "lr": lr}


def _bar_then_val(text: str, main: str, step_of: Callable[[re.Match[str]], int], key: str) -> list[tuple[int | None, str]]:
    """An eval point of a tqdm-style bar: the first main-bar redraw after a validation bar, with its `key=`."""
    out: list[tuple[int | None, str]] = []
    after_val = False
    for seg in _segments(text):
        if seg.startswith("Validation"):
            after_val = True
            continue
        m = re.search(main, seg)
        if m and after_val:
            v = re.search(rf"{key}=([^,\]]+)", seg)
            if v:
                out.append((step_of(m), v.group(1)))
            after_val = False
    return out


def _oracle_nemo1(text: str) -> Points:
    main = r"^Epoch \d+:.*reduced_train_loss=([^,\]]+), global_step=([^,\]]+)"
    train = _first_per_step([(int(float(m.group(2))), m.group(1)) for seg in _segments(text)
                             if (m := re.search(main, seg))])
    return {"train": train, "eval": _bar_then_val(text, main, lambda m: int(float(m.group(2))), "val_loss")}


def _oracle_lightning(text: str) -> Points:
    main = r"^Epoch (\d+):\s+\d+%\|.*?\| (\d+)/(\d+) \[.*train_loss=([^,\]]+)"

    def step(m: re.Match[str]) -> int:
        return int(m.group(1)) * int(m.group(3)) + int(m.group(2))
    train = _first_per_step([(step(m), m.group(4)) for seg in _segments(text) if (m := re.search(main, seg))])
    return {"train": train, "eval": _bar_then_val(text, main, step, "val_loss")}


def _oracle_hf(text: str) -> Points:
    import ast

    res: Points = {"train": [], "eval": [], "grad_norm": [], "lr": []}
    n: int | None = None
    total: int | None = None
    for seg in _segments(text):
        m = re.match(r"^\s*\d+%\|.*?\|\s*(\d+)/(\d+) \[", seg)  # the Trainer's bars have no description
        if m:
            if total is None:
                total = int(m.group(2))
            if int(m.group(2)) == total:
                n = int(m.group(1))
            continue
        if seg.startswith("{'"):
            d = ast.literal_eval(re.sub(r"(?<!')(-?)\b(nan|inf)\b(?!')", r"'\1\2'", seg))
            if "loss" in d:
                res["train"].append((n, str(d["loss"])))
                res["grad_norm"].append((n, str(d["grad_norm"])))
                res["lr"].append((n, str(d["learning_rate"])))
            elif "eval_loss" in d:
                res["eval"].append((n, str(d["eval_loss"])))
    return res


def _kv(text: str, sep: str, delim: str) -> dict[str, str]:
    return dict(item.split(sep, 1) for item in text.split(delim))


def _oracle_fairseq(text: str) -> Points:
    res: Points = {"train": [], "eval": [], "grad_norm": [], "lr": []}
    for seg in _segments(text):
        if m := re.search(r"\| train_inner \| epoch \d+:\s+\d+ / \d+ (.*)$", seg):
            d = _kv(m.group(1), "=", ", ")
        elif m := re.search(r"\| train_inner \| (\{.*\})$", seg):
            d = json.loads(m.group(1))
        elif m := re.search(r"\| valid \| epoch \d+ \| valid on 'valid' subset \| (.*)$", seg):
            d = _kv(m.group(1), " ", " | ")
            res["eval"].append((int(d["num_updates"]), d["loss"]))
            continue
        elif m := re.search(r"\| valid \| (\{.*\})$", seg):
            d = json.loads(m.group(1))
            res["eval"].append((int(d["valid_num_updates"]), d["valid_loss"]))
            continue
        else:
            continue
        s = int(d["num_updates"])
        res["train"].append((s, d["loss"]))
        res["grad_norm"].append((s, d["gnorm"]))
        res["lr"].append((s, d["lr"]))
    return res


def _oracle_keras(text: str) -> Points:
    res: Points = {"train": [], "eval": []}
    epoch = 0
    for seg in _segments(text):
        if m := re.match(r"^Epoch (\d+)/\d+$", seg):
            epoch = int(m.group(1))
        elif (m := re.match(r"^\s*(\d+)/(\d+) ", seg)) and m.group(1) == m.group(2):
            res["train"].append((epoch, re.search(r" - loss: (\S+)", seg).group(1)))  # type: ignore[union-attr]
            if v := re.search(r" - val_loss: (\S+)", seg):
                res["eval"].append((epoch, v.group(1)))
    return res


def _oracle_timm(text: str) -> Points:
    res: Points = {"train": [], "eval": [], "lr": []}
    epoch = 0
    for seg in _segments(text):
        if m := re.match(r"^Train: (\d+) \[\s*(\d+)/(\d+) .*?Loss: (\S+) \(.*LR: (\S+) ", seg):
            epoch = int(m.group(1))
            s = epoch * int(m.group(3)) + int(m.group(2)) + 1
            res["train"].append((s, m.group(4)))
            res["lr"].append((s, m.group(5)))
        elif (m := re.match(r"^Test: \[\s*(\d+)/(\d+)\].*?Loss:\s+\S+ \(\s*(\S+)\)", seg)) and m.group(1) == m.group(2):
            res["eval"].append((epoch, m.group(3)))
    return res


def _oracle_yolo_stdout(text: str) -> Points:
    rows = [(int(m.group(1)), m.group(3)) for seg in _segments(text)
            if (m := re.match(r"^\s+(\d+)/(\d+)\s+\S+G\s+(\S+)\s+\S+\s+\S+\s+\d+\s+\d+: 100%", seg))]
    last: dict[int, str] = dict(rows)
    return {"train": [(k, last[k]) for k in sorted(last)]}


def _oracle_yolo_csv(text: str) -> Points:
    lines = text.splitlines()
    head = [h.strip() for h in lines[0].split(",")]
    rows = [dict(zip(head, (x.strip() for x in ln.split(",")))) for ln in lines[1:]]
    return {"train": [(int(float(r["epoch"])), r["train/box_loss"]) for r in rows],
            "eval": [(int(float(r["epoch"])), r["val/box_loss"]) for r in rows],
            "lr": [(int(float(r["epoch"])), r["lr/pg0"]) for r in rows]}


def _oracle_mmengine(text: str) -> Points:
    res: Points = {"train": [], "grad_norm": [], "lr": []}
    for seg in _segments(text):
        if m := re.search(r"Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/(\d+)\]\s+base_lr: \S+ lr: (\S+) .*grad_norm: (\S+)\s+loss: (\S+)", seg):
            s = (int(m.group(1)) - 1) * int(m.group(3)) + int(m.group(2))
            res["train"].append((s, m.group(6)))
            res["grad_norm"].append((s, m.group(5)))
            res["lr"].append((s, m.group(4)))
    return res


# --------------------------------------------------------------------------------------------------
# The registry


def _s(c: Curve, i: int) -> int | None:
    return c.steps[i]


def _s_minus_1(c: Curve, i: int) -> int | None:
    return c.steps[i] - 1


def _no_step(c: Curve, i: int) -> int | None:
    return None


def _e(c: Curve, j: int) -> int | None:
    return c.eval_steps[j]


def _e_after_train(c: Curve, j: int) -> int | None:
    """Tools that validate after a logged update never print an eval at step 0."""
    return c.eval_steps[j] if c.eval_steps[j] > 0 else NOT_PRINTED


def _no_step_after_train(c: Curve, j: int) -> int | None:
    return None if c.eval_steps[j] > 0 else NOT_PRINTED


def _epoch_of_point(c: Curve, i: int) -> int | None:
    return i + 1


def _eval_epoch(c: Curve, j: int) -> int | None:
    e = c.eval_steps[j]
    return c.steps.index(e) + 1 if e in c.steps else NOT_PRINTED


def _megatron_render(v: float) -> str:
    return "{:.6E}".format(v) if v >= 0.0 else "<omitted>"


def _repr(v: float) -> str:
    return repr(v)


def _cr(fmt: str, negative_nan: bool) -> Callable[[float], str]:
    return lambda v: cfmt(fmt, v, negative_nan).strip()


_LM_ROLES = {"train_loss": "loss", "eval_loss": None, "grad_norm": None, "lr": None}

FORMATS: dict[str, FormatSpec] = {
    "llmc_stdout": FormatSpec(
        tool="llm.c",
        source='karpathy/llm.c train_gpt2.cu main(): printf0("step %4d/%d | loss %7.6f (%+.2fz)| norm %6.4f (%+.2fz)| '
               'lr %.2e | %.2f ms | %.1f%% bf16 MFU | %.0f tok/s\\n", step + 1, train_num_batches, model.mean_loss, zloss, '
               'grad_norm, zgrad, step_learning_rate, time_elapsed_ms, 100*mfu, bias_corrected_ema_tokens_per_second); '
               'printf0("val loss %f\\n", val_loss); printf0("HellaSwag: %d/%d = %f\\n", ...); '
               'printf("evaluating HellaSwag: %d/%d\\r", i, num_batches); zloss/zgrad from llmc/outlier_detector.h '
               '(window 64, returns nan("") until full). Older train_gpt2.cu printed "train loss" in place of "loss"; '
               'train_gpt2.c (CPU) prints "step %d: train loss %f (took %f ms)".',
        roles={"train_loss": "loss", "eval_loss": "val loss", "grad_norm": "norm", "lr": "lr"},
        step="'step %4d/%d' = updates done / total (loop index + 1); the val line has no counter: it is printed "
             "just before 'step s+1/N' and measures the model after s updates",
        rounding={"train_loss": "%7.6f", "eval_loss": "%f", "grad_norm": "%6.4f", "lr": "%.2e"},
        nan_text="'nan' (glibc prints '-nan' when the NaN's sign bit is set); the z-scores print '+nan' for the "
                 "first 64 steps whatever the loss",
        writer=write_llmc_stdout, options={"negative_nan": False},
        render={"train_loss": _cr("%7.6f", False), "eval_loss": _cr("%f", False), "grad_norm": _cr("%6.4f", False),
                "lr": lambda v: "%.2e" % v},
        oracle=_simple_oracle(r"^step\s+(\d+)/\d+ \| loss\s+(\S+) \(", r"^val loss (\S+)$",
                              gn=r"^step\s+(\d+)/\d+ .*\| norm\s+(\S+) \(", lr=r"^step\s+(\d+)/\d+ .*\| lr (\S+) \|",
                              eval_step=False),
        train_step_of=_s, eval_step_of=_no_step),
    "llmc_mainlog": FormatSpec(
        tool="llm.c (-o main.log)",
        source='karpathy/llm.c llmc/logger.h: fprintf(logfile, "s:%d tel:%.4f\\n", step, val_loss); '
               'fprintf(logfile, "s:%d eval:%.4f\\n", step, val) (HellaSwag accuracy); '
               'fprintf(logfile, "s:%d trl:%.4f lr:%.6f norm:%.2f\\n", step, train_loss, learning_rate, grad_norm)',
        roles={"train_loss": "trl", "eval_loss": "tel", "grad_norm": "norm", "lr": "lr"},
        step="'s:%d' is the 0-based loop step: on 'trl' lines the update index (updates done - 1), on 'tel'/'eval' "
             "lines the updates done (so 's:250 tel' and 's:250 trl' are one update apart)",
        rounding={"train_loss": "%.4f", "eval_loss": "%.4f", "grad_norm": "%.2f", "lr": "%.6f (an LR below 5e-7 prints 0.000000)"},
        nan_text="'nan' or '-nan' (glibc prints the sign bit); the writer's default is '-nan'",
        writer=write_llmc_mainlog, options={"negative_nan": True}, filename="main.log",
        render={"train_loss": _cr("%.4f", True), "eval_loss": _cr("%.4f", True), "grad_norm": _cr("%.2f", True),
                "lr": lambda v: "%.6f" % v},
        oracle=_simple_oracle(r"^s:(\d+) trl:(\S+) ", r"^s:(\d+) tel:(\S+)$", gn=r"^s:(\d+) trl:.* norm:(\S+)$",
                              lr=r"^s:(\d+) trl:\S+ lr:(\S+) "),
        train_step_of=_s_minus_1, eval_step_of=_e),
    "llmc_cpu": FormatSpec(
        tool="llm.c (train_gpt2.c, CPU)",
        source='karpathy/llm.c train_gpt2.c main(): printf("val loss %f\\n", val_loss); printf("step %d: train loss %f '
               '(took %f ms)\\n", step, model.mean_loss, time_elapsed_s * 1000)',
        roles={"train_loss": "train loss", "eval_loss": "val loss", "grad_norm": None, "lr": None},
        step="'step %d:' = the 0-based loop step (updates done - 1); 'val loss' lines have no counter (printed at the "
             "top of loop step s, before 'step s:')",
        rounding={"train_loss": "%f", "eval_loss": "%f"}, nan_text="'nan' ('-nan' with the sign bit)", writer=write_llmc_cpu,
        render={"train_loss": _cr("%f", False), "eval_loss": _cr("%f", False)},
        oracle=_simple_oracle(r"^step (\d+): train loss (\S+) \(took", r"^val loss (\S+)$", eval_step=False),
        train_step_of=_s_minus_1, eval_step_of=_no_step,
        notes="'(took 1400.123456 ms)': the time sits in parentheses after the loss, its unit after the number."),
    "build_nanogpt_stdout": FormatSpec(
        tool="build-nanogpt",
        source='karpathy/build-nanogpt train_gpt2.py: print(f"step {step:5d} | loss: {loss_accum.item():.6f} | lr {lr:.4e} | '
               'norm: {norm:.4f} | dt: {dt*1000:.2f}ms | tok/sec: {tokens_per_sec:.2f}"); print(f"validation loss: '
               '{val_loss_accum.item():.4f}"); print(f"HellaSwag accuracy: {num_correct_norm}/{num_total}={acc_norm:.4f}"); '
               'print(f"rank {ddp_rank} sample {i}: {decoded}")',
        roles={"train_loss": "loss", "eval_loss": "validation loss", "grad_norm": "norm", "lr": "lr"},
        step="'step {step:5d}' is the 0-based update index (updates done - 1); 'validation loss' has no counter, it is "
             "printed at the top of loop step s (model after s updates) before 'step s'; the last validation runs at "
             "step max_steps-1, before the final update",
        rounding={"train_loss": ".6f", "eval_loss": ".4f", "grad_norm": ".4f", "lr": ".4e"},
        nan_text="'nan'", writer=write_build_nanogpt_stdout,
        render={"train_loss": _f(".6f"), "eval_loss": _f(".4f"), "grad_norm": _f(".4f"), "lr": _f(".4e")},
        oracle=_simple_oracle(r"^step\s+(\d+) \| loss: (\S+) \|", r"^validation loss: (\S+)$",
                              gn=r"^step\s+(\d+) \|.*\| norm: (\S+) \|", lr=r"^step\s+(\d+) \|.*\| lr (\S+) \|", eval_step=False),
        train_step_of=_s_minus_1, eval_step_of=_no_step),
    "build_nanogpt_logtxt": FormatSpec(
        tool="build-nanogpt (log/log.txt)", filename="log.txt",
        source='karpathy/build-nanogpt train_gpt2.py: f.write(f"{step} val {val_loss_accum.item():.4f}\\n"); '
               'f.write(f"{step} hella {acc_norm:.4f}\\n"); f.write(f"{step} train {loss_accum.item():.6f}\\n")',
        roles={"train_loss": "train", "eval_loss": "val", "grad_norm": None, "lr": None},
        step="a leading integer: the loop step (train: updates done - 1; val/hella: updates done); the split word "
             "follows the counter and the value has no key of its own",
        rounding={"train_loss": ".6f", "eval_loss": ".4f"}, nan_text="'nan'", writer=write_build_nanogpt_logtxt,
        render={"train_loss": _f(".6f"), "eval_loss": _f(".4f")},
        oracle=_simple_oracle(r"^(\d+) train (\S+)$", r"^(\d+) val (\S+)$"),
        train_step_of=_s_minus_1, eval_step_of=lambda c, j: min(c.eval_steps[j], c.total_steps - 1)),
    "modded_nanogpt_2024": FormatSpec(
        tool="modded-nanogpt (2024 records)", filename="train.txt",
        source="KellerJordan/modded-nanogpt train_gpt2.py (late 2024): print0(f'step:{step}/{args.num_iterations} "
               "val_loss:{val_loss:.4f} train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms/(timed_steps-1):.2f}ms') "
               "and f\"step:{step+1}/{args.num_iterations} train_loss:{train_loss.item():.4f} train_time:{approx_time:.0f}ms "
               "step_avg:{approx_time/timed_steps:.2f}ms\"; timed_steps = float('nan') for the first steps; the logfile "
               "starts with print0(code) and nvidia-smi",
        roles={"train_loss": "train_loss", "eval_loss": "val_loss", "grad_norm": None, "lr": None},
        step="'step:N/M' glued to the key with ':'; train lines print updates done, val lines the updates done at eval",
        rounding={"train_loss": ".4f", "eval_loss": ".4f"},
        nan_text="'nan'; step_avg prints 'nanms' on the first steps of every healthy run", writer=write_modded_nanogpt,
        options={"variant": "2024"}, render={"train_loss": _f(".4f"), "eval_loss": _f(".4f")},
        oracle=_simple_oracle(r"^step:(\d+)/\d+ train_loss:(\S+) ", r"^step:(\d+)/\d+ val_loss:(\S+) "),
        train_step_of=_s, eval_step_of=_e),
    "modded_nanogpt_2025": FormatSpec(
        tool="modded-nanogpt (current)", filename="train.txt",
        source='KellerJordan/modded-nanogpt train_gpt.py: print0(f"step:{step}/{train_steps} val_loss:{val_loss:.4f} '
               'train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms/max(step, 1):.2f}ms", console=True) and '
               'print0(f"step:{step+1}/{train_steps} train_time:{approx_training_time_ms:.0f}ms '
               'step_avg:{approx_training_time_ms/(step + 1):.2f}ms", console=True)',
        roles={"train_loss": None, "eval_loss": "val_loss", "grad_norm": None, "lr": None},
        step="'step:N/M'; train lines carry no loss at all (only times), so val_loss is the only loss series",
        rounding={"eval_loss": ".4f"}, nan_text="'nan'", writer=write_modded_nanogpt, options={"variant": "2025"},
        render={"eval_loss": _f(".4f")}, oracle=_simple_oracle(None, r"^step:(\d+)/\d+ val_loss:(\S+) "),
        train_step_of=_s, eval_step_of=_e),
    "parameter_golf": FormatSpec(
        tool="OpenAI parameter-golf",
        source='openai/parameter-golf train_gpt.py log0: f"step:{step}/{args.iterations} train_loss:{train_loss.item():.4f} '
               'train_time:{approx_training_time_ms:.0f}ms step_avg:{approx_training_time_ms / step:.2f}ms" (step <= 10 or '
               'step % train_log_every == 0), f"step:{step}/{args.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} '
               'train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms / max(step, 1):.2f}ms", '
               'f"warmup_step:{warmup_step + 1}/{args.warmup_steps}", f"final_int8_zlib_roundtrip val_loss:{q_val_loss:.4f} '
               'val_bpb:{q_val_bpb:.4f} eval_time:{...:.0f}ms"',
        roles={"train_loss": "train_loss", "eval_loss": "val_loss", "grad_norm": None, "lr": None},
        step="'step:N/M' (updates done); 'warmup_step:k/K' lines count warm-up steps whose state is thrown away",
        rounding={"train_loss": ".4f", "eval_loss": ".4f"}, nan_text="'nan'", writer=write_parameter_golf,
        render={"train_loss": _f(".4f"), "eval_loss": _f(".4f")},
        oracle=_simple_oracle(r"^step:(\d+)/\d+ train_loss:(\S+) ", r"^step:(\d+)/\d+ val_loss:(\S+) "),
        train_step_of=_s, eval_step_of=_e),
    "nanogpt": FormatSpec(
        tool="nanoGPT",
        source='karpathy/nanoGPT train.py: print(f"step {iter_num}: train loss {losses[\'train\']:.4f}, val loss '
               '{losses[\'val\']:.4f}") and print(f"iter {iter_num}: loss {lossf:.4f}, time {dt*1000:.2f}ms, mfu '
               '{running_mfu*100:.2f}%")',
        roles={"train_loss": "loss", "eval_loss": "val loss", "grad_norm": None, "lr": None},
        step="'iter N:' (the update index, updates done - 1) on train lines, 'step N:' (updates done) on eval lines",
        rounding={"train_loss": ".4f", "eval_loss": ".4f"},
        nan_text="'nan'; mfu prints '-100.00%' for the first 5 iterations", writer=write_nanogpt,
        render={"train_loss": _f(".4f"), "eval_loss": _f(".4f")},
        oracle=_simple_oracle(r"^iter (\d+): loss (\S+), time", r"^step (\d+): train loss \S+, val loss (\S+)$"),
        train_step_of=_s_minus_1, eval_step_of=_e),
    "megatron_lm": FormatSpec(
        tool="Megatron-LM",
        source="NVIDIA/Megatron-LM megatron/training/training.py training_log: log_string = f\" [{datetime.now().strftime("
               "'%Y-%m-%d %H:%M:%S.%f')}]\"; ' iteration {:8d}/{:8d} |'; ' consumed samples: {:12d} |'; ' elapsed time per "
               "iteration (ms): {:.1f} |'; f' throughput per GPU (TFLOP/s/GPU): {throughput:.1f} |'; f' learning rate: "
               "{learning_rate:.6E} |'; f' global batch size: {batch_size:5d} |'; for key: if avg >= 0.0: ' {}: {:.6E} |'.format(key, avg) "
               "(key 'lm loss'); f' loss scale: {loss_scale:.1f} |'; f' grad norm: {grad_norm:.3f} |'; ' number of skipped "
               "iterations: {:3d} |'; ' number of nan iterations: {:3d} |'. evaluate_and_print_results: ' validation loss at "
               "{prefix} | ' + '{} value: {:.6E} | '.format(key, v) + '{} PPL: {:.6E} | '.format(key, exp(min(20, v))) between "
               "'-' * (len + 1) lines; prefix 'iteration N', at the end 'iteration N on validation set' / '... on test set'",
        roles={"train_loss": "lm loss", "eval_loss": "lm loss value", "grad_norm": "grad norm", "lr": "learning rate"},
        step="'iteration {:8d}/{:8d}' (updates done), after a '[YYYY-mm-dd HH:MM:SS.ffffff]' stamp; 'validation loss at "
             "iteration N' on the eval line",
        rounding={"train_loss": ".6E", "eval_loss": ".6E", "grad_norm": ".3f", "lr": ".6E"},
        nan_text="the 'lm loss' item is left out of the line (avg >= 0.0 is False for NaN); a NaN eval prints 'NAN' and "
                 "its PPL exp(min(20, nan)) = exp(20)", writer=write_megatron_lm,
        render={"train_loss": _megatron_render, "eval_loss": _f(".6E"), "grad_norm": _f(".3f"), "lr": _f(".6E")},
        oracle=_oracle_megatron, train_step_of=_s, eval_step_of=_e_after_train),
    "gpt_neox": FormatSpec(
        tool="GPT-NeoX",
        source="EleutherAI/gpt-neox megatron/logging.py training_log: ' samples/sec: {:.3f} |', ' iteration {:8d}/{:8d} |', "
               "' elapsed time per iteration (ms): {:.1f} |', ' learning rate: {:.3E} |', f' approx flops per GPU: "
               "{human_readable_flops(...)} |' ('%3.1f%s' with TFLOPS...), ' {}: {:.6E} |'.format(key, avg) (key 'lm_loss'), "
               "' loss scale: {:.1f} |' (fp16 only), ' number of skipped iterations: {:3d} |', ' number of nan iterations: "
               "{:3d} |'; megatron/training.py evaluate_and_print_results: f' {chart_name} results at {prefix} | ' + "
               "f'{k} value: {v:.6E} | ' (keys lm_loss, lm_loss_ppl). DeepSpeed adds log_dist 'step=N, skipped=0, lr=[..], "
               "mom=[..]' and, with pipeline parallelism, 'steps: {} loss: {:0.4f} iter time (s): {:0.3f} samples/sec: {:0.3f}'",
        roles={"train_loss": "lm_loss", "eval_loss": "lm_loss value", "grad_norm": None, "lr": "learning rate"},
        step="'iteration {:8d}/{:8d}' (updates done); DeepSpeed's own 'step=N' and 'steps: N' counters on other lines",
        rounding={"train_loss": ".6E", "eval_loss": ".6E", "lr": ".3E"}, nan_text="'NAN' ('{:.6E}'; inf is 'INF')",
        writer=write_gpt_neox,
        render={"train_loss": _f(".6E"), "eval_loss": _f(".6E"), "lr": _f(".3E")},
        oracle=_simple_oracle(r"iteration\s+(\d+)/\s*\d+ \|.*\| lm_loss: (\S+) \|",
                              r"validation results at iteration (\d+) \| lm_loss value: (\S+) \|",
                              lr=r"iteration\s+(\d+)/\s*\d+ \|.*\| learning rate: (\S+) \|"),
        train_step_of=_s, eval_step_of=_e_after_train),
    "nemo1_progress_bar": FormatSpec(
        tool="NeMo 1.x (Lightning progress bar)",
        source="NVIDIA/NeMo nemo/lightning/pytorch/callbacks/progress_bar.py MegatronProgressBar: bar_format = \"{desc}: "
               "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]\", set_description(f\"Epoch "
               "{trainer.current_epoch}\"), set_postfix(self.get_metrics(trainer, pl_module)); MegatronGPTModel.training_step: "
               "self.log('reduced_train_loss', loss_mean, prog_bar=True), self.log('global_step', self.trainer.global_step, "
               "prog_bar=True), self.log('consumed_samples', ..., prog_bar=True); 'train_step_timing in s' from NeMo's timing "
               "callback; val_loss with prog_bar=True after validation; numbers through Lightning's Tqdm.format_num",
        roles={"train_loss": "reduced_train_loss", "eval_loss": "val_loss", "grad_norm": None, "lr": None},
        step="'global_step=19.00' in the postfix (a float, logged before the update: updates done - 1) and the bar's "
             "'n/N' (updates done within the epoch); redraws with '\\r', one line for the whole run",
        rounding={"train_loss": "Lightning format_num ('{:.3g}' then padded to 5 chars)", "eval_loss": "same"},
        nan_text="'nan.0'", writer=write_nemo1,
        render={"train_loss": lightning_num, "eval_loss": lightning_num}, oracle=_oracle_nemo1,
        train_step_of=_s_minus_1, eval_step_of=lambda c, j: c.eval_steps[j] - 1 if c.eval_steps[j] > 0 else NOT_PRINTED),
    "nemo2_progress_printer": FormatSpec(
        tool="NeMo 2.x (ProgressPrinter)",
        source="NVIDIA/NeMo nemo/lightning/pytorch/callbacks/progress_printer.py: prefix = self.train_description + f\" epoch "
               "{trainer.current_epoch}, iteration {n}/{self.total}\"; format_string: log_string += f' | {metric}: {val}' "
               "(int(val) when val.is_integer()) else f' | {metric}: {val:.4}'; print(self.validation_description + "
               "f\": iteration {int(n)}/{self.total_validation_steps}\")",
        roles={"train_loss": "reduced_train_loss", "eval_loss": None, "grad_norm": None, "lr": "lr"},
        step="'iteration n/N' (updates done within the epoch) and 'global_step: n' (updates done - 1); keys are "
             "'| key: value' items, one key with spaces ('train_step_timing in s')",
        rounding={"train_loss": "'{:.4}' (an integral float prints as an int)", "lr": "'{:.4}'"},
        nan_text="'nan'", writer=write_nemo2,
        render={"train_loss": _nemo2_num, "lr": _nemo2_num},
        oracle=_simple_oracle(r"^Training epoch \d+, iteration (\d+)/\d+ \|.*\| reduced_train_loss: ([^ |]+)", None,
                              lr=r"^Training epoch \d+, iteration (\d+)/\d+ \| lr: ([^ |]+)"),
        train_step_of=_s, eval_step_of=_no_step,
        notes="Validation prints only 'Validation: iteration i/M' (no loss)."),
    "torchtitan": FormatSpec(
        tool="torchtitan",
        source="pytorch/torchtitan torchtitan/components/metrics.py MetricsProcessor.log: logger.info(f\"{color.red}step: "
               "{step:2}  {color.green}loss: {global_avg_loss:7.4f}  {color.orange}grad_norm: {grad_norm:7.4f}  "
               "{color.turquoise}memory: {device_mem_stats.max_reserved_gib:5.2f}GiB({device_mem_stats.max_reserved_pct:.2f}%)  "
               "{color.blue}tps: {round(tps):,}  {color.cyan}tflops: {tflops:,.2f}  {color.magenta}mfu: {mfu:.2f}%{color.reset}\"); "
               "log_validation: f\"{color.yellow}validate step: {step:2}  {color.green}loss: {loss:7.4f}  ...  {color.blue}tps: "
               "{round(tps):,}{color.reset}\"; torchtitan/tools/logging.py: '[titan] %(asctime)s - %(name)s - %(levelname)s - "
               "%(message)s'; Color codes in torchtitan/tools/utils.py",
        roles={"train_loss": "loss", "eval_loss": "loss (on a 'validate step' line)", "grad_norm": "grad_norm", "lr": None},
        step="'step: {step:2}' (updates done; step 1 is always logged) inside ANSI colour codes; eval lines say "
             "'validate step:'", rounding={"train_loss": "7.4f", "eval_loss": "7.4f", "grad_norm": "7.4f"},
        nan_text="'nan' (right-aligned in 7 chars)", writer=write_torchtitan,
        render={"train_loss": _f(".4f"), "eval_loss": _f(".4f"), "grad_norm": _f(".4f")},
        oracle=_simple_oracle(r"- INFO - step:\s*(\d+)\s+loss:\s*(\S+)", r"validate step:\s*(\d+)\s+loss:\s*(\S+)",
                              gn=r"- INFO - step:\s*(\d+)\s+.*grad_norm:\s*(\S+)"),
        train_step_of=_s, eval_step_of=_e_after_train),
    "litgpt_pretrain": FormatSpec(
        tool="litgpt (pretrain)",
        source="Lightning-AI/litgpt litgpt/pretrain.py fit(): fabric.print(f\"Epoch {metrics['epoch']+1} | iter {metrics['iter']} "
               "step {metrics['step']} | loss train: {metrics['loss']:.3f}, val: {val_loss} | iter time: "
               "{metrics['iter_time'] * 1000:.2f} ms{' (step)' if not is_accumulating else ''} remaining time: "
               "{timedelta(seconds=int(metrics['remaining_time']))!s}\") with val_loss = f\"{val_loss:.3f}\" or 'n/a'; "
               "fabric.print(f\"iter {state['iter_num']}: val loss {val_loss:.4f}, val time: {td * 1000:.2f} ms\")",
        roles={"train_loss": "loss train", "eval_loss": "val loss", "grad_norm": None, "lr": None},
        step="'iter N step M': iter counts micro-batches, step counts updates (iter = step * accumulation); the eval "
             "line prints only 'iter N:'; the train line's 'val:' repeats the last validation (stale) or 'n/a'",
        rounding={"train_loss": ".3f", "eval_loss": ".4f"}, nan_text="'nan'", writer=write_litgpt,
        options={"variant": "pretrain", "accum": 4}, render={"train_loss": _f(".3f"), "eval_loss": _f(".4f")},
        oracle=_simple_oracle(r"^Epoch \d+ \| iter \d+ step (\d+) \| loss train: (\S+), val:",
                              r"^iter (\d+): val loss (\S+), val time"),
        train_step_of=_s, eval_step_of=lambda c, j: c.eval_steps[j] * 4 if c.eval_steps[j] > 0 else NOT_PRINTED),
    "litgpt_finetune": FormatSpec(
        tool="litgpt (finetune lora)",
        source="Lightning-AI/litgpt litgpt/finetune/lora.py fit(): fabric.print(f\"Epoch {metrics['epoch']+1} | iter "
               "{metrics['iter']} step {metrics['step']} | loss train: {metrics['loss']:.3f}, val: {val_loss} | iter time: "
               "{metrics['iter_time'] * 1000:.2f} ms{' (step)' if not is_accumulating else ''}\"); fabric.print(f\"iter "
               "{iter_num}: val loss {val_loss.item():.4f}, val time: {t1 * 1000:.2f} ms\") after a generated sample",
        roles={"train_loss": "loss train", "eval_loss": "val loss", "grad_norm": None, "lr": None},
        step="as litgpt pretrain (iter = micro-batches, step = updates)", rounding={"train_loss": ".3f", "eval_loss": ".4f"},
        nan_text="'nan'", writer=write_litgpt, options={"variant": "finetune", "accum": 4},
        render={"train_loss": _f(".3f"), "eval_loss": _f(".4f")},
        oracle=_simple_oracle(r"^Epoch \d+ \| iter \d+ step (\d+) \| loss train: (\S+), val:",
                              r"^iter (\d+): val loss (\S+), val time"),
        train_step_of=_s, eval_step_of=lambda c, j: c.eval_steps[j] * 4 if c.eval_steps[j] > 0 else NOT_PRINTED),
}

_HF_SOURCE = ("huggingface/transformers src/transformers/trainer_callback.py ProgressCallback.on_log: "
              "self.training_bar.write(str(logs)) between tqdm redraws of the step bar (4.x: logs['epoch'] = round(logs['epoch'], 2) "
              "and Trainer._maybe_log_save_evaluate: logs['loss'] = round(tr_loss_scalar / steps, 4); newer: shallow_logs[k] = "
              "f'{v:.4g}' for every float); PrinterCallback.on_log: print(logs) (newer: the same '.4g' strings); "
              "the final speed_metrics dict {'train_runtime', 'train_samples_per_second', 'train_steps_per_second', "
              "'train_loss' (mean over the run), 'epoch'}")


def _hf_render(variant: str) -> dict[str, Callable[[float], str]]:
    if variant == "float":
        return {"train_loss": lambda v: repr(round(v, 4)), "eval_loss": _repr, "grad_norm": _repr, "lr": _repr}
    return {k: _f(".4g") for k in ("train_loss", "eval_loss", "grad_norm", "lr")}


_HF_ROLES = {"train_loss": "loss", "eval_loss": "eval_loss", "grad_norm": "grad_norm", "lr": "learning_rate"}
_HF_STEP = ("no counter in the dict (only 'epoch', a fraction); the step is the tqdm bar's 'n/N' redrawn just before "
            "the dict (ProgressCallback), or only the order of the dicts (PrinterCallback)")

FORMATS.update({
    "hf_trainer_float": FormatSpec(
        tool="HF Trainer (transformers 4.x ProgressCallback)", source=_HF_SOURCE, roles=_HF_ROLES, step=_HF_STEP,
        rounding={"train_loss": "round(v, 4) then repr", "eval_loss": "repr", "grad_norm": "repr", "lr": "repr"},
        nan_text="nan (a bare Python repr inside the dict)", writer=write_hf_trainer, options={"variant": "float"},
        render=_hf_render("float"), oracle=_oracle_hf, train_step_of=_s, eval_step_of=_e_after_train),
    "hf_trainer_str": FormatSpec(
        tool="HF Trainer (newer ProgressCallback, '.4g' strings)", source=_HF_SOURCE, roles=_HF_ROLES, step=_HF_STEP,
        rounding={k: "f'{v:.4g}' as a quoted string" for k in _HF_ROLES}, nan_text="'nan' (a quoted string)",
        writer=write_hf_trainer, options={"variant": "str"}, render=_hf_render("str"), oracle=_oracle_hf,
        train_step_of=_s, eval_step_of=_e_after_train),
    "hf_printer": FormatSpec(
        tool="HF Trainer (PrinterCallback, disable_tqdm=True)", source=_HF_SOURCE, roles=_HF_ROLES, step=_HF_STEP,
        rounding={k: "f'{v:.4g}' as a quoted string" for k in _HF_ROLES}, nan_text="'nan' (a quoted string)",
        writer=write_hf_trainer, options={"variant": "printer"}, render=_hf_render("str"), oracle=_oracle_hf,
        train_step_of=_no_step, eval_step_of=_no_step_after_train),
    "trl_sft": FormatSpec(
        tool="TRL SFTTrainer", source=_HF_SOURCE + "; huggingface/trl SFTTrainer adds num_tokens, mean_token_accuracy (and "
                                                   "eval_ twins)", roles=_HF_ROLES, step=_HF_STEP,
        rounding={k: "f'{v:.4g}' as a quoted string" for k in _HF_ROLES}, nan_text="'nan' (a quoted string)",
        writer=write_trl, options={"trainer": "sft", "variant": "str"}, render=_hf_render("str"), oracle=_oracle_hf,
        train_step_of=_s, eval_step_of=_e_after_train),
    "trl_dpo": FormatSpec(
        tool="TRL DPOTrainer", source=_HF_SOURCE + "; huggingface/trl trl/trainer/dpo_trainer.py get_batch_loss_metrics: "
                                                   "metrics[f\"{prefix}rewards/chosen\"], rewards/rejected, rewards/accuracies, "
                                                   "rewards/margins, logps/chosen, logps/rejected, logits/chosen, logits/rejected "
                                                   "(prefix 'eval_' in evaluation)", roles=_HF_ROLES, step=_HF_STEP,
        rounding={"train_loss": "round(v, 4) then repr", "eval_loss": "repr", "grad_norm": "repr", "lr": "repr"},
        nan_text="nan", writer=write_trl, options={"trainer": "dpo", "variant": "float"}, render=_hf_render("float"),
        oracle=_oracle_hf, train_step_of=_s, eval_step_of=_e_after_train,
        notes="A DPO loss starts at ln 2 = 0.6931 (margin 0): that is not a collapse to chance."),
    "axolotl": FormatSpec(
        tool="axolotl", source=_HF_SOURCE + "; axolotl-ai-cloud/axolotl logging config '[%(asctime)s] [%(levelname)s] "
                                            "[%(name)s.%(funcName)s:%(lineno)d] [PID:%(process)d] [RANK:%(rank)d] %(message)s' and "
                                            "memory/max_mem_active(gib), memory/max_mem_allocated(gib), memory/device_mem_reserved(gib)",
        roles=_HF_ROLES, step=_HF_STEP,
        rounding={"train_loss": "round(v, 4) then repr", "eval_loss": "repr", "grad_norm": "repr", "lr": "repr"},
        nan_text="nan", writer=write_axolotl, render=_hf_render("float"), oracle=_oracle_hf,
        train_step_of=_s, eval_step_of=_e_after_train),
    "fairseq_simple": FormatSpec(
        tool="fairseq (simple progress bar)",
        source="facebookresearch/fairseq fairseq/logging/progress_bar.py SimpleProgressBar.log: logger.info(\"{}:  {:5d} / {:d} "
               "{}\".format(self.prefix, self.i + 1, self.size, postfix)) with postfix = ', '.join(key + '=' + value) and "
               "prefix 'epoch {:03d}'; print(): logger.info(\"{} | {}\".format(self.prefix, ' | '.join(key + ' ' + value))); "
               "format_stat: '{:g}'.format(stat); logger renamed to the tag (train_inner / train / valid); fairseq_cli/train.py "
               "format '%(asctime)s | %(levelname)s | %(name)s | %(message)s'",
        roles={"train_loss": "loss", "eval_loss": "loss (on a 'valid' line)", "grad_norm": "gnorm", "lr": "lr"},
        step="'num_updates=N' among the stats (updates done); 'epoch 001:  k / K' counts batches of the epoch; the split "
             "is the logger name column ('train_inner', 'valid', 'train' = end-of-epoch averages)",
        rounding={"train_loss": "'{:g}' of round(v, 3)", "eval_loss": "'{:g}' of round(v, 3)", "grad_norm": "'{:g}' of round(v, 3)",
                  "lr": "'{:g}' (6 significant digits)"},
        nan_text="'nan'", writer=write_fairseq, options={"log_format": "simple", "updates_per_epoch": 25},
        render={"train_loss": lambda v: _fq(v), "eval_loss": lambda v: _fq(v), "grad_norm": lambda v: _fq(v),
                "lr": lambda v: _fq(v, None)},
        oracle=_oracle_fairseq, train_step_of=_s, eval_step_of=_e_after_train,
        notes="Losses are in bits (base 2): ln K becomes log2 K; ppl = 2**loss."),
    "fairseq_json": FormatSpec(
        tool="fairseq (--log-format json)",
        source="facebookresearch/fairseq fairseq/logging/progress_bar.py JsonProgressBar.log: logger.info(json.dumps(stats)) "
               "with stats = {'epoch': epoch, 'update': round(epoch - 1 + (i + 1) / size, 3), **{k: format_stat(v)}} (values "
               "are strings); print(): keys prefixed with the tag ('valid_loss', 'train_loss' = epoch average)",
        roles={"train_loss": "loss", "eval_loss": "valid_loss", "grad_norm": "gnorm", "lr": "lr"},
        step="'num_updates' (a string) in the JSON; 'update' is a fractional epoch", rounding={"train_loss": "'{:g}' of round(v, 3)"},
        nan_text="\"nan\" (a JSON string)", writer=write_fairseq, options={"log_format": "json", "updates_per_epoch": 25},
        render={"train_loss": lambda v: _fq(v), "eval_loss": lambda v: _fq(v), "grad_norm": lambda v: _fq(v),
                "lr": lambda v: _fq(v, None)},
        oracle=_oracle_fairseq, train_step_of=_s, eval_step_of=_e_after_train),
    "lightning_tqdm": FormatSpec(
        tool="PyTorch Lightning (TQDMProgressBar)",
        source="Lightning-AI/pytorch-lightning src/lightning/pytorch/callbacks/progress/tqdm_progress.py: BAR_FORMAT = "
               "\"{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]\"; train bar "
               "set_description(f\"Epoch {trainer.current_epoch}\"), reset each epoch; set_postfix(self.get_metrics(...)) = "
               "{'v_num': version, **progress_bar_metrics}; Tqdm.format_num pads floats ('nan.0', '2.310'); validation bar at "
               "position 1 with leave=False",
        roles={"train_loss": "train_loss", "eval_loss": "val_loss", "grad_norm": None, "lr": None},
        step="'Epoch e:' plus the bar's 'n/N' (batches of the epoch): global step = e * N + n; redraws with '\\r', a "
             "nested validation bar writes '\\n'...'\\x1b[A'; val_loss stays in later redraws (stale)",
        rounding={"train_loss": "Lightning format_num", "eval_loss": "Lightning format_num"}, nan_text="'nan.0'",
        writer=write_lightning, options={"steps_per_epoch": 20},
        render={"train_loss": lightning_num, "eval_loss": lightning_num}, oracle=_oracle_lightning,
        train_step_of=_s, eval_step_of=_e_after_train),
    "keras_tf2": FormatSpec(
        tool="Keras (tf.keras 2.x model.fit verbose=1)",
        source="tensorflow/tensorflow tensorflow/python/keras/utils/generic_utils.py Progbar.update: bar = ('%' + str(numdigits) "
               "+ 'd/%d [') % (current, target) + '='*(w-1) + '>' + '.'*(30-w) + ']'; info = ' - %.0fs' % elapsed, ' %.0fms/%s' % "
               "(time_per_unit*1e3, unit_name) or ' - ETA: %s'; per metric ' - %s:' % k + (' %.4f' % avg if abs(avg) > 1e-3 "
               "else ' %.4e' % avg); dynamic display '\\b' * prev_total_width + '\\r', else '\\n'; ProgbarLogger prints "
               "'Epoch %d/%d'",
        roles={"train_loss": "loss", "eval_loss": "val_loss", "grad_norm": None, "lr": None},
        step="'Epoch e/E' on its own line, then 'N/N [====] - 5s 2ms/step' batch counters; one point per epoch (the "
             "finalized line; earlier redraws carry running means)",
        rounding={"train_loss": "%.4f (%.4e when |v| <= 1e-3)", "eval_loss": "same"}, nan_text="'nan'",
        writer=write_keras, options={"variant": "tf2"}, render={"train_loss": keras_num, "eval_loss": keras_num},
        oracle=_oracle_keras, train_step_of=_epoch_of_point, eval_step_of=_eval_epoch, filename="train.txt"),
    "keras3": FormatSpec(
        tool="Keras 3 (model.fit verbose=1)",
        source="keras-team/keras keras/src/utils/progbar.py Progbar.update: bar = f\"\\x1b[1m{count}\\x1b[0m \" + "
               "f\"\\33[32m{'━' * prog_width}\\x1b[0m\" + f\"\\33[37m{'━' * (width - prog_width)}\\x1b[0m\"; info = "
               "f\" \\x1b[1m{eta_format}\\x1b[0m\" or elapsed, + _format_time ' 18ms/step'; per metric f\" - {k}:\" + "
               "(f\" {avg:.4f}\" if abs(avg) > 1e-3 else f\" {avg:.4e}\"); '\\b' * prev_total_width + '\\r' ('posix' in "
               "sys.modules makes the display dynamic even in a file)",
        roles={"train_loss": "loss", "eval_loss": "val_loss", "grad_norm": None, "lr": None},
        step="'Epoch e/E' line, then 'N/N' inside ANSI bold codes; metrics after the bar in the logs' order (accuracy "
             "before loss)", rounding={"train_loss": ".4f (.4e when |v| <= 1e-3)", "eval_loss": "same"}, nan_text="'nan'",
        writer=write_keras, options={"variant": "keras3"}, render={"train_loss": keras_num, "eval_loss": keras_num},
        oracle=_oracle_keras, train_step_of=_epoch_of_point, eval_step_of=_eval_epoch, filename="train.txt"),
    "timm": FormatSpec(
        tool="timm train.py",
        source="huggingface/pytorch-image-models train.py train_one_epoch: _logger.info(f'Train: {epoch} [{update_idx:>4d}/"
               "{updates_per_epoch} ({100. * (update_idx + 1) / updates_per_epoch:>3.0f}%)]  Loss: {loss_now:#.3g} ({loss_avg:#.3g})  "
               "Time: {update_time_m.val:.3f}s, {rate:>7.2f}/s  ({avg:.3f}s, {rate_avg:>7.2f}/s)  LR: {lr:.3e}  Data: "
               "{data_time_m.val:.3f} ({data_time_m.avg:.3f})'); validate: f'{log_name}: [{batch_idx:>4d}/{last_idx}]  Time: "
               "{batch_time_m.val:.3f} ({batch_time_m.avg:.3f})  Loss: {losses_m.val:>7.3f} ({losses_m.avg:>6.3f})  Acc@1: "
               "{top1_m.val:>7.3f} ({top1_m.avg:>7.3f})  Acc@5: {top5_m.val:>7.3f} ({top5_m.avg:>7.3f})' (log_name 'Test'); "
               "INFO lines print bare (FormatterNoInfo)",
        roles={"train_loss": "Loss (first value; the parenthesised one is the epoch's running mean)",
               "eval_loss": "Loss average on the last 'Test: [ N/N]' line", "grad_norm": None, "lr": "LR"},
        step="'Train: E [ i/U ( p%)]' = epoch and update index in the epoch (global step = E * U + i + 1); 'Test: [ b/B]' "
             "counts eval batches, not training steps: the eval belongs to the preceding epoch",
        rounding={"train_loss": "#.3g (keeps trailing zeros: 2.00)", "eval_loss": ">6.3f", "lr": ".3e"}, nan_text="'nan'",
        writer=write_timm, options={"updates_per_epoch": 20},
        render={"train_loss": _f("#.3g"), "eval_loss": _f(".3f"), "lr": _f(".3e")}, oracle=_oracle_timm,
        train_step_of=_s, eval_step_of=lambda c, j: (c.eval_steps[j] - 1) // 20 if c.eval_steps[j] > 0 else NOT_PRINTED),
    "ultralytics_stdout": FormatSpec(
        tool="YOLO / ultralytics (console)",
        source="ultralytics/ultralytics ultralytics/engine/trainer.py: LOGGER.info(self.progress_string()) = ('\\n' + '%11s' * "
               "(4 + len(loss_names))) % ('Epoch', 'GPU_mem', *loss_names, 'Instances', 'Size'); pbar.set_description(('%11s' * 2 "
               "+ '%11.4g' * (2 + loss_length)) % (f'{epoch + 1}/{self.epochs}', f'{self._get_memory():.3g}G', *tloss, "
               "batch['cls'].shape[0], batch['img'].shape[-1])); validator rows ('%22s' + '%11i' * 2 + '%11.3g' * 4)",
        roles={"train_loss": "box_loss (column under the header; also cls_loss, dfl_loss)", "eval_loss": None,
               "grad_norm": None, "lr": None},
        step="'e/E' in the first column of the values row (one point per epoch; the row is the bar's description, "
             "redrawn with '\\r', the 100% redraw holds the epoch mean); names only in the header line above",
        rounding={"train_loss": "%11.4g"}, nan_text="'nan'", writer=write_ultralytics_stdout,
        render={"train_loss": _f(".4g")}, oracle=_oracle_yolo_stdout, train_step_of=_epoch_of_point,
        eval_step_of=_no_step, filename="train.txt"),
    "ultralytics_csv_padded": FormatSpec(
        tool="YOLO / ultralytics results.csv (8.0-8.2)",
        source="ultralytics/ultralytics ultralytics/engine/trainer.py save_metrics: s = ('%23s,' * n % tuple(['epoch'] + "
               "keys)).rstrip(',') + '\\n' (header); ('%23.5g,' * n % tuple([self.epoch + 1] + vals)).rstrip(',')",
        roles={"train_loss": "train/box_loss", "eval_loss": "val/box_loss", "grad_norm": None, "lr": "lr/pg0"},
        step="column 'epoch' (1-based); names and values are right-aligned in 23 characters (leading spaces)",
        rounding={"train_loss": "%23.5g", "eval_loss": "%23.5g", "lr": "%23.5g"}, nan_text="'nan' (padded)",
        writer=write_ultralytics_csv, options={"variant": "padded"},
        render={k: (lambda v: ("%23.5g" % v).strip()) for k in ("train_loss", "eval_loss", "lr")},
        oracle=_oracle_yolo_csv, train_step_of=_epoch_of_point, eval_step_of=_eval_epoch, filename="results.csv"),
    "ultralytics_csv_plain": FormatSpec(
        tool="YOLO / ultralytics results.csv (8.3)",
        source="ultralytics/ultralytics ultralytics/engine/trainer.py save_metrics: ('%s,' * n % tuple(['epoch', 'time'] + "
               "keys)).rstrip(','); ('%.6g,' * n % tuple([self.epoch + 1, t] + vals)).rstrip(',')",
        roles={"train_loss": "train/box_loss", "eval_loss": "val/box_loss", "grad_norm": None, "lr": "lr/pg0"},
        step="column 'epoch'; a 'time' column (seconds since start) follows it",
        rounding={"train_loss": "%.6g", "eval_loss": "%.6g", "lr": "%.6g"}, nan_text="'nan'",
        writer=write_ultralytics_csv, options={"variant": "plain"},
        render={k: (lambda v: "%.6g" % v) for k in ("train_loss", "eval_loss", "lr")},
        oracle=_oracle_yolo_csv, train_step_of=_epoch_of_point, eval_step_of=_eval_epoch, filename="results.csv"),
    "mmengine": FormatSpec(
        tool="MMEngine / MMDetection / MMPretrain",
        source="open-mmlab/mmengine mmengine/runner/log_processor.py get_log_after_iter: log_str = f'Epoch({mode}){cur_epoch_str}"
               "[{cur_iter_str}/{dataloader_len}]  ' (epoch right-aligned in len(str(max_epochs)) + 3); lr items f'{key}: "
               "{value:.{num_digits}e}' joined by ' '; f'eta: {eta_str}  time: {..:.4f}  data_time: {..:.4f}  '; f'memory: "
               "{max_memory}  '; other items f'{name}: {val:.4f}' joined by '  '; get_log_after_epoch: f'Epoch({mode}) "
               "[{cur_epoch}][{dataloader_len}/{dataloader_len}]  ' + '  ' + metrics; MMLogger '%(asctime)s - %(name)s - "
               "%(levelname)s - %(message)s' (datefmt '%Y/%m/%d %H:%M:%S')",
        roles={"train_loss": "loss", "eval_loss": None, "grad_norm": "grad_norm", "lr": "lr"},
        step="'Epoch(train)  [e][ i/N]' = epoch and 1-based iteration in the epoch (global = (e - 1) * N + i); "
             "'Iter(train) [ i/N]' when by_epoch=False",
        rounding={"train_loss": ".4f", "grad_norm": ".4f", "lr": ".4e"}, nan_text="'nan'", writer=write_mmengine,
        options={"iters_per_epoch": 20}, render={"train_loss": _f(".4f"), "grad_norm": _f(".4f"), "lr": _f(".4e")},
        oracle=_oracle_mmengine, train_step_of=_s, eval_step_of=_no_step,
        notes="The val line carries metrics (accuracy/top1, coco/bbox_mAP), no loss; eta may read '1 day, 2:03:04'."),
    "custom_pipes": FormatSpec(
        tool="research code: 'Epoch e | Step s | key=value'", source="hand-written: print(f'Epoch {epoch} | Step {step} | "
                                                                      "loss={loss:.4f} | grad_norm={gn:.3f} | lr={lr:.1e}')",
        roles={"train_loss": "loss", "eval_loss": "val_loss", "grad_norm": "grad_norm", "lr": "lr"},
        step="'Step s' (updates done) after 'Epoch e'", rounding={"train_loss": ".4f", "eval_loss": ".4f", "grad_norm": ".3f", "lr": ".1e"},
        nan_text="'nan'", writer=write_custom, options={"style": "pipes"},
        render={"train_loss": _f(".4f"), "eval_loss": _f(".4f"), "grad_norm": _f(".3f"), "lr": _f(".1e")},
        oracle=_simple_oracle(r"^Epoch \d+ \| Step (\d+) \| loss=(\S+) \|", r"^Epoch \d+ \| Step (\d+) \| val_loss=(\S+) \|",
                              gn=r"^Epoch \d+ \| Step (\d+) \| .*grad_norm=(\S+) \|", lr=r"^Epoch \d+ \| Step (\d+) \| .*lr=(\S+)$"),
        train_step_of=_s, eval_step_of=_e_after_train),
    "custom_brackets": FormatSpec(
        tool="research code: '[step s] loss: v'", source="hand-written: logging.info(f'[step {step}] loss: {loss:.4f} "
                                                         "grad_norm: {gn:.3f} lr: {lr:.2e}') with a '%(asctime)s INFO' prefix",
        roles={"train_loss": "loss", "eval_loss": "eval loss", "grad_norm": "grad_norm", "lr": "lr"},
        step="'[step s]'", rounding={"train_loss": ".4f", "eval_loss": ".4f", "grad_norm": ".3f", "lr": ".2e"},
        nan_text="'nan'", writer=write_custom, options={"style": "brackets"},
        render={"train_loss": _f(".4f"), "eval_loss": _f(".4f"), "grad_norm": _f(".3f"), "lr": _f(".2e")},
        oracle=_simple_oracle(r"\[step (\d+)\] loss: (\S+) ", r"\[step (\d+)\] eval loss: (\S+)$",
                              gn=r"\[step (\d+)\] loss: .* grad_norm: (\S+) ", lr=r"\[step (\d+)\] loss: .* lr: (\S+)$"),
        train_step_of=_s, eval_step_of=_e_after_train),
    "custom_pydict": FormatSpec(
        tool="research code: print(dict)", source="hand-written: print({'step': step, 'epoch': epoch, 'loss': loss, 'lr': lr, "
                                                  "'grad_norm': gn, 'tokens_seen': n}) (Python repr: nan, inf)",
        roles={"train_loss": "loss", "eval_loss": "val_loss", "grad_norm": "grad_norm", "lr": "lr"},
        step="'step' key", rounding={k: "repr (full precision)" for k in ("train_loss", "eval_loss", "grad_norm", "lr")},
        nan_text="nan (bare)", writer=write_custom, options={"style": "pydict"},
        render={k: _repr for k in ("train_loss", "eval_loss", "grad_norm", "lr")},
        oracle=_simple_oracle(r"\{'step': (\d+), 'epoch': \d+, 'loss': ([^,]+),", r"\{'step': (\d+), 'val_loss': ([^,]+),",
                              gn=r"\{'step': (\d+), .*'grad_norm': ([^,]+),", lr=r"\{'step': (\d+), .*'lr': ([^,]+),"),
        train_step_of=_s, eval_step_of=_e_after_train),
    "custom_json": FormatSpec(
        tool="research code: print(json.dumps(...))", source="hand-written: print(json.dumps({'step': step, 'train/loss': loss, "
                                                             "'train/grad_norm': gn, 'train/lr': lr, 'time': t})) (NaN, Infinity)",
        roles={"train_loss": "train/loss", "eval_loss": "eval/loss", "grad_norm": "train/grad_norm", "lr": "train/lr"},
        step="'step' key", rounding={k: "json.dumps (repr)" for k in ("train_loss", "eval_loss", "grad_norm", "lr")},
        nan_text="NaN (Infinity for inf)", writer=write_custom, options={"style": "json"},
        render={k: json.dumps for k in ("train_loss", "eval_loss", "grad_norm", "lr")},
        oracle=_simple_oracle(r'"step": (\d+), "train/loss": ([^,]+),', r'"step": (\d+), "eval/loss": ([^,}]+)',
                              gn=r'"step": (\d+), .*"train/grad_norm": ([^,]+),', lr=r'"step": (\d+), .*"train/lr": ([^,]+),'),
        train_step_of=_s, eval_step_of=_e_after_train),
})


def write(name: str, path: Path, curve: Curve) -> Path:
    """Write `curve` in format `name` with the options its registry entry was checked with."""
    spec = FORMATS[name]
    return spec.writer(path, curve, **spec.options)


_EVERY_STEP = {"llmc_stdout", "llmc_mainlog", "llmc_cpu", "build_nanogpt_stdout", "build_nanogpt_logtxt", "modded_nanogpt_2024",
               "modded_nanogpt_2025", "parameter_golf", "nanogpt"}
_PER_EPOCH = {"keras_tf2", "keras3", "ultralytics_stdout", "ultralytics_csv_padded", "ultralytics_csv_plain"}


def example_curve(name: str, *, diverge: bool = True) -> Curve:
    """A curve that suits format `name`'s logging cadence (every step for the speedrun-style scripts, one point per
    epoch for Keras/YOLO, epochs of 20 updates for timm/MMEngine), with an fp16-style inf spike and a NaN divergence
    at the end when `diverge`."""
    nan = (lambda n: n - 5) if diverge else (lambda n: None)
    if name in _EVERY_STEP:
        return make_curve(80, every=1, eval_every=10, eval_at_zero=True, nan_from=nan(80), inf_at=30 if diverge else None)
    if name in _PER_EPOCH:
        return make_curve(55, every=1, start=2.3, end=0.3, eval_every=1, nan_from=nan(55), inf_at=20 if diverge else None)
    if name in ("timm", "mmengine"):
        return make_curve(60, every=5, start=2.3, end=0.4, eval_every=4, nan_from=nan(60), inf_at=20 if diverge else None)
    if name == "trl_dpo":
        return make_curve(60, every=10, start=0.6931, end=0.25, nan_from=nan(60), inf_at=20 if diverge else None)
    return make_curve(60, every=10, nan_from=nan(60), inf_at=20 if diverge else None)
