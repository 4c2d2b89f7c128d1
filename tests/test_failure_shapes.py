"""Every shape of spec/failure-shapes.md gets the verdict a careful practitioner gives it: the flagged
side and the must-not-flag side, on faithful fixtures (tests/shapes.py) written to real log formats."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from analyzer.config import AnalysisConfig
from analyzer.pipeline import diagnose_run
from analyzer.roles import assign_roles
from analyzer.types import Diagnosis, Run
from tests import shapes

CFG = AnalysisConfig()


def run_of(series: shapes.Series, *, run_id: str = "r", hparams: dict | None = None) -> Run:
    frames = [pl.DataFrame({"tag": [tag] * len(v), "step": s.astype(np.int64), "wall_time": np.zeros(len(v)),
                            "value": v.astype(float)}) for tag, (s, v) in series.items()]
    roles = assign_roles({tag: len(v) for tag, (_, v) in series.items()})
    return Run(run_id, "tensorboard", (), pl.concat(frames), hparams or {}, (), roles)


def diagnose(series: shapes.Series, **kw: object) -> Diagnosis:
    d, _ = diagnose_run(run_of(series, **kw), CFG)  # type: ignore[arg-type]
    return d


def kinds(d: Diagnosis) -> list[str]:
    return [f.kind for f in d.findings]


# -- divergence -----------------------------------------------------------------------------------

def test_collapse_to_chance_after_learning_is_divergence_with_the_grad_floor():
    d = diagnose(shapes.collapse_to_chance())
    assert d.verdict == "divergence", [f.message for f in d.findings]
    (f,) = [f for f in d.findings if f.kind == "divergence_collapse"]
    assert 1390 <= f.start_step <= 1410 and f.evidence.grad_drop >= 10
    assert f.evidence.share_undone > 0.9 and "dead network" in f.message


@pytest.mark.parametrize("with_grad", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pinned_at_ln_2_after_thrashing_is_divergence_that_names_k(seed, with_grad):
    d = diagnose(shapes.binary_thrash_then_uniform(seed, with_grad=with_grad))
    assert d.verdict == "divergence", [f.message for f in d.findings]
    (f,) = [f for f in d.findings if f.verdict == "divergence"]
    assert f.evidence.chance_k == 2 and "ln 2" in f.message and 5 <= f.start_step <= 160  # the blow-up or the plateau


def test_an_lm_pinned_at_ln_vocab_names_its_vocabulary():
    d = diagnose(shapes.lm_collapse_to_uniform(), hparams={"vocab_size": 50257})
    assert d.verdict == "divergence", [f.message for f in d.findings]
    (f,) = [f for f in d.findings if f.verdict == "divergence"]
    assert f.evidence.chance_k == 50257 and "vocab_size" in f.message and 2390 <= f.start_step <= 2410


@pytest.mark.parametrize("seed", [0, 1])
def test_at_chance_from_the_start_is_no_progress_and_thrash_then_learning_is_early(seed):
    never = diagnose(shapes.binary_never_learns(seed))
    assert never.verdict == "stable" and "no_progress" in kinds(never), [f.message for f in never.findings]
    learns = diagnose(shapes.binary_thrash_then_learns(seed))
    assert learns.verdict == "early_instability", [f.message for f in learns.findings]


def test_explode_in_the_first_steps_then_dead_is_divergence_not_settled():
    d = diagnose(shapes.explode_then_dead())
    assert d.verdict == "divergence", [f.message for f in d.findings]
    assert "divergence_dead_after_blowup" in kinds(d)
    assert not any("settled" in f.message and f.verdict == "early_instability" for f in d.findings)


def test_never_learns_at_a_high_lr_after_a_blow_up_is_divergence():
    d = diagnose(shapes.lm_blowup_to_unigram())
    assert d.verdict == "divergence", [f.message for f in d.findings]


def test_an_explosion_in_the_last_steps_of_the_log_is_divergence():
    series = shapes.short_spike_grad_led()
    steps, loss = series["train/loss"]
    loss[3960:] = loss[3960:] * np.geomspace(5, 400, 40)  # exploding when the log ends
    d = diagnose(series)
    assert d.verdict == "divergence", [f.message for f in d.findings]
    assert 3950 <= d.findings[0].start_step <= 3965


def test_sparse_train_loss_lets_the_eval_loss_decide_and_says_so():
    d = diagnose(shapes.sparse_eval_decides())
    assert d.verdict == "divergence" and "judged_on_eval_loss" in kinds(d)
    f = d.findings[0]
    assert f.evidence.signal == "eval_loss" and "eval loss" in f.message


# -- instability ------------------------------------------------------------------------------------

@pytest.mark.parametrize("at,verdict", [(3000, "mid_instability"), (400, "early_instability")])
def test_step_change_that_recovers_slowly_is_instability_by_where_it_starts(at, verdict):
    d = diagnose(shapes.lr_bump_step_change(at=at))
    assert d.verdict == verdict, [f.message for f in d.findings]
    f = next(f for f in d.findings if f.verdict == verdict)
    assert abs(f.start_step - at) <= 10 and f.evidence.ratio >= 2


def test_sustained_unstable_regime_is_reported_as_one_regime_with_its_span():
    d = diagnose(shapes.sustained_regime())
    assert d.verdict == "early_instability", [f.message for f in d.findings]
    (f,) = [f for f in d.findings if f.verdict == "early_instability"]
    assert f.evidence.shape == "regime" and f.start_step <= 400 and f.evidence.span_steps >= 2000
    assert "as the LR decayed" in f.message
    assert not [f for f in d.findings if f.verdict == "mid_instability"]


def test_short_spike_led_by_the_grad_norm_is_mid_instability():
    d = diagnose(shapes.short_spike_grad_led())
    assert d.verdict == "mid_instability"
    ev = d.findings[0].evidence
    assert ev.start_step == 2500 and ev.grad_spike_step == 2498 and ev.grad_leads_by_steps > 0


def test_early_blip_then_ordinary_noise_is_early_not_mid():
    d = diagnose(shapes.early_adam_blip())
    assert d.verdict == "early_instability", [f.message for f in d.findings]
    assert d.findings[0].evidence.peak_step == 2


# -- where a log starts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("hparams", [{"lr": 6e-4}, {"learning_rate": 6e-4, "warmup_steps": 2000},
                                     {"warmup_steps": 2000}, {"vocab_size": 50257}])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_log_that_starts_mid_training_has_no_early_phase(seed, hparams):
    d = diagnose(shapes.resumed_log_with_resume_spike(seed), hparams=hparams)
    assert d.verdict == "stable", [f.message for f in d.findings]
    assert "no_progress" not in kinds(d)


def test_without_the_schedule_a_resumed_log_reads_as_a_fresh_start():
    """The other side: with neither an LR nor settings, nothing says the log starts late."""
    series = shapes.resumed_log_with_resume_spike(0)
    del series["train/lr"]
    from analyzer.detect.context import measure_run
    ctx = measure_run(run_of(series), CFG)
    assert not ctx.log_start.mid_training and ctx.early_cut >= 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_low_first_batch_is_not_the_initial_loss(seed):
    d = diagnose(shapes.first_point_one_low_batch(seed))
    assert d.verdict == "stable", [f.message for f in d.findings]
    assert "no_progress" not in kinds(d)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_fine_tune_at_the_bottom_of_its_warmup_keeps_its_early_phase(seed):
    d = diagnose(shapes.fine_tune_with_warmup_and_early_blip(seed), hparams={"vocab_size": 50257, "lr": 2e-5})
    assert d.verdict == "early_instability", [f.message for f in d.findings]


# -- departures against the run's own noise band ------------------------------------------------------------

@pytest.mark.parametrize("height, decay", [(3.0, 1.2), (1.0, 2.0), (2.2, 2.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recurring_spikes_that_take_several_points_to_come_back_are_mid_instability(seed, height, decay):
    d = diagnose(shapes.slingshot_spikes(seed, height=height, decay=decay))
    assert d.verdict == "mid_instability", [f.message for f in d.findings]


@pytest.mark.parametrize("sigma, n", [(0.08, 150), (0.15, 300), (0.25, 300), (0.15, 1000)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_noisy_fine_tune_is_not_flagged_for_its_ordinary_high_points(seed, sigma, n):
    d = diagnose(shapes.noisy_fine_tune(seed, sigma=sigma, n=n))
    assert d.verdict == "stable", [f.message for f in d.findings]


@pytest.mark.parametrize("train_every", [1, 200])  # dense train loss, or so sparse that the eval loss is judged
@pytest.mark.parametrize("seed", [0, 1])
def test_grokking_is_not_instability_and_is_said(seed, train_every):
    d = diagnose(shapes.grokking_curves(seed, train_every=train_every))
    assert d.verdict == "stable", [f.message for f in d.findings]
    if train_every > 1:
        assert "grokking" in kinds(d)


def test_an_eval_hump_while_the_train_loss_is_still_high_is_still_instability():
    """The other side: the same hump with the train loss not near zero is the eval loss's instability."""
    series = shapes.grokking_curves(0, train_every=200)
    steps, train = series["train/loss"]
    series["train/loss"] = (steps, np.full(train.size, 3.5))
    d = diagnose(series)
    assert d.verdict != "stable" and "grokking" not in kinds(d), [f.message for f in d.findings]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_run_oscillation_that_ends_above_its_start_is_divergence(seed):
    d = diagnose(shapes.oscillating_never_learns(seed))
    assert d.verdict == "divergence" and "swung up and down" in d.findings[0].message, [f.message for f in d.findings]
    learns = diagnose(shapes.oscillating_but_learning(seed))
    assert learns.verdict != "divergence", [f.message for f in learns.findings]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_one_point_train_spike_the_eval_loss_shows_too_is_a_spike(seed):
    d = diagnose(shapes.sparse_spike_eval_confirms(seed))
    assert d.verdict == "mid_instability" and "eval loss rose with it" in d.findings[0].message, \
        [f.message for f in d.findings]
    blip = diagnose(shapes.sparse_spike_eval_confirms(seed, eval_spikes=False))
    assert blip.verdict == "stable" and "one_point_blips" in kinds(blip), [f.message for f in blip.findings]


# -- must not flag ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [shapes.grad_only_spikes, shapes.fp16_skipped_steps, shapes.overfitting,
                                   shapes.cosine_tail_wiggle, shapes.rounded_tiny_loss, shapes.sawtooth_and_step_lr,
                                   shapes.plateau_then_learning, shapes.small_batch_noise])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_not_instability(shape, seed):
    d = diagnose(shape(seed))
    assert d.verdict == "stable", [f.message for f in d.findings]


def test_the_info_findings_say_what_they_saw():
    assert "grad_norm_outliers" in kinds(diagnose(shapes.grad_only_spikes()))
    assert "fp16_skipped_steps" in kinds(diagnose(shapes.fp16_skipped_steps()))
    assert "overfitting" in kinds(diagnose(shapes.overfitting()))
