"""The probe runner on CPU: warmup and clipping really fix the built-in cases; bad specs; GPU skips."""

import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.errors import ConfigError
from analyzer.ingest.load import LoadOptions
from analyzer.pipeline import analyze
from probes.run import run_probe
from probes.runner import run_trial
from probes.schedule import lr_at
from probes.spec import ProbeSpec, TrialConfig, load_spec

torch.set_num_threads(1)


def _spec(tmp_path, fields=None, **more) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump({**(fields or {}), **more}))
    return p


def test_schedule_is_the_playbooks_warmup():
    lrs = [lr_at(s, base_lr=1.0, total_steps=100, warmup_steps=10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == 1.0 and lrs[50] == 1.0
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))
    cos = [lr_at(s, base_lr=1.0, total_steps=100, warmup_steps=10, post_warmup_steps=20, decay="cosine")
           for s in range(100)]
    assert cos[29] == 1.0 and cos[99] < 0.01


@pytest.mark.parametrize("workload,optimizer,lr,steps", [
    ("builtin:early_residual_mlp", "adam", 0.02, 200),
    ("builtin:wide_resnet", "nesterov", 2.0, 100),  # the conv net with BatchNorm (playbook Figure 4's case)
])
def test_warmup_removes_the_early_instability(tmp_path, workload, optimizer, lr, steps):
    out = run_probe(_spec(tmp_path, workload=workload, optimizer=optimizer, lr=lr, steps=steps,
                          eval_interval=50, plans=["baseline", "warmup_sweep"], warmup_candidates=[10]),
                    device="cpu", out_dir=tmp_path / "p")
    verdicts = {o.result.name: o.verdict for o in out.trials}
    assert verdicts == {"baseline": "early_instability", "warmup 10": "stable"}
    assert out.smallest_fix == "warmup_steps=10"
    assert out.trials[0].max_spike_ratio >= 1.5  # the early rise, x the initial loss
    assert (tmp_path / "p" / "probe_report.html").stat().st_size > 5000


def test_clipping_at_p90_tames_outlier_batch_spikes(tmp_path):
    out = run_probe(_spec(tmp_path, workload="builtin:outlier_batches", optimizer="adam", lr=0.003, steps=400,
                          eval_interval=100, plans=["clip_sweep"]), device="cpu", out_dir=tmp_path / "p")
    base = next(o for o in out.trials if o.result.plan == "baseline")
    p90 = next(o for o in out.trials if o.result.plan == "clip_sweep")  # the loosest first: p90
    assert base.verdict == "mid_instability" and base.result.clip is None
    assert p90.verdict == "stable"
    assert 0.05 <= p90.result.fraction_clipped <= 0.2  # p90 clips about a tenth of the steps
    assert out.smallest_fix.startswith("clip max_norm=")


def test_nan_stops_a_trial_and_marks_it_infeasible(tmp_path):
    spec = ProbeSpec(workload="builtin:divergent_mlp", optimizer="momentum", lr=10.0, steps=300, log_every=10)
    res = run_trial(spec, TrialConfig("t", 10.0, steps=300), "baseline", device=torch.device("cpu"),
                    log_dir=tmp_path / "t")
    assert res.infeasible and res.steps_run < 300
    assert "nan" in res.stop_reason or "inf" in res.stop_reason or "exceeded" in res.stop_reason
    report = analyze([tmp_path / "t"], load_options=LoadOptions(cache_dir=None))
    assert report.diagnoses[0].verdict == "divergence"
    series = report.diagnoses[0].run.series("train/loss")
    assert len(series) == res.steps_run and not math.isfinite(series.values[-1])


def test_every_step_is_logged_with_unclipped_norm_and_clipped_flag(tmp_path):
    spec = ProbeSpec(workload="builtin:outlier_batches", lr=0.003, steps=60, eval_interval=1, log_every=7)
    run_trial(spec, TrialConfig("t", 0.003, clip=0.5, steps=60), "clip", device=torch.device("cpu"),
              log_dir=tmp_path / "t")
    (d,) = analyze([tmp_path / "t"], load_options=LoadOptions(cache_dir=None)).diagnoses
    for tag in ("train/loss", "train/grad_norm", "train/lr", "train/clipped", "eval/loss"):
        assert d.run.series(tag).steps.tolist() == list(range(60)), tag
    g = d.run.series("train/grad_norm").values
    clipped = d.run.series("train/clipped").values
    assert (g > 0.5).tolist() == (clipped == 1).tolist()  # the logged norm is the unclipped one


