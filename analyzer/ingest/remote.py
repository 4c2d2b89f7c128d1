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

Here: `located`, the context the readers run in, and `Located`, which names mirror paths back by their
URLs. remote_store.py holds the URLs, filesystems, credentials and listings; remote_mirror.py the mirror
with its manifest and incremental fetch. Their public names are importable from here too.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from analyzer.ingest.remote_mirror import Mirror, MirrorStats
from analyzer.ingest.remote_store import is_remote, local_path, parse_storage_options, protocol
from analyzer.types import InputFile, Note, Run

__all__ = ["Located", "Mirror", "MirrorStats", "is_remote", "local_path", "located", "parse_storage_options"]

log = logging.getLogger(__name__)


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
            scheme = protocol(url)
            pair = (str(mirror.base(scheme).absolute()) + os.sep, f"{scheme}://")
            if pair not in out.roots:
                out.roots.append(pair)
        names = ", ".join(f"{k}=…" for k in sorted(mirror.storage_options)) or "none"
        log.info("object store mirror: %s (storage options: %s)", out.stats, names)  # the stats object: tools read it
        yield out
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
