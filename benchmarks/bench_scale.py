"""Scale: diagnose 1,000 runs x 10,000 steps (< 20 s, linear in points) and render their report (< 60 s, < 25 MB).

    python benchmarks/bench_scale.py [--runs 1000] [--steps 10000] [--data benchmarks/data/scale]

The runs are Lightning-style metrics.csv files (train_loss_step, grad_norm, lr-Adam per step) with curves
drawn from the shapes the detectors judge: 70% stable, 10% early spikes, 10% mid-training spikes, 10%
diverging. Timings: diagnosis alone on runs already in memory (and at half the steps, for linearity), then
`steadytrain report` end to end in a subprocess.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make(out: Path, runs: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(steps)
    for i in range(runs):
        loss = 0.3 + 2.0 * np.exp(-t / (steps / 5)) * np.exp(0.03 * rng.standard_normal(steps))
        grad = (1.0 + 0.5 * np.exp(-t / 300)) * np.exp(0.2 * rng.standard_normal(steps))
        kind = i % 10
        if kind == 1:
            loss[3:9] *= 3.0
            grad[3:9] *= 20
        elif kind == 2:
            at = steps // 2 + i
            loss[at:at + 200] *= np.linspace(4, 1, 200)
            grad[at - 2] *= 15
        elif kind == 3:
            loss[int(steps * 0.7):] = np.nan
        d = out / f"run_{i:04d}" / "version_0"
        d.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"epoch": t // 1000, "step": t, "train_loss_step": loss, "grad_norm": grad,
                      "lr-Adam": np.full(steps, 1e-3)}).write_csv(d / "metrics.csv")


def diagnose_in_memory(path: Path) -> tuple[float, int]:
    from analyzer.config import AnalysisConfig
    from analyzer.ingest.load import LoadOptions, load_runs
    from analyzer.pipeline import diagnose_run

    runs, _ = load_runs([path], LoadOptions(cache_dir=None))
    cfg = AnalysisConfig()
    t0, c0 = time.perf_counter(), time.process_time()
    for r in runs:
        diagnose_run(r, cfg)
    # CPU time beside wall time: on a shared 2-core machine the wall time also measures the neighbours
    print(f"diagnose {len(runs)} runs: {time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU",
          file=sys.stderr)
    return time.perf_counter() - t0, sum(r.n_points for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "scale")
    args = ap.parse_args()
    full, half = args.data / f"{args.runs}x{args.steps}", args.data / f"{args.runs}x{args.steps // 2}"
    if not full.exists():
        make(full, args.runs, args.steps)
    if not half.exists():
        make(half, args.runs, args.steps // 2)
    t_full, n_full = diagnose_in_memory(full)
    t_half, n_half = diagnose_in_memory(half)
    out = args.data / "report.html"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "analyzer.cli", "report", str(full), "-o", str(out), "--no-cache",
                           "--json", str(args.data / "report.json")], capture_output=True, text=True, cwd=ROOT)
    t_report = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    size = out.stat().st_size / 1e6
    res = {"runs": args.runs, "steps": args.steps, "points": n_full, "diagnose_s": t_full,
           "diagnose_half_s": t_half, "points_half": n_half, "linearity": (t_full / n_full) / (t_half / n_half),
           "report_end_to_end_s": t_report, "report_mb": size}
    print(json.dumps(res))
    table = ("| runs x steps | points | diagnose (in memory) | at half the steps | time/point ratio full:half | "
             "`steadytrain report` end to end | HTML size |\n|---|---|---|---|---|---|---|\n"
             f"| {args.runs} x {args.steps:,} | {n_full:,} | {t_full:.1f} s | {t_half:.1f} s | "
             f"{res['linearity']:.2f} | {t_report:.1f} s | {size:.1f} MB |")
    print(table)
    (ROOT / "benchmarks" / "results_scale.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
