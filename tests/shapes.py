"""Faithful fixtures of the shapes in spec/failure-shapes.md: curves with the noise, scale and logging
habits real runs have (multiplicative per-batch noise, heavy tails, 4-decimal rounding, sparse logs,
LR schedules), each with the series a trainer would log beside the loss.

Every function returns a dict of tag -> (steps, values), as a logger would have written them.
"""

from __future__ import annotations

import numpy as np

Series = dict[str, tuple[np.ndarray, np.ndarray]]


def _logged(values: dict[str, np.ndarray], steps: np.ndarray | None = None) -> Series:
    """Every tag at the same steps (0..n-1 by default)."""
    out = {}
    for tag, v in values.items():
        s = np.arange(v.size) if steps is None else steps
        out[tag] = (np.asarray(s, dtype=np.int64), np.asarray(v, dtype=float))
    return out


def _noise(rng: np.random.Generator, n: int, sigma: float, *, heavy: bool = False) -> np.ndarray:
    z = rng.standard_t(3, n) / np.sqrt(3.0) if heavy else rng.standard_normal(n)
    return np.exp(sigma * z)


def lm_loss(n: int, *, start: float = 10.8, floor: float = 3.2, tau: float = 0.12, sigma: float = 0.03,
            seed: int = 0) -> np.ndarray:
    """A per-step language-model loss: ln(vocab) at init, fast fall, slow tail."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / n
    level = floor + (start - floor) * (0.6 * np.exp(-t / (tau / 8)) + 0.4 * np.exp(-t / tau))
    return level * _noise(rng, n, sigma)


def cosine_lr(n: int, peak: float, warmup: int) -> np.ndarray:
    t = np.arange(n)
    lr = np.where(t < warmup, peak * (t + 1) / max(warmup, 1),
                  0.5 * peak * (1 + np.cos(np.pi * (t - warmup) / max(n - warmup, 1))))
    return lr


def grad_norm(n: int, *, start: float = 3.0, end: float = 0.8, sigma: float = 0.25, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (end + (start - end) * np.exp(-t / (n / 20))) * _noise(rng, n, sigma)


# -- divergence ---------------------------------------------------------------------------------

def collapse_to_chance(seed: int = 0) -> Series:
    """A classifier (10 classes, chance = ln 10 = 2.30) learns to 0.4, then at step 1400 jumps to a flat
    plateau at the label prior and never returns; the grad norm drops 50x to a floor."""
    rng = np.random.default_rng(seed)
    n = 2000
    t = np.arange(n)
    loss = (0.4 + 1.9 * np.exp(-t / 250)) * _noise(rng, n, 0.05)
    loss[1400:] = 2.30 * _noise(rng, n - 1400, 0.004)
    g = grad_norm(n, seed=seed + 1)
    g[1400:] = 0.016 * _noise(rng, n - 1400, 0.05)
    return _logged({"train/loss": loss, "train/grad_norm": g})


def explode_then_dead(seed: int = 0) -> Series:
    """Loss explodes 1e4x in the first steps, then sits flat near chance for the rest of the run."""
    rng = np.random.default_rng(seed)
    n = 1000
    loss = 2.30 * _noise(rng, n, 0.01)
    loss[3:8] = [40.0, 3e3, 2e4, 900.0, 15.0]
    loss[8:] = 2.31 * _noise(rng, n - 8, 0.006)
    g = grad_norm(n, seed=seed + 1)
    g[3:8] *= 1e3
    g[8:] = 1e-3 * _noise(rng, n - 8, 0.05)
    return _logged({"train/loss": loss, "train/grad_norm": g})


def lm_blowup_to_unigram(seed: int = 0) -> Series:
    """An LM at a far too high LR: blows up in the first steps, then falls only to the unigram entropy
    (~7.5, below ln(vocab) = 10.8) and stays flat and quiet (as the corpus's Pre-LN LM at lr 1: noise
    5x quieter than before the blow-up): it got there by a blow-up (divergence)."""
    rng = np.random.default_rng(seed)
    n = 1500
    loss = 10.8 * _noise(rng, n, 0.01)
    loss[5:15] = np.geomspace(30, 400, 10)
    loss[15:60] = np.geomspace(60, 7.6, 45)
    loss[60:] = 7.5 * _noise(rng, n - 60, 0.002)  # a constant output: no batch-to-batch variation left
    return _logged({"train/loss": loss})


def binary_thrash_then_uniform(seed: int = 0, *, with_grad: bool = True) -> Series:
    """A binary classifier at a far too high LR: from ln 2 it thrashes up to 2-15x for ~150 steps, then its
    output saturates to a constant 0.5: the loss is ln 2 on every batch to the end (float rounding only)
    and the grad norm falls to ~1e-7 (issue 16: this was called "early instability, recovered")."""
    rng = np.random.default_rng(seed)
    n = 2000
    loss = np.log(2) * _noise(rng, n, 0.02)
    loss[5:150] *= np.exp(np.abs(rng.normal(0.8, 0.9, 145)))
    loss[150:] = np.log(2) + 1e-6 * rng.standard_normal(n - 150)
    out = {"train/loss": loss}
    if with_grad:
        g = grad_norm(n, seed=seed + 1)
        g[5:150] *= 20
        g[150:] = 1e-7 * _noise(rng, n - 150, 0.1)
        out["train/grad_norm"] = g
    return _logged(out)


def lm_collapse_to_uniform(seed: int = 0) -> Series:
    """A GPT-2-vocabulary LM learns from ln(50257) = 10.8 to ~3.6, then at step 2,400 its logits collapse:
    the loss is pinned at ln 50257 for the rest of the run."""
    rng = np.random.default_rng(seed)
    n = 3000
    loss = lm_loss(n, start=10.8, floor=3.6, seed=seed)
    loss[2400:] = np.log(50257) * _noise(rng, n - 2400, 2e-5)
    return _logged({"train/loss": loss})


def binary_never_learns(seed: int = 0) -> Series:
    """A binary classifier on labels it cannot learn: at ln 2 from its first step to its last, the grad norm
    alive; nothing happened to it (no_progress, not divergence)."""
    rng = np.random.default_rng(seed)
    n = 2000
    loss = np.log(2) * _noise(rng, n, 5e-4)
    return _logged({"train/loss": loss, "train/grad_norm": grad_norm(n, start=0.3, end=0.25, seed=seed + 1)})


def binary_thrash_then_learns(seed: int = 0) -> Series:
    """The same thrashing start, but the classifier then learns to ~0.25: early instability, not chance."""
    rng = np.random.default_rng(seed)
    n = 2000
    t = np.arange(n)
    loss = (0.25 + 0.44 * np.exp(-t / 400)) * _noise(rng, n, 0.03)
    loss[5:150] *= np.exp(np.abs(rng.normal(0.8, 0.9, 145)))
    return _logged({"train/loss": loss})


# -- where a log starts ----------------------------------------------------------------------------

def resumed_log_with_resume_spike(seed: int = 0) -> Series:
    """The log of a resumed job whose step counter starts again at 0: an LM at 3.45, the cosine LR already
    at 60% of its configured 6e-4 and falling, and the resume transient (Adam's moments rebuilt) lifting
    the loss 1.25x for ~20 logged points. Not a fresh start: no early phase, no early instability."""
    rng = np.random.default_rng(seed)
    n = 400  # every 10 steps
    steps = np.arange(n) * 10
    t = np.arange(n) / n
    loss = (3.25 + 0.2 * np.exp(-t * 3)) * _noise(rng, n, 0.02)
    loss[1:25] *= 1 + 0.25 * np.exp(-np.arange(24) / 8)
    lr = 0.5 * 6e-4 * (1 + np.cos(np.pi * (0.35 + 0.65 * t)))
    return _logged({"train/loss": loss, "train/lr": lr}, steps)


def first_point_one_low_batch(seed: int = 0) -> Series:
    """A fine-tune whose first logged loss is one easy batch (1.7, the HF Trainer's logging_first_step logs one
    batch where later logs average ten) while training starts at ~2.3 and learns to ~1.9: the first point is not
    the initial loss ("never got below its start" would be wrong)."""
    rng = np.random.default_rng(seed)
    n = 600
    t = np.arange(n)
    loss = (1.9 + 0.4 * np.exp(-t / 150)) * _noise(rng, n, 0.01)
    loss[0] = 1.7
    return _logged({"train/loss": loss})


def fine_tune_with_warmup_and_early_blip(seed: int = 0) -> Series:
    """A fine-tune starts low (2.1, far below ln(50257)) at the bottom of its warmup, and the loss jumps 2.5x at
    steps 3-5: its early phase is real (early instability), though its first loss is far below ln(vocab)."""
    rng = np.random.default_rng(seed)
    n = 1500
    t = np.arange(n)
    loss = (1.2 + 0.9 * np.exp(-t / 300)) * _noise(rng, n, 0.02)
    loss[3:6] *= [2.5, 2.8, 2.2]
    lr = np.minimum(1.0, (t + 1) / 100) * 2e-5
    return _logged({"train/loss": loss, "train/lr": lr})


# -- departures against the run's own noise band ------------------------------------------------------

def slingshot_spikes(seed: int = 0, *, height: float = 3.0, decay: float = 1.2) -> Series:
    """Recurring spikes at irregular intervals (the slingshot effect of Adam at a high LR): each a sharp peak
    (1 + height)x the level that decays back over several logged points; only one or two points sit at half
    the height, but the loss takes four or more to come back (issue 16: these were "one-point blips")."""
    rng = np.random.default_rng(seed)
    n = 3000
    t = np.arange(n)
    loss = (0.3 + 2.0 * np.exp(-t / 300)) * _noise(rng, n, 0.04)
    at = 600
    while at < n - 60:
        k = np.arange(12)
        loss[at:at + 12] *= 1 + height * np.exp(-k / decay)
        at += int(rng.integers(250, 700))
    return _logged({"train/loss": loss})


def noisy_fine_tune(seed: int = 0, *, sigma: float = 0.15, n: int = 300) -> Series:
    """A small fine-tune logged every 10 steps by the HF Trainer (4 decimals): heavy-tailed batch noise of
    ~15%, with many ordinary high points and patches of them (stable)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    loss = (0.6 + 0.1 * np.exp(-t / 20)) * _noise(rng, n, sigma, heavy=True)
    return _logged({"loss": np.round(loss, 4)}, np.arange(n) * 10 + 10)


def grokking_curves(seed: int = 0, *, train_every: int = 1) -> Series:
    """Grokking (modular arithmetic, weight decay): the train loss falls to ~1e-4 by step 2,000; the val loss
    rises from 4.0 to ~12 while the model memorises, sits there, then falls to ~0.01 after step 30,000."""
    rng = np.random.default_rng(seed)
    n = 1000
    steps = np.arange(n) * 100
    t = steps.astype(float)
    train = (4.6 * np.exp(-t / 300) + 1e-4) * _noise(rng, n, 0.1)
    val = np.where(t < 1000, 4.6 - 0.6 * t / 1000, 4.0 + 8 * (1 - np.exp(-(t - 1000) / 1500)))
    val = np.where(t > 30000, 12 * np.exp(-(t - 30000) / 2000) + 0.01, val) * _noise(rng, n, 0.02)
    return {"train/loss": (steps[::train_every], train[::train_every]), "val/loss": (steps, val)}


def oscillating_never_learns(seed: int = 0) -> Series:
    """SGD at a far too high LR: the loss swings 1x-7x around chance (ln 10) for the whole run, its centre
    drifting up: it ends above where it started (never learned)."""
    rng = np.random.default_rng(seed)
    n = 2000
    t = np.arange(n)
    loss = 2.3 * np.exp(np.sin(t / 37.0) + 0.4 * rng.standard_normal(n)) * np.exp(0.0002 * t)
    return _logged({"train/loss": loss})


def oscillating_but_learning(seed: int = 0) -> Series:
    """The same swings, but their centre falls 2.3 -> 0.5: not a run that never learned."""
    rng = np.random.default_rng(seed)
    n = 2000
    t = np.arange(n)
    loss = (0.5 + 1.8 * np.exp(-t / 400)) * np.exp(0.5 * np.sin(t / 37.0) + 0.1 * rng.standard_normal(n))
    return _logged({"train/loss": loss})


def sparse_spike_eval_confirms(seed: int = 0, *, eval_spikes: bool = True) -> Series:
    """A train loss logged every 200 steps and an eval loss every 100: at step 5,800 the train loss spikes 2.6x for
    one logged point and the eval loss jumps 2.8x at 5,700-5,800 with it (a real spike: the held-out average moved),
    or with ``eval_spikes=False`` the eval loss does not move (that train point was one batch's own loss)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, 10001, 100)
    level = 1.4 + 9.4 * np.exp(-t / 900)
    val = level * _noise(rng, t.size, 0.02)
    train = level[::2] * _noise(rng, t[::2].size, 0.04)
    train[29] *= 2.6  # step 5,800
    if eval_spikes:
        val[57:59] *= [2.8, 2.3]
    return {"train_loss": (t[::2], train), "val_loss": (t, val)}


# -- instability -------------------------------------------------------------------------------

def lr_bump_step_change(at: int = 3000, seed: int = 0) -> Series:
    """An LR bump (x20) at one step: the loss jumps 3x and recovers slowly over ~1500 steps."""
    rng = np.random.default_rng(seed)
    n = 6000
    t = np.arange(n)
    loss = (0.35 + 2.0 * np.exp(-t / 700)) * _noise(rng, n, 0.04)
    rec = np.exp(-(t[at:] - at) / 500)
    loss[at:] *= 1 + 2.0 * rec
    lr = np.full(n, 1e-3)
    lr[at:] = 2e-2
    return _logged({"train/loss": loss, "train/lr": lr})


def sustained_regime(seed: int = 0) -> Series:
    """At a too-high peak LR the loss rises after warmup and thrashes for ~2,800 steps (2-50x), coming
    back only as the cosine LR decays (a sweep's lr=0.3 run)."""
    rng = np.random.default_rng(seed)
    n = 500  # logged every 10 steps
    steps = np.arange(n) * 10
    loss = lm_loss(n, start=9.2, floor=3.3, sigma=0.03, seed=seed)
    bad = (steps >= 300) & (steps <= 3100)
    loss[bad] *= np.exp(np.abs(rng.normal(0.9, 1.1, bad.sum())))
    return _logged({"train/loss": loss, "train/lr": cosine_lr(n, 0.3, 25)}, steps)


def short_spike_grad_led(seed: int = 0) -> Series:
    """A loss spike lasting a few logged points, led by a grad-norm spike 15x its running median."""
    rng = np.random.default_rng(seed)
    n = 4000
    t = np.arange(n)
    loss = (0.6 + 1.7 * np.exp(-t / 600)) * _noise(rng, n, 0.03)
    loss[2500:2506] *= np.array([2.5, 3.2, 2.8, 2.0, 1.5, 1.2])
    g = grad_norm(n, seed=seed + 1)
    g[2498] *= 15
    return _logged({"train/loss": loss, "train/grad_norm": g})


def early_adam_blip(seed: int = 0) -> Series:
    """Adam without warmup: loss 3x the initial value at steps 2-3, then ordinary (noisy) training."""
    rng = np.random.default_rng(seed)
    n = 3000
    t = np.arange(n)
    loss = (0.5 + 1.8 * np.exp(-t / 400)) * _noise(rng, n, 0.06, heavy=True)
    loss[2:4] = loss[0] * np.array([3.1, 2.2])
    return _logged({"train/loss": loss, "train/grad_norm": grad_norm(n, seed=seed + 1)})


# -- must not flag -----------------------------------------------------------------------------

def grad_only_spikes(seed: int = 0) -> Series:
    """The grad norm spikes 20x a few times; the loss does not respond."""
    rng = np.random.default_rng(seed)
    n = 3000
    t = np.arange(n)
    loss = (0.8 + 2.0 * np.exp(-t / 400)) * _noise(rng, n, 0.04)
    g = grad_norm(n, seed=seed + 1)
    g[[700, 1500, 2400]] *= 20
    return _logged({"train/loss": loss, "train/grad_norm": g})


def fp16_skipped_steps(seed: int = 0) -> Series:
    """Isolated inf/NaN grad norms from the loss scaler; the loss is unaffected and the LR holds."""
    series = grad_only_spikes(seed)
    g = grad_norm(3000, seed=seed + 1)
    g[[0, 1, 300, 1200, 2500]] = [np.inf, np.inf, np.nan, np.inf, np.inf]
    series["train/grad_norm"] = (np.arange(3000), g)
    return series


def overfitting(seed: int = 0) -> Series:
    """Train loss keeps falling (HF-style: every 10 steps, 4 decimals); eval loss rises after step 1000."""
    rng = np.random.default_rng(seed)
    steps = np.arange(10, 5001, 10)
    t = steps / 5000
    train = np.round((0.002 + 0.3 * np.exp(-t / 0.08)) * _noise(rng, steps.size, 0.1), 4)
    train = np.maximum(train, 0.0001)
    ev_steps = np.arange(250, 5001, 250)
    ev = 0.32 + 0.1 * np.clip(ev_steps / 5000 - 0.2, 0, None) + 0.002 * rng.standard_normal(ev_steps.size)
    return {"train/loss": (steps, train), "eval/loss": (ev_steps, ev)}


def cosine_tail_wiggle(seed: int = 0) -> Series:
    """2.5 -> 0.01 over a long cosine schedule; at the end a bump 0.01 -> 0.024 (0.6% of the progress)."""
    rng = np.random.default_rng(seed)
    n = 5000
    t = np.arange(n)
    loss = (0.01 + 2.49 * np.exp(-t / 500)) * _noise(rng, n, 0.08, heavy=True)
    loss[4200:4260] *= 2.4
    return _logged({"train/loss": loss, "train/lr": cosine_lr(n, 3e-4, 100)})


def rounded_tiny_loss(seed: int = 0) -> Series:
    """HF rounds to 4 decimals: a loss that reaches 1e-4 steps 0.0001 <-> 0.0002."""
    rng = np.random.default_rng(seed)
    steps = np.arange(10, 5001, 10)
    loss = np.round(0.3 * np.exp(-steps / 400) * _noise(rng, steps.size, 0.1), 4)
    return _logged({"train/loss": np.maximum(loss, 0.0001)}, steps)


def sawtooth_and_step_lr(seed: int = 0) -> Series:
    """Per-epoch sawtooth (each epoch starts 15% higher, data order) and two step-LR drops."""
    rng = np.random.default_rng(seed)
    n = 6000
    t = np.arange(n)
    loss = (0.5 + 1.8 * np.exp(-t / 1200)) * _noise(rng, n, 0.03)
    loss *= 1 + 0.15 * np.exp(-(t % 500) / 60)
    loss[2000:] *= 0.6
    loss[4000:] *= 0.7
    return _logged({"train/loss": loss})


def plateau_then_learning(seed: int = 0) -> Series:
    """A long plateau at the initial loss, then learning (a slow start is not instability)."""
    rng = np.random.default_rng(seed)
    n = 3000
    t = np.arange(n)
    loss = np.where(t < 1200, 2.3, 0.3 + 2.0 * np.exp(-(t - 1200) / 300)) * _noise(rng, n, 0.02)
    return _logged({"train/loss": loss})


def small_batch_noise(seed: int = 0) -> Series:
    """Batch size 4: heavy-tailed per-step noise (30%) around a falling loss."""
    rng = np.random.default_rng(seed)
    n = 5000
    t = np.arange(n)
    loss = (0.7 + 1.6 * np.exp(-t / 800)) * _noise(rng, n, 0.3, heavy=True)
    return _logged({"train/loss": loss})


def sparse_eval_decides(seed: int = 0) -> Series:
    """Train loss logged every 500 steps (5 points), eval every 132: the eval loss got worse and stayed."""
    rng = np.random.default_rng(seed)
    ev_steps = np.arange(132, 2700, 132)
    ev = 2.55 + 1.2 * np.clip(ev_steps / 1000, 0, 1) - 0.3 * np.clip((ev_steps - 1000) / 1600, 0, 1)
    ev = ev * _noise(rng, ev_steps.size, 0.04)
    ev[0] = 2.55
    tr_steps = np.arange(500, 2501, 500)
    return {"train/loss": (tr_steps, np.array([1.24, 2.03, 2.16, 1.99, 1.79])), "eval/loss": (ev_steps, ev)}


def explode_mid_run(seed: int = 0) -> Series:
    """A run that learns for 1500 steps under warmup + cosine decay (peak 1e-3), then blows up: the loss grows
    100x and goes NaN, the grad norm from ~1 to 1e4 (what a clip threshold must not be chosen from)."""
    rng = np.random.default_rng(seed)
    n, at = 2000, 1500
    t = np.arange(n)
    loss = (0.6 + 1.7 * np.exp(-t / 300)) * _noise(rng, n, 0.04)
    loss[at:at + 300] = loss[at] * np.geomspace(1.5, 150, 300)
    loss[at + 300:] = np.nan
    g = grad_norm(n, start=2.0, end=1.0, seed=seed + 1)
    g[at:at + 300] = np.geomspace(5, 1e4, 300)
    g[at + 300:] = np.nan
    return _logged({"train/loss": loss, "train/grad_norm": g, "train/lr": cosine_lr(n, 1e-3, 100)})
