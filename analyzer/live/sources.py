"""What `steadytrain watch` polls: local paths as they are, object-store prefixes through a mirror.

A remote path (``s3://``, ``gs://``, ``hf://``, any fsspec protocol) is mirrored into the cache directory
before each poll by the mirror `steadytrain report` uses (`analyzer.ingest.remote.Mirror`): an object that
did not change keeps its mirror file untouched, one that grew (a live run's event file or JSONL) gets only
its new bytes appended. So the poll that follows sees exactly what a local watch would: unchanged files,
or files that grew at their end, read from where the last read stopped. Files are named back by their
URLs in the report.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from analyzer.errors import InputError
from analyzer.ingest.remote import Located, Mirror, MirrorStats, is_remote, local_path

log = logging.getLogger(__name__)


class WatchedPaths:
    """The watched paths; remote ones mirrored under ``cache_dir``/remote (a temporary directory without a
    cache, removed by `close`). Made with a first mirroring: a missing bucket or prefix is an InputError now."""

    def __init__(self, paths: Sequence[str | Path], cache_dir: Path | None,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        given = [local_path(p) for p in paths]
        self.given = [str(p) for p in given]
        self._remote = [str(p) for p in given if is_remote(p)]
        self._temp: str | None = None
        self._mirror: Mirror | None = None
        self.where = Located([Path(p) for p in given if not is_remote(p)])
        self.last = MirrorStats()
        if not self._remote:
            self.paths: list[Path] = [Path(p) for p in given]
            return
        if cache_dir is None:
            self._temp = tempfile.mkdtemp(prefix="steadytrain-watch-")
            directory = Path(self._temp)
        else:
            directory = cache_dir / "remote"
        self._mirror = Mirror(directory, storage_options)
        self._local: dict[str, Path] = {}
        try:
            self.sync(first=True)
        except BaseException:
            self.close()
            raise
        self.paths = [self._local[str(p)] if is_remote(p) else Path(p) for p in given]

    @property
    def remote(self) -> bool:
        return bool(self._remote)

    def sync(self, *, first: bool = False) -> float:
        """Mirror every remote path (seconds spent). After the first mirroring, a store that cannot be listed
        (endpoint down, credentials expired) is a warning and the last mirror stays as it was."""
        if self._mirror is None:
            return 0.0
        started = time.perf_counter()
        stats = MirrorStats()
        skipped = []
        for url in self._remote:
            try:
                local, lost = self._mirror.sync(url, stats)
            except InputError as exc:
                if first:
                    raise
                log.warning("watch: %s; the last copy is watched until it can be listed again", exc)
                continue
            self._local[url] = local
            skipped += lost
            protocol = url.split("://", 1)[0].lower()
            pair = (str(self._mirror.base(protocol).absolute()) + os.sep, f"{protocol}://")
            if pair not in self.where.roots:
                self.where.roots.append(pair)
        self.where.skipped = skipped
        self.last = stats
        log.info("watch: object store mirror: %s", stats)
        return time.perf_counter() - started

    def close(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None
