"""One long run: diagnose a single 1,000,000-point loss whose value repeats every ~44 steps.

    python benchmarks/bench_long_run.py [--points 1000000]

The worst case measured in issue 19: the per-epoch check (analyzer/detect/checks/periodic.py) once
looked at every candidate period point by point and took 51 s of CPU here. Prints the CPU time of
`diagnose_run` on a run already in memory, after one small warm-up run (reading is benchmarked in
bench_ingest.py and bench_peers.py), and its verdict.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.config import AnalysisConfig  # noqa: E402
from analyzer.engine import diagnose_run  # noqa: E402
from analyzer.roles import assign_roles  # noqa: E402
from analyzer.types import Run  # noqa: E402


def long_periodic_run(points: int) -> Run:
    rng = np.random.default_rng(0)
    t = np.arange(points)
    loss = (0.5 + 2 * np.exp(-t / 50_000)) * (1 + 0.3 * np.sin(t / 7.0)) * np.exp(0.02 * rng.standard_normal(points))
    frame = pl.DataFrame(
        {"tag": ["train/loss"] * points, "step": t.astype(np.int64), "wall_time": np.zeros(points), "value": loss}
    )
    return Run("long", "tensorboard", (), frame, {}, (), assign_roles({"train/loss": points}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    args = parser.parse_args()
    run = long_periodic_run(args.points)
    diagnose_run(long_periodic_run(1_000), AnalysisConfig())  # the lazy imports and first-call set-up, not timed
    start = time.process_time()
    diagnosis, _ = diagnose_run(run, AnalysisConfig())
    print(f"{args.points:,} points diagnosed in {time.process_time() - start:.2f} s CPU: {diagnosis.verdict}")


if __name__ == "__main__":
    main()
