"""The probe report: what was re-run, the conclusion, the replay's findings, the per-block mechanism, the
trials table and their loss curves (HTML + JSON)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from analyzer.display import shown
from analyzer.outputs import write_atomic
from analyzer.types import Report
from probes.outcome import ProbeOutcome, dumps, outcome_dict

#: Per-block gradient curves drawn in the mechanism figure (the first to rise, then the largest).
MAX_BLOCK_CURVES = 8


def _num(x: Any) -> Any:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def write_probe_report(outcome: ProbeOutcome, report: Report, out: Path) -> tuple[Path, Path]:
    from reporters import plots
    from reporters.html import _asset, _env

    spec = outcome.spec
    by_dir = {Path(d.run.id).name: d for d in report.diagnoses}
    curves = []
    rows = []
    for o in outcome.trials:
        r = o.result
        d = by_dir.get(Path(r.log_dir).name)
        loss = d.run.series("train/loss") if d else None
        if loss is not None:
            curves.append((r.name, loss.steps, loss.values))
        rows.append({"name": r.name, "plan": r.plan, "lr": r.lr, "warmup": r.warmup_steps, "clip": r.clip,
                     "verdict": o.verdict, "final": r.final_loss, "best": r.best_loss, "spike": o.max_spike_ratio,
                     "clipped": r.fraction_clipped, "steps": f"{r.steps_run}/{r.steps_planned}",
                     "at": o.unstable_at, "stop": r.stop_reason or "", "seconds": r.seconds, "device": r.device,
                     "findings": ", ".join(o.findings)})
    figure = plots.sweep_curves_plot(curves, title="training loss per trial") if curves else ""
    blocks, block_figure = [], ""
    att = outcome.attribution
    if att is not None:
        blocks = [{"group": b.group, "rise": b.rise_step, "lead": (att.loss_start - b.rise_step)
                   if b.rise_step is not None else None, "grad": _num(b.grad_ratio),
                   "upd_before": _num(b.update_ratio_before), "upd_peak": _num(b.update_ratio_peak),
                   "adam_v": _num(b.adam_v_ratio), "act": _num(b.act_rms_ratio)} for b in att.blocks]
        base = next((o for o in outcome.trials if o.result.plan == "baseline"), None)
        d = by_dir.get(Path(base.result.log_dir).name) if base is not None else None
        if d is not None:
            curves = []
            for b in att.blocks[:MAX_BLOCK_CURVES]:
                s = d.run.series(f"layers/{b.group}/grad")
                if s is not None:
                    curves.append((b.group, s.steps, s.values))
            if curves:
                block_figure = plots.sweep_curves_plot(
                    curves, title=f"per-block gradient norm, same settings (loss left its level at {att.loss_start})")
    html = _env().get_template("probe.html").render(
        spec=spec, rows=rows, conclusion=outcome.conclusion, smallest=outcome.smallest_fix, figure=figure,
        replay=outcome.replay, attribution=att, blocks=blocks, block_figure=block_figure, used=list(outcome.used),
        source=spec.source or {}, window=spec.window or {}, css=_asset("report.css"))
    html_path = out / "probe_report.html"
    write_atomic(html_path, shown(html))
    json_path = out / "probe_report.json"
    write_atomic(json_path, shown(dumps(outcome_dict(outcome))))
    return html_path, json_path
