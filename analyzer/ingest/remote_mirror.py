"""The mirror of analyzer.ingest.remote: objects copied under a local directory, a manifest per prefix, and
the incremental fetch that makes a grown object cost only its new bytes.

Per object, by what the listing says (size, ETag or mtime), against the manifest of the last mirroring:
unchanged (nothing downloaded, the mirror file keeps its size and mtime), grown with the old length's first
and last 4 KiB still the same in the store (only the new bytes fetched and appended), anything else (fetched
whole into a temporary file, then renamed). An object that cannot be fetched is a skipped input naming its
URL; a mirror file whose object is gone is deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from analyzer.display import shown, strip_credentials
from analyzer.ingest.append_cursor import EDGE, edges
from analyzer.ingest.remote_store import StoredObject, filesystem, list_objects, protocol
from analyzer.ingest.skipped import short
from analyzer.types import InputFile

# The name the mirror has always logged under: -v output and handlers set on it (the benchmark's) stay as they were.
log = logging.getLogger("analyzer.ingest.remote")

#: Objects are fetched in pieces of at most this many bytes (a large event file never sits in memory whole).
_CHUNK = 16 << 20
#: Concurrent requests: object stores are latency-bound, not bandwidth-bound, for small objects.
_THREADS = 16
_MANIFEST_VERSION = 1


@dataclass
class MirrorStats:
    """What one mirroring did (logged with -v; the benchmark reads it).

    Attributes:
        objects: objects listed under the remote paths.
        unchanged: objects whose mirror copy was current (nothing downloaded).
        downloaded: objects fetched whole.
        appended: objects that had grown and of which only the new bytes were fetched.
        failed: objects that could not be fetched (skipped inputs).
        removed: mirror files whose object is gone from the store.
        bytes: bytes received from the store (new bytes, whole objects, and the edge checks of grown ones).
        seconds: wall time of listing and fetching.
    """

    objects: int = 0
    unchanged: int = 0
    downloaded: int = 0
    appended: int = 0
    failed: int = 0
    removed: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return self.line()

    def line(self) -> str:
        return (f"{self.objects} object(s) listed: {self.unchanged} unchanged, {self.downloaded} downloaded, "
                f"{self.appended} grown (new bytes only), {self.failed} failed, {self.removed} removed; "
                f"{self.bytes:,} bytes downloaded in {self.seconds:.2f} s")


def _relative(root: str, name: str) -> str | None:
    """The object's path below ``root``, or None when it cannot become a safe local path."""
    if name == root:
        rel = root.rsplit("/", 1)[-1]
    elif name.startswith(root.rstrip("/") + "/"):
        rel = name[len(root.rstrip("/")) + 1:]
    else:
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") or "\x00" in p for p in parts):
        return None
    return rel


