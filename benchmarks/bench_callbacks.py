"""Overhead of judging inside the training loop (analyzer.live) vs the bare loop, on the probe workloads.

    python benchmarks/bench_callbacks.py [--steps 3000] [--repeats 3] [--only tiny,early] [--lightning]

Bare loop: batch -> forward -> loss -> zero_grad -> backward -> step (as bench_probe_overhead.py).
Monitored: the same loop plus ``Monitor.update(step, loss=<the loss tensor>, lr=<float>)`` every step
(default every_n_steps=50, max_overhead=0.01), and "+ grad norm": also the unclipped global grad
norm as a tensor (`global_norm`, as the Lightning callback measures it: a flat norm on CPU). Alternating repeats,
the best of each compared; the monitor's own account (judgements, deferrals, time judging) is printed.
With --lightning: a Lightning Trainer with and without LightningCallback on the tiny workload.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyzer.live import Monitor  # noqa: E402
from analyzer.live.callbacks import global_norm  # noqa: E402
from probes.runner import make_optimizer  # noqa: E402
from probes.spec import ProbeSpec  # noqa: E402
from probes.workloads import build  # noqa: E402

WORKLOADS = (
    ("tiny", "outlier_batches: MLP 32-128-128-10 (6 tensors)", "builtin:outlier_batches", {"start": 10**9}, 64, "adam"),
    ("divergent", "divergent_mlp: MLP 32-256-256-10 (6 tensors)", "builtin:divergent_mlp", {}, 64, "adam"),
    ("early", "early_residual_mlp: 8 blocks x 64 (36 tensors)", "builtin:early_residual_mlp", {}, 64, "adam"),
    ("wrn", "wide_resnet: conv net with BatchNorm (25 tensors)", "builtin:wide_resnet", {}, 64, "nesterov"),
    ("residual", "residual MLP, 8 blocks x 256, batch 256 (52 tensors)", "builtin:early_residual_mlp",
     {"width": 256, "norm": "pre"}, 256, "adam"),
)


def loop(spec: ProbeSpec, mode: str) -> tuple[float, dict[str, Any]]:
    """Steps/s of the loop; mode: bare, monitor, monitor+norm."""
    torch.manual_seed(spec.seed)
    model, loss_fn, batch, _ = build(spec.workload, dict(spec.workload_args), batch_size=spec.batch_size,
                                     seed=spec.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(spec, params, spec.lr)
    mon = Monitor(hparams={"lr": spec.lr, "max_steps": spec.steps}) if mode != "bare" else None
    t0 = time.perf_counter()
    for step in range(spec.steps):
        x, y = batch(step)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = None
        if mode == "monitor+norm":
            norm = global_norm([p.grad for p in params if p.grad is not None])
        opt.step()
        if mon is not None:
            mon.update(step, loss=loss.detach(), grad_norm=norm, lr=spec.lr)
    seconds = time.perf_counter() - t0
    return spec.steps / seconds, (mon.stats if mon is not None else {})


def lightning(steps: int, with_callback: bool, grad_norm: bool | None) -> float:
    import lightning.pytorch as pl

    from analyzer.live.callbacks import LightningCallback

    model, loss_fn, batch, _ = build("builtin:outlier_batches", {"start": 10**9}, batch_size=64, seed=0)

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def training_step(self, b: Any, idx: int) -> torch.Tensor:
            return loss_fn(self.net(b[0]), b[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    data = [batch(s) for s in range(steps)]
    loader = torch.utils.data.DataLoader(data, batch_size=None)
    callbacks = [LightningCallback(grad_norm=grad_norm)] if with_callback else []
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    t0 = time.perf_counter()
    trainer.fit(Module(), loader)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", help="comma-separated subset of: tiny, divergent, early, wrn, residual")
    ap.add_argument("--lightning", action="store_true", help="also Lightning with/without the callback")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for key, label, workload, wargs, bs, opt in WORKLOADS:
        if args.only and key not in args.only.split(","):
            continue
        spec = ProbeSpec(workload=workload, workload_args=wargs, optimizer=opt, lr=1e-3, steps=args.steps,
                         batch_size=bs)
        loop(ProbeSpec(workload=workload, workload_args=wargs, optimizer=opt, lr=1e-3, steps=100, batch_size=bs),
             "monitor")  # warm-up (imports, first judgement's one-off costs)
        best: dict[str, float] = {}
        stats: dict[str, dict[str, Any]] = {}
        for _ in range(args.repeats):
            for mode in ("bare", "monitor", "monitor+norm"):
                rate, st = loop(spec, mode)
                if rate > best.get(mode, 0):
                    best[mode], stats[mode] = rate, st
        row = {"workload": label, "steps": args.steps, "bare_steps_s": best["bare"],
               "monitor_steps_s": best["monitor"], "monitor_norm_steps_s": best["monitor+norm"],
               "overhead": 1 - best["monitor"] / best["bare"], "overhead_norm": 1 - best["monitor+norm"] / best["bare"],
               "judgements": stats["monitor"]["judgements"], "deferred": stats["monitor"]["deferred"],
               "judging_share": stats["monitor"]["overhead"], "last_judgement_ms": 1e3 * stats["monitor"][
                   "last_judgement_seconds"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = ["| workload | bare steps/s | + Monitor | overhead | + Monitor + grad norm | overhead | judgements (deferred) "
             "| judging share of wall time | last judgement |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['workload']} | {r['bare_steps_s']:.0f} | {r['monitor_steps_s']:.0f} | {r['overhead']:.1%} | "
              f"{r['monitor_norm_steps_s']:.0f} | {r['overhead_norm']:.1%} | {r['judgements']} ({r['deferred']}) | "
              f"{r['judging_share']:.2%} | {r['last_judgement_ms']:.1f} ms |" for r in rows]
    print("\n".join(lines))
    if args.lightning:
        lightning(200, True, True)  # warm-up
        res: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, cb, norm in (("bare", False, False), ("callback", True, None), ("callback+norm", True, True)):
                res[name] = max(res.get(name, 0), lightning(args.steps, cb, norm))
        print(json.dumps({"lightning_tiny_steps_s": res}))
        print(f"Lightning (tiny): bare {res['bare']:.0f} steps/s; with LightningCallback() (no grad norm on CPU) "
              f"{res['callback']:.0f} ({1 - res['callback'] / res['bare']:.1%}); grad_norm=True "
              f"{res['callback+norm']:.0f} ({1 - res['callback+norm'] / res['bare']:.1%})")


if __name__ == "__main__":
    main()
