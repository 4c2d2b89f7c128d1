"""Re-running the flagged run itself: `steadytrain report` on a real run's output folder writes a spec naming
the run's own architecture and checkpoint; `steadytrain probe` on it reproduces the instability (judged by
the analyzer), finds the smallest change that removes it and attributes it to a block. One real run per
framework (HF Trainer, Lightning, a nanoGPT-style loop), tiny models on CPU (tests/probe_runs.py)."""

import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from analyzer.cli import main
from probes.spec import load_spec

torch.set_num_threads(1)


def _report(target: Path, tmp: Path):
    res = CliRunner().invoke(main, ["report", str(target), "-o", str(tmp / "r.html"), "--no-cache"])
    assert res.exit_code == 0, res.output
    (spec_path,) = (tmp / "r_files" / "probes").glob("*.yaml")
    return spec_path, load_spec(spec_path), (tmp / "r.html").read_text(encoding="utf-8")


def _probe(spec_path: Path, tmp: Path, *args: str):
    res = CliRunner().invoke(main, ["probe", str(spec_path), "--device", "cpu", "--out", str(tmp / "p"), *args])
    assert res.exit_code == 0, res.output
    js = json.loads((tmp / "p" / "probe_report.json").read_text())
    html = (tmp / "p" / "probe_report.html").read_text(encoding="utf-8")
    return res.output, js, html


def _trial(js, plan):
    return next(t for t in js["trials"] if t["plan"] == plan)


def _check_attribution(js, text, html):
    att = js["attribution"]
    assert att is not None and att["blocks"], text
    first = att["blocks"][0]
    assert first["rise_step"] is not None and first["grad_ratio"] >= 3.0
    assert "gradient rose first" in att["sentence"] and att["sentence"] in text
    assert "Mechanism: which block moved first" in html and first["group"] in html


