"""Build the corpus: train every run (and its control) once, verify, write, label.

Incremental per family: OUT/families/<family>.json holds a family's labels and the fingerprint of
its specs; a family is rebuilt when it is named with --families, or when its fingerprint changed
or it was never built. Trained Records are cached by their training fingerprint in OUT/.records/,
so changing how a family is logged or verified does not retrain it (--retrain does). Rebuilding one
family never touches another family's directory or records.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus import families as F
from benchmarks.corpus.spec import CLASSES, RunSpec
from benchmarks.corpus.summary import write_summary
from benchmarks.corpus.train import Record

#: Bump when train.py changes what a spec produces (invalidates every cached Record).
TRAIN_VERSION = 2
#: Bump when writers/verification change (forces every family to be re-assembled, not retrained).
ASSEMBLE_VERSION = 2

# Rough ms per step on one thread, to start the long trainings first (better packing on 2 workers).
_COST = {"markov_lm": 8.0, "char_lm": 5.0, "images": 12.0, "teacher_cls": 1.5}


def _cost(spec: RunSpec) -> float:
    c = _COST[spec.task] * spec.steps
    if dict(spec.task_args).get("model") == "resmlp":
        c *= 2
    return c


# -- records cache ------------------------------------------------------------------------------------

def _record_path(out: Path, spec: RunSpec) -> Path:
    return out / ".records" / f"v{TRAIN_VERSION}_{spec.train_key()}.npz"


def save_record(path: Path, rec: Record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, loss=rec.loss, grad_norm=rec.grad_norm, lr=rec.lr, skipped=rec.skipped, eval_steps=rec.eval_steps,
             eval_loss=rec.eval_loss, meta=np.array(json.dumps({"trivial": rec.trivial, "floor": rec.floor,
                                                                "steps_per_epoch": rec.steps_per_epoch,
                                                                "seconds": rec.seconds})))
    os.replace(tmp, path)


def load_record(path: Path) -> Record:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return Record(z["loss"], z["grad_norm"], z["lr"], z["skipped"], z["eval_steps"], z["eval_loss"],
                      meta["trivial"], meta["floor"], meta["steps_per_epoch"], meta["seconds"])


def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)  # one thread per worker process: the box has 2 cores


def _train_one(job: tuple[RunSpec, str]) -> tuple[str, float]:
    from benchmarks.corpus.train import train
    spec, path = job
    rec = train(spec)
    save_record(Path(path), rec)
    return spec.name, rec.seconds


def train_all(out: Path, specs: list[RunSpec], jobs: int, retrain: bool) -> float:
    """Train every spec whose Record is not cached; returns the CPU seconds spent training."""
    todo: dict[str, RunSpec] = {}
    for s in specs:
        p = _record_path(out, s)
        if retrain or not p.exists():
            todo.setdefault(str(p), s)
    if retrain:
        for p in todo:
            Path(p).unlink(missing_ok=True)
    order = sorted(todo.items(), key=lambda kv: -_cost(kv[1]))
    total = 0.0
    if not order:
        return 0.0
    print(f"training {len(order)} runs with {jobs} worker(s) ...", flush=True)
    t0 = time.perf_counter()
    jobs_list = [(s, p) for p, s in order]
    if jobs <= 1:
        _init_worker()
        results = map(_train_one, jobs_list)
        for k, (name, sec) in enumerate(results, 1):
            total += sec
            _progress(k, len(order), name, sec, t0)
    else:
        with mp.get_context("spawn").Pool(jobs, initializer=_init_worker) as pool:
            for k, (name, sec) in enumerate(pool.imap_unordered(_train_one, jobs_list), 1):
                total += sec
                _progress(k, len(order), name, sec, t0)
    return total


def _progress(k: int, n: int, name: str, sec: float, t0: float) -> None:
    if k % 10 == 0 or k == n:
        print(f"  {k}/{n} trained ({time.perf_counter() - t0:.0f}s elapsed; last {name} {sec:.1f}s)", flush=True)


# -- assembling a family ------------------------------------------------------------------------------

def fingerprint(specs: list[RunSpec]) -> str:
    h = hashlib.sha1(f"{TRAIN_VERSION}.{ASSEMBLE_VERSION}".encode())
    for s in specs:
        h.update(s.key().encode())
    return h.hexdigest()[:16]


def _sweep_config(spec: RunSpec, k: int) -> dict[str, Any]:
    """What a sweep launcher writes per trial: the shared config, the LR, and identity fields that
    differ between trials without being hyperparameters."""
    from benchmarks.corpus.writers import hparams
    rnd = random.Random(hashlib.sha1(f"{spec.sweep}/{spec.lr}".encode()).hexdigest())
    tag = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
    cfg = {k2: v for k2, v in hparams(spec).items()}
    cfg.update({"output_dir": f"/scratch/exp/{spec.sweep}/{tag}", "run_name": f"{spec.sweep}-{tag}",
                "log_dir": f"/scratch/exp/{spec.sweep}/{tag}/logs", "timestamp": f"2025-03-1{k}T0{k}:1{k}:07",
                "wandb_id": tag})
    return cfg


def assemble(out: Path, name: str, specs: list[RunSpec]) -> dict[str, Any]:
    from benchmarks.corpus.verify import verify
    from benchmarks.corpus.writers import write

    fam = F.family(name)
    final_dir = out / "runs" / name
    tmp_dir = out / "runs" / f".{name}.tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    runs: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    trials: dict[str, list[dict[str, Any]]] = {}
    sweep_records: dict[str, list[tuple[RunSpec, Record]]] = {}
    k_sweep: Counter[str] = Counter()
    for spec in specs:
        rec = load_record(_record_path(out, spec))
        cspec = spec.control_spec()
        ctrl = load_record(_record_path(out, cspec)) if cspec is not None else None
        sweep_cfg = None
        if spec.sweep:
            sweep_cfg = _sweep_config(spec, k_sweep[spec.sweep])
            k_sweep[spec.sweep] += 1
        from benchmarks.corpus.writers import logged_points
        lg = logged_points(spec, rec)
        ok, text = verify(spec, rec, ctrl, lg)
        rel = f"runs/{name}/{spec.name}"
        entry = {"id": spec.run_id, "path": rel, "regime": spec.label, "family": name, "split": fam.split,
                 "ambiguous": False, "shape": spec.shape, "format": spec.habit.fmt, "config": spec.to_config(),
                 "verification": text}
        if spec.sweep:
            write(spec, rec, tmp_dir / spec.name, sweep_config=sweep_cfg)
            entry["ambiguous"] = not ok
            trials.setdefault(spec.sweep, []).append(entry)
            sweep_records.setdefault(spec.sweep, []).append((spec, rec))
        elif ok:
            write(spec, rec, tmp_dir / spec.name)
            runs.append(entry)
        else:
            dropped.append({"id": spec.run_id, "family": name, "intended": spec.label, "shape": spec.shape,
                            "reason": text})
    sweeps = [_sweep_truth(sname, name, fam.split, trials[sname], sweep_records[sname]) for sname in trials]
    shutil.rmtree(final_dir, ignore_errors=True)
    if tmp_dir.exists():
        tmp_dir.rename(final_dir)
    return {"family": name, "split": fam.split, "description": fam.description, "model": fam.model,
            "optimizer": fam.optimizer, "fingerprint": fingerprint(specs), "runs": runs, "sweeps": sweeps,
            "dropped": dropped}


def _sweep_truth(sname: str, family: str, split: str, entries: list[dict[str, Any]],
                 recs: list[tuple[RunSpec, Record]]) -> dict[str, Any]:
    """lr* and the edge flag from the curves, independently of any detector.

    best eval loss per trial; feasible = finite to the end and learned (its best eval loss got at
    least half as far below the trivial loss as the sweep's best trial did: the playbook's
    "abnormally high loss" counts as infeasible); lr* = the feasible trial with the lowest best eval
    loss; edge = the next larger LR is unstable (its verified regime is not stable) or infeasible.
    """
    rows = []
    for entry, (spec, rec) in zip(entries, recs):
        ev = rec.eval_loss[np.isfinite(rec.eval_loss)]
        best = float(ev.min()) if ev.size else float("nan")
        rows.append((spec.lr, best, bool(np.isfinite(rec.loss[-1])), rec.trivial, entry))
    rows.sort(key=lambda r: r[0])
    finite_best = [b for _, b, fin, _, _ in rows if fin and np.isfinite(b)]
    top = min(finite_best) if finite_best else float("nan")
    trivial = rows[0][3]
    feasible = [fin and np.isfinite(b) and (trivial - b) >= 0.5 * (trivial - top) for _, b, fin, _, _ in rows]
    cands = sorted((b, lr) for (lr, b, _, _, _), f in zip(rows, feasible) if f)
    best_lr = cands[0][1] if cands else None
    # how clearly lr* wins: the runner-up's best eval loss relative to lr*'s (reported, not used)
    margin = (cands[1][0] - cands[0][0]) / cands[0][0] if len(cands) > 1 else None
    edge = False
    idx = [r[0] for r in rows].index(best_lr) if best_lr is not None else -1
    if 0 <= idx < len(rows) - 1:
        nxt = rows[idx + 1][4]
        edge = (not feasible[idx + 1]) or nxt["regime"] != "stable"
    trials = []
    for (lr, b, _, _, entry), f in zip(rows, feasible):
        trials.append({"run": entry["id"], "path": entry["path"], "lr": lr, "regime": entry["regime"],
                       "is_best": lr == best_lr, "ambiguous": entry["ambiguous"], "feasible": bool(f),
                       "best_eval_loss": None if not np.isfinite(b) else round(b, 4), "shape": entry["shape"],
                       "format": entry["format"], "verification": entry["verification"]})
    return {"sweep": sname, "family": family, "split": split, "best_lr": best_lr, "edge_of_instability": edge,
            "lr_star_margin": None if margin is None else round(margin, 4), "trials": trials}


# -- the whole build ------------------------------------------------------------------------------------

def build(out: Path, *, families: list[str] | None = None, jobs: int = 2, retrain: bool = False) -> None:
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / "families").mkdir(exist_ok=True)
    unknown = [f for f in families or [] if f not in F.SPLIT]
    if unknown:
        sys.exit(f"unknown families {unknown}; expected some of {', '.join(F.SPLIT)}")
    todo = []
    all_specs: dict[str, list[RunSpec]] = {}
    for name in F.SPLIT:
        all_specs[name] = F.specs(name)
        meta = out / "families" / f"{name}.json"
        if families is not None:
            if name in families:
                todo.append(name)
        elif not meta.exists() or json.loads(meta.read_text())["fingerprint"] != fingerprint(all_specs[name]):
            todo.append(name)
    _check_split(all_specs)
    needed: list[RunSpec] = []
    for name in todo:
        for s in all_specs[name]:
            needed.append(s)
            c = s.control_spec()
            if c is not None:
                needed.append(c)
    print(f"families to (re)build: {', '.join(todo) or 'none'}", flush=True)
    cpu = train_all(out, needed, jobs, retrain)
    for name in todo:
        fam = assemble(out, name, all_specs[name])
        (out / "families" / f"{name}.json").write_text(json.dumps(fam, indent=1, default=str))
        c = Counter(r["regime"] for r in fam["runs"])
        print(f"  {name}: {len(fam['runs'])} runs {dict(c)}, {sum(len(s['trials']) for s in fam['sweeps'])} sweep "
              f"trials, {len(fam['dropped'])} dropped", flush=True)
    labels = merge(out)
    wall = time.perf_counter() - t0
    write_summary(out, labels, build_seconds=wall, train_cpu_seconds=cpu)
    print((out / "SUMMARY.md").read_text())


def merge(out: Path) -> dict[str, Any]:
    runs, sweeps, dropped, fams = [], [], [], {}
    for name in F.SPLIT:
        meta = out / "families" / f"{name}.json"
        if not meta.exists():
            continue
        fam = json.loads(meta.read_text())
        runs += fam["runs"]
        sweeps += fam["sweeps"]
        dropped += fam["dropped"]
        fams[name] = {"split": fam["split"], "description": fam["description"], "model": fam["model"],
                      "optimizer": fam["optimizer"]}
    labels = {"classes": list(CLASSES), "split": dict(F.SPLIT), "runs": runs, "sweeps": sweeps, "dropped": dropped,
              "families": fams}
    (out / "labels.json").write_text(json.dumps(labels, indent=1, default=str))
    return labels


def _check_split(all_specs: dict[str, list[RunSpec]]) -> None:
    """Every shape of a held-out family must also occur in a tuning family."""
    tune = {(s.shape, s.label) for n, ss in all_specs.items() if F.SPLIT[n] == "tune" for s in ss}
    for n, ss in all_specs.items():
        if F.SPLIT[n] != "heldout":
            continue
        missing = {(s.shape, s.label) for s in ss} - tune
        if missing:
            print(f"WARNING: held-out family {n} has shapes no tuning family has: {sorted(missing)}", flush=True)
