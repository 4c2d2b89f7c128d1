"""The Monitor inside Lightning and the HF Trainer: a `Callback` and a `TrainerCallback`.

    from analyzer.live.callbacks import LightningCallback, HFTrainerCallback
    trainer = lightning.Trainer(callbacks=[LightningCallback(stop_on="mid", checkpoint_on="mid")])
    trainer = transformers.Trainer(..., callbacks=[HFTrainerCallback(stop_on="divergence")])

Lightning and transformers are imported only when one of these names is first used: the classes
are made then, from the framework's own base class (the trainers check isinstance against it), so
`import analyzer.live` stays free of both. The hooks themselves live in plain mixins below.

What each records, with no device sync of its own:
- Lightning: the training step's loss (the tensor itself; with gradient accumulation the mean over
  the micro-batches of an optimizer step), the LR of the first param group (a float), the unclipped
  global gradient norm (measured in ``on_before_optimizer_step``, after AMP unscaling and before
  Lightning clips, left on the device; ``grad_norm=None`` measures it on CUDA, where it is a fused
  kernel, and not on CPU, where it costs a tiny model 2-8% of its step: True/False force it), and
  the validation loss after each validation. Steps count optimizer steps from 0.
- HF Trainer: what the Trainer logs (``on_log``: loss, grad_norm, learning_rate, eval_loss), which it
  has already turned into floats every ``logging_steps``; steps are the Trainer's global_step.
On a finding: a warning through the framework's own logger ("lightning.pytorch" / "transformers"),
the verdict level as a metric to Lightning's experiment loggers (``steadytrain/verdict_level``:
0 stable .. 3 divergence), then the actions: ``stop_on`` stops the run (``trainer.should_stop`` /
``control.should_training_stop``); ``checkpoint_on`` saves a checkpoint (Lightning:
``trainer.save_checkpoint`` to ``checkpoint_dir/steadytrain-step=S-last_good=G.ckpt``; HF: the
Trainer's own ``checkpoint-S`` save) with a restart plan and the probe spec beside it.

Distributed (DDP, FSDP, ...): the ranks decide together every N steps (Lightning: the strategy's own
reduce and broadcast, as ``reduce_boolean_decision`` does; HF: torch.distributed): a stop or a
checkpoint any rank wants happens on every rank at the same step, so the collective
``trainer.save_checkpoint`` runs on all of them; files and log lines come from global rank 0.

Across restarts: Lightning saves the Monitor's history and verdict in every checkpoint
(``state_dict``) and restores them on ``fit(ckpt_path=...)``; the HF callback reads the history back
from ``state.log_history`` when the Trainer resumes. A resumed run is judged as one run.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

from analyzer.config import AnalysisConfig
from analyzer.live.collective import Collective, StrategyCollective, TorchCollective
from analyzer.live.finding import FailOn, HandOver, LiveFinding
from analyzer.live.monitor import Framework, LossAcrossRanks, Monitor
from analyzer.live.state import from_log_history
from analyzer.verdicts import VERDICT

PLAN_NAME = "steadytrain_restart.json"
SPEC_NAME = "steadytrain_probe.yaml"


class _Options:
    """The settings both adapters take (see `Monitor` for each)."""

    def __init__(self, *, every_n_steps: int = 50, max_overhead: float | None = 0.005, stop_on: FailOn | None = None,
                 checkpoint_on: FailOn | None = None, checkpoint_dir: str | Path | None = None,
                 config: AnalysisConfig | None = None, hparams: Mapping[str, Any] | None = None,
                 roles: Mapping[str, str] | None = None, run_id: str | None = None,
                 on_finding: Callable[[LiveFinding], object] | None = None,
                 loss_across_ranks: LossAcrossRanks = "own") -> None:
        self.st_options: dict[str, Any] = dict(
            every_n_steps=every_n_steps, max_overhead=max_overhead, stop_on=stop_on, checkpoint_on=checkpoint_on,
            config=config, roles=roles, on_finding=on_finding, loss_across_ranks=loss_across_ranks)
        self.st_checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.st_hparams = dict(hparams or {})
        self.st_run_id = run_id
        self.monitor: Monitor | None = None
        Monitor(**self.st_options)  # one-line errors for bad settings now, not at the first step

    def _make_monitor(self, run_id: str, hparams: Mapping[str, Any], logger: logging.Logger,
                      checkpoint_dir: Path, framework: Framework, collective: Collective | None,
                      **overrides: Any) -> Monitor:
        options = {**self.st_options, **overrides}
        self.monitor = Monitor(run_id=self.st_run_id or run_id, hparams={**hparams, **self.st_hparams},
                               logger=logger, checkpoint_dir=self.st_checkpoint_dir or checkpoint_dir,
                               framework=framework, collective=collective, **options)
        return self.monitor

    @property
    def finding(self) -> LiveFinding | None:
        """The latest change found (None while nothing was found)."""
        return self.monitor.finding if self.monitor is not None else None


class LightningHooks(_Options):
    """The Lightning hooks (mixed into ``lightning.pytorch.Callback`` by `LightningCallback`)."""

    def __init__(self, *, grad_norm: bool | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.st_grad_norm = grad_norm
        self._norm: Any = None
        self._loss_sum: Any = None
        self._seen_step = -1
        self._restored: Mapping[str, Any] | None = None  # a checkpoint's state, until the Monitor is made
        self._measure: bool | None = None  # whether to measure the grad norm (decided at the first step)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        hp: dict[str, Any] = {}
        if getattr(trainer, "max_steps", -1) and trainer.max_steps > 0:
            hp["max_steps"] = trainer.max_steps
        elif getattr(trainer, "estimated_stepping_batches", None):
            try:
                steps = float(trainer.estimated_stepping_batches)
                if steps != float("inf"):
                    hp["max_steps"] = int(steps)
            except (TypeError, ValueError):
                pass
        if trainer.optimizers:
            opt = trainer.optimizers[0]
            hp["optimizer"] = type(opt).__name__.lower()
            hp["lr"] = opt.param_groups[0].get("initial_lr", opt.param_groups[0]["lr"])
        module_hp = getattr(pl_module, "hparams", None)
        if isinstance(module_hp, Mapping):
            hp.update({k: v for k, v in module_hp.items() if isinstance(v, (int, float, str, bool))})
        log_dir = str(getattr(trainer, "log_dir", None) or getattr(trainer, "default_root_dir", None) or ".")
        name = getattr(getattr(trainer, "logger", None), "name", None) or "lightning"
        world = int(getattr(trainer, "world_size", 1) or 1)
        collective = StrategyCollective(trainer.strategy) if world > 1 else None
        self._make_monitor(str(name), hp, logging.getLogger("lightning.pytorch.steadytrain"),
                           Path(log_dir) / "steadytrain", "lightning", collective)
        assert self.monitor is not None
        self.monitor.saver = lambda hand: self._save(trainer, hand)
        if self._restored is not None:
            self.monitor.load_state_dict(self._restored)
            self._restored = None

    def state_dict(self) -> dict[str, Any]:
        """Saved in every Lightning checkpoint: the Monitor's history and verdict."""
        if self.monitor is not None:
            return self.monitor.state_dict()
        return dict(self._restored or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Called by ``fit(ckpt_path=...)`` before training starts: the Monitor made then continues from it."""
        if not state_dict:
            return
        if self.monitor is not None:
            self.monitor.load_state_dict(state_dict)
        else:
            self._restored = state_dict

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self._measure is None:  # decided once: not a walk over the parameters every step to decide it
            first = next((p for group in optimizer.param_groups for p in group["params"]), None)
            self._measure = self.st_grad_norm if self.st_grad_norm is not None else bool(
                first is not None and first.is_cuda)
        if not self._measure:
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            # Unclipped (Lightning clips after this hook) and unscaled (AMP unscales before it); on the device.
            self._norm = global_norm(grads)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        # A dict (what Lightning hands over) is told in C; typing's Mapping check costs ~10-30 us a step.
        loss = outputs.get("loss") if isinstance(outputs, dict) or (
            not hasattr(outputs, "detach") and isinstance(outputs, Mapping)) else outputs
        if loss is not None and hasattr(loss, "detach"):
            if loss.requires_grad:  # Lightning hands over a detached copy already: no second detach per step
                loss = loss.detach()
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        step = int(trainer.global_step) - 1  # optimizer steps taken, counted from 0
        if step <= self._seen_step or self.monitor is None:
            return  # a micro-batch of gradient accumulation: its loss joins the sum
        self._seen_step = step
        # Lightning divides each micro-batch loss by accumulate_grad_batches: their sum is the step's mean.
        loss, self._loss_sum = self._loss_sum, None
        optimizers = trainer.optimizers
        lr = optimizers[0].param_groups[0]["lr"] if optimizers else None
        norm, self._norm = self._norm, None
        finding = self.monitor.update(step, loss=loss, grad_norm=norm, lr=lr)
        if finding is not None and self.monitor.is_writer:
            for lg in getattr(trainer, "loggers", []) or []:
                lg.log_metrics({"steadytrain/verdict_level": float(VERDICT[finding.verdict].level)}, step=step)
        if self.monitor.should_stop and not trainer.should_stop:
            trainer.should_stop = True

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.monitor is None or getattr(trainer, "sanity_checking", False):
            return
        from analyzer.roles import assign_roles

        metrics = getattr(trainer, "callback_metrics", {}) or {}
        key = assign_roles({k: 1 for k in metrics}).eval_loss
        if key is not None:
            self.monitor.update(max(int(trainer.global_step) - 1, 0), eval_loss=metrics[key])

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.monitor is not None and self.monitor.last_step is not None:
            self.monitor.finish()  # the last steps since the last judgement (every rank: a last decision together)

    def _save(self, trainer: Any, hand: HandOver) -> Path:
        assert self.monitor is not None
        directory = self.monitor.checkpoint_dir
        path = directory / f"{hand.stem}.ckpt"
        trainer.save_checkpoint(str(path))  # collective: every rank calls it, the strategy decides who writes
        if self.monitor.is_writer:
            hand.write(directory / f"{hand.stem}.restart.json", directory / f"{hand.stem}.probe.yaml")
            self.monitor.log.warning("steadytrain: saved %s; restart from a checkpoint at or before step %s and "
                                     "skip the batches after it (plan: %s.restart.json)", path, hand.last_good_step,
                                     hand.stem)
        return path


def global_norm(grads: list[Any]) -> Any:
    """The global L2 norm of ``grads`` as a 0-d tensor on their device, without a sync. CUDA: per-tensor
    norms in one fused kernel, then one norm of those; CPU: one norm over a flat copy (cheaper there
    than dispatching a norm per tensor); mixed devices or dtypes: torch's own get_total_norm."""
    import torch

    if len({(g.device, g.dtype) for g in grads}) != 1 or any(g.is_sparse for g in grads):
        return torch.nn.utils.get_total_norm(grads)
    if grads[0].is_cuda:
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return torch.linalg.vector_norm(torch._utils._flatten_dense_tensors(grads))


class HFHooks(_Options):
    """The HF Trainer hooks (mixed into ``transformers.TrainerCallback`` by `HFTrainerCallback`)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._save_for: HandOver | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from transformers.utils import logging as hf_logging

        hp: dict[str, Any] = {"lr": args.learning_rate, "optimizer": str(getattr(args, "optim", "adamw")),
                              "batch_size": args.per_device_train_batch_size}
        if getattr(state, "max_steps", 0):
            hp["max_steps"] = state.max_steps
        if getattr(args, "max_grad_norm", None):
            hp["max_grad_norm"] = args.max_grad_norm
        if getattr(args, "warmup_steps", None):
            hp["warmup_steps"] = args.warmup_steps
        output = Path(args.output_dir or ".")
        logger: Any = hf_logging.get_logger("transformers.steadytrain")  # a logging.Logger under HF's handler
        # The Trainer logs the loss averaged over the ranks already: the same values on every rank, judged
        # alike; the ranks still decide together (a due judgement may wait on one rank and not another).
        collective = None
        if int(getattr(args, "world_size", 1) or 1) > 1:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                collective = TorchCollective()
            else:  # e.g. a runtime without torch.distributed (XLA): each process acts on its own judgement
                logger.warning("steadytrain: %d processes but torch.distributed is not initialised: each judges "
                               "and acts alone (give the callback stop_on=None and checkpoint_on=None there)",
                               args.world_size)
        self._make_monitor(getattr(args, "run_name", None) or output.name, hp, logger, output, "hf_trainer",
                           collective, loss_across_ranks="own")
        assert self.monitor is not None
        self.monitor.saver = self._ask_to_save
        if getattr(state, "global_step", 0) and getattr(state, "log_history", None):
            # Resumed from a checkpoint: its trainer_state.json's log history is the run so far.
            self.monitor.restore(from_log_history(state.log_history))

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        if self.monitor is None or not logs:
            return
        values = {k: logs.get(src) for k, src in (("loss", "loss"), ("grad_norm", "grad_norm"),
                                                    ("lr", "learning_rate"), ("eval_loss", "eval_loss"))}
        if all(v is None for v in values.values()):
            return  # e.g. the run's closing summary (train_runtime, train_loss averaged over the whole run)
        self.monitor.update(int(state.global_step), **values)
        if self.monitor.should_stop:
            control.should_training_stop = True
        if self._save_for is not None:
            control.should_save = True  # the Trainer saves checkpoint-<global_step> right after this log

    def _ask_to_save(self, hand: HandOver) -> Path | None:
        self._save_for = hand
        return None  # saved by the Trainer (its own flow, on every rank); on_save writes the plan into it

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._save_for is None or self.monitor is None:
            return
        hand, self._save_for = self._save_for, None
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.monitor.checkpoints.append(folder)
        if getattr(state, "is_world_process_zero", True):
            hand.write(folder / PLAN_NAME, folder / SPEC_NAME)
            self.monitor.log.warning("steadytrain: saved %s (last good step %s; restart from a checkpoint at or "
                                     "before it and skip the batches after it: %s)", folder, hand.last_good_step,
                                     PLAN_NAME)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is None or self.monitor.last_step is None:
            return
        self.monitor.finish()
        if self._save_for is not None:  # found at the very end: no checkpoint follows, the plan still does
            hand, self._save_for = self._save_for, None
            if getattr(state, "is_world_process_zero", True):
                out = Path(args.output_dir or ".")
                hand.write(out / PLAN_NAME, out / SPEC_NAME)


@functools.cache
def lightning_callback_class(base: type | None = None) -> type:
    """`LightningHooks` on ``base`` (default: ``lightning.pytorch.Callback``, else ``pytorch_lightning.Callback``)."""
    if base is None:
        try:
            from lightning.pytorch import Callback as base
        except ImportError:
            try:
                from pytorch_lightning import Callback as base
            except ImportError:
                raise ImportError("LightningCallback needs Lightning: pip install lightning") from None
    assert base is not None
    return type("LightningCallback", (LightningHooks, base), {"__module__": __name__,
                                                               "__doc__": LightningHooks.__doc__})


@functools.cache
def hf_callback_class() -> type:
    """`HFHooks` on ``transformers.TrainerCallback``."""
    try:
        from transformers import TrainerCallback
    except ImportError:
        raise ImportError("HFTrainerCallback needs transformers: pip install transformers") from None
    return type("HFTrainerCallback", (HFHooks, TrainerCallback), {"__module__": __name__, "__doc__": HFHooks.__doc__})


def __getattr__(name: str) -> type:
    if name == "LightningCallback":
        return lightning_callback_class()
    if name == "HFTrainerCallback":
        return hf_callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
