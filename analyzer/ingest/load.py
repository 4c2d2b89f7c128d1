"""Reading discovered runs into `Run`s: readers, cache, parallelism, restart policy, roles.

Workers return plain numpy points (cheap to pickle); frames, notes and roles are built here.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import polars as pl
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from analyzer.errors import InputError, LogFormatError
from analyzer.frame import RawPoints, RestartPolicy, apply_restart_policy, nonfinite_note
from analyzer.hparams import lr_from_hparams, lr_from_name, read_side_file
from analyzer.ingest import csv_logs, hf_trainer, jsonl, mlflow
from analyzer.ingest.cache import DecodeCache, default_cache_dir
from analyzer.ingest.discover import RunSource, discover
from analyzer.ingest.run_cache import RunCache, run_key
from analyzer.ingest.tensorboard import read_event_file
from analyzer.roles import assign_roles
from analyzer.types import InputFile, Note, Run

log = logging.getLogger(__name__)

#: Below this many bytes in all, worker start-up costs more than it saves.
_PARALLEL_MIN_BYTES = 48 << 20


@dataclass(frozen=True)
class LoadOptions:
    """How to read logs.

    Attributes:
        restarts: "latest" keeps the latest attempt after a step goes back (TensorBoard's purge);
            "keep_all" keeps every point.
        verify_all_crcs: check every event record's data CRC, not only those that decode oddly.
        roles: user overrides, role -> tag.
        cache_dir: where decoded event files are cached; None disables the cache.
        workers: processes for reading; 1 = in this process (the API default: spawned workers
            re-import the caller's __main__), 0 = one per core when the logs are large (the CLI).
        progress: show a progress bar on stderr.
    """

    restarts: RestartPolicy = "latest"
    verify_all_crcs: bool = False
    roles: Mapping[str, str] = field(default_factory=dict)
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    workers: int = 1
    progress: bool = False


@dataclass
class SourceData:
    points: RawPoints
    notes: list[Note]
    hparams: dict[str, Any]
    read: list[InputFile]
    skipped: list[InputFile]


def _read_source(src: RunSource, options: LoadOptions, decode_cache: DecodeCache | None = None) -> SourceData:
    notes: list[Note] = []
    hparams: dict[str, Any] = {}
    read: list[InputFile] = []
    skipped: list[InputFile] = []
    parts: list[RawPoints] = []
    if src.reader == "tensorboard":
        cache = decode_cache or (DecodeCache(options.cache_dir) if options.cache_dir else None)
        for f in src.files:
            try:
                pts, more, hp, skipped_values = _read_events_cached(f, options, cache)
            except OSError as exc:
                skipped.append(InputFile(str(f), "skipped", f"cannot be read: {exc.strerror}", src.id))
                continue
            if not len(pts) and not hp and any(n.kind == "corrupt" for n in more):
                skipped.append(InputFile(str(f), "skipped", "no valid TensorBoard record: " + more[0].message, src.id))
                continue
            parts.append(pts)
            notes += more
            hparams.update(hp)
            read.append(InputFile(str(f), "read", "tensorboard events", src.id))
            if skipped_values:
                notes.append(Note("non_scalar", f"{f.name}: {skipped_values} non-scalar summary value(s) "
                                  "(histograms, images, text, ...) not read: this tool reads scalars",
                                  count=skipped_values))
        for f in src.side_files:
            if "tfevents" in f.name:
                try:
                    hp = read_event_file(f).hparams
                except OSError:
                    hp = {}
                hparams.update(hp)
                read.append(InputFile(str(f), "read", "tensorboard hparams (add_hparams)", src.id))
    elif src.reader == "csv":
        shape = src.detail
        try:
            pts, notes = csv_logs.read_csv_log(src.files[0], shape)
            parts.append(pts)
            read.append(InputFile(str(src.files[0]), "read", f"CSV ({shape.kind})", src.id))
        except (LogFormatError, OSError) as exc:
            skipped.append(InputFile(str(src.files[0]), "skipped", f"CSV: {exc}", src.id))
    elif src.reader == "tb_export":
        pts, notes = csv_logs.read_tb_exports(list(src.files))
        parts.append(pts)
        read += [InputFile(str(f), "read", "TensorBoard-exported CSV (one tag)", src.id) for f in src.files]
    elif src.reader == "hf":
        pts, notes, info = hf_trainer.read_trainer_state(src.files[0], src.detail)
        parts.append(pts)
        hparams.update(info)
        read.append(InputFile(str(src.files[0]), "read", "HF trainer_state.json", src.id))
        if src.merged:
            notes.append(Note("merged", f"{len(src.merged)} checkpoint copy(ies) of trainer_state.json merged into "
                              f"this run; the most complete one ({src.files[0].parent.name}) was read",
                              count=len(src.merged)))
    elif src.reader == "jsonl":
        pts, notes = jsonl.read_jsonl(src.files[0], src.detail)
        parts.append(pts)
        read.append(InputFile(str(src.files[0]), "read", "JSONL log", src.id))
    elif src.reader == "mlflow":
        pts, notes, params = mlflow.read_mlflow_run(src.directory, list(src.files))
        parts.append(pts)
        hparams.update(params)
        read += [InputFile(str(f), "read", "MLflow metric", src.id) for f in src.files]
    else:  # pragma: no cover - discovery only produces the readers above
        raise AssertionError(src.reader)
    for f, why in src.merged:
        read.append(InputFile(str(f), "read", why, src.id))
    for f in src.side_files:
        if "tfevents" in f.name:
            continue
        values = read_side_file(f)
        hparams.update(values)
        read.append(InputFile(str(f), "read", "hparams" if values else "hparams (empty or unreadable)", src.id))
    return SourceData(RawPoints.concat(parts), notes, hparams, read, skipped)


def _read_events_cached(path: Path, options: LoadOptions, cache: DecodeCache | None
                        ) -> tuple[RawPoints, list[Note], dict[str, Any], int]:
    cached = cache.load(path) if cache else None
    if cached is not None:
        meta, old = cached
        if meta["unchanged"] and meta.get("verify_all") >= options.verify_all_crcs:
            return old, [Note(**n) for n in meta["notes"]], meta.get("hparams", {}), meta.get("skipped_values", 0)
        content = read_event_file(path, verify_all_crcs=options.verify_all_crcs, begin=meta["end_offset"])
        points = RawPoints.concat([old, content.points])
        notes = [Note(**n) for n in meta["notes"] if n["kind"] != "truncated"] + content.notes
        hparams = {**meta.get("hparams", {}), **content.hparams}
        skipped = meta.get("skipped_values", 0) + content.skipped_values
    else:
        content = read_event_file(path, verify_all_crcs=options.verify_all_crcs)
        points, notes, hparams = content.points, content.notes, content.hparams
        skipped = content.skipped_values
    if cache:
        cache.store(path, points, end_offset=content.end_offset, notes=notes,
                    extra={"hparams": _json_safe(hparams), "verify_all": options.verify_all_crcs,
                           "skipped_values": skipped})
    return points, notes, hparams, skipped


def _json_safe(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for k, v in values.items()}


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
        cache.store(key, frame, notes=notes, hparams=hparams, counts=counts, read=data.read, skipped=data.skipped)
    return _finish_run(src, frame, notes, hparams, counts, options)


def _finish_run(src: RunSource, frame: pl.DataFrame, notes: list[Note], hparams: dict[str, Any],
                counts: dict[str, int], options: LoadOptions) -> Run:
    notes = list(notes)
    for role, tag in options.roles.items():
        if counts and tag not in counts:
            notes.append(Note("role_override", f"--role {role}={tag}: no such tag in this run; picked by name instead"))
    roles = assign_roles(counts, options.roles)
    return Run(id=src.id, format=src.format, sources=tuple(str(f) for f in src.files), points=frame,
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
        # spawn, not fork: polars' thread pool does not survive a fork.
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


def load_runs(paths: Sequence[str | Path], options: LoadOptions | None = None) -> tuple[list[Run], list[InputFile]]:
    """Every run under ``paths`` and the accounting of every file met.

    Raises InputError (one line, what to do) when a path does not exist or nothing could be read.
    """
    options = options or LoadOptions()
    found = discover(paths)
    inputs: list[InputFile] = list(found.skipped)
    runs: list[Run] = []
    cache = RunCache(options.cache_dir) if options.cache_dir else None
    keys: dict[str, str | None] = {}
    to_read: list[RunSource] = []
    for src in found.sources:
        key = run_key([*src.files, *src.side_files, *(f for f, _ in src.merged)], src.id, src.reader,
                      (options.restarts, options.verify_all_crcs)) if cache else None
        hit = cache.load(key) if cache is not None and key is not None else None
        if hit is None:
            keys[src.id] = key
            to_read.append(src)
            continue
        frame, meta = hit  # an unchanged run: nothing to decode, sort or purge
        inputs += meta["read"] + meta["skipped"]
        runs.append(_finish_run(src, frame, meta["notes"], meta["hparams"], meta["counts"], options))
    stream = _iter_read(to_read, options)
    if options.progress and to_read:
        from tqdm import tqdm
        stream = tqdm(stream, total=len(to_read), desc="reading runs", unit="run", leave=False)
    for src, data in stream:
        inputs += data.read + data.skipped
        if not data.read:
            continue
        runs.append(_build_run(src, data, options, cache, keys.get(src.id)))
    if not runs:
        where = ", ".join(str(p) for p in paths)
        if found.files_seen == 0:
            raise InputError(f"{where}: no files found (empty directory?); point at a directory of training logs")
        reasons = sorted({i.reason for i in inputs if i.status == "skipped"})[:3]
        raise InputError(f"{where}: no readable training logs among {found.files_seen} file(s) "
                         f"(e.g. {'; '.join(reasons)}); expected TensorBoard event files, metrics.csv, "
                         "trainer_state.json, JSONL or an MLflow mlruns/ store")
    runs.sort(key=lambda r: r.id)
    inputs.sort(key=lambda i: i.path)
    return runs, inputs
