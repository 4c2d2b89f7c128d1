"""Outputs never destroy anything: no command writes over one of its inputs, a device or its other output,
`-` means stdout (never a file named "-"), and every report is written atomically (a failed render leaves
the previous file as it was)."""

import json
import os
import stat
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.errors import ConfigError
from analyzer.outputs import Output, check_outputs, write_atomic
from tests.writers import curve, write_jsonl, write_summarywriter


def _jsonl_run(tmp_path):
    path = write_jsonl(tmp_path / "runs" / "a" / "metrics.jsonl",
                       [{"step": s, "loss": float(v)} for s, v in enumerate(curve(200))])
    return tmp_path / "runs", path


def _cli(*args):
    """The command in this process (CliRunner keeps stdout and stderr apart): (exit code, stdout, stderr)."""
    res = CliRunner().invoke(main, [str(a) for a in args])
    return SimpleNamespace(returncode=res.exit_code, stdout=res.stdout, stderr=res.stderr)


def _refused(args, needle):
    proc = _cli(*args)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert needle in proc.stderr, (needle, proc.stderr)
    return proc


def test_an_input_file_is_never_an_output(tmp_path):
    runs, log = _jsonl_run(tmp_path)
    before = log.read_bytes()
    link = tmp_path / "link.json"
    link.symlink_to(log)
    hard = tmp_path / "hard.json"
    os.link(log, hard)
    for cmd in (["inspect", log, "--no-cache", "--json", log],
                ["inspect", runs, "--no-cache", "--json", log],  # a log inside the input directory
                ["report", log, "--no-cache", "-o", log],
                ["report", log, "--no-cache", "--json", link],  # a symlink to it
                ["report", log, "--no-cache", "--no-html", "--json", hard],  # a hard link to it
                ["report", f"file://{log}", "--no-cache", "--no-html", "--json", log],
                ["watch", runs, "--no-cache", "--once", "--json", log]):
        _refused(cmd, "--json" if "--json" in cmd else "-o/--output")
        assert log.read_bytes() == before, cmd
    # an earlier report of ours inside the input directory may be written again
    out = runs / "report.json"
    for _ in range(2):
        proc = _cli("inspect", runs, "--no-cache", "--json", out)
        assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["tool"]["name"] == "steadytrain"
    # but no other file there: a README beside the logs is not ours to replace
    (runs / "notes.txt").write_text("mine")
    _refused(["report", runs, "--no-cache", "-o", runs / "notes.txt"], "not a steadytrain report")
    assert (runs / "notes.txt").read_text() == "mine"


def test_devices_fifos_and_the_other_output_are_refused_before_any_work(tmp_path):
    runs, _ = _jsonl_run(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _refused(["report", runs, "--no-cache", "--no-html", "--json", fifo], "is a FIFO (named pipe), not a regular file")
    _refused(["watch", runs, "--no-cache", "--once", "-o", "/dev/null"], "is a character device")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    _refused(["report", runs, "--no-cache", "-o", tmp_path / "x", "--json", tmp_path / "x"], "name the same file")
    _refused(["report", runs, "--no-cache", "-o", tmp_path / "x", "--json", tmp_path / "sub" / ".." / "x"],
             "name the same file")
    assert not (tmp_path / "x").exists()
    # refused before reading: a path that does not exist is not even looked at
    _refused(["report", tmp_path / "missing", "-o", tmp_path / "y", "--json", tmp_path / "y"], "name the same file")


def test_dash_is_stdout_for_json_and_never_a_file(tmp_path, monkeypatch):
    runs, _ = _jsonl_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    proc = _cli("inspect", runs, "--no-cache", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # stdout is the JSON and nothing else; the summary went to stderr
    assert [r["id"] for r in data["runs"]] == ["a/metrics.jsonl"] and "1 run(s)" in proc.stderr
    proc = _cli("report", runs, "--no-cache", "-o", tmp_path / "r.html", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["schema_version"] == 1 and "HTML report:" in proc.stderr
    _refused(["report", runs, "--no-cache", "-o", "-"], "-o/--output -: this output cannot go to stdout")
    _refused(["watch", runs, "--no-cache", "--once", "--json", "-"], "--json -: this output cannot go to stdout")
    assert not (tmp_path / "-").exists()


def test_a_failed_render_or_write_leaves_the_previous_report_intact(tmp_path, monkeypatch):
    import reporters.html as html
    import reporters.json_report as json_report

    write_summarywriter(tmp_path / "logs" / "ok", {"train/loss": curve(300)})
    out, js = tmp_path / "report.html", tmp_path / "report.json"
    args = ["report", str(tmp_path / "logs"), "--no-cache", "-o", str(out), "--json", str(js)]
    assert CliRunner().invoke(main, args).exit_code == 0
    old_html, old_json = out.read_bytes(), js.read_bytes()

    def broken(*a, **k):
        raise ValueError("the renderer failed half way")

    def unwritable(*a, **k):
        return "<!doctype html>" + "\udcff" * 10  # text no encoder takes: the write itself fails

    monkeypatch.setattr(json_report, "report_dict", broken)
    assert CliRunner().invoke(main, args).exit_code == 3
    monkeypatch.setattr(html, "render_html", unwritable)
    assert CliRunner().invoke(main, args[:-2]).exit_code == 3  # the HTML alone
    assert out.read_bytes() == old_html and js.read_bytes() == old_json  # not truncated to 0 bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "report.html", "report.json"]  # no temp file left


def test_write_atomic_keeps_the_old_file_on_a_failed_write_and_its_permissions(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    target.write_text("old")
    target.chmod(0o640)
    real_replace = os.replace

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError):
        write_atomic(target, "new" * 1000)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]
    monkeypatch.setattr(os, "replace", real_replace)
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    write_atomic(link, "new")  # written through the link: the link stays a link
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_check_outputs_is_one_place_for_every_command(tmp_path):
    log = tmp_path / "a.jsonl"
    log.write_text('{"step": 1, "loss": 1}\n')
    with pytest.raises(ConfigError, match="is the input"):
        check_outputs([Output("--out", log)], [f"file://{log}"])
    check_outputs([Output("--json", tmp_path / "new.json")], ["s3://bucket/runs"])  # a URL is never a local file


def test_probe_refuses_a_report_over_its_own_spec(tmp_path):
    from probes.spec import ProbeSpec, dump_spec

    spec = dump_spec(ProbeSpec(workload="builtin:divergent_mlp"), tmp_path / "probe_report.json")
    before = spec.read_bytes()
    _refused(["probe", spec, "--out", tmp_path], "is the input")
    assert spec.read_bytes() == before


def test_watch_writes_its_live_report_atomically_and_refuses_an_input(tmp_path):
    loss = curve(300)
    loss[200:] = np.nan
    write_summarywriter(tmp_path / "logs" / "bad", {"train/loss": loss})
    live = tmp_path / "live.html"
    proc = _cli("watch", tmp_path / "logs", "--no-cache", "--once", "-o", live, "--json", tmp_path / "live.json")
    assert proc.returncode == 0, proc.stderr
    assert live.read_text().startswith("<!doctype html>") and json.loads((tmp_path / "live.json").read_text())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
