"""Regression: a printed log whose lines start with a date (Python logging's default ``%(asctime)s``) or name their
kind before the first key (``eval: step 100 loss 3.2``).

Before: ``2024-05-01`` was read as the value 2024 (the ``-05``'s sign was taken for a digit glued to a name), which
became the line's "leading integer" step, so a stepless ``val loss`` line under a date was no evaluation and llm.c's
``s:7 trl:2.5`` under a date was refused; and ``eval:``/``INFO val:`` before the first key was dropped, so an
evaluation line's ``loss`` was read as the training loss of the same step (the last write kept: false blips)."""

from __future__ import annotations

import logging
from pathlib import Path

from analyzer.ingest.load import LoadOptions
from analyzer.ingest.text_layout import learn_layout
from analyzer.pipeline import analyze


def test_a_leading_date_is_no_value():
    layout = learn_layout("2024-05-01 12:00:01 s:7 trl:2.5")
    assert layout.step_key == "s" and [m.tag for m in layout.metrics] == ["trl"]
    assert learn_layout("2024-05-01 12:00:01,592 - INFO - val loss 2.5").is_stepless_evaluation
    assert [m.tag for m in learn_layout("Qwen3.5-9B step 3 loss 3").metrics] == ["loss"]  # a minus in a name joins nothing


def test_a_kind_word_before_the_first_key():
    for line in ("eval: step 100 loss 3.2", "INFO eval: step=100 loss=3.2", "2024-01-01 12:00:00 - eval - step 100 - loss 3.2"):
        layout = learn_layout(line)
        assert layout.kind == "eval" and [m.tag for m in layout.metrics] == ["eval/loss"], line
    assert learn_layout("validation: loss 3.9").is_stepless_evaluation
    # a kind word inside another word is not the line's kind
    assert learn_layout("val_loader:shards pattern=./fineweb_val_*.bin tokens:62021632").kind is None


def _logger(path: Path) -> logging.Logger:
    log = logging.getLogger(f"review.{path.name}")
    log.propagate = False
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log


def test_eval_lines_are_not_train_losses(tmp_path):
    with open(tmp_path / "run.log", "w") as f:
        for i in range(0, 1000, 10):
            f.write(f"train: step {i} loss {4 - 0.003 * i:.4f} lr 0.001\n")
            if i % 100 == 0 and i:
                f.write(f"eval: step {i} loss 9.0000\n")
    (d,) = analyze([tmp_path], load_options=LoadOptions(cache_dir=None)).diagnoses
    assert d.run.roles.train_loss == "train/loss" and d.run.roles.eval_loss == "eval/loss"
    assert not any(n.kind == "duplicate_steps" for n in d.run.notes)
    assert not any(f.kind == "one_point_blips" for f in d.findings)


def test_python_logging_dates(tmp_path):
    log = _logger(tmp_path / "train.log")
    for i in range(0, 500, 10):
        log.info(f"step {i} loss {4 - 0.005 * i:.4f}")
        if i % 100 == 0:
            log.info(f"val loss {4.1 - 0.005 * i:.4f}")
    llmc = _logger(tmp_path / "llmc.log")
    for i in range(50):
        llmc.info(f"s:{i} trl:{4 - 0.01 * i:.4f} lr:0.001")
    for h in log.handlers + llmc.handlers:
        h.close()
    report = analyze([tmp_path], load_options=LoadOptions(cache_dir=None))
    by_id = {d.run.id: d for d in report.diagnoses}
    assert set(by_id) == {"train.log", "llmc.log"}, [(i.path, i.reason) for i in report.inputs]
    assert by_id["train.log"].run.roles.eval_loss == "val loss"
    assert by_id["llmc.log"].run.roles.train_loss == "trl" and by_id["llmc.log"].run.series("trl").steps.tolist() == list(range(50))
    layout_note = next(n.message for n in by_id["train.log"].run.notes if n.kind == "layout")
    assert "(step: the training line before it)" in layout_note and "(step: epoch)" not in layout_note
