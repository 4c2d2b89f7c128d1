"""The `steadytrain` command: the composition root.

The only module of analyzer that may import reporters and probes, and only inside the command
functions, so that `import analyzer` never pulls in jinja2, matplotlib or torch.

Exit codes: 0 ok; 1 a --fail-on verdict was found; 2 bad usage or input (one line, no
traceback); 3 an internal error (one line naming where it happened; --debug shows the
traceback). A crash never exits 1: CI gating must be able to tell a crash from an unstable run.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Sequence

import click

from analyzer.config import AnalysisConfig
from analyzer.display import printable, shown
from analyzer.errors import ConfigError, SteadytrainError, context, where_of
from analyzer.frame import RESTART_POLICIES
from analyzer.verdicts import FAIL_ON_LEVELS, Verdict, gated

FAIL_ON: Mapping[str, tuple[Verdict, ...]] = {level: gated(level) for level in FAIL_ON_LEVELS}
EXIT_OK, EXIT_FAIL_ON, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
_PACKAGES = ("analyzer", "reporters", "probes")
_ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger(__name__)


def _printable(text: str) -> str:
    """Paths and names in messages come from untrusted input: control characters and undecodable bytes as
    escapes, URL credentials redacted (analyzer.display)."""
    return printable(text)


def _echo(text: str, *, err: bool = False) -> None:
    """Every line the commands print, through analyzer.display: a run named with byte 0xff or a URL with
    credentials in it is shown escaped or redacted, never passed on raw."""
    click.echo(printable(text, lines=True), err=err)


def _fail(message: str) -> NoReturn:
    click.echo(f"steadytrain: error: {_printable(message)}", err=True)
    sys.exit(EXIT_USAGE)


def _our_frame(exc: BaseException) -> str | None:
    """'analyzer/x.py:12' for the innermost traceback frame in our own code."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            rel = Path(frame.filename).resolve().relative_to(_ROOT)
        except ValueError:
            continue
        if rel.parts and rel.parts[0] in _PACKAGES:
            found = f"{rel.as_posix()}:{frame.lineno}"
    return found


def _internal_error(exc: Exception, debug: bool) -> NoReturn:
    if debug:
        sys.stderr.write(shown("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))))
    where = where_of(exc)
    location = f" while {where}" if where else ""
    code = _our_frame(exc)
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:199] + "…"
    click.echo(f"steadytrain: internal error{_printable(location)}: {type(exc).__name__}: {_printable(text)}"
               f"{f' (at {code})' if code else ''}"
               f"{'' if debug else '; run again with --debug for the traceback'}", err=True)
    sys.exit(EXIT_INTERNAL)


def _os_error_text(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else None
    what = exc.strerror or " ".join(str(exc).split())
    return f"{name}: {what}" if name else what


class _Steadytrain(click.Group):
    """The command group that maps every outcome to the documented exit codes."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from analyzer.ingest.registry import formats_in_words

        with formatter.section("Formats read"):  # from the registry's table: a new format is listed by itself
            formatter.write_text(formats_in_words() + "; object stores (s3://, gs://, ...) too.")
        super().format_epilog(ctx, formatter)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except click.ClickException as exc:  # usage errors: click prints them; always exit code 2
            setattr(exc, "exit_code", EXIT_USAGE)  # noqa: B010 - click 8.2+ types it as a class variable
            raise
        except SteadytrainError as exc:
            _fail(str(exc))
        except BrokenPipeError:
            # the reader went away (`steadytrain inspect runs/ | head`): nothing more to say, as other Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as exc:
            _fail(_os_error_text(exc))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - every other escape is an internal error: exit 3, one line
            _internal_error(exc, bool((ctx.obj or {}).get("debug")))


class _ShownFormatter(logging.Formatter):
    """Log lines (and the tracebacks --debug adds to them) through analyzer.display: no URL credentials."""

    def format(self, record: logging.LogRecord) -> str:
        return shown(super().format(record))


def _setup_logging(verbose: bool, debug: bool) -> None:
    """Our loggers (never the root logger) to the current stderr: -v INFO, --debug DEBUG, else WARNING."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)  # the current one: CliRunner swaps it
    handler.setFormatter(_ShownFormatter("%(levelname)s %(name)s: %(message)s"))
    handler.set_name("steadytrain-cli")
    for name in _PACKAGES:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "steadytrain-cli"]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)


