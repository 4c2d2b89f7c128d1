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

#: How each kind is named in a finding.
_WORDS = {"overflow_skip": "gradient-overflow skip(s)", "nan_warning": "NaN/inf warning(s)",
          "oom": "out-of-memory error(s)", "skipped_iterations": "skipped iteration(s)",
          "nan_iterations": "NaN iteration(s)", "loss_scale": "loss-scale change(s)"}
#: The end of a run is "still skipping" when this many of its last logged message steps in a row are skips.
_TAIL_INTERVALS = 3


@dataclass(frozen=True)
class Messages:
    """Per kind, the steps at which the log printed it and how many times (loss_scale: the scale)."""

    by_kind: dict[str, Series]
    loss_scale: Series | None

    def counts(self) -> dict[str, int]:
        return {k: int(np.nansum(s.values)) for k, s in self.by_kind.items() if np.nansum(s.values) > 0}

    def within(self, start: int, end: int) -> dict[str, int]:
        out = {}
        for kind, s in self.by_kind.items():
            sel = (s.steps >= start) & (s.steps <= end)
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
            scale = series
        else:
            by_kind[kind] = series
    if not by_kind and scale is None:
        return None
    return Messages(by_kind, scale)


def _scale_drops(scale: Series | None) -> tuple[int, float | None, float | None]:
    if scale is None or scale.values.size < 2:
        return 0, None, None
    v = scale.values[np.isfinite(scale.values)]
    if v.size < 2:
        return 0, None, None
    return int(np.sum(np.diff(v) < 0)), float(v[0]), float(v[-1])


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {_WORDS.get(k, k.replace('_', ' '))}" for k, n in sorted(counts.items()))


def _skipping_to_the_end(msgs: Messages, ctx: RunContext) -> tuple[str, int] | None:
    """(kind, first step of the final unbroken run of skip/NaN intervals) when the log skips to its end."""
    last = ctx.max_step
    if last is None:
        return None
    for kind in ("nan_iterations", "skipped_iterations", "overflow_skip"):
        s = msgs.by_kind.get(kind)
        if s is None or s.values.size < _TAIL_INTERVALS:
            continue
        positive = np.nan_to_num(s.values) > 0
        if not positive[-_TAIL_INTERVALS:].all():
            continue
        if kind == "overflow_skip":
            # messages carry no zero rows: they must reach the last logged step, at consecutive logged steps
            steps = s.steps[-_TAIL_INTERVALS:]
            judged_steps = ctx.judged.steps if ctx.judged is not None else np.zeros(0, np.int64)
            tail_steps = judged_steps[-_TAIL_INTERVALS:]
            if steps[-1] < (tail_steps[0] if tail_steps.size else last) or not np.array_equal(steps, tail_steps):
                continue
        run_start = int(np.flatnonzero(~positive)[-1]) + 1 if (~positive).any() else 0
        return kind, int(s.steps[run_start])
    return None


def check_messages(ctx: RunContext) -> list[Finding]:
    msgs = read_messages(ctx.run)
    if msgs is None:
        return []
    counts = msgs.counts()
    drops, scale_first, scale_last = _scale_drops(msgs.loss_scale)
    if drops:
        counts["loss_scale"] = drops
    if not counts:
        return []
    steps = [int(s.steps[np.nan_to_num(s.values) > 0][0]) for s in msgs.by_kind.values() if np.nansum(s.values) > 0]
    first = min(steps) if steps else int(msgs.loss_scale.steps[0]) if msgs.loss_scale is not None else 0
    ev = MessageEvidence(tuple(sorted(counts.items())), first, scale_first, scale_last)
    out: list[Finding] = []
    tail = _skipping_to_the_end(msgs, ctx)
    if tail is not None:
        kind, since = tail
        out.append(Finding("skipping_to_the_end", Severity.FAIL, "divergence", since, None,
                           f"From step {since:,} to the end every logged interval printed "
                           f"{_WORDS.get(kind, kind)}: the optimizer no longer updates the weights"
                           + (f" (loss scale down to {fmt(scale_last)})" if scale_last is not None else "") + ".", ev))
    scale_text = (f"; loss scale {fmt(scale_first)} -> {fmt(scale_last)}" if drops and scale_first is not None
                  else "")
    out.append(Finding("printed_messages", Severity.INFO, "stable", first, None,
                       f"The log printed {_describe({k: v for k, v in counts.items() if k != 'loss_scale'}) or 'loss-scale reductions'}"
                       f"{scale_text}. Alone these are the loss scaler at work; where they fall inside an "
                       "instability below, they are quoted there.", ev))
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
        if f.verdict in ("early_instability", "mid_instability", "divergence") and f.kind != "skipping_to_the_end":
            inside = msgs.within(f.start_step - interval, f.end_step if f.end_step is not None else end_default)
            inside.pop("loss_scale", None)
            if inside:
                f = replace(f, message=f"{f.message} The log printed {_describe(inside)} within it.")
        out.append(f)
    return out