def test_hf_trainer_run_replayed_from_its_own_architecture_and_settings(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from tests.probe_runs import hf_run

    out, data = hf_run(tmp_path)
    spec_path, spec, html = _report(out, tmp_path)
    src = spec.source
    assert spec.workload == "run" and src["kind"] == "hf" and src["architecture"] == "GPT2LMHeadModel"
    # the early instability is before the first checkpoint: its config and settings, fresh weights
    assert Path(src["config"]).parent.name == "checkpoint-20" and src["checkpoint"] is None
    assert "after the flagged window" in src["resume_note"]
    assert str(Path(src["config"]).parent / "training_args.bin") in src["settings_from"]
    assert (spec.lr, spec.batch_size, spec.clip, spec.optimizer) == (0.3, 8, 1.0, "adamw")  # from training_args.bin
    assert spec.schedule["name"] == "linear" and spec.lr_trace  # the logged LR over the replay
    assert any("NO DATA GIVEN" in n for n in spec.notes)  # without --data: said loudly
    assert "the run itself: GPT2LMHeadModel from" in html and "checkpoint-20" in html
    # the report's Inputs list names checkpoint files as checkpoints, not as unrecognised logs
    assert "a checkpoint (weights / optimizer state), not a log" in html
    text, js, phtml = _probe(spec_path, tmp_path, "--data", str(data))
    assert "with the run's tokenizer" in " ".join(js["used"]) and "GPT2LMHeadModel" in " ".join(js["used"])
    base = _trial(js, "baseline")
    assert base["verdict"] == "early_instability" and js["replay"]["reproduced"]
    assert js["replay"]["reproduced_line"].startswith("reproduced: yes (early instability at step")
    fix = js["smallest_fix"]
    assert fix is not None
    fixed = [t for t in js["trials"] if t["verdict"] == "stable"]
    assert fixed and all(t["plan"] != "baseline" for t in fixed)
    _check_attribution(js, text, phtml)


def test_lightning_run_resumed_from_its_checkpoint(tmp_path):
    pytest.importorskip("lightning")
    from tests.probe_runs import JUMP, lightning_run

    version, data = lightning_run(tmp_path)
    spec_path, spec, html = _report(version, tmp_path)
    src = spec.source
    assert src["kind"] == "lightning" and src["class_path"] == "tests.probe_runs.TinyLM"
    assert src["checkpoint"].endswith(".ckpt") and src["checkpoint_step"] <= JUMP - 20
    assert spec.start_step == src["checkpoint_step"]  # Lightning logs the update at global_step under that step
    assert spec.batch_size == 16 and spec.optimizer == "adam"  # hparams; the saved optimizer's param groups
    assert src["checkpoint"] in html
    text, js, phtml = _probe(spec_path, tmp_path, "--data", str(data), "--data-order", "sequential")
    used = " ".join(js["used"])
    assert "optimizer state (Adam moments" in used and "TinyLM.configure_optimizers (Adam, MultiStepLR per step)" in used
    base = _trial(js, "baseline")
    assert base["verdict"] in ("mid_instability", "divergence") and js["replay"]["reproduced"]
    assert abs(base["unstable_at"] - (JUMP + 1)) <= 2  # the first update at the jumped LR, as logged
    assert js["replay"]["data_driven"] is False  # the LR jump, not the batches
    fix = js["smallest_fix"]
    assert fix and not fix.startswith("skip")  # a setting (clipping or a lower LR), not the data
    assert any(t["verdict"] == "stable" for t in js["trials"] if t["plan"] in ("clip_sweep", "lr_sweep", "lr_search"))
    assert "LR search: the largest LR without the instability" in js["replay"]["lr_search_line"]
    _check_attribution(js, text, phtml)


def test_nanogpt_run_with_planted_bad_batches_is_data_driven(tmp_path):
    from tests.probe_runs import BAD_STEPS, nanogpt_run

    out = nanogpt_run(tmp_path)
    spec_path, spec, html = _report(out, tmp_path)
    src = spec.source
    assert src["kind"] == "nanogpt" and src["checkpoint"] == str(out / "ckpt.pt")
    assert src["model_args"]["n_layer"] == 2 and spec.data == str((out / "train.bin").resolve())
    assert src["checkpoint_step"] < BAD_STEPS[0] and spec.window["start"] == BAD_STEPS[0]
    assert (spec.lr, spec.betas, spec.weight_decay, spec.clip) == (3e-3, (0.9, 0.95), 0.1, None)
    text, js, phtml = _probe(spec_path, tmp_path, "--data-order", "sequential")
    base = _trial(js, "baseline")
    assert base["verdict"] == "mid_instability" and base["unstable_at"] == BAD_STEPS[0]  # the same step as logged
    assert js["replay"]["reproduced_line"].startswith(f"reproduced: yes (mid instability at step {BAD_STEPS[0]}, "
                                                      "the logged step")
    skip = _trial(js, "skip_window")
    assert skip["verdict"] == "stable" and skip["skip"][0] == BAD_STEPS[0]
    assert js["replay"]["data_driven"] is True and js["replay"]["data_line"].startswith("data-driven")
    assert js["smallest_fix"].startswith(f"skip the batches of steps {BAD_STEPS[0]}-")
    # clipping and a lower LR leave the bad batches' loss where it is
    assert all(t["verdict"] != "stable" for t in js["trials"] if t["plan"] in ("clip_sweep", "lr_sweep"))
    assert "Replay of the flagged window" in phtml and "data-driven" in phtml
    _check_attribution(js, text, phtml)


def test_scale_shrinks_the_architecture_and_says_so(tmp_path):
    from tests.probe_runs import nanogpt_run

    out = nanogpt_run(tmp_path, iters=60)
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(yaml.safe_dump({
        "workload": "run", "source": {"kind": "nanogpt", "architecture": "nanoGPT GPT", "checkpoint": str(out / "ckpt.pt"),
                                      "model_args": {"n_layer": 4, "n_head": 4, "n_embd": 64, "block_size": 16,
                                                     "vocab_size": 64, "bias": False}},
        "data": str(out / "train.bin"), "optimizer": "adamw", "lr": 1e-3, "batch_size": 4, "steps": 8,
        "plans": ["baseline"]}))
    text, js, _ = _probe(spec_path, tmp_path, "--scale", "depth=0.5,width=0.5")
    used = " ".join(js["used"])
    assert "scaled down (n_layer 4 -> 2, n_embd 64 -> 32)" in used and "fresh weights" in used
    assert "a checkpoint cannot be shrunk" in used
    assert set(js["attribution"] or {}) <= {"loss_start", "loss_peak", "blocks", "sentence"}
    res = CliRunner().invoke(main, ["probe", str(spec_path), "--scale", "depth=2"])
    assert res.exit_code == 2 and "depth=F and/or width=F" in res.output


def test_reading_a_checkpoint_never_runs_its_code(tmp_path):
    """The report peeks into checkpoints it did not make: a pickle naming os.system is read as data."""
    from probes.peek import Record, read_checkpoint_tree

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    bad = tmp_path / "ckpt.pt"
    bad.write_bytes(pickle.dumps({"model_args": {"n_layer": 2}, "x": Evil()}, protocol=2))
    tree = read_checkpoint_tree(bad)
    assert tree["model_args"] == {"n_layer": 2} and isinstance(tree["x"], Record)
    assert not (tmp_path / "pwned").exists()


def test_micro_batches_when_a_logged_batch_would_not_fit():
    from probes.artifacts import Checkpoint
    from probes.own_run import micro_batch

    big = Checkpoint("hf", None, None, 0, "LlamaForCausalLM", model_args={"hidden_size": 4096,
                                                                           "num_hidden_layers": 32})
    micro, why = micro_batch(1024, 2048, big)
    assert micro is not None and 1024 % micro == 0 and micro < 1024 and "accumulation" in why
    assert micro_batch(8, 16, Checkpoint("hf", None, None, 0, "x", model_args={"hidden_size": 32,
                                                                                "num_hidden_layers": 2})) == (None, None)


@pytest.mark.parametrize("fields,needle", [
    ({"workload": "run"}, "workload 'run' needs a 'source'"),
    ({"workload": "run", "source": {"kind": "keras", "architecture": "x"}}, "field 'source'"),
    ({"workload": "run", "source": {"architecture": "x"}}, "missing kind"),
    ({"workload": "builtin:x", "scale": {"depth": 2}}, "field 'scale'"),
    ({"workload": "builtin:x", "data_order": "shuffled"}, "field 'data_order': expected one of random, sequential"),
    ({"workload": "builtin:x", "lr_trace": [[5, 0.1], [3, 0.1]]}, "field 'lr_trace'"),
    ({"workload": "builtin:x", "window": {"start": 3}}, "field 'window'"),
])
def test_bad_own_run_fields_are_one_line_errors(tmp_path, fields, needle):
    from analyzer.errors import ConfigError

    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(fields))
    with pytest.raises(ConfigError, match=needle) as exc:
        load_spec(p)
    assert "\n" not in str(exc.value)


