"""Logs in an object store, read sequentially and with ``--executor ray``: time, bytes downloaded, driver memory.

    python benchmarks/bench_remote.py [--small 10000] [--small-steps 200] [--large 100] [--large-steps 50000]

A local S3 endpoint (moto's server, in its own process on a loopback port) holds two datasets, written once
to benchmarks/data/remote/ and uploaded with s3fs:
- ``small``: Lightning-style metrics.csv runs (loss, grad norm, LR per step; 70% stable, 10% early spikes,
  10% mid-training spikes, 10% diverging), one run per folder;
- ``large``: TensorBoard event files of 3 tags, in the bytes SummaryWriter writes (benchmarks/make_logs.py).
For each dataset, each configuration runs `analyze()` in a fresh subprocess (its peak RSS is the driver's own;
Ray's workers are other processes), JSON only (the HTML is drawn on the driver either way):
- ``seq cold``: local executor, empty cache: everything downloaded, decoded, judged;
- ``seq warm``: the same again: nothing downloaded (the mirror is current), every run from the run cache;
- ``seq analysis`` / ``ray analysis``: the mirror kept, every decode and run cache entry removed: reading and
  judging everything, in this process or as Ray tasks on a local 2-CPU Ray instance (ray.init timed apart: a
  cluster is already up). The ratio compares the analysis: listing and downloading run on the driver either way,
  and moto, not our code, bounds them on this machine (the endpoint's own rate with s3fs alone is measured too).
The JSON of ``ray analysis`` must equal ``seq analysis``'s (except the time it was created): the script checks it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "benchmarks" / "data" / "remote"
BUCKET = "bench"


def make_small(out: Path, runs: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(steps)
    for i in range(runs):
        loss = 0.3 + 2.0 * np.exp(-t / (steps / 5)) * np.exp(0.03 * rng.standard_normal(steps))
        grad = (1.0 + 0.5 * np.exp(-t / 30)) * np.exp(0.2 * rng.standard_normal(steps))
        kind = i % 10
        if kind == 1:
            loss[3:6] *= 3.0
            grad[3:6] *= 20
        elif kind == 2:
            at = steps // 2 + i % 20
            loss[at:at + 20] *= np.linspace(4, 1, 20)
            grad[at - 2] *= 15
        elif kind == 3:
            loss[int(steps * 0.7):] = np.nan
        d = out / f"run_{i:05d}" / "version_0"
        d.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"epoch": t // 100, "step": t, "train_loss_step": loss, "grad_norm": grad,
                      "lr-Adam": np.full(steps, 1e-3)}).write_csv(d / "metrics.csv")


def make_large(out: Path, runs: int, steps: int) -> None:
    from benchmarks.make_logs import write_run

    for i in range(runs):
        write_run(str(out / f"run_{i:03d}"), steps, i)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_endpoint() -> tuple[subprocess.Popen, dict[str, str]]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, env
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


def upload(local: Path, prefix: str) -> float:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    t = time.perf_counter()
    fs.put(str(local), f"{BUCKET}/{prefix}", recursive=True)
    return time.perf_counter() - t


# ---- one configuration, in its own process -----------------------------------------------------------------

class _Grab(logging.Handler):
    """Keeps what the mirror and the Ray executor log (their log records carry the numbers)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.mirror: Any = None
        self.busy: float | None = None
        self.cpu: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "analyzer.ingest.remote" and record.args:
            self.mirror = record.args[0]  # type: ignore[index]
        elif record.name == "analyzer.distributed" and "tasks busy" in str(record.msg):
            self.busy = float(record.args[2])  # type: ignore[index]
            self.cpu = float(record.args[3])  # type: ignore[index]


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    """This process's peak RSS. Not getrusage's ru_maxrss: Linux carries it over from the parent across
    fork+exec, so a child would report the benchmark driver's own peak."""
    return _rss_mb("VmHWM:")


