"""Detectors on curves shaped like the playbook's cases, and the ones that must NOT be flagged."""

import numpy as np
import polars as pl
import pytest

from analyzer.config import AnalysisConfig
from analyzer.pipeline import diagnose_run
from analyzer.roles import assign_roles
from analyzer.types import Run
from tests.writers import curve

CFG = AnalysisConfig()


def make_run(series: dict, *, steps=None, run_id="r", hparams=None, fmt="tensorboard") -> Run:
    frames = []
    for tag, values in series.items():
        values = np.asarray(values, dtype=float)
        s = np.arange(values.size) if steps is None else np.asarray(steps)
        frames.append(pl.DataFrame({"tag": [tag] * values.size, "step": s.astype(np.int64),
                                    "wall_time": np.zeros(values.size), "value": values}))
    points = pl.concat(frames)
    return Run(run_id, fmt, (), points, hparams or {}, (), assign_roles({t: len(v) for t, v in series.items()}))


def verdict(series, **kw):
    d, _ = diagnose_run(make_run(series, **kw), CFG)
    return d


def grad(n, seed=9):
    return curve(n, start=4.0, end=1.0, seed=seed, noise=0.1)


# -- the cases to catch ------------------------------------------------------------------------

def test_early_adam_spike_of_two_steps_at_3x_initial():
    loss = curve(2000, seed=1)
    loss[3:5] = loss[0] * 3.0
    d = verdict({"loss": loss})
    assert d.verdict == "early_instability"
    ev = d.findings[0].evidence
    assert ev.shape == "early_rise" and ev.peak_step == 3 and ev.ratio == pytest.approx(3.0, rel=0.05)
    assert ev.recovered_step == 5


def test_early_thrash_that_recovers_into_slow_training():
    rng = np.random.default_rng(0)
    loss = curve(1000, seed=2, start=2.3, end=1.2)
    loss[:60] = 2.3 * np.exp(rng.normal(0, 0.6, 60))
    d = verdict({"loss": loss, "grad_norm": np.r_[rng.lognormal(3, 1, 60), grad(940)]})
    assert d.verdict == "early_instability"
    assert d.findings[0].evidence.recovered_step is not None and d.findings[0].start_step < 60
    kinds = [r.kind for r in d.recommendations]
    assert kinds[0] == "warmup" and "clip" in kinds


def test_mid_training_spike_led_by_grad_norm():
    loss, g = curve(3000, seed=3), grad(3000)
    loss[2000:2300] *= np.linspace(5, 1, 300)
    g[1997] *= 15
    d = verdict({"loss": loss, "grad_norm": g})
    assert d.verdict == "mid_instability"
    ev = d.findings[0].evidence
    assert ev.start_step == 2000 and ev.grad_spike_step == 1997 and ev.grad_leads_by_steps > 0
    clip = next(r for r in d.recommendations if r.kind == "clip")
    assert clip.params["max_norm"] == pytest.approx(np.percentile(g, 90))
    assert clip.params["fraction_clipped_overall"] == pytest.approx(0.1, abs=0.01)


def test_figure_7b_rise_then_slow_fall():
    loss = curve(4000, seed=4)
    loss[1500:] = loss[1500:] * np.r_[np.linspace(1, 4, 100), np.linspace(4, 1.3, 2400)]
    assert verdict({"loss": loss}).verdict == "mid_instability"


def test_divergence_nonfinite_and_explosion_and_collapse_below_initial():
    a = curve(500)
    a[300:] = np.nan
    assert verdict({"loss": a}).findings[0].kind == "divergence_nonfinite"
    b = curve(500)
    b[300:] = b[300] * np.exp(np.linspace(0, 5, 200))
    assert verdict({"loss": b}).verdict == "divergence"
    c = curve(500, start=2.3, end=0.2)
    c[300:] = 2.2  # chance level: below the initial 2.3, never recovers
    d = verdict({"loss": c})
    assert d.findings[0].kind == "divergence_collapse" and d.findings[0].evidence.final < d.findings[0].evidence.initial


def test_hf_nan_filter_zero_loss_with_nan_grad_is_divergence():
    loss, g = curve(300), grad(300)
    loss[200:], g[200:] = 0.0, np.nan
    assert verdict({"loss": loss, "grad_norm": g}).verdict == "divergence"


# -- must not flag -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["smooth", "sgd_noise", "rounded", "sparse", "step_lr", "sawtooth", "blip",
                                  "fp16_skips", "decaying_grad", "negative_loss"])
def test_not_flagged(name):
    n = 3000
    loss, g, steps = curve(n, seed=5), grad(n), None
    if name == "sgd_noise":
        loss = curve(n, seed=6, noise=0.15)
    elif name == "rounded":
        loss = np.round(curve(n, seed=7), 2)
    elif name == "sparse":
        loss, g, steps = curve(200, seed=8), grad(200), np.arange(200) * 50
    elif name == "step_lr":
        loss[1000:] *= 0.5
        loss[2000:] *= 0.5
    elif name == "sawtooth":
        loss = loss * (1 + 0.35 * ((np.arange(n) % 300) == 0))
    elif name == "blip":
        loss[1700] *= 2.0
    elif name == "fp16_skips":
        g[[500, 1300, 2100]] = np.inf
    elif name == "decaying_grad":
        g = 200 * np.exp(-np.arange(n) / 50) + grad(n)
    elif name == "negative_loss":
        loss = curve(n, seed=9) - 3.0  # a signed objective, falling from -0.7 to -2.7
    d = verdict({"loss": loss, "grad_norm": g}, steps=steps)
    assert d.verdict == "stable", [f.message for f in d.findings]


