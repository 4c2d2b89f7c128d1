"""The options the commands share, defined once, and what they ask for as one request object.

`analysis_options` adds the options that say what to read and how to judge it, and hands the command an
`AnalysisRequest` instead of a dozen parameters; each command keeps only the options of its own.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import click

from analyzer.config import AnalysisConfig
from analyzer.errors import ConfigError
from analyzer.frame import RESTART_POLICIES
from analyzer.verdicts import FAIL_ON_LEVELS, Verdict, gated

if TYPE_CHECKING:
    from analyzer.ingest.load import LoadOptions

FAIL_ON: Mapping[str, tuple[Verdict, ...]] = {level: gated(level) for level in FAIL_ON_LEVELS}


@dataclass(frozen=True)
class AnalysisRequest:
    """What a command was asked to read and how to judge it (the shared options, parsed).

    Attributes:
        paths: log directories or files, local paths or object-store URLs.
        json_out: the JSON report's path (``-``: stdout), or None.
        roles: ``ROLE=TAG`` overrides. restarts: the restart policy. no_verify_crc / strict_crc: CRC checks.
        settings: ``NAME=VALUE`` threshold overrides. config_file: a settings file.
        fail_on: the --fail-on level, or None. fail_on_unjudged: also fail on runs that could not be judged.
        cache_dir / no_cache: the decode cache. workers: reading processes. progress: bars (None: when a terminal).
        storage_options: fsspec options for object stores. executor / address: local or a Ray cluster.
    """

    paths: tuple[Path | str, ...]
    json_out: Path | None
    roles: tuple[str, ...]
    restarts: str
    no_verify_crc: bool
    strict_crc: bool
    settings: tuple[str, ...]
    config_file: Path | None
    fail_on: str | None
    cache_dir: Path | None
    no_cache: bool
    workers: int
    progress: bool | None
    storage_options: tuple[str, ...] = ()
    executor: str = "local"
    address: str | None = None
    fail_on_unjudged: bool = False

    @property
    def show_progress(self) -> bool:
        return sys.stderr.isatty() if self.progress is None else self.progress

    def config(self) -> AnalysisConfig:
        """The settings: defaults, then --config FILE, then each --set NAME=VALUE."""
        cfg = AnalysisConfig.from_file(self.config_file) if self.config_file is not None else AnalysisConfig()
        return cfg.with_set(self.settings)

    def load_options(self, *, progress: bool | None = None) -> LoadOptions:
        """How to read the logs (``progress`` overrides the request's); one-line errors for options that
        contradict each other."""
        from analyzer.ingest.cache import default_cache_dir
        from analyzer.ingest.load import LoadOptions
        from analyzer.ingest.remote import parse_storage_options
        from analyzer.roles import parse_overrides

        if self.address is not None and self.executor != "ray":
            raise ConfigError("--address names a Ray cluster: use it with --executor ray")
        if self.strict_crc:
            click.echo("steadytrain: note: --strict-crc is deprecated and does nothing: every record's CRC is "
                       "checked by default now", err=True)
            if self.no_verify_crc:
                raise ConfigError("--strict-crc and --no-verify-crc contradict each other; --no-verify-crc alone "
                                  "skips the CRC checks")
        return LoadOptions(restarts=self.restarts, verify_crc=not self.no_verify_crc,  # type: ignore[arg-type]
                           roles=parse_overrides(self.roles), workers=self.workers,
                           progress=self.show_progress if progress is None else progress,
                           cache_dir=None if self.no_cache else (self.cache_dir or default_cache_dir()),
                           storage_options=parse_storage_options(self.storage_options))


_REQUEST_FIELDS = frozenset(f.name for f in fields(AnalysisRequest))


class LogPath(click.ParamType):
    """A log directory or file: a local path (``file://`` URLs too), or an object store URL (s3://bucket/runs,
    any fsspec protocol)."""

    name = "path"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        from analyzer.ingest.remote import is_remote, local_path

        text = str(value)
        return text if is_remote(text) else Path(local_path(text))  # Path() would fold "s3://b" into "s3:/b"


_STORAGE_OPTION = click.option(
    "--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
    help="An option of the object store's fsspec filesystem for s3://, gs://, ... paths (e.g. "
         "endpoint_url=http://localhost:9000, anon=true); credentials also come from the store's own environment "
         "(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). Values are never logged. Repeatable.")


def _shared_options(*, executors: bool, gate: bool) -> list[Callable[..., Any]]:
    options = [
        click.argument("paths", nargs=-1, required=True, type=LogPath()),
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
        _STORAGE_OPTION,
    ]
    if executors:
        options += [
            click.option("--executor", type=click.Choice(("local", "ray")), default="local", show_default=True,
                         help="Read and judge runs in this process (local) or as Ray tasks (ray; pip install "
                              "'steadytrain[ray]'); the report is the same."),
            click.option("--address", help="Ray cluster address for --executor ray (default: start a local "
                                           "instance)."),
        ]
    if gate:
        options.append(click.option(
            "--fail-on-unjudged", is_flag=True,
            help="Exit with code 1 when any run could not be judged (too few points, no loss logged, an analysis "
                 "failure); the JSON lists them under 'unjudged'."))
    return options


def analysis_options(*, executors: bool = True, gate: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The shared options, handed to the command as its first argument, an `AnalysisRequest`. ``executors``:
    also --executor/--address (reading and judging on a Ray cluster); ``gate``: also --fail-on-unjudged."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            request = AnalysisRequest(**{k: kwargs.pop(k) for k in list(kwargs) if k in _REQUEST_FIELDS})
            return fn(request, **kwargs)

        for option in reversed(_shared_options(executors=executors, gate=gate)):
            command = option(command)
        return command
    return decorate


def parse_scale(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, float] | None:
    """``--scale depth=0.25,width=0.5``: how much to shrink the run's architecture."""
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
