"""Does the recorded curve show what the configuration was designed to cause?

Written independently of the analyzer (nothing from analyzer.detect, .sweep, .recommend or .config
is imported or consulted). The reference is a paired CONTROL run where the spec has one: the same
seed and data with the instability-causing factor removed (no bump, lower LR, warmup on, clipping
on, fp32). Units are the ones failure-shapes.md asks for: rises are measured as a share of the
learned progress P = initial loss - the control's best smoothed loss, so 0.01 -> 0.024 on a run that
went from 2.3 to 0.01 is a 0.6% wiggle, not a 2.4x spike.

Rules (N = steps, S = rolling median of the per-step loss over w steps, G = (S - S_control) / P):

- gap events: G >= 0.25 sustained for >= w steps; an event ends when G < 0.1 for w steps.
- stable: loss finite; no gap event at 0.15; S never rises more than 0.2 P above its running
  minimum; the first 10% stays below 1.2x the initial loss (smoothed); learned (final S below 0.85x
  the trivial loss) unless the shape is never_learns; plus the shape's own feature is present
  (skipped fp16 steps, grad-norm spikes, eval rising while train falls, the epoch sawtooth, the
  drops at LR milestones, the long plateau, a tiny final loss).
- early_instability: an event in the first 10% (a raw loss >= 1.5x the initial value, or a gap
  event starting there), the control has none (raw max <= 1.25x initial), no event starts later,
  and the run learned by the end.
- mid_instability: no early event; a gap event (or, for short spikes, >= 3 consecutive steps at
  >= 1.4x the trailing median that the clipped control does not have; or, for a step change at a
  known step, a smoothed level >= 1.5x the level before that holds for 2w steps while staying
  >= 15% of the progress above the control) starting after 10%; the run keeps at least 30% of the
  control's progress at the end (it did not collapse). A step change inside the first 10% is early.
- divergence: nan (the last loss non-finite), explode_no_return (final S >= 5x initial),
  explode_then_dead (raw max >= 10x initial in the first 10%, then flat at the trivial loss while
  the control learned, with a flat grad-norm floor) or collapse_after_learning (learned, then flat
  at the trivial loss with the grad norm at <= 0.3x the control's: a dead network).

Then the same shape must be visible in what the log shows (its cadence, HF means, rounding);
a run whose event the logging hides is dropped, not relabeled.
"""

from __future__ import annotations

import numpy as np

from benchmarks.corpus.spec import RunSpec
from benchmarks.corpus.train import Record
from benchmarks.corpus.writers import Logged

EARLY = 0.10  # the early phase: the first 10% of training steps


def rolling_median(x: np.ndarray, w: int) -> np.ndarray:
    """Centered rolling median over finite values (NaN where a window has none)."""
    n = len(x)
    w = max(1, min(w, n))
    h = w // 2
    pad = np.concatenate([np.full(h, np.nan), x, np.full(w - 1 - h, np.nan)])
    win = np.lib.stride_tricks.sliding_window_view(pad, w)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(win, axis=1)


def gap_events(g: np.ndarray, w: int, hi: float = 0.25, lo: float = 0.1) -> list[tuple[int, int]]:
    """Intervals where g >= hi for at least w steps; an event ends once g stays below lo for w steps."""
    events: list[tuple[int, int]] = []
    n = len(g)
    i = 0
    while i < n:
        if g[i] >= hi:
            j = i
            while j < n and g[j] >= hi:
                j += 1
            if j - i >= w:
                start = i
                while start > 0 and g[start - 1] >= lo:
                    start -= 1
                end, calm = j, 0
                while end < n and calm < w:
                    calm = calm + 1 if g[end] < lo else 0
                    end += 1
                events.append((start, end))
                i = end
                continue
            i = j
        i += 1
    return events


class Check:
    """Accumulates named conditions; ok when all hold."""

    def __init__(self) -> None:
        self.fails: list[str] = []
        self.facts: list[str] = []

    def need(self, cond: bool, fact: str) -> None:
        (self.facts if cond else self.fails).append(fact)


