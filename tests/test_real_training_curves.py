"""Curves from really training models (the corpus's tuning families, benchmarks/corpus), as their
training loop wrote them (JSONL, one object per logged step), each with the label its configuration
and independent verification gave it (tests/data/corpus_runs/labels.json). One per failure shape,
both sides; held-out families are kept out of the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer.ingest.load import LoadOptions
from analyzer.pipeline import analyze

DATA = Path(__file__).parent / "data" / "corpus_runs"
LABELS = json.loads((DATA / "labels.json").read_text())


@pytest.mark.parametrize("name", sorted(LABELS))
def test_a_real_training_curve_gets_its_label(name):
    (d,) = analyze([DATA / name], load_options=LoadOptions(cache_dir=None)).diagnoses
    assert d.verdict == LABELS[name]["label"], (LABELS[name]["shape"], [f.message for f in d.findings])
