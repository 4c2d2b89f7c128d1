"""What a job printed about its stability is evidence for the verdict at its step (a Megatron-LM stdout log)."""

from __future__ import annotations

import numpy as np

from analyzer import AnalysisConfig, diagnose
from analyzer.ingest.load import LoadOptions
from tests.test_text_logs import megatron_line

CFG = AnalysisConfig()
OPTS = LoadOptions(cache_dir=None)
OVERFLOW = "Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to {:.1f}\n"


def _loss(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (2.0 + 6.0 * np.exp(-t / 60)) * np.exp(0.01 * rng.standard_normal(n))


def _diagnose(tmp_path, text: str):
    (tmp_path / "slurm-1234.out").write_text(text)
    report = diagnose([tmp_path], config=CFG, load_options=OPTS)
    (d,) = report.diagnoses
    assert d.run.format == "text_log" and d.run.roles.train_loss == "lm loss"
    return d


def test_isolated_overflow_skips_with_the_loss_unaffected_are_info(tmp_path):
    loss, text, scale = _loss(400, 1), "", 65536.0
    for i, it in enumerate(range(10, 4010, 10)):
        if i in (50, 180, 300):  # the loss scaler backing off now and then: normal fp16 training
            scale /= 2
            text += OVERFLOW.format(scale)
        text += megatron_line(it, float(loss[i]), scale=scale, skipped=int(i in (50, 180, 300)))
    d = _diagnose(tmp_path, text)
    assert d.verdict == "stable"
    info = next(f for f in d.findings if f.kind == "printed_messages")
    assert info.evidence.as_dict()["counts"] == {"loss_scale": 3, "overflow_skip": 3, "skipped_iterations": 3}
    assert info.evidence.loss_scale_first == 65536.0 and info.evidence.loss_scale_last == 8192.0


def test_overflow_skips_inside_a_spike_are_quoted_in_its_finding(tmp_path):
    loss, text, scale = _loss(400, 2), "", 65536.0
    loss[250:262] *= np.linspace(3.0, 1.1, 12)  # a mid-training spike that recovers
    for i, it in enumerate(range(10, 4010, 10)):
        if 250 <= i < 255:
            scale /= 2
            text += OVERFLOW.format(scale)
        text += megatron_line(it, float(loss[i]), scale=scale, skipped=int(250 <= i < 255))
    d = _diagnose(tmp_path, text)
    assert d.verdict == "mid_instability"
    mid = next(f for f in d.findings if f.verdict == "mid_instability")
    assert "The log printed 5 gradient-overflow skip(s), 5 skipped iteration(s) within it." in mid.message


def test_skipping_every_iteration_to_the_end_is_divergence(tmp_path):
    loss, text, scale = _loss(300, 3), "", 65536.0
    for i, it in enumerate(range(10, 3010, 10)):
        stuck = i >= 240  # from here the scaler overflows on every step: nothing is updated any more
        if stuck:
            scale = max(scale / 2, 1.0)
            text += OVERFLOW.format(scale)
        text += megatron_line(it, float(loss[240] if stuck else loss[i]), scale=scale, skipped=10 if stuck else 0)
    d = _diagnose(tmp_path, text)
    assert d.verdict == "divergence"
    f = next(f for f in d.findings if f.kind == "skipping_to_the_end")
    assert f.start_step == 2410 and "no longer updates the weights" in f.message and "loss scale down to 1" in f.message


def test_overflow_messages_printed_before_each_line_to_the_end_are_divergence_from_when_they_began(tmp_path):
    # apex prints "Gradient overflow. Skipping step" before the iteration's own log line (nanoGPT-style prints)
    loss, text, scale = _loss(300, 4), "", 65536.0
    for s in range(300):
        stuck = s >= 240
        if stuck or s == 51:  # one isolated skip early, then every step skips from 240 on
            scale = max(scale / 2, 1.0)
            text += OVERFLOW.format(scale)
        text += f"iter {s}: loss {float(loss[240] if stuck else loss[s]):.4f}, time 12.00ms, mfu 30.00%\n"
    (tmp_path / "train.log").write_text(text)
    report = diagnose([tmp_path], config=CFG, load_options=OPTS)
    (d,) = report.diagnoses
    assert d.verdict == "divergence"
    f = next(f for f in d.findings if f.kind == "skipping_to_the_end")
    assert f.start_step == 239  # the first of the unbroken skips sits at the line before it
