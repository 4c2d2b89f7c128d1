"""The in-process judgement: a plain loop with `Monitor.update`, a Lightning `Callback` and an HF
`TrainerCallback`, each on a real tiny CPU training whose LR jumps 30x at a known step: flagged
within a judgement interval of it, the run stopped, a checkpoint saved and tagged with the last good
step, the restart plan and a probe spec that `steadytrain probe` loads written beside it."""

import json
import math

import numpy as np
import pytest

from analyzer.live import Monitor
from analyzer.live.callbacks import PLAN_NAME, SPEC_NAME

torch = pytest.importorskip("torch")
from tests.unstable_training import JUMP_AT, LR, lr_at, mlp, teacher_batches  # noqa: E402

FLAGGED = ("mid_instability", "divergence")
EVERY = 25


def _check_hand_over(finding, plan_path, spec_path):
    from probes.spec import load_spec

    assert finding.verdict in FLAGGED
    good = finding.last_good_step
    assert good is not None and good < finding.first_unstable_step <= finding.step
    plan = json.loads(plan_path.read_text())
    assert plan["last_good_step"] == good and plan["skip_batches_of_steps"] == [good + 1, finding.step]
    assert plan["verdict"] == finding.verdict and plan["findings"] and plan["recommendations"]
    spec = load_spec(spec_path)
    assert spec.diagnosis == finding.verdict and spec.plans[0] == "baseline"
    assert finding.probe_spec_yaml().startswith("# steadytrain probe spec")


def test_plain_loop_stops_and_checkpoints_tagged_with_the_last_good_step(tmp_path):
    torch.set_num_threads(1)
    model, batch = mlp(), teacher_batches()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    seen = []
    mon = Monitor(run_id="plain", every_n_steps=EVERY, max_overhead=None, stop_on="mid", checkpoint_on="mid",
                  checkpoint_dir=tmp_path / "ckpt", hparams={"lr": LR, "max_steps": 600, "optimizer": "adam"},
                  save_checkpoint=lambda path: torch.save({"model": model.state_dict()}, path),
                  on_finding=seen.append)
    for step in range(600):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x, y = batch(step)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
        opt.step()
        mon.update(step, loss=loss.detach(), grad_norm=norm, lr=lr_at(step))  # tensors: no .item() per step
        if mon.should_stop:
            break
    assert JUMP_AT <= step < JUMP_AT + 2 * EVERY  # stopped within two judgements of the jump
    finding = mon.finding
    assert seen == [finding] and finding.run_id == "plain"
    (ckpt,) = mon.checkpoints
    assert ckpt.name == f"steadytrain-step={finding.step}-last_good={finding.last_good_step}.ckpt"
    assert set(torch.load(ckpt)) == {"model"}
    stem = ckpt.name[: -len(".ckpt")]
    _check_hand_over(finding, ckpt.with_name(stem + ".restart.json"), ckpt.with_name(stem + ".probe.yaml"))
    assert mon.history().roles.grad_norm == "grad_norm" and mon.stats["judgements"] == (step + 1) // EVERY


def test_tensors_and_floats_give_the_same_history():
    rng = np.random.default_rng(0)
    values = (2.0 * np.exp(-np.arange(300) / 80) + 0.3 + 0.01 * rng.standard_normal(300)).astype(np.float32)
    a, b = Monitor(every_n_steps=7, max_overhead=None), Monitor(every_n_steps=7, max_overhead=None)
    for s, v in enumerate(values):
        a.update(s, loss=float(v), lr=1e-3)
        b.update(s, loss=torch.tensor(v), lr=torch.tensor(1e-3, dtype=torch.float64))
    assert a.judge().verdict == b.judge().verdict == "stable"
    assert a.history().points.equals(b.history().points)
    assert a.stats["judgements"] == b.stats["judgements"] == 300 // 7 + 1


def test_device_tensors_are_stacked_in_one_batch_in_step_order():
    from analyzer.live.transfer import Transfer

    values = [torch.tensor(1.5), torch.tensor([2.5]), 3.5, torch.tensor(4.5, dtype=torch.float64),
              torch.tensor(5.5, dtype=torch.bfloat16)]
    got = Transfer({"loss": np.arange(5)}, {"loss": values}).result()["loss"]
    assert got[0].tolist() == [0, 1, 2, 3, 4] and got[1].tolist() == [1.5, 2.5, 3.5, 4.5, 5.5]