def one(url: str, executor: str, cache: str, json_out: str) -> None:
    from analyzer.ingest.load import LoadOptions
    from analyzer.ingest.remote import MirrorStats
    from analyzer.pipeline import analyze
    from reporters.json_report import report_dict

    grab = _Grab()
    for name in ("analyzer.ingest.remote", "analyzer.distributed"):
        logging.getLogger(name).addHandler(grab)
        logging.getLogger(name).setLevel(logging.INFO)
    init = 0.0
    if executor == "ray":
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        init = time.perf_counter() - t
        time.sleep(8)  # Ray's own processes busy both cores for seconds after init; a running cluster is past that
    rss0 = _peak_rss_mb()
    t = time.perf_counter()
    load = os.getloadavg()[0]
    opts = LoadOptions(cache_dir=None if cache == "-" else Path(cache), workers=1)
    report = analyze([url], load_options=opts, executor=executor)  # type: ignore[arg-type]
    wall = time.perf_counter() - t
    rss_after = _rss_mb("VmRSS:")  # what the Report holds (the JSON built next is the peak's other part)
    data = report_dict(report)
    data.pop("created")
    Path(json_out).write_text(json.dumps(data, sort_keys=True))
    per_run = len(pickle.dumps(report.diagnoses)) / max(1, len(report.diagnoses))
    m = grab.mirror or MirrorStats()  # a local path: nothing mirrored
    print(json.dumps({
        "load_before": load, "wall": wall, "ray_init": init, "runs": len(report.diagnoses),
        "verdicts": {v: sum(1 for d in report.diagnoses if d.verdict == v) for v in sorted({d.verdict for d in report.diagnoses})},
        "mirror_s": m.seconds, "bytes": m.bytes, "downloaded": m.downloaded, "unchanged": m.unchanged,
        "objects": m.objects, "busy": grab.busy, "cpu": grab.cpu, "rss_after_analyze_mb": rss_after, "rss_mb": _peak_rss_mb(),
        "rss_before_mb": rss0, "diagnosis_bytes_per_run": per_run}))


def run_one(env: dict[str, str], url: str, executor: str, cache: Path, json_out: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "_one", url, executor, str(cache), str(json_out)],
                          capture_output=True, text=True, env={**os.environ, **env, "POLARS_MAX_THREADS": "2"},
                          cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


def _clear_caches(cache: Path) -> None:
    """Forget every decoded file and run, keep the mirror: the next run reads and judges everything again."""
    for p in cache.iterdir() if cache.exists() else ():
        if p.name != "remote":
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def endpoint_rate(name: str, sample: int = 1000) -> float:
    """Objects per second that s3fs alone fetches from the endpoint (its own concurrent batch GET): the ceiling."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    keys = sorted(fs.find(f"{BUCKET}/{name}"))[:sample]
    t = time.perf_counter()
    fs.cat(keys)
    return len(keys) / (time.perf_counter() - t)


def remote_runs(env: dict[str, str], name: str, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Cold (empty cache) and warm (the same again) sequential runs against the endpoint."""
    url, cache = f"s3://{BUCKET}/{name}", work / name
    shutil.rmtree(cache, ignore_errors=True)
    rows = []
    for label in ("seq cold", "seq warm"):
        out = run_one(env, url, "local", cache, work / f"{name}_remote.json")
        out.update(label=label, dataset=name)
        rows.append(out)
        print(json.dumps(out), flush=True)
    return rows[0], rows[1]


