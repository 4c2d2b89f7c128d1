"""The run's own model, optimizer and LR schedule, rebuilt from a spec's ``source``.

- hf: the class config.json's ``architectures`` names (transformers), from the checkpoint folder's
  weights (``from_pretrained``, local files only, never remote code) or fresh from its config; AdamW
  with the Trainer's decay / no-decay groups; the Trainer's schedule from training_args.
- lightning: the LightningModule class (imported: your code) built from the checkpoint's hparams as
  ``load_from_checkpoint`` does, its weights from ``state_dict``; the optimizer and scheduler from its
  own ``configure_optimizers`` (as Lightning parses it), their states from the checkpoint.
- nanogpt: probes.nanogpt's GPT from ``model_args``, nanoGPT's optimizer groups and ``get_lr``.

Checkpoints are loaded with ``torch.load(weights_only=True)``: tensors and plain values, no code. A
model scaled down (``scale``) starts from fresh weights: a checkpoint cannot be shrunk.
"""

from __future__ import annotations

import importlib
import inspect
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from analyzer.errors import ConfigError
from probes.spec import ProbeSpec

#: LR schedule: log step -> the LR of each param group (before a trial's factor and warmup).
Schedule = Callable[[int], list[float]]


@dataclass
class OwnModel:
    """What a trial trains, rebuilt from the run's artifacts.

    Attributes:
        model: the module (on the CPU; the runner moves it).
        loss_of: tokens (B, T+1) -> the training loss, the way the run computed it.
        make_optimizer: params are the model's: builds the run's optimizer (its state loaded when resuming).
        schedule: the run's own LR per param group at a log step.
        vocab_size, seq_len: for the data. tokenizer_dir: the run's tokenizer, for text data.
        used: what was used, one line each (shown in the probe report).
    """

    model: nn.Module
    loss_of: Callable[[torch.Tensor], torch.Tensor]
    make_optimizer: Callable[[], torch.optim.Optimizer]
    schedule: Schedule | None
    vocab_size: int
    seq_len: int
    tokenizer_dir: Path | None = None
    used: list[str] = field(default_factory=list)


def _load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"checkpoint {path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - torch raises several kinds for files it will not load safely
        raise ConfigError(f"checkpoint {path}: not loadable as weights only ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160]})") from None


def scaled(args: Mapping[str, Any], scale: Mapping[str, float] | None) -> tuple[dict[str, Any], str | None]:
    """Model arguments with depth and width shrunk: layer counts x depth; widths x width (rounded to whole
    heads, the head size kept); None when nothing changed."""
    out = dict(args)
    if not scale:
        return out, None
    depth, width = scale.get("depth", 1.0), scale.get("width", 1.0)
    changed = []
    for key in ("n_layer", "num_hidden_layers", "num_layers", "layers", "depth"):
        if isinstance(out.get(key), int):
            new = max(1, round(out[key] * depth))
            changed.append(f"{key} {out[key]} -> {new}")
            out[key] = new
    heads_key = next((k for k in ("n_head", "num_attention_heads", "nhead") if isinstance(out.get(k), int)), None)
    width_key = next((k for k in ("n_embd", "hidden_size", "d_model", "width") if isinstance(out.get(k), int)), None)
    if width_key:
        heads = out[heads_key] if heads_key else 1
        head_dim = out[width_key] // max(heads, 1)
        new_heads = max(1, round(heads * width))
        new_width = new_heads * head_dim if heads_key else max(1, round(out[width_key] * width))
        changed.append(f"{width_key} {out[width_key]} -> {new_width}")
        if heads_key:
            out[heads_key] = new_heads
            kv = out.get("num_key_value_heads")
            if isinstance(kv, int):
                out["num_key_value_heads"] = max(1, min(new_heads, round(kv * width)))
        out[width_key] = new_width
        for key in ("intermediate_size", "n_inner", "ffn_dim"):
            if isinstance(out.get(key), int):
                out[key] = max(1, round(out[key] * width))
    return out, ("scaled down (" + ", ".join(changed) + "): fresh weights, not the checkpoint's") if changed else None


def _lm_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1))


def _adam_kind(spec: ProbeSpec) -> type[torch.optim.Optimizer]:
    return torch.optim.Adam if spec.optimizer == "adam" else torch.optim.AdamW


def _load_optimizer(opt: torch.optim.Optimizer, state: Any, where: str, used: list[str]) -> None:
    if not isinstance(state, dict) or "param_groups" not in state:
        used.append(f"optimizer state: none in {where}: the optimizer starts fresh (Adam moments from zero)")
        return
    got = [len(g["params"]) for g in state["param_groups"]]
    have = [len(g["params"]) for g in opt.param_groups]
    if got != have:
        used.append(f"optimizer state in {where} has param groups of {got} tensors, the rebuilt optimizer {have}: "
                    "not loaded (the optimizer starts fresh)")
        return
    opt.load_state_dict(state)
    used.append(f"optimizer state (Adam moments, step counts) from {where}")


