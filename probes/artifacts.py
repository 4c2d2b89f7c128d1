"""The run's own artifacts beside its log: checkpoints, the model's config, the training settings.

Torch-free (the report calls it to write probe specs): checkpoints are read with `probes.peek`,
which never imports or runs what a file names. Three layouts are recognised:

- HF Trainer: ``checkpoint-N/`` with config.json (``architectures``), model.safetensors or
  pytorch_model.bin, optimizer.pt, scheduler.pt, trainer_state.json, training_args.bin;
- Lightning: ``*.ckpt`` (state_dict, optimizer_states, lr_schedulers, hyper_parameters, global_step),
  the LightningModule class from the checkpoint's ``_class_path`` (LightningCLI) or a LightningCLI
  ``config.yaml`` beside the logs;
- nanoGPT: ``ckpt.pt`` (model_args, model, optimizer, config, iter_num).

A checkpoint's step is the number of optimizer updates done when it was saved; ``first_step`` is the
step number the log gives the next update (HF logs update k as step k, so checkpoint-N resumes at
N+1; Lightning and nanoGPT log the update made at global_step / iter_num under that number).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from analyzer.errors import LogFormatError
from probes.peek import Record, TensorStub, plain, read_checkpoint_tree

log = logging.getLogger(__name__)

Kind = Literal["hf", "lightning", "nanogpt"]
KINDS: tuple[Kind, ...] = ("hf", "lightning", "nanogpt")
_HF_DIR = re.compile(r"^checkpoint-(\d+)$")
_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
#: How far below a run's directory checkpoints are looked for (Lightning: version_0/checkpoints/x.ckpt).
SEARCH_DEPTH = 3
#: A checkpoint this many steps before the flagged window is preferred (the replay's level before it).
LEAD_STEPS = 20
#: At most this many directory entries are looked at per run (a run folder with a dataset in it stays cheap).
SEARCH_LIMIT = 5000


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of the run (or, with ``path`` None, only the run's architecture and settings).

    Attributes:
        kind: hf, lightning or nanogpt.
        path: the checkpoint-N folder, the .ckpt file or ckpt.pt; None when only a config was found.
        step: optimizer updates done when it was saved (None: unknown).
        first_step: the log's step number of the update after it.
        architecture: the model class (GPT2LMHeadModel, the LightningModule's class path, "nanoGPT GPT").
        config: the file the architecture came from.
        class_path: Lightning: the module's class as package.module.Class (imported when the probe runs).
        model_args: the architecture's arguments (nanoGPT model_args, Lightning init args, HF config sizes).
        settings: training settings found (optimizer, lr, betas, eps, weight_decay, clip, batch_size,
            seq_len, dtype, seed, schedule), each from the file ``settings_from`` names.
        settings_from: where they came from.
        has_optimizer: the optimizer's state is in it (Adam moments: a resume continues, not restarts).
    """

    kind: Kind
    path: Path | None
    step: int | None
    first_step: int
    architecture: str
    config: Path | None = None
    class_path: str | None = None
    model_args: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    settings_from: tuple[str, ...] = ()
    has_optimizer: bool = False


def _walk(root: Path, depth: int, seen: list[int]) -> list[Path]:
    out: list[Path] = []
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return out
    for e in entries:
        seen[0] += 1
        if seen[0] > SEARCH_LIMIT or e.name.startswith("."):
            continue
        p = Path(e.path)
        try:
            is_dir = e.is_dir()
        except OSError:
            continue
        if is_dir:
            if _HF_DIR.match(e.name) or (root / e.name / "config.json").is_file():
                out.append(p)
            if depth > 0 and not _HF_DIR.match(e.name) and not _holds_a_log(p):
                out += _walk(p, depth - 1, seen)
        elif e.name.endswith(".ckpt") or e.name == "ckpt.pt":
            out.append(p)
    return out


def _holds_a_log(folder: Path) -> bool:
    """Another run's log folder (below a run logged at the top of its tree): its checkpoints are its own."""
    try:
        with os.scandir(folder) as it:
            return any("tfevents" in e.name or e.name in ("metrics.csv", "trainer_state.json") for e in it)
    except OSError:
        return False


