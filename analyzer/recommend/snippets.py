"""Ready-to-paste config for the framework a log came from (plain PyTorch, Lightning, HF Trainer)."""

from __future__ import annotations

from analyzer.ingest.registry import framework_of
from analyzer.types import Format


def framework_for(fmt: Format) -> str:
    """The framework a log of this format came from: the registry's table says it."""
    return framework_of(fmt)


def _num(x: float) -> str:
    return f"{x:.3g}"


def clip_snippets(max_norm: float) -> dict[str, str]:
    t = _num(max_norm)
    return {
        "pytorch": (
            "# after loss.backward() (and scaler.unscale_(optimizer) under AMP), before optimizer.step():\n"
            f"grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={t})\n"
            "# grad_norm is the UNCLIPPED global norm: keep logging it\n"
            "writer.add_scalar(\"train/grad_norm\", grad_norm.item(), step)"
        ),
        "lightning": f"trainer = pl.Trainer(gradient_clip_val={t}, gradient_clip_algorithm=\"norm\")",
        "hf_trainer": f"args = TrainingArguments(..., max_grad_norm={t})",
    }


def warmup_snippets(warmup_steps: int, lr_value: float | None, total_steps: int | None, *,
                    sweep: list[int] | None = None, sweep_lr: float | None = None) -> dict[str, str]:
    """The safe first run (the current LR with the given warmup), and the sweep to run next as a comment."""
    lr = _num(lr_value) if lr_value else "LR"
    total = str(total_steps) if total_steps else "MAX_STEPS"
    then = ""
    if sweep:
        then = (f"# then: warmup_steps in {sweep}" + (f" at lr={_num(sweep_lr)}" if sweep_lr else "")
                + "; keep the shortest that is stable\n")
    snippets = {
        "pytorch": (
            f"optimizer = torch.optim.AdamW(model.parameters(), lr={lr})\n"
            f"warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-8, end_factor=1.0, "
            f"total_iters={warmup_steps})\n"
            "after = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)  # or your existing decay\n"
            "scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, after], "
            f"milestones=[{warmup_steps}])\n"
            "# call scheduler.step() once per optimizer step"
        ),
        "lightning": (
            "def configure_optimizers(self):\n"
            f"    opt = torch.optim.AdamW(self.parameters(), lr={lr})\n"
            f"    warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1e-8, total_iters={warmup_steps})\n"
            "    after = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)\n"
            f"    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warmup, after], milestones=[{warmup_steps}])\n"
            "    return {\"optimizer\": opt, \"lr_scheduler\": {\"scheduler\": sched, \"interval\": \"step\"}}"
        ),
        "hf_trainer": (f"args = TrainingArguments(..., learning_rate={lr}, warmup_steps={warmup_steps}, "
                       f"max_steps={total})"),
    }
    return {k: then + v for k, v in snippets.items()}


def lower_lr_snippets(new_lr: float) -> dict[str, str]:
    lr = _num(new_lr)
    return {
        "pytorch": f"optimizer = torch.optim.AdamW(model.parameters(), lr={lr})",
        "lightning": f"# in configure_optimizers\nopt = torch.optim.AdamW(self.parameters(), lr={lr})",
        "hf_trainer": f"args = TrainingArguments(..., learning_rate={lr})",
    }


def log_grad_norm_snippets() -> dict[str, str]:
    return {
        "pytorch": ("grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=float(\"inf\"))\n"
                    "writer.add_scalar(\"train/grad_norm\", grad_norm.item(), step)  # unclipped global norm"),
        "lightning": ("def on_before_optimizer_step(self, optimizer):\n"
                      "    norms = pl.utilities.grad_norm(self, norm_type=2)\n"
                      "    self.log(\"grad_norm\", norms[\"grad_2.0_norm_total\"])"),
        "hf_trainer": "# transformers >= 4.38 logs grad_norm with every logging step: set logging_steps=1 early on",
    }
