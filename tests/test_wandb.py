"""Weights & Biases: chart panel CSV exports, and offline run folders written by wandb itself.

Panel exports are written in the layout W&B's app writes (a quoted header: "Step", then per run
"<run> - <metric>", "__MIN", "__MAX"; empty cells where a run has no point). Offline runs are
written by the real wandb package in offline mode, in a child process (no network, and none of
wandb's process-wide hooks in the test process).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints, apply_restart_policy
from analyzer.ingest.wandb_logs import (MISSING_EXTRA, PanelSeries, is_wandb_run_dir, read_panel_csv,
                                        read_wandb_run, sniff_panel_csv)

NAN = float("nan")


def _write_panel(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL).writerow(header)
        for row in rows:
            fh.write(",".join("" if v is None else str(v) for v in row) + "\n")
    return path


def _triple(run: str, metric: str) -> list[str]:
    return [f"{run} - {metric}", f"{run} - {metric}__MIN", f"{run} - {metric}__MAX"]


def _series(points: RawPoints) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for code, tag in enumerate(points.tags):
        mask = points.tag_codes == code
        out[tag] = (points.steps[mask].tolist(), points.values[mask].tolist())
    return out


# --- panel CSV exports -----------------------------------------------------------------------------


def test_panel_runs_points_and_empty_cells(tmp_path: Path) -> None:
    # A run name holding " - " (set by the user) beside a generated one; the second run is shorter.
    header = ["Step", *_triple("lr=1e-3 - warmup", "train/loss"), *_triple("dainty-sun-12", "train/loss")]
    rows = [[0, 2.5, 2.5, 2.5, 3.0, 3.0, 3.0],
            [10, 2.0, 2.0, 2.0, 2.75, 2.75, 2.75],
            [20, 1.5, 1.5, 1.5, None, None, None],
            [30, 1.25, 1.25, 1.25, None, None, None]]
    path = _write_panel(tmp_path / "wandb_export_2026-01-05T10_00_00.000+01_00.csv", header, rows)
    panel = sniff_panel_csv(path)
    assert panel.x_axis == "Step"
    assert panel.runs == ("lr=1e-3 - warmup", "dainty-sun-12")
    assert panel.metrics == (("train/loss",), ("train/loss",))
    assert panel.columns == tuple(header)
    assert panel.series[0] == PanelSeries("lr=1e-3 - warmup", "train/loss", 1, 2, 3)

    points, notes = read_panel_csv(path, panel, "lr=1e-3 - warmup")
    assert _series(points) == {"train/loss": ([0, 10, 20, 30], [2.5, 2.0, 1.5, 1.25])}
    assert bool(np.isnan(points.wall_times).all())
    points, notes = read_panel_csv(path, panel, "dainty-sun-12")
    assert _series(points) == {"train/loss": ([0, 10], [3.0, 2.75])}  # empty cells are no points
    # Envelope equal to the line everywhere: not bucketed, no envelope tags; a note that a chart may sample.
    assert [n.kind for n in notes] == ["panel_export"]
    frame, restart_notes = apply_restart_policy(points)
    assert frame.height == 2 and restart_notes == []


def test_panel_bucketed_export_keeps_the_envelope_and_says_so(tmp_path: Path) -> None:
    header = ["Step", *_triple("run-a", "grad_norm"), *_triple("run-b", "grad_norm")]
    rows = [[0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0],
            [100, 1.5, 0.5, 9.0, 2.0, 2.0, 2.0],  # a spike inside run-a's bucket shows only in its max
            [200, "NaN", "NaN", "NaN", 2.5, 2.5, 2.5],
            [300, 1.25, 1.0, 1.5, None, None, None]]
    path = _write_panel(tmp_path / "export.csv", header, rows)
    panel = sniff_panel_csv(path)
    points, notes = read_panel_csv(path, panel, "run-a")
    got = _series(points)
    assert sorted(got) == ["grad_norm", "grad_norm__MAX", "grad_norm__MIN"]
    assert got["grad_norm"][0] == [0, 100, 200, 300]
    assert got["grad_norm__MAX"][0] == [0, 100, 200, 300]
    assert got["grad_norm__MAX"][1][:2] == [1.0, 9.0] and math.isnan(got["grad_norm__MAX"][1][2])
    assert got["grad_norm__MIN"][1][3] == 1.0 and got["grad_norm"][1][3] == 1.25
    assert math.isnan(got["grad_norm"][1][2])  # NaN is data
    (note,) = [n for n in notes if n.kind == "sampled"]
    assert note.count == 4
    assert "bucket" in note.message and "not every logged point" in note.message
    assert "2 bucket(s) hold more than one value" in note.message
    assert "'grad_norm__MIN' and 'grad_norm__MAX'" in note.message
    assert not any(n.kind == "panel_export" for n in notes)
    # run-b's envelope never differs from its line (a NaN bucket is not a wide one): one tag only.
    points, notes = read_panel_csv(path, panel, "run-b")
    assert _series(points) == {"grad_norm": ([0, 100, 200], [2.0, 2.0, 2.5])}
    assert [n.kind for n in notes] == ["panel_export"]


def test_panel_several_metrics_and_runs_sharing_a_name(tmp_path: Path) -> None:
    header = ["Step", *_triple("baseline", "train/loss"), *_triple("baseline", "train/lr"),
              *_triple("baseline", "train/loss")]
    rows = [[1, 3.0, 3.0, 3.0, 0.1, 0.1, 0.1, 4.0, 4.0, 4.0],
            [2, 2.0, 2.0, 2.0, 0.2, 0.2, 0.2, "oops", 5.0, 5.0]]
    path = _write_panel(tmp_path / "export.csv", header, rows)
    panel = sniff_panel_csv(path)
    assert panel.runs == ("baseline", "baseline (2)")
    assert panel.metrics_of("baseline") == ("train/loss", "train/lr")
    assert panel.metrics_of("baseline (2)") == ("train/loss",)
    points, _ = read_panel_csv(path, panel, "baseline")
    assert _series(points) == {"train/loss": ([1, 2], [3.0, 2.0]), "train/lr": ([1, 2], [0.1, 0.2])}
    points, notes = read_panel_csv(path, panel, "baseline (2)")
    assert _series(points)["train/loss"] == ([1], [4.0])
    (dropped,) = [n for n in notes if n.kind == "dropped"]
    assert dropped.count == 1 and "train/loss x1" in dropped.message
    with pytest.raises(ValueError, match="'baseline', 'baseline \\(2\\)'"):
        read_panel_csv(path, panel, "nope")


def test_panel_with_another_x_axis_uses_the_runs_step_columns(tmp_path: Path) -> None:
    header = ["epoch", *_triple("r1", "_step"), *_triple("r1", "train/loss")]
    rows = [[0.5, 49, 49, 49, 1.5, 1.5, 1.5], [1.0, 99, 99, 99, 1.25, 1.25, 1.25]]
    path = _write_panel(tmp_path / "export.csv", header, rows)
    panel = sniff_panel_csv(path)
    assert panel.x_axis == "epoch" and panel.runs == ("r1",) and panel.metrics == (("_step", "train/loss"),)
    points, notes = read_panel_csv(path, panel, "r1")
    assert _series(points) == {"train/loss": ([49, 99], [1.5, 1.25])}
    assert not any(n.kind == "step_axis" for n in notes)


def test_panel_custom_x_axis_must_count_steps(tmp_path: Path) -> None:
    header = ["trainer/global_step", *_triple("r1", "train/loss")]
    path = _write_panel(tmp_path / "ok.csv", header, [[16, 2.0, 2.0, 2.0], [32, 1.0, 1.0, 1.0]])
    points, notes = read_panel_csv(path, sniff_panel_csv(path), "r1")
    assert _series(points) == {"train/loss": ([16, 32], [2.0, 1.0])}
    assert any(n.kind == "step_axis" and "'trainer/global_step'" in n.message for n in notes)
    path = _write_panel(tmp_path / "epochs.csv", ["epoch", *_triple("r1", "loss")],
                        [[0.25, 2.0, 2.0, 2.0], [0.5, 1.0, 1.0, 1.0]])
    with pytest.raises(LogFormatError, match="not whole numbers.*Step as its x axis"):
        read_panel_csv(path, sniff_panel_csv(path), "r1")


def test_panel_truncated_last_line_is_not_read(tmp_path: Path) -> None:
    path = _write_panel(tmp_path / "export.csv", ["Step", *_triple("r", "loss")],
                        [[0, 2.0, 2.0, 2.0], [1, 1.5, 1.5, 1.5]])
    path.write_bytes(path.read_bytes() + b"2,1.2")  # "1.25" cut off mid-write
    points, notes = read_panel_csv(path, sniff_panel_csv(path), "r")
    assert _series(points) == {"loss": ([0, 1], [2.0, 1.5])}
    assert any(n.kind == "truncated" for n in notes)


@pytest.mark.parametrize("content, reason", [
    (b"Wall time,Step,Value\n1.0,0,2.3\n", "not '<run> - <metric>'"),  # TensorBoard's CSV export
    (b"epoch,step,train_loss_step,val_loss\n0,0,2.3,\n", "not '<run> - <metric>'"),  # Lightning's metrics.csv
    (b"step,loss,lr\n0,2.3,0.1\n", "not '<run> - <metric>'"),
    (b'"Step","run-a - loss","run-b - loss"\n0,2.3,2.2\n', "no '<run> - <metric>__MIN'"),
    (b'"run-a - loss","run-a - loss__MIN","run-a - loss__MAX"\n2.3,2.3,2.3\n', "does not name an x axis"),
    (b'"Step"," - loss","run - loss__MIN"\n0,1,1\n', "names no run or no metric"),
    (b'"Wall Time","r - loss","r - loss__MIN","r - loss__MAX"\n1.7e9,1,1,1\n', "Step as its x axis"),
    (b"Step\n0\n", "fewer than two columns"),
    (b"\x00\x01\x02binary", "binary"),
])
def test_sniff_rejects_what_is_not_a_panel_export(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(LogFormatError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        sniff_panel_csv(path)


# --- offline run folders ---------------------------------------------------------------------------

_WRITE_RUNS = textwrap.dedent("""
    import math
    import wandb

    run = wandb.init(project="steadytrain-test", id="plainrun01", name="plain run",
                     config={"lr": 3e-4, "optimizer": {"name": "adamw", "betas": [0.9, 0.95]},
                             "batch_size": 32})
    for i in range(50):
        row = {"train/loss": 2.0 / (i + 1), "grad_norm": 1 + i / 8}
        if i == 30:
            row["train/loss"] = math.nan
        if i == 40:
            row["train/loss"] = math.inf
        if i % 10 == 0:
            row["eval/loss"] = 0.5 + i / 64
        if i == 5:
            row["samples"] = wandb.Histogram([1, 2, 3])
            row["status"] = "warmup"
        if i == 7:
            row["notes"] = "x" * 70000  # one record longer than a 32 KiB block: written in pieces
        wandb.log(row)
    wandb.config.update({"warmup_steps": 100})
    wandb.finish()

    # What Lightning's WandbLogger and the HF Trainer's callback do: log against their own global step.
    run = wandb.init(project="steadytrain-test", id="stepmetric1", name="lightning style", config={"lr": 0.1})
    wandb.define_metric("trainer/global_step")
    wandb.define_metric("*", step_metric="trainer/global_step", step_sync=True)
    for i in range(20):
        wandb.log({"train_loss": 1.0 / (i + 1), "trainer/global_step": 10 * i})
        if i % 5 == 4:
            wandb.log({"val_loss": 0.25 * i})  # no global step in the row: W&B syncs the latest one
    wandb.finish()
