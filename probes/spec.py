"""ProbeSpec: a short re-run of a flagged config, as YAML. Torch-free (the report writes these).

A spec names the workload (a built-in one, or the user's ``module:function``), the optimizer,
the LR schedule, clipping, batch size, steps, eval interval, seed, device, dtype, and the plans
(lr2x, warmup_sweep, clip_sweep) from the playbook. `load_spec` validates with one-line errors
naming the field and what it allows.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import yaml

from analyzer.errors import ConfigError, context
from analyzer.hparams import lr_from_hparams
from analyzer.outputs import write_atomic
from analyzer.types import Diagnosis, Report

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "nadam")
DECAYS = ("constant", "linear", "cosine")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")
PLAN_KINDS = ("baseline", "lr2x", "warmup_sweep", "warmup_target", "clip_sweep", "warmup_clip")


@dataclass(frozen=True)
class TrialConfig:
    """One trial's settings; a plan expands into several of these."""

    name: str
    lr: float
    warmup_steps: int = 0
    post_warmup_steps: int | None = None  # None: constant to the end after warmup
    clip: float | None = None  # max global grad norm; None = no clipping
    steps: int = 500


@dataclass(frozen=True)
class ProbeSpec:
    """A probe, as read from YAML. Every field has a default but the workload.

    Attributes:
        workload: "builtin:NAME" or "package.module:function" returning (model, loss_fn, train_batches,
            eval_batches); see README "Your own workload".
        workload_args: keyword arguments for the workload function.
        optimizer: one of OPTIMIZERS. lr: base LR. momentum, betas, weight_decay, eps: as torch.optim.
        warmup_steps / post_warmup_steps / decay: the LR schedule (linear warmup from 0, then constant for
            post_warmup_steps, then `decay` to 0 by the last step).
        clip: max global grad norm (None = off).
        batch_size, steps, eval_interval (1 = evaluate every step), seed, device, dtype.
        divergence_factor: a trial stops (infeasible) on NaN/inf, or when a window's median loss exceeds
            this x its best so far and the first window's median.
        plans: which plans to run, in order; each name from PLAN_KINDS.
        warmup_candidates: warmup_sweep's warmup_steps values. clip_candidates: clip_sweep's thresholds.
        warmup_lr_factor: warmup_target runs the warmup sweep at lr x this (playbook §5: aim for a base LR
            10x the unstable one, and keep the shortest warmup that does not blow up there).
        run: the run id the spec was made for. diagnosis: its verdict. notes: why these numbers.
    """

    workload: str
    workload_args: Mapping[str, Any] = field(default_factory=dict)
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
    warmup_lr_factor: float = 10.0
    run: str = ""
    diagnosis: str = ""
    notes: tuple[str, ...] = ()

    def trials(self, plan: str) -> list[TrialConfig]:
        """The trials a plan expands into (playbook §3.6, §5, §6)."""
        base = TrialConfig("baseline", self.lr, self.warmup_steps, self.post_warmup_steps, self.clip, self.steps)
        if plan == "baseline":
            return [base]
        if plan == "lr2x":
            return [replace(base, name=f"lr2x (lr {2 * self.lr:.3g})", lr=2 * self.lr)]
        if plan in ("warmup_sweep", "warmup_target"):
            cap = max(1, int(0.1 * self.steps)) if self.steps >= 10 else self.steps
            ws = sorted({w for w in self.warmup_candidates if w <= cap}) or [cap]
            if plan == "warmup_sweep":
                return [replace(base, name=f"warmup {w}", warmup_steps=w, post_warmup_steps=2 * w) for w in ws]
            lr = self.lr * self.warmup_lr_factor
            return [replace(base, name=f"warmup {w} at lr {lr:.3g}", lr=lr, warmup_steps=w, post_warmup_steps=2 * w)
                    for w in ws]
        if plan == "clip_sweep":
            return [replace(base, name=f"clip {c:.3g}", clip=c) for c in sorted(self.clip_candidates, reverse=True)]
        if plan == "warmup_clip":
            w = min(self.warmup_candidates, default=10)
            c = max(self.clip_candidates, default=1.0)
            return [replace(base, name=f"warmup {w} + clip {c:.3g}", warmup_steps=w, clip=c)]
        raise ConfigError(f"plan {plan!r}: expected one of {', '.join(PLAN_KINDS)}")