def test_the_logged_lr_wins_where_the_rebuilt_schedule_disagrees():
    """HF logs the LR after the scheduler stepped (the next update's); a custom scheduler the settings do not
    describe shows as a mismatch, and the replay then follows the LR as logged."""
    from probes.models import OwnModel, lr_of
    from probes.spec import ProbeSpec

    def linear(step):  # HF's linear decay over 100 updates, update k (logged as step k) at lambda(k - 1)
        return [0.1 * (1 - (step - 1) / 100)]

    own = OwnModel(torch.nn.Linear(2, 2), lambda t: t.sum(), lambda: None, linear, 8, 4)
    src = {"kind": "hf", "architecture": "GPT2LMHeadModel"}
    logged = tuple((s, 0.1 * (1 - s / 100)) for s in range(1, 90))  # as HF logs it: one step ahead
    schedule, how = lr_of(own, ProbeSpec(workload="run", source=src, lr=0.1, lr_trace=logged))
    assert "matches the logged LR" in how and schedule(50) == linear(50)
    jumped = tuple((s, v * (30 if s >= 40 else 1)) for s, v in logged)  # LambdaLR x30 from step 40: not in the args
    schedule, how = lr_of(own, ProbeSpec(workload="run", source=src, lr=0.1, lr_trace=jumped))
    assert how.startswith("LR as the run logged it") and schedule(60)[0] > 20 * linear(60)[0]


