"""W&B offline run reading speed: `read_wandb_run` on run files written by wandb itself, the fast path
(the default: `wandb_columns`) next to the exact path (``exact=True``: protobuf for every record).

    python benchmarks/bench_wandb.py [--calls 100000] [--repeat 3] [--data benchmarks/data/wandb]

Two runs are written once (offline, in a child process: no network) and kept under --data:
- ``plain``: ``wandb.log({"train/loss", "grad_norm", "lr"})`` per call, an eval loss every 100 calls;
- ``stepmetric``: the HF Trainer's / Lightning's way, ``define_metric("*", step_metric="train/global_step")``
  and the global step logged in each row.

Each is read --repeat times by each path in this process (page-cached file, imports excluded), best time;
MB/s is the run file's size over that time; the two readings are checked equal. Then the parts of one
read are timed apart: for the exact path the chunk framing, protobuf ``Record.FromString`` of every
record, and the history items walked into points; for the fast path (`wandb_fast.read_fast`) the
vectorised framing, the columns (`wandb_columns.decode`, batch by batch) and the rest (records read
exactly, columns turned into points; each part timed on its own, best of --repeat).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from analyzer.ingest import wandb_columns, wandb_fast, wandb_framing, wandb_history, wandb_run  # noqa: E402
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


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _exact_parts(data: bytes, pb: Any) -> str:
    """Where one exact read's time goes: framing, decoding every record, history records into points."""
    t0 = time.perf_counter()
    raws = list(wandb_framing.records(data, wandb_framing.Framing()))
    t1 = time.perf_counter()
    records = [pb.Record.FromString(r) for r in raws]
    t2 = time.perf_counter()
    typed = "value" in pb.HistoryItem.DESCRIPTOR.oneofs_by_name
    history = wandb_history.History(source="x", typed=typed)
    for r in records:
        if r.WhichOneof("record_type") == "history":
            history.add(r.history)
        elif r.WhichOneof("record_type") == "metric":
            history.step_metrics.define(r.metric)
    t3 = time.perf_counter()
    return (f"framing {t1 - t0:.2f} s ({len(raws):,} records), FromString {t2 - t1:.2f} s, history items -> "
            f"points {t3 - t2:.2f} s")


def _fast_parts(data: bytes, pb: Any, repeat: int) -> str:
    """Where one fast read's time goes: framing, the columns (batch by batch, as `read_fast` decodes
    them), the rest (records read exactly, columns turned into points)."""
    layout = wandb_columns.layout(pb)
    assert layout is not None
    t_frame, framed = _best(lambda: wandb_framing.frame(data), repeat)
    n, batch = framed.starts.size, wandb_fast._BATCH

    def columns() -> list:
        return [wandb_columns.decode(framed.part(lo, lo + batch), layout) for lo in range(0, n, batch)]

    t_columns, parts = _best(columns, repeat)
    history = wandb_history.History
    t_all, _ = _best(lambda: wandb_fast.read_fast(data, pb, history(source="x", typed=True), {}), repeat)
    kinds = np.sum([np.bincount(p.kind, minlength=3) for p in parts], axis=0)
    return (f"read_fast {t_all:.2f} s: framing {t_frame:.2f} s, columns {t_columns:.2f} s "
            f"({kinds[wandb_columns.HISTORY]:,} history and {kinds[wandb_columns.SUMMARY]:,} summary records read "
            f"fast, {kinds[wandb_columns.SLOW]:,} exactly), the rest (exact records, points) "
            f"~{max(0.0, t_all - t_frame - t_columns):.2f} s")


def _same(a: Any, b: Any) -> bool:
    pa, pb_ = a[0], b[0]
    arrays = [(x.dtype, x.tobytes()) for x in (pa.tag_codes, pa.steps, pa.wall_times, pa.values)]
    others = [(x.dtype, x.tobytes()) for x in (pb_.tag_codes, pb_.steps, pb_.wall_times, pb_.values)]
    return pa.tags == pb_.tags and arrays == others and a[1:] == b[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, default=HERE / "data" / "wandb")
    args = ap.parse_args()
    pb = wandb_run._load_protos()
    for name, folder in sorted(_runs(args.data, args.calls).items()):
        print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
        mb = sum(p.stat().st_size for p in _run_files(folder)) / 1e6
        t_exact, exact = _best(partial(read_wandb_run, folder, exact=True), args.repeat)
        t_fast, fast = _best(partial(read_wandb_run, folder), args.repeat)
        assert _same(exact, fast), f"{name}: the fast path read something else"
        points = fast[0]
        data = _run_files(folder)[0].read_bytes()
        print(f"{name:10s} {mb:6.1f} MB  {len(points.values):>9,} points  exact {t_exact:6.2f} s "
              f"{mb / t_exact:6.1f} MB/s  fast {t_fast:6.2f} s {mb / t_fast:6.1f} MB/s  ({t_exact / t_fast:.1f}x)\n"
              f"    exact: {_exact_parts(data, pb)}\n    fast:  {_fast_parts(data, pb, args.repeat)}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