def executor_runs(env: dict[str, str], name: str, local: Path, work: Path, repeat: int) -> dict[str, list[dict]]:
    """Reading and judging everything (no cache), in this process and as Ray tasks, interleaved ``repeat`` times
    on the same files (the downloaded copy: listing and fetching run on the driver either way)."""
    rows: dict[str, list[dict]] = {"local": [], "ray": []}
    for rep in range(repeat):
        for executor in ("local", "ray"):
            out = run_one(env, str(local), executor, Path("-"), work / f"{name}_{executor}.json")
            out.update(label=f"{executor} #{rep + 1}", dataset=name, json=_digest(work / f"{name}_{executor}.json"))
            rows[executor].append(out)
            print(json.dumps(out), flush=True)
        if rows["local"][-1]["json"] != rows["ray"][-1]["json"]:
            raise SystemExit(f"{name}: the Ray executor's JSON differs from the local path's")
    print(f"{name}: ray JSON == sequential JSON (every repeat)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--small-steps", type=int, default=200)
    ap.add_argument("--large", type=int, default=100)
    ap.add_argument("--large-steps", type=int, default=50_000)
    ap.add_argument("--only", choices=("small", "large"))
    ap.add_argument("--repeat", type=int, default=2, help="interleaved local/ray repeats of the executor comparison")
    ap.add_argument("--skip-remote", action="store_true", help="only the executor comparison (no endpoint)")
    args = ap.parse_args()
    sets = {"small": (args.small, args.small_steps, make_small), "large": (args.large, args.large_steps, make_large)}
    work = DATA / "work"
    work.mkdir(parents=True, exist_ok=True)
    proc, env = (None, {}) if args.skip_remote else start_endpoint()
    os.environ.update(env)
    remote_rows, exec_rows = [], []
    try:
        for name, (runs, steps, make) in sets.items():
            if args.only and name != args.only:
                continue
            local = DATA / f"{name}_{runs}x{steps}"
            if not local.exists():
                t = time.perf_counter()
                make(local, runs, steps)
                print(f"{name}: wrote {runs} runs x {steps} steps in {time.perf_counter() - t:.1f} s", flush=True)
            size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
            if not args.skip_remote:
                took = upload(local, name)
                print(f"{name}: uploaded {size / 1e6:.1f} MB in {took:.1f} s", flush=True)
                rate = endpoint_rate(name)
                print(f"{name}: s3fs alone fetches {rate:.0f} objects/s from the endpoint", flush=True)
                cold, warm = remote_runs(env, name, work)
                remote_rows.append(
                    f"| {name} | {runs:,} x {steps:,} | {size / 1e6:.0f} | {cold['wall']:.1f} | {cold['mirror_s']:.1f} "
                    f"({cold['objects'] / cold['mirror_s']:.0f} objects/s; s3fs alone {rate:.0f}/s) "
                    f"| {warm['wall']:.1f} | {warm['mirror_s']:.1f} | {warm['bytes']:,} of {cold['bytes']:,} "
                    f"| {cold['rss_mb']:.0f} |")
            ex = executor_runs(env, name, local, work, args.repeat)
            seq = min(r["wall"] for r in ex["local"])
            ray = min(r["wall"] for r in ex["ray"])
            best = min(ex["ray"], key=lambda r: r["wall"])
            loads = ", ".join(f"{r['load_before']:.1f}" for r in ex["local"] + ex["ray"])
            exec_rows.append(
                f"| {name} | {runs:,} x {steps:,} | {seq:.1f} | {ray:.1f} (init {best['ray_init']:.1f}) "
                f"| **{seq / ray:.2f}x** | {best['cpu']:.1f} / {best['busy']:.1f} "
                f"| {1e3 * seq / runs:.1f} / {1e3 * best['cpu'] / runs:.1f} "
                f"| {min(r['rss_after_analyze_mb'] for r in ex['local']):.0f} / {best['rss_after_analyze_mb']:.0f} "
                f"| {min(r['rss_mb'] for r in ex['local']):.0f} / {best['rss_mb']:.0f} "
                f"| {ex['local'][0]['diagnosis_bytes_per_run'] / 1e3:.1f} / {best['diagnosis_bytes_per_run'] / 1e3:.1f} "
                f"| {loads} |")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
    print("\n".join(["", "object store (sequential):"] + remote_rows + ["", "executors (no cache, local copy):"]
                    + exec_rows))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        one(*sys.argv[2:6])
    else:
        main()
