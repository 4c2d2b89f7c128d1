"""TensorBoard event files for probe trials, written without protobuf objects.

A probe logs every step, so the writer sits on the training loop's hot path. Building
``Event`` protos costs ~30 us each and tensorboard's RecordWriter computes CRC32C in pure
Python (~15 us a record) without TensorFlow; on a 1 ms step that alone is several percent.
So the bytes are laid out here directly: one Event per step carrying all of that step's
scalars, a window of steps at a time with numpy, framed as TFRecords with the C CRC32C.
Tests check the bytes are identical to protobuf's serialisation.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import struct
import time
from pathlib import Path

import numpy as np

from analyzer.ingest.tfrecord import masked_crc

_F32 = struct.Struct("<f").pack
_F64 = struct.Struct("<d").pack
_U64 = struct.Struct("<Q").pack
_U32 = struct.Struct("<I").pack
_file_counter = itertools.count()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@functools.lru_cache(maxsize=1024)
def _value_prefix(tag: str) -> bytes:
    """Summary.Value field header + tag + simple_value key: everything but the 4 value bytes."""
    tag_b = tag.encode()
    inner = b"\x0a" + _varint(len(tag_b)) + tag_b + b"\x15"
    return b"\x0a" + _varint(len(inner) + 4) + inner


def encode_scalar_event(wall_time: float, step: int, values: dict[str, float]) -> bytes:
    """The bytes ``Event(wall_time, step, summary=Summary(value=[Value(tag, simple_value)...]))
    .SerializeToString()`` produces."""
    body = b"".join([_value_prefix(tag) + _F32(value) for tag, value in values.items()])
    step_field = b"\x10" + _varint(step & 0xFFFFFFFFFFFFFFFF) if step else b""
    return b"\x09" + _F64(wall_time) + step_field + b"\x2a" + _varint(len(body)) + body


def frame_record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC32C, the data, the data's masked CRC32C."""
    header = _U64(len(data))
    return header + _U32(masked_crc(header)) + data + _U32(masked_crc(data))


def _varint_len(step: int) -> int:
    """Bytes of the step field's varint; 0 for step 0, which proto3 leaves out."""
    return 0 if step == 0 else (step.bit_length() + 6) // 7


def encode_step_records(wall_times: np.ndarray, first_step: int, columns: dict[str, np.ndarray]) -> bytes:
    """Framed records for steps ``first_step, first_step+1, ...``: the same bytes as
    ``frame_record(encode_scalar_event(wall_times[i], first_step + i, {tag: columns[tag][i]}))``
    for every i, built as one numpy record array per run of steps whose varint has one length."""
    n = len(wall_times)
    out = []
    start = 0
    while start < n:
        length = _varint_len(first_step + start)
        end = min(n, (1 if length == 0 else 1 << (7 * length)) - first_step)  # where the varint grows a byte
        out.append(_encode_run(wall_times[start:end], first_step + start, length,
                               {tag: col[start:end] for tag, col in columns.items()}))
        start = end
    return b"".join(out)


def _encode_run(wall_times: np.ndarray, first_step: int, step_len: int, columns: dict[str, np.ndarray]) -> bytes:
    n = len(wall_times)
    prefixes = [_value_prefix(tag) for tag in columns]
    body_len = sum(len(p) + 4 for p in prefixes)
    body_len_varint = _varint(body_len)
    data_len = 1 + 8 + (1 + step_len if step_len else 0) + 1 + len(body_len_varint) + body_len
    fields: list[tuple] = [("len", "<u8"), ("len_crc", "<u4"), ("wall_key", "u1"), ("wall", "<f8")]
    if step_len:
        fields += [("step_key", "u1"), ("step", "u1", (step_len,))]
    fields += [("summary_key", "u1"), ("summary_len", "u1", (len(body_len_varint),))]
    for j, prefix in enumerate(prefixes):
        fields += [(f"prefix{j}", "u1", (len(prefix),)), (f"value{j}", "<f4")]
    fields += [("data_crc", "<u4")]
    rec = np.empty(n, dtype=np.dtype(fields))  # packed: numpy adds no padding unless asked
    rec["len"] = data_len
    rec["len_crc"] = masked_crc(_U64(data_len))
    rec["wall_key"] = 0x09
    rec["wall"] = wall_times
    if step_len:
        steps = np.arange(first_step, first_step + n, dtype=np.uint64)
        rec["step_key"] = 0x10
        for j in range(step_len):
            rec["step"][:, j] = ((steps >> np.uint64(7 * j)) & np.uint64(0x7F)) | (0x80 if j < step_len - 1 else 0)
    rec["summary_key"] = 0x2A
    rec["summary_len"] = np.frombuffer(body_len_varint, np.uint8)
    for j, (prefix, values) in enumerate(zip(prefixes, columns.values())):
        rec[f"prefix{j}"] = np.frombuffer(prefix, np.uint8)
        rec[f"value{j}"] = values
    size, data_at = rec.dtype.itemsize, 12  # the data follows the u64 length and its u32 CRC
    raw = memoryview(rec.tobytes())
    rec["data_crc"] = [masked_crc(raw[i * size + data_at:i * size + data_at + data_len]) for i in range(n)]
    return rec.tobytes()


class EventLog:
    """One trial's TensorBoard event file."""

    def __init__(self, log_dir: Path) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        log_dir.mkdir(parents=True, exist_ok=True)
        # TensorBoard's own naming (time.host.pid.counter): two logs opened in one second never collide
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{next(_file_counter)}"
        self._file = open(log_dir / name, "wb")
        self._file.write(frame_record(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()))

    def write(self, wall_time: float, step: int, values: dict[str, float]) -> None:
        self._file.write(frame_record(encode_scalar_event(wall_time, step, values)))

    def write_steps(self, wall_times: np.ndarray, first_step: int, columns: dict[str, np.ndarray]) -> None:
        self._file.write(encode_step_records(wall_times, first_step, columns))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
