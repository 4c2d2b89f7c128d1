"""MLflow's SQLite store (mlflow.db, MLflow's default since 3.7), read from a database MLflow 3.7.0 wrote.

tests/data/mlflow_db/mlflow.db.gz was written by MLflow itself (make_mlflow_db.py beside it says how and what it
holds); the expected values come from the database through sqlite3, independently of the reader.
"""

from __future__ import annotations

import gzip
import math
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.config import AnalysisConfig
from analyzer.ingest import mlflow_sqlite
from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.pipeline import diagnose_run

FIXTURE = Path(__file__).parent / "data" / "mlflow_db" / "mlflow.db.gz"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "tracking" / "mlflow.db"
    path.parent.mkdir()
    with gzip.open(FIXTURE, "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def _logged(path: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """What MLflow stored, per active run id and metric, with its NaN and infinity encodings undone."""
    con = sqlite3.connect(path)
    rows = con.execute("SELECT m.run_uuid, m.key, m.step, m.value, m.is_nan FROM metrics m JOIN runs r "
                       "ON r.run_uuid = m.run_uuid WHERE r.lifecycle_stage = 'active' ORDER BY m.rowid").fetchall()
    con.close()
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for uuid, key, step, value, is_nan in rows:
        value = math.nan if is_nan else math.copysign(math.inf, value) if abs(value) == sys.float_info.max else value
        out.setdefault(uuid, {}).setdefault(key, []).append((step, value))
    return out


def _uuids(path: Path) -> dict[str, str]:
    """The report's name of each active run: its experiment and name, the start of its id where a name repeats."""
    con = sqlite3.connect(path)
    rows = con.execute("SELECT r.run_uuid, e.name, r.name FROM runs r JOIN experiments e "
                       "ON e.experiment_id = r.experiment_id WHERE r.lifecycle_stage = 'active'").fetchall()
    con.close()
    names = [f"mlflow.db/{exp}/{name}" for _, exp, name in rows]
    return {name + (f" ({uuid[:8]})" if names.count(name) > 1 else ""): uuid
            for (uuid, _, _), name in zip(rows, names)}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_every_active_run_read_with_every_value(store: Path) -> None:
    runs, inputs = load_runs([store.parent], LoadOptions(cache_dir=None))
    uuids, logged = _uuids(store), _logged(store)
    assert sorted(r.id for r in runs) == sorted(uuids) and len(runs) == 4
    assert sum("/demo/run-a (" in r.id for r in runs) == 2  # two runs of one name stay two runs
    for run in runs:
        assert run.format == "mlflow"
        expected = logged[uuids[run.id]]
        assert sorted(run.tags) == sorted(expected)
        for tag, points in expected.items():
            got = run.points.filter(run.points.get_column("tag") == tag).sort("step")
            assert got.get_column("step").to_list() == [s for s, _ in points]
            assert all(_same(a, b) for a, b in zip(got.get_column("value").to_list(), [v for _, v in points]))
    demo = {r.hparams["variant"]: r for r in runs if r.id.startswith("mlflow.db/demo/")}
    values = demo["nonfinite"].points.sort("step").get_column("value").to_list()[-3:]
    assert values[0] == math.inf and values[1] == -math.inf and math.isnan(values[2])  # as logged, not 1.8e308
    skipped = [i for i in inputs if i.status == "skipped"]
    assert len(skipped) == 1 and "deleted in MLflow" in skipped[0].reason and "trash" in skipped[0].reason


def test_verdicts_and_the_lr_from_params(store: Path) -> None:
    runs, _ = load_runs([store], LoadOptions(cache_dir=None))
    by_id = {r.id: r for r in runs}
    assert by_id["mlflow.db/sweep/lr=0.3"].hparams["lr"] == "0.3"
    verdicts = {rid: diagnose_run(run, AnalysisConfig())[0].verdict for rid, run in by_id.items()}
    assert verdicts["mlflow.db/sweep/lr=0.001"] == "stable"
    assert verdicts["mlflow.db/sweep/lr=0.3"] == "divergence"
    assert sorted(v for rid, v in verdicts.items() if "/demo/" in rid) == ["divergence", "stable"]


def test_the_store_is_opened_read_only_and_left_as_it_was(store: Path) -> None:
    before, mtime = store.read_bytes(), store.stat().st_mtime_ns
    result = CliRunner().invoke(main, ["inspect", str(store), "--no-cache", "--no-progress"])
    assert result.exit_code == 0, result.output
    # one database, counted once; its deleted run is a run not read, not a file skipped
    assert "4 run(s)" in result.output and "1 file(s) read, 0 skipped; 1 run(s) in them not read" in result.output
    assert store.read_bytes() == before and store.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in store.parent.iterdir()) == ["mlflow.db"]  # no journal, no WAL files left


def test_databases_that_are_not_mlflow_stores_are_skipped_with_why(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "cache.db")
    con.execute("CREATE TABLE metrics (key TEXT, value REAL)")
    con.commit()
    con.close()
    (tmp_path / "broken.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 84 + b"not a database")
    (tmp_path / "notes.db").write_text("key,value\n")
    result = CliRunner().invoke(main, ["inspect", str(tmp_path), "--no-cache", "--no-progress"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    for why in ("without MLflow's runs and metrics tables", "cannot be read", "not an SQLite database"):
        assert why in result.output


def test_batches_of_rows_read_as_one(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = {r.id: r.points for r in load_runs([store], LoadOptions(cache_dir=None))[0]}
    monkeypatch.setattr(mlflow_sqlite, "_BATCH_ROWS", 7)  # batches that split runs, tags and the NaN rows
    batched = {r.id: r.points for r in load_runs([store], LoadOptions(cache_dir=None))[0]}
    assert whole.keys() == batched.keys()
    assert all(whole[k].equals(batched[k]) for k in whole)


def test_odd_stores_keep_their_runs(store: Path) -> None:
    # A Databricks-style experiment named by its workspace path, a run whose experiment row is gone, and rows of
    # other types than MLflow's (SQLite does not enforce them): the runs are read, the bad rows counted.
    con = sqlite3.connect(store)
    con.execute("UPDATE experiments SET name = '/Users/me@example.com/sweep' WHERE name = 'sweep'")
    uuid = con.execute("SELECT run_uuid FROM runs WHERE name = 'lr=0.3'").fetchone()[0]
    orphan = con.execute("SELECT run_uuid FROM runs WHERE name = 'lr=0.001'").fetchone()[0]
    con.execute("UPDATE runs SET experiment_id = 99 WHERE run_uuid = ?", (orphan,))
    con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)",
                    [("train/loss", "abc", 1, uuid, 1000), ("train/loss", b"\x01\x02", 2, uuid, 1001),
                     ("train/loss", 1.0, 3, uuid, 1e30)])
    con.commit()
    con.close()
    runs, inputs = load_runs([store], LoadOptions(cache_dir=None))
    by_id = {r.id: r for r in runs}
    assert "mlflow.db/Users/me@example.com/sweep/lr=0.3" in by_id and "mlflow.db/99/lr=0.001" in by_id
    kept = by_id["mlflow.db/Users/me@example.com/sweep/lr=0.3"]
    assert len(kept.points) == 1200  # its 1,200 values, not one of the three odd rows
    assert any(n.kind == "dropped" and n.count == 3 and "not of MLflow's type" in n.message for n in kept.notes)
    assert [i.status for i in inputs].count("read") == 4
