"""Decisions made together under DDP: two CPU processes (gloo) train one model, and only rank 1's loss
shows its bad shard (tests/distributed_runs.py). Both ranks must stop at the same step and save the
checkpoint together (Lightning's save is collective: one rank saving alone hangs), the files and the log
lines must come from rank 0 alone, and nothing may hang: each run is a subprocess under a timeout that
kills its whole process group."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

from tests.distributed_runs import BAD_FROM, EVERY  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLAGGED = ("mid_instability", "divergence")
TIMEOUT_S = 240


def _launch(tmp_path: Path, *args: str) -> tuple[str, str]:
    """Run the two ranks; their (stdout, stderr). A hang fails the test at the timeout."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "distributed_runs.py"), args[0], str(out), *args[1:]],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the ranks it started too
        proc.communicate()
        pytest.fail(f"the distributed run did not finish in {TIMEOUT_S} s: a rank is waiting for the other")
    assert proc.returncode == 0, stderr[-3000:]
    return stdout, stderr


def _results(out: Path, text: str) -> tuple[dict[int, dict], list[str]]:
    """Each rank's report under ``out``, and the log lines of ours in ``text``."""
    reports = {r: json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)}
    return reports, [ln for ln in text.splitlines() if "steadytrain:" in ln]


def _run(tmp_path: Path, *args: str) -> tuple[dict[int, dict], list[str]]:
    stdout, stderr = _launch(tmp_path, *args)
    return _results(tmp_path / "out", stdout + stderr)


@pytest.fixture(scope="module")
def plain_runs(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The hand-written loop judging each rank's own loss, then the mean: one pair of processes for both."""
    tmp = tmp_path_factory.mktemp("plain")
    _, stderr = _launch(tmp, "plain", "own,mean")
    logs = {"own": "", "mean": ""}
    mode = None
    for line in stderr.splitlines():
        if line.startswith(("rank0 mode ", "rank1 mode ")):
            mode = line.split()[-1]
        elif mode is not None:
            logs[mode] += line + "\n"
    return tmp / "out", logs


def _together(out: Path, reports: dict[int, dict], lines: list[str], *, finder: int) -> dict:
    """Both ranks stopped and checkpointed at the same step; one set of files, written by rank 0; the plan is
    the finding rank's."""
    r0, r1 = reports[0], reports[1]
    assert r0["stopped_at"] == r1["stopped_at"]
    assert BAD_FROM <= r0["stopped_at"] < BAD_FROM + 2 * EVERY  # stopped, not trained to the end
    (ckpt,) = r0["saves"]
    assert r1["saves"] == [ckpt] and r0["checkpoints"] == r1["checkpoints"] == [ckpt]  # the save ran on both
    folder = out / "ckpt"
    stem = ckpt[: -len(".ckpt")]
    assert sorted(p.name for p in folder.iterdir()) == sorted([ckpt, f"{stem}.restart.json", f"{stem}.probe.yaml"])
    assert sorted(r0["wrote"]) == sorted([f"{stem}.restart.json", f"{stem}.probe.yaml"]) and r1["wrote"] == []
    plan = json.loads((folder / f"{stem}.restart.json").read_text())
    assert plan["verdict"] in FLAGGED and plan["detected_at_step"] == r0["stopped_at"]
    assert plan["last_good_step"] == BAD_FROM - 1 and ckpt == f"steadytrain-step={r0['stopped_at']}-last_good={BAD_FROM - 1}.ckpt"
    # Log lines of ours: rank 0's only, naming the rank that found it.
    assert lines and all(ln.startswith("rank0 ") for ln in lines), lines
    assert f"[rank {finder}]" in lines[0] and any("saved " in ln for ln in lines) and any("stopping" in ln for ln in lines)
    return plan


def test_plain_ddp_loop_where_only_rank_1_sees_it_stops_and_checkpoints_on_both_ranks(plain_runs):
    out, logs = plain_runs
    reports, lines = _results(out / "own", logs["own"])
    r0, r1 = reports[0], reports[1]
    assert r1["findings"] and r1["findings"][0][0] in FLAGGED and r1["verdict"] in FLAGGED
    assert r0["findings"] == [] and r0["verdict"] == "stable"  # its own loss never showed it
    plan = _together(out / "own", reports, lines, finder=1)
    assert plan["run"] == "ddp"
    state = torch.load(out / "own" / "ckpt" / reports[0]["saves"][0], weights_only=True)
    assert set(state) == {"model"}


def test_plain_ddp_loop_judging_the_mean_loss_over_ranks(plain_runs):
    out, logs = plain_runs
    reports, lines = _results(out / "mean", logs["mean"])
    r0, r1 = reports[0], reports[1]
    assert r0["history_loss"] == r1["history_loss"]  # both judge the same all-reduced loss
    assert r0["verdict"] in FLAGGED and r1["verdict"] in FLAGGED
    _together(out / "mean", reports, lines, finder=0)
    # The mean of the two ranks' losses: above rank 0's own level once rank 1's shard went bad.
    assert min(r0["history_loss"][BAD_FROM:BAD_FROM + 10]) > 2 * max(r0["history_loss"][BAD_FROM - 50:BAD_FROM])


def test_lightning_ddp_where_only_rank_1_sees_it_stops_and_checkpoints_on_both_ranks(tmp_path):
    pytest.importorskip("lightning.pytorch")
    reports, lines = _run(tmp_path, "lightning")
    r0, r1 = reports[0], reports[1]
    assert r1["verdict"] in FLAGGED and r0["verdict"] == "stable" and r0["findings"] == []
    plan = _together(tmp_path / "out", reports, lines, finder=1)
    assert plan["framework"] == "lightning"  # the snippets target Lightning
    assert all(r["snippet"] and "Trainer" in r["snippet"] or r["kind"] != "clip" for r in plan["recommendations"])
    ckpt = torch.load(tmp_path / "out" / "ckpt" / reports[0]["saves"][0], weights_only=True)
    assert ckpt["global_step"] == r0["stopped_at"] + 1
    from analyzer.live.state import decode

    columns, verdict, _, _ = decode(ckpt["callbacks"]["LightningCallback"])  # the history travels with it
    assert columns["loss"][0].tolist() == list(range(r0["stopped_at"] + 1))


def test_hf_trainer_under_torchrun_stops_and_saves_once_on_both_ranks(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    reports, lines = _run(tmp_path, "hf")
    r0, r1 = reports[0], reports[1]
    # The Trainer logs the loss averaged over the ranks: both judge the same values, and decide together.
    assert r0["history_loss"] == r1["history_loss"] and r0["verdict"] == r1["verdict"] in FLAGGED
    assert r0["stopped_at"] == r1["stopped_at"] and 150 < r0["stopped_at"] <= 150 + 2 * EVERY
    folder = f"checkpoint-{r0['stopped_at']}"
    assert r0["saves"] == r1["saves"] == [folder]  # the Trainer's own save flow, on every rank
    assert sorted(r0["wrote"]) == ["steadytrain_probe.yaml", "steadytrain_restart.json"] and r1["wrote"] == []
    assert json.loads((tmp_path / "out" / "hf" / folder / "steadytrain_restart.json").read_text())["framework"] == \
        "hf_trainer"
    assert lines and all(ln.startswith("rank0 ") for ln in lines), lines