@pytest.mark.parametrize("fields,needle", [
    ({"optimizer": "adam"}, "missing field 'workload'"),
    ({"workload": "builtin:x", "optimizer": "lion"}, "'optimizer'"),
    ({"workload": "builtin:x", "lr": -1}, "'lr'"),
    ({"workload": "builtin:x", "plans": ["warmup_sweeep"]}, "'plans'"),
    ({"workload": "builtin:x", "stepz": 3}, "unknown field"),
    ({"workload": "builtin:x", "betas": ["a", "b"]}, r"field 'betas': expected two numbers in \[0, 1\), e.g. "
                                                     r"\[0.9, 0.999\], got \['a', 'b'\]"),
    ({"workload": "builtin:x", "betas": [None, 0.9]}, r"field 'betas': expected two numbers in \[0, 1\)"),
    ({"workload": "builtin:x", "betas": [0.9]}, "field 'betas'"),
    ({"workload": "builtin:x", 1: "x"}, "field names must be text, got 1"),
    ({"workload": "builtin:x", "notes": 5}, "field 'notes': expected text or a list of text, got 5"),
    ({"workload": "builtin:x", "clip": True}, r"field 'clip': expected a max grad norm > 0 \(a number, not "
                                               r"true/false\) or null, got True"),
    ({"workload": "builtin:x", "clip": 0}, "field 'clip'"),
    ({"workload": "builtin:x", "steps": 1.5}, "field 'steps': expected an integer >= 1, got 1.5"),
    ({"workload": "builtin:x", "steps": True}, "field 'steps'"),
    ({"workload": "builtin:x", "lr": float("nan")}, "field 'lr': expected a number > 0"),
    ({"workload": "builtin:x", "device": ["cpu"]}, "field 'device': expected one of auto, cpu, cuda"),
    ({"workload": "builtin:x", "plans": []}, "field 'plans': expected a plan or a non-empty list"),
    ({"workload": "builtin:x", "warmup_candidates": [10, True]}, "field 'warmup_candidates'"),
    ({"workload": "builtin:x", "clip_candidates": [1.0, float("inf")]}, "field 'clip_candidates'"),
    ({"workload": "builtin:x", "workload_args": {1: 2}}, "field 'workload_args'"),
    ({"workload": "builtin:x", "run": 5}, "field 'run': expected a string, got 5"),
    ({"workload": "builtin:x", "divergence_factor": 1}, "field 'divergence_factor': expected a number > 1"),
    ({"workload": "builtin:x", "version": 2}, "field 'version': expected 1, got 2"),
])
def test_malformed_spec_is_a_one_line_error(tmp_path, fields, needle):
    with pytest.raises(ConfigError, match=needle) as exc:
        load_spec(_spec(tmp_path, fields))
    assert "\n" not in str(exc.value) and str(tmp_path) in str(exc.value)
    res = CliRunner().invoke(main, ["probe", str(_spec(tmp_path, fields))])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("content,needle", [(b"\x00\x01binary\xff", "binary content"),
                                            (b"workload: \xff\xfe\n", "not UTF-8"),
                                            (b"[1, 2", "not valid YAML"), (b"- a\n- b\n", "got list")])
def test_unreadable_spec_file_names_the_file(tmp_path, content, needle):
    p = tmp_path / "spec.yaml"
    p.write_bytes(content)
    res = CliRunner().invoke(main, ["probe", str(p)])
    assert res.exit_code == 2 and needle in res.output and str(p) in res.output, res.output


