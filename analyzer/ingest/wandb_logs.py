"""Weights & Biases chart panel exports: the CSV a chart's menu writes ("Export" -> CSV).

The file holds one column for the chart's x axis ("Step" unless the axis was changed), then for
every run three columns: ``<run> - <metric>``, ``<run> - <metric>__MIN`` and
``<run> - <metric>__MAX``. The first is the chart's line; the other two are the envelope of each
point's bucket when the chart bucketed many logged points into one (they equal the line when it
did not). One file holds every run of the chart; a run shorter than the others has empty cells,
which are not points.

W&B offline run folders are read by `analyzer.ingest.wandb_run` (re-exported here).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest import csv_logs
from analyzer.ingest.tabular import STEP_MAX, STEP_MIN, non_numeric_notes
from analyzer.ingest.wandb_run import MISSING_EXTRA, is_wandb_run_dir, read_wandb_run
from analyzer.types import Note

__all__ = ["MISSING_EXTRA", "PanelCsv", "PanelSeries", "is_wandb_run_dir", "read_panel_csv", "read_wandb_run",
           "sniff_panel_csv"]

#: The separator W&B puts between a run's name and a metric in a panel export's header.
RUN_METRIC_SEP = " - "
ENVELOPE_SUFFIXES = ("__MIN", "__MAX")
#: A header longer than this is not a panel export's (a chart with hundreds of runs is ~100 KB).
_MAX_HEADER_BYTES = 4 << 20


@dataclass(frozen=True)
class PanelSeries:
    """One run's metric in a panel export, by column position (names may repeat: two runs can share one).

    Attributes:
        run: the run's name as the export spells it; "<name> (2)", "(3)" ... for later runs that
            share a name with an earlier one.
        metric: the metric's key (e.g. "train/loss"), the tag its points get.
        value: column of the chart's line, None when the export lacks it.
        low: column of the bucket minimum (``__MIN``), if present.
        high: column of the bucket maximum (``__MAX``), if present.
    """

    run: str
    metric: str
    value: int | None
    low: int | None
    high: int | None


@dataclass(frozen=True)
class PanelCsv:
    """What the header of a W&B panel export says.

    Attributes:
        x_axis: the first column's name: "Step", or the metric the chart's x axis was set to.
        columns: the header as read.
        runs: the run names, in column order.
        metrics: ``metrics[i]`` are the metrics ``runs[i]`` has in this file.
        series: every (run, metric) with its columns; a run's "_step" series, written when the x
            axis is not Step, gives that run's steps and is not a metric.
        ignored: columns with an empty name (nothing says what they hold).
    """

    x_axis: str
    columns: tuple[str, ...]
    runs: tuple[str, ...]
    metrics: tuple[tuple[str, ...], ...]
    series: tuple[PanelSeries, ...]
    ignored: tuple[int, ...] = ()

    def metrics_of(self, run: str) -> tuple[str, ...]:
        return self.metrics[self.runs.index(run)]


def _read_header_row(path: Path) -> list[str]:
    text, whole = csv_logs.first_line(path, _MAX_HEADER_BYTES)
    if not whole:
        raise LogFormatError("its first line is longer than 4 MiB: not a W&B panel export")
    try:
        return next(csv.reader([text.rstrip("\r\n")]), [])
    except csv.Error as exc:
        raise LogFormatError(f"its header is not a CSV row ({exc})") from None


def _split_bases(bases: list[str]) -> dict[str, tuple[str, str]]:
    """(run, metric) of each "<run> - <metric>" header.

    Run names and metric keys may both contain " - ". The split whose metric the most columns
    share wins (a panel shows one or a few metrics over many runs); ties go to the last " - ",
    as a run's name is the likelier of the two to hold one.
    """
    candidates: dict[str, list[tuple[str, str]]] = {}
    for base in dict.fromkeys(bases):
        cands, at = [], base.find(RUN_METRIC_SEP)
        while at != -1:
            run, metric = base[:at], base[at + len(RUN_METRIC_SEP):]
            if run and metric:
                cands.append((run, metric))
            at = base.find(RUN_METRIC_SEP, at + 1)
        candidates[base] = cands
    shared = Counter(metric for cands in candidates.values() for metric in {m for _, m in cands})
    return {base: max(cands, key=lambda rm: (shared[rm[1]], -len(rm[1])))
            for base, cands in candidates.items() if cands}


def sniff_panel_csv(path: Path) -> PanelCsv:
    """The layout of a W&B panel export, from its header alone; LogFormatError when it is not one.

    Recognised by: a first column naming the x axis, every other named column spelled
    ``<run> - <metric>`` with or without a ``__MIN``/``__MAX`` suffix, and at least one such
    envelope column (W&B writes them for every run of a line chart; no other tool does).
    """
    cols = _read_header_row(path)
    if len(cols) < 2:
        raise LogFormatError("fewer than two columns: not a W&B panel export")
    x_axis = cols[0].strip()
    if not x_axis or RUN_METRIC_SEP in x_axis:
        raise LogFormatError("its first column does not name an x axis: not a W&B panel export")
    ignored: list[int] = []
    parsed: list[tuple[int, str, str]] = []  # (column, base, "" | "__MIN" | "__MAX")
    for i, name in enumerate(cols[1:], start=1):
        if not name.strip():
            ignored.append(i)
            continue
        suffix = next((s for s in ENVELOPE_SUFFIXES if name.endswith(s)), "")
        base = name[: len(name) - len(suffix)]
        if RUN_METRIC_SEP not in base:
            raise LogFormatError(f"column {name!r} is not '<run> - <metric>': not a W&B panel export")
        parsed.append((i, base, suffix))
    if not any(suffix for _, _, suffix in parsed):
        raise LogFormatError("no '<run> - <metric>__MIN'/'__MAX' columns: not a W&B panel export")
    split = _split_bases([base for _, base, _ in parsed])
    if len(split) < len({base for _, base, _ in parsed}):
        bad = next(base for _, base, _ in parsed if base not in split)
        raise LogFormatError(f"column {bad!r} names no run or no metric: not a W&B panel export")

    # The k-th column of a given name and kind belongs to the k-th run of that name: W&B allows
    # several runs to share a name, and then repeats the whole header triple.
    seen: Counter[tuple[str, str]] = Counter()
    slots: dict[tuple[str, int], dict[str, int]] = {}
    for i, base, suffix in parsed:
        seen[(base, suffix)] += 1
        slots.setdefault((base, seen[(base, suffix)]), {})[suffix] = i
    runs: dict[str, list[str]] = {}
    series: list[PanelSeries] = []
    for (base, k), where in sorted(slots.items(), key=lambda kv: min(kv[1].values())):
        run, metric = split[base]
        name = run if k == 1 else f"{run} ({k})"
        metrics = runs.setdefault(name, [])
        if metric not in metrics:
            metrics.append(metric)
        series.append(PanelSeries(name, metric, where.get(""), where.get("__MIN"), where.get("__MAX")))
    if _is_time_axis(x_axis) and not any(s.metric == "_step" for s in series):
        raise LogFormatError(f"its x axis is {x_axis!r}, not a step: "
                             "export the chart with Step as its x axis")
    return PanelCsv(x_axis, tuple(cols), tuple(runs), tuple(tuple(m) for m in runs.values()), tuple(series),
                    tuple(ignored))


def _is_time_axis(name: str) -> bool:
    """A chart plotted against time ("Wall Time", "Relative Time (Process)"), where no column is a step."""
    lowered = name.lower()
    return "time" in lowered.split() or lowered.startswith("time")


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equality in which NaN equals NaN (a logged NaN is its own bucket's min and max)."""
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _as_float(df: pl.DataFrame, col: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(values, present mask, non-numeric non-empty cells) of column ``col`` (all absent for None)."""
    if col is None or col >= df.width:
        return np.full(df.height, np.nan), np.zeros(df.height, bool), 0
    text = df.to_series(col)
    number = text.cast(pl.Float64, strict=False)
    written = (text.is_not_null() & (text.str.strip_chars() != "")).to_numpy()
    present = number.is_not_null().to_numpy()
    return number.fill_null(np.nan).to_numpy(), present, int((written & ~present).sum())


def read_panel_csv(path: Path, panel: PanelCsv, run_name: str) -> tuple[RawPoints, list[Note]]:
    """One run's points from a W&B panel export: tag = metric, step = the x axis (or the run's _step).

    A bucketed export (a bucket's min differs from its max somewhere) keeps each bucket's
    envelope as two more tags, ``<metric>__MIN`` and ``<metric>__MAX``: the line has one value per
    bucket, and a spike inside a bucket shows only in its max. LogFormatError when the run has no
    numeric value, or when its steps are not whole numbers (an x axis such as epoch 0.25).
    """
    if run_name not in panel.runs:
        allowed = ", ".join(map(repr, panel.runs))
        raise ValueError(f"run {run_name!r} is not in {path.name}; expected one of {allowed}")
    df, notes = csv_logs.read_text_frame(path)  # every cell as text, by position
    if df.width != len(panel.columns):
        raise LogFormatError(f"its header has {df.width} columns, not the {len(panel.columns)} "
                             "it had when sniffed")
    if df.height == 0:
        raise LogFormatError("has a header but no rows")
    mine = [s for s in panel.series if s.run == run_name]
    step_series = next((s for s in mine if s.metric == "_step"), None)
    step_name = f"'{run_name} - _step'" if step_series else f"'{panel.x_axis}'"
    steps, finite_x = _panel_steps(df, step_series, step_name)
    read = _read_series(df, [s for s in mine if s is not step_series], steps, finite_x)
    points = RawPoints.from_columns(read.columns)
    if len(points) == 0:
        raise LogFormatError(f"run {run_name!r} has no numeric value in this export")
    where = f"{path.name} (run '{run_name}')"
    notes += _panel_notes(where, read, step_name, axis_is_step=step_series is not None or panel.x_axis == "Step",
                          points=len(points))
    return points, notes


def _panel_steps(df: pl.DataFrame, step_series: PanelSeries | None, step_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, which rows have one) from the run's _step column or the chart's x axis; LogFormatError when a
    step is out of int64 range or not a whole number."""
    x, has_x, _ = _as_float(df, step_series.value if step_series else 0)
    finite_x = has_x & np.isfinite(x)
    if bool((finite_x & ((x < STEP_MIN) | (x >= STEP_MAX))).any()):
        raise LogFormatError(f"a step in {step_name} is outside the range of a 64-bit step counter; "
                             "the file was not read")
    if bool((finite_x & (x != np.floor(np.where(finite_x, x, 0)))).any()):
        raise LogFormatError(f"the steps in {step_name} are not whole numbers (the chart's x axis is not "
                             "a step counter): export the chart with Step as its x axis")
    return np.where(finite_x, x, 0).astype(np.int64), finite_x


@dataclass
class _PanelRead:
    """One run's series of a panel export, read, with what was dropped and which lines are bucketed."""

    columns: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    no_step: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    sampled: list[tuple[str, int, int]] = field(default_factory=list)  # (metric, buckets, buckets wider than one)


def _read_series(df: pl.DataFrame, series: list[PanelSeries], steps: np.ndarray, finite_x: np.ndarray) -> _PanelRead:
    out = _PanelRead()
    walls = np.full(df.height, np.nan)
    for s in series:
        value, has_value, bad = _as_float(df, s.value)
        low, has_low, bad_low = _as_float(df, s.low)
        high, has_high, bad_high = _as_float(df, s.high)
        if bad + bad_low + bad_high:
            out.dropped[s.metric] = bad + bad_low + bad_high
        row = has_value | has_low | has_high
        out.no_step += int((row & ~finite_x).sum())
        wide = has_low & has_high & finite_x & ~(_same(low, high) & (~has_value | _same(value, low)))
        tags = [(s.metric, value, has_value)]
        if bool(wide.any()) or s.value is None:  # a bucketed line: keep each bucket's envelope
            tags += [(s.metric + "__MIN", low, has_low), (s.metric + "__MAX", high, has_high)]
            out.sampled.append((s.metric, int((row & finite_x).sum()), int(wide.sum())))
        for tag, v, has in tags:
            mask = has & finite_x
            if bool(mask.any()):
                out.columns[tag] = (steps[mask], walls[mask], v[mask])
    return out


def _panel_notes(where: str, read: _PanelRead, step_name: str, *, axis_is_step: bool, points: int) -> list[Note]:
    notes: list[Note] = []
    if read.no_step:
        notes.append(Note("dropped", f"{where}: {read.no_step} row(s) with no {step_name} value were not used",
                          count=read.no_step))
    notes += non_numeric_notes(where, read.dropped, [], "cell(s) in metric columns", "column(s)")
    for metric, buckets, wide_count in read.sampled:
        notes.append(Note(
            "sampled",
            f"{where}: {metric} is W&B's bucketed chart line: each of its {buckets} points stands for a "
            f"bucket of logged points, not every logged point ({wide_count} bucket(s) hold more than one "
            f"value); each bucket's min and max are kept as '{metric}__MIN' and '{metric}__MAX'. For every "
            "point, read the run's own folder (wandb/run-*) or export its history with the W&B API",
            count=buckets))
    if not axis_is_step:
        notes.append(Note("step_axis", f"{where}: steps are the chart's x axis {step_name}, not W&B's _step",
                          count=points))
    if not read.sampled:
        notes.append(Note(
            "panel_export",
            f"{where}: points are the ones the W&B chart exported; a chart set to sample can leave logged "
            "points out. For every point, read the run's own folder (wandb/run-*)", count=0))
    return notes
