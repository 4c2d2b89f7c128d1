"""Printed logs whose step and metrics are not on one line (analyzer/ingest/text_stacked.py): blocks (OLMo,
Composer) and tables (fastai, spaCy, a Trainer table copied as markdown), each written from the tool's own
format strings; every value is read at its step, the roles are found, and the verdict is right both ways."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from analyzer.ingest.load import LoadOptions
from analyzer.pipeline import analyze
from tests.printed_formats import Curve, make_curve


def _olmo_float(value: float) -> str:
    """allenai/OLMo olmo/train.py Trainer.log_metrics_to_console's format_float."""
    if not math.isfinite(value):
        return str(value)
    if value < 0.0001:
        return str(value)
    if value > 1000:
        return f"{int(value):,d}"
    if value > 100:
        return f"{value:.1f}"
    if value > 10:
        return f"{value:.2f}"
    if value > 1:
        return f"{value:.3f}"
    return f"{value:.4f}"


def write_olmo(path: Path, curve: Curve) -> None:
    """OLMo's trainer under its non-interactive logging format ('%(asctime)s\\t%(hostname)s:%(local_rank)s\\t
    %(name)s:%(lineno)s\\t%(levelname)s\\t%(message)s'): log.info(f"{prefix}\\n" + "\\n".join(f"    {name}=
    {format_float(value)}")) with prefix f"[step={global_step}/{max_steps}]"; eval metrics under the evaluator's
    label, keys 'eval/{label}/CrossEntropyLoss'; of the optim/ metrics only optim/total_grad_norm is printed."""
    head = "2024-02-01 10:12:33.123\tjupiter-cs-aus-123:0\tolmo.train:{line}\tINFO\t"
    out = [head.format(line=590) + "Loading checkpoint...", head.format(line=601) + "Starting training..."]
    evals = curve.eval_at()
    for i, s in enumerate(curve.steps):
        out.append(head.format(line=816) + f"[step={s}/{curve.total_steps}]")
        loss = curve.train_loss[i]
        metrics = {"train/CrossEntropyLoss": loss, "train/Perplexity": math.exp(min(loss, 700.0)),
                   "throughput/total_tokens": 4_194_304.0 * s, "throughput/device/tokens_per_second": 9_012.5,
                   "optim/total_grad_norm": curve.grad_norm[i] if curve.grad_norm else 1.0,
                   "System/Peak GPU Memory (MB)": 31_337.0}  # of optim/*, only the grad norm is printed
        out += [f"    {k}={_olmo_float(v)}" for k, v in metrics.items()]
        if s in evals:
            out.append(head.format(line=702) + "c4_en-validation")
            out += [f"    eval/c4_en-validation/CrossEntropyLoss={_olmo_float(evals[s])}",
                    f"    eval/c4_en-validation/Perplexity={_olmo_float(math.exp(min(evals[s], 700.0)))}"]
    path.write_text("\n".join(out) + "\n")


def write_composer(path: Path, curve: Curve) -> None:
    """mosaicml/composer composer/loggers/console_logger.py log_to_console: f'[{unit}={cur}/{total}]' + ':' then
    f'\\n\\t {prefix}{name}: {format_log_data_value(v)}' (floats '.4f', ints str) with prefix 'Train '; an evaluation
    prints f'[Eval batch={b}/{n}] Eval on {label} data' at deciles and, with its metrics, once at eval_end."""
    out = ["******************************", "Config:", "enabled_algorithms/GradientClipping: true", "node_name: "
           "unknown because NODENAME environment variable not set", "num_gpus_per_node: 1", "num_nodes: 1",
           "rank_zero_seed: 17", "******************************"]
    evals = curve.eval_at()
    for i, s in enumerate(curve.steps):
        out.append(f"[batch={s}/{curve.total_steps}]:")
        out += [f"\t Train time/batch: {s - 1}", f"\t Train time/sample: {(s - 1) * 8}",
                f"\t Train time/batch_in_epoch: {s - 1}", f"\t Train time/token: {(s - 1) * 8192}",
                "\t Train trainer/device_train_microbatch_size: 8",
                f"\t Train loss/train/total: {curve.train_loss[i]:.4f}",
                f"\t Train metrics/train/LanguageCrossEntropy: {curve.train_loss[i]:.4f}",
                f"\t Train lr-DecoupledAdamW/group0: {curve.lr_at(i):.4f}",
                f"\t Train time/train: {0.0012 * s:.4f}"]
        if s in evals:
            out += [f"[Eval batch={b}/10] Eval on eval data" for b in (1, 2, 4, 6, 8)]
            out += ["[Eval batch=10/10] Eval on eval data:",
                    f"\t Eval metrics/eval/LanguageCrossEntropy: {evals[s]:.4f}",
                    f"\t Eval metrics/eval/LanguagePerplexity: {math.exp(min(evals[s], 700.0)):.4f}"]
    path.write_text("\n".join(out) + "\n")


