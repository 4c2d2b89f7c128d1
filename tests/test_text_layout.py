"""How one printed metric line is read (analyzer/ingest/text_layout.py): which number is the step, the epoch,
and which are named metrics, on lines printed by real tools' format strings."""

from __future__ import annotations

import pytest

from analyzer.ingest.text_layout import learn_layout


def tags(line: str) -> list[str]:
    return [m.tag for m in learn_layout(line).metrics]


@pytest.mark.parametrize("line, step_key, metrics", [
    # modded-nanogpt / parameter-golf: f"step:{step}/{train_steps} train_loss:{loss:.4f} train_time:{ms:.0f}ms ..."
    ("step:1/20000 train_loss:6.9408 train_time:24ms step_avg:23.99ms", "step",
     ["train_loss", "train_time_ms", "step_avg_ms"]),
    ("step:0/19073 val_loss:10.8258 train_time:326ms step_avg:nanms", "step",
     ["val_loss", "train_time_ms", "step_avg_ms"]),
    # llm.c train_gpt2.cu: "step %4d/%d | train loss %f | norm %.4f | lr %.2e | (%.2f ms | %.0f tok/s)"
    ("step    10/1000 | train loss 3.214000 | norm 1.2345 | lr 1.00e-04 | (120.00 ms | 2000 tok/s)", "step",
     ["train loss", "norm", "lr", "tok/s"]),
    # llm.c's -o main.log: "s:%d trl:%f", "s:%d tel:%f"
    ("s:0 trl:10.9579 lr:0.000001 norm:14.83", "s", ["trl", "lr", "norm"]),
    ("s:250 tel:4.1250", "s", ["tel"]),
    # build-nanogpt log.txt: f"{step} train {loss:.6f}"
    ("100 train 3.214000", "leading integer", ["train"]),
    # a logging prefix, two-space separated items
    ("09:59:53 INFO epoch 1  step 10  loss 1.9324  backbone_lr 6.61e-06  proj_lr 6.61e-05", "step",
     ["loss", "backbone_lr", "proj_lr"]),
    ("09:59:53 INFO   gen-val step 10: strict=0.4800  lenient=0.5800  (24/29/50)", "gen-val step",
     ["val/strict", "val/lenient"]),
    # the PyTorch tutorial print
    ("Epoch [3/10], Step [100/500], Loss: 2.3100", "Step", ["Loss"]),
    # Megatron-LM (also a fast path): keys with spaces and a unit in parentheses
    (" iteration      100/    5000 | consumed samples:        25600 | elapsed time per iteration (ms): 812.3 | "
     "learning rate: 1.500000E-04 | lm loss: 2.000000E+00 | loss scale: 65536.0 | grad norm: 1.250 |", "iteration",
     ["consumed samples", "elapsed time per iteration (ms)", "learning rate", "lm loss", "loss scale", "grad norm"]),
    # nanoGPT (also a fast path): units join the tag
    ("iter 100: loss 2.3456, time 12.34ms, mfu 30.12%", "iter", ["loss", "time_ms", "mfu_percent"]),
    ('{"step": 100, "loss": 2.3, "lr": 0.001}', "step", ["loss", "lr"]),
    ("[step 100] loss: 2.3 grad_norm: 1.2", "step", ["loss", "grad_norm"]),
    # nanoT5: "[train] Step {n} out of {total} | Loss --> {:.3f} | Grad_l2 --> ..."; an arrow joins key and value
    ("[train] Step 100 out of 65536 | Loss --> 2.345 | Grad_l2 --> 1.234 | Lr --> 0.0200 |", "Step",
     ["train/Loss", "train/Grad_l2", "train/Lr"]),
    # a logger's prefix with the source line (Python logging's %(filename)s:%(lineno)d, loguru's default)
    ("[2024-05-01 12:00:00,123][train.py:45][INFO] step 10 loss 2.3", "step", ["loss"]),
    ("2024-05-01 12:00:00.123 | INFO     | __main__:fit:45 - step 10 loss 2.3", "step", ["loss"]),
    ("distill:step:1/50 kl:282.0644 ce:1.9771", "step", ["kl", "ce"]),  # a namespaced counter is no source line
    ("Epoch:1:Step:10 - loss: 2.95", "Step", ["loss"]),  # ... with loguru's ' - ' after it either
    ("train:step:10 - loss 2.95", "step", ["train/loss"]),
    # after loguru's level field it is the source line, whatever the function is called
    ("2024-05-01 12:00:01.123 | INFO     | ppo.agent:update:212 - iteration 1 policy_loss 0.5 value_loss 1.0",
     "iteration", ["policy_loss", "value_loss"]),
    ("(RayTrainWorker pid=123456, ip=10.0.0.12) step 1 loss 2.95", "step", ["loss"]),  # Ray's worker prefix
])
def test_the_step_and_the_named_numbers(line, step_key, metrics):
    layout = learn_layout(line)
    assert layout.step_key == step_key and tags(line) == metrics


