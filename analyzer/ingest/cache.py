"""A decode cache for event files, keyed by (path, size, mtime).

An unchanged file is loaded from one flat binary instead of being decoded again. A file that only
grew (a live run still writing) is decoded from where the cached read stopped, after checking that
the bytes the cache covers are still the same (`append_cursor`: their first and last 4 KiB). Each entry is a small
JSON sidecar (checked without touching the arrays) plus the arrays back to back in one .bin file.

A cache entry is never trusted blindly: a sidecar of the wrong shape, a .bin whose CRC32C does
not match the sidecar's, or tag codes outside the tag table are a cache miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import crc32c as _crc32c
import numpy as np

from analyzer.frame import RawPoints
from analyzer.ingest.append_cursor import AppendCursor
from analyzer.ingest.tensorboard import read_event_file
from analyzer.types import Note

_VERSION = 3
#: Arrays in the .bin, in this order: 8-byte types first so every view stays aligned.
_LAYOUT = (("steps", "<i8"), ("walls", "<f8"), ("values", "<f8"), ("codes", "<i4"))
#: Sidecar fields and their types; anything else is a miss.
_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "version": int, "path": str, "size": int, "mtime_ns": int, "end_offset": int, "fingerprint": int,
    "tags": list, "points": int, "notes": list, "crc": int, "hparams": dict, "crc_checked": bool,
    "skipped_values": int,
}


def default_cache_dir() -> Path:
    base = os.environ.get("STEADYTRAIN_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "steadytrain" if xdg else Path.home() / ".cache" / "steadytrain"


def notes_from_json(items: Any) -> list[Note] | None:
    """Notes stored as JSON dicts, or None when they are not what `asdict(Note)` writes."""
    if not isinstance(items, list):
        return None
    out = []
    for n in items:
        if not (isinstance(n, dict) and isinstance(n.get("kind"), str) and isinstance(n.get("message"), str)
                and isinstance(n.get("count", 0), int) and (n.get("step") is None or isinstance(n.get("step"), int))
                and (n.get("source") is None or isinstance(n.get("source"), str))):
            return None
        out.append(Note(n["kind"], n["message"], n.get("count", 0), n.get("step"), n.get("source")))
    return out


def _valid(meta: Any) -> bool:
    if not isinstance(meta, dict):
        return False
    for key, kind in _META_TYPES.items():
        value = meta.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return False
    return all(isinstance(t, str) for t in meta["tags"]) and meta["points"] >= 0 and meta["end_offset"] >= 0


class DecodeCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sidecars: dict[Path, Any] = {}  # read once per load, not once per question

    def _entry(self, path: Path) -> Path:
        # Paths from discovery are absolute already; resolving each costs more than the cache hit saves.
        digest = hashlib.sha1(str(path.absolute()).encode("utf-8", "surrogateescape")).hexdigest()[:20]
        return self.directory / digest

    def meta(self, path: Path) -> dict[str, Any] | None:
        """The sidecar of ``path`` when the cache still covers a prefix of the file, else None."""
        try:
            if path not in self._sidecars:
                self._sidecars[path] = json.loads(self._entry(path).with_suffix(".json").read_text())
            if not _valid(self._sidecars[path]):
                return None
            meta = dict(self._sidecars[path])
            if meta["version"] != _VERSION or meta["path"] != str(path.absolute()):
                return None
            st = path.stat()
            if st.st_size < meta["end_offset"]:
                return None
            unchanged = st.st_size == meta["size"] and st.st_mtime_ns == meta["mtime_ns"]
            if not unchanged and not AppendCursor(path, meta["end_offset"], meta["fingerprint"]).holds():
                return None  # rewritten, not appended to
        except (OSError, ValueError, RecursionError):
            return None
        meta["unchanged"] = unchanged
        return meta

    def is_current(self, path: Path) -> bool:
        meta = self.meta(path)
        return bool(meta and meta["unchanged"])

    def load(self, path: Path) -> tuple[dict[str, Any], RawPoints] | None:
        """(meta, points) cached for ``path`` when the cache still covers a prefix of it.

        meta["notes"] comes back as `Note`s; every field of meta has been type-checked."""
        meta = self.meta(path)
        if meta is None:
            return None
        notes = notes_from_json(meta["notes"])
        if notes is None:
            return None
        try:
            blob = np.fromfile(self._entry(path).with_suffix(".bin"), dtype=np.uint8)
        except OSError:
            return None
        n = meta["points"]
        if blob.size != sum(np.dtype(d).itemsize for _, d in _LAYOUT) * n or _crc32c.crc32c(blob.data) != meta["crc"]:
            return None
        arrays, off = {}, 0
        for name, dtype in _LAYOUT:
            size = np.dtype(dtype).itemsize * n
            arrays[name] = blob[off:off + size].view(dtype)
            off += size
        codes = arrays["codes"]
        if n and (int(codes.min()) < 0 or int(codes.max()) >= len(meta["tags"])):
            return None
        meta["notes"] = notes
        points = RawPoints(tuple(meta["tags"]), codes, arrays["steps"], arrays["walls"], arrays["values"])
        return meta, points

    def store(self, path: Path, points: RawPoints, *, end_offset: int, notes: list[Note], extra: dict[str, Any]) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            st = path.stat()
            entry = self._entry(path)
            cols = {"steps": points.steps, "walls": points.wall_times, "values": points.values,
                    "codes": points.tag_codes}
            crc = 0
            tmp_bin = entry.with_suffix(f".bin.{os.getpid()}.tmp")  # one per writer: concurrent runs never mix
            with open(tmp_bin, "wb") as fh:
                for name, dtype in _LAYOUT:
                    part = np.ascontiguousarray(cols[name], dtype=dtype)
                    crc = _crc32c.crc32c(part.data, crc)
                    fh.write(part.data)
            meta = {
                "version": _VERSION, "path": str(path.absolute()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "end_offset": end_offset, "fingerprint": AppendCursor.at(path, end_offset).fingerprint, "tags": list(points.tags),
                "points": len(points), "notes": [asdict(n) for n in notes], "crc": crc, **extra,
            }
            os.replace(tmp_bin, entry.with_suffix(".bin"))
            tmp_json = entry.with_suffix(f".json.{os.getpid()}.tmp")
            tmp_json.write_text(json.dumps(meta))
            os.replace(tmp_json, entry.with_suffix(".json"))
            self._sidecars.pop(path, None)
        except (OSError, ValueError, TypeError):
            pass  # a cache that cannot be written only costs speed next time


@dataclass(frozen=True)
class CachedEvents:
    """One event file's content, from the cache where it is current."""

    points: RawPoints
    notes: list[Note]
    hparams: dict[str, Any]
    skipped_values: int


