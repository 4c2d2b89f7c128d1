"""W&B offline run reading speed: `read_wandb_run` on run files written by wandb itself.

    python benchmarks/bench_wandb.py [--calls 100000] [--repeat 3] [--data benchmarks/data/wandb]

Two runs are written once (offline, in a child process: no network) and kept under --data:
- ``plain``: ``wandb.log({"train/loss", "grad_norm", "lr"})`` per call, an eval loss every 100 calls;
- ``stepmetric``: the HF Trainer's / Lightning's way, ``define_metric("*", step_metric="train/global_step")``
  and the global step logged in each row.

Each is read --repeat times in this process (page-cached file, imports excluded), best time; MB/s is the run
file's size over that time. Then the parts of one read are timed apart: the chunk framing, protobuf
``Record.FromString`` of every record, and the history items walked into points.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from analyzer.ingest.wandb_run import _run_files, read_wandb_run  # noqa: E402

_WRITE = textwrap.dedent("""
    import math, sys
    import wandb

    calls = int(sys.argv[1])
    run = wandb.init(project="bench", id="plain", name="plain", config={"lr": 3e-4})
    for i in range(calls):
        row = {"train/loss": 2.0 + 8.0 * math.exp(-i / 20000) + 0.01 * math.sin(i), "grad_norm": 1.0 + (i % 7) / 10,
               "lr": 3e-4 * min(1.0, i / 2000)}
        if i % 100 == 99:
            row["eval/loss"] = row["train/loss"] + 0.1
        wandb.log(row)
    wandb.finish()
    run = wandb.init(project="bench", id="stepmetric", name="stepmetric", config={"lr": 3e-4})
    wandb.define_metric("train/global_step")
    wandb.define_metric("*", step_metric="train/global_step", step_sync=True)
    for i in range(calls):
        wandb.log({"train/loss": 2.0 + 8.0 * math.exp(-i / 20000), "train/grad_norm": 1.0 + (i % 7) / 10,
                   "train/learning_rate": 3e-4, "train/global_step": 10 * i})
    wandb.finish()
""")


def _runs(data: Path, calls: int) -> dict[str, Path]:
    root = data / f"calls_{calls}"
    found = {p.name.rsplit("-", 1)[1]: p for p in (root / "wandb").glob("offline-run-*")}
    if sorted(found) == ["plain", "stepmetric"]:
        return found
    root.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "WANDB_MODE": "offline",
           "WANDB_DIR": str(root), "WANDB_SILENT": "true", "WANDB_CONSOLE": "off", "WANDB_DISABLE_GIT": "true"}
    print(f"writing two offline runs of {calls:,} log calls with wandb (once) ...", flush=True)
    subprocess.run([sys.executable, "-c", _WRITE, str(calls)], env=env, cwd=root, check=True)
    return {p.name.rsplit("-", 1)[1]: p for p in (root / "wandb").glob("offline-run-*")}


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _parts(folder: Path) -> str:
    """Where one read's time goes: framing, decoding every record, turning history records into points."""
    from analyzer.ingest import wandb_run

    pb = wandb_run._load_protos()
    data = _run_files(folder)[0].read_bytes()
    t0 = time.perf_counter()
    raws = list(wandb_run._records(data, wandb_run._Framing()))
    t1 = time.perf_counter()
    records = [pb.Record.FromString(r) for r in raws]
    t2 = time.perf_counter()
    history = wandb_run._History(source="x", typed="value" in pb.HistoryItem.DESCRIPTOR.oneofs_by_name)
    for r in records:
        if r.WhichOneof("record_type") == "history":
            history.add(r.history)
        elif r.WhichOneof("record_type") == "metric":
            history.step_metrics.define(r.metric)
    t3 = time.perf_counter()
    return (f"framing {t1 - t0:.2f} s ({len(raws):,} records), FromString {t2 - t1:.2f} s, history items -> "
            f"points {t3 - t2:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, default=HERE / "data" / "wandb")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    for name, folder in sorted(_runs(args.data, args.calls).items()):
        mb = sum(p.stat().st_size for p in _run_files(folder)) / 1e6
        t, got = _best(lambda f=folder: read_wandb_run(f), args.repeat)
        points = got[0]  # type: ignore[index]
        print(f"{name:10s} {mb:6.1f} MB  {len(points.values):>9,} points  {t:6.2f} s  {mb / t:6.1f} MB/s  |  "
              f"{_parts(folder)}", flush=True)


if __name__ == "__main__":
    main()
