"""The command line: verdicts, JSON contract, exit codes, one-line errors, documented options."""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from analyzer.cli import main
from tests.writers import curve, event_file, flip_byte, write_jsonl, write_summarywriter


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


def test_role_override_changes_the_verdict(tmp_path):
    """--role must matter: the named tag diverges, the one picked by name does not."""
    objective = curve(300, seed=3)
    objective[200:] = np.nan
    write_summarywriter(tmp_path / "logs" / "run", {"train/loss": curve(300), "custom/objective": objective})
    args = ["inspect", str(tmp_path / "logs"), "--no-cache", "--fail-on", "divergence"]
    by_name = CliRunner().invoke(main, args)
    assert by_name.exit_code == 0, by_name.output
    overridden = CliRunner().invoke(main, [*args, "--role", "train_loss=custom/objective"])
    assert overridden.exit_code == 1, overridden.output
    assert "--fail-on divergence: 1 run(s)" in overridden.output


def _one_line_exit_2(args, needle=None):
    proc = subprocess.run([sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True)
    assert proc.returncode == 2, (args, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) <= 3, proc.stderr  # click's own usage errors take three lines (usage, hint, error)
    if needle is not None:
        assert needle in proc.stderr, (needle, proc.stderr)
    return proc.stderr


def test_bad_input_is_one_line_exit_2(tmp_path):
    for args in (["inspect", str(tmp_path / "nope")], ["inspect", str(tmp_path)],
                 ["inspect", str(tmp_path), "--role", "speed=x"], ["inspect", str(tmp_path), "--set", "nope=1"],
                 ["inspect", str(tmp_path), "--set", "spike_z"], ["inspect", "--nope", str(tmp_path)]):
        _one_line_exit_2(args)


def test_bad_config_files_are_one_line_errors_naming_the_file(tmp_path):
    logs = _logs(tmp_path)
    cases = {
        "binary.yaml": (bytes(range(256)), "binary content"),
        "latin1.yaml": ("spike_z: 6\nname: caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
        "scalar.yaml": (b"steadytrain: 5\n", "'steadytrain' must hold a mapping"),
        "list.yaml": (b"- spike_z\n", "expected a mapping of setting names to values, got list"),
        "unknown.yaml": (b"spike_z: 6\nmystery: 1\n", "unknown setting 'mystery'"),
        "intkey.yaml": (b"1: 2\n", "setting names must be text, got 1"),
        "broken.yaml": (b"spike_z: [1, 2\n", "not valid YAML/JSON"),
    }
    for name, (content, needle) in cases.items():
        (tmp_path / name).write_bytes(content)
        err = _one_line_exit_2(["inspect", str(logs), "--no-cache", "--config", str(tmp_path / name)], needle)
        assert str(tmp_path / name) in err and len(err.strip().splitlines()) == 1


def test_outputs_that_cannot_be_written_are_one_line_errors(tmp_path):
    logs = _logs(tmp_path)
    (tmp_path / "afile").write_text("x")
    err = _one_line_exit_2(["report", str(logs), "--no-cache", "-o", str(tmp_path / "afile" / "r.html")],
                           "is a file, not a directory")
    assert len(err.strip().splitlines()) == 1
    assert "File exists" not in err and str(tmp_path / "afile") in err
    _one_line_exit_2(["inspect", str(logs), "--no-cache", "--json", str(tmp_path / "afile" / "sub" / "o.json")],
                     "is a file, not a directory")
    _one_line_exit_2(["report", str(logs), "--no-cache", "-o", str(tmp_path)], "is a directory")
    if os.path.exists("/dev/full"):
        for args in (["inspect", str(logs), "--no-cache", "--json", "/dev/full"],
                     ["report", str(logs), "--no-cache", "--no-html", "--json", "/dev/full"]):
            _one_line_exit_2(args, "--json /dev/full: is a character device, not a regular file")


def test_an_internal_error_exits_3_with_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    import reporters.json_report as json_report

    logs = _logs(tmp_path)
    real = json_report.run_dict

    def broken(d):
        if d.run.id == "bad":
            raise ZeroDivisionError("float division by zero")
        return real(d)

    monkeypatch.setattr(json_report, "run_dict", broken)
    args = ["inspect", str(logs), "--no-cache", "--json", str(tmp_path / "o.json"), "--fail-on", "divergence"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 3, res.output  # never 1: a crash must not look like a --fail-on verdict
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("steadytrain: internal error while writing run 'bad' to the JSON report: "
                           "ZeroDivisionError: float division by zero (at reporters/json_report.py:")
    assert line.endswith("); run again with --debug for the traceback")
    for debug_args in (["--debug", *args], [*args, "--debug"]):
        res = CliRunner().invoke(main, debug_args)
        assert res.exit_code == 3
        assert "Traceback (most recent call last)" in res.stderr and "ZeroDivisionError" in res.stderr
        assert "--debug for the traceback" not in res.stderr


@pytest.mark.parametrize("target,exc", [
    ("analyzer.ingest.load.discover", RuntimeError("discovery bug")),
    ("analyzer.engine.find_sweeps", ValueError("sweep bug")),
    ("reporters.terminal.render_inspect", KeyError("render bug")),
    ("analyzer.pipeline.load_runs", MemoryError()),
])
def test_every_uncaught_exception_maps_to_exit_3(tmp_path, monkeypatch, target, exc):
    logs = _logs(tmp_path)
    module, name = target.rsplit(".", 1)

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(importlib.import_module(module), name, boom)
    res = CliRunner().invoke(main, ["inspect", str(logs), "--no-cache", "--fail-on", "early"])
    assert res.exit_code == 3, res.output
    assert res.stderr.startswith(f"steadytrain: internal error: {type(exc).__name__}")
    assert len(res.stderr.strip().splitlines()) == 1


def test_ctrl_c_exits_130(tmp_path, monkeypatch):
    import analyzer.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(analyzer.pipeline, "load_runs", interrupted)
    res = CliRunner().invoke(main, ["inspect", str(_logs(tmp_path)), "--no-cache"])
    assert res.exit_code == 130 and res.stderr.strip() == "interrupted"


def test_verbose_logs_every_file_read_and_skipped(tmp_path):
    logs = _logs(tmp_path)
    (logs / "notes.txt").write_text("not a log")
    quiet = CliRunner().invoke(main, ["inspect", str(logs), "--no-cache"])
    assert "INFO" not in quiet.stderr
    res = CliRunner().invoke(main, ["-v", "inspect", str(logs), "--no-cache"])
    assert res.exit_code == 0, res.output
    read = [ln for ln in res.stderr.splitlines() if ln.startswith("INFO analyzer.ingest.load: read ")]
    skipped = [ln for ln in res.stderr.splitlines() if ln.startswith("INFO analyzer.ingest.load: skipped ")]
    assert len(read) == 2 and all("tfevents" in ln and "-> run " in ln for ln in read)
    assert len(skipped) == 1
    # a .txt could be JSONL or a printed log: the reason says why it is neither
    assert skipped[0].startswith(f"INFO analyzer.ingest.load: skipped {logs / 'notes.txt'}: no JSON object per line "
                                 "in its first lines: not a JSONL log; ")


def test_crc_flags(tmp_path):
    write_summarywriter(tmp_path / "logs" / "a", {"train/loss": curve(50)})
    flip_byte(event_file(tmp_path / "logs" / "a"), 6)
    runs = {}
    for flag in (None, "--no-verify-crc", "--strict-crc"):
        out = tmp_path / f"{flag}.json"
        res = CliRunner().invoke(main, ["inspect", str(tmp_path / "logs"), "--no-cache", "--json", str(out),
                                        *([flag] if flag else [])])
        assert res.exit_code == 0, res.output
        runs[flag] = json.loads(out.read_text())["runs"][0]
    assert runs[None]["stats"]["points"] == runs["--strict-crc"]["stats"]["points"] == 49
    assert any(n["kind"] == "corrupt" for n in runs[None]["notes"])
    assert runs["--no-verify-crc"]["stats"]["points"] == 50
    res = CliRunner().invoke(main, ["inspect", str(tmp_path / "logs"), "--no-cache", "--strict-crc"])
    assert "--strict-crc is deprecated" in res.stderr


def test_the_same_path_twice_counts_once(tmp_path):
    logs = _logs(tmp_path)
    res = CliRunner().invoke(main, ["inspect", str(logs), str(logs), "--no-cache", "--json", str(tmp_path / "o.json")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "o.json").read_text())
    assert sorted(r["id"] for r in data["runs"]) == ["bad", "ok"] and len(data["inputs"]) == 2


def test_report_table_says_how_many_runs_it_does_not_show(tmp_path):
    for i in range(12):
        write_jsonl(tmp_path / "logs" / f"run{i:02d}.jsonl", [{"step": s, "loss": 2.0 / (s + 1)} for s in range(30)])
    res = CliRunner().invoke(main, ["report", str(tmp_path / "logs"), "--no-cache", "--no-html"])
    assert res.exit_code == 0, res.output
    assert sum(1 for ln in res.output.splitlines() if ".jsonl" in ln) == 10
    assert "… and 2 more run(s), not shown (12 in all" in res.output


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


def test_control_characters_in_names_never_reach_the_terminal(tmp_path):
    evil = "run\x1b[2J\x07\nx"
    write_jsonl(tmp_path / "logs" / evil / "log.jsonl", [{"step": s, "loss": float("nan") if s > 20 else 1.0}
                                                          for s in range(30)])
    res = CliRunner().invoke(main, ["inspect", str(tmp_path / "logs"), "--no-cache", "-a", "--fail-on", "divergence"])
    assert res.exit_code == 1, res.output
    assert "\x1b" not in res.output and "\x07" not in res.output
    assert "run\\x1b[2J\\x07\\x0ax" in res.stdout and "run\\x1b[2J\\x07\\x0ax" in res.stderr
