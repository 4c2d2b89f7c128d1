"""The numbers of one printed line: found, told apart from the digits that are no value, and given their units.

What a number is (a metric, a counter) is `text_layout`'s question; this module only says where each
number is, whether it is part of a name (``bf16``, ``Acc@1``), of a date, clock or version (``2024-05-01``,
``12:00:01``, ``1.2.3``) or the total of a fraction (``/20000``), and which unit or multiplier it carries;
and, for lines that differ only in their digits, how each number is rebuilt from the line's digit runs
(`recipes`, `runs_expression`: one expression reads every such line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A number as the template marks it: it starts a word (not the 16 of ``bf16``), and the letters glued
#: to it (its unit, or a word: ``12ms``, ``43.2it/s``) are kept beside it. NaN and infinity as printed
#: by C, Python and numpy (``nan``, ``-inf``, ``NaN``, ``nanms``). Rust ``regex`` (polars) and Python
#: ``re`` read it the same way.
TOKEN = (r"(?:[-+]?\b(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?P<ua>[A-Za-z%]*)"
         r"|[-+]?\b(?i:nan|inf(?:inity)?)(?P<ub>ms|s|%)?\b)")
_TOKEN = re.compile(TOKEN)
_DIGIT_RUN = re.compile("[0-9]+")

#: Units glued to a number or printed after it: tag suffix (or None: a multiplier) and scale.
_UNITS: dict[str, tuple[str | None, float]] = {
    "ms": ("ms", 1.0), "s": ("s", 1.0), "sec": ("s", 1.0), "secs": ("s", 1.0), "us": ("us", 1.0),
    "min": ("min", 1.0), "h": ("h", 1.0), "%": ("percent", 1.0), "x": ("x", 1.0),
    "k": (None, 1e3), "K": (None, 1e3), "M": (None, 1e6), "B": (None, 1e9), "G": (None, 1e9), "T": (None, 1e12),
    "KB": ("KB", 1.0), "MB": ("MB", 1.0), "GB": ("GB", 1.0), "TB": ("TB", 1.0),
    "KiB": ("KiB", 1.0), "MiB": ("MiB", 1.0), "GiB": ("GiB", 1.0),
}
#: Units printed after a space (``3.21 BPC``, ``120.00 ms``).
_SPACED_UNIT = re.compile(r"^ (ms|s|sec|%|BPC|bpc|bpb|bits|GB|MB|GiB|MiB)(?![\w/])")
#: How tokens are joined into one value that is not a metric: a date (``2024-05-01``: the sign of the
#: next token is its joint), a clock (``12:00:01``), a version (``1.2.3``), an ETA (``00:10<00:12``).
_GROUP_JOINTS = frozenset({"", ":", ".", "<", ","})
#: What a logger prints before a source line number: ``train.py:`` (Python logging's %(filename)s, absl, glog,
#: a warning's path), or ``module:function:`` then `` - `` after it (loguru's ``{name}:{function}:{line} - ``; a
#: namespaced counter, ``distill:step:1/50``, is none).
_SOURCE_FILE = re.compile(r"\w\.(?:py|pyx|c|cc|cpp|cxx|cu|h|hpp|rs|go|java|jl|js|ts|lua|scala|sh):$")
_MODULE_FUNCTION = re.compile(r"(?:^|[\s|])[A-Za-z_][\w.]*:(?P<function>[A-Za-z_<][\w.<>]*):$")
_LEVEL_FIELD = re.compile(r"\|\s*(?:TRACE|DEBUG|INFO|SUCCESS|WARNING|ERROR|CRITICAL)\s*\|\s?$")
#: A namespaced counter (``train:step:10``, ``Epoch:1:Step:10``) is not loguru's ``module:function:line``.
_COUNTER_WORDS = frozenset({"step", "steps", "iter", "iteration", "it", "epoch", "batch", "update", "global_step"})
_FRACTION = re.compile(r"^\s*/\s*$|^\s+(?:out of|of)\s+$")  # ``120/20000``, ``Step 120 out of 20000``


@dataclass
class Token:
    """One number of a line and what it was found to be."""

    start: int  # where it starts (its sign included)
    end: int  # where its number ends
    stop: int  # where its glued suffix ends
    text: str
    suffix: str
    role: str = "value"  # value | total | group | name | location (a logger's source line: its prefix ends there)
    key: str | None = None
    unit: tuple[str | None, float] | None = None


def is_integer(text: str) -> bool:
    return re.fullmatch(r"[-+]?\d+", text) is not None


def tokens_of(line: str) -> list[Token]:
    """The numbers of a line, each with the letters glued to it."""
    out = []
    for m in _TOKEN.finditer(line):
        suffix = m.group("ua") or m.group("ub") or ""
        end = m.end() - len(suffix)
        out.append(Token(m.start(), end, m.end(), line[m.start():end], suffix))
    return out


def _logger_line(line: str, t: Token) -> bool:
    """Whether ``t`` is the line number of loguru's ``module:function:line - `` (a function that is no counter)."""
    if not line.startswith(" - ", t.end):
        return False
    found = _MODULE_FUNCTION.search(line, 0, t.start)
    if found is None:
        return False
    # after loguru's level field (``| INFO     | ppo.agent:update:212 -``) it is the source line whatever the function
    return bool(_LEVEL_FIELD.search(line, 0, found.start() + 1)) or found.group("function").lower() not in _COUNTER_WORDS


