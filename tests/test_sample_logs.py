"""sample_logs/README.md says what each shipped sample shows; the report on sample_logs must say the same (issue
17: the README's claims had drifted from the report). This test reads the README's own table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analyzer.ingest.load import LoadOptions
from analyzer.pipeline import analyze

ROOT = Path(__file__).resolve().parents[1] / "sample_logs"


def _rows() -> list[dict[str, str]]:
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


@pytest.fixture(scope="module")
def report():
    return analyze([ROOT], load_options=LoadOptions(cache_dir=None))


def test_the_readme_lists_every_run_of_the_report(report):
    assert sorted(r["path"] for r in _rows()) == sorted(d.run.id for d in report.diagnoses)


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r["path"])
def test_each_sample_gets_the_verdict_its_readme_row_says(report, row):
    (d,) = [d for d in report.diagnoses if d.run.id == row["path"]]
    assert d.verdict == row["verdict"], [f.message for f in d.findings]


def test_the_sweep_finds_the_lr_star_the_readme_says(report):
    said = [float(m.group(1)) for r in _rows() if (m := re.search(r"lr\* = (\S+?),", r["what happened"]))]
    (sweep,) = report.sweeps
    assert said == [sweep.best_lr]
    assert "smallest lr tried" in sweep.message.lower()
