"""The probe report: trials table, the conclusion, and the trials' loss curves (HTML + JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from analyzer.display import shown
from analyzer.outputs import write_atomic
from analyzer.types import Report
from probes.spec import ProbeSpec


def write_probe_report(spec: ProbeSpec, outcomes: Sequence[Any], conclusion: str, smallest: str | None,
                       report: Report, out: Path) -> tuple[Path, Path]:
    from probes.run import ProbeOutcome, dumps, outcome_dict
    from reporters import plots
    from reporters.html import _asset, _env

    by_dir = {d.run.id: d for d in report.diagnoses}
    curves = []
    rows = []
    for o in outcomes:
        r = o.result
        d = by_dir.get(Path(r.log_dir).name)
        loss = d.run.series("train/loss") if d else None
        if loss is not None:
            curves.append((r.name, loss.steps, loss.values))
        rows.append({"name": r.name, "plan": r.plan, "lr": r.lr, "warmup": r.warmup_steps, "clip": r.clip,
                     "verdict": o.verdict, "final": r.final_loss, "best": r.best_loss, "spike": o.max_spike_ratio,
                     "clipped": r.fraction_clipped, "steps": f"{r.steps_run}/{r.steps_planned}",
                     "stop": r.stop_reason or "", "seconds": r.seconds, "device": r.device,
                     "findings": ", ".join(o.findings)})
    figure = plots.sweep_curves_plot(curves, title="training loss per trial") if curves else ""
    html = _env().get_template("probe.html").render(spec=spec, rows=rows, conclusion=conclusion, smallest=smallest,
                                                    figure=figure, css=_asset("report.css"))
    html_path = out / "probe_report.html"
    write_atomic(html_path, shown(html))
    json_path = out / "probe_report.json"
    outcome = ProbeOutcome(spec, tuple(outcomes), conclusion, smallest, str(out), str(html_path), str(json_path), "")
    write_atomic(json_path, shown(dumps(outcome_dict(outcome))))
    return html_path, json_path
