"""ProbeSpec: a short re-run of a flagged run, as YAML. Torch-free (the report writes these).

A spec names what to train: the run's own model (``workload: run`` with a ``source``: its checkpoint
or its architecture, see probes.artifacts), a built-in stand-in, or the user's ``module:function``;
then the optimizer, LR schedule, clipping, batch size, steps, data, and the plans (replay the flagged
window with its batches skipped, clipping, lower LRs, warmup, the LR search; or for a stand-in the
playbook's lr2x / warmup / clip sweeps). `load_spec` validates with one-line errors naming the field
and what it allows. Running a spec runs code: the workload or LightningModule class it names is
imported and called.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from analyzer.errors import ConfigError
from analyzer.outputs import write_atomic
from analyzer.yaml_file import read_yaml
from probes import fields as f

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "nadam")
DECAYS = ("constant", "linear", "cosine")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")
PLAN_KINDS = ("baseline", "lr2x", "warmup_sweep", "warmup_target", "clip_sweep", "warmup_clip", "skip_window",
              "lr_sweep", "lr_search")
SOURCE_KINDS = ("hf", "lightning", "nanogpt")
DATA_ORDERS = ("random", "sequential")
#: lr_search: 10^-0.5 steps down from the logged LR (the playbook's half-decade grid).
SEARCH_FACTORS = tuple(10 ** (-k / 2) for k in range(1, 7))


@dataclass(frozen=True)
class TrialConfig:
    """One trial's settings; a plan expands into several of these.

    ``lr`` is the base LR (for the run's own model: the LR at the first replayed step x ``lr_factor``,
    shown; the runner multiplies the run's own schedule by ``lr_factor``). ``warmup_steps`` ramps the
    LR from the first step of the trial. ``skip`` = (first, last): the batches of those steps are never
    seen (the PaLM restart: each step from ``first`` on takes the batch ``last - first + 1`` steps later).
    """

    name: str
    lr: float
    warmup_steps: int = 0
    post_warmup_steps: int | None = None  # None: constant to the end after warmup
    clip: float | None = None  # max global grad norm; None = no clipping
    steps: int = 500
    lr_factor: float = 1.0
    skip: tuple[int, int] | None = None


@dataclass(frozen=True)
class ProbeSpec:
    """A probe, as read from YAML. Every field has a default but the workload.

    Attributes:
        workload: "run" (the run's own model, from ``source``), "builtin:NAME" (a stand-in showing the
            class of failure) or "package.module:function" returning (model, loss_fn, train_batches,
            eval_batches); see README "Your own workload". It is imported and called: running a spec runs code.
        workload_args: keyword arguments for the workload function.
        source: (workload run) kind (hf, lightning, nanogpt), architecture, config (the file the architecture
            came from), checkpoint (resume from it; null = fresh weights), checkpoint_step, class_path
            (Lightning: the LightningModule, imported), model_args, settings_from (where the settings came from).
        data: the training data: a token .bin (uint16, nanoGPT), a datasets folder (save_to_disk), a .txt /
            .jsonl file (tokenized with the run's tokenizer), or package.module:function(step, batch_size, seq_len,
            seed) -> token tensor; null = a synthetic stream (instability that depends on the data may not recur).
        data_order: sequential (batch k = the k-th block of the data: replays the run's exact batches when its
            loader read in order) or random (windows drawn from (seed, step)).
        seq_len: tokens per sequence (null: the model's context). scale: {depth, width} factors that shrink the
            architecture (fresh weights only). start_step: the log's step number of the first update run.
        window: the flagged window from the log: start, end, peak, last_good, ratio (the logged height), verdict.
        lr_trace: [[step, lr], ...]: the LR the run logged over the replayed steps. schedule: how to rebuild
            the run's schedule (hf, nanogpt or lightning), used when no LR was logged or where it matches.
        micro_batch_size: forward/backward in chunks of this many (gradient accumulation to batch_size).
        layer_stats / layer_every: record per-block gradient norms, update/weight ratios, Adam second-moment
            norms and activation RMS every layer_every steps.
        optimizer: one of OPTIMIZERS. lr: base LR. momentum, betas, weight_decay, eps: as torch.optim.
        warmup_steps / post_warmup_steps / decay: the stand-in's LR schedule (linear warmup from 0, then
            constant for post_warmup_steps, then `decay` to 0 by the last step).
        clip: max global grad norm (None = off). batch_size, steps, eval_interval, seed, device, dtype.
        divergence_factor: a trial stops (infeasible) on NaN/inf, or when a window's median loss exceeds
            this x its best so far and the first window's median.
        plans: which plans to run, in order; each name from PLAN_KINDS.
        warmup_candidates / clip_candidates / lr_factors: what warmup_sweep, clip_sweep and lr_sweep try.
        warmup_lr_factor: warmup_target runs the warmup sweep at lr x this (playbook §5).
        run: the run id the spec was made for. diagnosis: its verdict. notes: why these numbers.
    """

    workload: str
    workload_args: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] | None = None
    data: str | None = None
    data_order: str = "random"
    seq_len: int | None = None
    scale: Mapping[str, float] | None = None
    start_step: int = 0
    window: Mapping[str, Any] | None = None
    lr_trace: tuple[tuple[int, float], ...] = ()
    schedule: Mapping[str, Any] | None = None
    micro_batch_size: int | None = None
    layer_stats: bool = True
    layer_every: int = 1
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    post_warmup_steps: int | None = None
    decay: str = "constant"
    clip: float | None = None
    batch_size: int = 64
    steps: int = 500
    eval_interval: int = 1
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    divergence_factor: float = 20.0
    log_every: int = 25
    plans: tuple[str, ...] = ("baseline", "lr2x")
    warmup_candidates: tuple[int, ...] = (10, 100, 1000)
    clip_candidates: tuple[float, ...] = ()
    lr_factors: tuple[float, ...] = (0.5, 0.1)
    warmup_lr_factor: float = 10.0
    run: str = ""
    diagnosis: str = ""
    notes: tuple[str, ...] = ()

    @property
    def own_run(self) -> bool:
        return self.workload == "run"

    def skip_range(self) -> tuple[int, int] | None:
        """The steps whose batches skip_window never shows: after the last good step through the window's end."""
        w = self.window or {}
        first = w.get("last_good")
        first = first + 1 if isinstance(first, int) else w.get("start")
        last = w.get("end")
        if not isinstance(first, int) or not isinstance(last, int) or last < first:
            return None
        return max(first, self.start_step), last

    def trials(self, plan: str) -> list[TrialConfig]:
        """The trials a plan expands into (playbook §3.6, §4-6; PaLM's restart for skip_window)."""
        base = TrialConfig("baseline", self.lr, self.warmup_steps, self.post_warmup_steps, self.clip, self.steps)
        if plan == "baseline":
            return [replace(base, name="same settings" if self.own_run else "baseline")]
        if plan == "lr2x":
            return [replace(base, name=f"lr2x (lr {2 * self.lr:.3g})", lr=2 * self.lr, lr_factor=2.0)]
        if plan in ("lr_sweep", "lr_search"):
            factors = self.lr_factors if plan == "lr_sweep" else SEARCH_FACTORS
            return [replace(base, name=f"lr {x:.3g}x ({self.lr * x:.3g})", lr=self.lr * x, lr_factor=x)
                    for x in factors]
        if plan == "skip_window":
            skip = self.skip_range()
            if skip is None:
                return []
            return [replace(base, name=f"skip batches of steps {skip[0]}-{skip[1]}", skip=skip)]
        if plan in ("warmup_sweep", "warmup_target"):
            cap = max(1, int(0.1 * self.steps)) if self.steps >= 10 else self.steps
            ws = sorted({w for w in self.warmup_candidates if w <= cap}) or [cap]
            if self.own_run:  # the ramp restarts at the first replayed step; the run's schedule continues after it
                where = f" from step {self.start_step}" if self.start_step else ""
                return [replace(base, name=f"warmup {w}{where}", warmup_steps=w) for w in ws]
            if plan == "warmup_sweep":
                return [replace(base, name=f"warmup {w}", warmup_steps=w, post_warmup_steps=2 * w) for w in ws]
            lr = self.lr * self.warmup_lr_factor
            return [replace(base, name=f"warmup {w} at lr {lr:.3g}", lr=lr, warmup_steps=w, post_warmup_steps=2 * w,
                            lr_factor=self.warmup_lr_factor) for w in ws]
        if plan == "clip_sweep":
            return [replace(base, name=f"clip {c:.3g}", clip=c) for c in sorted(self.clip_candidates, reverse=True)]
        if plan == "warmup_clip":
            w = min(self.warmup_candidates, default=10)
            c = max(self.clip_candidates, default=1.0)
            return [replace(base, name=f"warmup {w} + clip {c:.3g}", warmup_steps=w, clip=c)]
        raise ConfigError(f"plan {plan!r}: expected one of {', '.join(PLAN_KINDS)}")


_PATH_OR_NULL = f.optional(f.string, "a path")
_SOURCE = f.mapping({
    "kind": f.choice(SOURCE_KINDS), "architecture": f.string, "config": _PATH_OR_NULL, "checkpoint": _PATH_OR_NULL,
    "checkpoint_step": f.optional(f.integer(0), "an integer >= 0"), "class_path": f.optional(f.string, "a class path"),
    "model_args": f.kwargs, "settings_from": f.list_of(f.text, "a list of paths", single=True),
    "resume_note": f.text,
}, required=("kind", "architecture"), defaults={"config": None, "checkpoint": None, "checkpoint_step": None,
                                                "class_path": None, "model_args": {}, "settings_from": (),
                                                "resume_note": ""})
_WINDOW = f.mapping({
    "start": f.integer(0), "end": f.integer(0), "peak": f.optional(f.integer(0), "a step"),
    "last_good": f.optional(f.integer(0), "a step"), "ratio": f.optional(f.number(0.0), "a number"),
    "verdict": f.text, "grad_p90": f.optional(f.number(0.0), "a number"),
}, required=("start", "end"))
_SCALE = f.mapping({"depth": f.number(0.0, strict=True, high=1.0 + 1e-9),
                    "width": f.number(0.0, strict=True, high=1.0 + 1e-9)})


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise f.Invalid("true or false")
    return value


#: Every field of a spec: how its YAML value is checked and converted. Errors say what it allows.
_FIELDS: dict[str, Callable[[Any], Any]] = {
    "workload": f.workload,
    "workload_args": f.kwargs,
    "source": f.nullable(_SOURCE),
    "data": f.optional(f.data_source, "a data path or package.module:function"),
    "data_order": f.choice(DATA_ORDERS),
    "seq_len": f.optional(f.integer(2), "an integer >= 2"),
    "scale": f.nullable(_SCALE),
    "start_step": f.integer(0),
    "window": f.nullable(_WINDOW),
    "lr_trace": f.lr_points,
    "schedule": f.nullable(f.mapping({"kind": f.choice(("hf", "nanogpt", "lightning")), "name": f.string,
                                      "warmup_steps": f.integer(0), "total_steps": f.optional(f.integer(1), "steps"),
                                      "kwargs": f.anything, "decay_lr": _boolean, "warmup_iters": f.integer(0),
                                      "lr_decay_iters": f.integer(1), "min_lr": f.number(0.0),
                                      "learning_rate": f.number(0.0)}, required=("kind",))),
    "micro_batch_size": f.optional(f.integer(1), "an integer >= 1"),
    "layer_stats": _boolean,
    "layer_every": f.integer(1),
    "optimizer": f.choice(OPTIMIZERS, fold=True),
    "lr": f.number(0.0, strict=True),
    "momentum": f.number(0.0),
    "betas": f.betas,
    "eps": f.number(0.0),
    "weight_decay": f.number(0.0),
    "warmup_steps": f.integer(0),
    "post_warmup_steps": f.optional(f.integer(0), "an integer >= 0"),
    "decay": f.choice(DECAYS),
    "clip": f.optional(f.number(0.0, strict=True), "a max grad norm > 0 (a number, not true/false)"),
    "batch_size": f.integer(1),
    "steps": f.integer(1),
    "eval_interval": f.integer(1),
    "seed": f.integer(0),
    "device": f.choice(DEVICES),
    "dtype": f.choice(DTYPES),
    "divergence_factor": f.number(1.0, strict=True),
    "log_every": f.integer(1),
    "plans": f.list_of(f.choice(PLAN_KINDS), f"a plan or a non-empty list of plans from {', '.join(PLAN_KINDS)}",
                       single=True, nonempty=True),
    "warmup_candidates": f.list_of(f.integer(0), "a list of integers >= 0"),
    "clip_candidates": f.list_of(f.number(0.0, strict=True), "a list of numbers > 0"),
    "lr_factors": f.list_of(f.number(0.0, strict=True), "a list of numbers > 0"),
    "warmup_lr_factor": f.number(1.0),
    "run": f.string,
    "diagnosis": f.string,
    "notes": f.list_of(f.text, "text or a list of text", single=True),
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def spec_from_mapping(data: Any, *, source: str = "spec") -> ProbeSpec:
    """Validate a mapping into a ProbeSpec; ConfigError names the field, what it allows, and what it got."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a YAML mapping of fields, got {type(data).__name__}")
    names = [k for k in data if not isinstance(k, str)]
    if names:
        raise ConfigError(f"{source}: field names must be text, got {_shown(names[0])}; "
                          f"known fields: {', '.join(_FIELDS)}")
    unknown = sorted(set(data) - set(_FIELDS) - {"version"})
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    if "workload" not in data:
        raise ConfigError(f"{source}: missing field 'workload' (run, builtin:early_residual_mlp or pkg.mod:function)")
    if "version" in data and (isinstance(data["version"], bool) or data["version"] != 1):
        raise ConfigError(f"{source}: field 'version': expected 1, got {_shown(data['version'])}")
    kw: dict[str, Any] = {}
    for name, value in data.items():
        if name == "version":
            continue
        try:
            kw[name] = _FIELDS[name](value)
        except f.Invalid as exc:
            raise ConfigError(f"{source}: field '{name}': expected {exc}, got {_shown(value)}") from None
    spec = ProbeSpec(**kw)
    if spec.own_run and spec.source is None:
        raise ConfigError(f"{source}: workload 'run' needs a 'source' (the run's kind, architecture and checkpoint); "
                          "`steadytrain report` writes it")
    return spec


def load_spec(path: str | Path) -> ProbeSpec:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such probe spec file (write one with `steadytrain report`, see README)")
    data = read_yaml(p, "a YAML probe spec")
    return _resolved(spec_from_mapping(data, source=str(path)), p.parent)


_MODULE_FUNCTION = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def _resolved(spec: ProbeSpec, base: Path) -> ProbeSpec:
    """Relative paths in a spec (source files, data) are relative to the spec file's folder."""
    def absolute(value: Any) -> Any:
        if not isinstance(value, str) or Path(value).is_absolute():
            return value
        return str((base / value).resolve())

    data = spec.data if spec.data is None or _MODULE_FUNCTION.fullmatch(spec.data) else absolute(spec.data)
    source = spec.source
    if source is not None:
        source = {**source, **{k: absolute(source.get(k)) for k in ("config", "checkpoint") if source.get(k)}}
    return replace(spec, data=data, source=source)


def _yaml_ready(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_yaml_ready(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _yaml_ready(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dump_spec(spec: ProbeSpec, path: str | Path) -> Path:
    """Write ``spec`` as YAML; ConfigError (nothing written) when `steadytrain probe` would refuse it."""
    data = {"version": 1, **{k: _yaml_ready(v) for k, v in asdict(spec).items()}}
    spec_from_mapping(data, source=str(path))
    if spec.own_run:
        src = spec.source or {}
        what = f"{src.get('architecture')} ({src.get('kind')})"
        where = (f"resumes from {src.get('checkpoint')} (step {src.get('checkpoint_step')})" if src.get("checkpoint")
                 else "fresh weights of that architecture")
        header = (f"# steadytrain probe spec for run {spec.run!r}: re-runs the run itself: {what}, {where}.\n"
                  "# Run it with `steadytrain probe THIS_FILE [--device cuda] [--data PATH]`. It imports and runs the\n"
                  "# model code named here (transformers, your LightningModule class, or probes' nanoGPT GPT).\n")
    else:
        header = ("# steadytrain probe spec: `steadytrain probe THIS_FILE [--device cuda]`\n"
                  "# workload: a built-in stand-in that shows the class of failure, not your run. Replace it with your\n"
                  "# own 'package.module:function' (returns model, loss_fn, train_batches, eval_batches; see README);\n"
                  "# running a spec imports and calls the function it names.\n")
    return write_atomic(path, header + yaml.safe_dump(data, sort_keys=False))
