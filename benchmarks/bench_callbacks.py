"""Overhead of judging inside the training loop (analyzer.live) vs the bare loop, on the probe workloads.

    python benchmarks/bench_callbacks.py [--steps 3000] [--repeats 3] [--only tiny,early] [--lightning] [--detach]

Bare loop: batch -> forward -> loss -> zero_grad -> backward -> step (as bench_probe_overhead.py).
Monitored: the same loop plus ``Monitor.update(step, loss=<the loss tensor>, lr=<float>)`` every step
(the Monitor's defaults: every_n_steps=50, max_overhead=0.005; the loss as it is, as the README shows;
``--detach``: ``loss.detach()`` by the caller, inside the timed call), and "+ grad norm": also the unclipped global grad
norm as a tensor (`global_norm`, as the Lightning callback measures it: a flat norm on CPU). The overhead is
the time inside those calls (judgements included) over the loop's time, timed around each call; the A/B
comparison of whole loops (alternating repeats, best of each, wall and thread CPU time) is printed beside it.
With --lightning: a Lightning Trainer with and without LightningCallback on the tiny workload (the time
inside the callback's per-step hooks over the loop's time, and the A/B of whole loops).
"""

from __future__ import annotations

import argparse
import json
import os
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


def loop(spec: ProbeSpec, mode: str, detach: bool = False) -> dict[str, Any]:
    """One timed loop; mode: bare, monitor, monitor+norm. Returns steps/s by wall time and by this thread's
    CPU time (torch on one thread: all the loop's work is here), and the time spent inside the monitor's
    calls and the grad-norm measurement, timed around each call: on a shared, loaded machine the A/B
    difference of two loops is noise of +-10-20%, while the time inside our own calls is measured exactly."""
    torch.manual_seed(spec.seed)
    model, loss_fn, batch, _ = build(spec.workload, dict(spec.workload_args), batch_size=spec.batch_size,
                                     seed=spec.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(spec, params, spec.lr)
    mon = Monitor(hparams={"lr": spec.lr, "max_steps": spec.steps}) if mode != "bare" else None
    own = norm_s = 0.0
    calls: list[float] = []
    clock = time.perf_counter
    t0, c0 = clock(), time.thread_time()
    for step in range(spec.steps):
        x, y = batch(step)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = None
        if mode == "monitor+norm":
            t = clock()
            norm = global_norm([p.grad for p in params if p.grad is not None])
            norm_s += clock() - t
        opt.step()
        if mon is not None:
            t = clock()
            mon.update(step, loss=loss.detach() if detach else loss, grad_norm=norm, lr=spec.lr)
            calls.append(clock() - t)
    own = sum(calls)
    seconds, cpu = clock() - t0, time.thread_time() - c0
    return {"rate": spec.steps / seconds, "cpu_rate": spec.steps / cpu, "own": own, "norm": norm_s,
            "seconds": seconds, "median_call": sorted(calls)[len(calls) // 2] if calls else 0.0,
            "stats": mon.stats if mon is not None else {}}


def _timed_hooks(cb: Any, spent: list[float]) -> None:
    """Time the callback's per-step hooks (as the loop's monitor calls are timed): robust where A/B is noise."""
    for name in ("on_train_batch_end", "on_before_optimizer_step"):
        hook = getattr(cb, name)

        def timed(*args: Any, _hook: Any = hook, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return _hook(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - t)

        setattr(cb, name, timed)


def lightning(steps: int, with_callback: bool, grad_norm: bool | None) -> tuple[float, float, float]:
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
    spent: list[float] = []
    for cb in callbacks:
        _timed_hooks(cb, spent)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    t0, c0 = time.perf_counter(), time.thread_time()
    trainer.fit(Module(), loader)
    seconds = time.perf_counter() - t0
    return steps / seconds, steps / (time.thread_time() - c0), sum(spent) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", help="comma-separated subset of: tiny, divergent, early, wrn, residual")
    ap.add_argument("--lightning", action="store_true", help="also Lightning with/without the callback")
    ap.add_argument("--detach", action="store_true", help="the caller passes loss.detach() (timed with the call)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for key, label, workload, wargs, bs, opt in WORKLOADS:
        if args.only and key not in args.only.split(","):
            continue
        spec = ProbeSpec(workload=workload, workload_args=wargs, optimizer=opt, lr=1e-3, steps=args.steps,
                         batch_size=bs)
        warm = Monitor(max_overhead=None)  # the process's first judgement pays one-off costs (imports, caches)
        for i in range(200):
            warm.update(i, loss=1.0 / (i + 1))
        loop(ProbeSpec(workload=workload, workload_args=wargs, optimizer=opt, lr=1e-3, steps=100, batch_size=bs),
             "monitor")
        runs: dict[str, list[dict[str, Any]]] = {"bare": [], "monitor": [], "monitor+norm": []}
        for _ in range(args.repeats):
            for mode in runs:
                runs[mode].append(loop(spec, mode, args.detach))
        best = {m: max(r["rate"] for r in rs) for m, rs in runs.items()}
        best_cpu = {m: max(r["cpu_rate"] for r in rs) for m, rs in runs.items()}
        mon = min(runs["monitor"], key=lambda r: r["own"] / r["seconds"])
        withnorm = min(runs["monitor+norm"], key=lambda r: (r["own"] + r["norm"]) / r["seconds"])
        step_us = 1e6 / best["bare"]
        row = {"workload": label, "steps": args.steps, "bare_steps_s": best["bare"], "step_us": step_us,
               "own_share": mon["own"] / mon["seconds"], "own_us_per_step": 1e6 * mon["own"] / args.steps,
               "median_call_us": 1e6 * mon["median_call"], "loop_step_us": 1e6 * mon["seconds"] / args.steps,
               "own_share_norm": (withnorm["own"] + withnorm["norm"]) / withnorm["seconds"],
               "norm_us_per_step": 1e6 * withnorm["norm"] / args.steps,
               "wall_overhead": 1 - best["monitor"] / best["bare"],
               "cpu_overhead": 1 - best_cpu["monitor"] / best_cpu["bare"],
               "judgements": mon["stats"]["judgements"], "deferred": mon["stats"]["deferred"],
               "monitor_share": mon["stats"]["overhead"],
               "last_judgement_ms": 1e3 * mon["stats"]["last_judgement_seconds"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = ["| workload | bare step (best) | Monitor: time in its calls / loop time | mean per step | median call "
             "| + grad norm (CPU, flat) | A/B wall | A/B CPU | judgements (deferred) | last judgement |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['workload']} | {r['step_us'] / 1e3:.2f} ms | {r['own_share']:.2%} | {r['own_us_per_step']:.1f} us "
              f"| {r['median_call_us']:.1f} us | {r['own_share_norm']:.2%} ({r['norm_us_per_step']:.0f} us) "
              f"| {r['wall_overhead']:+.1%} | {r['cpu_overhead']:+.1%} | {r['judgements']} ({r['deferred']}) "
              f"| {r['last_judgement_ms']:.1f} ms |" for r in rows]
    lines.append(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("\n".join(lines))
    if args.lightning:
        import logging

        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        lightning(200, True, True)  # warm-up
        res: dict[str, float] = {}
        res_cpu: dict[str, float] = {}
        share: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, cb, norm in (("bare", False, False), ("callback", True, None), ("callback+norm", True, True)):
                wall, cpu, hooks = lightning(args.steps, cb, norm)
                res[name], res_cpu[name] = max(res.get(name, 0), wall), max(res_cpu.get(name, 0), cpu)
                share[name] = min(share.get(name, 1.0), hooks)
        print(json.dumps({"lightning_tiny_steps_s": res, "cpu": res_cpu, "hooks_share": share}))
        print(f"Lightning (tiny): bare {res['bare']:.0f} steps/s ({1e3 / res['bare']:.2f} ms a step); "
              f"LightningCallback() (no grad norm on CPU): its hooks {share['callback']:.2%} of the loop "
              f"(A/B {1 - res['callback'] / res['bare']:+.1%} wall, {1 - res_cpu['callback'] / res_cpu['bare']:+.1%} "
              f"CPU); grad_norm=True: {share['callback+norm']:.2%} (A/B {1 - res['callback+norm'] / res['bare']:+.1%} "
              f"wall, {1 - res_cpu['callback+norm'] / res_cpu['bare']:+.1%} CPU)")


if __name__ == "__main__":
    main()
