"""How each probe-spec field's YAML value is checked and converted (probes.spec's table uses these).

Every parser raises `Invalid` with what the field allows; `spec_from_mapping` adds the field's name
and the value it got, so a bad spec is one line naming all three.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping

class Invalid(Exception):
    """A field value outside what the field allows (the message says what it allows)."""


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(low: float, *, strict: bool = False, high: float | None = None) -> Callable[[Any], float]:
    bound = f"> {low:g}" if strict else f">= {low:g}"
    allowed = f"a number {bound}" + (f" and < {high:g}" if high is not None else "")

    def parse(value: Any) -> float:
        if not is_number(value) or (value <= low if strict else value < low) or (high is not None and value >= high):
            raise Invalid(allowed)
        return float(value)
    return parse


def integer(low: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise Invalid(f"an integer >= {low}")
        return value
    return parse


def optional(parse: Callable[[Any], Any], what: str) -> Callable[[Any], Any]:
    def wrapped(value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except Invalid:
            raise Invalid(f"{what} or null") from None
    return wrapped


def choice(options: tuple[str, ...], *, fold: bool = False) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = value.lower() if fold and isinstance(value, str) else value
        if not isinstance(text, str) or text not in options:
            raise Invalid(f"one of {', '.join(options)}")
        return text
    return parse


def list_of(item: Callable[[Any], Any], what: str, *, single: bool = False, nonempty: bool = False
             ) -> Callable[[Any], tuple[Any, ...]]:
    def parse(value: Any) -> tuple[Any, ...]:
        items = [value] if single and not isinstance(value, (list, tuple)) else value
        try:
            if not isinstance(items, (list, tuple)) or (nonempty and not items):
                raise Invalid("")
            return tuple(item(v) for v in items)
        except Invalid:
            raise Invalid(what) from None
    return parse


def betas(value: Any) -> tuple[float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(is_number(b) and 0 <= b < 1 for b in value)):
        raise Invalid("two numbers in [0, 1), e.g. [0.9, 0.999]")
    return float(value[0]), float(value[1])


def workload(value: Any) -> str:
    if not (isinstance(value, str) and re.fullmatch(r"run|builtin:[a-z0-9_]+|[A-Za-z_][\w.]*:[A-Za-z_]\w*", value)):
        raise Invalid("run (the run's own model, from `source`), builtin:NAME or package.module:function")
    return value


def kwargs(value: Any) -> dict[str, Any]:
    if not (isinstance(value, Mapping) and all(isinstance(k, str) and k.isidentifier() for k in value)):
        raise Invalid("a mapping of keyword-argument names to values")
    return dict(value)


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("text")
    return value


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("a string")
    return value




def mapping(parsers: Mapping[str, Callable[[Any], Any]], *, required: tuple[str, ...] = (),
            defaults: Mapping[str, Any] | None = None) -> Callable[[Any], dict[str, Any]]:
    """A nested mapping whose keys are checked like top-level fields (unknown keys refused); keys it does not
    give take ``defaults``."""
    allowed = ", ".join(parsers)

    def parse(value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise Invalid(f"a mapping with keys {allowed}")
        missing = [k for k in required if k not in value]
        unknown = [str(k) for k in value if k not in parsers]
        if missing or unknown:
            raise Invalid(f"a mapping with keys {allowed}" + (f" (missing {', '.join(missing)})" if missing else "")
                          + (f" (unknown {', '.join(unknown)})" if unknown else ""))
        out = dict(defaults or {})
        for key, item in value.items():
            try:
                out[key] = parsers[key](item)
            except Invalid as exc:
                raise Invalid(f"{key}: {exc}") from None
        return out
    return parse


def anything(value: Any) -> Any:
    return value


def lr_points(value: Any) -> tuple[tuple[int, float], ...]:
    """[[step, lr], ...] with increasing steps and finite LRs >= 0."""
    what = "a list of [step, lr] pairs with increasing integer steps and finite LRs >= 0"
    if not isinstance(value, (list, tuple)):
        raise Invalid(what)
    out: list[tuple[int, float]] = []
    for pair in value:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], int)
                and not isinstance(pair[0], bool) and is_number(pair[1]) and pair[1] >= 0
                and (not out or pair[0] > out[-1][0])):
            raise Invalid(what)
        out.append((int(pair[0]), float(pair[1])))
    return tuple(out)


def data_source(value: Any) -> str:
    """A path (token .bin, datasets folder, .txt/.jsonl) or package.module:function."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid("a path to a token .bin, a datasets folder or a .txt/.jsonl file, or package.module:function")
    return value


def nullable(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """null, or what ``parse`` accepts (its own message, which says what, on a bad value)."""
    def wrapped(value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except Invalid as exc:
            raise Invalid(f"{exc} (or null)") from None
    return wrapped
