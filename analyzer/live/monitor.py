"""Judge a run from inside its training loop: `Monitor.update(step, loss=..., grad_norm=..., lr=...)`.

The same engine as `steadytrain report` (`diagnose_run`) runs on the in-memory history every
``every_n_steps`` steps. It costs the loop no device sync: values may be Python floats or tensors
(`analyzer.live.transfer`: a CPU tensor becomes a float at once, a device tensor is sent to the host
with the others of its N steps in one asynchronous copy, judged once it landed).

Judging costs ~4-6 ms plus ~1 ms per 1,000 points of history (the engine reads the whole curve:
regimes, noise bands and the early/mid split are properties of all of it). A judgement that is
due is deferred while the time spent in copies and judgements would exceed ``max_overhead`` of the
wall time since the first update (`analyzer.live.budget`): that cost stays under that share by
construction, and a long run is judged less often rather than slowed down. Recording (~1-3 us a step)
is not deferrable and is not counted there: counting it would starve the judgements of a loop whose
steps are very short.

Under DDP (a ``process_group``, or the callbacks' strategy) the ranks decide together
(`analyzer.live.collective`): every N steps, at the same step on every rank, one all-reduce of a few
integers; a stop or a checkpoint that any rank wants is done by all of them; files and log lines
come from rank 0. The history and the verdict go into checkpoints (`state_dict`), so a resumed run is
judged as one run (`analyzer.live.state`).

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
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import numpy as np

from analyzer.config import AnalysisConfig
from analyzer.frame import RawPoints
import analyzer.live.state as live_state
from analyzer.live.budget import Budget, warm_up
from analyzer.live.collective import Collective, TorchCollective, mean_over_ranks
from analyzer.live.decisions import Decisions, Saver
from analyzer.live.finding import FailOn, LiveFinding, at_or_above, compare
from analyzer.live.history import build_run
from analyzer.live.transfer import Column, Transfer, held
from analyzer.engine import diagnose_run
from analyzer.types import Diagnosis, Format, Run

log = logging.getLogger(__name__)

Framework = Literal["pytorch", "lightning", "hf_trainer"]
LossAcrossRanks = Literal["own", "mean"]
#: The format of the logs each framework writes with these same values: the run is reported (snippets first
#: for its framework, the probe spec) as those logs would be.
FORMAT_OF: Mapping[str, Format] = {"pytorch": "jsonl", "lightning": "lightning_csv", "hf_trainer": "hf_trainer_state"}
_FIELDS = ("loss", "grad_norm", "lr", "eval_loss")  # update's keyword metrics, in its row order
_FLOAT, _NONE = {float}, {type(None)}


class Monitor(Budget, Decisions):
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
        and the last good step, and a restart plan (JSON) and the probe spec are written beside it. Under a
        process group it is called on every rank with the same path (as Lightning's and torch.distributed
        .checkpoint's saves are: collective); a plain ``torch.save`` belongs under ``if rank == 0``.
    checkpoint_dir : where those go.
    on_finding : called with each `LiveFinding` this process finds (after it is logged).
    framework : what trains ("pytorch", "lightning", "hf_trainer"): recommendations' snippets target it.
    process_group : a torch.distributed process group (``torch.distributed.group.WORLD`` for every rank):
        stop and checkpoint decisions are then made together, and rank 0 of the group writes the files and
        the log lines. Every rank must call `update` with the same steps.
    loss_across_ranks : under a process group, judge each rank's own loss ("own") or the mean over the ranks
        ("mean": one more all-reduce of the N steps' losses, every N steps).
    collective : instead of ``process_group``, any `Collective` (the Lightning callback passes its strategy's).
    """

    def __init__(self, *, run_id: str = "live", every_n_steps: int = 50, max_overhead: float | None = 0.005,
                 config: AnalysisConfig | None = None, hparams: Mapping[str, Any] | None = None,
                 roles: Mapping[str, str] | None = None, stop_on: FailOn | None = None,
                 checkpoint_on: FailOn | None = None, save_checkpoint: Callable[[Path], object] | None = None,
                 checkpoint_dir: str | Path = "steadytrain_checkpoints",
                 on_finding: Callable[[LiveFinding], object] | None = None,
                 logger: logging.Logger | None = None, framework: Framework = "pytorch",
                 process_group: Any = None, loss_across_ranks: LossAcrossRanks = "own",
                 collective: Collective | None = None) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps}: expected an integer >= 1")
        if max_overhead is not None and not 0 < max_overhead <= 1:
            raise ValueError(f"max_overhead={max_overhead}: expected a share in (0, 1], or None")
        for name, level in (("stop_on", stop_on), ("checkpoint_on", checkpoint_on)):
            if level is not None and level not in ("early", "mid", "divergence"):
                raise ValueError(f"{name}={level!r}: expected one of early, mid, divergence, or None")
        if framework not in FORMAT_OF:
            raise ValueError(f"framework={framework!r}: expected one of {', '.join(FORMAT_OF)}")
        if loss_across_ranks not in ("own", "mean"):
            raise ValueError(f"loss_across_ranks={loss_across_ranks!r}: expected own or mean")
        if process_group is not None and collective is not None:
            raise ValueError("process_group and collective name the same thing: give one")
        self.run_id = run_id
        self.every_n_steps = every_n_steps
        self.max_overhead = max_overhead
        self.config = config or AnalysisConfig()
        self.hparams = dict(hparams or {})
        self.roles = dict(roles or {})
        self.stop_on = stop_on
        self.checkpoint_on = checkpoint_on
        self.checkpoint_dir = Path(checkpoint_dir)
        self.framework = framework
        self._save_fn = save_checkpoint
        self.saver: Saver | None = self._save_to_dir if save_checkpoint is not None else None
        self.on_finding = on_finding
        self.log = logger or log
        self._collective = TorchCollective(process_group) if process_group is not None else collective
        if self._collective is not None and self._collective.world_size <= 1:
            self._collective = None  # one process: nothing to decide together
        self._mean_loss = loss_across_ranks == "mean" and self._collective is not None
        self.diagnosis: Diagnosis | None = None
        self.findings: list[LiveFinding] = []
        self.should_stop = False
        self.checkpoints: list[Path] = []
        self._rows: list[tuple[int, Any, Any, Any, Any]] = []  # (step, loss, grad_norm, lr, eval_loss) since the flush
        self._extra: list[tuple[int, dict[str, Any]]] = []  # other metrics given by name
        self._columns: dict[str, Column] = {}
        self._transfers: list[Transfer] = []  # on their way to the host
        self._news: list[LiveFinding] = []  # found here since the ranks last decided
        self._next_event: float = -math.inf  # the first step at which update has more to do than record
        self._next_flush = 0
        self._due = False
        self._points_judged = 0
        self._last_step: int | None = None
        self._judged_step: int | None = None
        self._next_check = 0  # the first step at which a judgement may be due
        warm_up()
        self._checkpointed: set[str] = set()
        self._t0: float | None = None
        self._first_step = 0
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
        # Every step of the caller's loop: a type check per value, one tuple appended, one comparison. No
        # device work, no clock read; the rest happens every N steps (`_event`).
        if loss is not None and loss.__class__ is not float:
            loss = held(loss)
        if grad_norm is not None and grad_norm.__class__ is not float:
            grad_norm = held(grad_norm)
        if lr is not None and lr.__class__ is not float:
            lr = held(lr)
        if eval_loss is not None and eval_loss.__class__ is not float:
            eval_loss = held(eval_loss)
        self._rows.append((step, loss, grad_norm, lr, eval_loss))
        if metrics:
            self._extra.append((step, {k: held(v) for k, v in metrics.items() if v is not None}))
        self._last_step = step
        if step < self._next_event:
            return None
        return self._event(step)

    def _event(self, step: int) -> LiveFinding | None:
        """A flush, a judgement or a decision is due at this step (or the first step)."""
        if self._t0 is None:
            self._t0 = time.perf_counter()
            self._first_step = step
            self._next_flush = step + self.every_n_steps - 1
        change = None
        flushed = step >= self._next_flush
        if flushed:
            # Every N steps the values go to the host (one stack per device and dtype, an async copy on
            # CUDA), judged or not: a deferred judgement never leaves thousands of tensors alive. These are
            # the steps where the ranks of a distributed run meet: the same on every rank.
            started = time.perf_counter()
            self._flush()
            self._next_flush = step + self.every_n_steps
            self._spent += time.perf_counter() - started
            self._due = True
        if self._due and step >= self._next_check:
            change = self._maybe_judge(step)
        if flushed and self._collective is not None:
            started = time.perf_counter()
            self._decide_together()
            self._spent += time.perf_counter() - started
        self._next_event = min(self._next_flush, self._next_check) if self._due else self._next_flush
        return change

    def judge(self) -> Diagnosis:
        """Judge now on everything recorded here (waits for outstanding copies), e.g. at the end of training.
        Local to this process (no collective); with ``loss_across_ranks="mean"`` the steps since the last
        all-reduce wait for it. `finish` is the collective end."""
        if (self._rows or self._extra) and not self._mean_loss:
            self._flush()
        if self.diagnosis is None or self._transfers or self._judged_step != self._last_step:
            self._timed_judge()
        assert self.diagnosis is not None
        return self.diagnosis

    def finish(self) -> Diagnosis:
        """The last judgement at the end of training. Under a process group, every rank must call it: the last
        steps' values are reduced and a last decision (a checkpoint) is made together."""
        if self._collective is None:
            return self.judge()
        if self._rows or self._extra:
            self._flush()
        self._timed_judge()
        self._decide_together()
        assert self.diagnosis is not None
        return self.diagnosis

    # -- the host history and the judgement (when to judge: `Budget`) ------------------------------
    def _flush(self) -> None:
        """The rows since the last flush, by metric, into the host history or a transfer (in order)."""
        rows, self._rows = self._rows, []
        extra, self._extra = self._extra, []
        lists: dict[str, tuple[Any, Any, bool]] = {}  # name -> (steps, values, all Python floats)
        stacked: dict[str, tuple[np.ndarray, Any]] = {}
        keep: dict[str, Any] = {}
        if rows:
            cols = tuple(zip(*rows))  # one transpose in C, then a column at a time
            steps = cols[0]
            for name, vals in zip(_FIELDS, cols[1:]):
                kinds = set(map(type, vals))  # in C; `None in vals` would call a tensor's __eq__ per value
                if name == "loss" and self._mean_loss:
                    assert self._collective is not None
                    means, counts = mean_over_ranks(self._collective, vals)  # every rank, the same rows
                    stacked[name] = (np.asarray(steps, np.int64), means)
                    keep[name] = counts
                elif kinds == _FLOAT:
                    lists[name] = (steps, vals, True)
                elif kinds == _NONE:
                    continue
                elif type(None) not in kinds:
                    lists[name] = (steps, vals, False)
                else:
                    idx = [i for i, v in enumerate(vals) if v is not None]
                    lists[name] = ([steps[i] for i in idx], [vals[i] for i in idx], kinds == {float, type(None)})
        named: dict[str, tuple[list[int], list[Any]]] = {}
        for step, metrics in extra:
            for name, value in metrics.items():
                col = named.setdefault(name, ([], []))
                col[0].append(step)
                col[1].append(value)
        for name, (s_, v_) in named.items():
            lists[name] = (s_, v_, set(map(type, v_)) == _FLOAT)
        tensors: dict[str, tuple[Any, Any]] = {}
        for name, (steps_, values, floats) in lists.items():
            if self._transfers or not floats:
                tensors[name] = (steps_, list(values))  # behind a copy in flight, floats wait in line too (order)
            else:
                self._columns.setdefault(name, Column()).add(steps_, values)
                self._points += len(steps_)
        if tensors or stacked:
            step_of = {t: np.asarray(s, np.int64) for t, (s, _) in tensors.items()}
            step_of.update({t: s for t, (s, _) in stacked.items()})
            value_of: dict[str, Any] = {t: v for t, (_, v) in tensors.items()}
            value_of.update({t: v for t, (_, v) in stacked.items()})
            self._transfers.append(Transfer(step_of, value_of, keep))
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
                self._columns.setdefault(tag, Column()).add(steps, values)
                self._points += len(steps)

    def history(self) -> Run:
        """Everything recorded so far (already on the host) as a `Run` (in the format of its framework's logs)."""
        arrays = {tag: col.arrays() for tag, col in self._columns.items()}
        raw = RawPoints.from_columns({tag: (s, np.full(s.shape[0], math.nan), v) for tag, (s, v) in arrays.items()})
        return build_run(self.run_id, FORMAT_OF[self.framework], raw, hparams=self.hparams, roles=self.roles)

    def _judge(self) -> LiveFinding | None:
        run = self.history()
        diagnosis, _ = diagnose_run(run, self.config)
        previous, self.diagnosis = self.diagnosis, diagnosis
        rng = run.step_range()
        change = compare(previous, diagnosis, rng[1] if rng else 0, self.run_id)
        if change is not None:
            self._found(change)
        return change

    # -- across restarts ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The history and the judgement, for the training checkpoint (plain values and bytes: loadable with
        ``torch.load(weights_only=True)``). Waits for copies in flight. No collective: any rank may call it."""
        if (self._rows or self._extra) and not self._mean_loss:
            self._flush()  # with a mean loss, the steps since the last all-reduce are left out (< N steps)
        self._collect()
        return live_state.encode({tag: col.arrays() for tag, col in self._columns.items()}, run_id=self.run_id,
                                 verdict=self.diagnosis.verdict if self.diagnosis is not None else None,
                                 checkpointed=self._checkpointed, last_step=self._last_step)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a `state_dict` saved before a restart (call it before the first `update`)."""
        columns, verdict, checkpointed, _ = live_state.decode(state)
        self.restore(columns, checkpointed=checkpointed)
        if verdict is not None and self.diagnosis is not None and self.diagnosis.verdict != verdict:
            self.log.info("steadytrain: the restored history judges %s now (was %s before the restart: other "
                          "settings?)", self.diagnosis.verdict, verdict)

    def restore(self, columns: Mapping[str, tuple[Any, Any]], *, checkpointed: set[str] | None = None) -> Diagnosis | None:
        """Start from the history recorded before a restart: ``{metric: (steps, values)}``. It is judged at
        once, silently: that verdict is what later judgements are compared with (no line, no stop and no
        checkpoint for what was known before the restart). ``checkpointed``: verdicts already saved for
        (default: the restored verdict, when at or above ``checkpoint_on``)."""
        self._columns = {}
        self._points = 0
        for tag, (steps, values) in columns.items():
            s, v = np.asarray(steps, np.int64), np.asarray(values, np.float64)
            if s.size:
                self._columns.setdefault(tag, Column()).add(s, v)
                self._points += int(s.size)
        self.diagnosis = None
        if self._points:
            self.diagnosis, _ = diagnose_run(self.history(), self.config)
            self._points_judged = self._points
        baseline = self.diagnosis.verdict if self.diagnosis is not None else None
        if checkpointed is None:
            checkpointed = {baseline} if baseline is not None and at_or_above(baseline, self.checkpoint_on) else set()
        self._checkpointed = set(checkpointed)
        return self.diagnosis

    # -- what it did -------------------------------------------------------------------------------------
    @property
    def last_step(self) -> int | None:
        """The last step given to `update` (None before the first)."""
        return self._last_step

    @property
    def finding(self) -> LiveFinding | None:
        """The latest change found (None while nothing was found)."""
        return self.findings[-1] if self.findings else None
