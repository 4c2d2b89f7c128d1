"""Two-process CPU trainings (gloo) for tests/test_distributed.py, run as a subprocess with a timeout:

    python tests/distributed_runs.py plain OUT [own,mean]    # a hand-written DDP loop with Monitor(process_group=...)
    python tests/distributed_runs.py lightning OUT           # Lightning, strategy="ddp", devices=2
    python tests/distributed_runs.py hf OUT                  # the HF Trainer under torch.distributed.run

Both ranks train one seeded MLP with DistributedDataParallel (gradients all-reduced every step), each on
its own shard of a teacher's batches. From step ``BAD_FROM`` rank 1's shard goes bad (its labels are
those of another teacher: a corrupted shard) and a guard zeroes those batches' gradients (as a loss-spike
guard that skips a batch does), so rank 1's loss jumps and rank 0's does not move: only rank 1 can see
it. Each rank writes OUT/rank<r>.json: the step it stopped at, the checkpoints it saved, what it judged,
which files of ours it wrote; log lines carry the rank that printed them. The plain loop trains once per
mode given (the same two processes, one after the other), into OUT/<mode>/.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BAD_FROM = 300
STEPS = 600
EVERY = 25
WROTE: list[str] = []


def _spy_on_writes(rank: int) -> None:
    """Record every file of ours this process writes (plan, probe spec)."""
    from analyzer.live import finding

    real = finding.HandOver.write

    def write(self: Any, plan: Any, spec: Any) -> Any:
        paths = real(self, plan, spec)
        WROTE.extend(f"{p.name}" for p in paths)
        return paths

    finding.HandOver.write = write  # type: ignore[method-assign]


def _log_with_rank(name: str, rank: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"rank{rank} %(message)s"))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _batches(rank: int, steps: int) -> list[tuple[Any, Any]]:
    import torch

    from tests.unstable_training import teacher_batches

    good = teacher_batches(seed=0, batch_size=128)
    bad = teacher_batches(seed=7, batch_size=128)
    out = []
    for step in range(steps):
        x, y = good(2 * step + rank)  # each rank its own shard of the batches
        if rank == 1 and step >= BAD_FROM:
            y = bad(2 * step + rank)[1]  # labels of another teacher
        out.append((x, y.to(torch.long)))
    return out


def _guard(loss: Any, rank: int, step: int) -> Any:
    """Rank 1's bad batches: their gradient zeroed (the loss value is left as it is, and is what is judged)."""
    if rank == 1 and step >= BAD_FROM:
        loss.register_hook(lambda grad: grad * 0.0)
    return loss


def _report(out: Path, rank: int, mon: Any, stopped_at: int, saves: list[str]) -> None:
    loss = mon.history().role_series("train_loss")
    (out / f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "wrote": WROTE, "stopped_at": stopped_at, "saves": saves,
        "checkpoints": [p.name for p in mon.checkpoints], "findings": [[f.verdict, f.step] for f in mon.findings],
        "verdict": mon.diagnosis.verdict if mon.diagnosis else None, "history_steps": loss.steps.tolist(),
        "history_loss": loss.values.tolist()}))


def plain(rank: int, world: int, out: Path, port: int, modes: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world)
    _spy_on_writes(rank)
    _log_with_rank("steadytrain.plain", rank)
    for mode in modes.split(","):
        WROTE.clear()
        print(f"rank{rank} mode {mode}", file=sys.stderr, flush=True)
        _plain_run(rank, out / mode, mode)
        dist.barrier()
    dist.destroy_process_group()