def _hf(spec: ProbeSpec, src: Mapping[str, Any], used: list[str]) -> OwnModel:
    import transformers

    transformers.logging.set_verbosity_error()
    config_dir = Path(src.get("checkpoint") or Path(str(src.get("config"))).parent)
    config = transformers.AutoConfig.from_pretrained(str(config_dir), local_files_only=True)
    arch = str(src["architecture"])
    cls = getattr(transformers, arch, None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise ConfigError(f"source.architecture {arch!r}: not a model class of the installed transformers "
                          f"{transformers.__version__}")
    sizes, note = scaled(config.to_dict(), spec.scale)
    resume = src.get("checkpoint") and note is None
    if note:
        config = type(config).from_dict(sizes)
        used.append(note)
    torch.manual_seed(spec.seed)
    if resume:
        model = cls.from_pretrained(str(config_dir), local_files_only=True)
        used.append(f"model: {arch} with the weights of {config_dir}")
    else:
        model = cls._from_config(config)
        used.append(f"model: {arch} from {config_dir / 'config.json'}, fresh weights (seed {spec.seed})")
    tokenizer_dir = config_dir if any((config_dir / n).is_file() for n in ("tokenizer.json", "vocab.json",
                                                                          "tokenizer.model", "vocab.txt")) else None

    def loss_of(tokens: torch.Tensor) -> torch.Tensor:
        return _lm_loss(model(input_ids=tokens[:, :-1]).logits, tokens[:, 1:])

    def make_optimizer() -> torch.optim.Optimizer:
        decay = set(transformers.Trainer.get_decay_parameter_names(None, model))  # type: ignore[arg-type]
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in named if n in decay], "weight_decay": spec.weight_decay},
                  {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]
        kind: Any = _adam_kind(spec)
        opt: torch.optim.Optimizer = kind(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps)
        if resume and (config_dir / "optimizer.pt").is_file():
            _load_optimizer(opt, _load(config_dir / "optimizer.pt"), str(config_dir / "optimizer.pt"), used)
        return opt

    schedule = None
    sched = spec.schedule or {}
    if sched.get("kind") == "hf":
        multiplier = _hf_lambda(sched)

        def schedule(step: int) -> list[float]:
            return [spec.lr * multiplier(max(step - 1, 0))]  # HF logs update k as step k: lambda(k - 1)
    seq = next((getattr(config, k) for k in ("n_positions", "max_position_embeddings") if
                isinstance(getattr(config, k, None), int)), 1024)
    return OwnModel(model, loss_of, make_optimizer, schedule, int(config.vocab_size),
                    min(spec.seq_len or seq, seq), tokenizer_dir, used)


def _hf_lambda(sched: Mapping[str, Any]) -> Callable[[int], float]:
    """The Trainer's LR multiplier per scheduler step, from transformers' own get_scheduler on a dummy optimizer."""
    import transformers

    dummy = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    total = sched.get("total_steps") or 10**9
    kwargs = sched.get("kwargs") if isinstance(sched.get("kwargs"), dict) else {}
    s = transformers.get_scheduler(str(sched.get("name", "linear")), dummy, num_warmup_steps=sched.get("warmup_steps", 0),
                                   num_training_steps=total, scheduler_specific_kwargs=kwargs or None)
    lambdas = getattr(s, "lr_lambdas", None)
    if not lambdas:
        raise ConfigError(f"HF scheduler {sched.get('name')!r}: not a per-step schedule the probe can replay")
    return lambdas[0]


def _import_class(path: str) -> type:
    module_name, _, name = path.rpartition(".")
    if ":" in path:
        module_name, _, name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), name, None)
    except ImportError as exc:
        raise ConfigError(f"source.class_path {path!r}: cannot import {module_name!r} ({exc}); is it on "
                          "PYTHONPATH?") from None
    if not isinstance(cls, type):
        raise ConfigError(f"source.class_path {path!r}: {module_name} has no class {name!r}")
    return cls