def read_events_cached(path: Path, verify_crc: bool, cache: DecodeCache | None) -> CachedEvents:
    """An event file's points: from the cache when unchanged, decoding only the new bytes when it grew."""
    cached = cache.load(path) if cache else None
    if cached is not None:
        meta, old = cached
        if meta["unchanged"] and (meta["crc_checked"] or not verify_crc):
            return CachedEvents(old, meta["notes"], meta["hparams"], meta["skipped_values"])
        if meta["crc_checked"] or not verify_crc:
            content = read_event_file(path, verify_crc=verify_crc, begin=meta["end_offset"])
            got = CachedEvents(RawPoints.concat([old, content.points]),
                               [n for n in meta["notes"] if n.kind != "truncated"] + content.notes,
                               {**meta["hparams"], **content.hparams}, meta["skipped_values"] + content.skipped_values)
            _store_events(cache, path, got, content.end_offset, verify_crc)
            return got
    content = read_event_file(path, verify_crc=verify_crc)
    got = CachedEvents(content.points, content.notes, content.hparams, content.skipped_values)
    _store_events(cache, path, got, content.end_offset, verify_crc)
    return got


def _store_events(cache: DecodeCache | None, path: Path, got: CachedEvents, end: int, verify_crc: bool) -> None:
    if cache:
        cache.store(path, got.points, end_offset=end, notes=got.notes,
                    extra={"hparams": _json_safe(got.hparams), "crc_checked": verify_crc,
                           "skipped_values": got.skipped_values})


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for k, v in values.items()}
