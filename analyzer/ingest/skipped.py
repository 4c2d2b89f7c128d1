"""Why a file was skipped, in the words the report shows: one wording for every reader and for discovery."""

from __future__ import annotations

import logging
from pathlib import Path

from analyzer.display import shown
from analyzer.errors import LogFormatError
from analyzer.types import InputFile

log = logging.getLogger(__name__)


def short(exc: BaseException, limit: int = 160) -> str:
    """An exception's text on one line, credentials redacted (a store's error may quote a URL whole)."""
    text = shown(" ".join(str(exc).split()) or type(exc).__name__)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unreadable(path: Path | str, exc: BaseException, run: str | None = None) -> InputFile:
    """The skipped entry for a file whose reading raised ``exc`` (its traceback goes to the debug log)."""
    if isinstance(exc, LogFormatError):
        reason = str(exc)
    elif isinstance(exc, OSError):
        reason = f"cannot be read: {exc.strerror or short(exc)}"
    elif isinstance(exc, RecursionError):
        reason = "could not be read: nested too deeply to parse"
    elif isinstance(exc, MemoryError):
        reason = "could not be read: out of memory while reading it"
    else:
        reason = (f"could not be read ({type(exc).__name__}: {short(exc)}); an unusual file or a bug: "
                  "--debug shows the traceback")
    log.debug("reading %s failed", path, exc_info=exc)
    return InputFile(str(path), "skipped", reason, run)
