"""Probe logging overhead vs a bare torch training loop on the same workload (steps/s, same process).

    python benchmarks/bench_probe_overhead.py [--device cpu|cuda] [--steps 1000] [--repeats 5] [--only tiny,wrn]

Workloads: the built-in probe workloads at their default sizes (what probes run), plus a larger residual MLP.

Bare loop: batch -> forward -> loss -> zero_grad -> backward -> step. Probe loop: probes.runner.run_trial
(schedule, unclipped grad-norm measurement, on-device buffer, TensorBoard events every step, flushed every
log_every steps) with evaluation off. Alternating repeats; the best of each is compared.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probes.runner import make_optimizer, run_trial  # noqa: E402
from probes.spec import ProbeSpec, TrialConfig  # noqa: E402
from probes.workloads import build  # noqa: E402


def bare(spec: ProbeSpec, device: torch.device) -> float:
    torch.manual_seed(spec.seed)
    model, loss_fn, batch, _ = build(spec.workload, dict(spec.workload_args), batch_size=spec.batch_size,
                                     seed=spec.seed)
    model.to(device)
    opt = make_optimizer(spec, model.parameters(), spec.lr)
    t0 = time.perf_counter()
    for step in range(spec.steps):
        x, y = batch(step)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return spec.steps / (time.perf_counter() - t0)


def probe(spec: ProbeSpec, device: torch.device) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        res = run_trial(spec, TrialConfig("bench", spec.lr, steps=spec.steps), "bench", device=device,
                        log_dir=Path(tmp))
    return res.steps_run / res.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", help="comma-separated subset of: tiny, divergent, early, wrn, residual (default: all)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    rows = []
    for key, label, workload, wargs, bs, opt in (
        ("tiny", "outlier_batches: MLP 32-128-128-10 (6 tensors)", "builtin:outlier_batches", {"start": 10**9}, 64,
         "adam"),
        ("divergent", "divergent_mlp: MLP 32-256-256-10 (6 tensors)", "builtin:divergent_mlp", {}, 64, "adam"),
        ("early", "early_residual_mlp: 8 blocks x 64 (36 tensors)", "builtin:early_residual_mlp", {}, 64, "adam"),
        ("wrn", "wide_resnet: conv net with BatchNorm (25 tensors)", "builtin:wide_resnet", {}, 64, "nesterov"),
        ("residual", "residual MLP, 8 blocks x 256, batch 256 (52 tensors)", "builtin:early_residual_mlp",
         {"width": 256, "norm": "pre"}, 256, "adam"),
    ):
        if args.only and key not in args.only.split(","):
            continue
        spec = ProbeSpec(workload=workload, workload_args=wargs, optimizer=opt, lr=1e-3, steps=args.steps,
                         batch_size=bs, eval_interval=10**9, log_every=50)
        bare(spec, device)  # warm-up
        b, p = [], []
        for _ in range(args.repeats):
            b.append(bare(spec, device))
            p.append(probe(spec, device))
        overhead = 1 - max(p) / max(b)
        rows.append({"workload": label, "device": str(device), "bare_steps_s": max(b), "probe_steps_s": max(p),
                     "overhead": overhead})
        print(json.dumps(rows[-1]), flush=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU, 1 thread"
    lines = ["| workload | device | bare loop steps/s | probe steps/s | overhead |", "|---|---|---|---|---|"]
    lines += [f"| {r['workload']} | {name} | {r['bare_steps_s']:.0f} | {r['probe_steps_s']:.0f} | {r['overhead']:.1%} |"
              for r in rows]
    print("\n".join(lines))
    (ROOT / "benchmarks" / f"results_probe_{device.type}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
