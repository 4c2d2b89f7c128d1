"""Whole-process speed and peak memory: steadytrain vs runmedic 0.1.1, same files, same run.

    python benchmarks/bench_peers.py [--data benchmarks/data/peers] [--steps 1000000] [--repeat 3]
                                     [--formats tensorboard,lightning_csv,jsonl,trainer_state,megatron,mlflow,
                                                mlflow_db,periodic]

Generates (once, into --data, git-ignored) one run of --steps steps in each format a training job
writes: a TensorBoard event file (train/loss, train/grad_norm, train/lr, every step; the bytes
PyTorch's SummaryWriter writes), Lightning's CSVLogger metrics.csv, a JSONL log (``{"step", "loss",
"grad_norm"}`` a line), HF Trainer's trainer_state.json (``log_history`` every step, indent 2 as the
Trainer saves it), a Megatron-LM stdout log (its training_log lines), an MLflow file store run
(``mlruns/``) and an MLflow SQLite store (``mlflow.db``, MLflow's schema) with one run; plus ``periodic``, a
TensorBoard run whose loss has a fast periodic component (period 50 steps) on top of its decay.

Each tool runs as a whole process, the way a user runs it: ``python -m analyzer.cli inspect FILE
--no-cache`` and ``python -m runmedic diagnose FILE``, in A/B pairs (the order alternates between
pairs so machine noise hits both alike); the table gives the median wall time of --repeat pairs,
the ratio (runmedic / steadytrain: > 1 is steadytrain faster) and each process's peak RSS (from
``wait4``). The machine is shared: the load average is printed, and only same-run ratios count.
Both run from bytecode, as a pip install leaves a package: steadytrain's tree is compiled first
(``--no-bytecode`` times it compiling its modules in every process instead).
For ``periodic`` steadytrain's read and diagnosis times are also measured apart (in one process).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_text import megatron_line  # noqa: E402
from probes.events import encode_scalar_event, frame_record  # noqa: E402

FORMATS = ("tensorboard", "lightning_csv", "jsonl", "trainer_state", "megatron", "mlflow", "mlflow_db", "periodic")
MLFLOW_TAGS = ("train/loss", "train/grad_norm", "lr")
TB_TAGS = ("train/loss", "train/grad_norm", "train/lr")


def _loss(step: int, steps: int, rng: random.Random, period: int = 0) -> float:
    loss = 2.5 * math.exp(-step / (steps / 3 + 1)) + 0.1 + 0.02 * rng.random()
    if period:
        loss += 0.3 * math.sin(2 * math.pi * step / period)
    return loss


# ---- TensorBoard: the probes' event writer (checked against protobuf below), framed as RecordWriter does ----

def _event(wall: float, step: int, tag: str, value: float) -> bytes:
    return encode_scalar_event(wall, step, {tag: value})


def _check_event_bytes() -> None:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    for step in (0, 1, 300, 1_000_000):
        want = Event(wall_time=1.7e9 + step, step=step,
                     summary=Summary(value=[Summary.Value(tag="train/loss", simple_value=0.5)])).SerializeToString()
        assert _event(1.7e9 + step, step, "train/loss", 0.5) == want, step


def write_tensorboard(directory: Path, steps: int, period: int = 0) -> Path:
    _check_event_bytes()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "events.out.tfevents.1700000000.bench.0.0"
    rng = random.Random(0)
    tags = list(TB_TAGS)
    with open(path, "wb") as fh:
        fh.write(frame_record(b"\x09" + struct.pack("<d", 1.7e9) + b"\x1a\x0dbrain.Event:2"))
        chunk: list[bytes] = []
        for step in range(steps):
            wall = 1.7e9 + step * 0.01
            for tag, value in zip(tags, (_loss(step, steps, rng, period), 1.0 + rng.random(), 1e-3)):
                chunk.append(frame_record(_event(wall, step, tag, value)))
            if len(chunk) >= 30_000:
                fh.write(b"".join(chunk))
                chunk = []
        fh.write(b"".join(chunk))
    return path


def write_lightning_csv(directory: Path, steps: int) -> Path:
    """CSVLogger's metrics.csv: every step a train row (epoch, step, loss, grad norm, lr); hparams.yaml beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(directory / "metrics.csv", "w") as fh:
        fh.write("epoch,grad_norm,lr-Adam,step,train_loss\n")
        fh.writelines(f"{step // 10_000},{1.0 + rng.random()},0.001,{step},{_loss(step, steps, rng)}\n"
                      for step in range(steps))
    (directory / "hparams.yaml").write_text("lr: 0.001\nbatch_size: 32\n")
    return directory / "metrics.csv"


