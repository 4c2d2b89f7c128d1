"""Labeled detection corpus from REAL training runs, and the detector's precision/recall on it.

    python benchmarks/corpus.py build benchmarks/data/corpus      # ~2.5 min on this 2-core machine
    python benchmarks/corpus.py eval  benchmarks/data/corpus      # prints the tables for RESULTS.md

Every run trains a small model with torch on CPU (probes' built-in workloads: residual MLPs with and
without normalization, plain MLPs, a WideResNet-like conv net with BatchNorm, Adam, SGD-momentum and
Nesterov, with/without warmup and clipping, outlier batches, LR sweeps with infeasible trials). The label
comes from the configuration and is then verified against the recorded curve with simple rules written
independently of the detectors (below); runs whose curve does not show what the config was meant to cause
are dropped and counted, never relabeled.
Runs are written in every format the analyzer reads, some with restarts and truncated tails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = ("stable", "early_instability", "mid_instability", "divergence")


@dataclass(frozen=True)
class Config:
    name: str
    label: str
    workload: str
    optimizer: str
    lr: float
    steps: int = 400
    warmup: int = 0
    clip: float | None = None
    seed: int = 0
    fmt: str = "tensorboard"  # tensorboard | lightning | hf | jsonl
    dirty: str = ""  # "" | restart | truncated
    args: tuple = ()
    sweep: str = ""


def configs() -> list[Config]:
    out: list[Config] = []
    fmts = ("tensorboard", "lightning", "jsonl", "hf")
    k = 0

    def add(**kw) -> None:
        nonlocal k
        kw.setdefault("fmt", fmts[k % len(fmts)])
        out.append(Config(name=f"{k:03d}_{kw['label']}", **kw))
        k += 1

    for seed in range(6):
        add(label="stable", workload="early_residual_mlp", optimizer="adam", lr=0.003, seed=seed, args=(("norm", "pre"),))
        add(label="stable", workload="early_residual_mlp", optimizer="adam", lr=0.001, seed=seed)
        add(label="stable", workload="early_residual_mlp", optimizer="adam", lr=0.02, warmup=50, seed=seed)
        add(label="stable", workload="divergent_mlp", optimizer="momentum", lr=0.05, seed=seed)
        add(label="stable", workload="outlier_batches", optimizer="adam", lr=0.003, clip=2.0, seed=seed)
        add(label="early_instability", workload="early_residual_mlp", optimizer="adam", lr=0.02, seed=seed,
            fmt="tensorboard" if seed % 2 else "lightning")
        add(label="early_instability", workload="early_residual_mlp", optimizer="adam", lr=0.03, seed=seed,
            fmt="jsonl" if seed % 2 else "tensorboard")
        add(label="mid_instability", workload="outlier_batches", optimizer="adam", lr=0.003, seed=seed)
        add(label="mid_instability", workload="outlier_batches", optimizer="momentum", lr=0.03, seed=seed)
        add(label="divergence", workload="divergent_mlp", optimizer="momentum", lr=10.0, seed=seed)
        add(label="divergence", workload="divergent_mlp", optimizer="momentum", lr=30.0, warmup=300, seed=seed)
    # a WideResNet-like conv net with BatchNorm (Nesterov): early instability at lr 2 that warmup removes
    for seed in range(4):
        add(label="stable", workload="wide_resnet", optimizer="nesterov", lr=0.3, seed=seed)
        add(label="stable", workload="wide_resnet", optimizer="nesterov", lr=2.0, warmup=20, seed=seed)
        add(label="early_instability", workload="wide_resnet", optimizer="nesterov", lr=2.0, seed=seed)
    # dirty logs: the same kinds of runs, restarted or cut off
    add(label="stable", workload="early_residual_mlp", optimizer="adam", lr=0.003, seed=7, args=(("norm", "pre"),),
        fmt="tensorboard", dirty="restart")
    add(label="early_instability", workload="early_residual_mlp", optimizer="adam", lr=0.02, seed=7,
        fmt="tensorboard", dirty="truncated")
    add(label="mid_instability", workload="outlier_batches", optimizer="adam", lr=0.003, seed=7, fmt="jsonl",
        dirty="restart")
    add(label="stable", workload="divergent_mlp", optimizer="momentum", lr=0.05, seed=7, fmt="tensorboard",
        dirty="truncated")
    # LR sweeps (constant LR): lr* and infeasible trials
    for sweep, (wl, opt, lrs) in {"sweep_adam": ("early_residual_mlp", "adam", (0.001, 0.003, 0.01, 0.03, 0.1)),
                                  "sweep_sgd": ("divergent_mlp", "momentum", (0.01, 0.03, 0.1, 0.3, 3.0)),
                                  "sweep_wrn": ("wide_resnet", "nesterov", (0.1, 0.3, 1.0, 3.0, 10.0))}.items():
        for lr in lrs:
            out.append(Config(name=f"{sweep}/lr_{lr:g}", label="", workload=wl, optimizer=opt, lr=lr, steps=300,
                              fmt="tensorboard", sweep=sweep))
    return out


# -- label verification, independent of analyzer.detect -----------------------------------------

def verify(label: str, loss: np.ndarray) -> bool:
    """Does the recorded curve show what the configuration was meant to cause?"""
    finite = loss[np.isfinite(loss)]
    if finite.size < 10:
        return label == "divergence" and not np.isfinite(loss).all()
    n = loss.size
    early = max(10, n // 10)
    start = float(np.median(finite[:3]))
    if label == "divergence":
        tail = loss[-max(5, n // 20):]
        return (not np.isfinite(loss[-1])) or float(np.nanmedian(tail)) > 3 * float(np.min(finite))
    recovered = bool(np.isfinite(loss[-1])) and float(np.median(finite[-20:])) < float(loss[0])
    # the largest rise after the early phase that holds for 3 points, against the trailing median
    med = np.array([np.nanmedian(loss[max(0, i - 30):i]) for i in range(early, n - 3)])
    sustained = np.array([np.nanmin(loss[i:i + 3]) for i in range(early, n - 3)])
    rise = float(np.nanmax(sustained / med)) if med.size else 1.0
    if label == "early_instability":  # unstable early, then it recovered, and nothing like it later
        return float(np.nanmax(loss[:early])) > 1.5 * float(loss[0]) and recovered and rise < 1.5
    if label == "mid_instability":
        return rise > 1.5 and recovered
    if label == "stable":
        return (rise < 1.5 and float(np.nanmax(loss[:early])) <= 1.5 * float(loss[0]) and bool(np.isfinite(loss).all())
                and float(np.median(finite[-20:])) < start)
    raise ValueError(label)


# -- writing --------------------------------------------------------------------------------------

def build(out: Path) -> None:
    import torch

    from probes import sample_logs as sl

    torch.set_num_threads(1)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    labels: dict[str, dict] = {}
    dropped: list[dict] = []
    sweep_truth: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for c in configs():
            raw = Path(tmp) / c.name
            sl._trial(c.workload, c.optimizer, c.lr, c.steps, raw, warmup=c.warmup, clip=c.clip, seed=c.seed,
                      eval_interval=25, **dict(c.args))
            series = sl._series(raw)
            loss = series["train/loss"][1]
            if c.sweep:
                ev = series.get("eval/loss", (None, np.array([np.nan])))[1]
                feasible = np.isfinite(loss[-1]) and np.nanmin(loss) < 0.95 * loss[0]
                sweep_truth.setdefault(c.sweep, {})[c.lr] = float(np.nanmin(ev)) if feasible else None
                shutil.copytree(raw, out / c.name)
                continue
            completed = len(loss) == c.steps  # the runner stops runaway trials: not what a non-divergence label means
            if not verify(c.label, loss) or (c.label != "divergence" and not completed):
                dropped.append({"run": c.name, "label": c.label})
                continue
            if c.fmt == "tensorboard":
                target = out / c.name
                shutil.copytree(raw, target)
                ev_file = sorted(target.iterdir())[0]
                if c.dirty == "truncated":
                    data = ev_file.read_bytes()
                    ev_file.write_bytes(data[:-11])
                elif c.dirty == "restart":  # the job restarts from step 150 and re-logs to the end
                    sl._trial(c.workload, c.optimizer, c.lr, c.steps, Path(tmp) / (c.name + "_b"), warmup=c.warmup,
                              clip=c.clip, seed=c.seed, eval_interval=25, **dict(c.args))
                    second = sorted((Path(tmp) / (c.name + "_b")).iterdir())[0]
                    shutil.copy(second, target / second.name.replace("tfevents.", "tfevents.9"))
                run_id = c.name
            elif c.fmt == "lightning":
                sl.write_lightning(series, out / c.name / "version_0", {"lr": c.lr, "optimizer": c.optimizer})
                run_id = f"{c.name}/version_0"
            elif c.fmt == "hf":
                sl.write_hf_state(series, out / c.name, lr=c.lr, logging_steps=1)
                run_id = c.name
            else:
                path = out / c.name / "metrics.jsonl"
                if c.dirty == "restart":
                    sl.write_jsonl_with_restart(series, path, restart_at=300, resume_from=250)
                else:
                    sl.write_jsonl_with_restart(series, path, restart_at=10 ** 9, resume_from=10 ** 9)
                run_id = f"{c.name}/metrics.jsonl"
            labels[run_id] = {"label": c.label, "format": c.fmt, "dirty": c.dirty, "config": c.__dict__}
    truth = {}
    for sweep, per_lr in sweep_truth.items():
        ok = {lr: v for lr, v in per_lr.items() if v is not None}
        truth[sweep] = {"lr_star": min(ok, key=ok.get) if ok else None,
                        "infeasible": sorted(lr for lr, v in per_lr.items() if v is None)}
    (out / "labels.json").write_text(json.dumps({"runs": labels, "dropped": dropped, "sweeps": truth}, indent=1,
                                                default=str))
    print(f"corpus: {len(labels)} labeled runs ({Counter(v['label'] for v in labels.values())}), "
          f"{len(dropped)} dropped by verification, {len(truth)} sweeps -> {out}")


def evaluate(root: Path) -> str:
    from analyzer.ingest.load import LoadOptions
    from analyzer.pipeline import analyze

    meta = json.loads((root / "labels.json").read_text())
    report = analyze([root], load_options=LoadOptions(cache_dir=None))
    pred = {d.run.id: d.verdict for d in report.diagnoses}
    pairs = [(v["label"], pred.get(rid, "missing")) for rid, v in meta["runs"].items()]
    lines = ["| class | n | precision | recall | F1 |", "|---|---|---|---|---|"]
    f1s = []
    for cls in CLASSES:
        tp = sum(1 for t, p in pairs if t == cls and p == cls)
        fp = sum(1 for t, p in pairs if t != cls and p == cls)
        fn = sum(1 for t, p in pairs if t == cls and p != cls)
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / (tp + fn) if tp + fn else float("nan")
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1s.append(f1)
        lines.append(f"| {cls} | {tp + fn} | {prec:.2f} | {rec:.2f} | {f1:.2f} |")
    stable = [(t, p) for t, p in pairs if t == "stable"]
    false_alarm = sum(1 for _, p in stable if p != "stable") / max(len(stable), 1)
    em = [(t, p) for t, p in pairs if t in ("early_instability", "mid_instability")]
    confused = sum(1 for t, p in em if {t, p} == {"early_instability", "mid_instability"}) / max(len(em), 1)
    confusion = Counter(pairs)
    sweeps_ok = []
    for name, truth in meta["sweeps"].items():
        got = next((s for s in report.sweeps if all(r.startswith(name + "/") for r in s.runs)), None)
        sweeps_ok.append((name, truth["lr_star"], got.best_lr if got else None, got.edge_of_instability if got else None))
    text = "\n".join(lines) + (
        f"\n\nmacro-F1 {np.mean(f1s):.3f} · false alarms on stable runs {false_alarm:.1%} ({len(stable)} runs) · "
        f"early/mid confusion {confused:.1%} ({len(em)} runs) · {len(meta['dropped'])} configured runs dropped by "
        "label verification\n\nConfusion (label -> verdict): "
        + ", ".join(f"{t} -> {p}: {n}" for (t, p), n in sorted(confusion.items()) if t != p) +
        "\n\nSweeps (lr* expected / found / edge): " + "; ".join(f"{n}: {a} / {b} / {e}" for n, a, b, e in sweeps_ok))
    mistakes = [(rid, v["label"], pred.get(rid)) for rid, v in meta["runs"].items() if pred.get(rid) != v["label"]]
    if mistakes:
        text += "\n\nMisjudged runs: " + ", ".join(f"{r} ({t} -> {p})" for r, t, p in mistakes)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("build", "eval"))
    ap.add_argument("root", type=Path, nargs="?", default=ROOT / "benchmarks" / "data" / "corpus")
    args = ap.parse_args()
    if args.action == "build":
        build(args.root)
    else:
        print(evaluate(args.root))


if __name__ == "__main__":
    main()
