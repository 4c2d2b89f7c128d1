"""A run resumed from a checkpoint is judged as one run: the Monitor's history and verdict travel in the
checkpoint (`state_dict`, Lightning's callback state) or are read back from the HF Trainer's
``log_history``, so the restart the tool recommends does not start a new initial loss and a new early
phase. Real tiny CPU trainings whose LR jumps 30x after the restart point."""

import io

import numpy as np
import pytest

from analyzer.live import Monitor

torch = pytest.importorskip("torch")
from tests.unstable_training import JUMP_AT, LR, lr_at, mlp, teacher_batches  # noqa: E402

FLAGGED = ("mid_instability", "divergence")
EVERY = 25
RESUME_AT = 250  # before the jump at step 300


@pytest.fixture(scope="module")
def losses():
    """The loss of a real training (MLP, Adam, LR x30 at step 300), step by step."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, batch = mlp(), teacher_batches()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    out = []
    for step in range(600):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x, y = batch(step)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out


def _feed(mon, losses, steps):
    for s in steps:
        mon.update(s, loss=losses[s], lr=lr_at(s))
        if mon.should_stop:
            return s
    return steps[-1]


def test_a_monitor_restored_from_its_state_judges_the_run_as_one(losses):
    options = dict(every_n_steps=EVERY, max_overhead=None, stop_on="mid", hparams={"lr": LR, "max_steps": 600})
    whole = Monitor(**options)
    stopped = _feed(whole, losses, range(600))

    before = Monitor(**options)
    _feed(before, losses, range(RESUME_AT))
    buf = io.BytesIO()
    torch.save({"steadytrain": before.state_dict()}, buf)  # inside a training checkpoint
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["steadytrain"]  # plain values: the safe loader takes it
    after = Monitor(**options)
    after.load_state_dict(state)
    assert after.diagnosis.verdict == "stable" and not after.findings  # the baseline: no line for what was known
    resumed_stop = _feed(after, losses, range(RESUME_AT, 600))

    assert resumed_stop == stopped  # the same detection step as the run never interrupted
    assert after.finding.verdict == whole.finding.verdict in FLAGGED
    assert after.finding.first_unstable_step == whole.finding.first_unstable_step
    assert after.history().points.equals(whole.history().points)
    assert JUMP_AT - EVERY <= after.finding.first_unstable_step

    # What a monitor that forgot the history says: the loss at the restart is its "initial loss", so the
    # run "never learned" from there: flagged at the restart step, for the wrong reason.
    fresh = Monitor(**options)
    _feed(fresh, losses, range(RESUME_AT, 600))
    assert fresh.finding.first_unstable_step == RESUME_AT


def test_a_restored_flagged_verdict_is_not_acted_on_again(losses, tmp_path):
    saved = []
    options = dict(every_n_steps=EVERY, max_overhead=None, stop_on="mid", checkpoint_on="mid",
                   save_checkpoint=saved.append, checkpoint_dir=tmp_path)
    first = Monitor(**options)
    stop = _feed(first, losses, range(600))
    assert first.should_stop and len(saved) == 1
    state = first.state_dict()
    assert state["verdict"] in FLAGGED and state["checkpointed"] == [first.finding.verdict]
    again = Monitor(**options)  # resumed from the detection checkpoint itself
    again.load_state_dict(state)
    _feed(again, losses, range(stop + 1, min(stop + 3 * EVERY, 600)))
    assert not again.should_stop and len(saved) == 1 and not again.findings


def test_bad_state_is_a_one_line_error():
    with pytest.raises(ValueError, match="not a steadytrain Monitor state of version 1"):
        Monitor().load_state_dict({"version": 99})


def test_lightning_resumed_from_a_checkpoint_keeps_its_judgement(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from analyzer.live.callbacks import LightningCallback

    torch.set_num_threads(1)
    batch = teacher_batches()

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def training_step(self, b, idx):
            return torch.nn.functional.cross_entropy(self.net(b[0]), b[1])

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=LR)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s) / LR)  # 30x from step 300
            return [opt], [{"scheduler": sched, "interval": "step"}]

    def loader(start):  # the batches from ``start`` on: the resumed run sees what the run would have seen
        return torch.utils.data.DataLoader([batch(s) for s in range(start, 600)], batch_size=None, shuffle=False)

    def trainer(steps, cb):
        return pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, callbacks=[cb],
                          default_root_dir=tmp_path)

    first = trainer(RESUME_AT, LightningCallback(every_n_steps=EVERY, max_overhead=None))
    first.fit(Module(), loader(0))
    ckpt = tmp_path / "at250.ckpt"
    first.save_checkpoint(ckpt)
    cb = LightningCallback(every_n_steps=EVERY, max_overhead=None, stop_on="mid")
    second = trainer(600, cb)
    second.fit(Module(), loader(RESUME_AT), ckpt_path=ckpt)
    finding = cb.finding
    assert finding is not None and finding.verdict in FLAGGED and finding.previous == "stable"
    assert JUMP_AT < second.global_step <= JUMP_AT + 2 * EVERY  # stopped after the jump
    steps = cb.monitor.history().role_series("train_loss").steps
    assert steps[0] == 0 and np.array_equal(steps, np.arange(second.global_step))  # one run across the restart
    assert finding.first_unstable_step >= JUMP_AT - EVERY  # not "never learned" from the restart's loss


def test_hf_trainer_resumed_from_a_checkpoint_reads_its_log_history(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from analyzer.live.callbacks import HFTrainerCallback

    torch.set_num_threads(1)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=32, n_layer=1, n_head=2)
    gen = torch.Generator().manual_seed(0)
    starts = torch.randint(0, 32, (2400,), generator=gen)
    data = [{"input_ids": (s + 3 * torch.arange(16)) % 32, "labels": (s + 3 * torch.arange(16)) % 32} for s in starts]
    jump, resume_at = 150, 100

    class SaveAndStopAt(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == resume_at:
                control.should_save = control.should_training_stop = True

    def train(callbacks, resume=None):
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(config)  # built from a config: nothing downloaded
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s < jump else 30.0)
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "out"), max_steps=300, per_device_train_batch_size=8, logging_steps=5,
            save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, seed=0, max_grad_norm=1e9,
            dataloader_num_workers=0)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=data, optimizers=(opt, sched),
                                       callbacks=callbacks)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    train([HFTrainerCallback(every_n_steps=EVERY, max_overhead=None), SaveAndStopAt()])
    cb = HFTrainerCallback(every_n_steps=EVERY, max_overhead=None, stop_on="mid")
    trainer = train([cb], resume=str(tmp_path / "out" / f"checkpoint-{resume_at}"))
    finding = cb.finding
    assert finding is not None and finding.verdict in FLAGGED and finding.previous == "stable"
    assert jump < trainer.state.global_step <= jump + 2 * EVERY
    steps = cb.monitor.history().role_series("train_loss").steps
    assert steps[0] == 5 and np.array_equal(steps, np.arange(5, trainer.state.global_step + 1, 5))
    assert finding.first_unstable_step >= jump - EVERY  # not "never learned" from the restart's loss
    assert finding.framework == "hf_trainer" and "TrainingArguments" in (finding.restart_plan()["recommendations"][0]["snippet"] or "")
