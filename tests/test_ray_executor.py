"""`--executor ray`: the same report as the local path, from runs read and judged as Ray tasks (a local
2-CPU Ray instance), with only thinned role series coming back for runs drawn without full figures."""

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.distributed import SUMMARY_POINTS, plan_batches, report_run
from analyzer.ingest.discover import discover
from analyzer.types import Roles, Run
from tests.test_remote import s3  # noqa: F401 - the local S3 endpoint fixture
from tests.writers import curve, hf_log_history, write_jsonl, write_lightning_csv, write_summarywriter, write_trainer_state


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        yield ray
    finally:
        ray.shutdown()


def _logs(root: Path) -> Path:
    """Formats, an LR sweep, a diverged run, two files of one folder that are one run (identity), a flat folder."""
    for i, lr in enumerate((1e-3, 3e-3, 1e-2, 3e-2)):
        loss = curve(600, seed=i)
        if lr == 3e-2:
            loss[300:] = loss[300:] * np.linspace(1, 30, 300)
        write_lightning_csv(root / "sweep" / f"lr_{lr:g}", loss.tolist(), lr=lr,
                            hparams={"lr": lr, "batch_size": 32, "optimizer": "adam", "layers": 4})
    spiky = curve(1000, seed=9)
    spiky[600:612] *= 5.0
    write_summarywriter(root / "tb_spiky", {"train/loss": spiky, "train/grad_norm": curve(1000, seed=10) + 1,
                                            "train/lr": np.full(1000, 1e-3)})
    bad = curve(500, seed=11)
    bad[350:] = np.nan
    write_jsonl(root / "diverged" / "log.jsonl", [{"step": s, "loss": float(v) if np.isfinite(v) else "NaN"}
                                                  for s, v in enumerate(bad)])
    hist = hf_log_history(curve(400, seed=12).tolist())
    write_trainer_state(root / "hf", hist, max_steps=400, checkpoints=(200,))
    write_jsonl(root / "hf" / "trainer_log.jsonl",  # LLaMA-Factory's copy of the same history: folded, not a run
                [{"current_steps": h["step"], "loss": h["loss"]} for h in hist if "loss" in h])
    for k in range(3):
        write_jsonl(root / "flat" / f"run{k}.jsonl", [{"step": s, "loss": 2.0 / (s + 1) + 0.01 * k} for s in range(80)])
    return root


def _without_time(text: str) -> str:
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", "", text)  # the report's creation time


@pytest.mark.ray
def test_ray_report_equals_the_local_report(ray_local, tmp_path):
    logs = _logs(tmp_path / "logs")
    out = {}
    for executor in ("local", "ray"):
        res = CliRunner().invoke(main, ["report", str(logs), "--no-cache", "--executor", executor, "--json",
                                        str(tmp_path / executor / "r.json"), "-o", str(tmp_path / executor / "r.html")])
        assert res.exit_code == 0, res.output
        out[executor] = json.loads((tmp_path / executor / "r.json").read_text())
    local, ray = out["local"], out["ray"]
    assert local.pop("created") and ray.pop("created")
    assert ray == local
    assert {r["verdict"] for r in local["runs"]} >= {"divergence", "stable", "mid_instability"}
    assert local["sweeps"] and any(i["status"] == "read" and "folded" in i["reason"] for i in local["inputs"])
    # the HTML: few runs, so every run's figures are drawn, from role series fetched whole: the same page
    html = {e: (tmp_path / e / "r.html").read_text() for e in out}
    assert _without_time(html["ray"]) == _without_time(html["local"])
    specs = {e: {p.name: p.read_text() for p in (tmp_path / e / "r_files" / "probes").iterdir()} for e in out}
    assert specs["ray"] == specs["local"] and len(specs["ray"]) == 3


@pytest.mark.ray
def test_ray_reads_an_object_store_as_the_local_path_reads_the_disk(ray_local, s3, tmp_path):  # noqa: F811
    logs = _logs(tmp_path / "logs")
    s3.put(str(logs), "logs/ray", recursive=True)
    out = {}
    for name, args in (("disk", [str(logs), "--no-cache"]),
                       ("s3", ["s3://logs/ray", "--cache-dir", str(tmp_path / "cache"), "--executor", "ray"])):
        res = CliRunner().invoke(main, ["report", *args, "--no-html", "--json", str(tmp_path / f"{name}.json")])
        assert res.exit_code == 0, res.output
        out[name] = json.loads((tmp_path / f"{name}.json").read_text())
    disk, remote = out["disk"], out["s3"]
    for r in disk["runs"] + remote["runs"]:
        r["sources"] = [s.rsplit("/", 2)[-2:] for s in r.pop("sources")]
    assert remote["runs"] == disk["runs"] and remote["sweeps"] == disk["sweeps"]
    assert sorted(i["path"].removeprefix("s3://logs/ray/") for i in remote["inputs"]) == sorted(
        str(Path(i["path"]).relative_to(logs)) for i in disk["inputs"])


@pytest.mark.ray
def test_ray_inspect_and_a_ray_cluster_address_that_is_not_there(ray_local, tmp_path):
    logs = _logs(tmp_path / "logs")
    local = CliRunner().invoke(main, ["inspect", str(logs), "--no-cache", "-a"])
    ray = CliRunner().invoke(main, ["inspect", str(logs), "--no-cache", "-a", "--executor", "ray"])
    assert ray.exit_code == local.exit_code == 0 and ray.output == local.output
    res = CliRunner().invoke(main, ["inspect", str(logs), "--no-cache", "--address", "auto"])
    assert res.exit_code == 2 and "--executor ray" in res.output