def write_fastai(path: Path, curve: Curve) -> None:
    """fastai's Recorder through fastprogress' console bar (ConsoleMasterBar.write(table=True)): names padded to
    8 and joined by two spaces; each row's values (epoch as int, losses and metrics f'{v:.6f}', time 'mm:ss')
    each padded to its name's width + 2."""
    names = ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    padded = [n + " " * (8 - len(n)) if len(n) < 8 else n for n in names]
    out = ["  ".join(padded)]
    evals = curve.eval_at()
    for i, s in enumerate(curve.steps):
        valid = evals.get(s, math.nan)
        acc = 0.1 + 0.85 * math.exp(-valid) if math.isfinite(valid) else math.nan
        cells = [str(i), f"{curve.train_loss[i]:.6f}", f"{valid:.6f}", f"{acc:.6f}", f"00:{12 + i % 40:02d}"]
        out.append("".join(c + " " * (2 + len(n) - len(c)) for c, n in zip(cells, padded)))
    path.write_text("\n".join(out) + "\n")


def write_spacy(path: Path, curve: Curve) -> None:
    """explosion/spaCy spacy/training/loggers.py console_logger: wasabi table, header ["E", "#", "LOSS NER",
    "ENTS_F", "ENTS_P", "ENTS_R", "SCORE"] with a rule of dashes, losses '{:.2f}', scores x100 '{:.2f}',
    numbers right-aligned; '#' counts optimizer steps."""
    widths = [3, 6, 8, 6, 6, 6, 6]
    header = ["E", "#", "LOSS NER", "ENTS_F", "ENTS_P", "ENTS_R", "SCORE"]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    for i, s in enumerate(curve.steps):
        f = 100 * (1 - math.exp(-i / 10))
        cells = [str(i // 20), str(s), f"{curve.train_loss[i]:.2f}", f"{f:.2f}", f"{f:.2f}", f"{f:.2f}",
                 f"{f / 100:.2f}"]
        out.append("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(cells, widths))))
    path.write_text("\n".join(out) + "\n")


def write_trainer_table(path: Path, curve: Curve) -> None:
    """The Trainer's results table as transformers' model cards write it (modelcard.py make_markdown_table), printed
    to a script's log (a model card's README.md itself is not read: any README may hold a table):
    '| Training Loss | Epoch | Step | Validation Loss |', a ':---:' rule, then one row per evaluation; a training
    loss not logged yet prints 'No log'."""
    out = ["## Training results", "", "| Training Loss | Epoch | Step | Validation Loss |",
           "|:-------------:|:-----:|:----:|:---------------:|"]
    evals = curve.eval_at()
    for i, s in enumerate(curve.steps):
        if s in evals:
            out.append(f"| {curve.train_loss[i]:.4f} | {s / curve.total_steps * 3:.4f} | {s} | {evals[s]:.4f} |")
    path.write_text("\n".join(out) + "\n")


Writer = Callable[[Path, Curve], None]
#: tool -> (writer, file name, its curve, the printed name of each role, whether its eval loss has points)
CASES: dict[str, tuple[Writer, str, Callable[[bool], Curve], dict[str, str]]] = {
    "olmo": (write_olmo, "train.log", lambda d: make_curve(60, every=10, nan_from=55 if d else None),
             {"train_loss": "train/CrossEntropyLoss", "eval_loss": "eval/c4_en-validation/CrossEntropyLoss",
              "grad_norm": "optim/total_grad_norm"}),
    "composer": (write_composer, "stdout.txt", lambda d: make_curve(60, every=10, nan_from=55 if d else None),
                 {"train_loss": "Train loss/train/total", "eval_loss": "Eval metrics/eval/LanguageCrossEntropy",
                  "lr": "Train lr-DecoupledAdamW/group0"}),
    "fastai": (write_fastai, "train.log", lambda d: make_curve(40, start=2.3, end=0.3, eval_every=1,
                                                              nan_from=35 if d else None),
               {"train_loss": "train_loss", "eval_loss": "valid_loss"}),
    "spacy": (write_spacy, "train.log", lambda d: make_curve(60, every=200, start=90.0, end=5.0,
                                                            nan_from=55 if d else None),
              {"train_loss": "LOSS NER"}),
    "trainer_table": (write_trainer_table, "train.log", lambda d: make_curve(60, every=50, start=2.3, end=0.4,
                                                                           eval_every=1, nan_from=55 if d else None),
                      {"train_loss": "Training Loss", "eval_loss": "Validation Loss"}),
}


def _report(tmp_path: Path, name: str, diverge: bool):
    writer, filename, curve_of, _ = CASES[name]
    curve = curve_of(diverge)
    folder = tmp_path / name
    folder.mkdir(parents=True)
    writer(folder / filename, curve)
    return curve, analyze([folder], load_options=LoadOptions(cache_dir=None))


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_role_is_read_at_its_printed_steps(tmp_path, name):
    curve, report = _report(tmp_path, name, diverge=False)
    (d,) = report.diagnoses
    for role, printed in CASES[name][3].items():
        assert getattr(d.run.roles, role) == printed, (role, d.run.tags)
    series = d.run.series(d.run.roles.train_loss)
    if name == "trainer_table":  # one row per evaluation
        keep = [i for i, s in enumerate(curve.steps) if s in curve.eval_at()]
    else:
        keep = list(range(len(curve.steps)))
    expected_steps = [curve.steps[i] if name not in ("fastai",) else i for i in keep]
    assert series.steps.tolist() == expected_steps
    printed = {"olmo": lambda v: float(_olmo_float(v)), "spacy": lambda v: round(v, 2),
               "fastai": lambda v: round(v, 6)}.get(name, lambda v: round(v, 4))
    assert np.allclose(series.values, [printed(curve.train_loss[i]) for i in keep], rtol=0, atol=1e-9)
    if d.run.roles.eval_loss and name not in ("fastai", "trainer_table"):
        evals = d.run.series(d.run.roles.eval_loss)
        assert evals.steps.tolist() == [s for s in curve.eval_steps if s > 0]
    assert not [n for n in d.run.notes if n.kind == "noise" and "train" in n.message and n.count > 20], d.run.notes


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_run_that_ends_in_nan_diverged_and_a_healthy_one_is_stable(tmp_path, name):
    _, report = _report(tmp_path / "nan", name, diverge=True)
    assert report.diagnoses[0].verdict == "divergence", [f.message for f in report.diagnoses[0].findings]
    _, report = _report(tmp_path / "ok", name, diverge=False)
    assert report.diagnoses[0].verdict == "stable", [f.message for f in report.diagnoses[0].findings]


def test_a_block_is_read_only_under_a_counter_and_only_when_it_repeats(tmp_path):
    # a config dump (name=value lines under a heading with no counter) and one lone block: not a training log
    lines = ["Config:", "    lr=0.001", "    batch_size=32", "    warmup=100", "[step=1/100]", "    loss=2.31",
             "    grad_norm=1.2", "done"]
    path = tmp_path / "run.log"
    path.write_text("\n".join(lines) + "\n")
    from analyzer.errors import SteadytrainError

    with pytest.raises(SteadytrainError, match="no readable training logs"):
        analyze([tmp_path], load_options=LoadOptions(cache_dir=None))


def test_a_table_needs_a_counter_column(tmp_path):
    # a results table with no step or epoch column (a benchmark summary) is not read as a training log
    rows = ["model     params  top1    top5", *[f"resnet{d}  {d}.5     7{d % 10}.12   9{d % 10}.01" for d in
                                             (18, 34, 50, 101)]]
    (tmp_path / "results.txt").write_text("\n".join(rows) + "\n")
    from analyzer.errors import SteadytrainError

    with pytest.raises(SteadytrainError, match="no readable training logs"):
        analyze([tmp_path], load_options=LoadOptions(cache_dir=None))


def _read(tmp_path: Path, text: str):
    (tmp_path / "train.log").write_text(text)
    (d,) = analyze([tmp_path], load_options=LoadOptions(cache_dir=None)).diagnoses
    return d


def test_a_finished_progress_bar_heads_no_block(tmp_path):
    # a plain tqdm loop: the bar's last redraw (782/782, the same every epoch) then the epoch's loss on its own
    text = "".join(f"100%|##########| 782/782 [00:21<00:00, 36.4it/s]\nloss: {2.4 - e / 10:.4f}\n" for e in range(8))
    d = _read(tmp_path, text)
    assert d.run.series("loss").steps.tolist() == list(range(1, 9))


def test_a_table_cell_with_a_space_and_a_missing_value(tmp_path):
    # what the Trainer prints when logging_steps > eval_steps, copied from a notebook (tab-separated)
    rows = ["Step\tTraining Loss\tValidation Loss", "500\tNo log\t0.512", "1000\t0.612\t0.481", "1500\tNo log\t0.455",
            "2000\t0.380\t0.440", "2500\t0.360\t0.430"]
    d = _read(tmp_path, "\n".join(rows) + "\n")
    assert d.run.series("Validation Loss").steps.tolist() == [500, 1000, 1500, 2000, 2500]
    assert d.run.series("Training Loss").steps.tolist() == [1000, 2000, 2500]


def test_block_steps_keep_their_sign_and_a_step_past_int64_refuses_the_file(tmp_path):
    blocks = "".join(f"[step={s}]\n    loss={2.5 - s / 10:.3f}\n    time/step=2.3ms\n    grad_norm=1.0\n"
                     for s in (-3, -2, -1, 1, 2, 3, 4))
    (tmp_path / "signed").mkdir()
    d = _read(tmp_path / "signed", blocks)
    assert d.run.series("loss").steps.tolist() == [-3, -2, -1, 1, 2, 3, 4]
    assert d.run.series("grad_norm").steps.tolist() == [-3, -2, -1, 1, 2, 3, 4]  # a unit line does not end a block
    assert d.run.series("time/step_ms").values.tolist() == [2.3] * 7
    from analyzer.errors import SteadytrainError

    (tmp_path / "huge").mkdir()
    table = "step  loss  grad_norm\n1  2.3  1.0\n2  2.2  1.0\n3  2.1  1.0\n1e30  2.0  1.0\n"
    (tmp_path / "huge" / "train.log").write_text(table)
    with pytest.raises(SteadytrainError, match="64-bit step counter"):
        analyze([tmp_path / "huge"], load_options=LoadOptions(cache_dir=None))
