"""First contact in CI and at the prompt: gating on runs that could not be judged, -v where --debug goes, an
unreachable Ray cluster answered within a bounded time, file:// paths, messages that name the real cause,
--help listing every format, and the warning that a probe spec is code."""

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.distributed import unreachable_ray_address
from analyzer.ingest import registry
from tests.writers import curve, write_jsonl, write_summarywriter

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _logs(tmp_path):
    logs = tmp_path / "logs"
    write_summarywriter(logs / "ok", {"train/loss": curve(300)})
    write_summarywriter(logs / "short", {"train/loss": curve(3)})  # too few points for a verdict
    return logs


def test_fail_on_unjudged_exits_1_and_the_json_names_the_runs(tmp_path):
    logs = _logs(tmp_path)
    out = tmp_path / "o.json"
    plain = _run("inspect", logs, "--no-cache", "--json", out, "--fail-on", "divergence")
    assert plain.exit_code == 0, plain.output  # an unjudged run fails nothing unless asked
    data = json.loads(out.read_text())
    assert [u["run"] for u in data["unjudged"]] == ["short"] and "finite point" in data["unjudged"][0]["reason"]
    for cmd in (["inspect"], ["report", "--no-html"]):
        res = _run(*cmd, logs, "--no-cache", "--fail-on-unjudged")
        assert res.exit_code == 1, res.output
        assert "--fail-on-unjudged: 1 run(s) could not be judged: short" in res.stderr


def test_verbose_goes_after_the_subcommand_like_debug(tmp_path):
    logs = _logs(tmp_path)
    for args in (["-v", "inspect", logs], ["inspect", logs, "-v"], ["inspect", "-v", logs]):
        res = _run(*args, "--no-cache")
        assert res.exit_code == 0, res.output
        assert "INFO analyzer.ingest.load: read " in res.stderr, args


def test_an_unreachable_ray_cluster_is_one_line_within_a_bounded_time(tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    res = _run("inspect", _logs(tmp_path), "--no-cache", "--executor", "ray", "--address", f"127.0.0.1:{port}")
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and f"--address 127.0.0.1:{port}: no Ray cluster there" in res.stderr
    assert time.monotonic() - started < 30
    # a host that drops packets (TEST-NET-1) costs at most the timeout, never Ray's minutes of retries
    started = time.monotonic()
    assert unreachable_ray_address("ray://192.0.2.1:10001", timeout=1.0) is not None
    assert time.monotonic() - started < 5
    assert unreachable_ray_address("auto") is None


def test_file_urls_on_the_command_line(tmp_path):
    logs = tmp_path / "my logs"
    write_summarywriter(logs / "ok", {"train/loss": curve(300)})
    for url in (f"file://{logs}", f"file://localhost{logs}", f"file://{str(logs).replace(' ', '%20')}"):
        res = _run("inspect", url, "--no-cache")
        assert res.exit_code == 0, (url, res.output)
        assert "1 run(s): 1 stable" in res.stdout


def test_devices_and_links_to_them_are_named_as_what_they_are(tmp_path):
    res = _run("inspect", "/dev/zero")
    assert res.exit_code == 2 and "/dev/zero: a character device, not a regular file or directory" in res.stderr
    d = tmp_path / "logs"
    d.mkdir()
    (d / "zero").symlink_to("/dev/zero")
    res = _run("inspect", d, "--no-cache")
    assert res.exit_code == 2, res.output
    assert "a symbolic link to a character device" in res.stderr and "dangling" not in res.stderr
    (d / "gone").symlink_to(tmp_path / "nowhere")
    write_summarywriter(d / "ok", {"train/loss": curve(300)})
    res = _run("inspect", d, "--no-cache", "-a")
    assert res.exit_code == 0, res.output
    assert "zero  (a symbolic link to a character device" in res.stdout and "gone  (a symbolic link to nothing" in res.stdout


def test_a_few_byte_event_file_says_it_holds_no_record_not_use_role(tmp_path):
    run = tmp_path / "logs" / "run"
    run.mkdir(parents=True)
    (run / "events.out.tfevents.1700000000.host").write_bytes(b"\x18\x00\x00\x00\x00")
    res = _run("inspect", tmp_path / "logs", "--no-cache")
    assert res.exit_code == 2, res.output
    assert "no complete scalar record in its 5 byte(s)" in res.stderr and "--role" not in res.stderr


def test_jsonl_repeating_a_key_says_so(tmp_path):
    path = tmp_path / "logs" / "metrics.jsonl"
    path.parent.mkdir()
    path.write_text("".join(f'{{"step": {i}, "loss": {3 - i / 50}, "loss": 5}}\n' for i in range(50)))
    res = _run("inspect", tmp_path / "logs", "--no-cache")
    assert res.exit_code == 2, res.output
    assert "repeat a key ('loss' twice in one object" in res.stderr and "not a JSONL log" not in res.stderr


def test_one_damaged_byte_in_a_csv_costs_its_line_not_the_file(tmp_path):
    rows = "step,loss\n" + "".join(f"{i},{3 - i / 50:.4f}\n" for i in range(100))
    data = bytearray(rows.encode())
    data[data.index(b"\n50,") + 3] = 0xFF
    path = tmp_path / "logs" / "metrics.csv"
    path.parent.mkdir()
    path.write_bytes(bytes(data))
    res = _run("inspect", tmp_path / "logs", "--no-cache", "-a")
    assert res.exit_code == 0, res.output
    assert "1 line(s) that are not UTF-8 text (a damaged byte) were not used" in res.stdout
    assert " 99 " in res.stdout.splitlines()[2]  # the other 99 rows were read


def test_help_lists_every_format_the_registry_reads():
    res = _run("--help")
    text = " ".join(res.output.split())
    assert all(r.named for r in registry.READERS)
    for reader in registry.READERS:
        assert " ".join(reader.named.split()) in text, reader.name


def test_a_probe_spec_is_code_and_help_readme_and_report_say_so(tmp_path):
    res = _run("probe", "--help")
    assert "A spec is code" in " ".join(res.output.split())
    assert "**A spec is code.**" in (ROOT / "README.md").read_text()
    spec = tmp_path / "spec.yaml"
    spec.write_text("workload: not_a_module_here:make\nlr: 0.01\nsteps: 10\n")
    res = _run("probe", spec, "--device", "cpu")
    assert "names the workload not_a_module_here:make: running it imports and calls that code" in res.stderr
    # the specs a report writes name built-in workloads only, whatever the logs' hyperparameters hold
    loss = curve(300)
    loss[200:] = np.nan
    write_jsonl(tmp_path / "logs" / "run" / "metrics.jsonl",
                [{"step": s, "loss": float(v) if np.isfinite(v) else "NaN"} for s, v in enumerate(loss)])
    (tmp_path / "logs" / "run" / "hparams.yaml").write_text("workload: os:system\nmodel: evil.module:build\nlr: 0.1\n")
    res = _run("report", tmp_path / "logs", "--no-cache", "-o", tmp_path / "r.html")
    assert res.exit_code == 0, res.output
    specs = list((tmp_path / "r_files" / "probes").glob("*.yaml"))
    assert specs and all("workload: builtin:" in p.read_text() for p in specs)
    assert not any("os:system" in p.read_text() or "evil.module" in p.read_text() for p in specs)
    assert os.path.exists(tmp_path / "r.html")

