"""Generate benchmark event files in the exact bytes PyTorch's SummaryWriter writes.

Writing millions of points through SummaryWriter.add_scalar takes minutes; here each Event
is serialised with TensorBoard's own protos and framed by TensorBoard's own RecordWriter
logic (tensorboard.summary.writer.record_writer), which is what SummaryWriter calls.

    python benchmarks/make_logs.py big DIR --steps 1000000
    python benchmarks/make_logs.py many DIR --runs 200 --steps 10000
"""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import time

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter

TAGS = ("train/loss", "train/grad_norm", "train/lr")


def write_run(path: str, steps: int, seed: int) -> str:
    os.makedirs(path, exist_ok=True)
    name = os.path.join(path, f"events.out.tfevents.{int(time.time())}.bench.{seed}.0")
    rng = random.Random(seed)
    sink = io.BytesIO()
    writer = RecordWriter(sink)
    writer.write(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    t0 = 1.7e9
    for step in range(steps):
        loss = 2.5 * math.exp(-step / (steps / 3 + 1)) + 0.1 + 0.02 * rng.random()
        if step == steps // 2:
            loss *= 8  # one-step spike: the benchmark must never lose it
        for tag, value in zip(TAGS, (loss, 1.0 + rng.random(), 1e-3)):
            ev = Event(wall_time=t0 + step * 0.01, step=step,
                       summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)]))
            writer.write(ev.SerializeToString())
    with open(name, "wb") as fh:
        fh.write(sink.getvalue())
    return name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=("big", "many"))
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    if args.kind == "big":
        print(write_run(os.path.join(args.out, "big"), args.steps, 0))
    else:
        for i in range(args.runs):
            write_run(os.path.join(args.out, "many", f"run_{i:03d}"), args.steps, i)
        print(os.path.join(args.out, "many"))


if __name__ == "__main__":
    main()
