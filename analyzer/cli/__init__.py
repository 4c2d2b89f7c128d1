"""The `steadytrain` command: the composition root, wiring only.

The only part of analyzer that may import reporters and probes, and only inside the command functions, so
that `import analyzer` never pulls in jinja2, matplotlib or torch. What the commands share lives beside it:
`failures` (exit codes, one-line errors, logging), `options` (the shared options as one `AnalysisRequest`),
`reports` (what is written and printed, the gates). Exit codes: 0 ok; 1 a --fail-on verdict was found; 2 bad
usage or input; 3 an internal error (--debug shows the traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from analyzer.cli.failures import (EXIT_FAIL_ON, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, SteadytrainGroup,
                                       debug_option, echo, fail, setup_logging)
from analyzer.cli.options import FAIL_ON, AnalysisRequest, analysis_options, parse_scale
from analyzer.cli.reports import (check_outputs, emit_json, gate, size_mb, write_html_report,
                                      write_live_report)
from analyzer.config import AnalysisConfig
from analyzer.display import printable
from analyzer.errors import context

__all__ = ["EXIT_FAIL_ON", "EXIT_INTERNAL", "EXIT_OK", "EXIT_USAGE", "FAIL_ON", "main"]


@click.group(cls=SteadytrainGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="steadytrain")
@click.option("-v", "--verbose", is_flag=True, help="Log every file read or skipped, and why.")
@click.option("--debug", is_flag=True, help="Debug logging, and the full traceback of an internal error.")
@click.pass_context
def main(ctx: click.Context, verbose: bool, debug: bool) -> None:
    """Diagnose training instability from training logs.

    Point it at a directory of training logs (every format it reads is listed below). It reads every point,
    tells early-training instability, mid-training instability and divergence apart, analyses LR sweeps, and
    recommends warmup and clipping settings with the numbers behind them.

    \b
    steadytrain report runs/ -o report.html     the HTML diagnostic report (+ --json)
    steadytrain inspect runs/                   the same findings in the terminal
    steadytrain probe SPEC.yaml                 re-run a flagged run as a short probe
    steadytrain watch runs/                     judge runs while they train

    \b
    Exit codes: 0 ok, 1 a --fail-on verdict was found, 2 bad usage or input,
    3 an internal error (--debug shows its traceback).
    """
    ctx.obj = {"debug": debug, "verbose": verbose}
    setup_logging(verbose, debug)


def _analyze(request: AnalysisRequest, *, figures: bool = False) -> Any:
    from analyzer.pipeline import analyze

    chosen: Callable[..., Any] | None = None
    if figures:  # only `report` draws figures: `inspect` never loads the HTML reporter (jinja2, matplotlib)
        from reporters.html import figure_runs as chosen
    return analyze(list(request.paths), config=request.config(), load_options=request.load_options(),
                   progress=request.show_progress, executor=request.executor,  # type: ignore[arg-type]
                   address=request.address, figure_runs=chosen)


@main.command()
@debug_option
@analysis_options()
@click.option("--verbose-runs", "-a", is_flag=True, help="Show every run's findings, notes and every input file.")
def inspect(request: AnalysisRequest, verbose_runs: bool) -> None:
    """Summarise runs, verdicts and findings in the terminal.

    With --json - the JSON report goes to stdout and this summary to stderr.
    """
    from analyzer.outputs import is_stdout
    from reporters.terminal import render_inspect

    check_outputs(request.paths, ("--json", request.json_out, True))
    report = _analyze(request)
    echo(render_inspect(report, verbose=verbose_runs), err=is_stdout(request.json_out))
    if request.json_out:
        emit_json(report, request.json_out, "JSON")
    gate(report, request.fail_on, request.fail_on_unjudged)


@main.command()
@debug_option
@analysis_options()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML report to write (probe specs go to <name>_files/probes/).")
@click.option("--no-html", is_flag=True, help="Write only the JSON (--json) and the terminal summary.")
def report(request: AnalysisRequest, output: Path, no_html: bool) -> None:
    """Write the self-contained HTML diagnostic report (and JSON with --json).

    With --json - the JSON report goes to stdout and every other line to stderr. No output may be one of
    the inputs, a device or the other output: that is refused before any work.
    """
    from analyzer.outputs import is_stdout
    from reporters.terminal import runs_table, summary

    json_out = request.json_out
    check_outputs(request.paths, ("-o/--output", None if no_html else output, False), ("--json", json_out, True))
    result = _analyze(request, figures=not no_html)
    human = is_stdout(json_out)  # the JSON owns stdout: every other line goes to stderr
    if json_out:
        emit_json(result, json_out, "JSON report")
    if not no_html:
        path, specs = write_html_report(result, output, progress=request.show_progress)
        echo(f"HTML report: {path} ({size_mb(path)})", err=human)
        if specs:
            echo(f"Probe specs: {len(specs)} in {output.parent / f'{output.stem}_files' / 'probes'}", err=human)
    echo(runs_table(result, limit=10), err=human)
    echo(summary(result), err=human)
    gate(result, request.fail_on, request.fail_on_unjudged)


def _setting_text(value: Any) -> str:
    """A setting's value as --set accepts it back (lists comma-separated, no brackets or spaces)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


@main.command()
@debug_option
def settings() -> None:
    """List every analysis threshold as NAME=VALUE (what --set accepts), with what it means."""
    values = AnalysisConfig().as_dict()
    for name, doc in AnalysisConfig.docs().items():
        echo(f"{name}={_setting_text(values[name])}\n    {doc}")


@main.command()
@debug_option
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto", show_default=True,
              help="Where trials run; auto = CUDA when present.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where trial logs and the probe report go (default: next to the spec, <spec>_probe/).")
