"""The report's figures: pure functions from numbers to an inline SVG string.

matplotlib's object API only (no pyplot state), every figure closed by construction, the SVG
deterministic (fixed hashsalt, no date) so two reports of the same logs are byte-identical.
Sparklines are hand-written SVG polylines: a thousand of them must cost milliseconds.
"""

from __future__ import annotations

import functools
import io
import math
from typing import Any, Callable, Iterable, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from reporters.decimate import minmax_decimate

#: Our look, applied only while our figures are made and rendered (never to the user's global rcParams).
_STYLE = {
    "svg.hashsalt": "steadytrain", "svg.fonttype": "none", "font.size": 8.5, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25, "axes.titlesize": 9.5,
    "axes.titleweight": "bold", "axes.titlelocation": "left",
}


def _styled(fn: Callable[..., str]) -> Callable[..., str]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        with matplotlib.rc_context(_STYLE):  # type: ignore[arg-type]  # stubs list every key as a Literal
            return fn(*args, **kwargs)
    return wrapper

INK, BLUE, ORANGE, RED, GREEN, GREY, PURPLE = "#1f2933", "#2563eb", "#ea7317", "#dc2626", "#16a34a", "#9aa5b1", "#7c3aed"
_W, _H = 6.4, 2.5
#: Points per drawn line: more than a 640-px-wide figure can show; min/max buckets keep every spike.
_LINE_POINTS = 1000


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(w: float = _W, h: float = _H) -> Figure:
    # Fixed margins: constrained layout costs more than everything else in a figure this simple.
    fig = Figure(figsize=(w, h))
    fig.subplots_adjust(left=0.6 / w, right=1 - 0.15 / w, bottom=0.5 / h, top=1 - 0.3 / h)
    return fig


def _nonfinite_ranges(steps: np.ndarray, all_steps_gap: float) -> list[tuple[float, float]]:
    """Contiguous stretches of non-finite points, as (first, last) steps."""
    if steps.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(steps) > all_steps_gap) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks - 1, [steps.size - 1]])
    return [(float(steps[a]), float(steps[b])) for a, b in zip(starts, ends)]


def _mark_nonfinite(ax: Any, steps: np.ndarray, label: str, typical_gap: float = 1.0) -> None:
    """NaN/inf drawn distinctly: one marker per contiguous stretch, the stretch shaded (never 10k markers)."""
    ranges = _nonfinite_ranges(np.sort(steps), 1.5 * typical_gap)
    if not ranges:
        return
    y = ax.get_ylim()[1]
    firsts = [a for a, _ in ranges[:200]]
    ax.plot(firsts, np.full(len(firsts), y), linestyle="none", marker="x", color=RED, markersize=6,
            label=f"{label}: NaN/inf ({steps.size})", clip_on=False)
    for a, b in ranges[:50]:
        if b > a:
            ax.axvspan(a, b, color=RED, alpha=0.12)


#: Values are drawn within +-this (and, on a log axis, no closer to 0 than its inverse): matplotlib's
#: autoscaling and tick locators overflow near float's limits (+-1e308 raised LinAlgError/ValueError).
DISPLAY_LIMIT = 1e30


