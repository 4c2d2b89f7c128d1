"""Numbers printed inside a torch tensor's or a numpy scalar's repr, and the numbers of a line's prefix that are
no metric: Ray's worker pid, a logger's thread id and source line.

``print("step", step, "loss", loss)`` of a 0-dim tensor writes ``tensor(2.3456, grad_fn=<NllLossBackward0>)``
(with ``device='cuda:0'`` on a GPU), and numpy 2 prints a scalar as ``np.float32(2.3456)``; the lines here are
made by torch and numpy themselves. Ray prefixes every line of a worker with ``(TaskRunner pid=2617997)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.types import Run

_STEPS = list(range(0, 600, 10))


def _losses() -> list[float]:
    return [float(np.float32(6.9 * math.exp(-s / 200) + 2.0)) for s in _STEPS]


def _read(path: Path) -> Run:
    (run,), _ = load_runs([path], LoadOptions(cache_dir=None))
    return run


def test_a_printed_tensor_reads_as_its_number(tmp_path: Path) -> None:
    losses = _losses()
    lines = []
    for step, value in zip(_STEPS, losses):
        weight = torch.tensor(value, requires_grad=True)
        loss = weight * 1.0  # a tensor with a grad_fn, as a training loop's loss is
        lines.append(" ".join(map(str, ("step", step, "loss", loss, "lr", torch.tensor(1e-3)))))
    assert "grad_fn=<MulBackward0>" in lines[0]
    path = tmp_path / "train.log"
    path.write_text("\n".join(lines) + "\n")
    run = _read(path)
    assert sorted(run.tags) == ["loss", "lr"] and run.roles.train_loss == "loss"
    got = run.series("loss")
    assert got.steps.tolist() == _STEPS
    assert got.values.tolist() == pytest.approx(losses, rel=1e-4)  # torch prints 4 decimals


def test_numpy_scalars_read_as_their_numbers(tmp_path: Path) -> None:
    losses = _losses()
    path = tmp_path / "train.log"
    path.write_text("".join(f"iter {s} loss={np.float32(v)!r} grad_norm={np.float64(1.5)!r}\n"
                            for s, v in zip(_STEPS, losses)))
    assert "np.float32(" in path.read_text()
    run = _read(path)
    assert (run.roles.train_loss, run.roles.grad_norm) == ("loss", "grad_norm")
    assert run.series("loss").values.tolist() == [float(str(np.float32(v))) for v in losses]  # str: the digits repr wraps


def test_a_ray_workers_pid_is_no_metric(tmp_path: Path) -> None:
    losses = _losses()
    path = tmp_path / "verl.log"
    path.write_text("".join(f"\x1b[36m(TaskRunner pid=2617997)\x1b[0m step:{s} - actor/pg_loss:{v} - "
                            f"actor/grad_norm:{np.float64(0.5)!r} - actor/lr:3e-06\n" for s, v in zip(_STEPS, losses)))
    run = _read(path)
    assert sorted(run.tags) == ["actor/grad_norm", "actor/lr", "actor/pg_loss"]
    assert run.series("actor/grad_norm").values.tolist() == [0.5] * len(_STEPS)


def _logged(path: Path, fmt: str, messages: list[str]) -> None:
    """``messages`` written through Python's logging with ``fmt`` (its real filename, line number, thread id);
    ``absl``: absl's own formatter (absl-py comes with tensorboard)."""
    import logging

    from absl import logging as absl_logging

    handler = logging.FileHandler(path)
    handler.setFormatter(absl_logging.PythonFormatter() if fmt == "absl" else logging.Formatter(fmt))
    logger = logging.getLogger(f"steadytrain-test-{path.name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        for message in messages:
            logger.info(message)
    finally:
        logger.removeHandler(handler)
        handler.close()


@pytest.mark.parametrize("fmt", [
    "absl",  # I1207 22:27:49.112622 139977361283968 train.py:5] (level letter, mmdd, time, thread id, file:line)
    "[%(asctime)s][%(filename)s:%(lineno)d][%(levelname)s] %(message)s",
    "%(asctime)s - %(levelname)s - %(module)s:%(funcName)s:%(lineno)d - %(message)s",  # loguru's default shape
])
def test_a_loggers_source_line_and_thread_are_no_metrics(tmp_path: Path, fmt: str) -> None:
    losses = _losses()
    path = tmp_path / "train.log"
    _logged(path, fmt, [f"[{s}] train/loss={v}, learning_rate=0.001" if fmt == "absl" else
                        f"step {s} loss {v} lr 0.001" for s, v in zip(_STEPS, losses)])
    run = _read(path)
    assert len(run.tags) == 2 and run.roles.train_loss is not None and run.roles.lr is not None
    got = run.series(run.roles.train_loss)
    assert got.steps.tolist() == _STEPS and got.values.tolist() == losses
