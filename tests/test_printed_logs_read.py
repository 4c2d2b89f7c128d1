"""Every printed training log of tests/printed_formats.py (36 layouts from the tools' own format strings) is
read by the text reader without a tool-specific pattern being needed, its metric roles are found, its values
are the printed ones, and its verdict is right both ways: the run that ends in NaN diverged, the healthy run is
stable."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from analyzer.ingest.load import LoadOptions
from analyzer.pipeline import analyze
from tests.printed_formats import FORMATS, example_curve, write

#: Where the role is taken by another copy of the same metric, printed with a different rounding.
ROUNDED_COPY = {("gpt_neox", "train_loss"): 5e-4}  # DeepSpeed's 'loss: %.4f' beside Megatron's 'lm_loss' .6E


def _number(text: str) -> float:
    text = text.strip().strip("'\"").replace(",", "")
    for word in ("nan", "inf"):
        text = text.replace(f"{word}.0", word)  # Lightning's format_num prints nan.0, inf.0
    try:
        return float(text)
    except ValueError:
        return math.nan


def _same(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= tol * max(1.0, abs(a))


def _found_in_order(expected: list[float], got: list[float], tol: float) -> int:
    """How many expected values appear in ``got`` in their order (a tool may also print running means between)."""
    j = hits = 0
    for e in expected:
        while j < len(got):
            j += 1
            if _same(e, got[j - 1], tol):
                hits += 1
                break
    return hits


def _analyze(tmp_path: Path, name: str, diverge: bool):
    spec = FORMATS[name]
    folder = tmp_path / name
    curve = example_curve(name, diverge=diverge)
    write(name, folder / spec.filename, curve)
    return spec, curve, analyze([folder], load_options=LoadOptions(cache_dir=None))


READ = list(FORMATS)


@pytest.mark.parametrize("name", READ)
def test_each_role_is_found_with_the_printed_values(tmp_path, name):
    spec, curve, report = _analyze(tmp_path, name, diverge=True)
    (d,) = report.diagnoses
    expected = spec.expected(curve)
    for role, key in (("train_loss", "train"), ("eval_loss", "eval"), ("grad_norm", "grad_norm"), ("lr", "lr")):
        if not spec.roles.get(role) or not expected.get(key):
            continue
        tag = getattr(d.run.roles, role)
        assert tag is not None, f"{name}: no {role} (printed as {spec.roles[role]!r}) among {d.run.tags}"
        want = [_number(text) for _, text in expected[key]]
        got = d.run.series(tag).values.tolist()
        tol = ROUNDED_COPY.get((name, role), 1e-9)
        hits = _found_in_order(want, got, tol)
        # Megatron leaves the 'lm loss' item out of a line whose loss is NaN (`if avg > 0.0`): those are not read.
        assert hits >= 0.9 * len(want), f"{name} {role} '{tag}': {hits}/{len(want)} printed values read"


@pytest.mark.parametrize("name", READ)
def test_a_run_that_ends_in_nan_diverged_and_a_healthy_one_is_stable(tmp_path, name):
    _, curve, report = _analyze(tmp_path / "nan", name, diverge=True)
    (d,) = report.diagnoses
    assert d.verdict == "divergence", [f.message for f in d.findings]
    _, _, report = _analyze(tmp_path / "ok", name, diverge=False)
    (d,) = report.diagnoses
    assert d.verdict == "stable", [f.message for f in d.findings]

