"""The analyzer's one exception family, and where an unexpected error happened.

The CLI turns a `SteadytrainError` into a one-line error with exit code 2 (bad usage or input).
Anything else that escapes is an internal error (exit code 3): `context` labels it with the
file, run or step that was being handled, so the one line says where it happened.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

_WHERE = "_steadytrain_where"


class SteadytrainError(Exception):
    """Base of every error the tool raises on purpose (bad input, bad config)."""


class InputError(SteadytrainError):
    """A path that does not exist, holds no logs, or where nothing at all could be read."""


class LogFormatError(SteadytrainError):
    """A file that claims a format but cannot be decoded as it (the file is skipped, not fatal)."""


class ConfigError(SteadytrainError):
    """A threshold, role override or option with a value outside what it allows."""


@contextmanager
def context(what: str) -> Iterator[None]:
    """Label any exception raised inside with ``what`` ("run 'lr_0.1'", "writing report.html").

    The innermost label wins: it is the most precise. Our own errors pass through unlabelled.

    Examples
    --------
    >>> try:
    ...     with context("run 'a'"):
    ...         raise ValueError("boom")
    ... except ValueError as exc:
    ...     where_of(exc)
    "run 'a'"
    """
    try:
        yield
    except SteadytrainError:
        raise
    except Exception as exc:
        if not hasattr(exc, _WHERE):
            try:
                setattr(exc, _WHERE, what)
            except AttributeError:  # an exception type with __slots__: nothing to label
                pass
        raise


def where_of(exc: BaseException) -> str | None:
    """The label `context` gave ``exc``, if any."""
    value = getattr(exc, _WHERE, None)
    return value if isinstance(value, str) else None
