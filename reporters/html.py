"""Report -> one self-contained HTML file (jinja2, autoescaped, CSS/JS/SVG inlined, no network).

Full matplotlib figures are drawn for flagged runs and sweep members (all runs when there are
few); every run gets a sparkline. That keeps 1,000 runs under a minute and the file small.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from analyzer.config import AnalysisConfig
from analyzer.display import shown
from analyzer.errors import context
from analyzer.outputs import write_atomic
from analyzer.recommend.snippets import framework_for
from analyzer.recommend.summary import top_fix
from analyzer.verdicts import REPORT_ORDER, VERDICT
from analyzer.plans import ClipPlan, WarmupPlan
from analyzer.types import Diagnosis, Report, SweepDiagnosis
from reporters import filters, plots
from reporters.terminal import severity_key

log = logging.getLogger(__name__)

#: With at most this many runs, every run gets full figures.
ALL_PLOTS_UP_TO = 60
#: Otherwise at most this many flagged runs (worst first) get full figures.
MAX_FULL_PLOT_RUNS = 100

_VERDICT_LABEL = {name: VERDICT[name].label for name in REPORT_ORDER}  # in the overview's order
_SPAN_COLOR = {"early_instability": plots.ORANGE, "mid_instability": plots.RED, "divergence": plots.RED}


@functools.lru_cache(maxsize=1)
def _env() -> Environment:
    """The one jinja environment (built once: compiling the templates costs ~0.1 s)."""
    env = Environment(loader=PackageLoader("reporters", "templates"), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    filters.register(env)
    return env


def _asset(name: str) -> str:
    return (Path(__file__).parent / "static" / name).read_text(encoding="utf-8")


def anchor(run_id: str) -> str:
    """A stable element id for a run: readable ASCII part + a hash of the whole id, so "a b" and "a-b",
    CJK-only names and a run called `filter` (the page has an element #run-filter) never collide."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", run_id).strip("-")[:60]
    digest = hashlib.sha1(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"run-{slug}-{digest}" if slug else f"run-{digest}"


def anchors(run_ids: Iterable[str]) -> dict[str, str]:
    """`anchor` for each id, made unique within the page even if two hashes ever met."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for rid in sorted(set(run_ids)):
        a = base = anchor(rid)
        k = 1
        while a in used:
            k += 1
            a = f"{base}-{k}"
        used.add(a)
        out[rid] = a
    return out


@dataclass(frozen=True)
class Figure:
    """One figure of the report; ``error`` set (and ``svg`` empty) when it could not be drawn."""

    title: str
    svg: str  # produced by reporters.plots from numbers; marked safe in the template
    error: str | None = None


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def draw(title: str, make: Callable[[], str], where: str = "") -> Figure:
    """``make()`` as a Figure; an exception while drawing becomes a visible placeholder, not a failed report."""
    try:
        return Figure(title, make())
    except Exception as exc:  # noqa: BLE001 - one figure must never take the rest of the report down
        log.warning("figure %r%s could not be drawn: %s: %s", title, f" of {where}" if where else "",
                    type(exc).__name__, exc)
        log.debug("figure %r failed", title, exc_info=exc)
        return Figure(title, "", f"{type(exc).__name__}: {_short(str(exc), 200)}")


_SVG_ID = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


def scoped(fig: Figure, prefix: str) -> Figure:
    """The figure with every element id inside its SVG prefixed: matplotlib numbers ids per figure
    ("axes_1", clip paths), so two inline figures would otherwise share ids in one page."""
    if not fig.svg:
        return fig
    return Figure(fig.title, _SVG_ID.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", fig.svg), fig.error)


def run_figures(d: Diagnosis, prefix: str = "fig") -> list[Figure]:
    """The figures of a run, each drawn in isolation; element ids scoped by ``prefix`` (unique per page)."""
    try:
        figs = _run_figures(d)
    except Exception as exc:  # noqa: BLE001 - preparing the figures failed: one placeholder says so
        log.warning("the figures of run %r could not be prepared: %s: %s", d.run.id, type(exc).__name__, exc)
        return [Figure("Figures", "", f"{type(exc).__name__}: {_short(str(exc), 200)}")]
    return [scoped(f, f"{prefix}-{i}") for i, f in enumerate(figs)]


def _run_figures(d: Diagnosis) -> list[Figure]:
    run = d.run
    where = f"run {run.id!r}"
    loss = run.role_series("train_loss")
    figs: list[Figure] = []
    if loss is None or not np.isfinite(loss.values).any():
        return figs
    spans, marks = [], []
    for f in d.findings:
        if f.verdict in _SPAN_COLOR and f.severity.value >= 1:
            spans.append((f.start_step, f.end_step, _SPAN_COLOR[f.verdict], _VERDICT_LABEL[f.verdict]))
            peak = getattr(f.evidence, "peak_step", None)
            ratio = getattr(f.evidence, "ratio", None)
            if isinstance(peak, int):
                marks.append((peak, f"peak {ratio:.2g}x" if isinstance(ratio, float) and np.isfinite(ratio) else "peak"))
    ev = run.role_series("eval_loss")
    figs.append(draw("Loss", lambda: plots.loss_plot(loss.steps, loss.values, title=f"loss: {loss.tag}",
                                                     eval_steps=ev.steps if ev else None,
                                                     eval_values=ev.values if ev else None, spans=spans,
                                                     marks=marks[:8]), where))
    clip = next((r for r in d.recommendations if r.kind == "clip"), None)
    grad = run.role_series("grad_norm")
    if grad is not None and np.isfinite(grad.values).any():
        def thr() -> float:
            return float(clip.params.max_norm) if clip is not None and isinstance(clip.params, ClipPlan) else \
                float(np.percentile(grad.values[np.isfinite(grad.values)], 90))
        figs.append(draw("Gradient norm", lambda: plots.grad_norm_plot(grad.steps, grad.values, threshold=thr(),
                                                                       title=f"grad norm: {grad.tag}"), where))
        figs.append(draw("Gradient norm histogram",
                         lambda: plots.grad_histogram(grad.values, title="grad norm distribution"), where))
    lr = run.role_series("lr")
    warm = next((r for r in d.recommendations if r.kind == "warmup"), None)
    proposed = None
    if warm is not None and isinstance(warm.params, WarmupPlan):
        plan = warm.params
        base = plan.lr or plan.unstable_lr  # the safe first run: the warmup at the current LR
        if base:
            proposed = (plan.warmup_steps, plan.post_warmup_steps, float(base))
    lr_varies = lr is not None and np.nanmax(lr.values) > np.nanmin(lr.values) if lr is not None and len(lr) else False
    if proposed is not None or lr_varies:
        figs.append(draw("Learning rate", lambda: plots.lr_plot(lr.steps if lr else None, lr.values if lr else None,
                                                                proposed=proposed, title="learning rate"), where))
    return figs


def _top_fix(d: Diagnosis) -> str:
    """The overview's fix column: nothing for a stable run; else the first real fix with its number, worded
    once for the report and `watch` (analyzer.recommend.summary)."""
    return "" if d.verdict == "stable" else top_fix(d.recommendations)


def _run_view(d: Diagnosis, *, full: bool, probe_spec: str | None, report_dir: Path, run_anchor: str,
              probe_source: str | None = None) -> dict[str, Any]:
    run = d.run
    loss = run.role_series("train_loss")
    framework = framework_for(run.format)
    rng = run.step_range()
    recs: list[dict[str, Any]] = []
    for r in d.recommendations:
        ordered = sorted(r.snippets.items(), key=lambda kv: kv[0] != framework)
        recs.append({"kind": r.kind, "rationale": r.rationale, "params": r.params.as_dict(), "snippets": ordered})
    top = d.headline
    spec_rel = None
    if probe_spec:
        try:
            spec_rel = Path(probe_spec).resolve().relative_to(report_dir.resolve()).as_posix()
        except ValueError:
            spec_rel = probe_spec
    return {
        "id": run.id, "anchor": run_anchor, "verdict": d.verdict, "verdict_label": _VERDICT_LABEL[d.verdict],
        "severity_rank": severity_key(d)[0], "format": run.format, "points": run.n_points,
        "steps": f"{rng[0]:,}–{rng[1]:,}" if rng else "–", "max_step": rng[1] if rng else 0,
        "roles": run.roles.as_dict(), "missing_roles": run.roles.missing,
        "findings": [{"kind": f.kind, "severity": f.severity.label, "message": f.message, "start": f.start_step,
                      "end": f.end_step, "evidence": f.evidence.as_dict()} for f in d.findings],
        "recommendations": recs, "framework": framework,
        "notes": [{"kind": n.kind, "message": n.message, "count": n.count} for n in run.notes],
        "hparams": {k: v for k, v in list(run.hparams.items())[:40]}, "sources": list(run.sources),
        "top_finding": top.message if top else "", "top_finding_short": _short(top.message, 110) if top else "",
        "top_rec": _top_fix(d),
        "spark": _sparkline(loss.values) if loss is not None else "",
        "figures": run_figures(d, run_anchor) if full else [], "full": full,
        "probe_cmd": f"steadytrain probe {spec_rel}" if spec_rel else None,
        "probe_source": probe_source if spec_rel else None,
        "failures": [f"{c.check}: {c.error_type}: {c.message}" for c in d.failures],
    }


def _sparkline(values: np.ndarray) -> str:
    try:
        return plots.sparkline(values)
    except Exception as exc:  # noqa: BLE001 - a missing sparkline is no reason to lose the report
        log.warning("a sparkline could not be drawn: %s: %s", type(exc).__name__, exc)
        return ""


def _sweep_view(s: SweepDiagnosis, by_id: Mapping[str, Diagnosis], run_anchors: Mapping[str, str],
                number: int) -> dict[str, Any]:
    idx = {r: i for i, r in enumerate(s.runs)}
    best = idx.get(s.best_run) if s.best_run else None
    axis = scoped(draw("LR sweep", lambda: plots.sweep_axis_plot(
        s.lrs, s.scores, infeasible=[idx[r] for r in s.infeasible], best=best, edge=s.edge_of_instability,
        metric=s.metric)), f"sweep{number}-axis")
    around = range(max(0, (best or 0) - 1), min(len(s.runs), (best or 0) + 3)) if best is not None else range(len(s.runs))
    curves = []
    for i in around:
        loss = by_id[s.runs[i]].run.role_series("train_loss")
        if loss is not None:
            curves.append((f"lr {s.lrs[i]:.3g}" + (" (lr*)" if i == best else ""), loss.steps, loss.values))
    overlay = scoped(draw("Loss around lr*", lambda: plots.sweep_curves_plot(
        curves, title="training loss of the LRs around lr*")), f"sweep{number}-curves") if curves else None
    rows = [{"run": r, "anchor": run_anchors.get(r, anchor(r)), "lr": lr, "score": sc, "verdict": by_id[r].verdict,
             "infeasible": r in s.infeasible, "best": r == s.best_run} for r, lr, sc in zip(s.runs, s.lrs, s.scores)]
    return {"message": s.message, "edge": s.edge_of_instability, "best_lr": s.best_lr, "metric": s.metric,
            "rows": rows, "axis": axis, "overlay": overlay}


def figure_runs(diagnoses: Sequence[Diagnosis], sweeps: Sequence[SweepDiagnosis]) -> set[str]:
    """The runs the report draws full figures for (every other run gets a sparkline): all of them up to
    ``ALL_PLOTS_UP_TO`` runs, else the ``MAX_FULL_PLOT_RUNS`` worst flagged runs and every sweep member. With
    ``--executor ray`` only these come back from the tasks with every point of their role series."""
    ordered = sorted(diagnoses, key=severity_key)
    if len(ordered) <= ALL_PLOTS_UP_TO:
        return {d.run.id for d in ordered}
    flagged = [d.run.id for d in ordered if VERDICT[d.verdict].unstable]
    return set(flagged[:MAX_FULL_PLOT_RUNS]) | {r for s in sweeps for r in s.runs}


def render_html(report: Report, *, probe_specs: Mapping[str, str] | None = None, report_dir: Path = Path("."),
                progress: bool = False, probe_sources: Mapping[str, str] | None = None) -> str:
    """``probe_specs``: run id -> the probe spec written for it; ``probe_sources``: run id -> what that probe
    re-runs, one line (the run itself from its checkpoint, or a stand-in)."""
    probe_specs = probe_specs or {}
    probe_sources = probe_sources or {}
    ordered = sorted(report.diagnoses, key=severity_key)
    full_ids = figure_runs(report.diagnoses, report.sweeps)
    stream: Iterable[Diagnosis] = ordered
    if progress and len(ordered) > 20:
        from tqdm import tqdm
        stream = tqdm(ordered, desc="rendering", unit="run", leave=False)
    run_anchors = anchors(d.run.id for d in ordered)
    runs = []
    for d in stream:
        with context(f"rendering run {d.run.id!r} in the HTML report"):
            runs.append(_run_view(d, full=d.run.id in full_ids, probe_spec=probe_specs.get(d.run.id),
                                  report_dir=report_dir, run_anchor=run_anchors[d.run.id],
                                  probe_source=probe_sources.get(d.run.id)))
    by_id = {d.run.id: d for d in report.diagnoses}
    sweeps = []
    for number, s in enumerate(report.sweeps):
        with context(f"rendering the LR sweep of {', '.join(s.runs[:3])} in the HTML report"):
            sweeps.append(_sweep_view(s, by_id, run_anchors, number))
    counts = {v: sum(1 for d in ordered if d.verdict == v) for v in _VERDICT_LABEL}
    docs = AnalysisConfig.docs()
    config_rows = [(k, v, docs.get(k, "")) for k, v in report.config.items()]
    inputs = [{"path": i.path, "status": i.status, "reason": i.reason, "run": i.run,
               "anchor": run_anchors.get(i.run) if i.run else None} for i in report.inputs]
    # The page as a whole passes through `shown`: no URL credentials and no unencodable name in any part of it.
    return shown(_env().get_template("report.html").render(
        report=report, runs=runs, sweeps=sweeps, counts=counts, labels=_VERDICT_LABEL, config_rows=config_rows,
        inputs=inputs, **_file_counts(report),
        partial_plots=len(full_ids) < len(runs), full_count=len(full_ids),
        css=_asset("report.css"), js=_asset("report.js"),
    ))


def _file_counts(report: Report) -> dict[str, int]:
    """Files met, read and skipped, each file once: one database holds many runs (an input row per run), and a
    file read for one run may be skipped for another (a deleted MLflow run); read wins."""
    read = {i.path for i in report.inputs if i.status == "read"}
    met = {i.path for i in report.inputs}
    return {"files": len(met), "read_files": len(read), "skipped": len(met - read)}


def write_html(report: Report, path: str | Path, *, probe_specs: Mapping[str, str] | None = None,
               progress: bool = False, probe_sources: Mapping[str, str] | None = None) -> Path:
    """Render the whole page, then write it atomically: a failed render leaves the previous report intact."""
    out = Path(path)
    return write_atomic(out, render_html(report, probe_specs=probe_specs, report_dir=out.parent, progress=progress,
                                         probe_sources=probe_sources))
