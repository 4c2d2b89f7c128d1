"""``--executor ray``: runs read and judged as Ray tasks; sweeps and the report built on the driver.

The driver discovers the runs (after mirroring remote paths, analyzer.ingest.remote) and cuts them into
batches: a directory's runs always in one batch (whether logs of one folder are one run is decided among
them, analyzer.ingest.identity), with their sibling and nested run folders when these fit in one batch
(restarts and copies across folders, analyzer.ingest.lineage.families), and enough runs per batch that a tiny run does not drown in per-task
overhead. Each batch is one Ray task running the local path's own code (`read_sources`, `diagnose_run`),
and only what the report needs comes back: the Diagnosis with a `ReportRun` in place of the run (its role
series thinned to a few hundred points by min/max buckets, so every spike survives, with the run's true
point count and step range) and the run's `SweepFacts`. The driver's memory grows with the report, not
with the points read.

The runs whose full figures the HTML report draws (``figure_runs``, decided by the caller, who knows the
report's rules) come back whole in a second round of tasks (their role series only, from the run cache the
first round filled), so their figures are the ones the local path draws. The JSON is the local path's.

Every path given must be readable on every node: a shared filesystem, or one machine (remote paths are
mirrored on the driver, under --cache-dir).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, Sequence

import numpy as np

from analyzer.config import AnalysisConfig
from analyzer.errors import ConfigError
from analyzer.frame import build_frame
from analyzer.ingest import lineage, remote
from analyzer.ingest.discover import RunSource, discover
from analyzer.ingest.load import LoadOptions, no_runs_error, read_sources
from analyzer.ingest.load import _log_inputs as log_inputs
from analyzer.engine import diagnose_run, make_report
from analyzer.sweep import SweepFacts, find_sweeps, sweep_facts
from analyzer.types import ROLE_NAMES, Diagnosis, InputFile, Report, Run, Series, SweepDiagnosis

log = logging.getLogger(__name__)

#: Points kept per role series of a run that comes back without its full figures: the loss roles feed the
#: report's sparkline (120 buckets), the others only their extremes (a probe spec's LR is the largest).
SUMMARY_POINTS = {"train_loss": 240, "eval_loss": 240, "grad_norm": 64, "lr": 64}
#: A batch holds at most this many runs, and at most this many bytes of logs (a directory may exceed both).
MAX_BATCH_RUNS = 256
MAX_BATCH_BYTES = 64 << 20
#: Batches per CPU of the cluster: enough for the slow batches not to leave CPUs idle at the end.
BATCHES_PER_CPU = 4

FigureRuns = Callable[[Sequence[Diagnosis], Sequence[SweepDiagnosis]], Collection[str]]


@dataclass(frozen=True, eq=False)
class ReportRun(Run):
    """A run as a Ray task sends it back: its role series only (thinned, or whole for a run whose full
    figures are drawn), with the point count and step range of everything that was read.

    Attributes:
        total_points: points of the run as read (every tag).
        full_step_range: (first, last) step of the run as read, None when it has no point.
    """

    total_points: int = 0
    full_step_range: tuple[int, int] | None = None

    @property
    def n_points(self) -> int:
        return self.total_points

    def step_range(self) -> tuple[int, int] | None:
        return self.full_step_range


def _envelope(values: np.ndarray, budget: int) -> np.ndarray:
    """Sorted indices of at most ~``budget`` finite points (each bucket's min and max, the first and the last)
    and the two ends of every stretch of non-finite points (NaN/inf are the divergence signal)."""
    n = values.size
    finite = np.isfinite(values)
    idx = np.flatnonzero(finite)
    if idx.size > budget:
        buckets = max(budget // 2, 1)
        size = -(-idx.size // buckets)
        v = values[idx]
        pad = buckets * size - v.size
        hi = np.concatenate([v, np.full(pad, -np.inf)]).reshape(buckets, size).argmax(axis=1)
        lo = np.concatenate([v, np.full(pad, np.inf)]).reshape(buckets, size).argmin(axis=1)
        base = np.arange(buckets) * size
        at = np.concatenate([base + hi, base + lo, [0, idx.size - 1]])
        idx = idx[at[at < idx.size]]
    bad = ~finite
    if bad.any():
        change = np.flatnonzero(np.diff(bad.astype(np.int8))) + 1
        bounds = np.concatenate([[0], change, [n]])
        starts = [a for a, b in zip(bounds[:-1], bounds[1:]) if bad[a]]
        ends = [b - 1 for a, b in zip(bounds[:-1], bounds[1:]) if bad[a]]
        stretch = np.unique(np.asarray(starts + ends, dtype=np.int64))
        if stretch.size > budget:
            stretch = stretch[np.linspace(0, stretch.size - 1, budget).astype(np.int64)]
        idx = np.concatenate([idx, stretch])
    return np.unique(idx)


def report_run(run: Run, *, whole: bool = False, series: Mapping[str, Series | None] | None = None) -> ReportRun:
    """``run`` as the report needs it: its role series only (steps and values; wall_time is not kept), thinned
    unless ``whole``. ``series``: the role series already cut from the run (a RunContext's), role -> Series."""
    budget: dict[str, int] = {}  # tag -> points kept (a tag playing two roles is taken once, at the larger)
    cut: dict[str, Series] = {}
    for role in ROLE_NAMES:
        got = series.get(role) if series is not None else run.role_series(role)
        if got is None:
            continue
        cut[got.tag] = got
        budget[got.tag] = max(budget.get(got.tag, 0), SUMMARY_POINTS[role])
    tags = sorted(cut)
    steps, values, names = [], [], []
    for tag in tags:
        s = cut[tag]
        keep = slice(None) if whole else _envelope(s.values, budget[tag])
        steps.append(s.steps[keep])
        values.append(s.values[keep])
        names.append(np.full(len(steps[-1]), tags.index(tag), dtype=np.uint32))
    codes = np.concatenate(names) if names else np.zeros(0, dtype=np.uint32)
    points = build_frame(tuple(tags), codes, np.concatenate(steps).astype(np.int64) if steps else np.zeros(0, np.int64),
                         np.full(codes.size, np.nan),
                         np.concatenate(values).astype(np.float64) if values else np.zeros(0))
    return ReportRun(id=run.id, format=run.format, sources=run.sources, points=points, hparams=run.hparams,
                     notes=run.notes, roles=run.roles, total_points=run.n_points, full_step_range=run.step_range())


# ---- what one Ray task does -------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchResult:
    """What one task sends back: each run's diagnosis (with a `ReportRun`) and sweep facts, the batch's inputs."""

    judged: tuple[tuple[Diagnosis, SweepFacts | None], ...]
    inputs: tuple[InputFile, ...]
    seconds: float  # wall time of the task's work
    points: int
    cpu_seconds: float = 0.0  # CPU time of the worker process meanwhile (all its threads)


def judge_batch(sources: Sequence[RunSource], options: LoadOptions, config: AnalysisConfig) -> BatchResult:
    """Read and judge one batch of runs, as the local path does; keep only what the report needs."""
    started, cpu = time.perf_counter(), time.process_time()
    runs, inputs = read_sources(sources, options)
    judged = []
    points = 0
    for run in runs:
        d, ctx = diagnose_run(run, config)
        points += run.n_points
        cut = None if ctx is None else {"train_loss": ctx.loss, "eval_loss": ctx.eval_loss, "grad_norm": ctx.grad,
                                        "lr": ctx.lr}
        judged.append((replace(d, run=report_run(run, series=cut)), sweep_facts(ctx) if ctx is not None else None))
    return BatchResult(tuple(judged), tuple(inputs), time.perf_counter() - started, points,
                       time.process_time() - cpu)


def warm_up() -> None:
    """Nothing: a task that makes a worker start and import the analyzer while the driver lists and discovers."""


def whole_runs(sources: Sequence[RunSource], options: LoadOptions, wanted: frozenset[str]) -> list[ReportRun]:
    """The role series of the ``wanted`` runs of a batch, every point (for the report's full figures)."""
    runs, _ = read_sources(sources, options)
    return [report_run(r, whole=True) for r in runs if r.id in wanted]


# ---- the driver -------------------------------------------------------------------------------------------

def _size(src: RunSource) -> int:
    total = 0
    for f in (*src.files, *src.side_files):
        try:
            total += os.stat(f).st_size
        except OSError:
            pass
    return total


def plan_batches(sources: Sequence[RunSource], cpus: int, *, max_runs: int = MAX_BATCH_RUNS,
                 max_bytes: int = MAX_BATCH_BYTES) -> list[list[RunSource]]:
    """Batches of whole directories, about ``BATCHES_PER_CPU`` per CPU, none over ``max_runs`` runs or
    ``max_bytes`` bytes unless one directory alone is."""
    target = min(max_runs, max(1, math.ceil(len(sources) / max(1, BATCHES_PER_CPU * cpus))))
    family_of = lineage.families(s.directory.as_posix() for s in sources)
    families: dict[str, list[RunSource]] = {}
    for src in sources:
        families.setdefault(family_of[src.directory.as_posix().rstrip("/") or "/"], []).append(src)
    groups: list[list[RunSource]] = []
    for family in families.values():
        if len(family) <= target and sum(_size(s) for s in family) <= max_bytes:
            groups.append(family)  # runs that may be one training (restarts, nested copies) are read together
            continue
        by_dir: dict[str, list[RunSource]] = {}  # too many for one batch (a sweep): its directories in name order
        for src in sorted(family, key=lambda s: str(s.directory)):
            by_dir.setdefault(str(src.directory), []).append(src)
        groups.extend(by_dir.values())
    batches: list[list[RunSource]] = []
    current: list[RunSource] = []
    current_bytes = 0
    for group in groups:
        size = sum(_size(s) for s in group)
        if current and (len(current) + len(group) > target or current_bytes + size > max_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.extend(group)
        current_bytes += size
    if current:
        batches.append(current)
    return batches


#: How long a Ray cluster address may take to accept a connection before it counts as unreachable: Ray's own
#: client retries an unreachable head for many minutes, which in CI looks like a hang.
RAY_CONNECT_TIMEOUT_S = 10.0
_RAY_ADDRESS = re.compile(r"^(?P<client>ray://)?(?P<host>\[[^\]]+\]|[^:/\[\]]+)(?::(?P<port>\d+))?/?$")


def unreachable_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> str | None:
    """Why nothing accepts a connection at ``address`` (``host:port`` or ``ray://host:port``; Ray's default ports
    without one) within ``timeout`` seconds, or None when something does or the address names no host
    (``auto``, ``local``: Ray finds the cluster itself and fails fast when there is none)."""
    m = _RAY_ADDRESS.match(address.strip())
    if m is None or m.group("host") in ("auto", "local"):
        return None
    host = m.group("host").strip("[]")
    port = int(m.group("port") or (10001 if m.group("client") else 6379))
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.timeout:
        return f"nothing answered at {host}:{port} within {timeout:g} s"
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


def connect_ray(address: str | None) -> tuple[Any, bool]:
    """The ray module, initialised (connecting to ``address``, or a local instance); whether we started it.
    An address where nothing answers is a one-line ConfigError within `RAY_CONNECT_TIMEOUT_S`."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("--executor ray needs Ray: pip install 'steadytrain[ray]'")
    already = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    why = unreachable_ray_address(address) if address and not already else None
    if why is not None:  # before importing Ray (seconds): the answer is the same
        raise ConfigError(f"--address {address}: no Ray cluster there ({why})")
    import ray

    if ray.is_initialized():
        return ray, False
    try:
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    except ConnectionError as exc:
        raise ConfigError(f"--address {address}: no Ray cluster there ({' '.join(str(exc).split())[:160]})") from None
    return ray, True


def _as_completed(ray: Any, refs: list[Any]) -> Iterator[tuple[Any, Any]]:
    """(ref, result) as tasks finish, each result fetched once and then dropped by the caller; a task that
    failed (its worker died, ran out of memory) gives its exception as the result."""
    waiting = list(refs)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=0.2)
        for ref in done:
            try:
                yield ref, ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - one failed batch must not stop the others
                yield ref, exc


def _failed_batch(batch: Sequence[RunSource], exc: BaseException) -> list[InputFile]:
    """Every file of a batch whose task failed, as skipped inputs saying so (the other batches still count)."""
    log.debug("a Ray task failed", exc_info=exc)
    text = " ".join(str(exc).split())
    reason = (f"the Ray task reading it failed ({type(exc).__name__}: {text[:160]}); the other runs were read; "
              "--debug shows the traceback")
    return [InputFile(str(f), "skipped", reason, src.id) for src in batch
            for f in (*src.files, *src.side_files, *(m for m, _ in src.merged))]


def analyze_on_ray(paths: Sequence[str | Path], *, config: AnalysisConfig, load_options: LoadOptions,
                   address: str | None = None, figure_runs: FigureRuns | None = None) -> Report:
    """`analyze` with reading and judging as Ray tasks (see the module docstring). The same Report as the
    local path, but each Diagnosis holds a `ReportRun`: role series only, thinned except for ``figure_runs``."""
    ray, started_here = connect_ray(address)
    try:
        return _analyze(ray, paths, config, load_options, figure_runs)
    finally:
        if started_here:
            ray.shutdown()


def _analyze(ray: Any, paths: Sequence[str | Path], cfg: AnalysisConfig, options: LoadOptions,
             figure_runs: FigureRuns | None) -> Report:
    t0 = time.perf_counter()
    cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
    warm = ray.remote(num_cpus=1)(warm_up)
    started = [warm.remote() for _ in range(cpus)]  # workers start (~seconds each) while the driver discovers
    with remote.located(paths, options.cache_dir, options.storage_options) as where:
        found = discover(where.paths)
        batches = plan_batches(found.sources, cpus)
        log.info("ray: %d run(s) in %d batch(es) over %d CPU(s); discovery took %.2f s", len(found.sources),
                 len(batches), cpus, time.perf_counter() - t0)
        task_options = ray.put(replace(options, workers=1, progress=False))
        judge = ray.remote(num_cpus=1)(judge_batch)
        config = ray.put(cfg)
        refs = [judge.remote(b, task_options, config) for b in batches]
        index = {ref: i for i, ref in enumerate(refs)}
        diagnoses: list[Diagnosis] = []
        facts: dict[str, SweepFacts] = {}
        inputs: list[InputFile] = list(found.skipped)
        batch_of: dict[str, int] = {}
        stream: Iterator[tuple[Any, Any]] = _as_completed(ray, refs)
        if options.progress and batches:
            from tqdm import tqdm
            stream = tqdm(stream, total=len(batches), desc="reading and judging (ray)", unit="batch", leave=False)
        busy = cpu = 0.0
        for ref, result in stream:
            if isinstance(result, BaseException):
                inputs += _failed_batch(batches[index[ref]], result)
                continue
            log_inputs(result.inputs, where.url)
            busy += result.seconds
            cpu += result.cpu_seconds
            for d, fact in result.judged:
                diagnoses.append(d)
                batch_of[d.run.id] = index[ref]
                if fact is not None:
                    facts[d.run.id] = fact
            inputs += result.inputs
        del refs, index, started
        log.info("ray: %d batch(es) read and judged in %.2f s (tasks busy %.2f s, %.2f CPU-s)", len(batches),
                 time.perf_counter() - t0, busy, cpu)
        if not diagnoses:
            inputs = where.inputs(inputs) + where.skipped
            raise no_runs_error(paths, found.files_seen + len(where.skipped), inputs)
        diagnoses.sort(key=lambda d: d.run.id)
        sweeps = find_sweeps(diagnoses, facts, cfg)
        if figure_runs is not None:
            diagnoses = _with_whole_runs(ray, diagnoses, sweeps, figure_runs, batches, batch_of, task_options)
        diagnoses = [replace(d, run=where.run(d.run)) for d in diagnoses]
        inputs = where.inputs(inputs) + where.skipped
    return make_report([str(p) for p in paths], inputs, diagnoses, {}, cfg, sweeps=sweeps)


def _with_whole_runs(ray: Any, diagnoses: list[Diagnosis], sweeps: Sequence[SweepDiagnosis], figure_runs: FigureRuns,
                     batches: list[list[RunSource]], batch_of: dict[str, int], task_options: Any) -> list[Diagnosis]:
    """The diagnoses with the runs of ``figure_runs`` whole (a second round of tasks over their batches)."""
    wanted = set(figure_runs(diagnoses, sweeps))
    by_batch: dict[int, set[str]] = {}
    for rid in wanted:
        if rid in batch_of:
            by_batch.setdefault(batch_of[rid], set()).add(rid)
    if not by_batch:
        return diagnoses
    t0 = time.perf_counter()
    fetch = ray.remote(num_cpus=1)(whole_runs)
    refs = [fetch.remote(batches[i], task_options, frozenset(ids)) for i, ids in sorted(by_batch.items())]
    whole: dict[str, ReportRun] = {}
    for _, runs in _as_completed(ray, refs):
        if isinstance(runs, BaseException):  # those runs keep their thinned series: figures from fewer points
            log.warning("the full series of some runs could not be fetched (%s); their figures use the report's "
                        "thinned series", type(runs).__name__)
            continue
        whole.update((r.id, r) for r in runs)
    log.info("ray: the role series of %d run(s) with full figures fetched whole in %.2f s", len(whole),
             time.perf_counter() - t0)
    return [replace(d, run=whole[d.run.id]) if d.run.id in whole else d for d in diagnoses]
