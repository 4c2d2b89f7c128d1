"""Reading a small YAML/JSON file a user wrote (a --config file of settings, a probe spec): one set of one-line
errors for a missing, unreadable, binary, non-UTF-8 or malformed file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analyzer.errors import ConfigError


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed content of ``path``; ConfigError naming the file and ``what`` it should be
    (e.g. "a YAML/JSON file of settings") for anything but a readable YAML document."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    if b"\x00" in raw[:8192]:
        raise ConfigError(f"{path}: binary content, not {what}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); expected {what}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{'/JSON' if 'JSON' in what else ''}{at}") from None
