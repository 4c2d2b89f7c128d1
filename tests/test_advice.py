"""Advice a user can act on: for a diverged run it comes from the steps before it departed (the clip
threshold, the LR in force there), warmup is sized to the run's real length, and advice to log a metric
never stands in for a fix."""

from __future__ import annotations

import numpy as np

from analyzer.recommend.summary import top_fix
from tests import shapes
from tests.test_failure_shapes import diagnose


def _by_kind(d):
    return {r.kind: r for r in d.recommendations}


def test_a_diverged_run_is_clipped_at_its_grad_norm_before_the_departure_not_the_diverged_steps():
    series = shapes.explode_mid_run()
    d = diagnose(series)
    assert d.verdict == "divergence", [f.message for f in d.findings]
    clip = _by_kind(d)["clip"]
    before = clip.params["from_steps_before"]
    assert 1400 <= before <= 1560  # where it left its course (the regime that ran into the explosion)
    steps, grad = series["train/grad_norm"]
    healthy = grad[(steps < before) & np.isfinite(grad)]
    assert clip.params["max_norm"] == round(float(np.percentile(healthy, 90)), 6) < 3  # not ~5e3
    assert f"before the run diverged at step {before:,}" in clip.rationale


def test_lower_lr_names_the_lr_in_force_where_it_diverged():
    series = shapes.explode_mid_run()
    d = diagnose(series)
    lower = _by_kind(d)["lower_lr"]
    at = lower.params["at_step"]
    steps, lr = series["train/lr"]
    assert lower.params["current_lr"] == lr[steps == at][0] < 0.5 * lr.max()  # the schedule's value, not its peak
    assert lower.params["suggested_lr"] == lower.params["current_lr"] * 0.3
    assert f"in force at step {at:,}" in lower.rationale
    assert d.recommendations[-1].kind != "log_metric" or "lower_lr" in [r.kind for r in d.recommendations[:-1]]


def test_warmup_is_sized_to_the_length_the_log_spans_even_at_negative_steps():
    steps, loss = shapes.early_adam_blip()["train/loss"]
    shifted = {"train/loss": (steps - 3000, loss)}  # logged at steps -3000..-1
    d = diagnose(shifted)
    warm = _by_kind(d)["warmup"]
    assert warm.params["max_train_steps"] == 2999
    assert warm.params["warmup_steps"] <= 300 and max(warm.params["sweep_warmup_steps"]) <= 300  # not 100,000


def test_a_fix_comes_before_advice_to_log_a_metric():
    for name in ("collapse_to_chance", "short_spike_grad_led", "lr_bump_step_change", "explode_then_dead"):
        series = {"train/loss": getattr(shapes, name)()["train/loss"]}  # no grad norm logged
        d = diagnose(series)
        assert d.verdict in ("divergence", "mid_instability", "early_instability"), name
        kinds = [r.kind for r in d.recommendations]
        assert kinds and kinds[0] != "log_metric", (name, kinds)
        first_log = kinds.index("log_metric") if "log_metric" in kinds else len(kinds)
        assert all(k != "log_metric" for k in kinds[:first_log]) and first_log >= 1
        assert top_fix(d.recommendations) and not top_fix(d.recommendations).startswith("log"), name


def test_an_early_divergence_gets_warmup_at_the_lr_it_diverged_at_not_ten_times_it():
    d = diagnose(shapes.explode_then_dead(), hparams={"lr": 3e-3})
    warm = _by_kind(d)["warmup"]
    assert warm.params["sweep_base_lr"] == warm.params["lr"] == 3e-3
    assert "diverged" in warm.rationale and "10x" not in warm.rationale.split("Playbook")[0]
    assert top_fix(d.recommendations) == f"warmup {warm.params['warmup_steps']} steps"
