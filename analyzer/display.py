"""How paths, names and messages become text a person or a file may see: the one place that decides it.

Everything steadytrain prints, logs or writes into a report passes through `shown` (the CLI's messages
and output, the log formatter, the JSON serializer, the rendered HTML page, exception texts built from
URLs), so two rules hold everywhere:

- **credentials in a URL never appear**: ``s3://KEY:SECRET@bucket/x`` and ``https://user:pass@host/x``
  are shown as ``s3://***@bucket/x`` (the user part too: it is often an access key id);
- **names that are not UTF-8** (a folder named with byte 0xff, which Python holds as the lone surrogate
  U+DCFF) are shown with escapes (``\\xff``), never passed on to crash an encoder.

`printable` also escapes control characters, for one-line terminal messages (a name holding an ANSI
escape must not rewrite the user's terminal).
"""

from __future__ import annotations

import re
import stat

#: ``scheme://userinfo@``: the userinfo of a URL. A user part without ':' must hold no '/' (else the '@'
#: belongs to a path: ``s3://bucket/dir@v2/x``); with a ':' (a password) it may, as AWS secrets often do, and
#: it may hold an '@' that another '@' follows before any '/' (``user:p@ss@host``).
#: (It starts with the literal "://" so that the regex engine jumps from one to the next: a 20 MB page in ~0.3 s.)
_USERINFO = re.compile(r"(?<=[A-Za-z0-9+.-])://(?:[^\s/@:]*:(?:[^\s@]|@(?=[^\s/]*@))*|[^\s/@:]+)@")
_SURROGATE = re.compile("[\udc80-\udcff]")
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_CONTROLS_BUT_LINES = {c: v for c, v in _CONTROLS.items() if c not in (0x0A, 0x09)}


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    Examples
    --------
    >>> redact("s3://AKIA:se/cr+et@bucket/runs and https://u:p@host/x")
    's3://***@bucket/runs and https://***@host/x'
    >>> redact("s3://bucket/dir@v2/x")
    's3://bucket/dir@v2/x'
    """
    if "@" not in text:
        return text
    return _USERINFO.sub("://***@", text)


def _escape_surrogate(m: re.Match[str]) -> str:
    return f"\\x{ord(m.group()) - 0xDC00:02x}"


def shown(text: object) -> str:
    """``text`` as it may be shown or written: URL credentials redacted, undecodable bytes as escapes.

    Examples
    --------
    >>> shown("runs/caf\\udcff/events")
    'runs/caf\\\\xff/events'
    """
    out = redact(str(text))
    return _SURROGATE.sub(_escape_surrogate, out) if _SURROGATE.search(out) else out


def printable(text: object, *, lines: bool = False) -> str:
    """`shown`, with control characters as escapes too (``lines=True`` keeps newlines and tabs)."""
    return shown(text).translate(_CONTROLS_BUT_LINES if lines else _CONTROLS)


def strip_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it removed (``s3://bucket/x``): for names that must stay
    the same whatever the credentials, such as where an object store is mirrored on disk."""
    return _USERINFO.sub("://", text) if "@" in text else text


_KIND_OF_MODE = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                 (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str | None:
    """A special file's kind in words ("a character device"), from its ``st_mode``; None for a regular file,
    a directory or a symlink."""
    return next((name for test, name in _KIND_OF_MODE if test(mode)), None)
