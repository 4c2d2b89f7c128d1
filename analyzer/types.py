"""Values that cross layers: ingest -> runs -> findings -> recommendations -> report.

Everything here is a frozen dataclass so that a reporter or a probe can never mutate what the
analyzer decided. Nothing here renders or imports torch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import numpy as np
import polars as pl

from analyzer.evidence import Evidence
from analyzer.plans import Plan
from analyzer.verdicts import VERDICT_ORDER, Verdict  # noqa: F401 - re-exported: the types of the layers

Format = Literal["tensorboard", "lightning_csv", "hf_trainer_state", "jsonl", "mlflow", "csv", "text_log", "wandb",
                 "wandb_csv", "tensorboard_json", "parquet", "dvclive", "json"]
RoleName = Literal["train_loss", "eval_loss", "grad_norm", "lr"]
ROLE_NAMES: tuple[RoleName, ...] = ("train_loss", "eval_loss", "grad_norm", "lr")



class Severity(enum.IntEnum):
    """How much a finding matters; ordered so that max() picks the worst."""

    INFO = 0
    WARN = 1
    FAIL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class InputFile:
    """One file met under the given paths, and what became of it.

    Attributes:
        path: the file's path as found (absolute).
        status: "read" when its content went into a run, else "skipped".
        reason: for a read file its role (e.g. "tensorboard events", "hparams"); for a skipped
            file why it was skipped, in words a user can act on.
        run: the run id it fed, if any.
    """

    path: str
    status: Literal["read", "skipped"]
    reason: str
    run: str | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """Something about a run's data that the user must know: restarts, truncation, drops.

    Attributes:
        kind: a stable key: "restart", "truncated", "corrupt", "dropped", "merged", "nonfinite".
        message: one sentence with the numbers in it.
        count: how many points or records it concerns.
        step: the step where it happened, when there is one.
        source: the file it is about (its name), when it is about one: what code that updates a file's notes
            matches on, so that no code parses messages.
    """

    kind: str
    message: str
    count: int = 0
    step: int | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Series:
    """One tag of one run, sorted by step, every logged point (never sampled)."""

    tag: str
    steps: np.ndarray  # int64
    values: np.ndarray  # float64, NaN/inf kept: they are the divergence signal

    def __len__(self) -> int:
        return int(self.steps.shape[0])


@dataclass(frozen=True, slots=True)
class Roles:
    """Which tag of a run plays which metric role (None when no tag does)."""

    train_loss: str | None = None
    eval_loss: str | None = None
    grad_norm: str | None = None
    lr: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in ROLE_NAMES}

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(name for name in ROLE_NAMES if getattr(self, name) is None)


@dataclass(frozen=True, eq=False)
class Run:
    """Every point of one training run, in the canonical long frame.

    Attributes:
        id: path relative to the root it was found under, '/'-separated.
        format: which reader produced it.
        sources: the files its points came from.
        points: polars frame with columns tag (str), step (i64), wall_time (f64), value (f64).
        hparams: hyperparameters found beside the log (hparams.yaml, params/, config JSON,
            TensorBoard hparams plugin, LR in the directory name), values as logged.
        notes: restarts, truncation, dropped points, merges, each with counts.
        roles: the tag that plays each metric role.
    """

    id: str
    format: Format
    sources: tuple[str, ...]
    points: pl.DataFrame
    hparams: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[Note, ...] = ()
    roles: Roles = Roles()

    @property
    def tags(self) -> list[str]:
        col = self.points.get_column("tag")
        if isinstance(col.dtype, pl.Enum):
            return sorted(col.dtype.categories.to_list())
        return sorted(col.unique().to_list())

    @property
    def n_points(self) -> int:
        return self.points.height

    def series(self, tag: str | None) -> Series | None:
        """The points of one tag sorted by step, or None when the tag is absent."""
        if tag is None or tag not in self.tags:
            return None
        sub = self.points.filter(pl.col("tag") == tag)
        if sub.height == 0:
            return None
        return Series(
            tag=tag,
            steps=sub.get_column("step").to_numpy().astype(np.int64, copy=False),
            values=sub.get_column("value").to_numpy().astype(np.float64, copy=False),
        )

    def role_series(self, role: RoleName) -> Series | None:
        return self.series(getattr(self.roles, role))

    def step_range(self) -> tuple[int, int] | None:
        if self.points.height == 0:
            return None
        steps = self.points.get_column("step")
        return int(steps.min()), int(steps.max())  # type: ignore[arg-type]


#: Every kind of finding the checks make (stable ids: the JSON, tests and readers of the report use them).
FindingKind = Literal[
    # the data
    "missing_train_loss", "too_few_points", "all_nonfinite", "constant_loss", "judged_on_eval_loss",
    "analysis_failed",
    # instability
    "early_instability", "mid_instability", "nonfinite_loss_transient",
    # divergence
    "divergence_nonfinite", "divergence_nonfinite_grad", "divergence_explosion", "divergence_collapse",
    "divergence_dead_after_blowup", "divergence_regression", "divergence_uniform", "skipping_to_the_end",
    # worth a look, not instability
    "fp16_skipped_steps", "one_point_blips", "periodic_pattern", "grad_norm_outliers", "grad_norm_looks_clipped",
    "no_progress", "overfitting", "grokking", "printed_messages",
]


@dataclass(frozen=True, slots=True)
class Finding:
    """One judged observation about a run, with the numbers a human can check.

    Attributes:
        kind: stable id (`FindingKind`), e.g. "early_instability", "divergence_nonfinite".
        severity: info, warn or fail.
        verdict: which run verdict this finding supports ("stable" for informational ones).
        start_step: first step concerned.
        end_step: last step concerned, None when it never ended (e.g. divergence).
        message: one or two sentences quoting the evidence numbers.
        evidence: the measured numbers, typed (analyzer.evidence); ``evidence.as_dict()`` for JSON.
    """

    kind: FindingKind
    severity: Severity
    verdict: Verdict
    start_step: int
    end_step: int | None
    message: str
    evidence: Evidence = field(default_factory=Evidence)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A concrete change with the numbers behind it and ready-to-paste config.

    Attributes:
        kind: "warmup", "clip", "lower_lr", "optimizer", "architecture" or "log_metric".
        params: the settings, typed per kind (analyzer.recommend.plans: ClipPlan, WarmupPlan, ...; the JSON's
            "params" is their as_dict()).
        rationale: why, quoting the playbook rule and the numbers it came from.
        snippets: framework -> code ("pytorch", "lightning", "hf_trainer").
        priority: lower comes first (the playbook's order of preference).
    """

    kind: Literal["warmup", "clip", "lower_lr", "optimizer", "architecture", "log_metric"]
    params: Plan
    rationale: str
    snippets: Mapping[str, str] = field(default_factory=dict)
    priority: int = 50