""")


@pytest.fixture(scope="module")
def wandb_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("wandb")
    root = tmp_path_factory.mktemp("wandb")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "WANDB_MODE": "offline", "WANDB_DIR": str(root),
           "WANDB_SILENT": "true", "WANDB_CONSOLE": "off", "WANDB_DISABLE_GIT": "true"}
    proc = subprocess.run([sys.executable, "-c", _WRITE_RUNS], env=env, cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = {p.name.rsplit("-", 1)[1]: p for p in (root / "wandb").glob("offline-run-*")}
    assert sorted(found) == ["plainrun01", "stepmetric1"]
    return found


def test_is_wandb_run_dir(tmp_path: Path) -> None:
    run = tmp_path / "wandb" / "offline-run-20260105_100000-abc123"
    run.mkdir(parents=True)
    assert not is_wandb_run_dir(run)
    (run / "run-abc123.wandb.synced").write_text("")
    assert not is_wandb_run_dir(run)
    (run / "run-abc123.wandb").write_bytes(b"")
    assert is_wandb_run_dir(run)
    assert not is_wandb_run_dir(run.parent)  # the wandb/ folder itself holds runs, it is not one
    assert not is_wandb_run_dir(tmp_path / "missing")


def test_history_points_exactly_as_logged(wandb_runs: dict[str, Path]) -> None:
    points, notes, _ = read_wandb_run(wandb_runs["plainrun01"])
    got = _series(points)
    # No _step/_runtime/_timestamp, no media, no text.
    assert sorted(got) == ["eval/loss", "grad_norm", "train/loss"]
    steps, loss = got["train/loss"]
    assert steps == list(range(50))
    expected = [2.0 / (i + 1) for i in range(50)]
    assert [v for i, v in enumerate(loss) if i not in (30, 40)] == [v for i, v in enumerate(expected)
                                                                    if i not in (30, 40)]
    assert math.isnan(loss[30]) and loss[40] == math.inf  # non-finite values are data
    assert got["grad_norm"] == (list(range(50)), [1 + i / 8 for i in range(50)])
    assert got["eval/loss"] == ([0, 10, 20, 30, 40], [0.5 + i / 64 for i in (0, 10, 20, 30, 40)])
    walls = points.wall_times
    assert bool(np.isfinite(walls).all()) and bool((np.diff(walls) >= 0).all()) and walls[0] > 1.6e9
    frame, restart_notes = apply_restart_policy(points)
    assert frame.height == 105 and restart_notes == []
    kinds = {n.kind for n in notes}
    assert kinds == {"ignored_fields"}  # nothing truncated, corrupt or dropped
    text = " ".join(n.message for n in notes)
    assert "status" in text and "notes" in text and "samples x1" in text


def test_hparams_from_the_run_config(wandb_runs: dict[str, Path]) -> None:
    _, _, hparams = read_wandb_run(wandb_runs["plainrun01"])
    # Flattened with '.'; a list is not a plain setting (as for hparams.yaml); W&B's own _wandb key dropped.
    assert hparams == {"lr": 3e-4, "optimizer.name": "adamw", "batch_size": 32, "warmup_steps": 100}


def test_define_metric_step_metric_gives_the_steps(wandb_runs: dict[str, Path]) -> None:
    points, notes, hparams = read_wandb_run(wandb_runs["stepmetric1"])
    got = _series(points)
    assert sorted(got) == ["train_loss", "val_loss"]  # the step metric itself is the x axis, not a tag
    assert got["train_loss"] == ([10 * i for i in range(20)], [1.0 / (i + 1) for i in range(20)])
    assert got["val_loss"] == ([40, 90, 140, 190], [1.0, 2.25, 3.5, 4.75])
    assert hparams == {"lr": 0.1}
    assert notes == []


def _copy_run(src: Path, dst: Path) -> Path:
    out = dst / src.name
    out.mkdir()
    for f in src.glob("run-*.wandb"):
        shutil.copy(f, out / f.name)
    return out


def test_truncated_file_reads_every_whole_record(wandb_runs: dict[str, Path], tmp_path: Path) -> None:
    full, _, _ = read_wandb_run(wandb_runs["plainrun01"])
    run = _copy_run(wandb_runs["plainrun01"], tmp_path)
    (f,) = run.glob("run-*.wandb")
    data = f.read_bytes()
    # Cut inside the last history record (the run killed mid-write), found by its last value's JSON.
    cut = data.rindex(json.dumps(1 + 49 / 8).encode())
    f.write_bytes(data[:cut])
    points, notes, hparams = read_wandb_run(run)
    (note,) = [n for n in notes if n.kind == "truncated"]
    assert "incomplete" in note.message and note.count == 1
    got, want = _series(points), _series(full)
    assert got["grad_norm"] == (want["grad_norm"][0][:49], want["grad_norm"][1][:49])
    assert got["eval/loss"] == want["eval/loss"]
    assert hparams["lr"] == 3e-4


def test_corrupt_chunk_loses_only_its_block(wandb_runs: dict[str, Path], tmp_path: Path) -> None:
    run = _copy_run(wandb_runs["plainrun01"], tmp_path)
    (f,) = run.glob("run-*.wandb")
    data = bytearray(f.read_bytes())
    assert len(data) > 3 * 32768  # the 70 kB text record spans blocks
    at = data.index(json.dumps(1 + 3 / 8).encode())  # inside step 3's history record, in the first block
    assert at < 32768
    data[at] ^= 0xFF
    f.write_bytes(bytes(data))
    points, notes, _ = read_wandb_run(run)
    (note,) = [n for n in notes if n.kind == "corrupt"]
    assert note.count >= 1 and "checksum" in note.message
    steps, values = _series(points)["grad_norm"]
    assert 3 not in steps and steps[-1] == 49  # the rest of the first block is lost; later blocks are read
    assert values[-1] == 1 + 49 / 8


def test_not_a_wandb_file(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    run = tmp_path / "run-20260105_100000-abc"
    run.mkdir()
    (run / "run-abc.wandb").write_bytes(b"PK\x03\x04 not a W&B log at all")
    with pytest.raises(LogFormatError, match="no W&B header"):
        read_wandb_run(run)
    with pytest.raises(LogFormatError, match="no run-\\*.wandb file"):
        read_wandb_run(tmp_path)


def test_missing_extra_is_one_clear_line(tmp_path: Path) -> None:
    """In a fresh interpreter where `import wandb` fails, whether or not wandb is installed here."""
    run = tmp_path / "offline-run-20260105_100000-abc"
    run.mkdir()
    (run / "run-abc.wandb").write_bytes(b":W&B\xe1\xbe\x00")
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.modules["wandb"] = None  # `import wandb` now raises ModuleNotFoundError
        from analyzer.errors import LogFormatError
        from analyzer.ingest.wandb_logs import is_wandb_run_dir, read_wandb_run
        assert is_wandb_run_dir(Path({str(run)!r}))  # recognising a run needs no wandb
        try:
            read_wandb_run(Path({str(run)!r}))
        except LogFormatError as exc:
            print(exc)
        else:
            print("read without wandb?")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == MISSING_EXTRA + "\n"
    assert MISSING_EXTRA == ("W&B offline run: reading it needs the wandb package: "
                             "pip install 'steadytrain[wandb]'")


# ---- through discovery: what `steadytrain report DIR` sees ----

def test_offline_runs_are_found_and_own_their_folder(wandb_runs: dict[str, Path]) -> None:
    from analyzer.ingest.load import LoadOptions, load_runs

    root = wandb_runs["plainrun01"].parent.parent  # the folder holding wandb/
    runs, inputs = load_runs([root], LoadOptions(cache_dir=None))
    assert sorted(r.id.rsplit("-", 1)[1] for r in runs) == ["plainrun01", "stepmetric1"]
    plain = next(r for r in runs if r.id.endswith("plainrun01"))
    assert plain.format == "wandb" and plain.roles.train_loss == "train/loss" and plain.roles.grad_norm == "grad_norm"
    assert plain.hparams["lr"] == 3e-4
    # the run folder's other files (config, metadata, debug logs) are accounted for, not read as runs
    under = [i for i in inputs if wandb_runs["plainrun01"].as_posix() in i.path]
    assert sum(i.reason == "W&B offline run" for i in under) == 1
    assert all(i.run == plain.id for i in under if i.status == "read")


def test_panel_exports_give_one_run_per_run_name_and_join_by_name(tmp_path: Path) -> None:
    from analyzer.ingest.load import LoadOptions, load_runs

    loss = _write_panel(tmp_path / "loss.csv", ["Step", *_triple("run-a", "train/loss"), *_triple("run-b", "train/loss")],
                        [[s, 2.0 / (s + 1), 2.0 / (s + 1), 2.0 / (s + 1), 3.0 / (s + 1), 3.0 / (s + 1), 3.0 / (s + 1)]
                         for s in range(40)])
    _write_panel(tmp_path / "gnorm.csv", ["Step", *_triple("run-a", "grad_norm")], [[s, 1.0, 1.0, 1.0] for s in range(40)])
    runs, inputs = load_runs([tmp_path], LoadOptions(cache_dir=None))
    assert sorted(r.id for r in runs) == ["run-a", "run-b"]
    a = next(r for r in runs if r.id == "run-a")
    assert a.format == "wandb_csv" and a.tags == ["grad_norm", "train/loss"]  # both panels' files joined by run name
    assert a.series("train/loss").values[:2].tolist() == [2.0, 1.0]
    assert {i.path for i in inputs if i.run == "run-a"} == {str(loss), str(tmp_path / "gnorm.csv")}