def _plain_run(rank: int, out: Path, mode: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from analyzer.live import Monitor
    from tests.unstable_training import LR, mlp

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    model = DistributedDataParallel(mlp())
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    saves: list[str] = []

    def save(path: Path) -> None:
        saves.append(path.name)  # called on every rank (collective), written by rank 0
        if dist.get_rank() == 0:
            torch.save({"model": model.module.state_dict()}, path)

    mon = Monitor(run_id="ddp", every_n_steps=EVERY, max_overhead=None, stop_on="mid", checkpoint_on="mid",
                  checkpoint_dir=out / "ckpt", save_checkpoint=save, process_group=dist.group.WORLD,
                  loss_across_ranks=mode,  # type: ignore[arg-type]
                  hparams={"lr": LR, "max_steps": STEPS, "optimizer": "adam"},
                  logger=logging.getLogger("steadytrain.plain"))
    step = 0
    for step, (x, y) in enumerate(_batches(rank, STEPS)):
        loss = _guard(torch.nn.functional.cross_entropy(model(x), y), rank, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.update(step, loss=loss, lr=LR)
        if mon.should_stop:
            break
    mon.finish()
    _report(out, rank, mon, step, saves)


def lightning(out: Path) -> None:
    import lightning.pytorch as pl
    import torch

    from analyzer.live.callbacks import LightningCallback
    from tests.unstable_training import LR, mlp

    rank = int(os.environ.get("LOCAL_RANK", 0))  # set by Lightning's launcher for the process it starts
    torch.set_num_threads(1)
    _spy_on_writes(rank)
    _log_with_rank("lightning.pytorch.steadytrain", rank)
    saves: list[str] = []

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def training_step(self, batch: Any, idx: int) -> Any:
            x, y = batch
            return _guard(torch.nn.functional.cross_entropy(self.net(x), y), self.global_rank, self.global_step)

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=LR)

    class Trainer(pl.Trainer):
        def save_checkpoint(self, filepath: Any, *args: Any, **kwargs: Any) -> None:
            saves.append(Path(filepath).name)
            super().save_checkpoint(filepath, *args, **kwargs)

    # Each rank reads its own shard: the sampler is ours, so the bad shard stays rank 1's.
    data = _batches(rank, STEPS)
    loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=False)
    cb = LightningCallback(every_n_steps=EVERY, max_overhead=None, stop_on="mid", checkpoint_on="mid",
                           checkpoint_dir=out / "ckpt")
    trainer = Trainer(strategy="ddp", accelerator="cpu", devices=2, max_steps=STEPS, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      use_distributed_sampler=False, callbacks=[cb], default_root_dir=out)
    trainer.fit(Module(), loader)
    _report(out, trainer.global_rank, cb.monitor, trainer.global_step - 1, saves)  # the last step taken, from 0


def hf(out: Path) -> None:
    """The HF Trainer under torch.distributed.run (gloo on CPU): the Trainer logs the loss averaged over the
    ranks, so both judge the same values; its LR jumps 30x at step 150."""
    import torch
    import transformers

    from analyzer.live.callbacks import HFTrainerCallback

    rank = int(os.environ.get("RANK", 0))
    torch.set_num_threads(1)
    _spy_on_writes(rank)
    _log_with_rank("transformers.steadytrain", rank)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=32, n_layer=1, n_head=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    gen = torch.Generator().manual_seed(0)
    starts = torch.randint(0, 32, (4800,), generator=gen)
    data = [{"input_ids": (s + 3 * torch.arange(16)) % 32, "labels": (s + 3 * torch.arange(16)) % 32} for s in starts]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s < 150 else 30.0)
    args = transformers.TrainingArguments(
        output_dir=str(out / "hf"), max_steps=300, per_device_train_batch_size=8, logging_steps=5,
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, seed=0, max_grad_norm=1e9,
        dataloader_num_workers=0)
    cb = HFTrainerCallback(every_n_steps=EVERY, max_overhead=None, stop_on="mid", checkpoint_on="mid")
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, optimizers=(opt, sched), callbacks=[cb])
    trainer.train()
    _report(out, rank, cb.monitor, trainer.state.global_step, [str(p.name) for p in cb.monitor.checkpoints])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    kind, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    if kind == "plain":
        import torch.multiprocessing as mp

        port = _free_port()
        modes = sys.argv[3] if len(sys.argv) > 3 else "own"
        mp.start_processes(plain, args=(2, out, port, modes), nprocs=2, start_method="spawn")
    elif kind == "lightning":
        lightning(out)
    elif kind == "hf" and "RANK" not in os.environ:  # start the two ranks as a user would: torchrun
        import subprocess

        raise SystemExit(subprocess.call([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                          "--master_port", str(_free_port()), __file__, "hf", str(out)]))
    elif kind == "hf":
        hf(out)
    else:
        raise SystemExit(f"unknown kind {kind!r}: plain or lightning")


if __name__ == "__main__":
    main()
