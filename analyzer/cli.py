"""The `steadytrain` command: the composition root.

The only module of analyzer that may import reporters and probes, and only inside the command
functions, so that `import analyzer` never pulls in jinja2, matplotlib or torch.
Exit codes: 0 ok, 1 a --fail-on verdict was found, 2 bad usage or input (one line, no traceback).
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import click

from analyzer.config import AnalysisConfig
from analyzer.errors import SteadytrainError
from analyzer.frame import RESTART_POLICIES

FAIL_ON = {"early": ("early_instability", "mid_instability", "divergence"),
           "mid": ("mid_instability", "divergence"), "divergence": ("divergence",)}


def _fail(message: str) -> None:
    click.echo(f"steadytrain: error: {message}", err=True)
    sys.exit(2)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Our own errors and I/O errors become one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SteadytrainError as exc:
            _fail(str(exc))
        except (OSError, UnicodeError) as exc:
            _fail(f"{getattr(exc, 'filename', '') or ''} {exc.strerror if isinstance(exc, OSError) else exc}".strip())
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def analysis_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `inspect` and `report`, defined once."""
    options = [
        click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path)),
        click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
                     help="Also write the JSON report (schema_version 1) to this file."),
        click.option("--role", "roles", multiple=True, metavar="ROLE=TAG",
                     help="Say which tag plays a role: train_loss, eval_loss, grad_norm or lr. Repeatable."),
        click.option("--restarts", type=click.Choice(RESTART_POLICIES), default="latest", show_default=True,
                     help="When a step goes back (a restart): keep the latest attempt, as TensorBoard does, or all."),
        click.option("--strict-crc", is_flag=True,
                     help="Check the CRC of every event record, not only of records that decode oddly."),
        click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
                     help="Override an analysis threshold (see `steadytrain settings`). Repeatable."),
        click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="YAML/JSON file of threshold settings; --set wins over it."),
        click.option("--fail-on", type=click.Choice(tuple(FAIL_ON)),
                     help="Exit with code 1 when any run has this verdict or a worse one (CI gating)."),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Where decoded event files are cached (default: ~/.cache/steadytrain)."),
        click.option("--no-cache", is_flag=True, help="Decode every file afresh; write no cache."),
        click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Processes for reading large log directories (0 = one per core when worth it)."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bars on stderr (default: when stderr is a terminal)."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _build(paths: tuple[Path, ...], roles: tuple[str, ...], restarts: str, strict_crc: bool,
           settings: tuple[str, ...], config_file: Path | None, cache_dir: Path | None, no_cache: bool,
           workers: int, progress: bool | None) -> Any:
    from analyzer.ingest.cache import default_cache_dir
    from analyzer.ingest.load import LoadOptions
    from analyzer.pipeline import analyze
    from analyzer.roles import parse_overrides

    cfg = AnalysisConfig()
    if config_file is not None:
        cfg = cfg.with_overrides(_read_settings_file(config_file))
    pairs = {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--set")
        pairs[name] = value
    cfg = cfg.with_overrides(pairs)
    show = sys.stderr.isatty() if progress is None else progress
    options = LoadOptions(restarts=restarts, verify_all_crcs=strict_crc,  # type: ignore[arg-type]
                          roles=parse_overrides(roles), cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
                          workers=workers, progress=show)
    return analyze(list(paths), config=cfg, load_options=options, progress=show)


def _read_settings_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{path}: not valid YAML/JSON ({exc.__class__.__name__})",
                                 param_hint="--config") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a mapping of setting names to values", param_hint="--config")
    return data.get("steadytrain", data)