@pytest.mark.parametrize("series,kind", [
    ({"eval/loss": curve(5)}, "missing_train_loss"),
    ({"loss": [1.0]}, "too_few_points"),
    ({"loss": np.full(100, 0.7)}, "constant_loss"),
    ({"loss": [np.nan]}, "all_nonfinite"),
])
def test_bad_input_is_insufficient_data_not_a_fake_verdict(series, kind):
    d = verdict(series)
    assert d.verdict == "insufficient_data" and d.findings[0].kind == kind


@pytest.mark.parametrize("values, first_bad", [
    ([2.3] + [np.nan] * 40, 1),  # finite once, NaN from the 2nd logged point on
    ([np.nan] * 40, 0),  # NaN at every point of a run whose steps advance
    ([2.3, 2.2] + [np.inf] * 3, 2),  # a short log that ends in inf
])
def test_a_loss_that_turns_nonfinite_for_good_is_divergence_whatever_its_length(values, first_bad):
    d = verdict({"loss": np.array(values, dtype=float)}, steps=np.arange(len(values)) * 10)
    assert d.verdict == "divergence", [f.message for f in d.findings]
    (f,) = [f for f in d.findings if f.kind == "divergence_nonfinite"]
    assert f.start_step == first_bad * 10


def test_a_train_loss_nan_after_two_points_diverges_even_when_the_eval_loss_is_judged():
    n = 60
    loss = np.full(n, np.nan)
    loss[:2] = [2.3, 2.1]
    d = verdict({"loss": loss, "eval_loss": curve(n, seed=3)})
    assert d.verdict == "divergence" and d.findings[0].start_step == 2


def test_lr_sweep_finds_lr_star_and_edge(tmp_path):
    from analyzer.ingest.load import LoadOptions
    from analyzer.pipeline import analyze
    from tests.writers import write_summarywriter

    shapes = {0.001: curve(400, end=0.8, seed=1), 0.01: curve(400, end=0.3, seed=2)}
    unstable = curve(400, end=0.5, seed=3)
    unstable[250:320] *= np.linspace(4, 1.2, 70)
    shapes[0.1] = unstable
    dead = curve(400, seed=4)
    dead[100:] = np.nan
    shapes[1.0] = dead
    for lr, loss in shapes.items():
        write_summarywriter(tmp_path / f"lr_{lr}", {"train/loss": loss})
    report = analyze([tmp_path], load_options=LoadOptions(cache_dir=None))
    (sweep,) = report.sweeps
    assert sweep.best_lr == 0.01 and sweep.edge_of_instability
    assert sweep.infeasible == ("lr_1.0",) and sweep.unstable == ("lr_0.1",)


def test_clipping_that_would_touch_most_updates_means_lower_the_lr():
    n = 3000
    loss = curve(n, seed=11)
    loss[2000:2300] *= np.linspace(5, 1, 300)
    outlier_led = grad(n)
    outlier_led[1998:2010] *= 20
    d = verdict({"loss": loss, "grad_norm": outlier_led}, hparams={"lr": 0.1})
    clip = next(r for r in d.recommendations if r.kind == "clip")
    assert d.verdict == "mid_instability" and not clip.params.get("clipping_insufficient")
    assert "lower_lr" not in [r.kind for r in d.recommendations]

    quiet = grad(n)
    quiet[2000:2300] *= 0.7  # the grad norm is unremarkable while the loss misbehaves
    d = verdict({"loss": loss, "grad_norm": quiet}, hparams={"lr": 0.1})
    clip = next(r for r in d.recommendations if r.kind == "clip")
    assert clip.params["clipping_insufficient"] and clip.params["fraction_clipped_at_that_threshold"] > 0.5
    lower = next(r for r in d.recommendations if r.kind == "lower_lr")
    assert lower.params["suggested_lr"] == pytest.approx(0.03) and lower is d.recommendations[-1]



def test_a_run_that_never_learned_is_stable_with_a_no_progress_warning():
    """A ReLU net that blows up at step 40 and sits at chance afterwards: not unstable, but flagged."""
    rng = np.random.default_rng(3)
    loss = 2.30 + 0.02 * rng.standard_normal(200)
    loss[40] = 18.0
    d = verdict({"loss": loss})
    assert d.verdict == "stable"
    (f,) = [f for f in d.findings if f.kind == "no_progress"]
    assert f.evidence.best_over_initial >= 0.95 and "never fell below 0.95x" in f.message