def test_probe_without_torch_says_what_to_install(tmp_path, monkeypatch):
    import sys

    spec = _spec(tmp_path, workload="builtin:divergent_mlp", steps=10)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError, as without torch
    res = CliRunner().invoke(main, ["probe", str(spec)])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == ("steadytrain: error: the probe runner needs PyTorch (torch is missing): "
                                  "pip install 'steadytrain[probe]'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_executor_gpus_without_a_gpu_is_a_usage_error(tmp_path):
    spec = _spec(tmp_path, workload="builtin:divergent_mlp", steps=10, plans=["baseline"])
    for args in ([], ["--device", "cpu"]):
        res = CliRunner().invoke(main, ["probe", str(spec), "--executor", "gpus", "--out", str(tmp_path / "p"), *args])
        assert res.exit_code == 2, res.output
        assert "--executor gpus" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "p" / "trials").exists()  # refused before any trial ran on the CPU


def test_probe_specs_from_hparams_logged_as_strings(tmp_path):
    from probes.from_report import write_probe_specs

    loss = [2.3 / (1 + 0.01 * s) for s in range(300)]
    loss[200:] = [float("nan")] * 100  # diverges: gets a spec
    hp = {"max_steps": '"1e4"', "batch_size": '"32"', "lr": '"3e-4"', "train_batch_size": "abc"}
    from tests.writers import write_lightning_csv

    write_lightning_csv(tmp_path / "logs" / "v0", loss, hparams=hp)
    report = analyze([tmp_path / "logs"], load_options=LoadOptions(cache_dir=None))
    assert report.diagnoses[0].run.hparams["max_steps"] == "1e4"
    (path,) = write_probe_specs(report, tmp_path / "specs").values()
    spec = load_spec(path)
    assert (spec.steps, spec.batch_size, spec.lr) == (500, 32, 3e-4)


def test_user_workload_by_module_function(tmp_path, monkeypatch):
    (tmp_path / "my_work.py").write_text(
        "import torch\n"
        "def make(batch_size, seed):\n"
        "    torch.manual_seed(seed)\n"
        "    model = torch.nn.Linear(4, 1)\n"
        "    def batch(step):\n"
        "        g = torch.Generator().manual_seed(step)\n"
        "        x = torch.randn(batch_size, 4, generator=g)\n"
        "        return x, x.sum(dim=1, keepdim=True)\n"
        "    return model, torch.nn.functional.mse_loss, batch, [batch(10**6)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = run_probe(_spec(tmp_path, workload="my_work:make", optimizer="sgd", lr=0.05, steps=50, eval_interval=10,
                          plans=["baseline"]), device="cpu", out_dir=tmp_path / "p")
    assert out.trials[0].result.steps_run == 50 and out.trials[0].result.final_loss < 1.0


def test_report_writes_specs_that_the_probe_command_accepts(tmp_path):
    root = Path(__file__).resolve().parents[1]
    res = CliRunner().invoke(main, ["report", str(root / "sample_logs"), "-o", str(tmp_path / "r.html"),
                                    "--no-cache"])
    assert res.exit_code == 0, res.output
    specs = sorted((tmp_path / "r_files" / "probes").glob("*.yaml"))
    assert specs
    for s in specs:
        spec = load_spec(s)
        assert spec.run and spec.diagnosis in ("early_instability", "mid_instability", "divergence")
    assert "steadytrain probe r_files/probes/" in (tmp_path / "r.html").read_text()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_trial_bf16(tmp_path):
    spec = ProbeSpec(workload="builtin:early_residual_mlp", lr=0.003, steps=100, dtype="bfloat16", log_every=25)
    res = run_trial(spec, TrialConfig("g", 0.003, steps=100), "baseline", device=torch.device("cuda"),
                    log_dir=tmp_path / "g")
    assert res.steps_run == 100 and res.device.startswith("cuda") and not res.infeasible


def _protobuf_event(wall_time, step, values):
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    return Event(wall_time=wall_time, step=step, summary=Summary(value=[
        Summary.Value(tag=k, simple_value=v) for k, v in values.items()])).SerializeToString()


@pytest.mark.parametrize("step", [0, 1, 127, 128, 300_000, 2**40])
def test_probe_event_bytes_are_exactly_protobufs(step):
    from probes.events import encode_scalar_event

    values = {"train/loss": 2.5, "train/grad_norm": float("nan"), "a" * 200: -1e30, "eval/loss": float("inf")}
    assert encode_scalar_event(1.7e9 + 0.25, step, values) == _protobuf_event(1.7e9 + 0.25, step, values)