def write_jsonl(path: Path, steps: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(path, "w") as fh:
        fh.writelines(json.dumps({"step": step, "loss": round(_loss(step, steps, rng), 6),
                                  "grad_norm": round(1 + rng.random(), 4)}) + "\n" for step in range(steps))
    return path


def write_trainer_state(directory: Path, steps: int) -> Path:
    """trainer_state.json as Trainer.save_state writes it (json.dumps(indent=2, sort_keys=True)), logging every step."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    history = [{"epoch": round(step / steps, 4), "grad_norm": 1.0 + rng.random(), "learning_rate": 5e-05,
                "loss": round(_loss(step, steps, rng), 4), "step": step} for step in range(1, steps + 1)]
    state = {"best_metric": None, "best_model_checkpoint": None, "epoch": 1.0, "eval_steps": 500,
             "global_step": steps, "is_hyper_param_search": False, "is_local_process_zero": True,
             "is_world_process_zero": True, "log_history": history, "logging_steps": 1, "max_steps": steps,
             "num_input_tokens_seen": 0, "num_train_epochs": 1, "save_steps": 500, "stateful_callbacks": {},
             "total_flos": 0.0, "train_batch_size": 8, "trial_name": None, "trial_params": None}
    path = directory / "trainer_state.json"
    path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    return path


def _mlflow_points(steps: int) -> Iterator[tuple[str, int, float, int]]:
    """(tag, wall ms, value, step) of an MLflow run logging loss, grad norm and LR every step, tag by tag."""
    rng = random.Random(0)
    loss = [_loss(step, steps, rng) for step in range(steps)]
    for tag in MLFLOW_TAGS:
        for step in range(steps):
            value = loss[step] if tag == "train/loss" else 1 + rng.random() if tag == "train/grad_norm" else 3e-4
            yield tag, 1_700_000_000_000 + 100 * step, value, step


def write_mlflow_file_store(root: Path, steps: int) -> Path:
    """An ``mlruns/`` file store run as MLflow's FileStore writes it: ``metrics/<key>`` lines of
    ``timestamp value step`` (a '/' in a key is a sub-folder), ``params/<key>``, ``meta.yaml``."""
    run = root / "mlruns" / "1" / "0123456789abcdef0123456789abcdef"
    (run / "params").mkdir(parents=True, exist_ok=True)
    (run / "params" / "lr").write_text("0.0003")
    (run / "meta.yaml").write_text("run_id: 0123456789abcdef0123456789abcdef\nexperiment_id: '1'\nstatus: 3\n")
    handles: dict[str, Any] = {}
    for tag, wall, value, step in _mlflow_points(steps):
        if tag not in handles:
            (run / "metrics" / tag).parent.mkdir(parents=True, exist_ok=True)
            handles[tag] = open(run / "metrics" / tag, "w")
        handles[tag].write(f"{wall} {value} {step}\n")
    for fh in handles.values():
        fh.close()
    return root / "mlruns"


def write_mlflow_db(path: Path, steps: int) -> Path:
    """An ``mlflow.db`` with MLflow's own schema (that of the store MLflow 3.7.0 wrote for the tests, emptied)
    holding one run, its rows inserted as MLflow's SQL store inserts them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(ROOT / "tests" / "data" / "mlflow_db" / "mlflow.db.gz", "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    con = sqlite3.connect(path)
    for table in ("metrics", "latest_metrics", "params", "tags", "runs"):
        con.execute(f"DELETE FROM {table}")
    uuid = "0123456789abcdef0123456789abcdef"
    con.execute("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
                "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
                "VALUES (?, 'bench', 'LOCAL', '', '', 'bench', 'FINISHED', 0, 0, '', 'active', '', 1)", (uuid,))
    con.execute("INSERT INTO params (key, value, run_uuid) VALUES ('lr', '0.0003', ?)", (uuid,))
    con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)",
                    ((tag, value, wall, uuid, step) for tag, wall, value, step in _mlflow_points(steps)))
    con.commit()
    con.execute("VACUUM")
    con.close()
    return path