def _enable_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        root = ctx.find_root()
        root.obj = {**(root.obj or {}), "debug": True}
        _setup_logging(False, True)


def _enable_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    root = ctx.find_root()
    if value and not (root.obj or {}).get("debug"):
        root.obj = {**(root.obj or {}), "verbose": True}
        _setup_logging(True, False)


def debug_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """-v and --debug after the command name too (`steadytrain inspect runs/ -v --debug`)."""
    fn = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_enable_verbose,
                      help="Log every file read or skipped, and why.")(fn)
    return click.option("--debug", is_flag=True, expose_value=False, callback=_enable_debug,
                        help="Debug logging, and the full traceback of an internal error.")(fn)


def _check_outputs(paths: Sequence[Path | str], *outputs: tuple[str, Path | None, bool]) -> None:
    """Before any work: refuse outputs that would destroy an input, a device or each other (analyzer.outputs).
    Each output is (option, path or None when not written, whether ``-`` may mean stdout)."""
    from analyzer.outputs import Output, check_outputs

    check_outputs([Output(opt, path, ok) for opt, path, ok in outputs if path is not None], paths)


def _emit_json(report: Any, json_out: Path, label: str) -> None:
    """The JSON report to ``json_out``, or to stdout for ``-`` (the human summary then goes to stderr)."""
    from analyzer.outputs import is_stdout
    from reporters.json_report import json_text, write_json

    if is_stdout(json_out):
        click.echo(json_text(report), nl=False)
    else:
        _echo(f"{label}: {_written('JSON report', json_out, lambda: write_json(report, json_out))}")


def _written(what: str, path: Path, write: Callable[[], Path]) -> Path:
    """Run ``write``; an OSError becomes a one-line error naming the file and what was being written."""
    try:
        with context(f"writing the {what} {path}"):
            return write()
    except OSError as exc:
        raise SteadytrainError(f"{path}: cannot write the {what}: {exc.strerror or exc}") from None


class _LogPath(click.ParamType):
    """A log directory or file: a local path (``file://`` URLs too), or an object store URL (s3://bucket/runs,
    any fsspec protocol)."""

    name = "path"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        from analyzer.ingest.remote import is_remote, local_path

        text = str(value)
        return text if is_remote(text) else Path(local_path(text))  # Path() would fold "s3://b" into "s3:/b"


def scale_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options of `inspect` and `report` for logs in object stores and analysis on a Ray cluster."""
    options = [
        click.option("--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
                     help="An option of the object store's fsspec filesystem for s3://, gs://, ... paths (e.g. "
                          "endpoint_url=http://localhost:9000, anon=true); credentials also come from the store's "
                          "own environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). Values are never logged. "
                          "Repeatable."),
        click.option("--executor", type=click.Choice(("local", "ray")), default="local", show_default=True,
                     help="Read and judge runs in this process (local) or as Ray tasks (ray; pip install "
                          "'steadytrain[ray]'); the report is the same."),
        click.option("--address", help="Ray cluster address for --executor ray (default: start a local instance)."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def analysis_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `inspect` and `report`, defined once."""
    options = [
        click.argument("paths", nargs=-1, required=True, type=_LogPath()),
        click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
                     help="Also write the JSON report (schema_version 1) to this file."),
        click.option("--role", "roles", multiple=True, metavar="ROLE=TAG",
                     help="Say which tag plays a role: train_loss, eval_loss, grad_norm or lr. Repeatable."),
        click.option("--restarts", type=click.Choice(RESTART_POLICIES), default="latest", show_default=True,
                     help="When a step goes back (a restart): keep the latest attempt, as TensorBoard does, or all."),
        click.option("--no-verify-crc", is_flag=True,
                     help="Skip the data CRC check of TensorBoard records (on by default: a record that fails is "
                          "dropped and counted). Faster by a few percent; a corrupted value may then be read."),
        click.option("--strict-crc", is_flag=True, hidden=True,
                     help="Deprecated: every record's CRC is checked by default now (see --no-verify-crc)."),
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


