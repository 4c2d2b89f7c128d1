"""Logs in object stores (``s3://``, ``gs://``, ``hf://``, any fsspec protocol): mirrored, then read locally.

A remote path is mirrored into the cache directory (``<cache>/remote/<protocol>/<bucket>/<key>``) and the
ordinary local pipeline runs on the mirror, so discovery, every reader, the decode cache and the run cache
work unchanged: an object that did not change keeps its mirror file untouched (same size and mtime), so
the caches see an unchanged file. Per object, by what the listing says (size, ETag or mtime):
- unchanged since the last mirror: nothing is downloaded;
- grown (an append-only log still being written: a live run's event file or JSONL): when the old
  length's first and last 4 KiB still read the same from the store, only the new bytes are fetched
  (ranged reads) and appended, which the decode cache then decodes incrementally;
- anything else: downloaded whole (to a temporary file, then renamed: a reader never sees half an object).
An object that cannot be fetched (access denied, a 500, a timeout) is a skipped input naming its URL and
the reason; every other object is still read. A missing bucket or prefix is a one-line InputError.

Credentials and endpoints come from each store's own environment and config files (for S3:
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_PROFILE, ...) plus ``storage_options`` (``--storage-option``);
their values are never logged. fsspec and the store's package (s3fs, gcsfs, ...) are imported only
when a remote path is given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from urllib.parse import unquote
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from analyzer.display import shown, strip_credentials
from analyzer.ingest.skipped import short
from analyzer.errors import ConfigError, InputError
from analyzer.ingest.append_cursor import EDGE, edges
from analyzer.types import InputFile, Note, Run

log = logging.getLogger(__name__)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: Objects are fetched in pieces of at most this many bytes (a large event file never sits in memory whole).
_CHUNK = 16 << 20
#: Concurrent requests: object stores are latency-bound, not bandwidth-bound, for small objects.
_THREADS = 16
_MANIFEST_VERSION = 1
#: The package each protocol needs, for the one-line error when it is missing.
_EXTRA = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
_PACKAGE = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "hf": "huggingface_hub", "az": "adlfs",
            "abfs": "adlfs", "abfss": "adlfs"}


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` names an object store (``scheme://...``); ``file://`` is a local path."""
    m = _SCHEME.match(str(path))
    return m is not None and m.group(1).lower() != "file"


def local_path(path: str | Path) -> str | Path:
    """``file:///x/y`` (or ``file://localhost/x/y``) as the local path ``/x/y``; anything else as given. A
    percent-escape (``%20``) is decoded when the path does not exist as written, as a browser writes it."""
    text = str(path)
    if not text.lower().startswith("file://"):
        return path
    rest = text[len("file://"):]
    if rest.lower().startswith("localhost/"):
        rest = rest[len("localhost"):]
    decoded = unquote(rest, errors="surrogateescape")
    return decoded if decoded != rest and not os.path.exists(rest) and os.path.exists(decoded) else rest


def parse_storage_options(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as fsspec storage options. true/false, plain integers and JSON objects/lists
    become values of those types (``client_kwargs={"region_name": "eu-west-1"}``); anything else stays a
    string (quote a number in JSON, ``'"123"'``, to keep it one). Values are never echoed: they may be secrets."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--storage-option {key or item[:40]!r}...: expected KEY=VALUE, e.g. "
                              "--storage-option anon=true")
        if value in ("true", "false"):
            out[key] = value == "true"
        elif re.fullmatch(r"-?(0|[1-9][0-9]*)", value):
            out[key] = int(value)
        elif value[:1] in ("{", "[", '"'):
            try:
                out[key] = json.loads(value)
            except ValueError:
                raise ConfigError(f"--storage-option {key}: the value starts like JSON but is not valid JSON") from None
        else:
            out[key] = value
    return out


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


@dataclass(frozen=True)
class _Object:
    name: str  # the store's path, protocol stripped ("bucket/runs/a/events...")
    size: int
    version: str  # ETag, generation or mtime: changes whenever the object is rewritten