def test_thinned_runs_keep_every_spike_the_count_and_the_range():
    n = 100_000
    values = np.exp(-np.arange(n) / 20_000) + 0.01 * np.random.default_rng(0).standard_normal(n)
    values[61_234] = 50.0  # a one-point spike
    values[90_000:95_000] = np.nan
    frame = pl.DataFrame({"tag": ["loss"] * n + ["other"] * 10, "step": np.r_[np.arange(n), np.arange(10)],
                          "wall_time": np.zeros(n + 10), "value": np.r_[values, np.ones(10)]})
    run = Run("r", "jsonl", ("f",), frame.with_columns(pl.col("tag").cast(pl.Enum(["loss", "other"]))),
              roles=Roles(train_loss="loss"))
    thin = report_run(run)
    loss = thin.role_series("train_loss")
    assert thin.n_points == n + 10 and thin.step_range() == (0, n - 1) and thin.tags == ["loss"]
    assert np.isfinite(loss.values).sum() <= SUMMARY_POINTS["train_loss"] + 2
    assert 61_234 in loss.steps and np.nanmax(loss.values) == 50.0 and np.nanmin(loss.values) == np.nanmin(values)
    assert {90_000, 94_999} <= set(loss.steps[np.isnan(loss.values)].tolist())
    whole = report_run(run, whole=True).role_series("train_loss")
    assert len(whole) == n


def test_batches_keep_each_directory_whole_and_tiny_runs_together(tmp_path):
    for d in range(40):
        write_jsonl(tmp_path / f"d{d:02d}" / "log.jsonl", [{"step": s, "loss": 1.0} for s in range(5)])
    for k in range(30):
        write_jsonl(tmp_path / "flat" / f"r{k}.jsonl", [{"step": s, "loss": 1.0} for s in range(5)])
    sources = discover([tmp_path]).sources
    batches = plan_batches(sources, cpus=2)
    assert sum(len(b) for b in batches) == len(sources) == 70
    homes = [{str(s.directory) for s in b} for b in batches]
    flat = [h for h in homes if str(tmp_path / "flat") in h]
    assert len(flat) == 1  # one folder's runs are one batch: run identity is decided among them
    assert 4 <= len(batches) <= 12  # ~4 per CPU, not 70 one-run tasks


def test_batches_keep_runs_of_one_training_in_sibling_and_nested_folders_together(tmp_path):
    from tests.writers import curve, hf_log_history, write_lightning_csv, write_summarywriter, write_trainer_state

    for d in range(40):
        write_jsonl(tmp_path / f"d{d:02d}" / "log.jsonl", [{"step": s, "loss": 1.0} for s in range(5)])
    out = tmp_path / "hf" / "out"  # the HF Trainer's output folder and its TensorBoard runs/<date>_<host>
    write_trainer_state(out, hf_log_history(curve(50, seed=1)), max_steps=50)
    write_summarywriter(out / "runs" / "Jan01_10-00-00_host", {"train/loss": curve(50, seed=1)})
    for v in range(2):  # a Lightning run resumed into version_1
        write_lightning_csv(tmp_path / "pl" / "lightning_logs" / f"version_{v}", curve(50, seed=v))
    sources = discover([tmp_path]).sources
    batches = plan_batches(sources, cpus=2)
    home = {s.id: i for i, b in enumerate(batches) for s in b}
    assert home["hf/out"] == home["hf/out/runs/Jan01_10-00-00_host"]
    assert home["pl/lightning_logs/version_0"] == home["pl/lightning_logs/version_1"]
    assert len(batches) >= 4  # the 40 sibling folders, one family too large for a batch, are still spread


class _FakeRay:
    """Ray's driver API as `analyze_on_ray` uses it, running each task when its result is asked for."""

    def __init__(self):
        self.tasks = 0

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return {"CPU": 2}

    def put(self, value):
        return value

    def remote(self, **_):
        fake = self

        class Remote:
            def __init__(self, fn):
                self.fn = fn

            def remote(self, *args):
                fake.tasks += 1
                return lambda: self.fn(*args)
        return Remote

    def wait(self, refs, num_returns, timeout):
        return refs, []

    def get(self, ref):
        return ref()


def test_a_failed_task_skips_its_runs_files_and_keeps_the_others(tmp_path, monkeypatch):
    import analyzer.distributed as dist
    from analyzer.config import AnalysisConfig
    from analyzer.ingest.load import LoadOptions

    for d in range(12):
        write_jsonl(tmp_path / f"d{d:02d}" / "log.jsonl", [{"step": s, "loss": 2.0 / (s + 1)} for s in range(40)])
    real = dist.judge_batch

    def judge(sources, options, config):
        if any(s.id.startswith("d03") for s in sources):
            raise MemoryError("the worker ran out of memory")
        return real(sources, options, config)

    monkeypatch.setattr(dist, "judge_batch", judge)
    fake = _FakeRay()
    monkeypatch.setattr(dist, "connect_ray", lambda address: (fake, False))
    report = dist.analyze_on_ray([tmp_path], config=AnalysisConfig(), load_options=LoadOptions(cache_dir=None))
    skipped = [i for i in report.inputs if i.status == "skipped"]
    assert skipped and all("Ray task reading it failed (MemoryError" in i.reason for i in skipped)
    assert {i.run for i in skipped} | {d.run.id for d in report.diagnoses} == {f"d{d:02d}/log.jsonl" for d in range(12)}
    assert "d03/log.jsonl" in {i.run for i in skipped} and len(report.diagnoses) >= 9