def _build(paths: tuple[Path | str, ...], roles: tuple[str, ...], restarts: str, no_verify_crc: bool,
           strict_crc: bool, settings: tuple[str, ...], config_file: Path | None, cache_dir: Path | None, no_cache: bool,
           workers: int, progress: bool | None, *, storage_options: tuple[str, ...] = (), executor: str = "local",
           address: str | None = None, figures: bool = False) -> Any:
    from analyzer.ingest.cache import default_cache_dir
    from analyzer.ingest.load import LoadOptions
    from analyzer.ingest.remote import parse_storage_options
    from analyzer.pipeline import analyze
    from analyzer.roles import parse_overrides

    if address is not None and executor != "ray":
        raise ConfigError("--address names a Ray cluster: use it with --executor ray")

    if strict_crc:
        click.echo("steadytrain: note: --strict-crc is deprecated and does nothing: every record's CRC is checked "
                   "by default now", err=True)
        if no_verify_crc:
            raise ConfigError("--strict-crc and --no-verify-crc contradict each other; --no-verify-crc alone skips "
                              "the CRC checks")
    cfg = _analysis_config(config_file, settings)
    show = sys.stderr.isatty() if progress is None else progress
    options = LoadOptions(restarts=restarts, verify_crc=not no_verify_crc,  # type: ignore[arg-type]
                          roles=parse_overrides(roles), cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
                          workers=workers, progress=show, storage_options=parse_storage_options(storage_options))
    return analyze(list(paths), config=cfg, load_options=options, progress=show,
                   executor=executor,  # type: ignore[arg-type]
                   address=address, figure_runs=_figure_runs if figures else None)


def _figure_runs(diagnoses: Any, sweeps: Any) -> set[str]:
    """The runs whose full figures the HTML report draws (reporters.html's rule): with --executor ray, only
    these come back with every point of their role series."""
    from reporters.html import ALL_PLOTS_UP_TO, MAX_FULL_PLOT_RUNS
    from reporters.terminal import severity_key

    ordered = sorted(diagnoses, key=severity_key)
    if len(ordered) <= ALL_PLOTS_UP_TO:
        return {d.run.id for d in ordered}
    flagged = [d.run.id for d in ordered if d.verdict not in ("stable", "insufficient_data")]
    return set(flagged[:MAX_FULL_PLOT_RUNS]) | {r for s in sweeps for r in s.runs}


def _analysis_config(config_file: Path | None, settings: Sequence[str]) -> AnalysisConfig:
    """The settings: defaults, then --config FILE, then each --set NAME=VALUE."""
    cfg = AnalysisConfig.from_file(config_file) if config_file is not None else AnalysisConfig()
    return cfg.with_set(settings)


def _gate(report: Any, fail_on: str | None, fail_on_unjudged: bool = False) -> None:
    failed = False
    if fail_on is not None:
        bad = [d.run.id for d in report.diagnoses if d.verdict in FAIL_ON[fail_on]]
        if bad:
            click.echo(_printable(f"--fail-on {fail_on}: {len(bad)} run(s) at or above it: {', '.join(bad[:5])}"),
                       err=True)
            failed = True
    unjudged = [d.run.id for d in report.unjudged()] if fail_on_unjudged else []
    if unjudged:
        click.echo(_printable(f"--fail-on-unjudged: {len(unjudged)} run(s) could not be judged: "
                              f"{', '.join(unjudged[:5])}"), err=True)
        failed = True
    if failed:
        sys.exit(EXIT_FAIL_ON)