def _lightning(spec: ProbeSpec, src: Mapping[str, Any], used: list[str]) -> OwnModel:
    class_path = src.get("class_path")
    if not class_path:
        raise ConfigError("source.class_path is empty: the LightningModule's class was not recorded with the run "
                          "(LightningCLI records it); set it to package.module.Class in the spec")
    cls = _import_class(str(class_path))
    # training_step's self.log() has no Trainer to log to here: Lightning warns once a trial, nothing is lost
    warnings.filterwarnings("ignore", message=r".*self\.trainer. reference is not registered.*")
    args, note = scaled(dict(src.get("model_args") or {}), spec.scale)
    params = inspect.signature(cls).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        args = {k: v for k, v in args.items() if k in params}
    torch.manual_seed(spec.seed)
    module = cls(**args)
    ckpt = _load(Path(src["checkpoint"])) if src.get("checkpoint") and note is None else None
    if note:
        used.append(note)
    if ckpt is not None:
        module.load_state_dict(ckpt["state_dict"])
        used.append(f"model: {class_path} with the weights of {src['checkpoint']} (step {ckpt.get('global_step')})")
    else:
        used.append(f"model: {class_path}({', '.join(f'{k}={v!r}' for k, v in args.items())}), fresh weights")
    lrs: list[list[float]] = []

    def make_optimizer() -> torch.optim.Optimizer:
        """Lightning's own parse of configure_optimizers, after the model is on its device (states follow it)."""
        conf = module.configure_optimizers()
        try:
            from lightning.pytorch.core.optimizer import _configure_optimizers, _configure_schedulers_automatic_opt

            optimizers, sched_dicts, monitor = _configure_optimizers(conf)
            schedulers = [(c.scheduler, c.interval) for c in _configure_schedulers_automatic_opt(sched_dicts, monitor)]
        except ImportError:
            optimizers, schedulers = _parse_configure(conf)
        if len(optimizers) != 1:
            raise ConfigError(f"{class_path}.configure_optimizers returns {len(optimizers)} optimizers: a probe "
                              "replays one (manual optimization is not supported)")
        opt = optimizers[0]
        if ckpt is not None:
            _load_optimizer(opt, (ckpt.get("optimizer_states") or [None])[0], str(src["checkpoint"]), used)
            for (sched, _), state in zip(schedulers, ckpt.get("lr_schedulers") or []):
                sched.load_state_dict(state)
        used.append(f"optimizer and schedule: {class_path}.configure_optimizers ({type(opt).__name__}"
                    + (f", {', '.join(type(s).__name__ + ' per ' + i for s, i in schedulers)}" if schedulers else "")
                    + ")")
        lrs[:] = _dry_run(opt, schedulers[0] if schedulers else None, spec.steps)
        return opt

    def schedule(step: int) -> list[float]:
        return lrs[min(max(step - spec.start_step, 0), len(lrs) - 1)]

    def loss_of(tokens: torch.Tensor) -> torch.Tensor:
        out = module.training_step((tokens[:, :-1], tokens[:, 1:]), 0)
        return out if isinstance(out, torch.Tensor) else out["loss"]

    seq = next((args[k] for k in ("block_size", "seq_len", "max_len", "context_length") if isinstance(args.get(k), int)),
               128)
    vocab = next((args[k] for k in ("vocab_size", "vocab", "n_vocab") if isinstance(args.get(k), int)), 256)
    return OwnModel(module, loss_of, make_optimizer, schedule, vocab, min(spec.seq_len or seq, seq), None, used)


def _parse_configure(conf: Any) -> tuple[list[torch.optim.Optimizer], list[tuple[Any, str]]]:
    """configure_optimizers' return when Lightning is not importable: an optimizer, ([opts], [scheds]), or a dict."""
    if isinstance(conf, torch.optim.Optimizer):
        return [conf], []
    if isinstance(conf, dict):
        sched = conf.get("lr_scheduler")
        if isinstance(sched, dict):
            return [conf["optimizer"]], [(sched["scheduler"], sched.get("interval", "epoch"))]
        return [conf["optimizer"]], [(sched, "epoch")] if sched is not None else []
    opts, scheds = conf
    return list(opts), [(s["scheduler"], s.get("interval", "epoch")) if isinstance(s, dict) else (s, "epoch")
                        for s in scheds]


def _dry_run(opt: torch.optim.Optimizer, sched: tuple[Any, str] | None, steps: int) -> list[list[float]]:
    """The LRs the run's own scheduler gives for the next ``steps`` updates, its state restored after."""
    now = [float(g["lr"]) for g in opt.param_groups]
    if sched is None or sched[1] != "step":
        return [now]  # no scheduler, or one stepped per epoch: constant over a short replay
    scheduler = sched[0]
    saved = scheduler.state_dict()
    out = []
    for _ in range(steps):
        out.append([float(g["lr"]) for g in opt.param_groups])
        scheduler.step()
    scheduler.load_state_dict(saved)
    for g, lr in zip(opt.param_groups, now):
        g["lr"] = lr
    return out


