"""What re-running the run itself found: reproduced or not, data-driven or not, the smallest change that
removed it, and the LR search (torch-free; the trials were judged by the analyzer already).

Order of the changes, smallest first: skipping the window's batches (changes no setting: PaLM's
restart), clipping (the loosest that worked, and only if it clipped at most half the steps: more is a
lower LR in disguise), warmup re-applied from the checkpoint (the shortest), then a lower LR (the
largest that worked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from probes.spec import ProbeSpec

#: A clipping threshold that clips more than this share of the steps is not counted as a fix (playbook §6).
MAX_CLIPPED_SHARE = 0.5
#: A stable trial that ends more than this share above the same-settings trial's best loss learned far less:
#: not a fix (an LR so low that nothing moves is stable too).
LEARN_SLACK = 0.25


@dataclass(frozen=True)
class Replay:
    """The replay's findings, each as a sentence for the report.

    Attributes:
        reproduced: the same-settings trial was judged unstable (or stopped on NaN/runaway).
        reproduced_line: "reproduced: yes (...)" with where and how high, against the log.
        data_driven: True/False when a skip_window trial ran on a reproduced instability, else None.
        data_line: what skipping the window's batches showed.
        smallest: the smallest change that removed it (None: nothing tried did).
        lr_search_line: the largest LR without the instability and whether warmup/clipping keep a higher one.
    """

    reproduced: bool
    reproduced_line: str
    data_driven: bool | None
    data_line: str
    smallest: str | None
    fixes_line: str
    lr_search_line: str


def _stable(o: Any) -> bool:
    return o.verdict == "stable" and not o.result.infeasible


def _learned_less(o: Any, base: Any | None) -> bool:
    best = base.result.best_loss if base is not None else None
    final = o.result.final_loss
    return best is not None and final is not None and best > 0 and final > best * (1 + LEARN_SLACK)


def _same_settings(outcomes: Sequence[Any]) -> Any | None:
    return next((o for o in outcomes if o.result.plan == "baseline"), None)


def _fixed(o: Any, base: Any | None) -> bool:
    """Stable, and still learning: within LEARN_SLACK of what the same settings (``base``) reached."""
    return _stable(o) and not (o.result.plan != "baseline" and _learned_less(o, base))


def _where(o: Any, spec: ProbeSpec) -> str:
    """Where and how high the trial's instability was, against the logged window."""
    w = spec.window or {}
    at = o.unstable_at
    if at is None:
        return f"stopped: {o.result.stop_reason}" if o.result.infeasible else o.verdict
    text = f"{o.verdict.replace('_', ' ')} at step {at:,}"
    logged = w.get("start")
    if isinstance(logged, int):
        delta = at - logged
        text += (f", {abs(delta):,} step{'s' if abs(delta) != 1 else ''} {'after' if delta > 0 else 'before'} the logged "
                 f"{logged:,}") if delta else ", the logged step"
    if o.max_spike_ratio is not None:
        text += f"; {o.max_spike_ratio:.3g}x its level"
        if isinstance(w.get("ratio"), float):
            text += f" (logged: {w['ratio']:.3g}x)"
    return text


def judge_replay(spec: ProbeSpec, outcomes: Sequence[Any]) -> Replay:
    base = _same_settings(outcomes)
    reproduced = base is not None and not _stable(base) and base.verdict != "insufficient_data"
    w = spec.window or {}
    if base is None:
        line = "reproduced: not tried (the same-settings trial was not run)"
    elif reproduced:
        line = f"reproduced: yes ({_where(base, spec)})"
    else:
        logged = f"the logged {w.get('verdict', spec.diagnosis).replace('_', ' ')} at step {w.get('start', '?')}"
        line = (f"reproduced: no (the same settings trained stably through step "
                f"{base.result.first_step + base.result.steps_run - 1:,}; {logged} did not recur here: other batches "
                "than the run's (synthetic, or another order), a smaller or shorter probe, or a cause outside the "
                "training loop)")
    skip = next((o for o in outcomes if o.result.plan == "skip_window"), None)
    data_driven: bool | None = None
    if skip is None or not reproduced:
        data_line = "" if skip is None else f"skipping the window's batches: {_where(skip, spec)}"
    elif _fixed(skip, base):
        data_driven = True
        a, b = skip.result.skip or (0, 0)
        data_line = (f"data-driven: with the batches of steps {a:,}-{b:,} skipped (PaLM's restart) it did not recur")
    else:
        data_driven = False
        data_line = f"not data-driven: it recurred with the window's batches skipped ({_where(skip, spec)})"
    if data_driven is not None and spec.data is None:
        data_line += "; the probe's batches are synthetic, so this speaks of them, not of the run's data"
    smallest, fixes_line = _fixes(outcomes, reproduced)
    return Replay(reproduced, line, data_driven, data_line, smallest, fixes_line, _lr_search(spec, outcomes, reproduced))