def gate_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """CI gating beyond --fail-on, on the commands that judge once (inspect, report)."""
    return click.option("--fail-on-unjudged", is_flag=True,
                        help="Exit with code 1 when any run could not be judged (too few points, no loss logged, "
                             "an analysis failure); the JSON lists them under 'unjudged'.")(fn)


@click.group(cls=_Steadytrain, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="steadytrain")
@click.option("-v", "--verbose", is_flag=True, help="Log every file read or skipped, and why.")
@click.option("--debug", is_flag=True, help="Debug logging, and the full traceback of an internal error.")
@click.pass_context
def main(ctx: click.Context, verbose: bool, debug: bool) -> None:
    """Diagnose training instability from training logs.

    Point it at a directory of training logs (every format it reads is listed below). It reads every point, tells early-training instability, mid-training
    instability and divergence apart, analyses LR sweeps, and recommends warmup and clipping settings
    with the numbers behind them.

    \b
    steadytrain report runs/ -o report.html     the HTML diagnostic report (+ --json)
    steadytrain inspect runs/                   the same findings in the terminal
    steadytrain probe SPEC.yaml                 re-run a flagged config as a short probe

    \b
    Exit codes: 0 ok, 1 a --fail-on verdict was found, 2 bad usage or input,
    3 an internal error (--debug shows its traceback).
    """
    ctx.obj = {"debug": debug, "verbose": verbose}
    _setup_logging(verbose, debug)


@main.command()
@debug_option
@analysis_options
@scale_options
@gate_options
@click.option("--verbose-runs", "-a", is_flag=True, help="Show every run's findings, notes and every input file.")
def inspect(paths: tuple[Path | str, ...], json_out: Path | None, roles: tuple[str, ...], restarts: str,
            no_verify_crc: bool, strict_crc: bool, settings: tuple[str, ...], config_file: Path | None,
            fail_on: str | None, cache_dir: Path | None, no_cache: bool, workers: int, progress: bool | None,
            storage_options: tuple[str, ...], executor: str, address: str | None, fail_on_unjudged: bool,
            verbose_runs: bool) -> None:
    """Summarise runs, verdicts and findings in the terminal.

    With --json - the JSON report goes to stdout and this summary to stderr.
    """
    from analyzer.outputs import is_stdout
    from reporters.terminal import render_inspect

    _check_outputs(paths, ("--json", json_out, True))
    report = _build(paths, roles, restarts, no_verify_crc, strict_crc, settings, config_file, cache_dir, no_cache,
                    workers, progress, storage_options=storage_options, executor=executor, address=address)
    _echo(render_inspect(report, verbose=verbose_runs), err=is_stdout(json_out))
    if json_out:
        _emit_json(report, json_out, "JSON")
    _gate(report, fail_on, fail_on_unjudged)


@main.command()
@debug_option
@analysis_options
@scale_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML report to write (probe specs go to <name>_files/probes/).")
@click.option("--no-html", is_flag=True, help="Write only the JSON (--json) and the terminal summary.")
@gate_options
def report(paths: tuple[Path | str, ...], json_out: Path | None, roles: tuple[str, ...], restarts: str,
           no_verify_crc: bool, strict_crc: bool, settings: tuple[str, ...], config_file: Path | None,
           fail_on: str | None, cache_dir: Path | None, no_cache: bool, workers: int, progress: bool | None,
           storage_options: tuple[str, ...], executor: str, address: str | None, output: Path, no_html: bool,
           fail_on_unjudged: bool) -> None:
    """Write the self-contained HTML diagnostic report (and JSON with --json).

    With --json - the JSON report goes to stdout and every other line to stderr. No output may be one of
    the inputs, a device or the other output: that is refused before any work.
    """
    from analyzer.outputs import is_stdout
    from reporters.terminal import runs_table, summary

    _check_outputs(paths, ("-o/--output", None if no_html else output, False), ("--json", json_out, True))
    result = _build(paths, roles, restarts, no_verify_crc, strict_crc, settings, config_file, cache_dir, no_cache,
                    workers, progress, storage_options=storage_options, executor=executor, address=address,
                    figures=not no_html)
    human = is_stdout(json_out)  # the JSON owns stdout: every other line goes to stderr
    if json_out:
        _emit_json(result, json_out, "JSON report")
    if not no_html:
        from reporters.html import write_html

        show = sys.stderr.isatty() if progress is None else progress
        spec_dir = output.parent / f"{output.stem}_files" / "probes"
        specs = _write_specs(result, spec_dir)
        sources = _spec_sources(specs)
        path = _written("HTML report", output, lambda: write_html(result, output, probe_specs=specs, progress=show,
                                                                  probe_sources=sources))
        _echo(f"HTML report: {path} ({_size_mb(path)})", err=human)
        if specs:
            _echo(f"Probe specs: {len(specs)} in {spec_dir}", err=human)
    _echo(runs_table(result, limit=10), err=human)
    _echo(summary(result), err=human)
    _gate(result, fail_on, fail_on_unjudged)


