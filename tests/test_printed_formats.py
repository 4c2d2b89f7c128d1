"""The printed-format writers of tests/printed_formats.py are well formed, proven without the reader:
each file read back with its format's own regex oracle gives every point, at the printed step, with
exactly the text the tool's rounding gives (NaN and inf included)."""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import pytest

from tests.printed_formats import FORMATS, NOT_PRINTED, cfmt, example_curve, keras_num, lightning_num, make_curve, write


def _read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:  # keep the '\r' of progress-bar redraws
        return f.read()


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_point_round_trips_through_the_format_oracle(tmp_path, name):
    spec = FORMATS[name]
    curve = example_curve(name)
    path = write(name, tmp_path / spec.filename, curve)
    found = spec.oracle(_read(path))
    expected = spec.expected(curve)
    assert expected, name
    for role, points in expected.items():
        assert found.get(role) == points, f"{name}: {role}"
    metric_lines = sum(len(expected.get(k, [])) for k in ("train", "eval"))
    assert metric_lines >= 50 or name == "modded_nanogpt_2025", (name, metric_lines)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_nan_and_inf_are_printed_where_the_curve_has_them(tmp_path, name):
    spec = FORMATS[name]
    curve = example_curve(name)
    expected = spec.expected(curve)
    role = "train" if "train" in expected else "eval"
    values = curve.train_loss if role == "train" else curve.eval_loss
    texts = [t for _, t in expected[role]]
    render = spec.render["train_loss" if role == "train" else "eval_loss"]
    assert render(math.nan) in texts
    assert any(math.isnan(v) for v in values)
    if role == "train":  # the fp16-style overflow spike, finite again afterwards
        assert render(math.inf) in texts
    found = spec.oracle(_read(write(name, tmp_path / spec.filename, curve)))
    assert [t for _, t in found[role]] == texts


def test_specs_name_their_source_and_roles():
    for name, spec in FORMATS.items():
        assert ("/" in spec.source or spec.source.startswith("hand-written")) and ("{" in spec.source or "%" in spec.source), name
        assert spec.roles.get("train_loss") or spec.roles.get("eval_loss"), name
        assert set(spec.render) >= {r for r, k in spec.roles.items() if k and r in ("train_loss", "eval_loss")}, name
        assert spec.step and spec.nan_text, name


def test_a_healthy_curve_prints_no_nan_loss(tmp_path):
    for name, spec in FORMATS.items():
        curve = example_curve(name, diverge=False)
        expected = spec.expected(curve)
        assert all(math.isfinite(float(t)) for pts in expected.values() for _, t in pts
                   if t not in ("<omitted>",) and t.strip("'\"") not in ("n/a",)), name


def test_eval_before_training_is_printed_only_by_tools_that_validate_at_step_0():
    curve = make_curve(60, every=10, eval_at_zero=True)
    printed_at_0 = {n for n, s in FORMATS.items() if s.roles.get("eval_loss") and s.eval_step_of(curve, 0) != NOT_PRINTED}
    assert {"llmc_stdout", "llmc_mainlog", "nanogpt", "modded_nanogpt_2024", "parameter_golf"} <= printed_at_0
    assert not printed_at_0 & {"megatron_lm", "hf_trainer_float", "lightning_tqdm", "fairseq_simple"}


def test_cfmt_prints_what_glibc_printf_prints():
    libc = ctypes.CDLL(None)
    buf = ctypes.create_string_buffer(64)
    neg_nan = math.copysign(math.nan, -1.0)
    for fmt in ("%7.6f", "%+.2f", "%.4f", "%6.4f", "%.2f", "%f"):
        for v, negative in ((math.nan, False), (neg_nan, True), (math.inf, False), (-math.inf, False), (3.14159, False)):
            libc.snprintf(buf, 64, fmt.encode(), ctypes.c_double(v))
            assert cfmt(fmt, v, negative_nan=negative) == buf.value.decode(), (fmt, v)


def test_lightning_num_matches_lightning():
    # Tqdm.format_num of lightning 2.6.6 (lightning/pytorch/callbacks/progress/tqdm_progress.py), run once by hand:
    # importing Lightning costs seconds, so its outputs are pinned here.
    pinned = {math.nan: "nan.0", 2.31456: "2.310", 1.5e-5: "1.5e-5", 0.000123: "0.000123", 123456.0: "1.23e+5", 12.0: "12.00"}
    for v, text in pinned.items():
        assert lightning_num(v) == text
    assert lightning_num(3) == "3"


def test_keras_switches_to_exponent_notation_below_1e_3():
    assert keras_num(0.1234567) == "0.1235"
    assert keras_num(0.0004) == "4.0000e-04"
    assert keras_num(math.nan) == "nan"
