"""Every threshold the judgement uses, with its default, its allowed range and why (echoed in every
report, listed by `steadytrain settings`, changed with `--set NAME=VALUE` or `--config FILE`).

Defaults come from the Deep Learning Tuning Playbook (spec/playbook.md) where it gives a number
(p90 clipping, > 50% clipped = lower the LR instead, warmup candidates, 10% cap, 2x post-warmup,
10x base LR, 5% extension rule, 10-20x grad-norm outliers, early = the first ~10% of training), from
spec/failure-shapes.md (share of learned progress undone, the run's own noise band, 4-decimal
rounding), and from the tuning families of the labeled corpus (benchmarks/corpus) where neither
gives a number.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from analyzer.errors import ConfigError
from analyzer.yaml_file import read_yaml


def _setting(default: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
             hi_open: bool = False, doc: str) -> Any:
    """A field with its allowed range (checked by `AnalysisConfig.with_overrides` and at creation) and what it
    means (`AnalysisConfig.docs`, `steadytrain settings`): stored with the field, so it survives installs that
    ship only bytecode."""
    return field(default=default, metadata={"range": (lo, hi, lo_open, hi_open), "doc": doc})


@dataclass(frozen=True)
class AnalysisConfig:
    # -- data sufficiency
    min_points: int = _setting(8, 2,
        doc='Fewer finite points than this in both the train and the eval loss: insufficient_data.')

    # -- phases
    early_fraction: float = _setting(0.1, 0.0, 1.0, lo_open=True,
        doc='The early phase is the first this-fraction of training steps (counted from step 0).')

    # -- the run's own noise band and level
    baseline_window: int = _setting(25, 2,
        doc='Trailing points whose median is the level a point is compared with (spikes).')
    level_min_window: int = _setting(9, 3,
        doc='Smallest centred window (points) of the smoothed level that regimes are found on.')
    level_window_fraction: float = _setting(0.02, 0.0, 0.5,
        doc="...growing to this fraction of the run's points for long runs.")
    min_log_spread: float = _setting(0.01, 0.0, 1.0, lo_open=True,
        doc='Floor of the noise sigma, relative (log space): perfectly smooth curves are not infinitely '
            'sensitive.')

    # -- departures from the noise band
    spike_z: float = _setting(6.0, 1.0,
        doc='A point departs from the noise band when it is this many robust sigmas above the trailing '
            'level.')
    regime_z: float = _setting(6.0, 1.0,
        doc='A smoothed level departs from the best level when it is this many of its own sigmas above it.')
    grok_train_share: float = _setting(0.05, 0.0, 1.0,
        doc='An eval-loss hump while the train loss is at most this share of its first value, with the eval '
            'loss falling back below where it was: grokking (memorisation, then generalisation), not '
            'instability.')
    regime_spread_z: float = _setting(3.0, 0.0,
        doc="A regime counts only when its height is at least this many times the run's point scatter around "
            "its level: a noisy run's level wanders, and a patch of ordinary high points is not a regime.")
    recover_z: float = _setting(3.0, 0.0,
        doc='An event has recovered when the loss is back within this many sigmas of the earlier level...')
    recover_height_fraction: float = _setting(0.2, 0.0, 1.0,
        doc="...or within this fraction of the event's height.")

    # -- how much a departure matters (units that transfer)
    min_undone_share: float = _setting(0.25, 0.0, 1.0, lo_open=True,
        doc='A rise that undoes at least this share of the progress learned before it is an instability.')
    spike_ratio: float = _setting(2.0, 1.0, lo_open=True,
        doc='A rise to at least this many times its level is an instability too...')
    min_share_for_ratio: float = _setting(0.03, 0.0, 1.0,
        doc='...when it undoes at least this share of the progress (0.01 -> 0.024 at the end of a cosine '
            'schedule undoes 0.6%: a wiggle).')
    min_progress_share: float = _setting(0.05, 0.0, 1.0,
        doc='Before a run has learned this share of its initial loss, a rise is judged by its ratio only (a '
            'share of almost no progress means nothing).')
    spike_min_points: int = _setting(3, 1,
        doc='A spike must stay at half its height or more for this many logged points (one point is that '
            "batch's own loss; two can be heavy-tailed noise)...")
    grad_led_min_points: int = _setting(2, 1,
        doc='...or this many when a grad-norm spike leads it (two signals agree).')
    regime_min_points: int = _setting(3, 1,
        doc='A regime (sustained departure of the smoothed level) must last this many logged points.')

    # -- early instability
    early_rise_ratio: float = _setting(1.5, 1.0, lo_open=True,
        doc='Loss in the early phase this many times the initial loss: it went up instead of down.')
    early_blip_points: int = _setting(10, 1,
        doc='Rises above the initial loss (or the best so far) are looked for in the first this-many logged '
            'points (Adam without warmup blips at steps 1-10), in the whole early phase when grad-led.')
    early_rise_z: float = _setting(4.5, 0.0,
        doc='...and this many calm sigmas above it (the early phase is short: fewer chances for noise).')
    early_z: float = _setting(3.0, 0.0,
        doc='An early rise above the best so far that comes with early grad-norm outliers must be this many '
            'calm sigmas high (without them: spike_z, and lasting two points).')
    early_grad_ratio: float = _setting(10.0, 1.0, lo_open=True,
        doc='Early grad norm (p90) this many times its later median corroborates an early rise of the loss.')
    early_rise_share: float = _setting(0.5, 0.0, lo_open=True,
        doc='For losses that are not positive: an early rise above the initial loss of this share of the '
            "run's total progress.")

    # -- divergence
    explode_ratio: float = _setting(3.0, 1.0, lo_open=True,
        doc='Ending this many times above the initial loss (or the same share of its magnitude): exploded.')
    collapse_share: float = _setting(0.5, 0.0, 1.0, lo_open=True,
        doc='A dead plateau (grad-norm floor or quieted noise) at least this share of the learned progress '
            'above the best: a collapse.')
    flat_tail_share: float = _setting(0.15, 0.0, 1.0,
        doc='A tail whose level changes by less than this share of the jump is flat: nothing is learned.')
    regress_ratio: float = _setting(1.25, 1.0, lo_open=True,
        doc='A run that never learned and ended this many times above its start got worse: divergence.')
    blowup_ratio: float = _setting(10.0, 1.0, lo_open=True,
        doc='A blow-up: the loss at this many times its initial value.')
    dead_progress_share: float = _setting(0.1, 0.0, 1.0,
        doc='After a blow-up, a run that never gets this share below its initial loss learned nothing: dead.')
    noise_floor_ratio: float = _setting(3.0, 1.0, lo_open=True,
        doc="After a jump, the loss's batch-to-batch noise this many times quieter than before: a network "
            'that outputs a constant (collapse), when no grad norm is logged.')
    grad_floor_ratio: float = _setting(10.0, 1.0, lo_open=True,
        doc='Grad norm falling this many times below its pre-jump median with the loss flat: a dead network.')
    chance_tolerance: float = _setting(0.01, 0.0, 0.1, lo_open=True,
        doc='A loss within this relative distance of ln K (K classes or vocabulary tokens) sits at chance.')
    chance_noise: float = _setting(0.002, 0.0, 1.0, lo_open=True,
        doc='A loss at ln K whose relative batch-to-batch noise is at most this is pinned there (uniform '
            'predictions give exactly ln K on every batch): with a blow-up, thrashing, progress below it or '
            'the grad norm collapsed before, a dead network.')
    oscillation_ratio: float = _setting(2.0, 1.0, lo_open=True,
        doc="How large an oscillation's swings are: the smoothed level's 95th percentile over its 5th.")
    oscillation_min_swings: int = _setting(6, 2,
        doc='A smoothed loss that swings between its lower and upper quarter at least this many times over '
            'the whole run (by ``oscillation_ratio``, in both halves) and ends above where it started never '
            'learned: divergence.')
    tail_fraction: float = _setting(0.1, 0.0, 0.5, lo_open=True,
        doc="The 'final loss' is the median of this last fraction of points (at least 3).")

    # -- patterns that are not instability
    grad_spike_ratio: float = _setting(10.0, 1.0, lo_open=True,
        doc='A gradient-norm outlier: this many times its running median (playbook: 10-20x).')
    grad_lead_points: int = _setting(5, 0,
        doc='A grad-norm spike up to this many points before a loss event is reported as leading it.')
    periodic_acf: float = _setting(0.3, 0.0, 1.0, lo_open=True,
        doc='The detrended loss repeating with at least this autocorrelation at one period is a per-epoch '
            'pattern...')
    periodic_cv: float = _setting(0.05, 0.0, 0.5,
        doc='...and departures within this fraction of the period from its jump belong to it.')
    periodic_max_share: float = _setting(0.5, 0.0, lo_open=True,
        doc='...when their median height undoes less than this share of the progress.')
    periodic_min_events: int = _setting(4, 2,
        doc='A per-epoch pattern needs at least this many regular events.')
    eval_confirm_z: float = _setting(4.0, 0.0,
        doc='A train-loss departure less than this many of its per-batch (calm) noise sigmas high must be '
            'confirmed by the eval loss when one is logged inside it...')
    eval_min_points: int = _setting(1, 1,
        doc='...(with at least this many eval points inside it): the eval loss must rise above its best '
            'before by 3 of its calm noise sigmas, else the departure is the per-batch noise...')
    eval_agree_share: float = _setting(0.25, 0.0, 1.0,
        doc='...and undid at least this fraction of the share of the progress the train loss undid.')
    overfit_rise: float = _setting(1.1, 1.0, lo_open=True,
        doc='Eval loss ending this many times above its best while the train loss kept falling: overfitting.')

    # -- sweeps
    min_sweep_runs: int = _setting(3, 2,
        doc='At least this many runs differing only in LR make a sweep.')
    infeasible_ratio: float = _setting(0.95, 0.0, 1.0, lo_open=True,
        doc='A trial whose best loss stays above this many times its initial loss never trained: infeasible.')
    infeasible_progress_share: float = _setting(0.25, 0.0, 1.0,
        doc="A sweep trial that learned less than this share of the best trial's progress: abnormally high "
            'loss, infeasible.')

    # -- recommendations
    clip_percentile: float = _setting(90.0, 0.0, 100.0, lo_open=True,
        doc='Clip threshold = this percentile of the unclipped grad norm (playbook: p90).')
    max_clipped_fraction: float = _setting(0.5, 0.0, 1.0, lo_open=True,
        doc='Needing more than this fraction of updates clipped = lowering the LR instead (playbook).')
    warmup_candidates: tuple[int, ...] = _setting((10, 1000, 10000, 100000),
        doc='Warmup sweep candidates (orders of magnitude, playbook).')
    warmup_max_fraction: float = _setting(0.1, 0.0, 1.0, lo_open=True,
        doc='The largest warmup candidate must not exceed this fraction of max_train_steps.')
    warmup_extend_fraction: float = _setting(0.05, 0.0, 1.0,
        doc='Warmup longer than this fraction of training: extend training by the warmup.')
    post_warmup_factor: float = _setting(2.0, 0.0,
        doc='post_warmup_steps = this x warmup_steps.')
    warmup_lr_factor: float = _setting(10.0, 1.0,
        doc='Base LR to aim for with warmup = this x the unstable LR.')
    lower_lr_factor: float = _setting(0.3, 0.0, 1.0, lo_open=True, hi_open=True,
        doc='Last resort: multiply the LR by this.')

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_value(f.name, getattr(self, f.name), f.metadata.get("range"))

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @staticmethod
    def docs() -> dict[str, str]:
        """Field name -> what it means."""
        return {f.name: f.metadata["doc"] for f in fields(AnalysisConfig)}

    @staticmethod
    def allowed(name: str) -> str:
        """The allowed values of a setting, in words (for messages and `steadytrain settings`)."""
        f = next((f for f in fields(AnalysisConfig) if f.name == name), None)
        if f is None:
            return "unknown setting"
        if f.name == "warmup_candidates":
            return "comma-separated positive integers, e.g. 10,1000,10000"
        return _describe_range(f.metadata.get("range"), f.type)

    @classmethod
    def from_file(cls, path: str | Path) -> AnalysisConfig:
        """The defaults with a settings file applied: a YAML/JSON mapping of setting names to values, at its top
        level or under a ``steadytrain:`` key (so one project file can hold other tools' settings too)."""
        data = read_yaml(path, "a YAML/JSON file of settings")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of setting names to values, got {type(data).__name__}")
        if "steadytrain" in data:
            data = data["steadytrain"]
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: 'steadytrain' must hold a mapping of setting names to values, "
                                  f"got {data!r}"[:300])
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"{path}: setting names must be text, got {bad[0]!r}; see `steadytrain settings`")
        try:
            return cls().with_overrides(data)
        except ConfigError as exc:
            raise ConfigError(f"--config {path}: {exc}") from None

    def with_set(self, items: Sequence[str]) -> AnalysisConfig:
        """A copy with ``NAME=VALUE`` items applied (the command line's ``--set``)."""
        pairs = {}
        for item in items:
            name, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--set {item!r}: expected NAME=VALUE, e.g. --set spike_z=6 (see `steadytrain "
                                  "settings`)")
            pairs[name] = value
        return self.with_overrides(pairs)

    def with_overrides(self, overrides: Mapping[str, Any]) -> AnalysisConfig:
        """A copy with ``overrides`` applied; a one-line ConfigError naming the setting and what it allows."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for name, raw in overrides.items():
            key = str(name).replace("-", "_")
            if key not in known:
                raise ConfigError(f"unknown setting {name!r}; known settings: {', '.join(sorted(known))}")
            current = getattr(self, key)
            try:
                value = _coerce(raw, current)
            except (TypeError, ValueError, OverflowError):
                raise ConfigError(f"setting {key}={raw!r}: expected {self.allowed(key)}") from None
            _check_value(key, value, known[key].metadata.get("range"))
            changes[key] = value
        return replace(self, **changes)


def _coerce(raw: Any, current: Any) -> Any:
    if isinstance(current, tuple):
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        values = tuple(int(str(x).strip()) for x in items if str(x).strip())
        if not values or any(v <= 0 for v in values):
            raise ValueError("need positive integers")
        return tuple(sorted(set(values)))
    if isinstance(current, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(text)
        return text in ("1", "true", "yes")
    if isinstance(current, int):
        if isinstance(raw, bool):
            raise TypeError("bool")
        as_float = float(raw)
        if not as_float.is_integer():
            raise ValueError("not an integer")
        return int(as_float)
    if isinstance(raw, bool):
        raise TypeError("bool")
    return float(raw)


def _describe_range(rng: tuple | None, typ: Any) -> str:
    kind = "an integer" if typ in (int, "int") else "a finite number"
    if not rng:
        return kind
    lo, hi, lo_open, hi_open = rng
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return kind + (" " + " and ".join(parts) if parts else "")


def _check_value(name: str, value: Any, rng: tuple | None) -> None:
    if isinstance(value, tuple):
        if not value or any(not isinstance(v, int) or v <= 0 for v in value):
            raise ConfigError(f"setting {name}={value!r}: expected comma-separated positive integers")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise ConfigError(f"setting {name}={value!r}: expected a finite number")
    if not rng:
        return
    lo, hi, lo_open, hi_open = rng
    bad = ((lo is not None and (value < lo or (lo_open and value == lo)))
           or (hi is not None and (value > hi or (hi_open and value == hi))))
    if bad:
        typ = int if isinstance(value, int) else float
        raise ConfigError(f"setting {name}={value!r}: expected {_describe_range(rng, typ)}")
