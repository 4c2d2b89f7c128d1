"""Every jinja filter of the report, registered in one place."""

from __future__ import annotations

import math
from typing import Any

from jinja2 import Environment
from markupsafe import Markup


def fmt_num(x: Any) -> str:
    """Numbers as a person reads them: 3 significant digits, thousands separators for counts."""
    if isinstance(x, bool) or x is None:
        return "–" if x is None else str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.3g}"
        return f"{x:.4g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(fmt_num(v) for v in x)
    return str(x)


def fmt_pct(x: Any) -> str:
    return f"{x:.0%}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"


def svg(markup: str) -> Markup:
    """Mark an SVG produced by reporters.plots as safe. Plots escape their own text (matplotlib)."""
    return Markup(markup)


def register(env: Environment) -> None:
    env.filters.update({"num": fmt_num, "pct": fmt_pct, "svg": svg})
