"""Text logs (a job's stdout): every dialect from the tool's own format strings, noise, damage, events.

The writers below print what each tool prints, with the tool's format specs (Megatron-LM's
training_log, GPT-NeoX, NeMo 2's MegatronProgress, nanoGPT's train.py, build-nanogpt, the HF
Trainer's ProgressCallback/tqdm, fairseq's simple and JSON progress bars), so a value is expected
exactly as the format rounds it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from analyzer.errors import LogFormatError
from analyzer.frame import apply_restart_policy
from analyzer.ingest import textlog
from analyzer.ingest.textlog import read_text_log, sniff
from analyzer.roles import assign_roles
from tests.writers import points_by_tag

TOTAL = 5000


series = points_by_tag


def read(path: Path) -> tuple[dict[str, tuple[list[int], list[float]]], dict[str, list]]:
    pts, notes = read_text_log(path, sniff(path))
    by_kind: dict[str, list] = {}
    for n in notes:
        by_kind.setdefault(n.kind, []).append(n)
    return series(pts), by_kind


def e6(x: float) -> float:
    """A value as Megatron prints it ('{:.6E}')."""
    return float(f"{x:.6E}")


def megatron_line(it: int, loss: float, *, lr: float = 1.5e-4, scale: float = 65536.0, gnorm: float = 1.25,
                  skipped: int = 0, nan: int = 0, stamp: bool = True, extra: str = "") -> str:
    s = f" [2024-05-01 12:{it // 60 % 60:02d}:{it % 60:02d}]" if stamp else ""
    s += " iteration {:8d}/{:8d} |".format(it, TOTAL)
    s += " consumed samples: {:12d} |".format(it * 256)
    s += extra
    s += " elapsed time per iteration (ms): {:.1f} |".format(812.34)
    s += f" learning rate: {lr:.6E} |"
    s += f" global batch size: {256:5d} |"
    s += " {}: {:.6E} |".format("lm loss", loss)
    s += f" loss scale: {scale:.1f} |"
    s += f" grad norm: {gnorm:.3f} |"
    s += " number of skipped iterations: {:3d} |".format(skipped)
    s += " number of nan iterations: {:3d} |".format(nan)
    return s + "\n"


def megatron_validation(it: int, loss: float) -> str:
    string = " validation loss at {} | ".format(f"iteration {it}")
    string += "{} value: {:.6E} | ".format("lm loss", loss)
    string += "{} PPL: {:.6E} | ".format("lm loss", math.exp(min(20, loss)))
    dashes = "-" * (len(string) + 1)
    return f"{dashes}\n{string}\n{dashes}\n"


PREAMBLE = ("using world size: 8, data-parallel size: 8, tensor-model-parallel size: 1\n"
            "------------------------ arguments ------------------------\n"
            "  check_for_nan_in_loss_and_grad .................. True\n"
            "  loss_scale_window ............................... 1000\n"
            "-------------------- end of arguments ---------------------\n"
            "> building GPT model ...\n")


def test_megatron_reads_every_item_and_validation(tmp_path):
    p = tmp_path / "slurm-1234.out"
    text = PREAMBLE
    losses = {it: 10.0 / it for it in range(10, 110, 10)}
    for it, loss in losses.items():
        text += megatron_line(it, loss, lr=1e-5 * it, gnorm=0.5 + it / 1000)
        if it % 50 == 0:
            text += megatron_validation(it, loss + 0.25)
    p.write_text(text)
    assert sniff(p).names == ("megatron",)
    got, notes = read(p)
    steps = list(losses)
    assert got["lm loss"] == (steps, [e6(v) for v in losses.values()])
    assert got["learning rate"] == (steps, [e6(1e-5 * s) for s in steps])
    assert got["grad norm"] == (steps, [round(0.5 + s / 1000, 3) for s in steps])
    assert got["loss scale"] == (steps, [65536.0] * 10)
    assert got["consumed samples"] == (steps, [s * 256.0 for s in steps])
    assert got["elapsed time per iteration (ms)"][1] == [812.3] * 10
    assert got["global batch size"][1] == [256.0] * 10
    assert got["number of skipped iterations"] == (steps, [0.0] * 10)
    assert got["number of nan iterations"] == (steps, [0.0] * 10)
    assert got["validation/lm loss"] == ([50, 100], [e6(losses[50] + 0.25), e6(losses[100] + 0.25)])
    assert got["validation/lm loss PPL"][0] == [50, 100]
    assert len(got) == 11  # nothing else: no timestamp or iteration item became a tag
    (noise,) = notes["noise"]
    assert noise.count == 6 + 2 * 2  # the preamble and the validation box's dashes
    roles = assign_roles({t: len(s) for t, (s, _) in got.items()})
    assert (roles.train_loss, roles.eval_loss, roles.grad_norm, roles.lr) == (
        "lm loss", "validation/lm loss", "grad norm", "learning rate")


def test_gpt_neox_items_before_the_iteration_and_a_text_valued_item(tmp_path):
    p = tmp_path / "neox.log"
    lines = []
    for it in (100, 200, 300):
        s = " samples/sec: {:.3f} |".format(123.456 + it)
        s += " iteration {:8d}/{:8d} |".format(it, 320000)
        s += " elapsed time per iteration (ms): {:.1f} |".format(1000.0)
        s += " learning rate: {:.3E} |".format(6e-4)
        s += f" approx flops per GPU: {'123.4TFLOPS'} |"
        s += " {}: {:.6E} |".format("lm_loss", 5.0 - it / 100)
        s += " loss scale: {:.1f} |".format(4096.0)
        s += " number of skipped iterations: {:3d} |".format(0)
        s += " number of nan iterations: {:3d} |".format(0)
        lines.append(s + "\n")
    p.write_text("".join(lines))
    got, notes = read(p)
    assert got["samples/sec"] == ([100, 200, 300], [223.456, 323.456, 423.456])
    assert got["lm_loss"] == ([100, 200, 300], [4.0, 3.0, 2.0])
    assert got["learning rate"][1] == [6e-4] * 3
    assert "approx flops per GPU" not in got
    (ignored,) = notes["ignored_fields"]
    assert "approx flops per GPU" in ignored.message


def test_lines_off_the_common_layout_are_read_too(tmp_path):
    # Megatron adds 'skipped samples' once some are skipped; another key at a shared position must not be
    # read under the common line's key.
    p = tmp_path / "job.out"
    text = "".join(megatron_line(it, 3.0) for it in (1, 2, 3))
    text += megatron_line(4, 2.5, extra=" skipped samples: {:12d} |".format(7))
    text += megatron_line(5, 2.25).replace(" lm loss:", " mtp loss:")
    text += megatron_line(6, 2.0, stamp=False)
    p.write_text(text)
    got, notes = read(p)
    assert got["lm loss"] == ([1, 2, 3, 4, 6], [3.0, 3.0, 3.0, 2.5, 2.0])
    assert got["mtp loss"] == ([5], [2.25])
    assert got["skipped samples"] == ([4], [7.0])
    assert got["grad norm"][0] == [1, 2, 3, 4, 5, 6]
    assert "noise" not in notes


def test_nemo_progress_lines_take_the_global_step(tmp_path):
    p = tmp_path / "nemo.log"
    text = "[NeMo I 2024-05-01 12:00:00 nemo_logging:381] Experiments will be logged at /results\n"
    for n in range(4):
        metrics = {"lr": 1.5e-05, "global_batch_size": 8.0, "global_step": float(20 + n), "reduced_train_loss":
                   10.4321 - n, "train_step_timing in s": 0.5123, "consumed_samples": float(8 * (21 + n))}
        line = f"Training epoch 0, iteration {n}/99:"  # a resumed run: the epoch's iteration is not the step
        for k, v in metrics.items():
            line += f" | {k}: {int(v)}" if v.is_integer() else f" | {k}: {v:.4}"
        text += line + "\n"
    text += "Validation: iteration 1/10\n"
    p.write_text(text)
    assert sniff(p).names == ("nemo",)
    got, notes = read(p)
    assert got["reduced_train_loss"] == ([20, 21, 22, 23], [10.43, 9.432, 8.432, 7.432])
    assert got["lr"][1] == [1.5e-05] * 4
    assert got["train_step_timing in s"][1] == [0.5123] * 4
    assert "global_step" not in got
    assert notes["noise"][0].count == 2


def test_nanogpt_iter_and_eval_lines_with_units_and_the_mfu_placeholder(tmp_path):
    p = tmp_path / "train.out"
    text = "tokens per iteration will be: 491,520\nInitializing a new model from scratch\n"
    running_mfu = -1.0
    for it in range(0, 60, 10):
        if it % 20 == 0:
            text += f"step {it}: train loss {4.1 - it / 100:.4f}, val loss {4.2 - it / 100:.4f}\n"
        if it >= 30:
            running_mfu = 0.3012
        text += f"iter {it}: loss {4.0 - it / 100:.4f}, time {123.456 + it:.2f}ms, mfu {running_mfu * 100:.2f}%\n"
    p.write_text(text)
    got, notes = read(p)
    assert got["loss"] == ([0, 10, 20, 30, 40, 50], [4.0, 3.9, 3.8, 3.7, 3.6, 3.5])
    assert got["time_ms"][1] == [123.46, 133.46, 143.46, 153.46, 163.46, 173.46]
    assert got["mfu_percent"] == ([30, 40, 50], [30.12] * 3)  # -100.00% is "not measured yet"
    assert got["eval/train_loss"] == ([0, 20, 40], [4.1, 3.9, 3.7])
    assert got["val_loss"] == ([0, 20, 40], [4.2, 4.0, 3.8])
    assert any("placeholder" in n.message and n.count == 3 for n in notes["ignored_fields"])
    roles = assign_roles({t: len(s) for t, (s, _) in got.items()})
    assert (roles.train_loss, roles.eval_loss) == ("loss", "val_loss")


def test_build_nanogpt_lines_and_its_stepless_validation(tmp_path):
    p = tmp_path / "log.out"
    text = "using device: cuda\n"
    for step in range(3):
        if step % 2 == 0:
            text += f"validation loss: {3.5 - step / 10:.4f}\n"  # printed before the step's training line
        text += (f"step {step:5d} | loss: {3.4 - step / 10:.6f} | lr {6e-4 * (step + 1) / 10:.4e} | "
                 f"norm: {1.5 + step:.4f} | dt: {1234.5678:.2f}ms | tok/sec: {424242.42:.2f}\n")
    p.write_text(text)
    got, notes = read(p)
    assert got["loss"] == ([0, 1, 2], [3.4, 3.3, 3.2])
    assert got["grad_norm"] == ([0, 1, 2], [1.5, 2.5, 3.5])
    assert got["lr"][1] == [6e-05, 1.2e-04, 1.8e-04]
    assert got["dt_ms"][1] == [1234.57] * 3
    assert got["tok/sec"][1] == [424242.42] * 3
    assert got["val_loss"] == ([0, 2], [3.5, 3.3])
    assert any("validation" in n.message and "after" in n.message for n in notes["derived_step"])


def hf_dict(logs: dict, *, newer: bool) -> str:
    """ProgressCallback.on_log: str() of the logs (newer versions format floats as '{v:.4g}' strings)."""
    shown = {k: (f"{v:.4g}" if newer and isinstance(v, float) else v) for k, v in logs.items() if k != "total_flos"}
    return str(shown)


def test_hf_printed_dicts_by_their_order(tmp_path):
    p = tmp_path / "hf.out"
    text = "***** Running training *****\n  Num examples = 1000\n"
    for k in range(1, 5):
        text += hf_dict({"loss": 2.5 - k / 10, "grad_norm": 1.0 + k, "learning_rate": 5e-05, "epoch": k / 10},
                        newer=k % 2 == 0) + "\n"
        if k == 2:
            text += hf_dict({"eval_loss": 2.4, "eval_runtime": 0.31, "epoch": 0.2}, newer=False) + "\n"
    text += "{'loss': np.float64(2.0), 'grad_norm': tensor(3.25, device='cuda:0'), 'learning_rate': 1e-05}\n"
    text += hf_dict({"train_runtime": 12.3, "train_samples_per_second": 40.0, "train_loss": 2.2, "epoch": 0.5,
                     "total_flos": 1e15}, newer=False) + "\n"
    p.write_text(text)
    assert sniff(p).names == ("hf_trainer_print",)
    got, notes = read(p)
    assert got["loss"] == ([1, 2, 3, 4, 5], [2.4, 2.3, 2.2, 2.1, 2.0])
    assert got["grad_norm"] == ([1, 2, 3, 4, 5], [2.0, 3.0, 4.0, 5.0, 3.25])
    assert got["learning_rate"][1] == [5e-05] * 4 + [1e-05]
    assert got["eval_loss"] == ([2], [2.4])  # the step of the log dict before it
    assert "train_loss" not in got and "epoch" not in got and "train_runtime" not in got
    derived = " ".join(n.message for n in notes["derived_step"])
    assert "their order" in derived and "logging_steps" in derived
    assert any("summary" in n.message for n in notes["ignored_fields"])


def test_hf_step_from_the_training_bar_redrawn_before_each_dict(tmp_path):
    def bar(n: int, total: int = 50) -> str:
        return f"{100 * n // total:3d}%|##        | {n}/{total} [00:01<00:09,  9.90it/s]"

    p = tmp_path / "hf.out"
    text = "".join(f"\r{bar(n)}" for n in range(1, 10))
    for step in (10, 20, 30):
        text += "".join(f"\r{bar(n)}" for n in range(step - 9, step + 1))
        text += "\r" + " " * 40 + hf_dict({"loss": 3.0 - step / 100, "learning_rate": 5e-05, "epoch": step / 50},
                                          newer=True) + "\n"
    p.write_text(text)
    got, notes = read(p)
    assert got["loss"] == ([10, 20, 30], [2.9, 2.8, 2.7])
    assert any("progress bar's counter" in n.message for n in notes["derived_step"])
    # Counters that are not one logging interval apart (a lagging redraw) are not trusted.
    p.write_text(text.replace(f"\r{bar(20)}\r", "\r"))
    got, notes = read(p)
    assert got["loss"][0] == [1, 2, 3]


def test_fairseq_simple_bar_old_and_new_and_json_bar(tmp_path):
    old = tmp_path / "old.log"
    old.write_text(
        "| distributed init (rank 0): tcp://localhost:1234\n"
        "| epoch 001:    100 / 1000 loss=9.377, nll_loss=8.9, ppl=478.1, wps=1000, num_updates=100, lr=1e-05, "
        "gnorm=2.1, loss_scale=128\n"
        "| epoch 001:    200 / 1000 loss=8.5, nll_loss=8.1, ppl=274.4, wps=1000, num_updates=200, lr=2e-05, "
        "gnorm=2.5, loss_scale=64\n"
        "| epoch 001 | loss 8.9 | nll_loss 8.5 | ppl 362 | num_updates 1000 | lr 1e-04 | gnorm 2.2\n"
        "| epoch 001 | valid on 'valid' subset | loss 8.1 | nll_loss 7.9 | ppl 240 | num_updates 1000\n")
    got, _ = read(old)
    assert got["loss"] == ([100, 200], [9.377, 8.5])
    assert got["loss_scale"] == ([100, 200], [128.0, 64.0])
    assert got["gnorm"][1] == [2.1, 2.5]
    assert got["train/loss"] == ([1000], [8.9])
    assert got["valid/loss"] == ([1000], [8.1])
    assert "num_updates" not in got and "valid/num_updates" not in got
    new = tmp_path / "new.log"
    prefix = "2021-03-08 12:31:00 | INFO | "
    new.write_text(
        f"{prefix}fairseq_cli.train | task: translation\n"
        f"{prefix}train_inner | epoch 001:    100 / 1000 loss=9.377, ppl=665.2, num_updates=100, lr=1.25e-05, "
        "gnorm=2.1, loss_scale=128, train_wall=30, wall=40\n"
        f"{prefix}train_inner | epoch 001:    200 / 1000 loss=9.1, ppl=548.7, num_updates=200, lr=2.5e-05, "
        "gnorm=2.3, loss_scale=128, train_wall=30, wall=70\n"
        f"{prefix}valid | epoch 001 | valid on 'valid' subset | loss 8.1 | ppl 274.4 | num_updates 200\n"
        f"{prefix}train_inner | " + json.dumps({"epoch": 1, "update": 0.3, "loss": "8.9", "num_updates": "300",
                                                "gnorm": "1.9"}) + "\n")
    got, _ = read(new)
    assert got["loss"] == ([100, 200, 300], [9.377, 9.1, 8.9])
    assert got["gnorm"] == ([100, 200, 300], [2.1, 2.3, 1.9])
    assert got["valid/loss"] == ([200], [8.1])
    assert "update" not in got and "epoch" not in got


def test_instability_messages_become_log_events_at_their_step(tmp_path):
    p = tmp_path / "job.out"
    text = "Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 32768.0\n"  # before any line
    text += megatron_line(10, 3.0)
    text += "Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 16384.0\n"
    text += ("[2023-07-24 13:21:32,378] [INFO] [loss_scaler.py:183:update_scale] [deepspeed] OVERFLOW! Rank 0 "
             "Skipping step. Attempted loss scale: 16384, reducing to 8192\n")
    text += megatron_line(20, 2.9)
    text += "2021-03-08 12:33:12 | WARNING | tensorboardX.x2num | NaN or Inf found in input tensor.\n"
    text += megatron_line(30, float("nan"), nan=1)
    text += "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    text += "  check_for_nan_in_loss_and_grad .................. True\n"  # a setting, not a warning
    p.write_text(text)
    got, notes = read(p)
    assert got["log_events/overflow_skip"] == ([10], [3.0])  # the first one took the first line's step
    assert got["log_events/loss_scale"] == ([10], [8192.0])  # the last scale announced there
    assert got["log_events/nan_warning"] == ([20], [1.0])
    assert got["log_events/oom"] == ([30], [1.0])
    assert math.isnan(got["lm loss"][1][2]) and got["number of nan iterations"][1] == [0.0, 0.0, 1.0]
    (ev,) = notes["log_events"]
    assert ev.count == 5 and "1 before the first metric line" in ev.message
    assert notes["noise"][0].count == 1


def test_noise_ansi_colours_progress_bars_crlf_and_bad_bytes(tmp_path):
    lines = [megatron_line(it, 2.0 + it / 100) for it in (1, 2, 3, 4)]
    raw = (b"\x1b[32mINFO\x1b[0m starting \xff\xfe job\n"
           + b"\r 10%|#         | 1/10 [00:01<00:09]\r 20%|##        | 2/10 [00:02<00:08]\r"
           + lines[0].replace(" lm loss", " \x1b[1mlm loss\x1b[0m").encode()
           + lines[1].encode().replace(b"\n", b"\r\n")
           + b"Warning: \xc3\x28 invalid utf-8\n"
           + lines[2].replace("iteration", "\x1b[33miteration\x1b[0m").encode()
           + lines[3].encode())
    p = tmp_path / "noisy.log"
    p.write_bytes(raw)
    got, notes = read(p)
    assert got["lm loss"] == ([1, 2, 3, 4], [2.01, 2.02, 2.03, 2.04])
    assert notes["noise"][0].count == 4  # the INFO line, two bar redraws, the warning
    crlf = tmp_path / "windows.log"
    crlf.write_bytes("".join(lines).replace("\n", "\r\n").encode())
    got, notes = read(crlf)
    assert got["lm loss"][0] == [1, 2, 3, 4] and "noise" not in notes


def test_cut_last_line_is_not_read_and_damaged_lines_are_reported(tmp_path):
    p = tmp_path / "killed.out"
    whole = "".join(megatron_line(it, 2.0) for it in (1, 2))
    cut = megatron_line(3, 1.987654)
    p.write_text(whole + cut[: cut.index("lm loss: ") + len("lm loss: 1.98")])  # job killed mid-write
    got, notes = read(p)
    assert got["lm loss"] == ([1, 2], [2.0, 2.0])
    assert notes["truncated"][0].count == 1
    nano = tmp_path / "nano.out"
    nano.write_text("iter 0: loss 4.0000, time 9.00ms, mfu -100.00%\niter 1: loss 3.9000, time 9.00ms, mfu -100.00%\n"
                    "iter 2: loss 3.8123, time 9.00ms, mfu -100.00%\niter 3: loss 3.71")  # 3.71 would be a wrong value
    got, notes = read(nano)
    assert got["loss"] == ([0, 1, 2], [4.0, 3.9, 3.8123]) and notes["truncated"][0].count == 1
    # Two ranks printing at once: a line runs into another's output. Its complete items are read.
    damaged = megatron_line(2, 2.5)
    damaged = damaged[: damaged.index(" loss scale")] + " loss sc[rank3]: W0501 some warning\n"
    p.write_text(megatron_line(1, 2.0) + damaged + megatron_line(3, 2.25))
    got, notes = read(p)
    assert got["lm loss"] == ([1, 2, 3], [2.0, 2.5, 2.25])
    assert got["loss scale"][0] == [1, 3]
    assert any("cut off or run into other output" in n.message and n.count == 1 for n in notes["dropped"])


def test_step_outside_int64_is_refused(tmp_path):
    p = tmp_path / "job.out"
    p.write_text("".join(megatron_line(it, 2.0) for it in (1, 2)) + megatron_line(2, 2.0).replace(
        "iteration        2/", "iteration 99999999999999999999/"))
    with pytest.raises(LogFormatError, match=r"line 3\) is outside the range of a 64-bit step counter"):
        read_text_log(p, sniff(p))


def test_a_restart_appended_to_the_same_output_is_kept_in_write_order(tmp_path):
    p = tmp_path / "job.out"
    p.write_text("".join(megatron_line(it, 3.0 - it / 100) for it in (10, 20, 30, 40))
                 + "> loading checkpoint from iteration 20\n"
                 + "".join(megatron_line(it, 2.0) for it in (30, 40, 50)))
    pts, _ = read_text_log(p, sniff(p))
    frame, notes = apply_restart_policy(pts)
    loss = frame.filter(frame["tag"] == "lm loss")
    assert loss["step"].to_list() == [10, 20, 30, 40, 50] and loss["value"].to_list()[2:] == [2.0, 2.0, 2.0]
    assert any(n.kind == "restart" for n in notes)


@pytest.mark.parametrize("content, reason", [
    ("step,loss,lr\n" + "".join(f"{i},{1 / (i + 1)},0.1\n" for i in range(50)), "no line holds named numbers"),
    ("The quick brown fox.\n" * 40 + "iteration 5 of the plan | done\n", "no line holds named numbers"),
    ("".join(f"{i} {i * 2} {i * 3}\n" for i in range(50)), "no line holds named numbers"),  # numbers, no names
    # a config dump: named numbers, a counter word, but one line
    ("train_batch_tokens:524288 iterations:20000 warmup_steps:20 lr:0.04\n" + "loading shard 3\n" * 20,
     "no line holds named numbers"),
    ("Some prose.\n" * 100 + megatron_line(1, 2.0) + megatron_line(2, 2.0), "only 2 megatron metric line"),
])
def test_sniff_refuses_what_is_not_a_training_log(tmp_path, content, reason):
    p = tmp_path / "x.log"
    p.write_text(content)
    with pytest.raises(LogFormatError, match=reason):
        sniff(p)


def test_sniff_refuses_binary_and_finds_lines_after_a_long_preamble(tmp_path, monkeypatch):
    b = tmp_path / "events.out"
    b.write_bytes(b"\x00\x01\x02" * 1000)
    with pytest.raises(LogFormatError, match="binary"):
        sniff(b)
    monkeypatch.setattr(textlog, "SNIFF_HEAD_BYTES", 4096)  # a small head: the metric lines are past it
    monkeypatch.setattr(textlog, "SNIFF_MIDDLE_BYTES", 4096)
    p = tmp_path / "job.out"
    p.write_text("NCCL INFO Channel 00/02 : 0 1 2 3 4 5 6 7\n" * 200 + "".join(
        megatron_line(it, 2.0) for it in range(1, 60)))
    d = sniff(p)
    assert d.names == ("megatron",) and d.matched_lines >= 3


def test_two_metric_lines_make_a_short_log(tmp_path):
    p = tmp_path / "short.out"
    p.write_text("starting\n" + megatron_line(1, 2.0) + megatron_line(2, 1.5))
    got, _ = read(p)
    assert got["lm loss"] == ([1, 2], [2.0, 1.5])


def test_points_are_grouped_by_tag_in_write_order(tmp_path):
    p = tmp_path / "job.out"
    p.write_text("".join(megatron_line(it, 2.0) for it in (1, 2, 3)) + megatron_line(4, 2.0, stamp=False).replace(
        " grad norm:", " grad  norm:"))
    pts, _ = read_text_log(p, sniff(p))
    assert bool(np.all(np.diff(pts.tag_codes) >= 0))
    frame, notes = apply_restart_policy(pts)
    assert not notes and frame.height == len(pts)


def test_lines_split_at_lf_crlf_and_lone_cr_in_order():
    got = textlog._lines(b"a\rb\r\nc\n\rd\re\nf\r\n").to_list()
    assert got == ["a", "b", "c", "", "d", "e", "f"]


# -- any layout: lines read by the layout learned from one of them (analyzer/ingest/text_generic.py) ----------

def test_modded_nanogpt_stdout_with_its_source_code_and_torchrun_noise(tmp_path):
    """modded-nanogpt / parameter-golf: the script's source is printed first, then
    f"step:{step}/{n} val_loss:{v:.4f} train_time:{ms:.0f}ms step_avg:{avg:.2f}ms" and the train_loss lines."""
    code = "".join(f"    x = layer_{i}(x)  # {i * 0.5}\n" for i in range(40)) + "lr = 0.02\nwarmup_steps = 20\n"
    lines = ["W0318 14:37:59.159000 871689 torch/distributed/run.py:792] Setting OMP_NUM_THREADS\n",
             "train_batch_tokens:524288 train_seq_len:1024 iterations:200 warmup_steps:20\n"]
    lines += [f"warmup_step:{i}/20\n" for i in range(1, 21)]
    for step in range(0, 201):
        if step % 50 == 0:
            lines.append(f"step:{step}/200 val_loss:{4 - step / 100:.4f} val_bpb:{2 - step / 200:.4f} "
                         f"train_time:{step * 40}ms step_avg:{'nan' if step == 0 else f'{40.0:.2f}'}ms\n")
        if step:
            loss = float("nan") if step == 150 else 7 - step / 50
            lines.append(f"step:{step}/200 train_loss:{loss:.4f} train_time:{step * 40}ms step_avg:40.00ms\n")
    lines.append("final_int8_zlib_roundtrip val_loss:2.0727 val_bpb:1.2244 eval_time:1401ms\n")
    p = tmp_path / "train.log"
    p.write_text(code + "".join(lines))
    got, notes = read(p)
    assert got["train_loss"][0] == list(range(1, 201))
    assert np.isnan(got["train_loss"][1][149]) and got["train_loss"][1][0] == 6.98
    assert got["val_loss"] == ([0, 50, 100, 150, 200], [4.0, 3.5, 3.0, 2.5, 2.0])
    assert "train_batch_tokens" not in got and "warmup_step" not in got  # a config line, a compile warm-up
    assert assign_roles({t: len(v[0]) for t, v in got.items()}).eval_loss == "val_loss"
    assert any("by their layout" in n.message for n in notes["layout"])
    assert notes["no_step"][0].count >= 1  # the final evaluation has no step: counted, not read


def test_llmc_main_log_and_its_short_keys(tmp_path):
    p = tmp_path / "main.log"
    p.write_text("s:0 tel:10.9588\n" + "".join(f"s:{i} trl:{10 - i / 100:.4f} lr:{i * 1e-6:.6f} norm:{1.5:.2f}\n"
                                                for i in range(100)) + "s:100 tel:9.0000\ns:100 eval:0.2500\n")
    got, _ = read(p)
    roles = assign_roles({t: len(v[0]) for t, v in got.items()})
    assert (roles.train_loss, roles.eval_loss, roles.grad_norm, roles.lr) == ("trl", "tel", "norm", "lr")
    assert got["tel"] == ([0, 100], [10.9588, 9.0])


def test_build_nanogpt_log_txt_leading_step(tmp_path):
    p = tmp_path / "log.txt"
    p.write_text("".join(f"{s} train {5 - s / 1000:.6f}\n" + (f"{s} val {5.1 - s / 1000:.4f}\n{s} hella 0.2500\n"
                                                                if s % 250 == 0 else "") for s in range(0, 1000, 10)))
    got, _ = read(p)
    roles = assign_roles({t: len(v[0]) for t, v in got.items()})
    assert (roles.train_loss, roles.eval_loss) == ("train", "val")
    assert got["val"][0] == [0, 250, 500, 750]


def test_keras_epochs_with_batch_redraws_become_global_steps(tmp_path):
    out = []
    for epoch in range(1, 4):
        out.append(f"Epoch {epoch}/3\n")
        redraws = "".join(f"\r {b:3d}/100 [{'=' * (b // 4)}>{'.' * (25 - b // 4)}] - ETA: 1s - loss: {2 / epoch:.4f}"
                          for b in (10, 50, 90))
        out.append(redraws + f"\r100/100 [==============================] - 2s 20ms/step - loss: {1.5 / epoch:.4f} - "
                   f"val_loss: {1.6 / epoch:.4f}\n")
    p = tmp_path / "fit.log"
    p.write_text("".join(out))
    got, _ = read(p)
    assert got["val_loss"][0] == [100, 200, 300]
    assert got["loss"][0] == [10, 50, 90, 100, 110, 150, 190, 200, 210, 250, 290, 300]


def test_an_eval_line_counting_its_own_batches_takes_the_training_step(tmp_path):
    """timm: "Train: {epoch} [{i}/{n} ...]  Loss: ..." then "Test: [{i}/{n}]  ... Loss: ...": the eval lines
    count eval batches, not training steps."""
    out = []
    for epoch in range(3):
        for b in (0, 50, 99):
            out.append(f"Train: {epoch} [{b:4d}/100 ({b:3.0f}%)]  Loss: {3 - epoch - b / 200:#.3g} ({3 - epoch:#.3g})  "
                       f"LR: 1.000e-03\n")
        for b in (0, 9):
            out.append(f"Test: [{b:4d}/10]  Loss:  {2.5 - epoch:.4f} ({2.5 - epoch:.4f})  Acc@1: 50.0000 (50.0000)\n")
    p = tmp_path / "timm.log"
    p.write_text("".join(out))
    got, notes = read(p)
    assert got["train/Loss"][0] == [0, 50, 99, 100, 150, 199, 200, 250, 299]
    assert got["test/Loss"][0] == [99, 99, 199, 199, 299, 299]  # each at the training line before it
    assert any("took the step of the training line before it" in n.message for n in notes["derived_step"])


def test_a_list_of_numbers_or_a_one_line_config_is_not_a_training_log(tmp_path):
    p = tmp_path / "table.txt"
    p.write_text("".join(f"| {i} | GPU {i} | 80GB | {i * 10}% |\n" for i in range(8)))
    with pytest.raises(LogFormatError, match="no line holds named numbers"):
        sniff(p)


def test_a_fast_path_leaves_a_line_it_cannot_read_to_the_general_reader(tmp_path):
    """A nanoGPT fork printing a unit after its loss ('loss 1.2345 bpc, time ...'): nanoGPT's own pattern does not
    claim it (it would read no loss), the layout reader does."""
    p = tmp_path / "out.log"
    p.write_text("".join(f"iter {i}: loss {3 - i / 100:.4f} bpc, time 12.00ms, mfu 30.00%\n" for i in range(50)))
    got, _ = read(p)
    assert got["loss_bpc"][1][:2] == [3.0, 2.99]
    assert assign_roles({t: len(v[0]) for t, v in got.items()}).train_loss == "loss_bpc"


def test_a_dict_printed_after_the_scripts_own_step_is_read_at_that_step(tmp_path):
    # An accelerate-style loop prints ``step N: {...}`` every 50 steps: the dicts' order would put them at 1, 2, 3;
    # a dict behind a logging prefix (autotrain's ``on_log:226 - {...}``) has no counter and keeps its order.
    own = tmp_path / "own.log"
    own.write_text("".join(f"epoch 0: step {s}: {{'loss': {3 - s / 1000:.4f}, 'lr': 0.0001}}\n" for s in range(50, 501, 50)))
    got, _ = read(own)
    assert got["loss"][0] == list(range(50, 501, 50))
    prefixed = tmp_path / "prefixed.log"
    prefixed.write_text("".join(f"INFO | 2024-04-30 11:16:10 | autotrain.trainers.common:on_log:226 - "
                                f"{{'loss': {3 - k / 10:.4f}, 'learning_rate': 0.0001, 'epoch': {k / 10}}}\n"
                                for k in range(1, 6)))
    got, _ = read(prefixed)
    assert got["loss"][0] == [1, 2, 3, 4, 5]