@pytest.mark.parametrize("first,n", [(0, 3), (0, 200), (120, 20), (16_380, 9), (2**21 - 2, 4)])
def test_a_window_of_step_records_is_exactly_protobuf_events_framed(first, n):
    """The vectorised window encoder across the steps where the step's varint grows a byte."""
    import numpy as np
    from tensorboard.summary.writer.record_writer import RecordWriter

    from probes.events import encode_step_records

    rng = np.random.default_rng(first)
    walls = 1.7e9 + np.arange(n) * 0.013
    cols = {"train/loss": rng.random(n).astype(np.float32), "train/grad_norm": np.full(n, np.inf, np.float32),
            "t" * 130: rng.random(n) * 1e-3}
    import io

    buf = io.BytesIO()
    writer = RecordWriter(buf)  # tensorboard's own TFRecord framing, as the reference
    for i in range(n):
        writer.write(_protobuf_event(float(walls[i]), first + i, {k: float(v[i]) for k, v in cols.items()}))
    assert encode_step_records(walls, first, cols) == buf.getvalue()


def _interrupting_workload(tmp_path, monkeypatch, at_step):
    (tmp_path / "stop_work.py").write_text(
        "import torch\n"
        "def make(batch_size, seed):\n"
        "    torch.manual_seed(seed)\n"
        "    model = torch.nn.Linear(4, 1)\n"
        "    def batch(step):\n"
        f"        if step == {at_step}:\n"
        "            raise KeyboardInterrupt\n"
        "        x = torch.randn(batch_size, 4, generator=torch.Generator().manual_seed(step))\n"
        "        return x, x.sum(dim=1, keepdim=True)\n"
        "    return model, torch.nn.functional.mse_loss, batch, []\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_ctrl_c_keeps_every_step_run_and_reports_the_trials_that_ran(tmp_path, monkeypatch):
    _interrupting_workload(tmp_path, monkeypatch, at_step=37)
    out = run_probe(_spec(tmp_path, workload="stop_work:make", optimizer="sgd", lr=0.05, steps=100, log_every=10,
                          eval_interval=5, plans=["baseline", "warmup_sweep"]), device="cpu", out_dir=tmp_path / "p")
    (only,) = out.trials  # the sweep after the interrupted baseline never started
    assert only.result.interrupted and not only.result.infeasible and only.result.steps_run == 37
    (d,) = analyze([tmp_path / "p" / "trials"], load_options=LoadOptions(cache_dir=None)).diagnoses
    assert d.run.series("train/loss").steps.tolist() == list(range(37))  # 7 past the last flush too
    assert out.conclusion.startswith("Interrupted (Ctrl-C) in trial 'baseline' after 37 of 100 steps; 1 of ")
    assert "Interrupted" in Path(out.report_html).read_text()


@pytest.mark.ray
def test_trials_as_ray_tasks_on_a_local_ray_instance(tmp_path):
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    except Exception as exc:  # noqa: BLE001 - an environment that cannot start Ray is not a probe bug
        pytest.skip(f"a local Ray instance cannot start here: {exc}")
    spec = _spec(tmp_path, workload="builtin:early_residual_mlp", optimizer="adam", lr=0.02, steps=200,
                 eval_interval=50, plans=["baseline", "warmup_sweep"], warmup_candidates=[10])
    try:
        out = run_probe(spec, device="cpu", out_dir=tmp_path / "ray", executor="ray")
    finally:
        ray.shutdown()
    here = run_probe(spec, device="cpu", out_dir=tmp_path / "here")  # the same trials, in this process
    assert {o.result.name: o.verdict for o in out.trials} == {"baseline": "early_instability", "warmup 10": "stable"}
    assert [(o.result.name, o.verdict, o.result.steps_run) for o in out.trials] == \
        [(o.result.name, o.verdict, o.result.steps_run) for o in here.trials]
    assert out.smallest_fix == here.smallest_fix == "warmup_steps=10"
    # event files are named time.host.pid.counter: the Ray trials ran in other processes
    pids = {f.name.split(".")[4] for f in (tmp_path / "ray" / "trials").rglob("*tfevents*")}
    assert pids and str(os.getpid()) not in pids


def test_runaway_stop_needs_the_loss_above_its_start_not_only_far_above_a_tiny_best(tmp_path):
    from probes.events import EventLog
    from probes.runner import _StepRecorder

    rec = _StepRecorder(EventLog(tmp_path), clip=None, divergence_factor=20.0)

    def window(level):
        for _ in range(10):
            rec.add(torch.tensor(level), torch.tensor(1.0), 0.1, None)
        return rec.flush()

    assert window(2.3) is None
    assert window(0.003) is None
    assert window(0.07) is None  # 23x the best, but far below where training started: noise, not a runaway
    stop = window(50.0)
    assert stop is not None and "exceeded 20x its best 0.003 and its starting level 2.3" in stop
    assert rec.steps_logged == 40


def test_grad_norm_paths_agree_with_torchs_total_norm():
    """The CPU flat-buffer norm, the per-tensor parts combined at flush (CUDA's path), and mixed steps."""
    from probes.runner import combine_norms, grad_norm_fn

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(7, 33), torch.nn.ReLU(), torch.nn.Linear(33, 3))
    model(torch.randn(16, 7)).pow(2).mean().backward()
    grads = [p.grad for p in model.parameters()]
    ref = torch.nn.utils.get_total_norm(grads)
    few = grad_norm_fn(list(model.parameters()))  # 4 tensors: per-tensor norms
    many_params = [torch.nn.Parameter(torch.randn(5)) for _ in range(20)]
    many = grad_norm_fn(many_params)  # 20 small tensors on CPU: one norm over a flat copy
    assert (few.__name__, many.__name__) == ("parts", "flat")
    assert torch.allclose(combine_norms([few(grads)])[0], ref, rtol=1e-6)
    assert torch.allclose(many(grads), ref, rtol=1e-6)
    parts = list(torch._foreach_norm(grads))
    combined = combine_norms([parts, parts[:2], ref])  # same-length fast path and the step-by-step one
    assert torch.allclose(combined, torch.stack([ref, torch.linalg.vector_norm(torch.stack(parts[:2])), ref]))
    assert torch.allclose(combine_norms([parts, parts]), torch.stack([ref, ref]), rtol=1e-6)


