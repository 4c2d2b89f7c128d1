"""Text-log reading speed: steadytrain's text reader vs a plain Python line loop, same file, same run.

    python benchmarks/bench_text.py [--mb 200] [--repeat 3] [--data benchmarks/data/text] [--layout megatron|speedrun]

The file is a Megatron-LM job's stdout as its training_log prints it (timestamped iteration lines
with 13 items, a validation box every 1,000 iterations) mixed with the noise a real .out file
holds: NCCL/warning lines, tqdm bars redrawing with CR, gradient-overflow messages, a traceback.

The reference is the loop anyone would write first: read the file line by line and pull the step
and the LM loss out with one regular expression. steadytrain does more work on the same bytes: it
reads every item of every line (12 tags), validation lines, instability messages, and accounts
for every other line; a second reference loop reads every item too (--skip-all leaves it out).
``--layout speedrun`` writes the other common shape instead: modded-nanogpt / parameter-golf's
``step:N/M train_loss:X train_time:Yms step_avg:Zms`` lines (and their val_loss lines) after the script's
own source, which no tool-specific pattern reads: the general reader (lines grouped by template, each
kind's layout learned from one line; analyzer/ingest/text_generic.py) reads them.

All run in this process on the page-cached file, interleaved, best of --repeat; the ratios
(reference time / steadytrain time) are what to compare across machines. The LM-loss series and
the per-tag point counts of the readers must be equal (checked).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

from analyzer.ingest.textlog import read_text_log, sniff  # noqa: E402

_NOISE = (
    "NCCL INFO Channel 00/02 :    0   1   2   3   4   5   6   7\n",
    "[rank3]:[W501 12:00:00.000000000 ProcessGroupNCCL.cpp:1234] Warning: some collective took longer than expected\n",
    "/usr/lib/python3/site-packages/torch/utils/checkpoint.py:91: UserWarning: None of the inputs have "
    "requires_grad=True. Gradients will be None\n",
    "  warnings.warn(\n",
)
_TRACEBACK = ("Traceback (most recent call last):\n  File \"pretrain_gpt.py\", line 232, in <module>\n"
              "    pretrain(train_valid_test_datasets_provider, model_provider)\n"
              "RuntimeError: NCCL communicator was aborted on rank 5.\n")


def megatron_line(it: int, total: int, rng: random.Random) -> str:
    loss = 2.0 + 8.0 / math.sqrt(it) + rng.random() * 0.1
    s = f" [2024-05-01 {it // 3600 % 24:02d}:{it // 60 % 60:02d}:{it % 60:02d}]"
    s += " iteration {:8d}/{:8d} |".format(it, total)
    s += " consumed samples: {:12d} |".format(it * 512)
    s += " elapsed time per iteration (ms): {:.1f} |".format(700 + rng.random() * 100)
    s += f" throughput per GPU (TFLOP/s/GPU): {380 + rng.random() * 20:.1f} |"
    s += f" learning rate: {3e-4 * min(1.0, it / 2000):.6E} |"
    s += f" global batch size: {512:5d} |"
    s += " {}: {:.6E} |".format("lm loss", loss)
    s += f" loss scale: {65536.0:.1f} |"
    s += f" grad norm: {0.5 + rng.random():.3f} |"
    s += f" num zeros: {0:.1f} |"
    s += f" params norm: {250 + it / 1000:.3f} |"
    s += " number of skipped iterations: {:3d} |".format(0)
    s += " number of nan iterations: {:3d} |".format(0)
    return s + "\n"


def speedrun_line(it: int, total: int, rng: random.Random) -> str:
    loss = 3.0 + 8.0 / math.sqrt(it) + rng.random() * 0.1
    line = f"step:{it}/{total} train_loss:{loss:.4f} train_time:{it * 43}ms step_avg:{43 + rng.random():.2f}ms\n"
    if it % 125 == 0:
        line += (f"step:{it}/{total} val_loss:{loss + 0.1:.4f} val_bpb:{(loss + 0.1) / 1.69:.4f} "
                 f"train_time:{it * 43}ms step_avg:{43 + rng.random():.2f}ms\n")
    return line


def make_speedrun_log(path: Path, mb: int) -> None:
    """A parameter-golf job's log of about ``mb`` MB: its source code, torchrun noise, then the step lines."""
    rng = random.Random(0)
    target = mb * 1_000_000
    total = target // 70
    with open(path, "w") as fh:
        fh.write("".join(f"    x = self.blocks[{i}](x)  # layer {i}, lr scale {0.5 ** i:.3f}\n" for i in range(300)))
        size, it, parts = 0, 0, []
        while size < target:
            it += 1
            chunk = speedrun_line(it, total, rng)
            if rng.random() < 0.01:
                chunk += rng.choice(_NOISE)
            parts.append(chunk)
            size += len(chunk)
            if len(parts) >= 10_000:
                fh.write("".join(parts))
                parts = []
        fh.write("".join(parts))


