"""Poll time of `steadytrain watch` (analyzer.live.Watcher) over 1,000 growing runs, vs new points per poll.

    python benchmarks/bench_watch.py [--runs 1000] [--history 1000] [--kind tb,jsonl] [--dir DIR] [--workers 1,0]

Each run starts with --history steps of three tags (loss, grad norm, LR) as TensorBoard event files
(SummaryWriter's bytes, benchmarks/make_logs.py) or JSONL lines. Then, per row: append k steps to every
run (or to 10 runs) and time one poll, split into listing (scandir + stat of every file), reading (the
new bytes/lines, frames rebuilt) and judging (`diagnose_run` of each changed run); plus a poll where
nothing changed. For comparison, `analyze()` of the same grown directory (what re-running `inspect`
every interval would cost: unchanged runs from the run cache, grown ones read whole and re-judged).
``--workers 1,0``: the whole benchmark once per setting (1: judged in this process; 0: in one worker
process per core once 32 or more runs changed, the default). CPU is this process's only (the workers'
is not counted).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tensorboard.compat.proto.event_pb2 import Event  # noqa: E402
from tensorboard.compat.proto.summary_pb2 import Summary  # noqa: E402
from tensorboard.summary.writer.record_writer import RecordWriter  # noqa: E402

from analyzer import LoadOptions, analyze  # noqa: E402
from analyzer.live import Watcher  # noqa: E402

TAGS = ("train/loss", "train/grad_norm", "train/lr")
TEMPLATES = 10  # distinct curves, copied: writing 3M protos one by one would take minutes


def _value(step: int, rng: random.Random, total: int) -> tuple[float, float, float]:
    loss = 2.5 * math.exp(-step / (total / 3 + 1)) + 0.1 + 0.02 * rng.random()
    return loss, 1.0 + rng.random(), 1e-3


def _tb_bytes(start: int, stop: int, seed: int, total: int, header: bool) -> bytes:
    rng = random.Random(seed * 7919 + start)
    sink = io.BytesIO()
    writer = RecordWriter(sink)
    if header:
        writer.write(Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString())
    for step in range(start, stop):
        for tag, value in zip(TAGS, _value(step, rng, total)):
            ev = Event(wall_time=1.7e9 + step, step=step, summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)]))
            writer.write(ev.SerializeToString())
    return sink.getvalue()


def _jsonl_bytes(start: int, stop: int, seed: int, total: int) -> bytes:
    rng = random.Random(seed * 7919 + start)
    return "".join(json.dumps(dict(zip(("step", "loss", "grad_norm", "lr"), (s, *_value(s, rng, total))))) + "\n"
                   for s in range(start, stop)).encode()


def log_file(root: Path, kind: str, i: int) -> Path:
    return root / kind / f"run_{i:04d}" / ("events.out.tfevents.1700000000.bench.0" if kind == "tb" else "log.jsonl")


def make(root: Path, kind: str, runs: int, history: int) -> None:
    blobs = [(_tb_bytes(0, history, t, 10 * history, True) if kind == "tb" else _jsonl_bytes(0, history, t, 10 * history))
             for t in range(TEMPLATES)]
    for i in range(runs):
        path = log_file(root, kind, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blobs[i % TEMPLATES])


def grow(root: Path, kind: str, runs: list[int], start: int, k: int, history: int) -> None:
    blobs = [(_tb_bytes(start, start + k, t, 10 * history, False) if kind == "tb"
              else _jsonl_bytes(start, start + k, t, 10 * history)) for t in range(TEMPLATES)]
    for i in runs:
        with open(log_file(root, kind, i), "ab") as fh:
            fh.write(blobs[i % TEMPLATES])


def timed_poll(w: Watcher) -> tuple[object, float]:
    """A poll and the CPU time it took (this process: on a shared machine, less disturbed than wall time)."""
    c0 = time.process_time()
    r = w.poll()
    return r, time.process_time() - c0


def row(label: str, got: tuple[object, float], n_changed: int) -> dict:
    r, cpu = got
    return {"case": label, "runs_changed": n_changed, "new_points": r.new_points, "poll_s": r.seconds,  # type: ignore[attr-defined]
            "cpu_s": cpu, "list_s": r.list_seconds, "read_s": r.read_seconds,  # type: ignore[attr-defined]
            "judge_s": r.judge_seconds, "reloaded": r.reloaded, "load": os.getloadavg()[0],  # type: ignore[attr-defined]
            "judged_in": "workers" if r.parallel else "here"}  # type: ignore[attr-defined]


def bench(root: Path, kind: str, runs: int, history: int, workers: int) -> list[dict]:
    cache = root / f"cache_{kind}"
    t = time.perf_counter()
    make(root, kind, runs, history)
    print(f"# {kind}: made {runs} runs x {history} steps in {time.perf_counter() - t:.1f} s", flush=True)
    w = Watcher([root / kind], load_options=LoadOptions(cache_dir=cache, workers=workers))
    rows = [row("first poll (cold: read and judge everything)", timed_poll(w), runs)]
    print(json.dumps(rows[-1]), flush=True)
    rows.append(min((row("no change", timed_poll(w), 0) for _ in range(3)), key=lambda x: x["poll_s"]))
    print(json.dumps(rows[-1]), flush=True)
    step = history
    everyone = list(range(runs))
    for k, who in ((1, everyone), (10, everyone), (100, everyone), (10, everyone[:10]), (100, everyone[:10])):
        grow(root, kind, who, step, k, history)
        label = f"+{k} step(s) to {'every run' if who is everyone else f'{len(who)} runs'}"
        rows.append(row(label, timed_poll(w), len(who)))
        print(json.dumps(rows[-1]), flush=True)
        if who is everyone:
            step += k
        else:  # the others catch up, so every run has the same steps again
            grow(root, kind, everyone[10:], step, k, history)
            w.poll()
            step += k
    grow(root, kind, everyone, step, 10, history)
    t, c0 = time.perf_counter(), time.process_time()
    analyze([root / kind], load_options=LoadOptions(cache_dir=cache))
    w.close()
    rows.append({"case": "+10 steps to every run, analyze() instead (inspect each interval)", "runs_changed": runs,
                 "poll_s": time.perf_counter() - t, "cpu_s": time.process_time() - c0, "load": os.getloadavg()[0]})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--history", type=int, default=1000)
    ap.add_argument("--kind", default="tb,jsonl")
    ap.add_argument("--dir", type=Path, help="work directory (default: a temporary one, removed after)")
    ap.add_argument("--workers", default="0", help="comma-separated LoadOptions.workers settings to run (1: no pool)")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_watch_"))
    try:
        for kind in args.kind.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                rows = bench(root, kind, args.runs, args.history, workers)
                print(f"\n{kind}: {args.runs} runs x {args.history} steps x 3 tags, then growing; workers={workers} "
                      f"({os.cpu_count()} cores)\n")
                print("| poll | runs changed | new points | poll (wall) | CPU (this process) | list | read | judge "
                      "| judged in | re-read | load avg |")
                print("|---|---|---|---|---|---|---|---|---|---|---|")
                for r in rows:
                    if "list_s" in r:
                        print(f"| {r['case']} | {r['runs_changed']:,} | {r['new_points']:,} | {r['poll_s']:.3f} s | "
                              f"{r['cpu_s']:.3f} s | {r['list_s']:.3f} s | {r['read_s']:.3f} s | {r['judge_s']:.3f} s | "
                              f"{r['judged_in']} | {r['reloaded']} | {r['load']:.1f} |")
                    else:
                        print(f"| {r['case']} | {r['runs_changed']:,} | | {r['poll_s']:.3f} s | {r['cpu_s']:.3f} s "
                              f"| | | | | | {r['load']:.1f} |")
                shutil.rmtree(root / kind, ignore_errors=True)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