def test_a_due_judgement_waits_while_judging_would_exceed_the_overhead_budget(monkeypatch):
    # A fake clock, so the test asserts the budget rule and not this machine's speed: 1 ms training steps,
    # 5 ms judgements. Judging every 25 steps would be a sixth of the time; a 1% budget allows one judgement
    # per ~500 steps.
    from analyzer.live import monitor as monitor_mod

    now = [0.0]
    monkeypatch.setattr(monitor_mod.time, "perf_counter", lambda: now[0])
    mon = Monitor(every_n_steps=25, max_overhead=0.01)
    real_judge = mon._judge

    def slow_judge():  # what a real judgement costs on this clock
        now[0] += 0.005
        return real_judge()

    monkeypatch.setattr(mon, "_judge", slow_judge)
    for s in range(1000):
        now[0] += 0.001
        mon.update(s, loss=1.0 / (s + 1))
    stats = mon.stats
    assert 1 <= stats["judgements"] <= 3
    # A deferred judgement is looked at again when the budget should allow it, at the loop's pace: a handful
    # of clock reads, not one every few steps (~200 here before).
    assert 1 <= stats["deferred"] <= 10
    assert stats["seconds_judging"] <= 0.01 * stats["wall_seconds"] + stats["last_judgement_seconds"]


def test_importing_the_live_package_loads_no_framework():
    import subprocess
    import sys

    code = ("import sys, analyzer.live, analyzer.live.callbacks; print([m for m in ('torch', 'lightning', "
            "'transformers', 'jinja2', 'matplotlib', 'probes', 'reporters') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="stop_on='often': expected one of early, mid, divergence"):
        Monitor(stop_on="often")
    with pytest.raises(ValueError, match="every_n_steps=0"):
        Monitor(every_n_steps=0)


def test_lightning_callback_stops_and_checkpoints(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.loggers import CSVLogger

    from analyzer.live.callbacks import LightningCallback

    torch.set_num_threads(1)
    batch = teacher_batches()

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def training_step(self, b, idx):
            x, y = b
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=LR)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s) / LR)  # 30x from step 300
            return [opt], [{"scheduler": sched, "interval": "step"}]

    data = [batch(s) for s in range(600)]
    loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=False)
    cb = LightningCallback(every_n_steps=EVERY, max_overhead=None, stop_on="mid", checkpoint_on="mid",
                           checkpoint_dir=tmp_path / "ckpt", grad_norm=True)  # on CPU only when asked
    trainer = pl.Trainer(max_steps=600, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path / "logs"),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[cb], default_root_dir=tmp_path, log_every_n_steps=10)
    trainer.fit(Module(), loader)
    finding = cb.finding
    assert JUMP_AT < trainer.global_step <= JUMP_AT + 2 * EVERY  # stopped, not trained to 600
    (ckpt,) = (tmp_path / "ckpt").glob("*.ckpt")
    assert ckpt.name.startswith(f"steadytrain-step={finding.step}-last_good={finding.last_good_step}")
    assert torch.load(ckpt, weights_only=False)["global_step"] == trainer.global_step
    stem = ckpt.name[: -len(".ckpt")]
    _check_hand_over(finding, ckpt.with_name(stem + ".restart.json"), ckpt.with_name(stem + ".probe.yaml"))
    run = cb.monitor.history()
    assert run.roles.grad_norm == "grad_norm" and run.hparams["max_steps"] == 600
    lr = run.role_series("lr")
    assert lr.values[lr.steps == JUMP_AT][0] == pytest.approx(LR * 30)  # steps are optimizer steps from 0
    metrics = (tmp_path / "logs" / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "steadytrain/verdict_level" in metrics  # the finding also went to the trainer's own logger


def test_hf_trainer_callback_stops_and_checkpoints(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from analyzer.live.callbacks import HFTrainerCallback

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=32, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(config)  # built from a config: nothing downloaded
    gen = torch.Generator().manual_seed(0)
    starts = torch.randint(0, 32, (2400,), generator=gen)
    data = [{"input_ids": (s + 3 * torch.arange(16)) % 32, "labels": (s + 3 * torch.arange(16)) % 32}
            for s in starts]
    jump = 150
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s < jump else 30.0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=300, per_device_train_batch_size=8, logging_steps=5,
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, seed=0, max_grad_norm=1e9,
        dataloader_num_workers=0)
    cb = HFTrainerCallback(every_n_steps=EVERY, max_overhead=None, stop_on="mid", checkpoint_on="mid")
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, optimizers=(opt, sched),
                                   callbacks=[cb])
    trainer.train()
    finding = cb.finding
    step = trainer.state.global_step
    assert jump < step <= jump + 2 * EVERY  # stopped, not trained to 300
    folder = tmp_path / "out" / f"checkpoint-{step}"
    assert cb.monitor.checkpoints == [folder] and (folder / "trainer_state.json").exists()
    _check_hand_over(finding, folder / PLAN_NAME, folder / SPEC_NAME)
    run = cb.monitor.history()
    assert run.roles.grad_norm == "grad_norm" and run.hparams["max_steps"] == 300
