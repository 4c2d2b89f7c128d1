"""ProbeSpec: a short re-run of a flagged config, as YAML. Torch-free (the report writes these).

A spec names the workload (a built-in one, or the user's ``module:function``), the optimizer,
the LR schedule, clipping, batch size, steps, eval interval, seed, device, dtype, and the plans
(lr2x, warmup_sweep, clip_sweep) from the playbook. `load_spec` validates with one-line errors
naming the field and what it allows.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from analyzer.errors import ConfigError
from analyzer.hparams import lr_from_hparams
from analyzer.types import Diagnosis, Report

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "nadam")
DECAYS = ("constant", "linear", "cosine")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")
PLAN_KINDS = ("baseline", "lr2x", "warmup_sweep", "clip_sweep", "warmup_clip")


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
        if plan == "warmup_sweep":
            cap = max(1, int(0.1 * self.steps)) if self.steps >= 10 else self.steps
            ws = sorted({w for w in self.warmup_candidates if w <= cap}) or [cap]
            return [replace(base, name=f"warmup {w}", warmup_steps=w, post_warmup_steps=2 * w) for w in ws]
        if plan == "clip_sweep":
            return [replace(base, name=f"clip {c:.3g}", clip=c) for c in sorted(self.clip_candidates, reverse=True)]
        if plan == "warmup_clip":
            w = min(self.warmup_candidates, default=10)
            c = max(self.clip_candidates, default=1.0)
            return [replace(base, name=f"warmup {w} + clip {c:.3g}", warmup_steps=w, clip=c)]
        raise ConfigError(f"plan {plan!r}: expected one of {', '.join(PLAN_KINDS)}")


_FIELD_TYPES = {"int": int, "float": float, "str": str}


def _check(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {message}")


def spec_from_mapping(data: Mapping[str, Any], *, source: str = "spec") -> ProbeSpec:
    """Validate a mapping into a ProbeSpec; ConfigError names the field and the allowed values."""
    _check(isinstance(data, Mapping), source, "expected a YAML mapping of fields")
    known = {f for f in ProbeSpec.__dataclass_fields__}
    unknown = sorted(set(data) - known - {"version"})
    _check(not unknown, source, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    _check("workload" in data, source, "missing field 'workload' (e.g. builtin:early_residual_mlp or pkg.mod:function)")
    kw: dict[str, Any] = {}
    for name, value in data.items():
        if name == "version":
            continue
        where = f"{source}: field '{name}'"
        if name in ("lr", "momentum", "eps", "weight_decay", "divergence_factor"):
            _check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                   and value >= 0, where, f"expected a non-negative number, got {value!r}")
            if name == "lr":
                _check(value > 0, where, "the learning rate must be > 0")
            kw[name] = float(value)
        elif name in ("warmup_steps", "batch_size", "steps", "eval_interval", "seed", "log_every"):
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 0, where,
                   f"expected a non-negative integer, got {value!r}")
            if name in ("batch_size", "steps", "eval_interval", "log_every"):
                _check(value >= 1, where, "must be at least 1")
            kw[name] = value
        elif name == "post_warmup_steps":
            _check(value is None or (isinstance(value, int) and value >= 0), where, "expected an integer or null")
            kw[name] = value
        elif name == "clip":
            _check(value is None or (isinstance(value, (int, float)) and value > 0), where,
                   f"expected a positive max grad norm or null, got {value!r}")
            kw[name] = None if value is None else float(value)
        elif name == "optimizer":
            _check(str(value).lower() in OPTIMIZERS, where, f"{value!r} is not one of {', '.join(OPTIMIZERS)}")
            kw[name] = str(value).lower()
        elif name == "decay":
            _check(value in DECAYS, where, f"{value!r} is not one of {', '.join(DECAYS)}")
            kw[name] = value
        elif name == "device":
            _check(value in DEVICES, where, f"{value!r} is not one of {', '.join(DEVICES)}")
            kw[name] = value
        elif name == "dtype":
            _check(value in DTYPES, where, f"{value!r} is not one of {', '.join(DTYPES)}")
            kw[name] = value
        elif name == "plans":
            plans = [value] if isinstance(value, str) else value
            _check(isinstance(plans, (list, tuple)) and plans and all(p in PLAN_KINDS for p in plans), where,
                   f"expected a list from {', '.join(PLAN_KINDS)}, got {value!r}")
            kw[name] = tuple(plans)
        elif name == "betas":
            _check(isinstance(value, (list, tuple)) and len(value) == 2 and all(0 <= float(b) < 1 for b in value),
                   where, "expected two numbers in [0, 1), e.g. [0.9, 0.999]")
            kw[name] = (float(value[0]), float(value[1]))
        elif name == "warmup_candidates":
            _check(isinstance(value, (list, tuple)) and all(isinstance(w, int) and w >= 0 for w in value), where,
                   "expected a list of non-negative integers")
            kw[name] = tuple(value)
        elif name == "clip_candidates":
            _check(isinstance(value, (list, tuple)) and all(isinstance(c, (int, float)) and c > 0 for c in value),
                   where, "expected a list of positive numbers")
            kw[name] = tuple(float(c) for c in value)
        elif name == "workload":
            _check(isinstance(value, str) and re.fullmatch(r"builtin:[a-z0-9_]+|[\w.]+:\w+", value) is not None,
                   where, f"expected builtin:NAME or package.module:function, got {value!r}")
            kw[name] = value
        elif name == "workload_args":
            _check(isinstance(value, Mapping), where, "expected a mapping of keyword arguments")
            kw[name] = dict(value)
        elif name == "notes":
            kw[name] = tuple(str(n) for n in (value or ()))
        else:
            kw[name] = str(value) if value is not None else ""
    return ProbeSpec(**kw)


def load_spec(path: str | Path) -> ProbeSpec:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such probe spec file (write one with `steadytrain report`, see README)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    return spec_from_mapping(data, source=str(path))


def dump_spec(spec: ProbeSpec, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()}
    data = {"version": 1, **data}
    header = ("# steadytrain probe spec: `steadytrain probe THIS_FILE [--device cuda]`\n"
              "# workload: replace with your own 'package.module:function' (returns model, loss_fn, train_batches,\n"
              "# eval_batches; see README) to probe your model; the built-in one reproduces the diagnosed pattern.\n")
    out.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


_WORKLOAD_FOR = {"early_instability": "builtin:early_residual_mlp", "mid_instability": "builtin:outlier_batches",
                 "divergence": "builtin:divergent_mlp"}


def spec_for(d: Diagnosis) -> ProbeSpec | None:
    """A probe pre-filled from what the logs reveal, with the plan the diagnosis calls for."""
    if d.verdict not in _WORKLOAD_FOR:
        return None
    hp = d.run.hparams
    lr = lr_from_hparams(hp) or hp.get("lr (from run name)")
    lr_tag = d.run.role_series("lr")
    if lr is None and lr_tag is not None and len(lr_tag):
        lr = float(max(lr_tag.values))
    notes = []
    rng = d.run.step_range()
    max_steps = int(hp.get("max_steps") or (rng[1] if rng else 500) or 500)
    steps = min(500, max(100, max_steps))
    plans: list[str] = ["baseline"]
    warm = next((r for r in d.recommendations if r.kind == "warmup"), None)
    clip = next((r for r in d.recommendations if r.kind == "clip"), None)
    if d.verdict == "early_instability":
        plans += ["lr2x", "warmup_sweep"]
    if clip is not None:
        plans.append("clip_sweep")
    if d.verdict == "divergence":
        plans += ["warmup_sweep"] if "warmup_sweep" not in plans else []
    warmups = (10, 50, 100) if steps <= 500 else (10, 100, 1000)
    if warm is not None:
        notes.append(f"warmup recommendation for the logged run: {warm.params.get('warmup_steps')} steps "
                     f"(sweep {warm.params.get('sweep_warmup_steps')}); scaled here to a {steps}-step probe")
    clips: tuple[float, ...] = ()
    if clip is not None:
        p90 = float(clip.params["max_norm"])
        clips = (round(p90, 6), round(p90 / 2, 6), round(p90 / 4, 6))
        notes.append(f"clip candidates: p90 of the logged unclipped grad norm ({p90:.3g}) and tighter; with the "
                     "built-in workload, its own p90 is measured by the baseline trial")
    opt = next((str(v).lower() for k, v in hp.items() if k.split(".")[-1] in ("optimizer", "optim")), "adam")
    opt = opt if opt in OPTIMIZERS else ("momentum" if "sgd" in opt else "adam")
    return ProbeSpec(workload=_WORKLOAD_FOR[d.verdict], optimizer=opt, lr=float(lr) if lr else 0.01,
                     batch_size=int(hp.get("batch_size") or hp.get("train_batch_size") or 64), steps=steps,
                     plans=tuple(dict.fromkeys(plans)), warmup_candidates=warmups, clip_candidates=clips,
                     run=d.run.id, diagnosis=d.verdict, notes=tuple(notes))


def _file_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_") or "run"


def write_probe_specs(report: Report, directory: str | Path) -> dict[str, str]:
    """One spec per flagged run in ``directory``: run id -> spec path."""
    out: dict[str, str] = {}
    for d in report.diagnoses:
        spec = spec_for(d)
        if spec is not None:
            out[d.run.id] = str(dump_spec(spec, Path(directory) / f"{_file_name(d.run.id)}.yaml"))
    return out
