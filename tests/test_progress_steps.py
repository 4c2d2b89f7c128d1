"""Logs whose only step is a progress fraction, and printed keys separated from their numbers by an arrow.

ms-swift (modelscope/ms-swift) prints each log dict (``{'loss': ..., 'global_step/max_steps': '5/94', ...}``)
and appends the same dict to ``logging.jsonl`` in its output folder: ``global_step/max_steps`` is the only
step either holds, written ``f'{step}/{max_steps}'``. nanoT5 prints ``[train] Step 100 out of 65536 | Loss -->
2.345 | Grad_l2 --> 1.234 | ...``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.types import Run


def _swift_logs(total: int = 400, every: int = 5, eval_every: int = 100) -> list[dict]:
    logs: list[dict] = []
    for step in range(every, total + 1, every):
        logs.append({"loss": round(2.0 * math.exp(-step / 100) + 1.0, 8), "grad_norm": round(1.0 + step / 1000, 8),
                     "learning_rate": 1e-05, "token_acc": 0.61763144, "epoch": round(step / total, 2),
                     "global_step/max_steps": f"{step}/{total}", "percentage": f"{100 * step / total:.2f}%",
                     "elapsed_time": "2s", "remaining_time": "4m 28s", "memory(GiB)": 4.87,
                     "train_speed(iter/s)": 0.345807})
        if step % eval_every == 0:
            logs.append({"eval_loss": round(2.0 * math.exp(-step / 100) + 1.1, 8), "eval_token_acc": 0.6,
                         "eval_runtime": 1.2, "eval_samples_per_second": 10.0, "eval_steps_per_second": 1.0,
                         "epoch": round(step / total, 2), "global_step/max_steps": f"{step}/{total}"})
    return logs


def _read(path: Path) -> Run:
    (run,), _ = load_runs([path], LoadOptions(cache_dir=None))
    return run


def _check_swift(run: Run, logs: list[dict]) -> None:
    train = [(int(d["global_step/max_steps"].split("/")[0]), d["loss"]) for d in logs if "loss" in d]
    evals = [(int(d["global_step/max_steps"].split("/")[0]), d["eval_loss"]) for d in logs if "eval_loss" in d]
    assert (run.roles.train_loss, run.roles.eval_loss, run.roles.grad_norm, run.roles.lr) == (
        "loss", "eval_loss", "grad_norm", "learning_rate")
    for tag, want in (("loss", train), ("eval_loss", evals)):
        s = run.series(tag)
        assert list(zip(s.steps.tolist(), s.values.tolist())) == want
    assert not any("global_step" in t or t in ("percentage", "elapsed_time") for t in run.tags)


def test_ms_swift_logging_jsonl_steps_come_from_the_progress_fraction(tmp_path: Path) -> None:
    logs = _swift_logs()
    path = tmp_path / "output" / "v0-20250101-120000" / "logging.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(d) + "\n" for d in logs))  # ms-swift's JsonlWriter: json.dumps per line
    run = _read(path)
    _check_swift(run, logs)
    assert any(n.kind == "derived_step" and "global_step/max_steps" in n.message for n in run.notes)


def test_ms_swift_printed_dicts_are_at_their_own_step_not_their_order(tmp_path: Path) -> None:
    logs = _swift_logs()
    path = tmp_path / "train.log"
    path.write_text("[INFO:swift] Start time of running main: 2025-01-01 12:00:00\n" + "".join(f"{d}\n" for d in logs))
    _check_swift(_read(path), logs)


def test_a_printed_key_and_its_number_joined_by_an_arrow(tmp_path: Path) -> None:
    steps = list(range(100, 3100, 100))
    losses = [round(9.0 * math.exp(-s / 800) + 2.0, 3) for s in steps]
    path = tmp_path / "main.log"
    path.write_text("".join(f"[train] Step {s} out of 65536 | Loss --> {loss:.3f} | Grad_l2 --> 0.912 | "
                            f"Weights_l2 --> 11234.567 | Lr --> 0.0200 | Seconds_per_step --> 1.23 |\n"
                            for s, loss in zip(steps, losses)))
    run = _read(path)
    assert (run.roles.train_loss, run.roles.grad_norm, run.roles.lr) == ("train/Loss", "train/Grad_l2", "train/Lr")
    s = run.series("train/Loss")
    assert s.steps.tolist() == steps and s.values.tolist() == losses
    assert sorted(run.tags) == ["train/Grad_l2", "train/Loss", "train/Lr", "train/Seconds_per_step",
                                "train/Weights_l2"]  # 65536, the total of "out of", is no metric


def test_watch_reads_a_growing_ms_swift_log_as_a_fresh_read(tmp_path: Path) -> None:
    from analyzer.live.watch import Watcher
    from analyzer.pipeline import analyze

    logs = _swift_logs()
    path = tmp_path / "out" / "logging.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(d) + "\n" for d in logs[:20]))
    w = Watcher([tmp_path], load_options=LoadOptions(cache_dir=None))
    w.poll()
    with open(path, "a") as fh:
        fh.write("".join(json.dumps(d) + "\n" for d in logs[20:]))
    w.poll()
    (fresh,) = analyze(tmp_path, load_options=LoadOptions(cache_dir=None)).diagnoses
    (live,) = w.diagnoses
    assert live.run.points.equals(fresh.run.points) and live.run.roles == fresh.run.roles
    _check_swift(live.run, logs)