def write_megatron(path: Path, steps: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(path, "w") as fh:
        fh.write("using world size: 8, data-parallel size: 8, tensor-model-parallel size: 1\n")
        for lo in range(1, steps + 1, 20_000):
            fh.write("".join(megatron_line(it, steps, rng) for it in range(lo, min(lo + 20_000, steps + 1))))
    return path


def make(fmt: str, data: Path, steps: int) -> Path:
    """The file of ``fmt``, written on first use by a child process: a process's peak RSS (``ru_maxrss``) survives
    fork and exec, so a parent grown by writing a 150 MB JSON would lend its size to every tool it starts."""
    done = data / f"{fmt}_{steps}" / ".done"
    if not done.exists():
        subprocess.run([sys.executable, __file__, "--make", fmt, "--data", str(data), "--steps", str(steps)],
                       check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return Path(done.read_text())


def _write(fmt: str, data: Path, steps: int) -> None:
    where = data / f"{fmt}_{steps}"
    done = where / ".done"
    writers = {
        "tensorboard": lambda: write_tensorboard(where, steps),
        "periodic": lambda: write_tensorboard(where, steps, period=50),
        "lightning_csv": lambda: write_lightning_csv(where / "version_0", steps),
        "jsonl": lambda: write_jsonl(where / "metrics.jsonl", steps),
        "trainer_state": lambda: write_trainer_state(where / "out", steps),
        "megatron": lambda: write_megatron(where / "train.log", steps),
        "mlflow": lambda: write_mlflow_file_store(where, steps),
        "mlflow_db": lambda: write_mlflow_db(where / "mlflow.db", steps),
    }
    t0 = time.perf_counter()
    path = writers[fmt]()
    done.write_text(str(path))
    print(f"  wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s", flush=True)


# ---- running the tools ----

def command(tool: str, path: Path) -> list[str]:
    if tool == "steadytrain":
        return [sys.executable, "-m", "analyzer.cli", "inspect", str(path), "--no-cache", "--no-progress"]
    return [sys.executable, "-m", "runmedic", "diagnose", str(path)]


def run_once(tool: str, path: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit status) of one whole process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen(command(tool, path), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        print(f"  {tool} exited {proc.returncode} on {path}: {err.strip()[-300:]}", flush=True)
    return wall, usage.ru_maxrss / 1024, proc.returncode


PHASES = r'''
import json, sys, time
from pathlib import Path
from analyzer.config import AnalysisConfig
from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.pipeline import diagnose_run
t0 = time.perf_counter(); c0 = time.process_time()
runs, _ = load_runs([Path(sys.argv[1])], LoadOptions(cache_dir=None))
t1 = time.perf_counter(); c1 = time.process_time()
for run in runs:
    diagnose_run(run, AnalysisConfig())
t2 = time.perf_counter(); c2 = time.process_time()
print(json.dumps({"read_s": t1 - t0, "diagnose_s": t2 - t1, "diagnose_cpu_s": c2 - c1}))
'''


def phases(path: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", PHASES, str(path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def size_mb(path: Path) -> float:
    """A file's size, or the size of every file under a folder (an MLflow file store)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def bytecode(compiled: bool) -> str:
    """Give steadytrain's tree its bytecode (``compileall``, what ``pip install`` does for a package) or take it
    away; say which. runmedic runs from the bytecode its pip install wrote. Without this, on a machine that sets
    PYTHONDONTWRITEBYTECODE=1 (this one), an editable checkout compiles its ~90 modules in every process."""
    packages = [ROOT / name for name in ("analyzer", "reporters")]
    if compiled:
        subprocess.run([sys.executable, "-m", "compileall", "-q", *map(str, packages)], check=True,
                       stdout=subprocess.DEVNULL)
        return "steadytrain: with bytecode (compileall, as pip install leaves it); runmedic: its installed bytecode"
    for package in packages:
        for cache in package.rglob("__pycache__"):
            shutil.rmtree(cache)
    return "steadytrain: no bytecode (every process compiles its modules); runmedic: its installed bytecode"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE / "data" / "peers")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--no-bytecode", action="store_true",
                    help="time steadytrain compiling its modules in every process (no __pycache__), as a checkout "
                         "on a machine with PYTHONDONTWRITEBYTECODE=1 does")
    ap.add_argument("--make", choices=FORMATS, help=argparse.SUPPRESS)  # the child that writes one file
    args = ap.parse_args()
    if args.make:
        _write(args.make, args.data, args.steps)
        return
    formats = [f for f in args.formats.split(",") if f]
    try:
        import runmedic
        peer = f"runmedic {runmedic.__version__}"
    except ImportError:
        sys.exit("runmedic is not installed: pip install runmedic==0.1.1")
    print(f"load average before: {os.getloadavg()}; peer: {peer}; {os.cpu_count()} CPUs", flush=True)
    files = {fmt: make(fmt, args.data, args.steps) for fmt in formats}
    print(bytecode(compiled=not args.no_bytecode), flush=True)
    import resource
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"this process's peak RSS: {own:.0f} MiB (a child's peak cannot read below it)", flush=True)
    rows = []
    for fmt in formats:
        path = files[fmt]
        times: dict[str, list[float]] = {"steadytrain": [], "runmedic": []}
        peaks: dict[str, list[float]] = {"steadytrain": [], "runmedic": []}
        for r in range(args.repeat):
            for tool in (("steadytrain", "runmedic") if r % 2 == 0 else ("runmedic", "steadytrain")):
                wall, peak, _ = run_once(tool, path)
                times[tool].append(wall)
                peaks[tool].append(peak)
        st, rm = statistics.median(times["steadytrain"]), statistics.median(times["runmedic"])
        row = {"format": fmt, "MB": size_mb(path), "steadytrain_s": st, "runmedic_s": rm,
               "ratio": rm / st, "steadytrain_peak_mib": max(peaks["steadytrain"]),
               "runmedic_peak_mib": max(peaks["runmedic"]), "load": os.getloadavg()[0]}
        if fmt == "periodic":
            row.update(phases(path))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nload average after: {os.getloadavg()}\n")
    print("| format | MB | steadytrain s | runmedic s | ratio | peak MiB steadytrain / runmedic (ratio) | load |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        extra = (f" (read {r['read_s']:.1f} s, diagnose {r['diagnose_s']:.1f} s wall / {r['diagnose_cpu_s']:.1f} s CPU)"
                 if "read_s" in r else "")
        print(f"| {r['format']}{extra} | {r['MB']:.0f} | {r['steadytrain_s']:.2f} | {r['runmedic_s']:.2f} | "
              f"**{r['ratio']:.1f}x** | {r['steadytrain_peak_mib']:.0f} / {r['runmedic_peak_mib']:.0f} "
              f"({r['steadytrain_peak_mib'] / r['runmedic_peak_mib']:.2f}) | {r['load']:.1f} |")


if __name__ == "__main__":
    main()
