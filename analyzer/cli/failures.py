"""How the `steadytrain` command ends: the documented exit codes, the one-line errors, logging to stderr.

Exit codes: 0 ok; 1 a --fail-on verdict was found; 2 bad usage or input (one line, no traceback); 3 an
internal error (one line naming where it happened; --debug shows the traceback). A crash never exits 1: CI
gating must be able to tell a crash from an unstable run.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, NoReturn

import click

from analyzer.display import printable, shown
from analyzer.errors import SteadytrainError, where_of

EXIT_OK, EXIT_FAIL_ON, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
_PACKAGES = ("analyzer", "reporters", "probes")
_ROOT = Path(__file__).resolve().parents[2]


def echo(text: str, *, err: bool = False) -> None:
    """Every line the commands print, through analyzer.display: a run named with byte 0xff or a URL with
    credentials in it is shown escaped or redacted, never passed on raw."""
    click.echo(printable(text, lines=True), err=err)


def fail(message: str) -> NoReturn:
    click.echo(f"steadytrain: error: {printable(message)}", err=True)
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


def internal_error(exc: Exception, debug: bool) -> NoReturn:
    if debug:
        sys.stderr.write(shown("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))))
    where = where_of(exc)
    location = f" while {where}" if where else ""
    code = _our_frame(exc)
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:199] + "…"
    click.echo(f"steadytrain: internal error{printable(location)}: {type(exc).__name__}: {printable(text)}"
               f"{f' (at {code})' if code else ''}"
               f"{'' if debug else '; run again with --debug for the traceback'}", err=True)
    sys.exit(EXIT_INTERNAL)


def _os_error_text(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else None
    what = exc.strerror or " ".join(str(exc).split())
    return f"{name}: {what}" if name else what


class SteadytrainGroup(click.Group):
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
            fail(str(exc))
        except BrokenPipeError:
            # the reader went away (`steadytrain inspect runs/ | head`): nothing more to say, as other Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as exc:
            fail(_os_error_text(exc))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - every other escape is an internal error: exit 3, one line
            internal_error(exc, bool((ctx.obj or {}).get("debug")))


class _ShownFormatter(logging.Formatter):
    """Log lines (and the tracebacks --debug adds to them) through analyzer.display: no URL credentials."""

    def format(self, record: logging.LogRecord) -> str:
        return shown(super().format(record))


def setup_logging(verbose: bool, debug: bool) -> None:
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
        setup_logging(False, True)


def _enable_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    root = ctx.find_root()
    if value and not (root.obj or {}).get("debug"):
        root.obj = {**(root.obj or {}), "verbose": True}
        setup_logging(True, False)


def debug_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """-v and --debug after the command name too (`steadytrain inspect runs/ -v --debug`)."""
    fn = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_enable_verbose,
                      help="Log every file read or skipped, and why.")(fn)
    return click.option("--debug", is_flag=True, expose_value=False, callback=_enable_debug,
                        help="Debug logging, and the full traceback of an internal error.")(fn)