def _display(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Finite values clipped to what a figure can draw, and how many were clipped (said in the legend)."""
    v = np.asarray(values, dtype=np.float64)
    out = np.clip(v, -DISPLAY_LIMIT, DISPLAY_LIMIT)
    tiny = (out != 0) & (np.abs(out) < 1 / DISPLAY_LIMIT)
    out = np.where(tiny, np.sign(out) / DISPLAY_LIMIT, out)
    return out, int(np.count_nonzero((np.abs(v) > DISPLAY_LIMIT) | tiny))


def _display_one(x: float) -> float:
    return float(_display(np.array([x]))[0][0])


def _say_clipped(ax: Any, count: int) -> None:
    if count:
        ax.plot([], [], " ", label=f"{count} point(s) beyond ±{DISPLAY_LIMIT:.0e} (or nearer 0 than "
                f"{1 / DISPLAY_LIMIT:.0e}) drawn at that edge")


def _typical_gap(steps: np.ndarray) -> float:
    return float(np.median(np.diff(steps))) if len(steps) > 1 else 1.0


def _wants_log(values: np.ndarray) -> bool:
    v = values[np.isfinite(values)]
    return bool(v.size and v.min() > 0 and v.max() / v.min() >= 30)


@_styled
def loss_plot(steps: np.ndarray, values: np.ndarray, *, title: str, eval_steps: np.ndarray | None = None,
              eval_values: np.ndarray | None = None, spans: Sequence[tuple[int, int | None, str, str]] = (),
              marks: Sequence[tuple[int, str]] = ()) -> str:
    """Train loss vs step (log scale when it spans decades), eval loss, findings shaded."""
    fig = _figure()
    ax = fig.add_subplot()
    d = minmax_decimate(steps, values, _LINE_POINTS)
    shown, clipped = _display(d.values)
    ax.plot(d.steps, shown, color=BLUE, lw=0.9, label="train loss")
    all_vals = shown
    if eval_steps is not None and eval_values is not None and len(eval_steps):
        e = minmax_decimate(eval_steps, eval_values, _LINE_POINTS)
        eval_shown, eval_clipped = _display(e.values)
        clipped += eval_clipped
        ax.plot(e.steps, eval_shown, color=ORANGE, lw=1.3, marker="o" if e.steps.size < 60 else None, ms=3,
                label="eval loss")
        all_vals = np.concatenate([all_vals, eval_shown])
    if _wants_log(all_vals):
        ax.set_yscale("log")
    _say_clipped(ax, clipped)
    for lo, hi, color, label in spans:
        ax.axvspan(lo, hi if hi is not None else (d.steps[-1] if d.steps.size else lo), color=color, alpha=0.15,
                   label=label)
    for step, label in marks:
        ax.axvline(step, color=RED, lw=0.8, ls="--")
        ax.annotate(label, (step, 1), xycoords=("data", "axes fraction"), fontsize=7, color=RED, ha="left",
                    va="top", rotation=90)
    _mark_nonfinite(ax, d.nonfinite_steps, "train loss", _typical_gap(steps))
    ax.set_xlabel("step")
    ax.set_title(title)
    _legend(ax)
    return _svg(fig)


def _legend(ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    seen: dict[str, object] = {}
    for handle, label in zip(handles, labels):
        seen.setdefault(label, handle)
    if seen:
        ax.legend(list(seen.values()), list(seen), fontsize=7, frameon=False, loc="best")


@_styled
def grad_norm_plot(steps: np.ndarray, values: np.ndarray, *, threshold: float | None, title: str) -> str:
    """Unclipped grad norm vs step with the proposed clip threshold and the fraction above it."""
    fig = _figure()
    ax = fig.add_subplot()
    d = minmax_decimate(steps, values, _LINE_POINTS)
    shown, clipped = _display(d.values)
    ax.plot(d.steps, shown, color=PURPLE, lw=0.8, label="grad norm (unclipped)")
    if _wants_log(shown):
        ax.set_yscale("log")
    if threshold is not None and math.isfinite(threshold):
        fin = values[np.isfinite(values)]
        frac = float(np.mean(fin > threshold)) if fin.size else 0.0
        ax.axhline(_display_one(threshold), color=RED, lw=1.1, ls="--",
                   label=f"proposed clip {threshold:.3g} ({frac:.0%} above)")
    _say_clipped(ax, clipped)
    _mark_nonfinite(ax, d.nonfinite_steps, "grad norm", _typical_gap(steps))
    ax.set_xlabel("step")
    ax.set_title(title)
    _legend(ax)
    return _svg(fig)


@_styled
def grad_histogram(values: np.ndarray, *, title: str) -> str:
    """Histogram of every finite grad norm with p50 / p90 / p99 marked."""
    fin, clipped = _display(values[np.isfinite(values)])
    fig = _figure(_W / 1.6, _H)
    ax = fig.add_subplot()
    use_log = bool(fin.size and fin.min() > 0 and fin.max() / fin.min() > 30)
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
    if use_log:
        edges = np.geomspace(lo, hi, 61)
    else:
        pad = max(abs(hi - lo) * 1e-9, abs(hi) * 1e-9, 1e-12)  # a constant series still gets a bin of width > 0
        edges = np.linspace(lo - pad, hi + pad, 61)
    counts, edges = np.histogram(fin, bins=edges)
    ax.stairs(counts, edges, fill=True, color=PURPLE, alpha=0.7)  # one path, not 60 bar patches
    if use_log:
        ax.set_xscale("log")
    raw = values[np.isfinite(values)]
    for q, color in ((50, GREY), (90, RED), (99, INK)) if raw.size else ():
        v = float(np.percentile(raw, q))
        ax.axvline(_display_one(v), color=color, lw=1.1, ls="--", label=f"p{q} = {v:.3g}")
    _say_clipped(ax, clipped)
    ax.set_xlabel("grad norm")
    ax.set_ylabel("steps", labelpad=1)
    ax.set_title(title)
    _legend(ax)
    return _svg(fig)


@_styled
def lr_plot(steps: np.ndarray | None, values: np.ndarray | None, *, proposed: tuple[int, int, float] | None,
            title: str) -> str:
    """LR as logged, and the proposed warmup (0 -> base LR over warmup_steps, then constant)."""
    fig = _figure(_W / 1.6, _H)
    ax = fig.add_subplot()
    clipped = 0
    if steps is not None and values is not None and len(steps):
        d = minmax_decimate(steps, values, _LINE_POINTS)
        shown, clipped = _display(d.values)
        ax.plot(d.steps, shown, color=GREEN, lw=1.1, label="LR as logged")
    if proposed is not None:
        warm, post, base = proposed
        ax.plot([0, warm, warm + post], [0, _display_one(base), _display_one(base)], color=RED, lw=1.2, ls="--",
                label=f"proposed: warmup {warm:,} steps to {base:.3g}")
    _say_clipped(ax, clipped)
    ax.set_xlabel("step")
    ax.set_title(title)
    _legend(ax)
    return _svg(fig)


@_styled
def sweep_axis_plot(lrs: Sequence[float], scores: Sequence[float | None], *, infeasible: Iterable[int],
                    best: int | None, edge: bool, metric: str) -> str:
    """Playbook Figure 7a: loss vs base LR on a log axis, infeasible trials marked, lr* and the edge shown."""
    fig = _figure(_W / 1.4, _H * 1.1)
    ax = fig.add_subplot()
    bad = set(infeasible)
    shown = [None if s is None or not math.isfinite(s) else _display_one(s) for s in scores]
    ok = [i for i in range(len(lrs)) if i not in bad and shown[i] is not None]
    ys = [float(shown[i]) for i in ok]  # type: ignore[arg-type]
    ax.plot([lrs[i] for i in ok], ys, color=BLUE, marker="o", lw=1, label="feasible")
    if ys:
        top = max(ys)
        bad_y = top * 1.15 if top > 0 else top + 1
    else:
        bad_y = 1.0
    if bad:
        ax.plot([lrs[i] for i in sorted(bad)], [bad_y] * len(bad), linestyle="none", marker="X", color=RED, ms=8,
                label="infeasible (NaN / never trained)")
    best_y = shown[best] if best is not None else None
    if best is not None and best_y is not None:
        ax.plot([lrs[best]], [best_y], marker="*", color=GREEN, ms=14, linestyle="none",
                label=f"lr* = {lrs[best]:.3g}")
        if edge:
            nxt = min((lr for lr in lrs if lr > lrs[best]), default=None)
            if nxt is not None:
                ax.axvspan(math.sqrt(lrs[best] * nxt), max(lrs) * 1.5, color=RED, alpha=0.08,
                           label="unstable region")
    ax.set_xscale("log")
    ax.set_xlabel("base learning rate")
    ax.set_ylabel(metric)
    ax.set_title("LR sweep: " + ("lr* at the edge of instability" if edge else "loss vs learning rate"))
    _legend(ax)
    return _svg(fig)


@_styled
def sweep_curves_plot(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], *, title: str) -> str:
    """Overlaid training-loss curves of the LRs around lr*."""
    fig = _figure()
    ax = fig.add_subplot()
    colors = matplotlib.colormaps["viridis"](np.linspace(0.05, 0.9, max(len(curves), 1)))
    all_vals = []
    clipped = 0
    for (label, steps, values), color in zip(curves, colors):
        d = minmax_decimate(steps, values, _LINE_POINTS)
        shown, n = _display(d.values)
        clipped += n
        ax.plot(d.steps, shown, color=color, lw=1, label=label)
        all_vals.append(shown)
    if all_vals and _wants_log(np.concatenate(all_vals)):
        ax.set_yscale("log")
    _say_clipped(ax, clipped)
    ax.set_xlabel("step")
    ax.set_title(title)
    _legend(ax)
    return _svg(fig)


def sparkline(values: np.ndarray, *, width: int = 120, height: int = 24, color: str = BLUE) -> str:
    """A tiny inline SVG of a curve (min/max decimated), NaN/inf as red ticks."""
    d = minmax_decimate(np.arange(len(values)), values, 120)
    if d.values.size < 2:
        return f'<svg class="spark" width="{width}" height="{height}" role="img" aria-label="no data"></svg>'
    v, _ = _display(d.values)
    if v.min() > 0 and v.max() / v.min() > 30:
        v = np.log(v)
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo or 1.0
    n = max(len(values) - 1, 1)
    xs = d.steps / n * (width - 2) + 1
    ys = height - 2 - (v - lo) / span * (height - 4)
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
    ticks = "".join(f'<line x1="{s / n * (width - 2) + 1:.1f}" y1="0" x2="{s / n * (width - 2) + 1:.1f}" '
                    f'y2="{height}" stroke="{RED}" stroke-width="1"/>' for s in d.nonfinite_steps[:20])
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="loss sparkline"><polyline fill="none" stroke="{color}" stroke-width="1.2" '
            f'points="{pts}"/>{ticks}</svg>')