def _optimizer_settings(groups: Any) -> dict[str, Any]:
    """What the first param group of a saved optimizer says (its class is not saved; its keys tell)."""
    if not (isinstance(groups, list) and groups and isinstance(groups[0], dict)):
        return {}
    g = groups[0]
    out: dict[str, Any] = {}
    if "betas" in g:
        out["optimizer"] = "adamw" if g.get("decoupled_weight_decay") or g.get("weight_decay", 0) > 0.001 else "adam"
        betas = g["betas"]
        if isinstance(betas, (list, tuple)) and len(betas) == 2:
            out["betas"] = [float(betas[0]), float(betas[1])]
        if isinstance(g.get("eps"), (int, float)):
            out["eps"] = float(g["eps"])
    elif "momentum" in g:
        out["optimizer"] = "nesterov" if g.get("nesterov") else ("momentum" if g.get("momentum") else "sgd")
        out["momentum"] = float(g.get("momentum") or 0.9)
    if isinstance(g.get("lr"), (int, float)):
        out["lr"] = float(g["lr"])
    if isinstance(g.get("weight_decay"), (int, float)):
        out["weight_decay"] = float(g["weight_decay"])
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _hf(folder: Path) -> Checkpoint | None:
    cfg = _read_json(folder / "config.json")
    archs = cfg.get("architectures")
    if not (isinstance(archs, list) and archs and isinstance(archs[0], str)):
        return None
    match = _HF_DIR.match(folder.name)
    state = _read_json(folder / "trainer_state.json")
    step = state.get("global_step") if isinstance(state.get("global_step"), int) else (
        int(match.group(1)) if match else None)
    has_weights = any((folder / w).is_file() for w in _HF_WEIGHTS)
    settings: dict[str, Any] = {}
    sources: list[str] = []
    args_file = folder / "training_args.bin"
    if args_file.is_file():
        try:
            args = plain(read_checkpoint_tree(args_file))
        except LogFormatError as exc:
            log.info("%s: not read: %s", args_file, exc)
            args = None
        if isinstance(args, dict):
            settings.update(_hf_settings(args))
            sources.append(str(args_file))
    if not settings.get("batch_size") and isinstance(state.get("train_batch_size"), int):
        settings["batch_size"] = state["train_batch_size"]
    seq = next((cfg[k] for k in ("n_positions", "max_position_embeddings", "n_ctx") if isinstance(cfg.get(k), int)),
               None)
    if seq:
        settings["seq_len"] = int(seq)
    sizes: dict[str, Any] = {k: cfg[k] for k in ("model_type", "vocab_size", "n_layer", "num_hidden_layers", "n_embd", "hidden_size",
                                 "n_head", "num_attention_heads", "n_positions", "max_position_embeddings")
             if k in cfg}
    return Checkpoint("hf", folder if has_weights else None, step if has_weights else None,
                      (step + 1) if (has_weights and step is not None) else 0, archs[0], folder / "config.json",
                      None, sizes, settings, tuple(sources), (folder / "optimizer.pt").is_file())


def _hf_settings(args: Mapping[str, Any]) -> dict[str, Any]:
    optim = str(args.get("optim") or "adamw_torch").lower()
    out: dict[str, Any] = {"optimizer": "sgd" if optim.startswith("sgd") else "adamw"}
    if optim.startswith(("adafactor", "lion", "galore", "adamw_8bit", "paged", "rmsprop", "adagrad")):
        out["optimizer_note"] = f"the run used optim={optim}; the probe uses torch AdamW"
    for key, name in (("learning_rate", "lr"), ("adam_epsilon", "eps"), ("weight_decay", "weight_decay"),
                      ("seed", "seed")):
        if isinstance(args.get(key), (int, float)) and not isinstance(args.get(key), bool):
            out[name] = args[key]
    if isinstance(args.get("adam_beta1"), float) and isinstance(args.get("adam_beta2"), float):
        out["betas"] = [args["adam_beta1"], args["adam_beta2"]]
    clip = args.get("max_grad_norm")
    out["clip"] = float(clip) if isinstance(clip, (int, float)) and clip > 0 else None
    per, accum = args.get("per_device_train_batch_size"), args.get("gradient_accumulation_steps") or 1
    if isinstance(per, int) and isinstance(accum, int):
        out["batch_size"] = per * accum
    out["dtype"] = "bfloat16" if args.get("bf16") else ("float16" if args.get("fp16") else "float32")
    max_steps: int = args["max_steps"] if isinstance(args.get("max_steps"), int) else -1
    warm: float = args["warmup_steps"] if isinstance(args.get("warmup_steps"), (int, float)) else 0
    ratio: float = args["warmup_ratio"] if isinstance(args.get("warmup_ratio"), (int, float)) else 0
    if warm and warm < 1:  # newer transformers: warmup_steps < 1 is a ratio
        ratio, warm = warm, 0
    out["schedule"] = {"kind": "hf", "name": str(args.get("lr_scheduler_type") or "linear"),
                       "warmup_steps": int(warm) if warm else (int(ratio * max_steps) if ratio and max_steps > 0 else 0),
                       "total_steps": max_steps if max_steps > 0 else None,
                       "kwargs": args.get("lr_scheduler_kwargs") if isinstance(args.get("lr_scheduler_kwargs"), dict)
                       else {}}
    return out


