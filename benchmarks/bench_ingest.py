"""Ingestion benchmark: steadytrain vs tbparse vs TensorBoard's EventAccumulator (keep-all), same files, same run.

    python benchmarks/bench_ingest.py [--data benchmarks/data] [--big-steps 1000000] [--runs 200 --steps 10000]
                                      [--repeat 3] [--peers tbparse,event_accumulator]

Each reader runs in a fresh subprocess that reports its wall time, the points it read, and its
peak RSS above its own post-import baseline. Ratios (peer time / steadytrain time) are what to
compare across machines; absolute seconds are noisy here. steadytrain reads with every record's
data CRC checked (its default) and, to measure what that check costs, again with --no-verify-crc;
each of those two is the best of --repeat runs, interleaved so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

READER = r'''
import json, resource, sys, time, glob, os
tool, path, cache = sys.argv[1], sys.argv[2], sys.argv[3]
files = sorted(glob.glob(os.path.join(path, "**", "*tfevents*"), recursive=True))
if tool.startswith("steadytrain"):
    from analyzer.ingest.load import LoadOptions, load_runs
    from pathlib import Path
    opts = LoadOptions(cache_dir=Path(cache) if cache != "-" else None, verify_crc=tool != "steadytrain_nocrc")
elif tool == "tbparse":
    from tbparse import SummaryReader
else:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if tool.startswith("steadytrain"):
    runs, _ = load_runs([path], opts)
    n = sum(r.n_points for r in runs)
elif tool == "tbparse":
    n = 0
    for d in sorted({os.path.dirname(f) for f in files}):
        n += len(SummaryReader(d).scalars)
else:
    n = 0
    for d in sorted({os.path.dirname(f) for f in files}):
        ea = EventAccumulator(d, size_guidance={"scalars": 0})
        ea.Reload()
        n += sum(len(ea.Scalars(t)) for t in ea.Tags()["scalars"])
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tool": tool, "seconds": dt, "points": n, "peak_rss_mb": peak / 1024,
                  "peak_over_baseline_mb": (peak - base) / 1024}))
'''


CRC_SPLIT = r'''
import glob, json, os, sys, time
from analyzer.ingest.tensorboard import read_event_file
path, repeat = sys.argv[1], int(sys.argv[2])
files = sorted(glob.glob(os.path.join(path, "**", "*tfevents*"), recursive=True))
best = {True: float("inf"), False: float("inf")}
for _ in range(repeat):  # interleaved, so that machine noise hits both alike
    for verify in (True, False):
        t0 = time.perf_counter()
        for f in files:
            read_event_file(f, verify_crc=verify)
        best[verify] = min(best[verify], time.perf_counter() - t0)
print(json.dumps({"crc_s": best[True], "nocrc_s": best[False]}))
'''


def crc_split(path: Path, repeat: int) -> dict:
    """Decoding only (no run assembly, no process start-up): with and without the CRC check, best of ``repeat``."""
    out = subprocess.run([sys.executable, "-c", CRC_SPLIT, str(path), str(repeat)], capture_output=True, text=True,
                         cwd=ROOT, env=dict(os.environ, PYTHONWARNINGS="ignore"), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_reader(tool: str, path: Path, cache: str = "-") -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-c", READER, tool, str(path), cache], capture_output=True, text=True,
                         cwd=ROOT, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument("--big-steps", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--peers", default="tbparse,event_accumulator")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs for steadytrain with/without CRC")
    args = ap.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    gen = [sys.executable, str(HERE / "make_logs.py")]
    big, many = args.data / "big", args.data / "many"
    if not big.exists():
        subprocess.run(gen + ["big", str(args.data), "--steps", str(args.big_steps)], check=True)
    if not many.exists():
        subprocess.run(gen + ["many", str(args.data), "--runs", str(args.runs), "--steps", str(args.steps)], check=True)
    rows = []
    for name, path in (("1 run x 3 tags x %d steps" % args.big_steps, big),
                       ("%d runs x 3 tags x %d steps" % (args.runs, args.steps), many)):
        mb = size_mb(path)
        tries: dict[str, list[dict]] = {"steadytrain": [], "steadytrain_nocrc": []}
        for _ in range(args.repeat):
            for tool in tries:
                tries[tool].append(run_reader(tool, path))
        ours = min(tries["steadytrain"], key=lambda r: r["seconds"])
        nocrc = min(tries["steadytrain_nocrc"], key=lambda r: r["seconds"])
        cache = args.data / ".cache"
        shutil.rmtree(cache, ignore_errors=True)
        first = run_reader("steadytrain", path, str(cache))
        again = run_reader("steadytrain", path, str(cache))
        peer_runs = {p: run_reader(p, path) for p in peers}
        for p, r in peer_runs.items():
            assert r["points"] == ours["points"], (p, r["points"], ours["points"])
        assert nocrc["points"] == ours["points"]
        split = crc_split(path, args.repeat)
        print(f"decoding only, best of {args.repeat}: {split['crc_s']:.2f} s with CRC checks, {split['nocrc_s']:.2f} s "
              f"without: {split['crc_s'] / split['nocrc_s'] - 1:+.1%}", flush=True)
        rows.append({"data": name, "file_mb": mb, "points": ours["points"], "steadytrain_s": ours["seconds"],
                     "nocrc_s": nocrc["seconds"],
                     "peak_over_baseline_mb": ours["peak_over_baseline_mb"],
                     "cached_first_s": first["seconds"], "cached_again_s": again["seconds"],
                     **{f"{p}_s": r["seconds"] for p, r in peer_runs.items()}})
        print(json.dumps(rows[-1]), flush=True)
    lines = ["| data | MB | points | steadytrain s (CRC checked) | --no-verify-crc s | CRC cost | "
             + " | ".join(f"{p} s (ratio)" for p in peers)
             + " | peak RSS over baseline / file size | cached re-read / first read |",
             "|---|---|---|---|---|---|" + "---|" * len(peers) + "---|---|"]
    for r in rows:
        peers_txt = " | ".join(f"{r[p + '_s']:.1f} ({r[p + '_s'] / r['steadytrain_s']:.0f}x)" for p in peers)
        crc = r["steadytrain_s"] / r["nocrc_s"] - 1
        lines.append(f"| {r['data']} | {r['file_mb']:.0f} | {r['points']:,} | {r['steadytrain_s']:.2f} | "
                     f"{r['nocrc_s']:.2f} | {crc:+.0%} | {peers_txt} | "
                     f"{r['peak_over_baseline_mb']:.0f} MB / {r['file_mb']:.0f} MB = "
                     f"{r['peak_over_baseline_mb'] / r['file_mb']:.2f}x | {r['cached_again_s']:.2f} / "
                     f"{r['cached_first_s']:.2f} s = {r['cached_again_s'] / r['cached_first_s']:.0%} |")
    table = "\n".join(lines)
    print(table)
    (HERE / "results_ingest.md").write_text(f"<!-- {time.strftime('%Y-%m-%d %H:%M')} -->\n" + table + "\n")


if __name__ == "__main__":
    main()