@dataclass
class Located:
    """Local paths for the given ones, and how to name the mirror's files back as URLs.

    Attributes:
        paths: each given path, remote ones replaced by their mirror directory (or file).
        skipped: remote objects that could not be fetched, by URL, with the reason.
        stats: what mirroring did, summed over the remote paths.
        roots: (mirror prefix, URL prefix) pairs: a mirror path starting with the first is that URL.
    """

    paths: list[str | Path]
    skipped: list[InputFile] = field(default_factory=list)
    stats: MirrorStats = field(default_factory=MirrorStats)
    roots: list[tuple[str, str]] = field(default_factory=list)

    @property
    def remote(self) -> bool:
        return bool(self.roots)

    def url(self, text: str) -> str:
        """``text`` with every mirror path in it named by its URL (identity when nothing is remote)."""
        for local, url in self.roots:
            if local in text:
                text = text.replace(local, url)
        return text

    def inputs(self, items: Sequence[InputFile]) -> list[InputFile]:
        if not self.roots:
            return list(items)
        return [InputFile(self.url(i.path), i.status, self.url(i.reason), i.run) for i in items]

    def run(self, run: Run) -> Run:
        if not self.roots:
            return run
        return replace(run, sources=tuple(self.url(s) for s in run.sources),
                       notes=tuple(Note(n.kind, self.url(n.message), n.count, n.step) for n in run.notes))


def _version(info: Mapping[str, Any]) -> str:
    for key in ("ETag", "etag", "generation", "md5Hash", "blob_id", "sha256", "LastModified", "mtime", "updated",
                "last_modified", "created"):
        if info.get(key) is not None:
            return f"{key}:{info[key]}"
    return ""


