"""Parquet tables of metrics: W&B's run history artifact (its numbered parts one run), a script's own table.

Files are written by polars' Parquet writer (pyarrow, which pandas would use, is not a dependency here); the
layout is W&B's history export: ``_step``, ``_runtime``, ``_timestamp`` and a column per logged key, empty where
a row did not log it, a logged dict as a struct column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.ingest.load import LoadOptions, load_runs

N = 2000


def _history(first: int = 0, n: int = N) -> pl.DataFrame:
    steps = np.arange(first, first + n)
    loss = 6.9 * np.exp(-steps / 300) + 2.0
    loss[steps == 1200] = 50.0  # one spike mid-run
    return pl.DataFrame({
        "_step": steps, "_runtime": steps * 0.5, "_timestamp": 1.7e9 + steps * 0.5, "train/loss": loss,
        "train/grad_norm": [1.0 + s / 1e4 if s % 2 == 0 else None for s in steps.tolist()],
        "lr": np.full(n, 3e-4), "media": ["img.png"] * n, "done": [False] * n,
        "eval": pl.Series([{"loss": float(v) + 0.1, "acc": {"top1": 0.5}} if s % 100 == 0 else None
                           for s, v in zip(steps.tolist(), loss.tolist())]),
    })


def _read(path: Path):  # type: ignore[no-untyped-def]
    return load_runs([path], LoadOptions(cache_dir=None))


def test_a_wandb_history_artifact_in_parts_is_one_run(tmp_path: Path) -> None:
    folder = tmp_path / "run-abc123-history:v0"
    folder.mkdir()
    whole = _history()
    whole[:1000].write_parquet(folder / "0000.parquet")
    whole[1000:].write_parquet(folder / "0001.parquet")
    (run,), inputs = _read(tmp_path)
    assert run.format == "parquet" and len(run.sources) == 2
    assert sorted(run.tags) == ["eval/acc/top1", "eval/loss", "lr", "train/grad_norm", "train/loss"]
    loss = run.series("train/loss")
    assert loss.steps.tolist() == whole["_step"].to_list() and loss.values.tolist() == whole["train/loss"].to_list()
    assert run.series("train/grad_norm").steps.tolist() == list(range(0, N, 2))  # empty cells are no points
    assert run.series("eval/loss").steps.tolist() == list(range(0, N, 100))
    assert (run.roles.train_loss, run.roles.eval_loss, run.roles.grad_norm, run.roles.lr) == (
        "train/loss", "eval/loss", "train/grad_norm", "lr")
    said = " ".join(n.message for n in run.notes)
    assert "media" in said and "done" in said  # columns without numbers are counted, not silently dropped
    assert [i.status for i in inputs] == ["read", "read"]


def test_the_spike_in_a_history_table_is_judged(tmp_path: Path) -> None:
    _history().write_parquet(tmp_path / "history.parquet")
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "history.parquet"), "--no-cache", "--fail-on", "mid"])
    assert result.exit_code == 1, result.output
    assert "step 1,200" in result.output


def test_a_per_epoch_table_and_separate_tables_of_a_folder(tmp_path: Path) -> None:
    pl.DataFrame({"epoch": range(20), "loss": np.linspace(2.0, 1.0, 20), "val_loss": np.linspace(2.1, 1.2, 20)}
                 ).write_parquet(tmp_path / "seed0.parquet")
    pl.DataFrame({"epoch": range(20), "loss": np.linspace(3.0, 1.0, 20)}).write_parquet(tmp_path / "seed1.parquet")
    runs, _ = _read(tmp_path)
    assert sorted(r.id for r in runs) == ["seed0.parquet", "seed1.parquet"]
    seed0 = next(r for r in runs if r.id == "seed0.parquet")
    assert seed0.series("loss").steps.tolist() == list(range(20)) and seed0.roles.eval_loss == "val_loss"


@pytest.mark.parametrize("kind", ["dataset shard", "cut off"])
def test_a_parquet_file_that_is_no_log_is_skipped_with_why(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "train-00000-of-00001.parquet"
    if kind == "dataset shard":
        pl.DataFrame({"text": ["a b", "c d"], "label": [0, 1]}).write_parquet(path)
    else:
        _history().write_parquet(path)
        path.write_bytes(path.read_bytes()[:-100])
    result = CliRunner().invoke(main, ["inspect", str(tmp_path), "--no-cache"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert ("without a numeric step column" if kind == "dataset shard" else "cannot be read") in result.output


def test_the_trainers_step_metric_is_the_step_not_wandbs_log_count(tmp_path: Path) -> None:
    # An HF Trainer run's W&B history: a row per wandb.log call (_step 0, 1, 2, ...), the trainer's step in
    # train/global_step (logging every 10 steps, an evaluation every 100 in its own row)
    rows = []
    for step in range(10, 1010, 10):
        rows.append({"train/loss": 2.0 + 1.0 / step, "train/global_step": step, "eval/loss": None})
        if step % 100 == 0:
            rows.append({"train/loss": None, "train/global_step": step, "eval/loss": 2.5})
    table = pl.DataFrame(rows).with_row_index("_step")
    (tmp_path / "artifact").mkdir()
    (tmp_path / "export").mkdir()
    table.write_parquet(tmp_path / "artifact" / "0000.parquet")
    table.write_csv(tmp_path / "export" / "history.csv")  # the same table as run.history().to_csv() writes it
    for path in (tmp_path / "artifact", tmp_path / "export"):  # apart: together they are copies of one run
        (run,), _ = _read(path)
        assert run.series("train/loss").steps.tolist() == list(range(10, 1010, 10))
        assert run.series("eval/loss").steps.tolist() == list(range(100, 1100, 100))


def test_what_a_review_found_in_parquet_tables(tmp_path: Path) -> None:
    def write(name: str, frame: pl.DataFrame) -> Path:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(tmp_path / name)
        return tmp_path / name

    loss = [3.0 - i / 10 for i in range(10)]
    # a datetime wall-time column (pandas' datetime64) was dropped and then looked for: the file was refused
    stamps = pl.datetime_range(pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 1, 0, 0, 9), "1s", eager=True)
    path = write("dates/m.parquet", pl.DataFrame({"step": range(10), "loss": loss, "timestamp": stamps}))
    (run,), _ = load_runs([path], LoadOptions(cache_dir=None))
    assert run.series("loss").values.tolist() == loss
    # a step column of another type is a clear refusal
    path = write("cat/m.parquet", pl.DataFrame({"step": pl.Series([str(i) for i in range(10)]).cast(pl.Categorical),
                                                "loss": loss}))
    result = CliRunner().invoke(main, ["inspect", str(path), "--no-cache"])
    assert result.exit_code == 2 and "numeric step column" in result.output
    # 1.parquet, 2.parquet are seeds, not parts of one table
    for seed in (1, 2):
        write(f"seeds/{seed}.parquet", pl.DataFrame({"step": range(10), "loss": loss}))
    runs, _ = load_runs([tmp_path / "seeds"], LoadOptions(cache_dir=None))
    assert len(runs) == 2
    # parts agree on one step column: train/global_step only in the second part, so _step for both
    write("parts/0000.parquet", pl.DataFrame({"_step": range(5), "train/loss": loss[:5]}))
    write("parts/0001.parquet", pl.DataFrame({"_step": range(5, 10), "train/global_step": range(50, 100, 10),
                                              "train/loss": loss[5:]}))
    (run,), _ = load_runs([tmp_path / "parts"], LoadOptions(cache_dir=None))
    assert run.series("train/loss").steps.tolist() == list(range(10))
    # a W&B media reference (a struct with _type) is no metric; a struct field named like a column is not a crash;
    # pandas' saved index is no metric
    media = pl.Series([{"_type": "image-file", "width": 64, "height": 64}] * 10)
    nested = pl.Series([{"b": 1.0}] * 10)
    path = write("odd/m.parquet", pl.DataFrame({"step": range(10), "loss": loss, "samples": media, "a/b": [2.0] * 10,
                                                "a": nested, "__index_level_0__": range(10)}))
    (run,), _ = load_runs([path], LoadOptions(cache_dir=None))
    assert sorted(run.tags) == ["a/b", "loss"] and run.series("a/b").values.tolist() == [2.0] * 10


def test_rows_without_the_trainers_step_keep_theirs(tmp_path: Path) -> None:
    # the user's own wandb.log calls between the trainer's: no train/global_step, so _step is every row's step
    table = pl.DataFrame({"_step": range(5), "train/global_step": [None, None, 5, None, 10],
                          "custom/metric": [1.0, 2.0, None, 3.0, None], "train/loss": [None, None, 2.0, None, 1.9]})
    for kind in ("parquet", "csv"):
        folder = tmp_path / kind
        folder.mkdir()
        table.write_parquet(folder / "h.parquet") if kind == "parquet" else table.write_csv(folder / "h.csv")
        (run,), _ = load_runs([folder], LoadOptions(cache_dir=None))
        assert run.series("custom/metric").steps.tolist() == [0, 1, 3], kind
        assert sorted(run.tags) == ["custom/metric", "train/loss"], kind  # the counters are no metrics
