"""Weights & Biases run folders: ``wandb/offline-run-<date>_<time>-<id>/run-<id>.wandb`` (or ``run-*``).

The ``.wandb`` file is a LevelDB-style log: after a 7-byte header (``:W&B``, magic 0xBEE1,
version 0), 32 KiB blocks of chunks, each with a CRC-32 over its type byte and data, a length
and a type (a whole record, or the first, a middle or the last piece of one). The records are
protobuf ``Record`` messages, decoded with the wandb package's own classes, so reading a run
needs the optional extra (``pip install 'steadytrain[wandb]'``). The framing is read by
`wandb_framing` because recent wandb releases no longer ship the Python reader
(``wandb.sdk.internal.datastore``) that older ones had; the records by `wandb_fast` (column-wise,
where it can vouch for them) and `wandb_history` (one protobuf record at a time).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest import wandb_framing
from analyzer.ingest.tabular import flatten
from analyzer.ingest.wandb_fast import read_fast
from analyzer.ingest.wandb_framing import Framing
from analyzer.ingest.wandb_history import History, apply_record
from analyzer.types import Note

MISSING_EXTRA = "W&B offline run: reading it needs the wandb package: pip install 'steadytrain[wandb]'"

_HEADER = struct.Struct("<4sHB")
_HEADER_IDENT, _HEADER_MAGIC, _HEADER_VERSION = b":W&B", 0xBEE1, 0


def _run_files(directory: Path) -> list[Path]:
    try:
        with os.scandir(directory) as entries:
            return sorted(Path(e.path) for e in entries
                          if e.name.startswith("run-") and e.name.endswith(".wandb") and e.is_file())
    except OSError:
        return []


def is_wandb_run_dir(directory: Path) -> bool:
    """Whether ``directory`` is a W&B run folder: it holds a ``run-*.wandb`` file (no file is opened)."""
    return bool(_run_files(directory))


def run_id(path: Path) -> str | None:
    """The W&B run id a ``run-<id>.wandb`` file is named with: the run's identity, the same in every folder
    that a resumed run (``wandb.init(id=..., resume=...)``) writes."""
    name = path.name
    if not (name.startswith("run-") and name.endswith(".wandb")):
        return None
    return name[len("run-"): -len(".wandb")] or None


def _hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The run's config flattened with '.', plain values only (what a sweep compares), no W&B keys."""
    plain = {k: v for k, v in config.items() if not k.startswith("_wandb")}
    flat = flatten(plain, ".", max_keys=10_000)
    return {str(k): v for k, v in flat.items() if isinstance(v, (str, int, float, bool)) or v is None}


def _load_protos() -> Any:
    try:
        from wandb.proto import wandb_internal_pb2
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "wandb":
            raise LogFormatError(MISSING_EXTRA) from None
        raise LogFormatError(f"W&B offline run: the wandb package cannot be imported ({exc})") from None
    except ImportError as exc:  # e.g. a protobuf major version this wandb release has no classes for
        raise LogFormatError(f"W&B offline run: the wandb package cannot be imported ({exc})") from None
    return wandb_internal_pb2


def _read_exact(data: bytes, pb: Any, history: History, config: dict[str, Any]) -> tuple[Framing, int, int]:
    """(framing, records decoded, records undecodable) of one file, record by record."""
    framing = Framing()
    decoded = undecodable = 0
    for raw in wandb_framing.records(data, framing):
        if apply_record(raw, pb, history, config):
            decoded += 1
        else:
            undecodable += 1
    return framing, decoded, undecodable


def read_wandb_run(directory: Path, *, exact: bool = False) -> tuple[RawPoints, list[Note], dict[str, Any]]:
    """(points, notes, hparams) of a W&B run folder, from its ``run-*.wandb`` file.

    Every numeric value of every history record (what ``wandb.log`` wrote) becomes a point of
    the tag it was logged under, at ``_step``, or at the value of its step metric where
    ``define_metric`` set one (Lightning and the HF Trainer log against their global step this
    way). ``_timestamp`` is the wall time; ``_runtime`` and step metrics are not points. Media,
    text and other non-numeric values are counted in notes. hparams: the run's config, flattened
    with '.'. LogFormatError when wandb is not installed or the file is not a W&B run file.
    ``exact``: decode every record with protobuf (`wandb_history`); otherwise `wandb_fast` reads the
    records it can vouch for column-wise, to the same result, and hands it the others.
    """
    files = _run_files(directory)
    if not files:
        raise LogFormatError("no run-*.wandb file: not a W&B run folder")
    pb = _load_protos()
    history = History(source=files[0].name, typed="value" in pb.HistoryItem.DESCRIPTOR.oneofs_by_name)
    config: dict[str, Any] = {}
    notes: list[Note] = []
    records = 0
    for path in files:
        data = path.read_bytes()
        if len(data) < _HEADER.size:
            raise LogFormatError(f"{path.name} is shorter than a W&B run file's header")
        ident, magic, version = _HEADER.unpack_from(data)
        if ident != _HEADER_IDENT or magic != _HEADER_MAGIC:
            raise LogFormatError(f"{path.name} has no W&B header (':W&B'): not a W&B run file")
        if version != _HEADER_VERSION:
            raise LogFormatError(f"{path.name} is W&B run file version {version}; only version "
                                 f"{_HEADER_VERSION} is known")
        read = None if exact else read_fast(data, pb, history, config)
        framing, decoded, undecodable = read or _read_exact(data, pb, history, config)
        records += decoded
        if framing.truncated_bytes:
            notes.append(Note("truncated", f"{path.name}: the last record is incomplete (the run was still "
                              f"writing, or was killed); its {framing.truncated_bytes} byte(s) were not used",
                              count=1))
        lost = framing.corrupt_chunks + framing.orphan_chunks + undecodable
        if lost:
            notes.append(Note("corrupt", f"{path.name}: {framing.corrupt_chunks} chunk(s) failed their "
                              f"checksum, {framing.orphan_chunks} belonged to a lost record and "
                              f"{undecodable} record(s) could not be decoded; the records in them were not "
                              "used", count=lost))
    if len(files) > 1:
        notes.append(Note("merged", f"{directory.name}: {len(files)} run-*.wandb files read in name order "
                          f"({', '.join(p.name for p in files)})", count=len(files)))
    if records == 0:
        raise LogFormatError(f"{files[0].name} holds no readable record")
    return history.points(), notes + history.notes(), _hparams(config)