class Mirror:
    """Mirrors remote prefixes under ``directory`` and remembers what it fetched (a JSON manifest per root)."""

    def __init__(self, directory: Path, storage_options: Mapping[str, Any] | None = None,
                 threads: int = _THREADS) -> None:
        self.directory = directory
        self.storage_options = dict(storage_options or {})
        self.threads = threads

    def base(self, protocol: str) -> Path:
        """Where objects of ``protocol`` are mirrored (the store's own paths below it)."""
        return self.directory / re.sub(r"[^a-z0-9+.-]", "_", protocol)

    def _manifest_path(self, url: str) -> Path:
        return self.directory / "manifests" / (hashlib.sha1(url.encode("utf-8", "surrogateescape")).hexdigest()[:24] + ".json")

    def _load_manifest(self, url: str) -> dict[str, Any]:
        try:
            data = json.loads(self._manifest_path(url).read_text())
        except (OSError, ValueError, RecursionError):
            return {}
        if not isinstance(data, dict) or data.get("version") != _MANIFEST_VERSION or not isinstance(
                data.get("objects"), dict):
            return {}
        return data["objects"]

    def _save_manifest(self, url: str, objects: dict[str, Any]) -> None:
        path = self._manifest_path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": _MANIFEST_VERSION, "objects": objects}))
            os.replace(tmp, path)
        except OSError as exc:  # the next run downloads again; this one is still right
            log.warning("the mirror manifest %s could not be written: %s", path, exc.strerror or exc)

    def sync(self, url: str, stats: MirrorStats) -> tuple[Path, list[InputFile]]:
        """Mirror ``url``; (its local path, objects that could not be fetched)."""
        started = time.perf_counter()
        fs, root = filesystem(url, self.storage_options)
        root = root.rstrip("/")
        scheme = protocol(url)
        base = self.base(scheme)
        objects = list_objects(fs, url, root)
        inside = str(base.resolve()) + os.sep
        single = len(objects) == 1 and objects[0].name == root
        where = strip_credentials(root).lstrip("/")  # memory:// and local-like stores name paths from "/"
        if single:  # one object named: its folder holds it (a run of its own, as a local file is)
            local_root = base / where.rsplit("/", 1)[0] if "/" in where else base
        else:
            local_root = base / where
        previous = self._load_manifest(url)
        manifest: dict[str, Any] = {}
        skipped: list[InputFile] = []
        work: list[tuple[StoredObject, Path, dict[str, Any] | None]] = []
        keep: set[str] = set()
        for obj in objects:
            rel = _relative(root, obj.name)
            target = (local_root / rel) if rel is not None else None
            if target is None or not str(target.resolve()).startswith(inside):
                skipped.append(InputFile(shown(f"{scheme}://{obj.name.lstrip('/')}"), "skipped",
                                         "object key cannot be mirrored as a local path ('.', '..' or empty part)"))
                continue
            keep.add(str(target))
            old = previous.get(obj.name)
            if isinstance(old, dict) and _current(old, obj, target):
                manifest[obj.name] = old
                stats.unchanged += 1
                continue
            work.append((obj, target, old if isinstance(old, dict) else None))
        stats.objects += len(objects)
        with ThreadPoolExecutor(max_workers=max(1, min(self.threads, len(work) or 1))) as pool:
            results = list(pool.map(lambda job: self._fetch(fs, *job), work))
        for (obj, target, _), (entry, how, got, error) in zip(work, results):
            stats.bytes += got
            if error is not None:
                stats.failed += 1
                keep.discard(str(target))
                _remove(target)  # a stale copy would be read as if it were the object
                skipped.append(InputFile(shown(f"{scheme}://{obj.name.lstrip('/')}"), "skipped",
                                         f"could not be downloaded from the object store: {error}"))
                continue
            manifest[obj.name] = entry
            if how == "appended":
                stats.appended += 1
            else:
                stats.downloaded += 1
        stats.removed += _prune(local_root if not single else None, keep)
        self._save_manifest(url, manifest)
        stats.seconds += time.perf_counter() - started
        local = local_root / root.rsplit("/", 1)[-1] if single else local_root
        return local, skipped

    def _fetch(self, fs: Any, obj: StoredObject, target: Path, old: dict[str, Any] | None
               ) -> tuple[dict[str, Any], str, int, str | None]:
        """(manifest entry, "downloaded" | "appended", bytes received, error or None) for one object."""
        got = 0
        try:
            if old is not None and _can_append(old, obj, target):
                edges, n = self._edges_match(fs, obj, target, int(old["size"]))
                got += n
                if edges is not None:
                    got += _append(fs, obj, target, int(old["size"]), edges)
                    return _entry(obj, target), "appended", got, None
            got += _download(fs, obj, target)
            return _entry(obj, target), "downloaded", got, None
        except Exception as exc:  # noqa: BLE001 - one object's failure skips that object only
            log.debug("fetching %s failed", obj.name, exc_info=exc)
            return {}, "", got, _reason(exc)

    @staticmethod
    def _edges_match(fs: Any, obj: StoredObject, target: Path, old_size: int) -> tuple[bytes | None, int]:
        """Whether the old length's first and last ``EDGE`` bytes read the same from the store. One request
        reads the old tail and every new byte together: (the new bytes when the edges match, bytes received)."""
        head, tail = edges(target, old_size)  # the ends an append cursor checks, compared byte for byte here
        remote_head = fs.cat_file(obj.name, start=0, end=EDGE)
        if remote_head != head:
            return None, len(remote_head)
        rest = fs.cat_file(obj.name, start=old_size - EDGE, end=min(obj.size, old_size + _CHUNK))
        received = len(remote_head) + len(rest)
        if rest[:EDGE] != tail:
            return None, received
        return rest[EDGE:], received