class _Invalid(Exception):
    """A field value outside what the field allows (the message says what it allows)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(low: float, *, strict: bool = False, high: float | None = None) -> Callable[[Any], float]:
    bound = f"> {low:g}" if strict else f">= {low:g}"
    allowed = f"a number {bound}" + (f" and < {high:g}" if high is not None else "")

    def parse(value: Any) -> float:
        if not _is_number(value) or (value <= low if strict else value < low) or (high is not None and value >= high):
            raise _Invalid(allowed)
        return float(value)
    return parse


def _integer(low: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _Invalid(f"an integer >= {low}")
        return value
    return parse


def _optional(parse: Callable[[Any], Any], what: str) -> Callable[[Any], Any]:
    def wrapped(value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except _Invalid:
            raise _Invalid(f"{what} or null") from None
    return wrapped


def _choice(options: tuple[str, ...], *, fold: bool = False) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = value.lower() if fold and isinstance(value, str) else value
        if not isinstance(text, str) or text not in options:
            raise _Invalid(f"one of {', '.join(options)}")
        return text
    return parse


def _list_of(item: Callable[[Any], Any], what: str, *, single: bool = False, nonempty: bool = False
             ) -> Callable[[Any], tuple[Any, ...]]:
    def parse(value: Any) -> tuple[Any, ...]:
        items = [value] if single and not isinstance(value, (list, tuple)) else value
        try:
            if not isinstance(items, (list, tuple)) or (nonempty and not items):
                raise _Invalid("")
            return tuple(item(v) for v in items)
        except _Invalid:
            raise _Invalid(what) from None
    return parse


def _betas(value: Any) -> tuple[float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(b) and 0 <= b < 1 for b in value)):
        raise _Invalid("two numbers in [0, 1), e.g. [0.9, 0.999]")
    return float(value[0]), float(value[1])


def _workload(value: Any) -> str:
    if not (isinstance(value, str) and re.fullmatch(r"builtin:[a-z0-9_]+|[A-Za-z_][\w.]*:[A-Za-z_]\w*", value)):
        raise _Invalid("builtin:NAME or package.module:function")
    return value


def _kwargs(value: Any) -> dict[str, Any]:
    if not (isinstance(value, Mapping) and all(isinstance(k, str) and k.isidentifier() for k in value)):
        raise _Invalid("a mapping of keyword-argument names to values")
    return dict(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("text")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("a string")
    return value


#: Every field of a spec: how its YAML value is checked and converted. Errors say what it allows.
_FIELDS: dict[str, Callable[[Any], Any]] = {
    "workload": _workload,
    "workload_args": _kwargs,
    "optimizer": _choice(OPTIMIZERS, fold=True),
    "lr": _number(0.0, strict=True),
    "momentum": _number(0.0),
    "betas": _betas,
    "eps": _number(0.0),
    "weight_decay": _number(0.0),
    "warmup_steps": _integer(0),
    "post_warmup_steps": _optional(_integer(0), "an integer >= 0"),
    "decay": _choice(DECAYS),
    "clip": _optional(_number(0.0, strict=True), "a max grad norm > 0 (a number, not true/false)"),
    "batch_size": _integer(1),
    "steps": _integer(1),
    "eval_interval": _integer(1),
    "seed": _integer(0),
    "device": _choice(DEVICES),
    "dtype": _choice(DTYPES),
    "divergence_factor": _number(1.0, strict=True),
    "log_every": _integer(1),
    "plans": _list_of(_choice(PLAN_KINDS), f"a plan or a non-empty list of plans from {', '.join(PLAN_KINDS)}",
                      single=True, nonempty=True),
    "warmup_candidates": _list_of(_integer(0), "a list of integers >= 0"),
    "clip_candidates": _list_of(_number(0.0, strict=True), "a list of numbers > 0"),
    "warmup_lr_factor": _number(1.0),
    "run": _string,
    "diagnosis": _string,
    "notes": _list_of(_text, "text or a list of text", single=True),
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
        raise ConfigError(f"{source}: missing field 'workload' (e.g. builtin:early_residual_mlp or pkg.mod:function)")
    if "version" in data and (isinstance(data["version"], bool) or data["version"] != 1):
        raise ConfigError(f"{source}: field 'version': expected 1, got {_shown(data['version'])}")
    kw: dict[str, Any] = {}
    for name, value in data.items():
        if name == "version":
            continue
        try:
            kw[name] = _FIELDS[name](value)
        except _Invalid as exc:
            raise ConfigError(f"{source}: field '{name}': expected {exc}, got {_shown(value)}") from None
    return ProbeSpec(**kw)


def load_spec(path: str | Path) -> ProbeSpec:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such probe spec file (write one with `steadytrain report`, see README)")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    if b"\x00" in raw[:8192]:
        raise ConfigError(f"{path}: binary content, not a YAML probe spec")
    try:
        data = yaml.safe_load(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); expected a YAML probe spec") from None
    except (yaml.YAMLError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    return spec_from_mapping(data, source=str(path))


def dump_spec(spec: ProbeSpec, path: str | Path) -> Path:
    data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()}
    data = {"version": 1, **data}
    header = ("# steadytrain probe spec: `steadytrain probe THIS_FILE [--device cuda]`\n"
              "# workload: replace with your own 'package.module:function' (returns model, loss_fn, train_batches,\n"
              "# eval_batches; see README) to probe your model; the built-in one reproduces the diagnosed pattern.\n")
    return write_atomic(path, header + yaml.safe_dump(data, sort_keys=False))


_WORKLOAD_FOR = {"early_instability": "builtin:early_residual_mlp", "mid_instability": "builtin:outlier_batches",
                 "divergence": "builtin:divergent_mlp"}


def _count_hparam(hp: Mapping[str, Any], keys: tuple[str, ...], *, low: int = 1, high: int = 10**12) -> int | None:
    """A count hyperparameter (steps, batch size) as logged: 10000, 1e4, "1e4", "32" all work; None when
    absent or not a whole number in [low, high]."""
    for key in keys:
        value = hp.get(key)
        if value is None or isinstance(value, bool):
            continue
        try:
            x = float(value.strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and x == int(x) and low <= x <= high:
            return int(x)
    return None


def _positive(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def spec_for(d: Diagnosis) -> ProbeSpec | None:
    """A probe pre-filled from what the logs reveal, with the plan the diagnosis calls for.

    Hyperparameters are read as logged (strings such as max_steps: "1e4" included); a value that
    cannot be used falls back to the built-in default and the spec's notes say so."""
    if d.verdict not in _WORKLOAD_FOR:
        return None
    hp = d.run.hparams
    notes = []
    lr = _positive(lr_from_hparams(hp)) or _positive(hp.get("lr (from run name)"))
    lr_tag = d.run.role_series("lr")
    if lr is None and lr_tag is not None and len(lr_tag):
        finite = lr_tag.values[np.isfinite(lr_tag.values)]
        lr = _positive(finite.max()) if finite.size else None
    if lr is None:
        notes.append("no usable learning rate in the logs or hyperparameters: lr 0.01 is a placeholder")
    rng = d.run.step_range()
    max_steps = _count_hparam(hp, ("max_steps",)) or (rng[1] if rng and rng[1] > 0 else 500)
    steps = min(500, max(100, max_steps))
    plans: list[str] = ["baseline"]
    warm = next((r for r in d.recommendations if r.kind == "warmup"), None)
    clip = next((r for r in d.recommendations if r.kind == "clip"), None)
    if d.verdict == "early_instability":
        plans += ["lr2x", "warmup_sweep"]
    if warm is not None:
        plans.append("warmup_target")  # the playbook's question: the shortest warmup stable at 10x the LR
    p90 = _positive(clip.params.get("max_norm")) if clip is not None else None
    if p90 is not None:
        plans.append("clip_sweep")
    if d.verdict == "divergence":
        plans += ["warmup_sweep"] if "warmup_sweep" not in plans else []
    warmups = (10, 50, 100) if steps <= 500 else (10, 100, 1000)
    factor = 10.0
    if warm is not None:
        target = _positive(warm.params.get("sweep_base_lr"))
        if target and lr:
            factor = target / lr
        notes.append(f"warmup recommendation for the logged run: a safe first run with {warm.params.get('warmup_steps')} "
                     f"steps, then the sweep {warm.params.get('sweep_warmup_steps')} at {factor:g}x the LR; scaled here "
                     f"to a {steps}-step probe: warmup_sweep finds the shortest warmup that fixes the current LR, "
                     f"warmup_target the shortest that is stable at {factor:g}x it")
    clips: tuple[float, ...] = ()
    if p90 is not None:
        clips = tuple(c for c in (round(p90, 6), round(p90 / 2, 6), round(p90 / 4, 6)) if c > 0)
        notes.append(f"clip candidates: p90 of the logged unclipped grad norm ({p90:.3g}) and tighter; with the "
                     "built-in workload, its own p90 is measured by the baseline trial")
    opt = next((str(v).lower() for k, v in hp.items() if k.split(".")[-1] in ("optimizer", "optim")), "adam")
    opt = opt if opt in OPTIMIZERS else ("momentum" if "sgd" in opt else "adam")
    batch = _count_hparam(hp, ("batch_size", "train_batch_size"), high=1 << 20)
    return ProbeSpec(workload=_WORKLOAD_FOR[d.verdict], optimizer=opt, lr=lr or 0.01, batch_size=batch or 64,
                     steps=steps, plans=tuple(dict.fromkeys(plans)), warmup_candidates=warmups, clip_candidates=clips,
                     warmup_lr_factor=float(factor), run=d.run.id, diagnosis=d.verdict, notes=tuple(notes))


def _file_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_") or "run"


def write_probe_specs(report: Report, directory: str | Path) -> dict[str, str]:
    """One spec per flagged run in ``directory``: run id -> spec path."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for d in report.diagnoses:
        with context(f"writing the probe spec of run {d.run.id!r}"):
            spec = spec_for(d)
            if spec is None:
                continue
            name = _file_name(d.run.id)
            if name in used:  # "a b" and "a_b" would share a file name
                name = f"{name}_{hashlib.sha1(d.run.id.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
            used.add(name)
            out[d.run.id] = str(dump_spec(spec, Path(directory) / f"{name}.yaml"))
    return out
