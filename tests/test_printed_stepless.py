"""Printed logs that print no step at all (analyzer/ingest/text_ordinal.py): the loss line of every step read in
order, evaluation lines at the training line before them; the verdict is right both ways; a repeated line with
no loss in it is still not a training log."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from analyzer.errors import SteadytrainError
from analyzer.ingest.load import LoadOptions
from analyzer.pipeline import analyze
from tests.printed_formats import Curve, make_curve


def write_lucidrains(path: Path, curve: Curve) -> None:
    """lucidrains' enwik8 train.py scripts (x-transformers, PaLM-pytorch, ...): a tqdm loop whose body prints
    f'training loss: {loss.item()}' every batch and f'validation loss: {loss.item()}' every VALIDATE_EVERY
    batches, and a generated sample every GENERATE_EVERY (its text and a '*' * 100 rule)."""
    out = []
    evals = curve.eval_at()
    for i, s in enumerate(curve.steps):
        out.append(f"training loss: {curve.train_loss[i]!r}")
        if s in evals:
            out.append(f"validation loss: {evals[s]!r}")
        if i % 25 == 0:
            out += ["the quick brown fox jumps over the lazy dog" + " \n\n " + "*" * 100]
    path.write_text("\n".join(out) + "\n")


def write_plain(path: Path, curve: Curve) -> None:
    """The first loop anyone writes: print(f"loss {loss.item():.4f}")."""
    path.write_text("".join(f"loss {v:.4f}\n" for v in curve.train_loss))


#: tool -> (writer, train-loss tag, eval-loss tag); ``validation loss: X`` is build-nanogpt's own line too, whose
#: known pattern names it val_loss
CASES = {"lucidrains": (write_lucidrains, "training loss", "val_loss"), "plain": (write_plain, "loss", None)}


def _report(tmp_path: Path, name: str, diverge: bool):
    writer = CASES[name][0]
    curve = make_curve(80, eval_every=10, nan_from=75 if diverge else None)
    folder = tmp_path / name
    folder.mkdir(parents=True)
    writer(folder / "train.log", curve)
    return curve, analyze([folder], load_options=LoadOptions(cache_dir=None))


@pytest.mark.parametrize("name", sorted(CASES))
def test_lines_without_a_step_are_read_in_order(tmp_path, name):
    curve, report = _report(tmp_path, name, diverge=False)
    (d,) = report.diagnoses
    _, train_tag, eval_tag = CASES[name]
    assert (d.run.roles.train_loss, d.run.roles.eval_loss) == (train_tag, eval_tag)
    train = d.run.series(train_tag)
    assert train.steps.tolist() == list(range(1, 81))
    digits = 4 if name == "plain" else 17
    assert np.allclose(train.values, [round(v, digits) for v in curve.train_loss], rtol=0, atol=1e-12)
    if eval_tag:
        # printed after the k-th training line: at step k, or k + 1 where the known pattern takes the next line's
        got = d.run.series(eval_tag).steps.tolist()
        assert len(got) == len(curve.eval_steps) and all(0 <= g - s <= 1 for g, s in zip(got, curve.eval_steps))
    assert any("no line prints a step" in n.message for n in d.run.notes)
    assert not any(n.kind == "no_step" for n in d.run.notes)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_run_that_ends_in_nan_diverged_and_a_healthy_one_is_stable(tmp_path, name):
    _, report = _report(tmp_path / "nan", name, diverge=True)
    assert report.diagnoses[0].verdict == "divergence"
    _, report = _report(tmp_path / "ok", name, diverge=False)
    assert report.diagnoses[0].verdict == "stable"


def test_a_repeated_line_without_a_loss_is_not_a_training_log(tmp_path):
    (tmp_path / "bench.log").write_text("".join(f"latency: {1.2 + math.sin(i) / 10:.3f} ms\n" for i in range(50)))
    with pytest.raises(SteadytrainError, match="no readable training logs"):
        analyze([tmp_path], load_options=LoadOptions(cache_dir=None))


def test_lines_in_order_only_when_no_line_has_a_step(tmp_path):
    # a log whose training lines print their step: a stray step-less loss line is not a run of its own order
    lines = [f"step {s} | loss {3 - s / 100:.4f}" for s in range(1, 60)] + ["final loss 2.41"] * 3
    (tmp_path / "train.log").write_text("\n".join(lines) + "\n")
    report = analyze([tmp_path], load_options=LoadOptions(cache_dir=None))
    (d,) = report.diagnoses
    assert d.run.series(d.run.roles.train_loss).steps.tolist() == list(range(1, 60))
    assert not any("no line prints a step" in n.message for n in d.run.notes)