def _fixes(outcomes: Sequence[Any], reproduced: bool) -> tuple[str | None, str]:
    if not reproduced:
        return None, ""
    base = _same_settings(outcomes)
    order: list[tuple[str, str]] = []
    worked: list[str] = []
    failed: list[str] = []
    for o in outcomes:
        r = o.result
        if r.plan == "baseline":
            continue
        if r.plan == "clip_sweep" and (r.fraction_clipped or 0) > MAX_CLIPPED_SHARE and _fixed(o, base):
            failed.append(f"{r.name} (clipped {r.fraction_clipped:.0%} of steps: a lower LR in disguise)")
            continue
        if _stable(o) and not _fixed(o, base):
            failed.append(f"{r.name} (stable, but it learned far less: final loss {r.final_loss:.3g})")
            continue
        (worked if _fixed(o, base) else failed).append(r.name)
    skips = [o for o in outcomes if o.result.plan == "skip_window" and _fixed(o, base)]
    clips = [o for o in outcomes if o.result.plan == "clip_sweep" and _fixed(o, base)
             and (o.result.fraction_clipped or 0) <= MAX_CLIPPED_SHARE]
    warms = [o for o in outcomes if o.result.plan == "warmup_sweep" and _fixed(o, base)]
    lrs = [o for o in outcomes if o.result.plan in ("lr_sweep", "lr_search") and _fixed(o, base)]
    if skips:
        a, b = skips[0].result.skip
        order.append((f"skip the batches of steps {a}-{b} (restart from the checkpoint without them)", "skip"))
    if clips:
        c = max(clips, key=lambda o: o.result.clip)
        order.append((f"clip max_norm={c.result.clip:.3g}", "clip"))
    if warms:
        w = min(warms, key=lambda o: o.result.warmup_steps)
        order.append((f"warmup_steps={w.result.warmup_steps} from step {w.result.first_step}", "warmup"))
    if lrs:
        best = max(lrs, key=lambda o: o.result.lr_factor)
        order.append((f"lr x{best.result.lr_factor:.3g} ({best.result.lr:.3g})", "lr"))
    text = ("Removed it: " + ", ".join(worked) + "." if worked else "Nothing tried removed it.") + \
        (" Did not: " + ", ".join(failed) + "." if failed else "")
    return (order[0][0] if order else None), text


def _lr_search(spec: ProbeSpec, outcomes: Sequence[Any], reproduced: bool) -> str:
    base = _same_settings(outcomes)
    tried = sorted((o for o in outcomes if o.result.plan in ("lr_sweep", "lr_search")),
                   key=lambda o: -o.result.lr_factor)
    if not tried or not reproduced:
        return ""
    if "lr_search" in spec.plans and not any(o.result.plan == "lr_search" for o in outcomes) and any(
            o.result.plan == "skip_window" and _fixed(o, base) for o in outcomes):
        return ("LR search not run: skipping the window's batches removed the instability, and a lower LR does not "
                "remove bad batches")
    ok = [o for o in tried if _fixed(o, base)]
    if not ok:
        low = tried[-1]
        if _stable(low):
            return (f"LR search: no LR tried both removed it and kept learning (at x{low.result.lr_factor:.3g}, "
                    f"{low.result.lr:.3g}, it was stable but learned far less)")
        return (f"LR search: still unstable at x{low.result.lr_factor:.3g} ({low.result.lr:.3g}), the lowest tried: "
                "the cause is not the LR alone")
    best = ok[0].result
    text = (f"LR search: the largest LR without the instability is the run's schedule x{best.lr_factor:.3g} "
            f"(base LR {best.lr:.3g} instead of {spec.lr:.3g})")
    keep = [o.result.name for o in outcomes if o.result.plan in ("clip_sweep", "warmup_sweep") and _fixed(o, base)
            and (o.result.fraction_clipped or 0) <= MAX_CLIPPED_SHARE]
    text += (f"; {', '.join(keep)} kept the logged LR stable, so the run can keep it with that change" if keep else
             "; neither warmup nor clipping kept the logged LR stable")
    return text
