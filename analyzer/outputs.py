"""Where reports go: every output path checked before any work, every file written atomically.

A tool that runs in CI on someone's only copy of a log must never destroy it. Before reading anything a
command checks all of its outputs together (`check_outputs`): none may be one of its inputs (the same
path, a symlink or hard link to it, or a file inside an input directory other than an earlier report of
ours), a device, FIFO or socket (replacing ``/dev/null`` with a regular file, as root, breaks the machine),
or another output of the same command (``-o x --json x``). ``-`` means stdout where stdout makes sense
(a JSON report), is refused elsewhere, and is never a file named ``-``.

Every report file is then written through `write_atomic`: the whole text is rendered first, written to a
hidden temporary file beside the target and renamed over it, so a failed render or an interrupted write
leaves the previous report intact, and a browser reloading a live report never reads half of one.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from analyzer.display import file_kind
from analyzer.errors import ConfigError

#: The path that means stdout.
STDOUT = "-"

#: What an earlier report of ours starts with (read from its first bytes): it may be overwritten even
#: inside an input directory (``steadytrain report runs/ -o runs/report.html`` twice).
_OUR_REPORT = re.compile(rb'<meta name="generator" content="steadytrain|<title>steadytrain |'
                         rb'"tool":\s*\{\s*"name":\s*"steadytrain"')


@dataclass(frozen=True)
class Output:
    """One output of a command.

    Attributes:
        option: the option that named it, for messages ("-o/--output", "--json").
        path: the path given (``-`` for stdout).
        stdout_ok: whether ``-`` (stdout) is allowed for this output.
    """

    option: str
    path: Path
    stdout_ok: bool = False


def is_stdout(path: Path | str | None) -> bool:
    """Whether ``path`` is ``-``, stdout."""
    return path is not None and str(path) == STDOUT


def _is_our_report(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return _OUR_REPORT.search(head) is not None


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_one(out: Output, real: str, inputs: Sequence[tuple[Path, str]]) -> None:
    where = f"{out.option} {out.path}"
    try:
        st = os.stat(out.path)  # follows a symlink: the target is what would be written
    except OSError:
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{where}: is a directory; name the file to write")
        kind = file_kind(st.st_mode)
        if kind is not None:
            hint = " (--json - writes the JSON to stdout)" if out.stdout_ok else ""
            raise ConfigError(f"{where}: is {kind}, not a regular file; name a file to write{hint}")
    for given, real_input in inputs:
        if real == real_input or (st is not None and _same_file(real, real_input)):
            raise ConfigError(f"{where}: is the input {given}; writing the report there would destroy it")
        if st is not None and os.path.isdir(real_input) and _inside(real, real_input) and not _is_our_report(Path(real)):
            raise ConfigError(f"{where}: would overwrite a file inside the input {given} that is not a steadytrain "
                              "report; name a file outside the logs")
    parent = Path(real).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{where}: cannot create its directory: {parent} is a file, not a directory")
    if st is None and not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: no permission to write in {parent}")


def check_outputs(outputs: Sequence[Output], inputs: Sequence[Path | str] = ()) -> None:
    """Refuse, with a one-line ConfigError, any output that would destroy an input, a device or another
    output of the same command, or that cannot be written. Remote inputs (URLs) cannot be overwritten by a
    local write and are not compared; ``file://`` inputs are local paths."""
    local: list[tuple[Path, str]] = []
    for p in inputs:
        text = str(p)
        if text.lower().startswith("file://"):
            text = text[len("file://"):]
        elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
            continue
        local.append((Path(text), os.path.realpath(text)))
    seen: list[tuple[Output, str]] = []
    for out in outputs:
        if is_stdout(out.path):
            if not out.stdout_ok:
                raise ConfigError(f"{out.option} -: this output cannot go to stdout; name a file"
                                  + (" (--json - writes the JSON report to stdout)" if out.option != "--json" else ""))
            if any(is_stdout(o.path) for o, _ in seen):
                raise ConfigError(f"{out.option} -: another output already goes to stdout")
            seen.append((out, STDOUT))
            continue
        real = os.path.realpath(out.path)
        _check_one(out, real, local)
        for other, other_real in seen:
            if other_real != STDOUT and (real == other_real or _same_file(real, other_real)):
                raise ConfigError(f"{other.option} {other.path} and {out.option} {out.path} name the same file; "
                                  "each output needs its own")
        seen.append((out, real))


def write_atomic(path: Path | str, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file in its directory and a rename.

    A symlink is written through (its target is replaced), and the file keeps the permissions of the one it
    replaces (a new one gets the umask's). On any failure the temporary file is removed and the previous
    file, if any, is left as it was. Returns ``path``.
    """
    out = Path(path)
    target = Path(os.path.realpath(out))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return out