def _nanogpt(spec: ProbeSpec, src: Mapping[str, Any], used: list[str]) -> OwnModel:
    from probes.nanogpt import GPT, GPTConfig, get_lr, load_model_state

    args, note = scaled(dict(src.get("model_args") or {}), spec.scale)
    known = {k: v for k, v in args.items() if k in GPTConfig.__dataclass_fields__}
    torch.manual_seed(spec.seed)
    model = GPT(GPTConfig(**known))
    ckpt = _load(Path(src["checkpoint"])) if src.get("checkpoint") and note is None else None
    if note:
        used.append(note)
    if ckpt is not None:
        load_model_state(model, ckpt["model"])
        used.append(f"model: nanoGPT GPT({', '.join(f'{k}={v}' for k, v in known.items())}) with the weights of "
                    f"{src['checkpoint']} (iter {ckpt.get('iter_num')})")
    else:
        used.append(f"model: nanoGPT GPT({', '.join(f'{k}={v}' for k, v in known.items())}), fresh weights")

    def make_optimizer() -> torch.optim.Optimizer:
        opt = model.configure_optimizers(spec.weight_decay, spec.lr, spec.betas, next(model.parameters()).device.type)
        if ckpt is not None:
            _load_optimizer(opt, ckpt.get("optimizer"), str(src["checkpoint"]), used)
        return opt

    sched = spec.schedule or {}
    schedule = None
    if sched.get("kind") == "nanogpt":
        def schedule(step: int) -> list[float]:
            lr = get_lr(step, learning_rate=float(sched.get("learning_rate", spec.lr)),
                        warmup_iters=int(sched.get("warmup_iters", 0)),
                        lr_decay_iters=int(sched.get("lr_decay_iters", 10**9)),
                        min_lr=float(sched.get("min_lr", 0.0)), decay_lr=bool(sched.get("decay_lr", True)))
            return [lr]

    def loss_of(tokens: torch.Tensor) -> torch.Tensor:
        loss = model(tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())[1]
        assert loss is not None
        return loss

    return OwnModel(model, loss_of, make_optimizer, schedule, model.config.vocab_size,
                    min(spec.seq_len or model.config.block_size, model.config.block_size), None, used)


def build_own(spec: ProbeSpec) -> OwnModel:
    """The run's own model from ``spec.source`` (spec.workload == "run")."""
    src = spec.source or {}
    used: list[str] = []
    if src.get("checkpoint") and spec.scale:
        used.append("--scale: a checkpoint cannot be shrunk, so the scaled model starts from fresh weights")
    build = {"hf": _hf, "lightning": _lightning, "nanogpt": _nanogpt}[str(src.get("kind"))]
    return build(spec, src, used)


def lr_of(own: OwnModel, spec: ProbeSpec) -> tuple[Schedule, str]:
    """The base LR per group at a log step: the logged LR (``lr_trace``) where the rebuilt schedule disagrees
    with it or there is none, else the rebuilt schedule; with which one, for the report.

    Tools log the LR either before the update of that step (Lightning's LearningRateMonitor) or after the
    scheduler stepped (the HF Trainer: the LR of the next update); both alignments are compared, and a
    logged trace used as the schedule is read with the one that fits (HF's when there is nothing to fit)."""
    trace = spec.lr_trace
    rebuilt = own.schedule
    if trace:
        steps = [s for s, _ in trace]
        values = [v for _, v in trace]

        def at(step: int) -> float:
            return values[max(0, min(len(steps) - 1, _bisect_right(steps, step) - 1))]

        def worst(ahead: int) -> float:
            assert rebuilt is not None
            return max(abs(rebuilt(s + ahead)[0] - v) / max(abs(v), 1e-12) for s, v in trace)

        if rebuilt is None:
            ahead = 1 if (spec.source or {}).get("kind") == "hf" else 0
            return (lambda step: [at(step - ahead)]), "LR as the run logged it (no schedule could be rebuilt)"
        misfit, ahead = min((worst(0), 0), (worst(1), 1))
        if misfit > 0.05:
            return (lambda step: [at(step - ahead)]), (
                f"LR as the run logged it (the schedule rebuilt from its settings differs by up to {misfit:.0%}: a "
                "custom scheduler?)")
        return rebuilt, "LR from the run's own schedule (matches the logged LR)"
    if rebuilt is not None:
        return rebuilt, "LR from the run's own schedule (no LR logged to check it against)"
    return (lambda step: [spec.lr]), f"constant LR {spec.lr:g} (no schedule and no logged LR)"


def _bisect_right(steps: list[int], step: int) -> int:
    lo, hi = 0, len(steps)
    while lo < hi:
        mid = (lo + hi) // 2
        if steps[mid] <= step:
            lo = mid + 1
        else:
            hi = mid
    return lo


def group_factors(opt: torch.optim.Optimizer) -> list[float]:
    """Each param group's LR relative to the first (layer-wise LRs keep their ratios under a logged trace)."""
    first = float(opt.param_groups[0]["lr"]) or 1.0
    return [float(g["lr"]) / first if math.isfinite(float(g["lr"])) else 1.0 for g in opt.param_groups]
