"""Hand-built ``.wandb`` files for the tests: protobuf records byte by byte (so a test can write what
no serializer would), framed in LevelDB's log layout as wandb writes it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

BLOCK = 32768


def protos() -> Any:
    from wandb.proto import wandb_internal_pb2

    return wandb_internal_pb2


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def item(key: str, value: str) -> bytes:
    return protos().HistoryItem(nested_key=[key], value_json=value).SerializeToString()


def history(num: int, items: list[tuple[str, str]] | list[bytes], step: bytes | None = b"") -> bytes:
    """A Record holding a HistoryRecord of these items (pairs, or items already encoded)."""
    body = b"".join(field(1, i if isinstance(i, bytes) else item(*i)) for i in items)
    if step is not None:
        body += field(2, step)
    return varint(1 << 3) + varint(num) + field(2, body)


def wandb_file(records: list[bytes]) -> bytes:
    """LevelDB's log layout, as wandb writes it: records cut into chunks that never cross a block."""
    out = bytearray(b":W&B" + struct.pack("<HB", 0xBEE1, 0))
    for record in records:
        rest, first = record, True
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < 7:
                out += bytes(left)
                continue
            piece, rest = rest[: left - 7], rest[left - 7:]
            kind = (1 if first else 4) if not rest else (2 if first else 3)
            out += struct.pack("<IHB", zlib.crc32(bytes([kind]) + piece), len(piece), kind) + piece
            first = False
            if not rest:
                break
    return bytes(out)


def run_dir(tmp: Path, files: dict[str, bytes]) -> Path:
    folder = tmp / "offline-run-20260105_100000-x"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def base_records(n: int = 40) -> list[bytes]:
    """A run's usual records: a run record with its config, then history rows with their summaries."""
    config = protos().ConfigRecord(update=[protos().ConfigItem(key="lr", value_json="0.1")])
    out = [protos().Record(num=1, run=protos().RunRecord(run_id="x", config=config)).SerializeToString()]
    for i in range(n):
        row = [("_step", str(i)), ("loss", repr(1.0 / (i + 1))), ("_timestamp", repr(1.7e9 + i)),
               ("_runtime", "0.5")]
        out.append(history(2 * i + 2, row))
        out.append(protos().Record(num=2 * i + 3, summary=protos().SummaryRecord(update=[
            protos().SummaryItem(nested_key=["loss"], value_json=repr(1.0 / (i + 1)))])).SerializeToString())
    return out


def overlong(n: int, size: int) -> bytes:
    """n as a varint of exactly ``size`` bytes (padded with continuation bytes)."""
    raw = bytearray(varint(n))
    while len(raw) < size:
        raw[-1] |= 0x80
        raw.append(0)
    return bytes(raw)


def summary(num: int, body: bytes) -> bytes:
    return varint(1 << 3) + varint(num) + field(3, body)


def chunks(data: bytes) -> list[tuple[int, int]]:
    """(position, data length) of every chunk the reference walk meets."""
    out, pos = [], 7
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:
            pos += BLOCK - pos % BLOCK
            continue
        length = struct.unpack_from("<H", data, pos + 4)[0]
        if length == 0 or pos + 7 + length > len(data):
            break
        out.append((pos, length))
        pos += 7 + length
    return out