def mark_roles(line: str, tokens: list[Token]) -> None:
    """Which numbers are no value: digits inside a name, the parts of a date, clock or version, a fraction's total, a
    logger's source line."""
    for j, t in enumerate(tokens):
        before = line[t.start - 1] if t.start else ""
        previous = tokens[j - 1] if j else None
        glued_to_previous = previous is not None and previous.stop == t.start - 1
        # ``2024-05-01``: the sign of ``-05`` joins it to the number before it (a date), not to a name.
        signed_join = (previous is not None and previous.stop == t.start and t.text[:1] in "+-"
                       and previous.role != "name" and is_integer(previous.text) and is_integer(t.text))
        if before and (before.isalnum() or before in "_@#") and not signed_join:
            t.role = "name"  # top-1, Acc@1, #3
        elif before == ":" and is_integer(t.text) and (_SOURCE_FILE.search(line, 0, t.start) or _logger_line(line, t)):
            t.role = "location"  # a logger's source line: ``train.py:45]``, loguru's ``__main__:train:45 -``
        elif before == "." and t.start >= 2 and line[t.start - 2].isalnum() and not glued_to_previous:
            t.role = "name"  # layers.0
        if previous is None or t.role in ("name", "location") or previous.role in ("name", "location"):
            continue
        joint = line[previous.stop:t.start]
        if _FRACTION.match(joint) and is_integer(t.text) and not previous.suffix:
            if previous.role == "total":  # 24/29/50, 2023/01/01: not a counter
                tokens[j - 2].role = previous.role = t.role = "group"
            elif previous.role == "value":
                t.role = "total"
        elif joint in _GROUP_JOINTS and not previous.suffix and previous.role in ("value", "group"):
            if joint == "." and not is_integer(previous.text):
                continue
            previous.role = t.role = "group"
    for j, t in enumerate(tokens):  # the numerator of a fraction whose chain became a group
        if t.role == "total" and tokens[j - 1].role == "group":
            t.role = "group"


def read_units(line: str, tokens: list[Token]) -> None:
    """Each value's unit or multiplier, glued to it or printed after a space."""
    for t in tokens:
        if t.suffix:
            t.unit = _UNITS.get(t.suffix)
        elif t.role == "value":
            m = _SPACED_UNIT.match(line[t.stop:])
            if m is not None:
                name = {"sec": "s", "%": "percent"}.get(m.group(1), m.group(1))
                t.unit = (name, 1.0)
                t.stop += m.end()


#: A number's text rebuilt from a shape's digit runs: literals (str) and run indices (int); or a constant
#: (a NaN or infinity printed as a word).
Recipe = tuple[tuple[str | int, ...], float | None]


def recipes(example: str) -> list[Recipe]:
    """How each number of ``example`` (in TOKEN order) is made of the line's digit runs."""
    runs = [(m.start(), m.end()) for m in _DIGIT_RUN.finditer(example)]
    out: list[Recipe] = []
    k = 0
    for m in _TOKEN.finditer(example):
        end = m.end() - len(m.group("ua") or m.group("ub") or "")
        while k < len(runs) and runs[k][1] <= m.start():
            k += 1
        parts: list[str | int] = []
        at = m.start()
        while k < len(runs) and runs[k][0] < end:
            if runs[k][0] > at:
                parts.append(example[at:runs[k][0]])
            parts.append(k)
            at = runs[k][1]
            k += 1
        if not any(isinstance(p, int) for p in parts):
            out.append(((), float(example[m.start():end])))
        else:
            if end > at:
                parts.append(example[at:end])
            out.append((tuple(parts), None))
    return out


def runs_expression(example: str) -> str:
    """An anchored expression with one group per digit run of ``example``; it matches every line of its shape."""
    out = []
    at = 0
    for k, m in enumerate(_DIGIT_RUN.finditer(example)):
        out.append(re.escape(example[at:m.start()]))
        out.append(f"(?P<r{k}>[0-9]+)")
        at = m.end()
    out.append(re.escape(example[at:]))
    return "^" + "".join(out) + "$"
