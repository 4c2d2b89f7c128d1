"""Jupyter notebooks: a run trained in Colab, Kaggle or Jupyter leaves its log in the cells' saved outputs.

Notebooks are nbformat 4 documents (the cells' ``outputs``: ``stream`` text as a list of lines, ``display_data``
with ``text/html``, ``error`` tracebacks); the HF Trainer's table is drawn by transformers' own notebook helpers
(``html_progress_bar`` and ``text_to_html_table``, what its NotebookProgressCallback displays).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.ingest.load import LoadOptions, load_runs


def _lines(text: str) -> list[str]:
    return text.splitlines(True)


def _notebook(path: Path, outputs_per_cell: list[list[dict]]) -> Path:
    cells = [{"cell_type": "code", "execution_count": i + 1, "id": f"c{i}", "metadata": {}, "outputs": outputs,
              "source": ["# cell\n"]} for i, outputs in enumerate(outputs_per_cell)]
    doc = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                       "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(doc, indent=1))
    return path


def _stream(text: str) -> dict:
    return {"name": "stdout", "output_type": "stream", "text": _lines(text)}


def test_the_hf_trainers_notebook_table_is_read(tmp_path: Path) -> None:
    notebook_helpers = pytest.importorskip("transformers.utils.notebook")
    rows: list[list] = [["Step", "Training Loss", "Validation Loss"]]
    train, evals = [], []
    for step in range(10, 510, 10):
        loss = round(2.0 + 3.0 * math.exp(-step / 100), 6)
        train.append((step, loss))
        val = f"{loss + 0.2:.6f}" if step % 50 == 0 else "No log"
        if step % 50 == 0:
            evals.append((step, loss + 0.2))
        rows.append([step, f"{loss:.6f}", val])
    # the callback redraws the table as training goes: an early drawing, then the last one with every row
    early = notebook_helpers.text_to_html_table(rows[:5])
    html = (notebook_helpers.html_progress_bar(500, 500, "[500/500 02:30, Epoch 3/3]", "", 300)
            + notebook_helpers.text_to_html_table(rows))
    table = {"data": {"text/html": _lines(html), "text/plain": ["<IPython.core.display.HTML object>"]},
             "metadata": {}, "output_type": "display_data"}
    first = {**table, "data": {**table["data"], "text/html": _lines(early)}}
    path = _notebook(tmp_path / "finetune.ipynb", [[_stream("Loading checkpoint shards: 100%\n")], [first, table]])
    (run,), _ = load_runs([path], LoadOptions(cache_dir=None))
    assert (run.roles.train_loss, run.roles.eval_loss) == ("Training Loss", "Validation Loss")
    got = run.series("Training Loss")
    assert list(zip(got.steps.tolist(), got.values.tolist())) == [(s, pytest.approx(v)) for s, v in train]
    ev = run.series("Validation Loss")
    assert list(zip(ev.steps.tolist(), ev.values.tolist())) == [(s, pytest.approx(v, abs=1e-6)) for s, v in evals]


def test_printed_lines_and_a_failed_cell_of_a_notebook_are_judged(tmp_path: Path) -> None:
    printed = "".join(f"epoch 1 | step {s} | loss {2.0 + math.exp(-s / 300):.4f} | lr 3.0e-04\n" for s in range(0, 600, 10))
    printed += "".join(f"epoch 1 | step {s} | loss nan | lr 3.0e-04\n" for s in range(600, 700, 10))
    oom = {"ename": "OutOfMemoryError", "evalue": "CUDA out of memory. Tried to allocate 2.00 GiB",
           "output_type": "error", "traceback": ["\x1b[0;31mOutOfMemoryError\x1b[0m: CUDA out of memory. Tried to "
                                                 "allocate 2.00 GiB"]}
    path = _notebook(tmp_path / "train.ipynb", [[_stream(printed[:2000]), _stream(printed[2000:])], [oom]])
    result = CliRunner().invoke(main, ["inspect", str(path), "--no-cache"])
    assert "DIVERGED" in result.output and "step 600" in result.output, result.output


@pytest.mark.parametrize("content, why", [
    ({"cells": [{"cell_type": "code", "outputs": [], "source": []}], "nbformat": 4}, "saved no output"),
    ("{not json", "not valid JSON"),
])
def test_a_notebook_without_a_log_is_skipped_with_why(tmp_path: Path, content: object, why: str) -> None:
    path = tmp_path / "analysis.ipynb"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    result = CliRunner().invoke(main, ["inspect", str(path), "--no-cache"])
    assert result.exit_code == 2 and why in result.output and "Traceback" not in result.output


def _table(rows: list[list]) -> dict:
    from transformers.utils.notebook import text_to_html_table

    return {"data": {"text/html": _lines(text_to_html_table(rows))}, "metadata": {}, "output_type": "display_data"}


def test_what_a_review_found_in_notebooks(tmp_path: Path) -> None:
    pytest.importorskip("transformers.utils.notebook")
    header = ["Step", "Training Loss", "Validation Loss"]
    first = [header] + [[s, f"{3.0 - s / 1000:.6f}", "No log"] for s in range(100, 600, 100)]
    second = [header] + [[s, f"{2.0 - s / 1000:.6f}", "No log"] for s in range(100, 500, 100)]
    # two trainings in one cell (an LR sweep in a loop): both tables, the second a restart the notes say
    path = _notebook(tmp_path / "sweep.ipynb", [[_table(first), _stream("now lr 1e-5\n"), _table(second)]])
    (run,), _ = load_runs([path], LoadOptions(cache_dir=None))
    assert any(n.kind == "restart" for n in run.notes)
    # a bar's last redraw without a newline, and a cell's last line without one, do not glue lines together
    bar = {"name": "stderr", "output_type": "stream", "text": [" 50%|#####     | 250/500 [00:40<00:40, 6.1it/s]"]}
    cells = [[_stream("".join(f"step {s} loss {3.0 - s / 100:.3f}\n" for s in range(1, 10)) + "step 10 loss 2.900")],
             [_stream("".join(f"step {s} loss {3.0 - s / 100:.3f}\n" for s in range(11, 20))), bar]]
    (run,), _ = load_runs([_notebook(tmp_path / "glued.ipynb", cells)], LoadOptions(cache_dir=None))
    assert run.series("loss").steps.tolist() == list(range(1, 20))
    # a table after megabytes of install output is found
    noise = _stream("Collecting torch\n  Downloading torch-2.3.0 (780 MB)\n" * 30000)
    (run,), _ = load_runs([_notebook(tmp_path / "late.ipynb", [[noise], [_table(first)]])], LoadOptions(cache_dir=None))
    assert run.series("Training Loss").steps.tolist() == list(range(100, 600, 100))


@pytest.mark.parametrize("outputs", [5, [{"output_type": "error", "traceback": None}], [{"output_type": "stream",
                                                                                          "text": "a\x00b\n"}]])
def test_a_malformed_notebook_is_one_line(tmp_path: Path, outputs: object) -> None:
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": outputs, "source": []}], "nbformat": 4}))
    result = CliRunner().invoke(main, ["inspect", str(path), "--no-cache"])
    assert result.exit_code == 2 and "a bug" not in result.output and "Traceback" not in result.output
