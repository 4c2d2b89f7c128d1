"""The corpus again, every run as a training script would have PRINTED it: does reading stdout lose verdicts?

    python -m benchmarks.corpus eval-printed [OUT] [--keep DIR]

Each labeled run of OUT/runs is read (as `eval` reads it), and its train loss, eval loss, grad norm and LR
are re-printed as one stdout file, in one of the layouts real scripts print (chosen per run by a hash of
its id, so every family meets every layout): modded-nanogpt/parameter-golf's `step:N/M train_loss:X`,
llm.c's `-o` log `s:N trl:X`, a research script's `Epoch e | Step s | loss=X | ...`, a logging-module
`[step s] loss: X grad_norm: Y`, and the HF Trainer's printed dicts with its tqdm bar. Each file gets the
preamble and noise such logs carry (an argument dump, warnings, a progress bar). Side files that hold the
run's settings (config.json, hparams.yaml) are copied beside it, as a script's output folder would hold
them, so sweeps are still found. Values are printed the way those scripts round them (4 decimals, or 6
significant digits for small losses). The verdicts are scored with the same labels and splits as
`eval`; the difference to `eval` is what reading printed output costs.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.corpus.evaluate import collect, scores_by_split

_SIDE_FILES = ("config.json", "hparams.yaml", "args.json")

Printer = Callable[[dict[str, tuple[np.ndarray, np.ndarray]], int], list[str]]


def _num(v: float) -> str:
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{v:.4f}" if abs(v) >= 0.01 else f"{v:.6g}"


def _by_step(series: dict[str, tuple[np.ndarray, np.ndarray]], role: str) -> dict[int, float]:
    if role not in series:
        return {}
    steps, values = series[role]
    return dict(zip(steps.tolist(), values.tolist()))


def _speedrun(series: dict[str, tuple[np.ndarray, np.ndarray]], total: int) -> list[str]:
    train, ev = _by_step(series, "train_loss"), _by_step(series, "eval_loss")
    out = [f"train_batch_tokens:524288 iterations:{total} warmup_steps:0 seed:1337\n"]
    for s in sorted(set(train) | set(ev)):
        if s in ev:
            out.append(f"step:{s}/{total} val_loss:{_num(ev[s])} train_time:{s * 43}ms step_avg:43.00ms\n")
        if s in train:
            out.append(f"step:{s}/{total} train_loss:{_num(train[s])} train_time:{s * 43}ms step_avg:43.00ms\n")
    return out


def _llmc(series: dict[str, tuple[np.ndarray, np.ndarray]], total: int) -> list[str]:
    train, ev = _by_step(series, "train_loss"), _by_step(series, "eval_loss")
    gn, lr = _by_step(series, "grad_norm"), _by_step(series, "lr")
    out = []
    for s in sorted(set(train) | set(ev)):
        if s in ev:
            out.append(f"s:{s} tel:{_num(ev[s])}\n")
        if s in train:
            extra = (f" lr:{lr[s]:.6f}" if s in lr else "") + (f" norm:{gn[s]:.2f}" if s in gn else "")
            out.append(f"s:{s} trl:{_num(train[s])}{extra}\n")
    return out


def _pipes(series: dict[str, tuple[np.ndarray, np.ndarray]], total: int) -> list[str]:
    train, ev = _by_step(series, "train_loss"), _by_step(series, "eval_loss")
    gn, lr = _by_step(series, "grad_norm"), _by_step(series, "lr")
    per_epoch = max(1, total // 10)
    out = ["Config: {'model': 'tiny', 'optimizer': 'adamw', 'log_every': 10}\n"]
    for s in sorted(set(train) | set(ev)):
        head = f"Epoch {s // per_epoch + 1} | Step {s}"
        if s in train:
            extra = (f" | grad_norm={gn[s]:.3f}" if s in gn else "") + (f" | lr={lr[s]:.1e}" if s in lr else "")
            out.append(f"{head} | loss={_num(train[s])}{extra}\n")
        if s in ev:
            out.append(f"{head} | val_loss={_num(ev[s])}\n")
    return out


def _logging(series: dict[str, tuple[np.ndarray, np.ndarray]], total: int) -> list[str]:
    train, ev = _by_step(series, "train_loss"), _by_step(series, "eval_loss")
    gn, lr = _by_step(series, "grad_norm"), _by_step(series, "lr")
    out = []
    for k, s in enumerate(sorted(set(train) | set(ev))):
        stamp = f"2024-05-01 12:{k // 60 % 60:02d}:{k % 60:02d},{k % 1000:03d} INFO"
        if s in train:
            extra = (f" grad_norm: {gn[s]:.3f}" if s in gn else "") + (f" lr: {lr[s]:.2e}" if s in lr else "")
            out.append(f"{stamp} [step {s}] loss: {_num(train[s])}{extra}\n")
        if s in ev:
            out.append(f"{stamp} [step {s}] eval loss: {_num(ev[s])}\n")
        if k % 97 == 5:
            out.append(f"{stamp} saved checkpoint to ./ckpt/step_{s}.pt\n")
    return out


def _hf_dicts(series: dict[str, tuple[np.ndarray, np.ndarray]], total: int) -> list[str]:
    train, ev = _by_step(series, "train_loss"), _by_step(series, "eval_loss")
    gn, lr = _by_step(series, "grad_norm"), _by_step(series, "lr")
    out = ["***** Running training *****\n", f"  Total optimization steps = {total}\n"]
    for s in sorted(set(train) | set(ev)):
        pct = int(100 * s / max(total, 1))
        bar = f"\r{pct:3d}%|{'#' * (pct // 10):10s}| {s}/{total} [00:10<00:10,  9.90it/s]"
        if s in train:
            d = {"loss": round(train[s], 4)}
            if s in gn:
                d["grad_norm"] = gn[s]
            if s in lr:
                d["learning_rate"] = lr[s]
            d["epoch"] = round(s / max(total, 1), 2)
            out.append(bar + "\n" + repr(d).replace("nan", "nan") + "\n")
        if s in ev:
            out.append(repr({"eval_loss": round(ev[s], 4), "eval_runtime": 1.2345, "epoch": round(s / max(total, 1), 2)})
                       + "\n")
    return out


LAYOUTS: dict[str, Printer] = {"speedrun": _speedrun, "llmc": _llmc, "pipes": _pipes, "logging": _logging,
                               "hf_dicts": _hf_dicts}


def layout_of(run_id: str) -> str:
    names = sorted(LAYOUTS)
    return names[int(hashlib.sha256(run_id.encode()).hexdigest(), 16) % len(names)]


def reprint(out: Path, dest: Path) -> dict[str, str]:
    """Re-print every run under OUT/runs as stdout under ``dest``; returns run id -> layout."""
    from analyzer.ingest.load import LoadOptions, load_runs

    runs, _ = load_runs([out / "runs"], LoadOptions(cache_dir=None))
    used: dict[str, str] = {}
    for run in runs:
        series = {}
        for role in ("train_loss", "eval_loss", "grad_norm", "lr"):
            tag = getattr(run.roles, role)
            s = run.series(tag) if tag else None
            if s is not None and len(s):
                series[role] = (s.steps, s.values)
        if "train_loss" not in series and "eval_loss" not in series:
            continue
        last = max(int(steps[-1]) for steps, _ in series.values())
        layout = layout_of(run.id)
        src = out / "runs" / run.id
        folder = dest / (run.id if src.is_dir() else str(Path(run.id).parent))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.log").write_text("".join(LAYOUTS[layout](series, last)))
        for d in {src if src.is_dir() else src.parent, (src if src.is_dir() else src.parent).parent}:
            for name in _SIDE_FILES:
                if (d / name).is_file() and not (folder / name).exists():
                    shutil.copy(d / name, folder / name)
        used[run.id] = layout
    return used


def evaluate_printed(out: Path, *, keep: Path | None = None, json_path: Path | None = None) -> str:
    from analyzer.ingest.load import LoadOptions
    from analyzer.pipeline import analyze

    labels = json.loads((out / "labels.json").read_text())
    tmp = Path(tempfile.mkdtemp()) if keep is None else keep
    dest = tmp / "runs"
    if dest.exists():
        shutil.rmtree(dest)
    layouts = reprint(out, dest)
    report = analyze([dest], load_options=LoadOptions(cache_dir=None))
    verdicts = {d.run.id.removesuffix("/train.log"): d.verdict for d in report.diagnoses}
    rows = collect(labels, verdicts)
    counts = {name: sum(1 for v in layouts.values() if v == name) for name in LAYOUTS}
    parts = ["## Detection corpus, every run re-printed as stdout", "",
             "Layouts: " + ", ".join(f"{k} {v}" for k, v in counts.items()), ""]
    result, tables = scores_by_split(labels, rows, report.sweeps, ["tune", "heldout", "all"])
    parts += tables
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=1, default=str))
    if keep is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return "\n".join(parts)