def _s3_credentials(url: str, storage_options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``s3://KEY:SECRET@bucket/x`` as ``s3://bucket/x`` with ``key``/``secret`` storage options (s3fs would
    take ``KEY:SECRET@bucket`` for the bucket's name); other protocols keep their URL: fsspec reads the
    credentials of http(s), ftp and sftp URLs itself."""
    m = re.match(r"^(s3a?://)([^@/]*(?::[^@]*)?)@(.*)$", url, re.IGNORECASE | re.DOTALL)
    if m is None or any(k in storage_options for k in ("key", "secret")):
        return url, dict(storage_options)
    user, _, password = m.group(2).partition(":")
    found = {"key": unquote(user), **({"secret": unquote(password)} if password else {})}
    return m.group(1) + m.group(3), {**storage_options, **found}


def _filesystem(url: str, storage_options: Mapping[str, Any]) -> tuple[Any, str]:
    """The fsspec filesystem for ``url`` and its root path. Every message names the URL through `shown`:
    credentials in it never reach a message."""
    protocol = _SCHEME.match(url).group(1).lower()  # type: ignore[union-attr]
    given = shown(url)
    url, storage_options = _s3_credentials(url, storage_options)
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{given}: reading from object stores needs fsspec: pip install "
                         f"'steadytrain[{_EXTRA.get(protocol, 's3')}]'") from None
    try:
        return fsspec.core.url_to_fs(url, **storage_options)
    except ImportError:
        extra = f"steadytrain[{_EXTRA[protocol]}]" if protocol in _EXTRA else _PACKAGE.get(protocol, "its fsspec package")
        raise InputError(f"{given}: reading {protocol}:// needs {_PACKAGE.get(protocol, 'an fsspec implementation')}: "
                         f"pip install '{extra}'") from None
    except ValueError as exc:
        if "protocol" in str(exc).lower():
            raise InputError(f"{given}: {protocol}:// is not a protocol fsspec knows ({short(exc, 200)})") from None
        raise InputError(f"{given}: {short(exc, 200)} (check --storage-option)") from None
    except TypeError as exc:
        raise InputError(f"{given}: a storage option was not accepted: {short(exc, 200)}") from None
    except OSError as exc:  # filesystems that connect when made (ftp://, sftp://): refused, unreachable, timed out
        raise InputError(f"{given}: cannot connect ({type(exc).__name__}: {short(exc, 200)}); check the address "
                         "and the network") from None


def _list(fs: Any, url: str, root: str) -> list[_Object]:
    """Every object under ``root``; InputError (one line) when there is none or listing fails."""
    url = shown(url)
    try:
        fs.invalidate_cache(root)  # s3fs/gcsfs keep listings: a long-lived process must see new objects
        found = fs.find(root, detail=True)
        if not found and fs.isfile(root):
            found = {root: fs.info(root)}
    except FileNotFoundError as exc:
        raise InputError(f"{url}: no such bucket or prefix ({short(exc, 200)})") from None
    except PermissionError as exc:
        raise InputError(f"{url}: access denied while listing ({short(exc, 200)}); check the credentials "
                         "(AWS_ACCESS_KEY_ID/AWS_PROFILE, --storage-option)") from None
    except Exception as exc:  # noqa: BLE001 - any listing failure (endpoint down, DNS, TLS) is one line, exit 2
        raise InputError(f"{url}: cannot list the objects ({type(exc).__name__}: {short(exc, 200)}); check the "
                         "endpoint (AWS_ENDPOINT_URL or --storage-option) and the network") from None
    if not found:
        raise InputError(f"{url}: no objects under this prefix (empty or missing); point at a prefix that holds "
                         "training logs")
    objects = []
    for name, info in sorted(found.items()):
        if info.get("type", "file") != "file":
            continue
        objects.append(_Object(name.rstrip("/"), int(info.get("size") or 0), _version(info)))
    return objects


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
        fs, root = _filesystem(url, self.storage_options)
        root = root.rstrip("/")
        protocol = _SCHEME.match(url).group(1).lower()  # type: ignore[union-attr]
        base = self.base(protocol)
        objects = _list(fs, url, root)
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
        work: list[tuple[_Object, Path, dict[str, Any] | None]] = []
        keep: set[str] = set()
        for obj in objects:
            rel = _relative(root, obj.name)
            target = (local_root / rel) if rel is not None else None
            if target is None or not str(target.resolve()).startswith(inside):
                skipped.append(InputFile(shown(f"{protocol}://{obj.name.lstrip('/')}"), "skipped",
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
                skipped.append(InputFile(shown(f"{protocol}://{obj.name.lstrip('/')}"), "skipped",
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

    def _fetch(self, fs: Any, obj: _Object, target: Path, old: dict[str, Any] | None
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
    def _edges_match(fs: Any, obj: _Object, target: Path, old_size: int) -> tuple[bytes | None, int]:
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


def _current(old: Mapping[str, Any], obj: _Object, target: Path) -> bool:
    """The mirror copy is this object, untouched since it was written."""
    try:
        st = target.stat()
    except OSError:
        return False
    return (old.get("size") == obj.size and old.get("version") == obj.version and st.st_size == obj.size
            and old.get("mtime_ns") == st.st_mtime_ns)


def _can_append(old: Mapping[str, Any], obj: _Object, target: Path) -> bool:
    """An object that only grew could be an append: worth checking edges when it is not tiny."""
    try:
        st = target.stat()
    except OSError:
        return False
    size = old.get("size")
    return (isinstance(size, int) and size >= 2 * EDGE and obj.size > size and st.st_size == size
            and old.get("mtime_ns") == st.st_mtime_ns)


def _entry(obj: _Object, target: Path) -> dict[str, Any]:
    return {"size": obj.size, "version": obj.version, "mtime_ns": target.stat().st_mtime_ns}


def _download(fs: Any, obj: _Object, target: Path) -> int:
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


def _append(fs: Any, obj: _Object, target: Path, old_size: int, first: bytes) -> int:
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


@contextmanager
def located(paths: Sequence[str | Path], cache_dir: Path | None,
            storage_options: Mapping[str, Any] | None = None) -> Iterator[Located]:
    """The local paths to read for ``paths``: remote ones mirrored (under ``cache_dir``/remote, or a temporary
    directory removed afterwards when there is no cache), ``file://`` ones as plain paths."""
    given = [local_path(p) for p in paths]
    if not any(is_remote(p) for p in given):
        yield Located(list(given))
        return
    temp = None
    if cache_dir is None:
        temp = tempfile.mkdtemp(prefix="steadytrain-remote-")
        directory = Path(temp)
    else:
        directory = cache_dir / "remote"
    try:
        mirror = Mirror(directory, storage_options)
        out = Located([])
        for p in given:
            if not is_remote(p):
                out.paths.append(p)
                continue
            url = str(p)
            local, skipped = mirror.sync(url, out.stats)
            out.paths.append(local)
            out.skipped += skipped
            # The mirror repeats the store's layout below <directory>/<protocol>/: one prefix names it all back.
            protocol = _SCHEME.match(url).group(1).lower()  # type: ignore[union-attr]
            pair = (str(mirror.base(protocol).absolute()) + os.sep, f"{protocol}://")
            if pair not in out.roots:
                out.roots.append(pair)
        names = ", ".join(f"{k}=…" for k in sorted(mirror.storage_options)) or "none"
        log.info("object store mirror: %s (storage options: %s)", out.stats, names)  # the stats object: tools read it
        yield out
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