def _current(old: Mapping[str, Any], obj: StoredObject, target: Path) -> bool:
    """The mirror copy is this object, untouched since it was written."""
    try:
        st = target.stat()
    except OSError:
        return False
    return (old.get("size") == obj.size and old.get("version") == obj.version and st.st_size == obj.size
            and old.get("mtime_ns") == st.st_mtime_ns)


def _can_append(old: Mapping[str, Any], obj: StoredObject, target: Path) -> bool:
    """An object that only grew could be an append: worth checking edges when it is not tiny."""
    try:
        st = target.stat()
    except OSError:
        return False
    size = old.get("size")
    return (isinstance(size, int) and size >= 2 * EDGE and obj.size > size and st.st_size == size
            and old.get("mtime_ns") == st.st_mtime_ns)


def _entry(obj: StoredObject, target: Path) -> dict[str, Any]:
    return {"size": obj.size, "version": obj.version, "mtime_ns": target.stat().st_mtime_ns}


def _download(fs: Any, obj: StoredObject, target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    got = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            if obj.size <= _CHUNK:
                data = fs.cat_file(obj.name)
                fh.write(data)
                got = len(data)
            else:
                for start in range(0, obj.size, _CHUNK):
                    data = fs.cat_file(obj.name, start=start, end=min(obj.size, start + _CHUNK))
                    fh.write(data)
                    got += len(data)
        if got != obj.size:
            raise OSError(f"received {got:,} of {obj.size:,} bytes (the object changed while it was read?)")
        os.replace(tmp, target)
    except BaseException:
        _remove(Path(tmp))
        raise
    return got


def _append(fs: Any, obj: StoredObject, target: Path, old_size: int, first: bytes) -> int:
    """Append the bytes past ``old_size`` (``first`` already holds the start of them); on any failure the
    mirror file is cut back to its old length, so it never holds a half-fetched tail."""
    got = 0
    try:
        with open(target, "r+b") as fh:
            fh.seek(old_size)
            fh.write(first)
            pos = old_size + len(first)
            while pos < obj.size:
                data = fs.cat_file(obj.name, start=pos, end=min(obj.size, pos + _CHUNK))
                if not data:
                    raise OSError(f"the object ended at {pos:,} bytes, listed as {obj.size:,}")
                fh.write(data)
                got += len(data)
                pos += len(data)
            fh.truncate(obj.size)
    except BaseException:
        with open(target, "r+b") as fh:
            fh.truncate(old_size)
        raise
    return got


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return f"access denied ({short(exc, 120)})"
    if isinstance(exc, FileNotFoundError):
        return "the object disappeared between listing and reading"
    if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
        return f"timed out ({type(exc).__name__})"
    return f"{type(exc).__name__}: {short(exc, 160)}"


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _prune(local_root: Path | None, keep: set[str]) -> int:
    """Delete mirror files whose object is gone (a deleted run must not be read from a stale copy)."""
    if local_root is None or not local_root.is_dir():
        return 0
    removed = 0
    for dirpath, _, names in os.walk(local_root):
        for name in names:
            path = os.path.join(dirpath, name)
            if path not in keep:
                _remove(Path(path))
                removed += 1
    return removed
