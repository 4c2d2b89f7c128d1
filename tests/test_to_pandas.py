"""analyzer.to_pandas works with the declared dependencies only (numpy, pandas, polars; no pyarrow).

polars' own DataFrame.to_pandas needs pyarrow, which steadytrain does not depend on: the frame is
built from numpy columns. The runs come from logs written by the real writers (PyTorch's
SummaryWriter, Lightning's CSVLogger layout), read through the public API.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analyzer
from tests.writers import write_lightning_csv, write_summarywriter

COLUMNS = ["run", "tag", "step", "wall_time", "value"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("to_pandas")
    write_summarywriter(root / "tb", {"train/loss": [2.5, 2.0, float("nan"), 1.25],
                                      "grad_norm": [1.0, 3.0, 0.5, 0.25]}, steps=[0, 10, 20, 30])
    write_lightning_csv(root / "lightning" / "version_0", [1.5, 1.0, 0.75, 0.5], val_every=2)
    return root


def _load(root: Path) -> list[analyzer.Run]:
    runs, _ = analyzer.load_runs([root], analyzer.LoadOptions(cache_dir=None))
    return sorted(runs, key=lambda r: r.id)


def test_values_dtypes_and_order(logs: Path) -> None:
    runs = _load(logs)
    assert [r.id for r in runs] == ["lightning/version_0", "tb"]
    df = analyzer.to_pandas(runs)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == COLUMNS
    assert isinstance(df["run"].dtype, pd.CategoricalDtype)
    assert isinstance(df["tag"].dtype, pd.CategoricalDtype)
    assert list(df["run"].cat.categories) == ["lightning/version_0", "tb"]
    assert df["step"].dtype == np.int64
    assert df["wall_time"].dtype == np.float64
    assert df["value"].dtype == np.float64
    assert len(df) == sum(r.points.height for r in runs)

    tb = df[df["run"] == "tb"]
    loss = tb[tb["tag"] == "train/loss"]
    assert loss["step"].tolist() == [0, 10, 20, 30]
    values = loss["value"].tolist()
    assert values[:2] == [2.5, 2.0] and math.isnan(values[2]) and values[3] == 1.25  # NaN is data, kept
    assert tb[tb["tag"] == "grad_norm"]["value"].tolist() == [1.0, 3.0, 0.5, 0.25]
    assert bool(np.isfinite(tb["wall_time"]).all())  # SummaryWriter stamps every event

    lt = df[df["run"] == "lightning/version_0"]
    assert lt[lt["tag"] == "train_loss_step"][["step", "value"]].values.tolist() == [
        [0, 1.5], [1, 1.0], [2, 0.75], [3, 0.5]]
    assert lt[lt["tag"] == "val_loss"]["step"].tolist() == [1, 3]
    assert lt[lt["tag"] == "val_loss"]["value"].tolist() == pytest.approx([1.1, 0.55])
    assert lt[lt["tag"] == "lr-Adam"]["value"].tolist() == [1e-3] * 4
    assert bool(lt["wall_time"].isna().all())  # CSVLogger writes no wall time

    # Row for row what the polars frames hold (tags decoded from the Enum codes correctly).
    for run in runs:
        sub = df[df["run"] == run.id]
        assert sub["tag"].astype(str).tolist() == run.points["tag"].cast(str).to_list()
        assert sub["step"].tolist() == run.points["step"].to_list()
        np.testing.assert_array_equal(sub["value"].to_numpy(), run.points["value"].to_numpy())


def test_no_runs_gives_empty_frame_with_the_same_columns() -> None:
    df = analyzer.to_pandas([])
    assert list(df.columns) == COLUMNS and len(df) == 0
    assert df["step"].dtype == np.int64 and df["value"].dtype == np.float64
    assert isinstance(df["tag"].dtype, pd.CategoricalDtype)


def test_string_tag_columns_share_the_enum_runs_categories() -> None:
    """A frame whose tag column is plain text (the empty-frame schema, a hand-built Run) mixes with
    Enum-coded ones: one category table, each row's own tag."""
    import polars as pl

    from analyzer.frame import SCHEMA, build_frame

    enum_run = analyzer.Run("a", "csv", (), build_frame(("loss", "lr"), np.array([1, 0, 1], np.int32),
                                                          np.array([5, 5, 6]), np.full(3, np.nan),
                                                          np.array([0.1, 2.0, 0.2])))
    text_run = analyzer.Run("b", "csv", (), pl.DataFrame({"tag": ["grad_norm", "loss"], "step": [1, 2],
                                                           "wall_time": [7.0, 8.0], "value": [3.0, 1.5]},
                                                          schema=SCHEMA))
    empty_run = analyzer.Run("c", "csv", (), pl.DataFrame(schema=SCHEMA))
    df = analyzer.to_pandas([enum_run, text_run, empty_run])
    assert df["tag"].astype(str).tolist() == ["lr", "loss", "lr", "grad_norm", "loss"]
    assert list(df["tag"].cat.categories) == ["loss", "lr", "grad_norm"]
    assert df["run"].astype(str).tolist() == ["a", "a", "a", "b", "b"]
    assert list(df["run"].cat.categories) == ["a", "b", "c"]
    assert df["value"].tolist() == [0.1, 2.0, 0.2, 3.0, 1.5]
    assert df["wall_time"].tolist()[3:] == [7.0, 8.0]


def test_works_where_pyarrow_cannot_be_imported(logs: Path) -> None:
    """In a fresh interpreter where `import pyarrow` fails, even if pyarrow is installed here."""
    code = textwrap.dedent(f"""
        import json, sys
        sys.modules["pyarrow"] = None  # `import pyarrow` now raises ImportError
        import analyzer
        runs, _ = analyzer.load_runs([{str(logs)!r}], analyzer.LoadOptions(cache_dir=None))
        df = analyzer.to_pandas(runs)
        assert "pyarrow" not in sys.modules or sys.modules["pyarrow"] is None
        tb = df[(df["run"] == "tb") & (df["tag"] == "grad_norm")]
        print(json.dumps({{"rows": len(df), "grad_norm": tb["value"].tolist(), "steps": tb["step"].tolist(),
                           "dtypes": [str(t) for t in df.dtypes]}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["grad_norm"] == [1.0, 3.0, 0.5, 0.25]
    assert out["steps"] == [0, 10, 20, 30]
    assert out["dtypes"] == ["category", "category", "int64", "float64", "float64"]
    assert out["rows"] == sum(r.points.height for r in _load(logs))
