"""Judge a run from inside its training loop: `Monitor.update(step, loss=..., grad_norm=..., lr=...)`.

The same engine as `steadytrain report` (`diagnose_run`) runs on the in-memory history every
``every_n_steps`` steps. It costs the loop no device sync: values may be Python floats or tensors.
A CPU tensor becomes a float at once (nothing to wait for). A device tensor is only referenced at
each step and sent to the host in one batch every N steps (one stack per device and dtype, then one
copy); on CUDA that copy is asynchronous into pinned memory and the judgement runs at the first later
step whose copy has landed (a CUDA event query, which never blocks), so the loop never waits for the
GPU on our account.

Judging costs ~6 ms plus ~1 ms per 1,000 points of history (the engine reads the whole curve:
regimes, noise bands and the early/mid split are properties of all of it). A judgement that is
due is deferred while the time spent in copies and judgements would exceed ``max_overhead`` of the
wall time since the first update: that cost stays under that share by construction, and a long run
is judged less often rather than slowed down. Recording (~3 us a step) is not deferrable and is not
counted there: counting it would starve the judgements of a loop whose steps are very short.

Examples
--------
>>> from analyzer.live import Monitor
>>> mon = Monitor(every_n_steps=50, stop_on="divergence")
>>> for step in range(200):
...     finding = mon.update(step, loss=2.0 / (step + 1), lr=1e-3)
>>> mon.judge().verdict
'stable'
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from analyzer.config import AnalysisConfig
from analyzer.frame import RawPoints
from analyzer.live.finding import FailOn, LiveFinding, at_or_above, compare
from analyzer.live.history import build_run
from analyzer.pipeline import diagnose_run
from analyzer.types import Diagnosis, Run

log = logging.getLogger(__name__)

#: The engine's cost floor for one judgement (a short history), before the first one is measured.
_FIRST_COST = 0.005
_FIELDS = ("loss", "grad_norm", "lr", "eval_loss")  # update's keyword metrics, in its row order

Saver = Callable[[LiveFinding], "Path | None"]


def _held(value: Any) -> Any:
    """What to keep of a value given to `Monitor.update`: a CPU tensor as its float now (~1 us, nothing to
    wait for; stacking dozens of them later costs more), a device tensor as itself (detached: holding the
    graph would keep the step's activations alive), anything else as given."""
    device = getattr(value, "device", None)
    if device is None:
        return value
    if device.type == "cpu":
        return value.item()
    return value.detach() if value.requires_grad else value


class _Transfer:
    """N steps' values on their way to the host. ``ready()`` never blocks."""

    def __init__(self, steps: dict[str, np.ndarray], values: dict[str, list[Any]]) -> None:
        self.steps = steps
        self.outs: dict[str, np.ndarray] = {}
        self._copies: list[tuple[str, np.ndarray, Any, Any]] = []  # (tag, slots, pinned host tensor, cuda event)
        for tag, vals in values.items():
            if all(type(v) is float for v in vals):  # the common case of Python floats: one conversion
                self.outs[tag] = np.array(vals, np.float64)
                continue
            out = self.outs[tag] = np.empty(len(vals), np.float64)
            if all(hasattr(v, "detach") for v in vals):  # all tensors (duck-typed: torch is never imported for floats)
                self._start(tag, vals, np.arange(len(vals)))
                continue
            tensors = []
            for i, v in enumerate(vals):
                if hasattr(v, "detach"):
                    tensors.append(i)
                else:
                    out[i] = float(v)
            if tensors:
                self._start(tag, [vals[i] for i in tensors], np.asarray(tensors))

    def _start(self, tag: str, tensors: list[Any], where: np.ndarray) -> None:
        import torch  # the caller handed us tensors: torch is loaded already

        first = tensors[0]
        device, dtype = first.device, first.dtype
        if all(t.device == device and t.dtype == dtype for t in tensors[1:]):
            groups: dict[tuple[Any, Any], list[int]] = {(device, dtype): list(range(len(tensors)))}
        else:  # a device or dtype change mid-run (rare): one stack per kind
            groups = {}
            for k, t in enumerate(tensors):
                groups.setdefault((t.device, t.dtype), []).append(k)
        for (device, _dtype), ks in groups.items():
            # one stack and one cast per device and dtype, however many steps: a handful of kernels
            group = tensors if len(ks) == len(tensors) else [tensors[k] for k in ks]
            try:
                stacked = torch.stack(group).reshape(len(group))
            except RuntimeError:  # one-element tensors of different shapes
                stacked = torch.stack([t.reshape(()) for t in group])
            if stacked.dtype != torch.float64:  # half/bfloat16/int values read as float32; float64 kept exact
                stacked = stacked.float()
            slots = where[np.asarray(ks)]
            if device.type == "cuda":
                host = torch.empty(stacked.shape, dtype=stacked.dtype, pin_memory=True)
                host.copy_(stacked, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
                self._copies.append((tag, slots, host, event))
            else:  # CPU (computed already), or a device without async copies to pinned memory: copy now
                self.outs[tag][slots] = stacked.cpu().numpy()

    def ready(self) -> bool:
        return all(event.query() for _, _, _, event in self._copies)

    def result(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{tag: (steps, values)}; waits for outstanding copies (called once ready, or by `Monitor.judge`)."""
        for tag, slots, host, event in self._copies:
            event.synchronize()
            self.outs[tag][slots] = host.numpy()
        return {tag: (self.steps[tag], vals) for tag, vals in self.outs.items()}


@dataclass
class _Column:
    """One metric's history on the host: chunks (Python lists of floats as given, arrays from tensors)
    joined into one array when judged. Floats are never converted between judgements: a flush of them
    is a list extend."""

    steps: list[Any] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def add(self, steps: Any, values: Any) -> None:
        if self.steps and isinstance(self.steps[-1], list) and isinstance(steps, list) and isinstance(values, list):
            self.steps[-1].extend(steps)
            self.values[-1].extend(values)
        else:
            self.steps.append(list(steps) if isinstance(steps, list) else steps)
            self.values.append(list(values) if isinstance(values, list) else values)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.steps) != 1 or isinstance(self.steps[0], list):  # joined once, then kept joined
            self.steps = [np.concatenate([np.asarray(c, np.int64) for c in self.steps]) if self.steps
                          else np.zeros(0, np.int64)]
            self.values = [np.concatenate([np.asarray(c, np.float64) for c in self.values]) if self.values
                           else np.zeros(0)]
        return self.steps[0], self.values[0]


class Monitor:
    """Judge a training run from inside its loop, every ``every_n_steps`` steps.

    Parameters
    ----------
    run_id : the name in messages and restart plans.
    every_n_steps : judge when this many steps passed since the last judgement (the detection latency).
    max_overhead : defer a due judgement while copies and judgements would exceed this share of the wall
        time since the first update (None: never defer).
    config : the thresholds (`steadytrain settings`); defaults otherwise.
    hparams : what the logs would carry beside them (lr, optimizer, max_steps, batch_size): used by the
        recommendations (warmup cap = 10% of max_steps) and the probe spec.
    roles : tag -> role overrides, as ``--role`` (metric names are the keyword names given to update).
    stop_on : set ``should_stop`` once the verdict reaches this level ("early", "mid", "divergence").
    checkpoint_on : call ``save_checkpoint`` once per new verdict at or above this level.
    save_checkpoint : ``fn(path)`` saving the training state there; the path carries the detection step
        and the last good step, and a restart plan (JSON) and the probe spec are written beside it.
    checkpoint_dir : where those go.
    on_finding : called with each `LiveFinding` (after it is logged).
    """

    def __init__(self, *, run_id: str = "live", every_n_steps: int = 50, max_overhead: float | None = 0.005,
                 config: AnalysisConfig | None = None, hparams: Mapping[str, Any] | None = None,
                 roles: Mapping[str, str] | None = None, stop_on: FailOn | None = None,
                 checkpoint_on: FailOn | None = None, save_checkpoint: Callable[[Path], object] | None = None,
                 checkpoint_dir: str | Path = "steadytrain_checkpoints",
                 on_finding: Callable[[LiveFinding], object] | None = None,
                 logger: logging.Logger | None = None) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps}: expected an integer >= 1")
        if max_overhead is not None and not 0 < max_overhead <= 1:
            raise ValueError(f"max_overhead={max_overhead}: expected a share in (0, 1], or None")
        for name, level in (("stop_on", stop_on), ("checkpoint_on", checkpoint_on)):
            if level is not None and level not in ("early", "mid", "divergence"):
                raise ValueError(f"{name}={level!r}: expected one of early, mid, divergence, or None")
        self.run_id = run_id
        self.every_n_steps = every_n_steps
        self.max_overhead = max_overhead
        self.config = config or AnalysisConfig()
        self.hparams = dict(hparams or {})
        self.roles = dict(roles or {})
        self.stop_on = stop_on
        self.checkpoint_on = checkpoint_on
        self.checkpoint_dir = Path(checkpoint_dir)
        self._save_fn = save_checkpoint
        self.saver: Saver | None = self._save_to_dir if save_checkpoint is not None else None
        self.on_finding = on_finding
        self.log = logger or log
        self.diagnosis: Diagnosis | None = None
        self.findings: list[LiveFinding] = []
        self.should_stop = False
        self.checkpoints: list[Path] = []
        self._rows: list[tuple[int, Any, Any, Any, Any]] = []  # (step, loss, grad_norm, lr, eval_loss) since the flush
        self._extra: list[tuple[int, dict[str, Any]]] = []  # other metrics given by name
        self._columns: dict[str, _Column] = {}
        self._transfers: list[_Transfer] = []  # on their way to the host
        self._next_flush = 0
        self._due = False
        self._points_judged = 0
        self._last_step: int | None = None
        self._judged_step: int | None = None
        self._next_check = 0  # the first step at which a judgement may be due
        _warm_up()
        self._checkpointed: set[str] = set()
        self._t0: float | None = None
        self._spent = 0.0
        self._last_cost = 0.0
        self._judgements = 0
        self._deferred = 0
        self._points = 0  # on the host

    # -- the loop's side: cheap, no device sync ------------------------------------------------------
    def update(self, step: int, *, loss: Any = None, grad_norm: Any = None, lr: Any = None, eval_loss: Any = None,
               **metrics: Any) -> LiveFinding | None:
        """Record this step's values (floats or tensors; None = not logged this step). Returns a
        `LiveFinding` when a judgement made here changed the verdict or found something new."""
        # Runs every step of the caller's loop: one tuple appended (~3 us), no device work, no clock read;
        # tensors are only referenced, and sent to the host every N steps.
        if self._t0 is None:
            self._t0 = time.perf_counter()
            self._next_flush = step + self.every_n_steps - 1
        if loss is not None and type(loss) is not float:
            loss = _held(loss)
        if grad_norm is not None and type(grad_norm) is not float:
            grad_norm = _held(grad_norm)
        if lr is not None and type(lr) is not float:
            lr = _held(lr)
        if eval_loss is not None and type(eval_loss) is not float:
            eval_loss = _held(eval_loss)
        self._rows.append((step, loss, grad_norm, lr, eval_loss))
        if metrics:
            self._extra.append((step, {k: _held(v) for k, v in metrics.items() if v is not None}))
        self._last_step = step
        if step >= self._next_flush:
            # Every N steps the values go to the host (one stack per device and dtype, an async copy on
            # CUDA), judged or not: a deferred judgement never leaves thousands of tensors alive.
            started = time.perf_counter()
            self._flush()
            self._spent += time.perf_counter() - started
            self._due = True
        if not self._due or step < self._next_check:
            return None
        if self._transfers and not all(t.ready() for t in self._transfers):
            return None  # a copy is still on its way: judge at a later step, never wait for the device
        if self.max_overhead is not None:
            if self._spent + self._expected_cost() > self.max_overhead * (time.perf_counter() - self._t0):
                self._deferred += 1
                self._next_check = step + max(1, self.every_n_steps // 5)  # not a clock read every step
                return None
        return self._timed_judge()

    def judge(self) -> Diagnosis:
        """Judge now on everything recorded (waits for outstanding copies): e.g. at the end of training."""
        if self._rows or self._extra:
            self._flush()
        if self.diagnosis is None or self._transfers or self._judged_step != self._last_step:
            self._timed_judge()
        assert self.diagnosis is not None
        return self.diagnosis

    # -- judgement ---------------------------------------------------------------------------------
    def _expected_cost(self) -> float:
        """What the next judgement will cost: the last one's, grown with the history (the engine reads all
        of it); before any, the engine's floor (~5 ms), so even the first waits for its share of time."""
        if not self._judgements:
            return _FIRST_COST
        points = (self._points + 2 * len(self._rows) + len(self._extra)  # a row is ~2 points (loss, LR)
                  + sum(len(s) for t in self._transfers for s in t.steps.values()))
        return self._last_cost * max(1.0, points / max(self._points_judged, 1))

    def _flush(self) -> None:
        rows, self._rows = self._rows, []
        extra, self._extra = self._extra, []
        pending: dict[str, tuple[list[int], list[Any]]] = {}
        for i, name in enumerate(_FIELDS, 1):
            steps = [r[0] for r in rows if r[i] is not None]
            if steps:
                pending[name] = (steps, [r[i] for r in rows if r[i] is not None])
        for step, named in extra:
            for name, value in named.items():
                col = pending.setdefault(name, ([], []))
                col[0].append(step)
                col[1].append(value)
        if self._last_step is not None:
            self._next_flush = self._last_step + self.every_n_steps
        tensors = {}
        for name, (steps, values) in pending.items():
            if self._transfers or not all(type(v) is float for v in values):
                tensors[name] = (steps, values)  # behind a copy in flight, floats wait in line too (order)
            else:
                self._columns.setdefault(name, _Column()).add(steps, values)
                self._points += len(steps)
        if tensors:
            self._transfers.append(_Transfer({t: np.asarray(s, np.int64) for t, (s, _) in tensors.items()},
                                             {t: v for t, (_, v) in tensors.items()}))
            self._collect(only_ready=True)

    def _collect(self, only_ready: bool = False) -> None:
        """Fold transfers into the host history, in order; with ``only_ready``, those landed already (on
        CPU: all of them), so that only copies in flight are ever held."""
        n = len(self._transfers)
        if only_ready:
            n = next((i for i, t in enumerate(self._transfers) if not t.ready()), n)
        transfers, self._transfers = self._transfers[:n], self._transfers[n:]
        for transfer in transfers:
            for tag, (steps, values) in transfer.result().items():
                self._columns.setdefault(tag, _Column()).add(steps, values)
                self._points += len(steps)

    def _timed_judge(self) -> LiveFinding | None:
        started = time.perf_counter()
        self._collect()
        self._due = False
        self._judged_step = self._last_step
        if self._last_step is not None:
            self._next_check = self._last_step + self.every_n_steps
        try:
            return self._judge()
        finally:
            self._last_cost = time.perf_counter() - started
            self._spent += self._last_cost
            self._judgements += 1
            self._points_judged = self._points

    def history(self) -> Run:
        """Everything recorded so far (already on the host) as a `Run`."""
        arrays = {tag: col.arrays() for tag, col in self._columns.items()}
        raw = RawPoints.from_columns({tag: (s, np.full(s.shape[0], math.nan), v) for tag, (s, v) in arrays.items()})
        return build_run(self.run_id, "jsonl", raw, hparams=self.hparams, roles=self.roles)

    def _judge(self) -> LiveFinding | None:
        run = self.history()
        diagnosis, _ = diagnose_run(run, self.config)
        previous, self.diagnosis = self.diagnosis, diagnosis
        rng = run.step_range()
        change = compare(previous, diagnosis, rng[1] if rng else 0, self.run_id)
        if change is not None:
            self._act(change)
        return change

    def _act(self, finding: LiveFinding) -> None:
        self.findings.append(finding)
        (self.log.warning if finding.unstable else self.log.info)("steadytrain: %s", finding.line())
        if at_or_above(finding.verdict, self.checkpoint_on) and finding.verdict not in self._checkpointed \
                and self.saver is not None:
            self._checkpointed.add(finding.verdict)
            path = self.saver(finding)
            if path is not None:
                self.checkpoints.append(path)
        if at_or_above(finding.verdict, self.stop_on):
            self.should_stop = True
            self.log.warning("steadytrain: stopping the run (stop_on=%s): %s", self.stop_on, finding.verdict)
        if self.on_finding is not None:
            self.on_finding(finding)

    def _save_to_dir(self, finding: LiveFinding) -> Path | None:
        assert self._save_fn is not None
        good = finding.last_good_step
        stem = f"steadytrain-step={finding.step}-last_good={good if good is not None else 'none'}"
        path = self.checkpoint_dir / f"{stem}.ckpt"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self._save_fn(path)
        write_hand_over(finding, self.checkpoint_dir / f"{stem}.restart.json", self.checkpoint_dir / f"{stem}.probe.yaml",
                        self.log)
        self.log.warning("steadytrain: saved %s (restart from a checkpoint at or before step %s, skipping the "
                         "batches after it; plan beside it)", path, good)
        return path

    @property
    def last_step(self) -> int | None:
        """The last step given to `update` (None before the first)."""
        return self._last_step

    @property
    def finding(self) -> LiveFinding | None:
        """The latest change found (None while nothing was found)."""
        return self.findings[-1] if self.findings else None

    @property
    def stats(self) -> dict[str, float | int]:
        """How often it judged, how often it deferred, and the share of the wall time its copies and
        judgements took."""
        wall = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        return {"judgements": self._judgements, "deferred": self._deferred, "seconds_judging": self._spent,
                "last_judgement_seconds": self._last_cost, "wall_seconds": wall,
                "overhead": self._spent / wall if wall > 0 else 0.0,
                "points": self._points}


_WARM = False


def _warm_up() -> None:
    """Judge a small synthetic run once per process, when a Monitor is made (before training): the
    engine's first judgement in a process costs ~70 ms of one-off work (then ~5 ms), which would
    otherwise land on a training step and take a long run's budget for seconds."""
    global _WARM
    if _WARM:
        return
    _WARM = True
    steps = np.arange(64)
    raw = RawPoints.from_columns({"loss": (steps, np.full(64, math.nan), 2.0 / (steps + 1.0))})
    try:
        diagnose_run(build_run("warm-up", "jsonl", raw), AnalysisConfig())
    except Exception as exc:  # noqa: BLE001 - a warm-up is only about speed
        log.debug("warm-up judgement failed: %s", exc)


def write_hand_over(finding: LiveFinding, plan: Path, spec: Path, logger: logging.Logger = log) -> None:
    """The restart plan (JSON) and the probe spec (YAML, when the run is flagged) beside a checkpoint."""
    finding.write_restart_plan(plan)
    try:
        finding.write_probe_spec(spec)
    except Exception as exc:  # noqa: BLE001 - the checkpoint and its plan are what matter; the spec is a bonus
        logger.warning("steadytrain: the probe spec could not be written (%s: %s)", type(exc).__name__, exc)
