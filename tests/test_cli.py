"""The command line: verdicts, JSON contract, exit codes, one-line errors, documented options."""

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from analyzer.cli import main
from tests.writers import curve, write_summarywriter


def _logs(tmp_path):
    write_summarywriter(tmp_path / "logs" / "ok", {"train/loss": curve(300), "train/grad_norm": curve(300) + 1})
    bad = curve(300, seed=3)
    bad[200:] = np.nan
    write_summarywriter(tmp_path / "logs" / "bad", {"train/loss": bad})
    return tmp_path / "logs"


def test_inspect_json_contract_and_fail_on(tmp_path):
    logs = _logs(tmp_path)
    res = CliRunner().invoke(main, ["inspect", str(logs), "--no-cache", "--json", str(tmp_path / "o.json"),
                                    "--fail-on", "divergence"])
    assert res.exit_code == 1, res.output
    data = json.loads((tmp_path / "o.json").read_text())
    assert data["schema_version"] == 1 and "spike_z" in data["config"]
    verdicts = {r["id"]: r["verdict"] for r in data["runs"]}
    assert verdicts == {"bad": "divergence", "ok": "stable"}
    bad = next(r for r in data["runs"] if r["id"] == "bad")
    assert bad["findings"][0]["kind"] == "divergence_nonfinite" and bad["findings"][0]["start_step"] == 200
    assert {i["status"] for i in data["inputs"]} == {"read"}
    ok = CliRunner().invoke(main, ["inspect", str(logs), "--no-cache", "--fail-on", "divergence",
                                   "--role", "train_loss=train/grad_norm"])
    assert ok.exit_code == 1


def test_bad_input_is_one_line_exit_2(tmp_path):
    for args in (["inspect", str(tmp_path / "nope")], ["inspect", str(tmp_path)],
                 ["inspect", str(tmp_path), "--role", "speed=x"], ["inspect", str(tmp_path), "--set", "nope=1"]):
        proc = subprocess.run([sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr


def test_every_option_is_documented():
    for name, cmd in main.commands.items():
        for param in cmd.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.opts} has no help"
    assert "Diagnose training instability" in CliRunner().invoke(main, ["--help"]).output


def test_settings_lists_every_threshold_in_a_form_set_accepts():
    from analyzer.config import AnalysisConfig

    out = CliRunner().invoke(main, ["settings"]).output
    pairs = dict(line.split("=", 1) for line in out.splitlines() if line and not line.startswith(" "))
    assert set(pairs) == set(AnalysisConfig().as_dict())
    assert pairs["warmup_candidates"] == ",".join(str(w) for w in AnalysisConfig().warmup_candidates)
    assert AnalysisConfig().with_overrides(pairs) == AnalysisConfig()  # every value goes back through --set


def test_import_analyzer_stays_light():
    code = ("import sys, analyzer; bad = [m for m in ('torch', 'jinja2', 'matplotlib') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