def test_a_stable_baseline_counts_a_fix_only_when_it_trains_clearly_better():
    """Post-LN Transformer style: no instability in the curve, but stuck near the start without warmup."""
    from types import SimpleNamespace

    from probes.run import TrialOutcome, _conclude

    def trial(name, plan, best, warmup=0):
        r = SimpleNamespace(name=name, plan=plan, lr=0.03, warmup_steps=warmup, clip=None, best_loss=best,
                            infeasible=False, stop_reason=None, fraction_clipped=None)
        return TrialOutcome(r, "stable", None, ())

    text, fix = _conclude([trial("baseline", "baseline", 3.275), trial("warmup 15", "warmup_sweep", 1.633, 15)])
    assert fix == "warmup_steps=15" and "held back: warmup 15 reached a best loss of 1.633" in text
    text, fix = _conclude([trial("baseline", "baseline", 1.60), trial("warmup 15", "warmup_sweep", 1.55, 15)])
    assert fix is None and "nothing to fix at this scale" in text


def test_warmup_target_sweeps_at_the_playbooks_10x_lr_and_reports_the_shortest_stable():
    from types import SimpleNamespace

    from probes.run import TrialOutcome, _conclude
    from probes.spec import ProbeSpec

    spec = ProbeSpec(workload="builtin:early_residual_mlp", lr=0.02, steps=300, warmup_candidates=(10, 30),
                     warmup_lr_factor=10.0)
    trials = spec.trials("warmup_target")
    assert [(t.lr, t.warmup_steps, t.post_warmup_steps) for t in trials] == [(0.2, 10, 20), (0.2, 30, 60)]

    def trial(plan, verdict, warmup, lr):
        r = SimpleNamespace(name=f"warmup {warmup}", plan=plan, lr=lr, warmup_steps=warmup, clip=None,
                            best_loss=1.0, infeasible=verdict == "divergence", stop_reason=None,
                            fraction_clipped=None)
        return TrialOutcome(r, verdict, None, ())

    base = SimpleNamespace(name="baseline", plan="baseline", lr=0.02, warmup_steps=0, clip=None, best_loss=2.0,
                           infeasible=False, stop_reason=None, fraction_clipped=None)
    outcomes = [TrialOutcome(base, "early_instability", None, ()), trial("warmup_sweep", "stable", 10, 0.02),
                trial("warmup_target", "divergence", 10, 0.2), trial("warmup_target", "stable", 30, 0.2)]
    text, fix = _conclude(outcomes)
    assert fix == "warmup_steps=10"
    assert "target LR 0.2, the shortest warmup that did not blow up: 30 steps" in text
    text, _ = _conclude(outcomes[:3])
    assert "no warmup tried (10 steps) was stable" in text


