"""Every threshold has a default, a doc line and an allowed range; values that would quietly switch
detection off are refused with a one-line error that names the setting and what it allows."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.config import AnalysisConfig
from analyzer.errors import ConfigError


def test_every_setting_has_a_doc_line_and_its_default_passes_its_own_range():
    cfg = AnalysisConfig()
    docs = AnalysisConfig.docs()
    assert set(docs) == set(cfg.as_dict())
    assert all(len(doc) > 20 for doc in docs.values())
    assert cfg.with_overrides(cfg.as_dict()) == cfg  # every default is inside its range


@pytest.mark.parametrize("name,value,allowed", [
    ("clip_percentile", "150", "<= 100"),
    ("baseline_window", "0", ">= 2"),
    ("spike_z", "nan", "a finite number"),
    ("spike_ratio", "inf", "a finite number"),
    ("early_fraction", "5", "<= 1"),
    ("early_fraction", "0", "> 0"),
    ("min_points", "2.5", "an integer"),
    ("warmup_candidates", "10,-5", "positive integers"),
    ("min_undone_share", "yes", "a finite number"),
])
def test_settings_that_would_quietly_disable_detection_are_refused(name, value, allowed):
    with pytest.raises(ConfigError) as err:
        AnalysisConfig().with_overrides({name: value})
    assert name in str(err.value) and allowed in str(err.value)


def test_valid_overrides_are_applied_with_their_types():
    cfg = AnalysisConfig().with_overrides({"spike_z": "8", "min_points": "12.0", "warmup_candidates": "100,10"})
    assert cfg.spike_z == 8.0 and cfg.min_points == 12 and cfg.warmup_candidates == (10, 100)
    assert math.isclose(AnalysisConfig().with_overrides({"early-fraction": 0.2}).early_fraction, 0.2)


def test_messages_follow_the_settings():
    """A message quotes the configured number, not a literal ('> 50%' stays true after --set)."""
    from analyzer.recommend.rules import playbook_clip

    assert "> 30% of updates" in playbook_clip(AnalysisConfig().with_overrides({"max_clipped_fraction": 0.3}))
    assert "80th percentile" in playbook_clip(AnalysisConfig().with_overrides({"clip_percentile": 80}))


def test_a_bad_set_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "run").mkdir()
    result = CliRunner().invoke(main, ["inspect", str(tmp_path), "--set", "clip_percentile=150"])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "clip_percentile" in lines[0] and "Traceback" not in result.output
