"""A decode cache for event files, keyed by (path, size, mtime).

An unchanged file is loaded from one .npz instead of being decoded again. A file that only grew
(a live run still writing) is decoded from where the cached read stopped, after checking that
the bytes the cache covers are still the same (their first and last 4 KiB).
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.frame import RawPoints
from analyzer.types import Note

_VERSION = 1
_EDGE = 4096


def default_cache_dir() -> Path:
    base = os.environ.get("STEADYTRAIN_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "steadytrain" if xdg else Path.home() / ".cache" / "steadytrain"


def _fingerprint(path: Path, upto: int) -> int:
    with open(path, "rb") as fh:
        head = fh.read(min(_EDGE, upto))
        fh.seek(max(0, upto - _EDGE))
        tail = fh.read(min(_EDGE, upto))
    return zlib.crc32(head + tail)


class DecodeCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _entry(self, path: Path) -> Path:
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:20]
        return self.directory / f"{digest}.npz"

    def load(self, path: Path) -> tuple[dict[str, Any], RawPoints] | None:
        """(meta, points) cached for ``path`` when the cache still covers a prefix of it."""
        entry = self._entry(path)
        if not entry.is_file():
            return None
        try:
            with np.load(entry, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("version") != _VERSION or meta.get("path") != str(path.resolve()):
                    return None
                st = path.stat()
                unchanged = st.st_size == meta["size"] and st.st_mtime_ns == meta["mtime_ns"]
                if st.st_size < meta["end_offset"]:
                    return None
                if not unchanged and _fingerprint(path, meta["end_offset"]) != meta["fingerprint"]:
                    return None  # rewritten, not appended to
                points = RawPoints(tuple(meta["tags"]), z["codes"], z["steps"], z["walls"], z["values"])
        except (OSError, ValueError, KeyError, json.JSONDecodeError, zlib.error):
            return None
        return meta, points

    def store(self, path: Path, points: RawPoints, *, end_offset: int, notes: list[Note], extra: dict[str, Any]) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            st = path.stat()
            meta = {
                "version": _VERSION, "path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "end_offset": end_offset, "fingerprint": _fingerprint(path, end_offset), "tags": list(points.tags),
                "notes": [asdict(n) for n in notes], **extra,
            }
            entry = self._entry(path)
            tmp = entry.with_suffix(".tmp.npz")
            np.savez(tmp, meta=np.array(json.dumps(meta)), codes=points.tag_codes, steps=points.steps,
                     walls=points.wall_times, values=points.values)
            os.replace(tmp, entry)
        except OSError:
            pass  # a cache that cannot be written only costs speed next time