def test_a_flagged_runs_spec_plans_the_warmup_target_from_the_recommendation(tmp_path):
    from analyzer.ingest.load import LoadOptions
    from analyzer.pipeline import analyze
    from probes.from_report import spec_for
    from tests.writers import curve, write_summarywriter

    loss = curve(400, seed=1)
    loss[2:4] = loss[0] * 3.0  # an Adam blip: early instability, warmup recommended
    write_summarywriter(tmp_path / "lr_0.02", {"train/loss": loss})
    (d,) = analyze([tmp_path], load_options=LoadOptions(cache_dir=None)).diagnoses
    warm = next(r for r in d.recommendations if r.kind == "warmup")
    spec = spec_for(d)
    assert spec is not None and "warmup_sweep" in spec.plans and "warmup_target" in spec.plans
    assert spec.warmup_lr_factor == pytest.approx(warm.params["sweep_base_lr"] / warm.params["lr"])
    assert spec.lr == pytest.approx(0.02)


def _diverged_during_warmup(root: Path) -> None:
    import numpy as np

    from tests.writers import curve, write_summarywriter

    n = 400
    loss = curve(n, seed=2)
    loss[25:] = np.linspace(loss[24], 60, n - 25)  # blows up at step 25, while the LR still ramps to its peak
    write_summarywriter(root, {"train/loss": loss, "train/lr": np.minimum(3e-3 * np.arange(1, n + 1) / 100, 3e-3)})


def test_a_run_that_diverged_below_its_peak_lr_gets_a_spec_the_probe_accepts(tmp_path):
    from probes.from_report import write_probe_specs

    _diverged_during_warmup(tmp_path / "logs" / "run")
    report = analyze([tmp_path / "logs"], load_options=LoadOptions(cache_dir=None))
    warm = next(r for r in report.diagnoses[0].recommendations if r.kind == "warmup")
    assert warm.params["sweep_base_lr"] < 1e-3  # the LR in force when it diverged, below the 3e-3 peak
    (path,) = write_probe_specs(report, tmp_path / "specs").values()
    spec = load_spec(path)
    assert spec.lr == pytest.approx(3e-3) and spec.warmup_lr_factor == 1.0 and "warmup_target" in spec.plans
    assert any("below its peak" in note for note in spec.notes)


def test_one_runs_spec_that_cannot_be_made_costs_only_that_spec(tmp_path, monkeypatch):
    import probes.from_report as from_report

    _diverged_during_warmup(tmp_path / "logs" / "a")
    _diverged_during_warmup(tmp_path / "logs" / "b")
    made = from_report.spec_for

    def failing(d):  # type: ignore[no-untyped-def]
        if d.run.id == "a":
            raise ValueError("a field the spec cannot hold")
        return made(d)

    monkeypatch.setattr(from_report, "spec_for", failing)
    res = CliRunner().invoke(main, ["report", str(tmp_path / "logs"), "-o", str(tmp_path / "r.html"), "--no-cache"])
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "r_files" / "probes").glob("*.yaml")] == ["b.yaml"]
    assert "no probe spec for run a: ValueError: a field the spec cannot hold" in res.output