def make_log(path: Path, mb: int) -> None:
    """A Megatron job's stdout of about ``mb`` MB, deterministic."""
    rng = random.Random(0)
    target = mb * 1_000_000
    total = target // 480
    parts: list[str] = []
    size = 0
    it = 0
    with open(path, "w") as fh:
        while size < target:
            it += 1
            chunk = megatron_line(it, total, rng)
            r = rng.random()
            if r < 0.02:
                chunk += rng.choice(_NOISE)
            elif r < 0.025:
                chunk += "".join(f"\r{p:3d}%|{'#' * (p // 10):10s}| {p}/100 [00:{p % 60:02d}<00:10, 9.9it/s]"
                                 for p in range(0, 101, 20)) + "\n"
            elif r < 0.026:
                chunk += "Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 32768.0\n"
            if it % 1000 == 0:
                string = f" validation loss at iteration {it} | lm loss value: {2.5:.6E} | lm loss PPL: {12.18:.6E} | "
                chunk += f"{'-' * (len(string) + 1)}\n{string}\n{'-' * (len(string) + 1)}\n"
            if it == 5000:
                chunk += _TRACEBACK
            parts.append(chunk)
            size += len(chunk)
            if len(parts) >= 10_000:
                fh.write("".join(parts))
                parts = []
        fh.write("".join(parts))


_REFERENCE = re.compile(r"iteration\s+(\d+)/\s*\d+ \|.*?\| lm loss: ([^ |]+)")


def reference(path: Path, pattern: re.Pattern[str] = _REFERENCE) -> tuple[list[int], list[float]]:
    """The plain loop: every line, one regular expression, step and loss only."""
    steps: list[int] = []
    losses: list[float] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = pattern.search(line)
            if m:
                steps.append(int(m.group(1)))
                losses.append(float(m.group(2)))
    return steps, losses


_ITERATION = re.compile(r"iteration\s+(\d+)/\s*\d+ \|")


def reference_all(path: Path) -> dict[str, int]:
    """The same loop reading every item of the iteration lines (what steadytrain reads of them): points per tag."""
    columns: dict[str, list[tuple[int, float]]] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = _ITERATION.search(line)
            if not m:
                continue
            step = int(m.group(1))
            for item in line[m.end():].split("|")[:-1]:
                key, sep, value = item.partition(":")
                if not sep:
                    continue
                try:
                    x = float(value)
                except ValueError:
                    continue
                columns.setdefault(key.strip(), []).append((step, x))
    return {k: len(v) for k, v in columns.items()}


_SPEEDRUN_REFERENCE = re.compile(r"^step:(\d+)/\d+ train_loss:(\S+)")


def reference_speedrun(path: Path) -> tuple[list[int], list[float]]:
    """The plain loop for the speedrun layout: step and train loss."""
    return reference(path, _SPEEDRUN_REFERENCE)


def steadytrain(path: Path, loss_tag: str = "lm loss") -> tuple[list[int], list[float], dict[str, int]]:
    points, notes = read_text_log(path, sniff(path))
    code = points.tags.index(loss_tag)
    sel = points.tag_codes == code
    per_tag = dict(zip(points.tags, np.bincount(points.tag_codes, minlength=len(points.tags)).tolist()))
    return points.steps[sel].tolist(), points.values[sel].tolist(), per_tag


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=200, help="size of the generated log in MB (default 200)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each reader; the best is kept (default 3)")
    ap.add_argument("--data", type=Path, default=HERE / "data" / "text")
    ap.add_argument("--skip-all", action="store_true", help="skip the every-item reference (slow)")
    ap.add_argument("--layout", choices=("megatron", "speedrun"), default="megatron",
                    help="megatron: a tool-specific pattern reads it; speedrun: the general reader does")
    args = ap.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    speedrun = args.layout == "speedrun"
    path = args.data / f"{args.layout}_{args.mb}mb.out"
    if not path.exists():
        t = time.perf_counter()
        (make_speedrun_log if speedrun else make_log)(path, args.mb)
        print(f"generated {path} in {time.perf_counter() - t:.1f} s")
    if speedrun:
        args.skip_all = True  # every item of a speedrun line is the step, the loss and two timings
    size_mb = path.stat().st_size / 1e6
    path.read_bytes()  # page cache warm for both readers
    best = {"steadytrain": math.inf, "reference": math.inf, "reference_all": math.inf}
    for _ in range(args.repeat):
        t = time.perf_counter()
        ours = steadytrain(path, "train_loss" if speedrun else "lm loss")
        best["steadytrain"] = min(best["steadytrain"], time.perf_counter() - t)
        t = time.perf_counter()
        ref = reference_speedrun(path) if speedrun else reference(path)
        best["reference"] = min(best["reference"], time.perf_counter() - t)
        if not args.skip_all:
            t = time.perf_counter()
            ref_all = reference_all(path)
            best["reference_all"] = min(best["reference_all"], time.perf_counter() - t)
            assert all(ours[2].get(k) == n for k, n in ref_all.items()), "the readers disagree on the items read"
    assert ours[0] == ref[0] and ours[1] == ref[1], "the readers disagree on the LM loss series"
    n_points = sum(ours[2].values())
    print(f"file: {path.name}, {size_mb:.1f} MB, {len(ref[0]):,} training lines; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"steadytrain (every item: {len(ours[2])} tags, {n_points:,} points; validation lines, messages, every line "
          f"accounted): {best['steadytrain']:.2f} s = {size_mb / best['steadytrain']:.0f} MB/s")
    print(f"reference (line loop, one regex, step + loss): {best['reference']:.2f} s = "
          f"{size_mb / best['reference']:.0f} MB/s; ratio reference/steadytrain "
          f"{best['reference'] / best['steadytrain']:.2f}x")
    if not args.skip_all:
        print(f"reference reading every item of the iteration lines: {best['reference_all']:.2f} s = "
              f"{size_mb / best['reference_all']:.0f} MB/s; ratio {best['reference_all'] / best['steadytrain']:.2f}x")


if __name__ == "__main__":
    main()