def test_no_progress_is_not_said_of_a_log_that_starts_late_or_of_a_run_that_learned():
    rng = np.random.default_rng(4)
    late = verdict({"loss": 0.41 + 0.01 * rng.standard_normal(200)}, steps=np.arange(5000, 5200))
    learned = verdict({"loss": curve(200, seed=5)})
    for d in (late, learned):
        assert d.verdict == "stable" and not [f for f in d.findings if f.kind == "no_progress"]


def test_warmup_snippet_is_safe_to_paste_and_states_the_sweep_at_10x():
    """An early-unstable 1,199-step run at lr 0.01: the snippet keeps the current LR with the longest
    warmup under 10% of training; the sweep over orders of magnitude at 10x the LR is stated, not pasted."""
    loss = curve(1200, seed=1)
    loss[2:4] = loss[0] * 3.0
    d = verdict({"loss": loss}, hparams={"lr": 0.01, "max_steps": 1199}, fmt="hf_trainer_state")
    warm = next(r for r in d.recommendations if r.kind == "warmup")
    assert warm.params["warmup_steps"] == 100 and warm.params["lr"] == 0.01
    assert warm.params["sweep_warmup_steps"] == [10, 100] and warm.params["sweep_base_lr"] == pytest.approx(0.1)
    hf = warm.snippets["hf_trainer"]
    assert "learning_rate=0.01," in hf and "warmup_steps=100" in hf
    assert "then: warmup_steps in [10, 100] at lr=0.1" in hf
    assert "SHORTEST" in warm.rationale and "10x the unstable 0.01" in warm.rationale


def _sweep_report(tmp_path, runs, lrs=None):
    """runs: {relative dir: (config dict or None, loss)} written as JSONL (+ a logged LR) + config.json."""
    import json

    from analyzer.ingest.load import LoadOptions
    from analyzer.pipeline import analyze
    from tests.writers import write_jsonl

    for k, (rel, (config, loss)) in enumerate(runs.items()):
        d = tmp_path / rel
        lr = {"lr": lrs[k]} if lrs else {}
        write_jsonl(d / "metrics.jsonl", [{"step": i, "train_loss": float(v), **lr} for i, v in enumerate(loss)])
        if config is not None:
            (d / "config.json").write_text(json.dumps(config))
    return analyze([tmp_path], load_options=LoadOptions(cache_dir=None))


def test_a_sweep_whose_configs_differ_only_in_lr_and_identity_fields_is_one_sweep(tmp_path):
    """CS336-style: config.json per run with lr, log_dir, checkpoint_dir and a run name that spell the LR."""
    base = {"d_model": 512, "num_layers": 4, "weight_decay": 0.1, "grad_clip": 1.0, "warmup_iters": 250,
            "train_path": "data/train.bin"}
    runs = {}
    for k, lr in enumerate((1e-4, 1e-3, 1e-2, 1e-1)):
        name = f"lr_sweep_{lr:.0e}"
        cfg = {**base, "lr": lr, "log_dir": f"experiments/{name}", "checkpoint_dir": f"ckpt/{name}",
               "wandb_run_name": f"run-{k}-{name}", "seed": k}
        runs[f"experiments/{name}"] = (cfg, curve(300, end=0.3 + 0.2 * abs(k - 1), seed=k))
    report = _sweep_report(tmp_path, runs)
    (sweep,) = report.sweeps
    assert sweep.lrs == (1e-4, 1e-3, 1e-2, 1e-1) and sweep.best_lr == 1e-3


def test_runs_with_nothing_in_common_but_a_folder_or_trainer_bookkeeping_are_not_a_sweep(tmp_path):
    # ten unrelated runs in one folder, each logging its LR, no hyperparameters, different lengths
    runs = {f"runs/model_{k}": (None, curve(100 + 37 * k, seed=k)) for k in range(10)}
    report = _sweep_report(tmp_path / "a", runs, lrs=[10.0 ** -(1 + k / 3) for k in range(10)])
    assert report.sweeps == () and len(report.diagnoses) == 10
    # unrelated fine-tunes whose only shared keys are a trainer's bookkeeping, in different folders
    runs = {f"{proj}/out": ({"max_steps": 300, "num_train_epochs": 1, "train_batch_size": 16,
                             "logging_steps": 10, "learning_rate": lr}, curve(300, seed=k))
            for k, (proj, lr) in enumerate((("whisper", 1e-5), ("llama", 2e-4), ("bert", 5e-5)))}
    assert _sweep_report(tmp_path / "b", runs).sweeps == ()


def test_values_near_the_float_limit_print_no_numpy_warnings(tmp_path):
    import json
    import warnings

    from analyzer import diagnose
    from analyzer.ingest.load import LoadOptions

    with open(tmp_path / "a.jsonl", "w") as fh:
        for s in range(100):
            fh.write(json.dumps({"step": s, "loss": 1e308 if s % 7 == 0 else -1e308 if s % 5 == 0 else 2 / (s + 1)}) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an overflow warning would fail here
        report = diagnose([tmp_path], load_options=LoadOptions(cache_dir=None))
    assert len(report.diagnoses) == 1 and not report.diagnoses[0].failures  # judged, not a failed check
