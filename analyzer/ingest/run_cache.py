"""A cache of whole runs: the finished frame (Arrow IPC stream) plus notes, hparams and the file accounting.

Keyed by the run's files (path, size, mtime) and the options that shape the frame (restart policy,
CRC checking). An unchanged run is rebuilt from here without decoding, sorting or purging anything;
the per-file DecodeCache still serves runs whose files changed (a growing event file). An entry of
the wrong shape, or whose frame fails its CRC32C or schema, is a cache miss, never an error.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import crc32c as _crc32c
import polars as pl

from analyzer.ingest.cache import notes_from_json
from analyzer.types import InputFile

#: Bumped whenever reading gives other points or notes for the same files (4: text logs of any layout, notes
#: naming their file): a run cached by an older reader is read again, never served stale.
_VERSION = 6  # 6: fractional steps counted in a note; 5: JSON read by columns
_COLUMNS = ("tag", "step", "wall_time", "value")
_SMALL = 4 << 20


def run_key(files: list[Path], run_id: str, reader: str, options: tuple[Any, ...]) -> str | None:
    """The cache key of a run, or None when one of its files cannot be stat'ed."""
    parts = [str(_VERSION), run_id, reader, repr(options)]
    try:
        for f in files:
            st = f.stat()
            parts.append(f"{f.absolute()}|{st.st_size}|{st.st_mtime_ns}")
    except OSError:
        return None
    return hashlib.sha1("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:24]


def _inputs(items: Any) -> list[InputFile] | None:
    if not isinstance(items, list):
        return None
    out = []
    for i in items:
        if not (isinstance(i, dict) and isinstance(i.get("path"), str) and i.get("status") in ("read", "skipped")
                and isinstance(i.get("reason"), str) and (i.get("run") is None or isinstance(i.get("run"), str))):
            return None
        out.append(InputFile(i["path"], i["status"], i["reason"], i.get("run")))
    return out


def _checked(path: Path) -> tuple[Path | io.BytesIO, int]:
    """(what to read the frame from, CRC32C of the file). A small file is read once into memory; a
    large one is CRC'd through a memory map (no copy: 84 MB for a 3M-point run in ~15 ms) and polars
    reads it from disk."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < _SMALL:
            data = fh.read()
            return io.BytesIO(data), _crc32c.crc32c(data)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return path, _crc32c.crc32c(mm)


class RunCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory / "runs"

    def load(self, key: str) -> tuple[pl.DataFrame, dict[str, Any]] | None:
        """(frame, meta) of a cached run; meta's notes/read/skipped come back as `Note`/`InputFile`."""
        arrows = self.directory / f"{key}.arrows"
        try:
            meta = json.loads((self.directory / f"{key}.json").read_text())
            if not isinstance(meta, dict) or meta.get("version") != _VERSION:
                return None
            source, crc = _checked(arrows)
            if meta.get("crc") != crc:
                return None
        except (OSError, ValueError, RecursionError):
            return None
        notes = notes_from_json(meta.get("notes"))
        read, skipped = _inputs(meta.get("read")), _inputs(meta.get("skipped"))
        hparams, counts, sources = meta.get("hparams"), meta.get("counts"), meta.get("sources")
        if notes is None or read is None or skipped is None or not isinstance(hparams, dict) \
                or not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()) \
                or not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            return None
        try:
            # The IPC *stream* reader: ~0.2 ms a run, where read_ipc's lazy engine costs ~0.8 ms.
            frame = pl.read_ipc_stream(source)
        except (OSError, ValueError, pl.exceptions.PolarsError):
            return None
        if frame.columns != list(_COLUMNS):  # the CRC vouches for the rest: it is the frame we wrote
            return None
        return frame, {**meta, "notes": notes, "read": read, "skipped": skipped}

    def store(self, key: str, frame: pl.DataFrame, *, notes: list[Any], hparams: dict[str, Any],
              counts: dict[str, int], read: list[InputFile], skipped: list[InputFile], sources: list[str]) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            frame.write_ipc_stream(buf)
            data = buf.getvalue()
            tmp = self.directory / f"{key}.arrows.{os.getpid()}.tmp"  # one per writer: concurrent runs never mix
            tmp.write_bytes(data)
            os.replace(tmp, self.directory / f"{key}.arrows")
            safe = {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for k, v in hparams.items()}
            meta = {"version": _VERSION, "crc": _crc32c.crc32c(data), "notes": [asdict(n) for n in notes],
                    "hparams": safe, "counts": counts, "sources": sources,
                    "read": [asdict(i) for i in read], "skipped": [asdict(i) for i in skipped]}
            tmp_json = self.directory / f"{key}.json.{os.getpid()}.tmp"
            tmp_json.write_text(json.dumps(meta))
            os.replace(tmp_json, self.directory / f"{key}.json")
        except (OSError, ValueError, TypeError, pl.exceptions.PolarsError):
            pass  # a cache that cannot be written only costs speed next time
