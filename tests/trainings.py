"""Tiny real trainings on CPU, logged by the frameworks' own writers (seconds each), for the run-identity tests.

- `hf_trainer`: a 2-layer GPT-2 built from a config (nothing downloaded) trained by the HF Trainer with
  TensorBoard reporting and checkpoints, as ``Trainer(..., report_to=["tensorboard"])`` writes it:
  ``out/checkpoint-N/trainer_state.json`` and ``out/runs/<date>_<host>/events...``.
- `lightning_fit`: an MLP fitted by Lightning with its default TensorBoard logger (or a CSV one), into
  ``root/lightning_logs/version_N``; ``ckpt_path`` resumes from a checkpoint as users do.
- `wandb_offline`: the wandb package in offline mode, in a child process (no network, none of wandb's
  process-wide hooks in the test process).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Sequence

import pytest

torch = pytest.importorskip("torch")


class _Stop(Exception):
    """The job is killed (a preemption, an OOM): raised from a callback after a checkpoint was written."""


def _wait_for_a_new_second() -> None:
    # The Trainer names its TensorBoard folder runs/<date>_<host> to the second: two attempts in one
    # second would share a folder, which no real job restarted after minutes does.
    time.sleep(1.05 - time.time() % 1.0)


def hf_trainer(out: Path, *, max_steps: int = 40, lr: float = 3e-3, seed: int = 0, stop_at: int | None = None,
               resume: bool = False, save_state: bool = False, extra_tb_metric: bool = False,
               max_grad_norm: float = 1.0, nan_filter: bool = True, half: bool = False) -> Any:
    """Train the tiny GPT-2; ``stop_at`` kills the job after that step, ``resume`` resumes from the output folder's
    last checkpoint. ``extra_tb_metric`` adds what users' callbacks do: a scalar only TensorBoard gets."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    pytest.importorskip("tensorboard")
    if (out / "runs").exists():
        _wait_for_a_new_second()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=32, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(config)
    if half:  # half precision without loss scaling: what overflows to inf, then NaN
        model = model.to(torch.float16)
    gen = torch.Generator().manual_seed(0)
    starts = torch.randint(0, 32, (1200,), generator=gen)
    data = [{"input_ids": (s + 3 * torch.arange(16)) % 32, "labels": (s + 3 * torch.arange(16)) % 32}
            for s in starts]

    class Kill(transformers.TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if stop_at is not None and state.global_step == stop_at:
                raise _Stop

    class ExtraScalar(transformers.TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            tb = next(c for c in trainer.callback_handler.callbacks
                      if type(c).__name__ == "TensorBoardCallback").tb_writer
            if "loss" in (logs or {}):
                tb.add_scalar("train/tokens_per_second", 1000.0 + state.global_step, state.global_step)

    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=8, learning_rate=lr, logging_steps=2,
        save_steps=10, eval_strategy="steps", eval_steps=10, per_device_eval_batch_size=16,
        report_to=["tensorboard"], use_cpu=True, disable_tqdm=True, seed=seed, dataloader_num_workers=0,
        max_grad_norm=max_grad_norm, logging_nan_inf_filter=nan_filter)
    callbacks = [Kill()] + ([ExtraScalar()] if extra_tb_metric else [])
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:32],
                                   callbacks=callbacks)
    try:
        trainer.train(resume_from_checkpoint=True if resume else None)
    except _Stop:
        for cb in trainer.callback_handler.callbacks:  # a killed job's writer has flushed what it logged
            writer = getattr(cb, "tb_writer", None)
            if writer is not None:
                writer.close()
        return trainer
    if save_state:
        trainer.save_state()
    return trainer


def lightning_fit(root: Path, *, lr: float = 3e-3, seed: int = 0, max_steps: int = 60, ckpt_path: Path | None = None,
                  logger: str = "tensorboard", name: str = "lightning_logs") -> Any:
    """Fit a small MLP on a fixed teacher task; returns the Trainer (its checkpoint callback's last path)."""
    pl = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from tests.unstable_training import mlp, teacher_batches

    torch.set_num_threads(1)
    pl.seed_everything(seed, verbose=False)
    batch = teacher_batches(seed=0)

    class Module(pl.LightningModule):
        def __init__(self, lr: float, seed: int) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = mlp(seed)

        def training_step(self, b: Any, idx: int) -> Any:
            x, y = b
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    data = [batch(s) for s in range(20)]  # 20 steps an epoch: a checkpoint at every epoch's end
    loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=False)
    log = (TensorBoardLogger(root, name=name, default_hp_metric=False) if logger == "tensorboard"
           else CSVLogger(root, name=name))
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=log, log_every_n_steps=2,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=root)
    trainer.fit(Module(lr, seed), loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
    return trainer


def wandb_offline(root: Path, script: str, *, console: bool = False) -> None:
    """Run ``script`` (Python using ``wandb``) offline in ``root``; wandb/ folders are written under it.
    ``console``: wandb captures what the script prints into the run's files/output.log."""
    pytest.importorskip("wandb")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "WANDB_MODE": "offline", "WANDB_DIR": str(root),
           "WANDB_SILENT": "true", "WANDB_CONSOLE": "wrap" if console else "off", "WANDB_DISABLE_GIT": "true"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def steps_of(series: Any) -> Sequence[int]:
    return [int(s) for s in series.steps]