@dataclass(frozen=True, slots=True)
class CheckFailure:
    """A detector that raised on a run; the other detectors still ran."""

    check: str
    run_id: str
    error_type: str
    message: str


@dataclass(frozen=True, eq=False)
class Diagnosis:
    """The judgement of one run."""

    run: Run
    verdict: Verdict
    findings: tuple[Finding, ...]
    recommendations: tuple[Recommendation, ...]
    failures: tuple[CheckFailure, ...] = ()
    stats: Mapping[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return max((f.severity for f in self.findings), default=Severity.INFO)

    @property
    def headline(self) -> Finding | None:
        """The finding to show first: the first one worth a look (warn or fail), whatever the verdict."""
        return next((f for f in self.findings if f.severity >= Severity.WARN), None)


@dataclass(frozen=True, slots=True)
class SweepDiagnosis:
    """An LR sweep: runs that differ only in learning rate.

    Attributes:
        runs: run ids ordered by LR.
        lrs: the LR of each run, same order.
        scores: the loss each run is ranked by (best eval loss, else best smoothed train loss);
            None for infeasible runs.
        metric: which role the scores come from.
        best_run / best_lr: lr*, the run with the lowest score.
        infeasible: runs that diverged or ended with abnormally high loss.
        unstable: feasible runs whose training loss went up during training.
        edge_of_instability: the next larger LR after lr* is infeasible or unstable.
        evidence: the numbers behind it.
    """

    runs: tuple[str, ...]
    lrs: tuple[float, ...]
    scores: tuple[float | None, ...]
    metric: str
    best_run: str | None
    best_lr: float | None
    infeasible: tuple[str, ...]
    unstable: tuple[str, ...]
    edge_of_instability: bool
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Report:
    """Everything one analysis produced, ready for the reporters."""

    roots: tuple[str, ...]
    inputs: tuple[InputFile, ...]
    diagnoses: tuple[Diagnosis, ...]
    sweeps: tuple[SweepDiagnosis, ...]
    config: Mapping[str, Any]
    created: str
    version: str
    schema_version: int = 1

    def unjudged(self) -> tuple[Diagnosis, ...]:
        """The runs that could not be judged (verdict insufficient_data: too few points, no loss logged, or
        an analysis failure); ``--fail-on-unjudged`` fails on them."""
        return tuple(d for d in self.diagnoses if d.verdict == "insufficient_data")