def _levels(spec: RunSpec, rec: Record, ctrl: Record | None, w: int) -> dict[str, float | np.ndarray]:
    loss = rec.loss
    s = rolling_median(loss, w)
    l0 = float(np.nanmedian(loss[:5]))
    ref = rolling_median(ctrl.loss, w) if ctrl is not None else s
    best_ref = float(np.nanmin(ref)) if np.isfinite(ref).any() else l0
    progress = max(l0 - best_ref, 1e-6)
    return {"s": s, "l0": l0, "ref": ref, "P": progress, "trivial": rec.trivial}


def _step_jump(s: np.ndarray, g: np.ndarray, at: int | None, w: int) -> bool:
    """A step change at a known step: the smoothed level right after is >= 1.5x the level right before,
    for w steps, and the run stays >= 15% of the progress above its control over that stretch."""
    if at is None or at < 2 * w or at + 3 * w > len(s):
        return False
    before = float(np.nanmedian(s[at - 2 * w:at - w // 2]))
    after = s[at + w:at + 3 * w]
    return bool(np.nanmin(after) >= 1.5 * before and np.nanmin(g[at + w:at + 3 * w]) >= 0.15)


def _spike_runs(loss: np.ndarray, start: int, k: int = 3, factor: float = 1.4, trail: int = 30) -> list[int]:
    """Steps t >= start where k consecutive losses sit >= factor x the median of the `trail` before t."""
    out = []
    for t in range(max(start, trail), len(loss) - k):
        base = np.nanmedian(loss[t - trail:t])
        if np.all(loss[t:t + k] >= factor * base):
            if not out or t > out[-1] + k:
                out.append(t)
    return out


def verify(spec: RunSpec, rec: Record, ctrl: Record | None, lg: Logged) -> tuple[bool, str]:
    args = dict(spec.verify_args)
    n = len(rec.loss)
    w = int(args.get("window", max(5, n // 60)))
    lv = _levels(spec, rec, ctrl, w)
    s, l0, ref, prog, triv = lv["s"], lv["l0"], lv["ref"], lv["P"], lv["trivial"]
    loss = rec.loss
    finite = bool(np.isfinite(loss).all())
    k_early = max(3, int(EARLY * n))
    c = Check()
    g = (s - ref) / prog if ctrl is not None else np.zeros(n)
    g = np.nan_to_num(g, nan=10.0)
    events = gap_events(g, w) if ctrl is not None else []
    early_raw = float(np.nanmax(loss[:k_early])) / l0
    final = float(np.nanmedian(loss[-max(5, n // 20):])) if finite else float("nan")
    shape = spec.shape

    if spec.label == "stable":
        c.need(finite, "loss finite at every step")
        if ctrl is not None:
            ev15 = gap_events(g, w, hi=float(args.get("gap", 0.15)), lo=0.05)
            c.need(not ev15, f"tracks its control within {args.get('gap', 0.15):.0%} of the progress"
                   + (f" (apart at steps {ev15[:2]})" if ev15 else ""))
        # rises judged on a wider median (N/25 steps) than events: noise is not a rise
        sw = rolling_median(loss, max(w, n // 25)) if "window" not in args else s
        runmin = np.fmin.accumulate(np.nan_to_num(sw, nan=np.inf))
        rise = (sw - runmin)[k_early:]
        max_rise = float(np.nanmax(rise)) / (l0 - float(np.nanmin(sw)) + 1e-9) if rise.size else 0.0
        if shape != "never_learns":  # without progress a share of it means nothing
            c.need(max_rise <= float(args.get("rise", 0.2)),
                   f"largest sustained rise over its running minimum {max_rise:.0%} of its progress")
        early_s = float(np.nanmax(s[:k_early])) / l0
        c.need(early_s <= 1.2, f"first 10% stays at <= {early_s:.2f}x the initial loss (smoothed)")
        if shape != "never_learns":
            c.need(final < 0.85 * min(l0, triv), f"learned: final {final:.4g} vs trivial {triv:.3g}")
        _stable_feature(shape, rec, lg, args, c, s, l0, triv, final)
    elif spec.label == "early_instability":
        c.need(finite, "loss finite at every step")
        blip = early_raw >= 1.5
        early_ev = [e for e in events if e[0] < EARLY * n]
        at = args.get("event_step")
        if not early_ev and at is not None and at < EARLY * n and _step_jump(s, g, at, w):
            early_ev = [(at, at)]
        c.need(blip or bool(early_ev), f"early event: raw max {early_raw:.2f}x the initial loss in the first 10%"
               + (f", gap event from step {early_ev[0][0]}" if early_ev else ""))
        if ctrl is not None:
            c_raw = float(np.nanmax(ctrl.loss[:k_early])) / float(np.nanmedian(ctrl.loss[:5]))
            c.need(c_raw <= 1.25, f"control's first 10% stays at {c_raw:.2f}x its initial loss")
        late = [e for e in events if e[0] >= EARLY * n]
        c.need(not late, "no event starts after the first 10%" + (f" (one at {late[0][0]})" if late else ""))
        # a later short spike (3 losses >= 1.4x their trailing median, the rule mid labels are held to)
        # makes the run more than early-unstable: it would be mid by the playbook's own ordering
        late_spikes = _spike_runs(rec.loss, int(EARLY * n))
        c.need(not late_spikes, "no short spike after the first 10%"
               + (f" (one at step {late_spikes[0]})" if late_spikes else ""))
        c.need(final < 0.9 * min(l0, triv) if shape != "early_step_change" else final < triv,
               f"trains on: final {final:.4g} (initial {l0:.3g}, trivial {triv:.3g})")
    elif spec.label == "mid_instability":
        c.need(finite, "loss finite at every step")
        c.need(early_raw <= 1.3, f"no early blip: first 10% raw max {early_raw:.2f}x the initial loss")
        early_ev = [e for e in events if e[0] < EARLY * n]
        c.need(not early_ev, "no gap event in the first 10%")
        if shape == "short_spike":
            runs = _spike_runs(loss, int(EARLY * n))
            ctrl_runs = set(_spike_runs(ctrl.loss, int(EARLY * n))) if ctrl is not None else set()
            own = [t for t in runs if not any(abs(t - u) <= 2 for u in ctrl_runs)]
            c.need(bool(own), f"{len(own)} spikes of >= 3 steps at >= 1.4x the trailing median that the control "
                   f"does not have (first at step {own[0] if own else '-'})")
        else:
            mid_ev = [e for e in events if e[0] >= EARLY * n]
            at = args.get("event_step")
            if at is not None:
                mid_ev = [e for e in mid_ev if at - w <= e[0] <= at + max(2 * w, n // 20)]
            c.need(bool(mid_ev) or _step_jump(s, g, at, w), "event after the first 10%" + (
                   f": gap event at steps {mid_ev[0]}, peak gap {float(np.max(g[mid_ev[0][0]:mid_ev[0][1]])):.0%} "
                   "of the progress" if mid_ev else (f": the level jumps >= 1.5x at step {at} and stays >= 15% of "
                                                     "the progress above the control" if at is not None else "")))
        c.need(final <= l0 - 0.3 * prog, f"did not collapse: final {final:.4g} keeps >= 30% of the progress")
    elif spec.label == "divergence":
        _divergence(shape, rec, ctrl, args, c, s, l0, triv, k_early, w)
    else:
        raise ValueError(spec.label)
    if not c.fails:
        vis = visible(spec, rec, lg, l0, prog, triv)
        if vis:
            c.fails.append(vis)
    text = "; ".join(c.facts) if not c.fails else "FAILED " + "; ".join(c.fails)
    return not c.fails, text


def _stable_feature(shape: str, rec: Record, lg: Logged, args: dict, c: Check, s: np.ndarray, l0: float,
                    triv: float, final: float) -> None:
    n = len(rec.loss)
    if shape == "fp16_skips":
        k = int(rec.skipped.sum())
        c.need(k >= 2 and not np.isfinite(rec.grad_norm[rec.skipped]).any(),
               f"{k} skipped fp16 steps with non-finite grad norm")
    elif shape == "grad_norm_spikes":
        gn = rec.grad_norm[np.isfinite(rec.grad_norm)]
        ratio = float(gn.max() / np.median(gn))
        c.need(ratio >= 8, f"grad norm peaks at {ratio:.0f}x its median")
    elif shape == "overfit":
        ev = rec.eval_loss
        i = int(np.nanargmin(ev))
        c.need(i < len(ev) - 3 and ev[-1] >= 1.2 * ev[i],
               f"eval loss rises from {ev[i]:.3g} (step {rec.eval_steps[i]}) to {ev[-1]:.3g}")
    elif shape == "sawtooth":
        spe = rec.steps_per_epoch or n
        half = rec.loss[n // 2: n // 2 + (n - n // 2) // spe * spe]
        prof = half.reshape(-1, spe).mean(axis=0) if half.size >= spe else np.zeros(1)
        amp = float((prof.max() - prof.min()) / max(prof.mean(), 1e-9))
        c.need(amp >= 0.15, f"per-epoch sawtooth: within-epoch profile spans {amp:.0%} of its mean")
    elif shape == "step_lr":
        drops = []
        for m in args.get("milestones", ()):
            before, after = float(np.nanmedian(rec.loss[m - 60:m])), float(np.nanmedian(rec.loss[m + 10:m + 70]))
            drops.append(after / before)
        # the first drop is visible; later ones may find the loss at its floor already, but never raise it
        c.need(bool(drops) and drops[0] < 0.97 and all(d < 1.03 for d in drops),
               f"loss after/before each LR milestone: {np.round(drops, 2)}")
    elif shape == "plateau_then_learning":
        flat = np.nonzero(s > 0.95 * l0)[0]
        span = (flat.max() + 1) / n if flat.size else 0.0
        c.need(span >= 0.15 and final < 0.7 * l0, f"plateau over the first {span:.0%}, then down to {final:.3g}")
    elif shape == "tiny_loss_tail":
        c.need(final <= 0.02, f"final loss {final:.4f}")
    elif shape == "never_learns":
        # never meaningfully below the trivial level either: a run that learned a little and then fell
        # back (with a dying grad norm) is a collapse, not "never learns"; it is left out, not relabeled
        low = float(np.nanmin(s))
        c.need(final >= 0.9 * triv and low >= 0.93 * triv and float(np.nanmax(s)) <= 1.5 * l0,
               f"stays at the trivial level without a blow-up: lowest {low:.3f}, final {final:.3f}, "
               f"trivial {triv:.3f}")
    elif shape == "noisy":
        tail = rec.loss[n // 2:]
        cv = float(np.std(tail) / np.mean(tail))
        c.need(cv >= 0.3, f"per-step noise: coefficient of variation {cv:.2f} in the second half")
    elif shape == "one_point_blips":
        blips = int(np.sum(rec.loss[n // 10:] > 3 * np.nanmedian(rec.loss[n // 2:])))
        c.need(blips >= 1, f"{blips} one-step loss blips (bad batches) that clipping keeps from lasting")


def _divergence(shape: str, rec: Record, ctrl: Record | None, args: dict, c: Check, s: np.ndarray, l0: float,
                triv: float, k_early: int, w: int) -> None:
    loss = rec.loss
    n = len(loss)
    tail = s[-max(w, n // 5):]
    if shape == "nan":
        c.need(not np.isfinite(loss[-1]), "loss non-finite at the end"
               + (f" (first at step {int(np.argmin(np.isfinite(loss)))})" if not np.isfinite(loss[-1]) else ""))
        return
    c.need(bool(np.isfinite(loss).all()) or shape == "explode_no_return", "loss finite (a blow-up, not NaN)")
    if shape == "explode_no_return":
        fin = float(np.nanmedian(tail))
        c.need(not np.isfinite(fin) or fin >= 5 * l0, f"final loss {fin:.3g} >= 5x the initial {l0:.3g}")
        return
    fin = float(np.nanmedian(tail))
    at_trivial = abs(fin - triv) <= 0.1 * triv
    flat = float(np.nanmax(tail) - np.nanmin(tail)) <= 0.1 * triv
    c.need(at_trivial and flat, f"ends flat at the trivial loss: {fin:.3f} vs {triv:.3f}")
    if ctrl is not None:
        cs = rolling_median(ctrl.loss, w)
        c_fin = float(np.nanmedian(cs[-max(w, n // 5):]))
        c.need(c_fin <= 0.8 * triv, f"control learned: final {c_fin:.3f}")
    if shape == "explode_then_dead":
        peak = float(np.nanmax(loss[:k_early])) / l0
        c.need(peak >= 10, f"blow-up in the first 10%: {peak:.3g}x the initial loss")
    elif shape == "collapse_after_learning":
        before = float(np.nanmin(s))
        c.need(before <= triv - 0.25 * (triv - (float(np.nanmin(rolling_median(ctrl.loss, w))) if ctrl is not None
                                                 else 0.0)),
               f"learned first: down to {before:.3f}")
    if ctrl is not None and shape == "explode_then_dead":
        # the floor is flat: no learning signal left (the LM's floor need not sit below its control's)
        k = max(w, n // 5)
        gfl = rolling_median(rec.grad_norm, w)[-k:]
        spread = float((np.nanpercentile(gfl, 90) - np.nanpercentile(gfl, 10)) / np.nanmedian(gfl))
        c.need(spread <= 1.0, f"flat grad-norm floor: p10-p90 spread {spread:.2f}x its median over the last 20%")
    if ctrl is not None and shape == "collapse_after_learning":
        k = max(w, n // 5)
        gn, gc = float(np.nanmedian(rec.grad_norm[-k:])), float(np.nanmedian(ctrl.grad_norm[-k:]))
        c.need(gn <= float(args.get("gn_drop", 0.3)) * gc,
               f"dead network: grad norm floor {gn:.3g} = {gn / gc:.2f}x the control's {gc:.3g}")


def visible(spec: RunSpec, rec: Record, lg: Logged, l0: float, prog: float, triv: float) -> str | None:
    """None when what the config caused can be seen in the written log, else why not."""
    n = len(rec.loss)
    steps, vals = lg.steps, lg.loss
    if spec.label == "stable" or len(vals) == 0:
        return None if len(vals) else "nothing logged"
    if spec.label == "divergence":
        last = vals[-1]
        if spec.shape == "nan":
            gn_bad = lg.grad_norm is not None and not np.isfinite(lg.grad_norm[-1])
            ok = not np.isfinite(last) or (spec.habit.fmt == "hf" and last == 0.0 and gn_bad)
            return None if ok else "the NaN does not reach the log"
        if spec.shape == "explode_then_dead":
            early = vals[steps < EARLY * n]
            ok = early.size and float(np.nanmax(early)) >= 5 * float(vals[0])
            return None if ok else "the blow-up falls between logged points"
        return None
    first = float(vals[0])
    if spec.label == "early_instability":
        early = vals[steps < EARLY * n]
        if spec.shape in ("early_blip",):
            ok = early.size >= 2 and float(np.nanmax(early)) >= 1.3 * first
            return None if ok else "the early blip falls between logged points"
        idx = np.nonzero(_own_rise(vals) >= 0.2)[0]
        blip = early.size >= 2 and float(np.nanmax(early)) >= 1.3 * first
        ok = blip or (idx.size and steps[idx[0]] < 0.15 * n)
        return None if ok else "no early rise in the logged loss"
    # mid: a rise after 10% that the log shows (>= 2 logged points for short spikes)
    if spec.shape == "short_spike":
        for i in range(3, len(vals) - 1):
            if steps[i] < EARLY * n:
                continue
            base = float(np.median(vals[max(0, i - 10):i]))
            if vals[i] >= 1.4 * base and vals[i + 1] >= 1.4 * base:
                return None
        return "the spike lasts fewer than 2 logged points at this cadence"
    idx = np.nonzero((_own_rise(vals) >= 0.2) & (steps >= EARLY * n))[0]
    return None if idx.size else "the logged loss does not show the rise"


def _own_rise(vals: np.ndarray) -> np.ndarray:
    """Each logged point's rise over the running minimum, as a share of the progress made so far
    (first value - running minimum); smoothed over 3 points when there are enough of them."""
    v = rolling_median(vals, 3) if len(vals) >= 30 else vals
    runmin = np.fmin.accumulate(np.nan_to_num(v, nan=np.inf))
    made = np.maximum(float(v[0]) - runmin, 1e-9)
    return np.where(made > 0.05 * abs(float(v[0])), (v - runmin) / made, 0.0)
