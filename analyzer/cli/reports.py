"""What the commands write and print of a report: the files (refused before any work when they would destroy
something, written atomically), the probe specs beside the HTML report, and the --fail-on gates."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from analyzer.cli.failures import EXIT_FAIL_ON, echo
from analyzer.cli.options import FAIL_ON
from analyzer.display import printable
from analyzer.errors import SteadytrainError, context


def check_outputs(paths: Sequence[Path | str], *outputs: tuple[str, Path | None, bool]) -> None:
    """Before any work: refuse outputs that would destroy an input, a device or each other (analyzer.outputs).
    Each output is (option, path or None when not written, whether ``-`` may mean stdout)."""
    from analyzer.outputs import Output, check_outputs as check

    check([Output(opt, path, ok) for opt, path, ok in outputs if path is not None], paths)


def written(what: str, path: Path, write: Callable[[], Path]) -> Path:
    """Run ``write``; an OSError becomes a one-line error naming the file and what was being written."""
    try:
        with context(f"writing the {what} {path}"):
            return write()
    except OSError as exc:
        raise SteadytrainError(f"{path}: cannot write the {what}: {exc.strerror or exc}") from None


def emit_json(report: Any, json_out: Path, label: str) -> None:
    """The JSON report to ``json_out``, or to stdout for ``-`` (the human summary then goes to stderr)."""
    from analyzer.outputs import is_stdout
    from reporters.json_report import json_text, write_json

    if is_stdout(json_out):
        click.echo(json_text(report), nl=False)
    else:
        echo(f"{label}: {written('JSON report', json_out, lambda: write_json(report, json_out))}")


def write_specs(result: Any, spec_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The probe spec of every flagged run in ``spec_dir`` (run id -> path), and what each re-runs, in words."""
    from probes.from_report import spec_sources, write_probe_specs

    try:
        with context(f"writing the probe specs in {spec_dir}"):
            specs = write_probe_specs(result, spec_dir)
    except OSError as exc:
        raise SteadytrainError(f"{spec_dir}: cannot write the probe specs: {exc.strerror or exc}") from None
    return specs, spec_sources(specs)


def write_html_report(result: Any, output: Path, *, progress: bool) -> tuple[Path, dict[str, str]]:
    """The HTML report with the probe specs beside it (``<name>_files/probes/``)."""
    from reporters.html import write_html

    specs, sources = write_specs(result, output.parent / f"{output.stem}_files" / "probes")
    path = written("HTML report", output, lambda: write_html(result, output, probe_specs=specs, progress=progress,
                                                             probe_sources=sources))
    return path, specs


def write_live_report(report: Any, output: Path | None, json_out: Path | None, refresh_s: int) -> None:
    """`watch`'s live HTML (reloading itself every ``refresh_s``) and JSON, each written atomically."""
    from analyzer.outputs import write_atomic

    if output is not None:
        from reporters.html import render_html

        specs, sources = write_specs(report, output.parent / f"{output.stem}_files" / "probes")
        html = render_html(report, probe_specs=specs, report_dir=output.parent, probe_sources=sources)
        # The page reloads itself: a <meta refresh> as the first thing in <head> (CSP does not govern it).
        html = html.replace("<head>", f'<head>\n<meta http-equiv="refresh" content="{refresh_s}">', 1)
        written("live HTML report", output, lambda: write_atomic(output, html))  # a reload never reads half of it
    if json_out is not None:
        from reporters.json_report import write_json

        written("live JSON report", json_out, lambda: write_json(report, json_out))


def size_mb(path: Path) -> str:
    try:
        return f"{path.stat().st_size / 1e6:.1f} MB"
    except OSError:
        return "size unknown"


def gate(report: Any, fail_on: str | None, fail_on_unjudged: bool = False) -> None:
    """Exit 1 when a run reaches the --fail-on level, or (--fail-on-unjudged) could not be judged."""
    failed = False
    if fail_on is not None:
        bad = [d.run.id for d in report.diagnoses if d.verdict in FAIL_ON[fail_on]]
        if bad:
            click.echo(printable(f"--fail-on {fail_on}: {len(bad)} run(s) at or above it: {', '.join(bad[:5])}"),
                       err=True)
            failed = True
    unjudged = [d.run.id for d in report.unjudged()] if fail_on_unjudged else []
    if unjudged:
        click.echo(printable(f"--fail-on-unjudged: {len(unjudged)} run(s) could not be judged: "
                             f"{', '.join(unjudged[:5])}"), err=True)
        failed = True
    if failed:
        sys.exit(EXIT_FAIL_ON)