def test_keras_batch_counter_within_the_epoch_and_its_header():
    header = learn_layout("Epoch 3/10")
    assert header.is_header and header.epoch == 0
    line = ("100/100 [==============================] - 2s 20ms/step - loss: 0.1234 - accuracy: 0.9000 - "
            "val_loss: 0.3000")
    layout = learn_layout(line)
    assert layout.within_epoch and layout.step_key == "N/M" and layout.step_total == layout.step + 1
    assert tags(line) == ["loss", "accuracy", "val_loss"]


def test_lightning_bar_epoch_batch_and_postfix():
    line = "Epoch 3:  45%|████▌     | 450/1000 [00:10<00:12, 43.2it/s, loss=2.34, v_num=1, val_loss=2.5]"
    layout = learn_layout(line)
    assert layout.epoch is not None and layout.within_epoch
    assert "loss" in tags(line) and "val_loss" in tags(line) and "v_num" not in tags(line)


def test_pytorch_dcgan_epoch_then_batch_in_brackets():
    # pytorch/examples dcgan/main.py: '[%d/%d][%d/%d] Loss_D: %.4f Loss_G: %.4f D(x): %.4f D(G(z)): %.4f / %.4f'
    layout = learn_layout("[3/25][100/1583]\tLoss_D: 0.4321\tLoss_G: 3.2100\tD(x): 0.8123\tD(G(z)): 0.1234 / 0.0987")
    assert layout.epoch is not None and layout.within_epoch and layout.step_total == layout.step + 1
    assert tags("[3/25][100/1583]\tLoss_D: 0.4321\tLoss_G: 3.2100")[:2] == ["Loss_D", "Loss_G"]


def test_timm_train_and_eval_lines_say_their_kind():
    train = learn_layout("Train: 3 [ 100/500 ( 20%)]  Loss: 2.345 (2.401)  Time: 0.512s,  250.00/s  (0.498s,  "
                         "257.00/s)  LR: 1.000e-03  Data: 0.010 (0.012)")
    assert train.kind == "train" and train.epoch is not None and train.within_epoch
    assert "train/Loss" in [m.tag for m in train.metrics] and "train/Loss_avg" in [m.tag for m in train.metrics]
    test = learn_layout("Test: [  10/50]  Time: 0.100 (0.120)  Loss:  0.5123 (0.6012)  Acc@1: 76.1230 ( 75.9000)")
    assert test.kind == "test" and test.counter == "batch"
    assert "test/Loss" in [m.tag for m in test.metrics] and "test/Acc@1" in [m.tag for m in test.metrics]


def test_mmengine_epoch_in_brackets_with_its_kind():
    layout = learn_layout("2023/01/01 12:00:00 - mmengine - INFO - Epoch(train)  [1][ 50/500]  lr: 1.0000e-02  "
                          "eta: 0:10:00  time: 0.5000  data_time: 0.0100  memory: 1234  loss: 1.2300  loss_cls: 0.5000")
    assert layout.epoch is not None and layout.within_epoch and layout.kind == "train"
    assert [m.tag for m in layout.metrics] == ["train/lr", "train/time", "train/data_time", "train/memory",
                                               "train/loss", "train/loss_cls"]


@pytest.mark.parametrize("line", [
    "final_int8_zlib_roundtrip val_loss:2.0727 val_bpb:1.2244 eval_time:1401ms",  # no counter
    "warmup_step:1/20",  # a counter of something else, nothing measured
    "Serialized model int8+zlib: 15815847 bytes (payload:17178912 raw_torch:17224025 payload_ratio:3.91x)",
])
def test_lines_that_are_no_metric_line(line):
    assert not learn_layout(line).is_metric_line


def test_dates_clocks_versions_and_digits_in_names_are_not_values():
    layout = learn_layout("[2024-05-01 12:00:01] v1.2.3 bf16 top-1 step 7 | loss 2.5 | acc@1 0.75")
    assert layout.step_key == "step" and [m.tag for m in layout.metrics] == ["loss", "acc@1"]


def test_multipliers_and_spaced_units():
    layout = learn_layout("step 5 | loss 3.21 BPC | throughput 12.5k tok/s | params 124M")
    by_tag = {m.tag: m.scale for m in layout.metrics}
    assert by_tag["loss_BPC"] == 1.0 and by_tag["throughput"] == 1e3 and by_tag["params"] == 1e6