def test_data_from_a_function_and_a_datasets_folder_without_datasets(tmp_path, monkeypatch):
    """--data package.module:function feeds the run's own model; a datasets folder without the datasets package is
    a one-line error saying what to install."""
    import sys

    from probes.data import open_data

    (tmp_path / "my_tokens.py").write_text(
        "import torch\n"
        "def batches(index, batch_size, seq_len, seed):\n"
        "    g = torch.Generator().manual_seed(seed * 1000 + index)\n"
        "    return torch.randint(0, 64, (batch_size, seq_len + 1), generator=g)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(yaml.safe_dump({
        "workload": "run", "source": {"kind": "nanogpt", "architecture": "nanoGPT GPT",
                                      "model_args": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8,
                                                     "vocab_size": 64}},
        "data": "my_tokens:batches", "optimizer": "adamw", "lr": 1e-3, "batch_size": 4, "steps": 6,
        "plans": ["baseline"]}))
    _, js, _ = _probe(spec_path, tmp_path)
    assert "my_tokens:batches (your function" in " ".join(js["used"]) and js["trials"][0]["steps_run"] == 6
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)
    from analyzer.errors import ConfigError

    with pytest.raises(ConfigError, match="a datasets folder needs the datasets package") as exc:
        open_data(str(folder), order="random", seq_len=8, seed=0, vocab_size=64, tokenizer_dir=None)
    assert "\n" not in str(exc.value)


def test_the_smallest_change_ranks_skip_clip_warmup_lr_and_ignores_fixes_that_stop_learning():
    from types import SimpleNamespace

    from probes.outcome import TrialOutcome
    from probes.spec import ProbeSpec
    from probes.verdict import judge_replay

    def trial(name, plan, verdict, *, final=2.0, best=1.9, clip=None, clipped=None, factor=1.0, warmup=0, skip=None):
        r = SimpleNamespace(name=name, plan=plan, lr=0.01 * factor, warmup_steps=warmup, clip=clip, best_loss=best,
                            final_loss=final, infeasible=False, stop_reason=None, fraction_clipped=clipped,
                            lr_factor=factor, skip=skip, first_step=100, steps_run=50)
        return TrialOutcome(r, verdict, 2.5 if verdict != "stable" else None, (), 130 if verdict != "stable" else None)

    spec = ProbeSpec(workload="run", source={"kind": "nanogpt", "architecture": "x"}, lr=0.01, start_step=100,
                     window={"start": 131, "end": 140, "ratio": 2.4, "verdict": "mid_instability"},
                     plans=("baseline", "skip_window", "clip_sweep", "lr_sweep", "warmup_sweep", "lr_search"))
    base = trial("same settings", "baseline", "mid_instability")
    outcomes = [base, trial("skip", "skip_window", "mid_instability", skip=(131, 140)),
                trial("clip 3", "clip_sweep", "stable", clip=3.0, clipped=0.7),  # clips most steps: not a fix
                trial("clip 1", "clip_sweep", "stable", clip=1.0, clipped=0.2),
                trial("warmup 10", "warmup_sweep", "stable", warmup=10),
                trial("lr 0.01x", "lr_sweep", "stable", factor=0.01, final=3.5)]  # stable, learned nothing
    replay = judge_replay(spec, outcomes)
    assert replay.reproduced and replay.reproduced_line.startswith("reproduced: yes (mid instability at step 130, "
                                                                   "1 step before the logged 131; 2.5x its level "
                                                                   "(logged: 2.4x)")
    assert replay.data_driven is False and replay.smallest == "clip max_norm=1"
    assert "clip 3 (clipped 70% of steps: a lower LR in disguise)" in replay.fixes_line
    assert "lr 0.01x (stable, but it learned far less: final loss 3.5)" in replay.fixes_line
    assert replay.lr_search_line.startswith("LR search: no LR tried both removed it and kept learning (at x0.01")
    skipped = [outcomes[0], trial("skip", "skip_window", "stable", skip=(131, 140))] + outcomes[2:]
    replay = judge_replay(spec, skipped)
    assert replay.data_driven is True and replay.smallest.startswith("skip the batches of steps 131-140")
    assert "speaks of them, not of the run's data" in replay.data_line  # spec.data is None: synthetic batches
