"""What the training printed about its own stability (text logs), as evidence at its step.

A job's stdout says things no metric column does: AMP's "Gradient overflow. Skipping step",
loss-scale reductions, Megatron's counts of skipped and NaN iterations per logging interval,
NaN/inf loss warnings, out-of-memory errors. The text reader counts them per step under
`log_events/<kind>` tags (and Megatron's counters are metrics of its iteration line).

Isolated overflow skips with the loss unaffected are the loss scaler doing its job
(spec/failure-shapes.md: "fp16/AMP skipped steps: info, not divergence"). They are evidence of
instability only where they coincide with a loss excursion (then they are quoted in that finding)
or where they never stop: every logged interval to the end skipped or NaN means the weights no
longer change, which is divergence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from analyzer.detect.checks.common import fmt
from analyzer.detect.context import RunContext
from analyzer.evidence import MessageEvidence
from analyzer.roles import MESSAGE_TAG_PREFIX
from analyzer.types import Finding, Run, Series, Severity
from analyzer.verdicts import UNSTABLE

#: How each kind is named in a finding.
_WORDS = {"overflow_skip": "gradient-overflow skip(s)", "nan_warning": "NaN/inf warning(s)",
          "oom": "out-of-memory error(s)", "skipped_iterations": "skipped iteration(s)",
          "nan_iterations": "NaN iteration(s)", "loss_scale": "loss-scale change(s)"}
#: The end of a run is "still skipping" when this many of its last logged intervals in a row skipped.
_TAIL_INTERVALS = 3
#: Kinds that are printed messages (placed at the metric line before them), not counters of a metric line.
_PRINTED = frozenset({"overflow_skip", "nan_warning", "oom"})
#: Kinds that are the loss scaler at work when the loss is unaffected (spec: fp16/AMP skipped steps are info).
_SCALER = frozenset({"overflow_skip", "skipped_iterations", "loss_scale"})


@dataclass(frozen=True)
class Messages:
    """Per kind, the steps at which the log printed it and how many times (loss_scale: the scale)."""

    by_kind: dict[str, Series]
    loss_scale: Series | None
    announced: Series | None = None

    def counts(self) -> dict[str, int]:
        return {k: int(np.nansum(s.values)) for k, s in self.by_kind.items() if np.nansum(s.values) > 0}

    def within(self, start: int, end: int, slack: int) -> dict[str, int]:
        """How many of each kind between ``start`` and ``end``; a printed message is counted at the metric line
        before it, so messages get ``slack`` steps on the left (counters of a metric line are at their step)."""
        out = {}
        for kind, s in self.by_kind.items():
            lo = start - (slack if kind in _PRINTED else 0)
            sel = (s.steps >= lo) & (s.steps <= end)
            n = int(np.nansum(s.values[sel]))
            if n:
                out[kind] = n
        return out


def _counter_kind(tag: str) -> str | None:
    """Megatron-style per-interval counters printed in the iteration line."""
    words = set(tag.lower().replace("_", " ").replace("-", " ").split())
    if "iterations" in words or "iteration" in words:
        if "skipped" in words:
            return "skipped_iterations"
        if "nan" in words:
            return "nan_iterations"
    return None


def read_messages(run: Run) -> Messages | None:
    by_kind: dict[str, Series] = {}
    scale: Series | None = None
    announced: Series | None = None  # the new scales reduction messages announced (the first scale unseen)
    for tag in run.tags:
        if tag.startswith(MESSAGE_TAG_PREFIX):
            kind = tag[len(MESSAGE_TAG_PREFIX):]
        else:
            kind = _counter_kind(tag) or ("loss_scale" if tag.lower().replace("_", " ") == "loss scale" else "")
        if not kind:
            continue
        series = run.series(tag)
        if series is None:
            continue
        if kind == "loss_scale":
            if tag.startswith(MESSAGE_TAG_PREFIX):
                announced = series
            else:
                scale = series  # the scale of every logged step: it shows rises as well as drops
        else:
            by_kind[kind] = series
    if not by_kind and scale is None and announced is None:
        return None
    return Messages(by_kind, scale, announced)


def _scale_drops(msgs: Messages) -> tuple[int, float | None, float | None]:
    """(reductions, first scale seen, last scale) from the logged scale, else from the announced ones (each
    announcement is a reduction; the scale before the first is not printed)."""
    if msgs.loss_scale is not None:
        v = msgs.loss_scale.values[np.isfinite(msgs.loss_scale.values)]
        if v.size >= 2:
            return int(np.sum(np.diff(v) < 0)), float(v[0]), float(v[-1])
    if msgs.announced is not None:
        v = msgs.announced.values[np.isfinite(msgs.announced.values)]
        if v.size:
            return int(v.size), None, float(v[-1])
    return 0, None, None


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {_WORDS.get(k, k.replace('_', ' '))}" for k, n in sorted(counts.items()))


def _skipping_to_the_end(msgs: Messages, ctx: RunContext) -> tuple[str, int] | None:
    """(kind, the step from which every logged interval skipped) when the log skips to its end."""
    judged = ctx.judged.steps if ctx.judged is not None else np.zeros(0, np.int64)
    for kind in ("nan_iterations", "skipped_iterations"):  # counters: a value on every metric line, zeros too
        s = msgs.by_kind.get(kind)
        if s is None or s.values.size < _TAIL_INTERVALS:
            continue
        positive = np.nan_to_num(s.values) > 0
        if positive[-_TAIL_INTERVALS:].all():
            start = int(np.flatnonzero(~positive)[-1]) + 1 if (~positive).any() else 0
            return kind, int(s.steps[start])
    s = msgs.by_kind.get("overflow_skip")
    if s is None or judged.size < _TAIL_INTERVALS + 1:
        return None
    # printed messages have no zero rows: which logged intervals had one? A message sits at the metric line
    # before it, so an apex-style message printed before its iteration's line sits one line early: the
    # last line may then have none after it
    had = np.isin(judged, s.steps[np.nan_to_num(s.values) > 0])
    end = judged.size if had[-1] else judged.size - 1
    tail = had[:end]
    if tail.size < _TAIL_INTERVALS or not tail[-_TAIL_INTERVALS:].all():
        return None
    start = int(np.flatnonzero(~tail)[-1]) + 1 if (~tail).any() else 0
    return "overflow_skip", int(judged[start])


def check_messages(ctx: RunContext) -> list[Finding]:
    msgs = read_messages(ctx.run)
    if msgs is None:
        return []
    counts = msgs.counts()
    drops, scale_first, scale_last = _scale_drops(msgs)
    if drops:
        counts["loss_scale"] = drops
    if not counts:
        return []
    steps = [int(s.steps[np.nan_to_num(s.values) > 0][0]) for s in msgs.by_kind.values() if np.nansum(s.values) > 0]
    scale_series = msgs.loss_scale if msgs.loss_scale is not None else msgs.announced
    first = min(steps) if steps else int(scale_series.steps[0]) if scale_series is not None else 0
    ev = MessageEvidence(tuple(sorted(counts.items())), first, scale_first, scale_last)
    out: list[Finding] = []
    tail = _skipping_to_the_end(msgs, ctx)
    if tail is not None:
        kind, since = tail
        out.append(Finding("skipping_to_the_end", Severity.FAIL, "divergence", since, None,
                           f"From step {since:,} to the end every logged interval printed "
                           f"{_WORDS.get(kind, kind)}: the optimizer no longer updates the weights"
                           + (f" (loss scale down to {fmt(scale_last)})" if scale_last is not None else "") + ".", ev))
    if scale_first is not None:
        scale_text = f"; loss scale {fmt(scale_first)} -> {fmt(scale_last)}" if drops else ""
    else:
        scale_text = f"; loss scale reduced {drops} time(s), to {fmt(scale_last)}" if drops else ""
    if tail is not None:
        meaning = "Before that they were the loss scaler at work."
    elif set(counts) <= _SCALER:
        meaning = ("Alone these are the loss scaler at work (isolated skipped steps are not instability); where "
                   "they fall inside an instability below, they are quoted there.")
    else:
        meaning = "Where they fall inside an instability below, they are quoted there."
    printed = _describe({k: v for k, v in counts.items() if k != "loss_scale"}) or "loss-scale reductions"
    out.append(Finding("printed_messages", Severity.INFO, "stable", first, None,
                       f"The log printed {printed}{scale_text}. {meaning}", ev))
    return out


def quote_messages(findings: list[Finding], ctx: RunContext) -> list[Finding]:
    """Instability and divergence findings with the messages printed inside their window quoted."""
    msgs = read_messages(ctx.run)
    if msgs is None or ctx.judged is None or ctx.judged.steps.size < 2:
        return findings
    # a message is counted at the last metric line before it: one logging interval of slack on the left
    interval = int(np.median(np.diff(ctx.judged.steps)))
    end_default = ctx.max_step or 0
    out = []
    for f in findings:
        if f.verdict in UNSTABLE and f.kind != "skipping_to_the_end":
            inside = msgs.within(f.start_step, f.end_step if f.end_step is not None else end_default, interval)
            inside.pop("loss_scale", None)
            if inside:
                f = replace(f, message=f"{f.message} The log printed {_describe(inside)} within it.")
        out.append(f)
    return out
