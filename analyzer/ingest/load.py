"""Reading discovered runs into `Run`s: readers, cache, parallelism, restart policy, roles.

Workers return plain numpy points (cheap to pickle); frames, notes and roles are built here.
Every file is read in isolation: whatever goes wrong inside one file (a malformed line, a
step that does not fit an int64, a parser's RecursionError, an I/O error) makes that file a
skipped input with the reason, and every other file and run is still read.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import polars as pl

from analyzer.display import shown
from analyzer.errors import InputError
from analyzer.frame import RawPoints, RestartPolicy, apply_restart_policy, nonfinite_note
from analyzer.hparams import lr_from_hparams, lr_from_name, read_side_file
from analyzer.ingest import identity, lineage, registry, remote
from analyzer.ingest.cache import DecodeCache, default_cache_dir
from analyzer.ingest.discover import RunSource, discover
from analyzer.ingest.skipped import short, unreadable
from analyzer.ingest.run_cache import RunCache, run_key
from analyzer.ingest.tensorboard import read_event_file
from analyzer.roles import assign_roles
from analyzer.types import InputFile, Note, Run

log = logging.getLogger(__name__)

#: Below this many bytes in all, worker start-up costs more than it saves.
_PARALLEL_MIN_BYTES = 48 << 20

T = TypeVar("T")

#: Readers whose file is a run of its own (not a run directory): such runs may be copies or parts of another.
_PER_FILE = frozenset(r.name for r in registry.LOOSE_FILE_READERS if r.file_is_run)


@dataclass(frozen=True)
class LoadOptions:
    """How to read logs.

    Attributes:
        restarts: "latest" keeps the latest attempt after a step goes back (TensorBoard's purge);
            "keep_all" keeps every point.
        verify_crc: check every event record's data CRC (the default; a record that fails is dropped
            and counted); False checks only records that decode oddly.
        roles: user overrides, role -> tag.
        cache_dir: where decoded event files are cached; None disables the cache.
        workers: processes for reading; 1 = in this process (the API default: spawned workers
            re-import the caller's __main__), 0 = one per core when the logs are large (the CLI).
        progress: show a progress bar on stderr.
        storage_options: options for the object store of remote paths (fsspec's storage_options, e.g.
            endpoint_url, anon); credentials otherwise come from the store's own environment.
    """

    restarts: RestartPolicy = "latest"
    verify_crc: bool = True
    roles: Mapping[str, str] = field(default_factory=dict)
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    workers: int = 1
    progress: bool = False
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # may hold secrets


@dataclass
class SourceData:
    """What reading one run's files produced, before it becomes a `Run`."""

    points: RawPoints
    notes: list[Note]
    hparams: dict[str, Any]
    read: list[InputFile]
    skipped: list[InputFile]
    data_files: list[str] = field(default_factory=list)  # log files whose points went in (not side files)


def _read_source(src: RunSource, options: LoadOptions, decode_cache: DecodeCache | None = None) -> SourceData:
    """Read one run's files, each in isolation; never raises for what is in the files."""
    out = SourceData(RawPoints.empty(), [], {}, [], [])
    try:
        _read_into(out, src, options, decode_cache)
    except Exception as exc:  # noqa: BLE001 - a bug outside any one file: every file of the run is skipped
        done = {i.path for i in out.read + out.skipped}
        out = SourceData(RawPoints.empty(), [], {}, [], [unreadable(f, exc, src.id) for f in src.files
                                                         if str(f) not in done] + out.skipped)
    return out


def _read_into(out: SourceData, src: RunSource, options: LoadOptions, decode_cache: DecodeCache | None) -> None:
    parts: list[RawPoints] = []

    def attempt(path: Path, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - isolation: one file's failure skips that file only
            out.skipped.append(unreadable(path, exc, src.id))
            return None

    def took(path: Path, reason: str, pts: RawPoints, notes: list[Note]) -> None:
        parts.append(pts)
        out.notes.extend(n if n.source is not None else replace(n, source=path.name) for n in notes)
        out.read.append(InputFile(str(path), "read", reason, src.id))
        out.data_files.append(str(path))

    reader = registry.BY_NAME[src.reader]
    ctx = registry.ReadContext(src.detail, src.directory, options.verify_crc,
                               decode_cache or (DecodeCache(options.cache_dir) if options.cache_dir else None))
    for f in src.files:
        if isinstance(src.detail, registry.PerFile):
            ctx = replace(ctx, detail=src.detail.by_path[f])
        got = attempt(f, lambda f=f, ctx=ctx: reader.read(f, ctx))  # type: ignore[misc]
        if got is not None:
            took(f, reader.what, got.points, list(got.notes))
            out.hparams.update(got.hparams)
    if reader.run_hparams is not None:
        try:
            out.hparams.update(reader.run_hparams(src.directory))
        except Exception as exc:  # noqa: BLE001 - settings are a nicety; the metrics still count
            log.debug("reading the settings of %s failed", src.directory, exc_info=exc)
            out.notes.append(Note("params_unreadable", f"the run's settings could not be read ({type(exc).__name__}: "
                                  f"{short(exc)}); no hyperparameters from them"))
    if out.data_files:  # what discovery decided about the run's files (checkpoint copies of a trainer state)
        out.notes.extend(src.notes)
    has_data = bool(out.data_files)
    for f, why in src.merged:
        if has_data:
            out.read.append(InputFile(str(f), "read", why, src.id))
        else:
            out.skipped.append(InputFile(str(f), "skipped", f"{why}; not used: the run's log could not be read",
                                         src.id))
    for f in src.side_files:
        if not has_data:
            out.skipped.append(InputFile(str(f), "skipped", "configuration of a run whose log could not be read",
                                         src.id))
            continue
        if "tfevents" in f.name:
            content = attempt(f, lambda f=f: read_event_file(f, verify_crc=options.verify_crc))  # type: ignore[misc]
            if content is not None:
                out.hparams.update(content.hparams)
                out.read.append(InputFile(str(f), "read", "tensorboard hparams (add_hparams)", src.id))
            continue
        values = attempt(f, lambda f=f: read_side_file(f))  # type: ignore[misc]
        if values is not None:
            out.hparams.update(values)
            out.read.append(InputFile(str(f), "read", "hparams" if values else "hparams (empty)",
                                      src.id))
    out.points = RawPoints.concat(parts)


def _build_run(src: RunSource, data: SourceData, options: LoadOptions, cache: RunCache | None = None,
               key: str | None = None) -> Run:
    frame, restart_notes = apply_restart_policy(data.points, options.restarts)
    notes = list(data.notes) + restart_notes
    nf = nonfinite_note(data.points)
    if nf is not None:
        notes.append(nf)
    hparams = dict(data.hparams)
    if lr_from_hparams(hparams) is None:
        lr = lr_from_name(src.id)
        if lr is not None:
            hparams["lr (from run name)"] = lr
    counts = dict(zip(data.points.tags, np.bincount(data.points.tag_codes, minlength=len(data.points.tags)).tolist()))
    if cache is not None and key is not None:
        cache.store(key, frame, notes=notes, hparams=hparams, counts=counts, read=data.read, skipped=data.skipped,
                    sources=data.data_files)
    return _finish_run(src, frame, notes, hparams, counts, options, data.data_files)


def _finish_run(src: RunSource, frame: pl.DataFrame, notes: list[Note], hparams: dict[str, Any],
                counts: dict[str, int], options: LoadOptions, sources: list[str]) -> Run:
    notes = list(notes)
    for role, tag in options.roles.items():
        if counts and tag not in counts:
            notes.append(Note("role_override", f"--role {role}={tag}: no such tag in this run; picked by name instead"))
    roles = assign_roles(counts, options.roles)
    return Run(id=src.id, format=src.format, sources=tuple(sources), points=frame,
               hparams=hparams, notes=tuple(notes), roles=roles)


def _bytes_to_decode(src: RunSource, cache: DecodeCache | None) -> int:
    """Bytes that reading ``src`` must decode (a current cache entry costs next to nothing)."""
    total = 0
    for f in src.files:
        try:
            if not (cache is not None and src.reader == "tensorboard" and cache.is_current(f)):
                total += f.stat().st_size
        except OSError:
            pass
    return total


def _iter_read(sources: list[RunSource], options: LoadOptions) -> Iterator[tuple[RunSource, SourceData]]:
    cache = DecodeCache(options.cache_dir) if options.cache_dir else None
    total = sum(_bytes_to_decode(s, cache) for s in sources)
    workers = options.workers or (os.cpu_count() or 1)
    if workers > 1 and len(sources) > 1 and total >= _PARALLEL_MIN_BYTES:
        # spawn, not fork: polars' thread pool does not survive a fork. Imported here: 25 ms a process that reads
        # one file (the usual `inspect`) never needs.
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool
        from multiprocessing import get_context
        try:
            with ProcessPoolExecutor(max_workers=min(workers, len(sources)), mp_context=get_context("spawn")) as pool:
                results = list(pool.map(_read_source, sources, [options] * len(sources), chunksize=4))
        except BrokenProcessPool as exc:  # e.g. a __main__ that cannot be re-imported (a script on stdin)
            log.warning("parallel reading unavailable (%s); reading sequentially", exc)
        else:
            yield from zip(sources, results)
            return
    for src in sources:
        yield src, _read_source(src, options, cache)


def _log_inputs(inputs: Sequence[InputFile], name: Callable[[str], str] = str) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    for i in inputs:
        if i.status == "read":
            log.info("read %s (%s) -> run %s", name(i.path), i.reason, i.run)
        else:
            log.info("skipped %s: %s", name(i.path), name(i.reason))


def read_sources(sources: Sequence[RunSource], options: LoadOptions,
                 name: Callable[[str], str] = str) -> tuple[list[Run], list[InputFile]]:
    """The runs of discovered ``sources`` (run cache, readers, run identity) and the accounting of their files.

    Whether logs of one folder are one run is decided among the sources read together, so a caller that
    splits the sources (the Ray executor) keeps each directory's sources in one call. ``name`` maps a path
    to what the log shows (a mirrored object's URL).
    """
    inputs: list[InputFile] = []
    runs: list[Run] = []
    cache = RunCache(options.cache_dir) if options.cache_dir else None
    keys: dict[str, str | None] = {}
    to_read: list[RunSource] = []
    for src in sources:
        key = run_key([*src.files, *src.side_files, *(f for f, _ in src.merged)], src.id, src.reader,
                      (options.restarts, options.verify_crc)) if cache else None
        hit = cache.load(key) if cache is not None and key is not None else None
        if hit is None:
            keys[src.id] = key
            to_read.append(src)
            continue
        frame, meta = hit  # an unchanged run: nothing to decode, sort or purge
        log.info("run %s: unchanged since the last read, taken from the run cache", src.id)
        inputs += meta["read"] + meta["skipped"]
        _log_inputs(meta["read"] + meta["skipped"], name)
        runs.append(_finish_run(src, frame, meta["notes"], meta["hparams"], meta["counts"], options, meta["sources"]))
    stream = _iter_read(to_read, options)
    if options.progress and to_read:
        from tqdm import tqdm
        stream = tqdm(stream, total=len(to_read), desc="reading runs", unit="run", leave=False)
    for src, data in stream:
        if data.data_files:
            try:
                runs.append(_build_run(src, data, options, cache, keys.get(src.id)))
            except Exception as exc:  # noqa: BLE001 - the run's points could not be assembled: skip its files
                data = SourceData(data.points, data.notes, data.hparams, [],
                                  [unreadable(i.path, exc, src.id) for i in data.read] + data.skipped)
        inputs += data.read + data.skipped
        _log_inputs(data.read + data.skipped, name)
    home = {s.id: s for s in sources}
    members = [identity.Member(r, home[r.id].directory.as_posix(), home[r.id].reader in _PER_FILE,
                               home[r.id].lineage) for r in runs]
    runs = identity.resolve(members, inputs, options.roles)  # one folder's logs
    runs = lineage.resolve(members, runs, inputs, options.restarts, options.roles)  # across folders
    return runs, inputs


def no_runs_error(paths: Sequence[str | Path], files_seen: int, inputs: Sequence[InputFile]) -> InputError:
    """The one-line error when nothing under ``paths`` could be read."""
    where = ", ".join(shown(p) for p in paths)
    if files_seen == 0:
        passed = [i for i in inputs if i.status == "skipped"]
        if passed:  # entries were met, none of them a regular file: say what they were
            return InputError(f"{where}: no regular files to read: {len(passed)} "
                              f"{'entry' if len(passed) == 1 else 'entries'} skipped (e.g. {passed[0].path}: "
                              f"{passed[0].reason})")
        return InputError(f"{where}: no files found (empty directory?); point at a directory of training logs")
    reasons = sorted({i.reason for i in inputs if i.status == "skipped"})[:3]
    return InputError(f"{where}: no readable training logs among {files_seen} file(s) "
                      f"(e.g. {'; '.join(reasons)}); steadytrain reads {registry.formats_in_words()}")


def load_runs(paths: Sequence[str | Path], options: LoadOptions | None = None) -> tuple[list[Run], list[InputFile]]:
    """Every run under ``paths`` and the accounting of every file met.

    ``paths`` may name object stores (``s3://bucket/runs``, any fsspec protocol): they are mirrored into
    the cache directory first (analyzer.ingest.remote) and named by their URLs in what comes back.
    Raises InputError (one line, what to do) when a path does not exist or nothing could be read.
    A file that cannot be read is never an error here: it is a skipped input with its reason.
    """
    options = options or LoadOptions()
    with remote.located(paths, options.cache_dir, options.storage_options) as where:
        found = discover(where.paths)
        _log_inputs(found.skipped + where.skipped, where.url)
        runs, inputs = read_sources(found.sources, options, where.url)
        inputs = where.inputs(found.skipped + inputs) + where.skipped
        runs = [where.run(r) for r in runs]
    if not runs:
        raise no_runs_error(paths, found.files_seen + len(where.skipped), inputs)
    runs.sort(key=lambda r: r.id)
    inputs.sort(key=lambda i: i.path)
    return runs, inputs