def _lightning_cli_config(folder: Path) -> tuple[dict[str, Any], Path | None]:
    """LightningCLI's config.yaml (SaveConfigCallback) in this folder or the two above it."""
    for d in (folder, folder.parent, folder.parent.parent):
        f = d / "config.yaml"
        if f.is_file():
            try:
                data = yaml.safe_load(f.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError, UnicodeDecodeError):
                continue
            if isinstance(data, dict) and isinstance(data.get("model"), dict) and "class_path" in data["model"]:
                return data, f
    return {}, None


def _lightning(path: Path, tree: Mapping[str, Any]) -> Checkpoint:
    hp = plain(tree.get("hyper_parameters") or {})
    hp = hp if isinstance(hp, dict) else {}
    cli, cli_file = _lightning_cli_config(path.parent)
    class_path = hp.get("_class_path") if isinstance(hp.get("_class_path"), str) else None
    init_args = {k: v for k, v in hp.items() if not k.startswith("_")}
    config: Path | None = path
    if class_path is None and cli:
        class_path = str(cli["model"]["class_path"])
        init_args = {**(cli["model"].get("init_args") or {}), **init_args}
        config = cli_file
    settings: dict[str, Any] = {}
    sources = [str(path)]
    opt_states = tree.get("optimizer_states") or []
    if opt_states and isinstance(opt_states[0], dict):
        settings.update(_optimizer_settings(plain(opt_states[0].get("param_groups"))))
    trainer = cli.get("trainer") if isinstance(cli.get("trainer"), dict) else {}
    if cli_file is not None and trainer:
        sources.append(str(cli_file))
        clip = trainer.get("gradient_clip_val")
        settings["clip"] = float(clip) if isinstance(clip, (int, float)) and clip > 0 else None
        precision = str(trainer.get("precision") or "")
        settings["dtype"] = "bfloat16" if "bf16" in precision else ("float16" if precision.startswith("16") else
                                                                    "float32")
    data: dict[str, Any] = cli["data"] if isinstance(cli.get("data"), dict) else {}
    batch = data["init_args"].get("batch_size") if isinstance(data.get("init_args"), dict) else None
    batch = batch if isinstance(batch, int) else init_args.get("batch_size")
    if isinstance(batch, int) and batch > 0:
        settings["batch_size"] = batch
    seq = next((init_args[k] for k in ("block_size", "seq_len", "max_len", "context_length") if
                isinstance(init_args.get(k), int)), None)
    if seq:
        settings["seq_len"] = seq
    settings["schedule"] = {"kind": "lightning"}  # the module's own configure_optimizers, run when probing
    step = tree.get("global_step") if isinstance(tree.get("global_step"), int) else None
    return Checkpoint("lightning", path, step, step or 0, class_path or "a LightningModule (class not recorded)",
                      config, class_path, init_args, settings, tuple(sources), bool(opt_states))


