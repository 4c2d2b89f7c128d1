"""Probe specs from a report: one per flagged run, the run itself when its artifacts allow.

Torch-free: `steadytrain report` and the live callbacks write these.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from analyzer.display import printable, shown
from analyzer.errors import SteadytrainError
from analyzer.facts import facts_of
from analyzer.plans import ClipPlan, WarmupPlan
from analyzer.types import Diagnosis, Report
from probes.own_run import own_run_spec
from probes.spec import OPTIMIZERS, ProbeSpec, dump_spec, load_spec

log = logging.getLogger(__name__)

_WORKLOAD_FOR = {"early_instability": "builtin:early_residual_mlp", "mid_instability": "builtin:outlier_batches",
                 "divergence": "builtin:divergent_mlp"}


def _positive(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def spec_for(d: Diagnosis) -> ProbeSpec | None:
    """The probe for a flagged run (None for a stable one): the run itself when its folder holds a
    checkpoint or its model's config (probes.own_run), else the built-in stand-in for its verdict."""
    if d.verdict not in _WORKLOAD_FOR:
        return None
    stand_in = stand_in_spec(d)
    own = own_run_spec(d, stand_in)
    return own if own is not None else stand_in


def stand_in_spec(d: Diagnosis) -> ProbeSpec:
    """The built-in stand-in: a small model that shows the diagnosed class of failure at the run's LR and
    optimizer, with the plan the diagnosis calls for.

    Hyperparameters are read as logged (strings such as max_steps: "1e4" included); a value that
    cannot be used falls back to the built-in default and the spec's notes say so."""
    facts = facts_of(d.run.hparams)
    notes = []
    lr = _positive(facts.lr)
    lr_tag = d.run.role_series("lr")
    if lr is None and lr_tag is not None and len(lr_tag):
        finite = lr_tag.values[np.isfinite(lr_tag.values)]
        lr = _positive(finite.max()) if finite.size else None
    if lr is None:
        notes.append("no usable learning rate in the logs or hyperparameters: lr 0.01 is a placeholder")
    rng = d.run.step_range()
    max_steps = facts.max_steps or (rng[1] if rng and rng[1] > 0 else 500)
    steps = min(500, max(100, max_steps))
    plans: list[str] = ["baseline"]
    warm = next((r for r in d.recommendations if r.kind == "warmup"), None)
    clip = next((r for r in d.recommendations if r.kind == "clip"), None)
    if d.verdict == "early_instability":
        plans += ["lr2x", "warmup_sweep"]
    if warm is not None:
        plans.append("warmup_target")  # the playbook's question: the shortest warmup stable at 10x the LR
    p90 = _positive(clip.params.max_norm) if clip is not None and isinstance(clip.params, ClipPlan) else None
    if p90 is not None:
        plans.append("clip_sweep")
    if d.verdict == "divergence":
        plans += ["warmup_sweep"] if "warmup_sweep" not in plans else []
    warmups = (10, 50, 100) if steps <= 500 else (10, 100, 1000)
    factor = 10.0
    if warm is not None and isinstance(warm.params, WarmupPlan):
        target = _positive(warm.params.sweep_base_lr)
        if target and lr:
            factor = target / lr
        if factor < 1.0:  # a run that diverged while its LR was below the peak: the probe's LR is the peak
            notes.append(f"the run diverged at LR {target:g}, below its peak {lr:g}: warmup_target runs at the peak")
            factor = 1.0
        notes.append(f"warmup recommendation for the logged run: a safe first run with {warm.params.warmup_steps} "
                     f"steps, then the sweep {list(warm.params.sweep_warmup_steps)} at {factor:g}x the LR; scaled here "
                     f"to a {steps}-step probe: warmup_sweep finds the shortest warmup that fixes the current LR, "
                     f"warmup_target the shortest that is stable at {factor:g}x it")
    clips: tuple[float, ...] = ()
    if p90 is not None:
        clips = tuple(c for c in (round(p90, 6), round(p90 / 2, 6), round(p90 / 4, 6)) if c > 0)
        notes.append(f"clip candidates: p90 of the logged unclipped grad norm ({p90:.3g}) and tighter; with the "
                     "built-in workload, its own p90 is measured by the baseline trial")
    opt = facts.optimizer or "adam"
    opt = opt if opt in OPTIMIZERS else ("momentum" if "sgd" in opt else "adam")
    batch = facts.batch_size if facts.batch_size and facts.batch_size <= 1 << 20 else None
    notes.insert(0, "a built-in stand-in that shows the class of failure, not the run: no checkpoint or model config "
                    "of the run was found beside its log (see README, Probes)")
    return ProbeSpec(workload=_WORKLOAD_FOR[d.verdict], optimizer=opt, lr=lr or 0.01, batch_size=batch or 64,
                     steps=steps, plans=tuple(dict.fromkeys(plans)), warmup_candidates=warmups, clip_candidates=clips,
                     warmup_lr_factor=float(factor), run=d.run.id, diagnosis=d.verdict, notes=tuple(notes))


def _file_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_") or "run"


def write_probe_specs(report: Report, directory: str | Path) -> dict[str, str]:
    """One spec per flagged run in ``directory``: run id -> spec path. A run whose spec cannot be made is
    left without one and said in one warning line: the report and the other runs' specs are still written."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for d in report.diagnoses:
        try:
            spec = spec_for(d)
            if spec is None:
                continue
            name = _file_name(d.run.id)
            if name in used:  # "a b" and "a_b" would share a file name
                name = f"{name}_{hashlib.sha1(d.run.id.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
            used.add(name)
            out[d.run.id] = str(dump_spec(spec, Path(directory) / f"{name}.yaml"))
        except OSError:
            raise  # the folder cannot be written: every spec would fail the same way
        except Exception as exc:  # noqa: BLE001 - one run's spec never costs the report
            what = str(exc) if isinstance(exc, SteadytrainError) else f"{type(exc).__name__}: {exc}"
            log.warning("no probe spec for run %s: %s", shown(d.run.id), printable(what))
    return out


def spec_sources(specs: Mapping[str, str]) -> dict[str, str]:
    """Run id -> one line saying what the written probe re-runs (for the report's probe section)."""
    out: dict[str, str] = {}
    for run_id, path in specs.items():
        spec = load_spec(path)
        src = spec.source
        if not spec.own_run or src is None:
            out[run_id] = f"a built-in stand-in ({spec.workload}) showing the class of failure, not the run itself"
            continue
        start = (f"resumes from {src.get('checkpoint')} (step {src.get('checkpoint_step'):,})"
                 if src.get("checkpoint") and src.get("checkpoint_step") is not None else
                 "starts from fresh weights")
        data = spec.data or "a synthetic token stream (give --data for the run's own)"
        out[run_id] = (f"the run itself: {src.get('architecture')} from {src.get('config')}, {start}; "
                       f"data: {data}")
    return out
