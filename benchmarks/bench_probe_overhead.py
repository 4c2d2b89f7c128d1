"""Probe logging overhead vs a bare torch training loop on the same workload (steps/s, same process).

    python benchmarks/bench_probe_overhead.py [--device cpu|cuda] [--steps 1000] [--repeats 5] [--only tiny,wrn]
    python benchmarks/bench_probe_overhead.py --layers [--device cpu|cuda] [--steps 300] [--repeats 3]

--layers: the per-block recording of a probe that re-runs a run itself (probes.layers: per-block gradient
norms, update/weight ratios, Adam second moments, activation RMS), on nanoGPT's GPT at two sizes: the bare
loop, the probe with layer_stats off, on every step, and on every 10th step.

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


def _gpt_spec(model_args: dict, steps: int, batch: int, **more: object) -> ProbeSpec:
    return ProbeSpec(workload="run", source={"kind": "nanogpt", "architecture": "nanoGPT GPT", "config": None,
                                             "checkpoint": None, "checkpoint_step": None, "class_path": None,
                                             "model_args": model_args, "settings_from": (), "resume_note": ""},
                     optimizer="adamw", lr=1e-4, steps=steps, batch_size=batch, eval_interval=10**9, log_every=50,
                     plans=("baseline",), **more)  # type: ignore[arg-type]


def bare_gpt(spec: ProbeSpec, device: torch.device) -> float:
    from probes.data import synthetic
    from probes.nanogpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(**dict(spec.source["model_args"]))).to(device)  # type: ignore[index]
    opt = model.configure_optimizers(0.0, spec.lr, spec.betas, device.type)
    data = synthetic(model.config.vocab_size, model.config.block_size, 0)
    t0 = time.perf_counter()
    for step in range(spec.steps):
        tokens = data.batch(step, spec.batch_size).to(device, non_blocking=True)
        _, loss = model(tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return spec.steps / (time.perf_counter() - t0)


def layers_main(args: argparse.Namespace, device: torch.device) -> None:
    rows = []
    for label, margs, batch, steps in (
        ("nanoGPT GPT 2 layers x 32, seq 16, batch 16 (~0.03M params)",
         dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64, bias=False), 16, args.steps),
        ("nanoGPT GPT 4 layers x 128, seq 64, batch 16 (~0.9M params)",
         dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=512, bias=False), 16,
         max(20, args.steps // 5)),
    ):
        variants = {"off": _gpt_spec(margs, steps, batch, layer_stats=False),
                    "every step": _gpt_spec(margs, steps, batch),
                    "every 10th": _gpt_spec(margs, steps, batch, layer_every=10)}
        bare_gpt(variants["off"], device)  # warm-up
        best: dict[str, float] = {"bare": 0.0, **{k: 0.0 for k in variants}}
        for _ in range(args.repeats):
            best["bare"] = max(best["bare"], bare_gpt(variants["off"], device))
            for key, spec in variants.items():
                best[key] = max(best[key], probe(spec, device))
        rows.append({"workload": label, **best})
        print(json.dumps(rows[-1]), flush=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU, 1 thread"
    lines = ["| model | device | bare steps/s | probe, no layer stats | + per-block every step | + every 10th step |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {name} | {r['bare']:.0f} | {r['off']:.0f} ({1 - r['off'] / r['bare']:.1%}) | "
                     f"{r['every step']:.0f} ({1 - r['every step'] / r['off']:.1%} more) | "
                     f"{r['every 10th']:.0f} ({1 - r['every 10th'] / r['off']:.1%} more) |")
    print("\n".join(lines))
    (ROOT / "benchmarks" / f"results_probe_layers_{device.type}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", help="comma-separated subset of: tiny, divergent, early, wrn, residual (default: all)")
    ap.add_argument("--layers", action="store_true", help="measure the per-block recording instead")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    if args.layers:
        layers_main(args, device)
        return
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