def _nanogpt(path: Path, tree: Mapping[str, Any]) -> Checkpoint:
    args = plain(tree.get("model_args") or {})
    cfg = plain(tree.get("config") or {})
    cfg = cfg if isinstance(cfg, dict) else {}
    settings: dict[str, Any] = _optimizer_settings(plain((tree.get("optimizer") or {}).get("param_groups")))
    settings["optimizer"] = "adamw"  # nanoGPT's configure_optimizers: torch AdamW, decay / no-decay groups
    for key, name in (("learning_rate", "lr"), ("weight_decay", "weight_decay"), ("seed", "seed")):
        if isinstance(cfg.get(key), (int, float)) and not isinstance(cfg.get(key), bool):
            settings[name] = cfg[key]
    if isinstance(cfg.get("beta1"), float) and isinstance(cfg.get("beta2"), float):
        settings["betas"] = [cfg["beta1"], cfg["beta2"]]
    clip = cfg.get("grad_clip")
    settings["clip"] = float(clip) if isinstance(clip, (int, float)) and clip > 0 else None
    batch, accum = cfg.get("batch_size"), cfg.get("gradient_accumulation_steps") or 1
    if isinstance(batch, int) and isinstance(accum, int):
        settings["batch_size"] = batch * accum
    block = args.get("block_size") if isinstance(args, dict) else None
    if isinstance(block, int):
        settings["seq_len"] = block
    dtype = str(cfg.get("dtype") or "float32")
    settings["dtype"] = dtype if dtype in ("float32", "bfloat16", "float16") else "float32"
    settings["schedule"] = {"kind": "nanogpt", **{k: cfg[k] for k in ("decay_lr", "warmup_iters", "lr_decay_iters",
                                                                     "min_lr", "learning_rate") if k in cfg}}
    if isinstance(cfg.get("dataset"), str):
        settings["dataset"] = cfg["dataset"]
    step = tree.get("iter_num") if isinstance(tree.get("iter_num"), int) else None
    return Checkpoint("nanogpt", path, step, step or 0, "nanoGPT GPT", path, None,
                      args if isinstance(args, dict) else {}, settings, (str(path),),
                      isinstance(tree.get("optimizer"), dict))


def read_checkpoint(path: Path) -> Checkpoint | None:
    """What a checkpoint holds, or None when it is not one of the recognised kinds (said at -v)."""
    if path.is_dir():
        return _hf(path)
    try:
        tree = read_checkpoint_tree(path)
    except LogFormatError as exc:
        log.info("%s: not read as a checkpoint: %s", path, exc)
        return None
    if isinstance(tree, Record) or not isinstance(tree, dict):
        return None
    if "model_args" in tree and "model" in tree:
        return _nanogpt(path, tree)
    if "state_dict" in tree and ("pytorch-lightning_version" in tree or "global_step" in tree):
        return _lightning(path, tree)
    return None


def n_params(tree: Any) -> int:
    """Parameters counted from a state dict of `TensorStub`s."""
    return sum(t.numel for t in tree.values() if isinstance(t, TensorStub)) if isinstance(tree, dict) else 0


def find_checkpoints(run_dirs: list[Path]) -> list[Checkpoint]:
    """Every recognised checkpoint (and HF model config) in and below the run's directories, by step."""
    seen_paths: set[Path] = set()
    found: list[Checkpoint] = []
    counter = [0]
    for root in run_dirs:
        candidates = _walk(root, SEARCH_DEPTH, counter)
        if (root / "config.json").is_file():
            candidates.append(root)
        for c in candidates:
            real = c.resolve()
            if real in seen_paths:
                continue
            seen_paths.add(real)
            ck = read_checkpoint(c)
            if ck is not None:
                found.append(ck)
    return sorted(found, key=lambda c: (c.path is None, c.step if c.step is not None else -1))


def choose(found: list[Checkpoint], last_good: int | None) -> tuple[Checkpoint | None, str]:
    """The checkpoint to resume from (the latest at or before ``last_good``), or the run's architecture
    alone for a fresh start; with the reason, for the spec's notes."""
    if not found:
        return None, "no checkpoint or model config of the run was found beside its log"
    usable = [c for c in found if c.path is not None and c.step is not None]
    before = [c for c in usable if last_good is not None and c.first_step <= last_good + 1]
    if before and last_good is not None:
        # PaLM restarted ~100 steps before a spike: the replay needs the loss's level before the window to judge
        # it against, so a checkpoint LEAD_STEPS before it is preferred to one just before it.
        early = [c for c in before if c.first_step <= last_good + 1 - LEAD_STEPS]
        best = max(early or before, key=lambda c: c.step or 0)
        lead = last_good + 1 - best.first_step
        return best, (f"resumes from {best.path} (step {best.step:,}), the latest checkpoint at least {LEAD_STEPS} steps "
                      f"before the flagged window" if early else
                      f"resumes from {best.path} (step {best.step:,}), the latest checkpoint at or before the last good "
                      f"step {last_good:,}; only {lead} step(s) of level before the window to judge it against")
    arch = found[0] if not usable else min(usable, key=lambda c: c.step or 0)
    later = f"its checkpoints (first at step {arch.step:,}) are after the flagged window" if arch.step is not None \
        else "no weights were saved"
    fresh = Checkpoint(arch.kind, None, None, 0, arch.architecture, arch.config, arch.class_path, arch.model_args,
                       arch.settings, arch.settings_from, False)
    return fresh, f"starts from step 0 with fresh weights of the run's architecture ({later})"