def _gate(report: Any, fail_on: str | None) -> None:
    if fail_on is None:
        return
    bad = [d.run.id for d in report.diagnoses if d.verdict in FAIL_ON[fail_on]]
    if bad:
        click.echo(f"--fail-on {fail_on}: {len(bad)} run(s) at or above it: {', '.join(bad[:5])}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="steadytrain")
@click.option("-v", "--verbose", is_flag=True, help="Log what is read and skipped.")
def main(verbose: bool) -> None:
    """Diagnose training instability from training logs.

    Point it at a directory of TensorBoard event files, Lightning metrics.csv, HF trainer_state.json,
    JSONL or an MLflow store. It reads every point, tells early-training instability, mid-training
    instability and divergence apart, analyses LR sweeps, and recommends warmup and clipping settings
    with the numbers behind them.

    \b
    steadytrain report runs/ -o report.html     the HTML diagnostic report (+ --json)
    steadytrain inspect runs/                   the same findings in the terminal
    steadytrain probe SPEC.yaml                 re-run a flagged config as a short probe
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@main.command()
@analysis_options
@click.option("--verbose-runs", "-a", is_flag=True, help="Show every run's findings, notes and every input file.")
@handle_errors
def inspect(paths: tuple[Path, ...], json_out: Path | None, roles: tuple[str, ...], restarts: str, strict_crc: bool,
            settings: tuple[str, ...], config_file: Path | None, fail_on: str | None, cache_dir: Path | None,
            no_cache: bool, workers: int, progress: bool | None, verbose_runs: bool) -> None:
    """Summarise runs, verdicts and findings in the terminal."""
    from reporters.terminal import render_inspect

    report = _build(paths, roles, restarts, strict_crc, settings, config_file, cache_dir, no_cache, workers, progress)
    click.echo(render_inspect(report, verbose=verbose_runs))
    if json_out:
        from reporters.json_report import write_json

        click.echo(f"JSON: {write_json(report, json_out)}")
    _gate(report, fail_on)


@main.command()
@analysis_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML report to write (probe specs go to <name>_files/probes/).")
@click.option("--no-html", is_flag=True, help="Write only the JSON (--json) and the terminal summary.")
@handle_errors
def report(paths: tuple[Path, ...], json_out: Path | None, roles: tuple[str, ...], restarts: str, strict_crc: bool,
           settings: tuple[str, ...], config_file: Path | None, fail_on: str | None, cache_dir: Path | None,
           no_cache: bool, workers: int, progress: bool | None, output: Path, no_html: bool) -> None:
    """Write the self-contained HTML diagnostic report (and JSON with --json)."""
    from reporters.terminal import runs_table, summary

    result = _build(paths, roles, restarts, strict_crc, settings, config_file, cache_dir, no_cache, workers, progress)
    if json_out:
        from reporters.json_report import write_json

        click.echo(f"JSON report: {write_json(result, json_out)}")
    if not no_html:
        from probes.spec import write_probe_specs
        from reporters.html import write_html

        show = sys.stderr.isatty() if progress is None else progress
        specs = write_probe_specs(result, output.parent / f"{output.stem}_files" / "probes")
        path = write_html(result, output, probe_specs=specs, progress=show)
        click.echo(f"HTML report: {path} ({path.stat().st_size / 1e6:.1f} MB)")
        if specs:
            click.echo(f"Probe specs: {len(specs)} in {output.parent / (output.stem + '_files') / 'probes'}")
    click.echo(runs_table(result, limit=10))
    click.echo(summary(result))
    _gate(result, fail_on)


@main.command()
def settings() -> None:
    """List every analysis threshold with its default and what it means."""
    cfg = AnalysisConfig()
    for name, doc in AnalysisConfig.docs().items():
        click.echo(f"{name} = {cfg.as_dict()[name]}\n    {doc}")


@main.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto", show_default=True,
              help="Where trials run; auto = CUDA when present.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where trial logs and the probe report go (default: next to the spec, <spec>_probe/).")
@click.option("--plan", "plan_name", help="Run only this plan of the spec (lr2x, warmup_sweep, clip_sweep, ...).")
@click.option("--steps", type=click.IntRange(min=1), help="Override the number of steps of every trial.")
@click.option("--executor", type=click.Choice(("sequential", "gpus", "ray")), default="sequential",
              show_default=True, help="Run trials one by one, one process per local GPU, or as Ray tasks.")
@click.option("--address", help="Ray cluster address (with --executor ray).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
@handle_errors
def probe(spec: Path, device: str, out_dir: Path | None, plan_name: str | None, steps: int | None, executor: str,
          address: str | None, progress: bool | None) -> None:
    """Re-run a flagged config as short PyTorch probes to confirm the diagnosis and find the smallest fix."""
    try:
        from probes.run import run_probe
    except ImportError as exc:
        _fail(f"the probe runner needs PyTorch ({exc.name} is missing): pip install 'steadytrain[probe]'")
        return
    show = sys.stderr.isatty() if progress is None else progress
    outcome = run_probe(spec, device=device, out_dir=out_dir, plan=plan_name, steps=steps, executor=executor,
                        address=address, progress=show)
    click.echo(outcome.summary)


if __name__ == "__main__":  # pragma: no cover
    main()