def _write_specs(result: Any, spec_dir: Path) -> dict[str, str]:
    from probes.from_report import write_probe_specs

    try:
        with context(f"writing the probe specs in {spec_dir}"):
            return write_probe_specs(result, spec_dir)
    except OSError as exc:
        raise SteadytrainError(f"{spec_dir}: cannot write the probe specs: {exc.strerror or exc}") from None


def _spec_sources(specs: dict[str, str]) -> dict[str, str]:
    from probes.from_report import spec_sources

    return spec_sources(specs)


def _size_mb(path: Path) -> str:
    try:
        return f"{path.stat().st_size / 1e6:.1f} MB"
    except OSError:
        return "size unknown"


def _setting_text(value: Any) -> str:
    """A setting's value as --set accepts it back (lists comma-separated, no brackets or spaces)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


@main.command()
@debug_option
def settings() -> None:
    """List every analysis threshold as NAME=VALUE (what --set accepts), with what it means."""
    cfg = AnalysisConfig()
    values = cfg.as_dict()
    for name, doc in AnalysisConfig.docs().items():
        _echo(f"{name}={_setting_text(values[name])}\n    {doc}")


def _parse_scale(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, float] | None:
    if value is None:
        return None
    out: dict[str, float] = {}
    for part in value.split(","):
        key, sep, number = part.partition("=")
        try:
            factor = float(number)
        except ValueError:
            factor = math.nan
        if not sep or key.strip() not in ("depth", "width") or not 0 < factor <= 1:
            raise click.BadParameter(f"{part!r}: expected depth=F and/or width=F with 0 < F <= 1, e.g. "
                                     "depth=0.25,width=0.5")
        out[key.strip()] = factor
    return out


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
@click.option("--scale", callback=_parse_scale, help="Shrink the run's architecture to fit this device, e.g. "
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
    from probes.run import probe_out_dir
    from probes.spec import load_spec

    loaded = load_spec(spec)  # a bad spec is reported as such, with or without torch
    if not loaded.workload.startswith("builtin:"):
        _echo(f"steadytrain: note: {spec} names the workload {loaded.workload}: running it imports and calls that "
              "code", err=True)
    out = probe_out_dir(spec, out_dir)
    _check_outputs([spec], ("--out", out / "probe_report.html", False), ("--out", out / "probe_report.json", False))
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        _fail(f"the probe runner needs PyTorch ({exc.name or 'torch'} is missing): pip install 'steadytrain[probe]'")
    from probes.run import run_probe

    show = sys.stderr.isatty() if progress is None else progress
    outcome = run_probe(spec, device=device, out_dir=out_dir, plan=plan_name, steps=steps, executor=executor,
                        address=address, progress=show, data=data, data_order=data_order, scale=scale)
    _echo(outcome.summary)


# -- watch: judging runs while they train (analyzer.live) -------------------------------------------------------

def _write_live_report(report: Any, output: Path | None, json_out: Path | None, refresh_s: int) -> None:
    from analyzer.outputs import write_atomic

    if output is not None:
        from reporters.html import render_html

        specs = _write_specs(report, output.parent / f"{output.stem}_files" / "probes")
        html = render_html(report, probe_specs=specs, report_dir=output.parent, probe_sources=_spec_sources(specs))
        # The page reloads itself: a <meta refresh> as the first thing in <head> (CSP does not govern it).
        html = html.replace("<head>", f'<head>\n<meta http-equiv="refresh" content="{refresh_s}">', 1)
        _written("live HTML report", output, lambda: write_atomic(output, html))  # a reload never reads half of it
    if json_out is not None:
        from reporters.json_report import write_json

        _written("live JSON report", json_out, lambda: write_json(report, json_out))


def _watch_setup(roles: tuple[str, ...], restarts: str, no_verify_crc: bool, settings: tuple[str, ...],
                 config_file: Path | None, cache_dir: Path | None, no_cache: bool, workers: int,
                 storage_options: tuple[str, ...] = ()) -> tuple[Any, Any]:
    from analyzer.ingest.cache import default_cache_dir
    from analyzer.ingest.load import LoadOptions
    from analyzer.ingest.remote import parse_storage_options
    from analyzer.roles import parse_overrides

    cfg = _analysis_config(config_file, settings)
    options = LoadOptions(restarts=restarts, verify_crc=not no_verify_crc,  # type: ignore[arg-type]
                          roles=parse_overrides(roles), workers=workers,
                          cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
                          storage_options=parse_storage_options(storage_options))
    return cfg, options


@main.command()
@debug_option
@analysis_options
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
@click.option("--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
              help="An option of the object store's fsspec filesystem for s3://, gs://, ... paths, as for `report`. "
                   "Repeatable.")
def watch(paths: tuple[Path, ...], json_out: Path | None, roles: tuple[str, ...], restarts: str,
          no_verify_crc: bool, strict_crc: bool, settings: tuple[str, ...], config_file: Path | None,
          fail_on: str | None, cache_dir: Path | None, no_cache: bool, workers: int, progress: bool | None,
          output: Path, no_html: bool, interval: float, html_every: float, once: bool, max_polls: int | None,
          storage_options: tuple[str, ...]) -> None:
    """Judge runs while they train: re-read growing logs, print each change of verdict or finding.

    Each poll reads only what the logs appended (new event-file bytes, new JSONL lines) and judges
    again only the runs that changed, with the same rules as `report`; object-store paths (s3://, gs://,
    hf://) are mirrored first, fetching only what grew. One line per change: the run,
    its verdict, where (step), the evidence and the fix. The live HTML report reloads itself in the
    browser. Ctrl-C stops (exit 0); with --fail-on, the first run at or above it exits 1.
    """
    from analyzer.live.loop import watch_loop
    from analyzer.live.watch import Watcher

    if strict_crc:
        click.echo("steadytrain: note: --strict-crc is deprecated and does nothing", err=True)
    html = None if no_html else output
    _check_outputs(paths, ("-o/--output", html, False), ("--json", json_out, False))  # both rewritten at every change
    cfg, options = _watch_setup(roles, restarts, no_verify_crc, settings, config_file, cache_dir, no_cache, workers,
                                storage_options)
    ignore = [p for p in (html, json_out) if p is not None]
    if html is not None:
        ignore.append(html.parent / f"{html.stem}_files")
    watcher = Watcher(list(paths), config=cfg, load_options=options, ignore=ignore)
    refresh = max(2, round(interval))

    def write(report: Any) -> None:
        with context("writing the live report"):
            _write_live_report(report, html, json_out, refresh)

    try:
        end = watch_loop(watcher, interval=interval, write=write if html is not None or json_out is not None else None,
                         echo=lambda line: _echo(_printable(line)), html_every=html_every,
                         max_polls=1 if once else max_polls, fail_on=fail_on,  # type: ignore[arg-type]
                         watching=", ".join(str(p) for p in paths), report_name=str(html) if html is not None else None)
        if end.gated:
            _gate(watcher.report(), fail_on)
        _echo(end.summary)
    finally:
        watcher.close()


if __name__ == "__main__":  # pragma: no cover
    main()