@click.option("--plan", "plan_name", help="Run only this plan of the spec (skip_window, clip_sweep, lr_sweep, ...).")
@click.option("--steps", type=click.IntRange(min=1), help="Override the number of steps of every trial.")
@click.option("--data", help="The run's training data (a spec that re-runs the run itself): a token .bin, a datasets "
              "folder, a .txt/.jsonl file (tokenized with the run's tokenizer) or package.module:function.")
@click.option("--data-order", type=click.Choice(("random", "sequential")),
              help="sequential: batch k is the k-th block of the data (the run read it in order: a replay sees its "
              "exact batches); random: windows drawn from (seed, step).")
@click.option("--scale", callback=parse_scale, help="Shrink the run's architecture to fit this device, e.g. "
              "depth=0.25,width=0.5 (fresh weights; the report says it was shrunk).")
@click.option("--executor", type=click.Choice(("sequential", "gpus", "ray")), default="sequential",
              show_default=True, help="Run trials one by one, one process per local GPU, or as Ray tasks.")
@click.option("--address", help="Ray cluster address (with --executor ray).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
def probe(spec: Path, device: str, out_dir: Path | None, plan_name: str | None, steps: int | None, data: str | None,
          data_order: str | None, scale: dict[str, float] | None, executor: str, address: str | None,
          progress: bool | None) -> None:
    """Re-run a flagged run as short PyTorch probes: reproduce it, explain it, find the smallest fix.

    A spec written by `report` re-runs the run itself from its folder (its checkpoint or its architecture,
    its optimizer, schedule and clipping) and replays the flagged window: the same settings, its batches
    skipped, clipping, lower LRs, warmup, the LR search; with per-block gradient attribution. Without a
    checkpoint or model config it is a built-in stand-in that shows the class of failure.

    A spec is code: running it imports the model code it names (transformers, a LightningModule class, a
    workload or data function given as package.module:function) and calls it, as running a script would, so
    run only specs you wrote or trust. The specs `steadytrain report` writes name only the built-in workloads
    or the run's own recognised architecture.
    """
    import sys

    from probes.run import probe_out_dir
    from probes.spec import load_spec

    loaded = load_spec(spec)  # a bad spec is reported as such, with or without torch
    if not loaded.workload.startswith("builtin:"):
        echo(f"steadytrain: note: {spec} names the workload {loaded.workload}: running it imports and calls that "
             "code", err=True)
    out = probe_out_dir(spec, out_dir)
    check_outputs([spec], ("--out", out / "probe_report.html", False), ("--out", out / "probe_report.json", False))
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        fail(f"the probe runner needs PyTorch ({exc.name or 'torch'} is missing): pip install 'steadytrain[probe]'")
    from probes.run import run_probe

    show = sys.stderr.isatty() if progress is None else progress
    outcome = run_probe(spec, device=device, out_dir=out_dir, plan=plan_name, steps=steps, executor=executor,
                        address=address, progress=show, data=data, data_order=data_order, scale=scale)
    echo(outcome.summary)


@main.command()
@debug_option
@analysis_options(executors=False, gate=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("live.html"),
              show_default=True, help="The live HTML report, rewritten as verdicts change; the page reloads itself.")
@click.option("--no-html", is_flag=True, help="Print changes only; write no HTML report.")
@click.option("--interval", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds between polls of the logs.")
@click.option("--html-every", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Rewrite the live report at most this often (seconds) while only data changes; a new verdict "
                   "or finding rewrites it at once.")
@click.option("--once", is_flag=True, help="Poll once, print every flagged run, write the report, exit.")
@click.option("--max-polls", type=click.IntRange(min=1), help="Stop after this many polls (default: until Ctrl-C).")
def watch(request: AnalysisRequest, output: Path, no_html: bool, interval: float, html_every: float, once: bool,
          max_polls: int | None) -> None:
    """Judge runs while they train: re-read growing logs, print each change of verdict or finding.

    Each poll reads only what the logs appended (new event-file bytes, new JSONL lines) and judges
    again only the runs that changed, with the same rules as `report`; object-store paths (s3://, gs://,
    hf://) are mirrored first, fetching only what grew. One line per change: the run,
    its verdict, where (step), the evidence and the fix. The live HTML report reloads itself in the
    browser. Ctrl-C stops (exit 0); with --fail-on, the first run at or above it exits 1.
    """
    from analyzer.live.loop import watch_loop
    from analyzer.live.watch import Watcher

    html = None if no_html else output
    json_out = request.json_out
    check_outputs(request.paths, ("-o/--output", html, False), ("--json", json_out, False))  # rewritten at each change
    ignore = [p for p in (html, json_out) if p is not None]
    if html is not None:
        ignore.append(html.parent / f"{html.stem}_files")
    watcher = Watcher(list(request.paths), config=request.config(), load_options=request.load_options(progress=False),
                      ignore=ignore)
    refresh = max(2, round(interval))

    def write(report: Any) -> None:
        with context("writing the live report"):
            write_live_report(report, html, json_out, refresh)

    try:
        end = watch_loop(watcher, interval=interval, write=write if html is not None or json_out is not None else None,
                         echo=lambda line: echo(printable(line)), html_every=html_every,
                         max_polls=1 if once else max_polls, fail_on=request.fail_on,  # type: ignore[arg-type]
                         watching=", ".join(str(p) for p in request.paths),
                         report_name=str(html) if html is not None else None)
        if end.gated:
            gate(watcher.report(), request.fail_on)
        echo(end.summary)
    finally:
        watcher.close()
