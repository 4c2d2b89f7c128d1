"""`steadytrain watch` and the Watcher: a real CPU training writes TensorBoard events and a JSONL log
while they poll; the instability is flagged at the poll whose logs first show it, the same judgement
`steadytrain report` makes of those bytes; reading is incremental, and the CLI prints, rewrites the
live report, exits 1 with --fail-on and 0 on Ctrl-C."""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer import LoadOptions, analyze
from analyzer.live import Watcher
from tests.writers import curve, write_jsonl, write_summarywriter

pytest.importorskip("torch")
from tests.unstable_training import JUMP_AT, UnstableTraining  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLAGGED = ("mid_instability", "divergence")
CHUNK = 25


def _verdicts(report):
    return {d.run.id: d.verdict for d in report.diagnoses}


def _findings(d):
    return sorted((f.kind, f.start_step, f.end_step) for f in d.findings if f.severity >= 1)


def test_watch_flags_a_real_training_at_the_poll_its_logs_first_show_it(tmp_path):
    logs = tmp_path / "logs"
    training = UnstableTraining(tb=logs / "tb_run")
    # another training (one logging the same history in both formats would be one run of two copies)
    other = UnstableTraining(jsonl=logs / "jsonl_run" / "log.jsonl", seed=1)
    ready: queue.Queue[int] = queue.Queue()
    go = threading.Event()
    polls = 24  # 600 steps; the LR jumps at step 300

    def train() -> None:  # a background training process, in lockstep with the polls
        for _ in range(polls):
            training.train(CHUNK)
            other.train(CHUNK)
            ready.put(training.step)
            go.wait(30)
            go.clear()

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    watcher = Watcher([logs], load_options=LoadOptions(cache_dir=tmp_path / "cache"))
    seen, lines, reloads = [], [], []
    for i in range(polls):
        step = ready.get(timeout=60)
        result = watcher.poll()
        shutil.copytree(logs, tmp_path / f"snap{i:02d}")  # the exact bytes this poll read
        seen.append((step, {d.run.id: d.verdict for d in watcher.diagnoses}))
        lines += [(i, c) for c in result.changes]
        reloads.append(result.reloaded)
        go.set()
    thread.join(30)
    training.close()
    other.close()
    assert set(seen[-1][1]) == {"tb_run", "jsonl_run/log.jsonl"}
    assert reloads[0] == "all" and set(reloads[1:]) == {"runs"}  # after the first poll: only what grew is read

    offline = [_verdicts(analyze(tmp_path / f"snap{i:02d}", load_options=LoadOptions(cache_dir=None)))
               for i in range(polls)]
    for run in ("tb_run", "jsonl_run/log.jsonl"):
        first_offline = next(i for i, v in enumerate(offline) if v[run] in FLAGGED)
        first_live = next(i for i, (_, v) in enumerate(seen) if v[run] in FLAGGED)
        assert first_live == first_offline  # flagged at the very poll whose logs first show it
        assert seen[first_live][0] <= JUMP_AT + 2 * CHUNK  # within two chunks of the LR jump
        assert all(v[run] not in FLAGGED for _, v in seen[:first_live])
        (i, change), *_ = [(i, c) for i, c in lines if c.run_id == run and c.verdict in FLAGGED]
        assert i == first_live
        text = change.line()
        assert text.startswith(f"{run}: ") and "(was stable) at step " in text and "| fix: " in text
        assert JUMP_AT - CHUNK <= change.first_unstable_step <= JUMP_AT + CHUNK
        assert change.last_good_step < change.first_unstable_step
        assert change.probe_spec() is not None
    # The incremental state is what a fresh read of the final logs says, finding for finding.
    final = {d.run.id: d for d in analyze(logs, load_options=LoadOptions(cache_dir=None)).diagnoses}
    for d in watcher.diagnoses:
        assert d.verdict == final[d.run.id].verdict
        assert _findings(d) == _findings(final[d.run.id])
        assert d.run.points.equals(final[d.run.id].run.points)
        assert {n.kind: n.count for n in d.run.notes} == {n.kind: n.count for n in final[d.run.id].run.notes}


def _jsonl_lines(path, steps, values, *, end="\n"):
    with open(path, "a") as fh:
        fh.write("".join(json.dumps({"step": s, "loss": float(v)}) + "\n" for s, v in zip(steps, values))[:-1] + end)


def test_incremental_reads_match_a_fresh_read(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    loss = curve(400, seed=3)
    other = curve(400, seed=4)  # the event files are another training's (the same history would be one run)
    log = logs / "a.jsonl"
    _jsonl_lines(log, range(100), loss[:100], end="")  # the last line has no newline yet (being written)
    (logs / "train.log").write_text("epoch 0 starting\n")  # a stdout log beside it: not a run
    write_summarywriter(logs / "tb", {"loss": other[:100]})
    w = Watcher([logs], load_options=LoadOptions(cache_dir=tmp_path / "cache"))
    assert w.poll().reloaded == "all"
    assert w.poll().reloaded == "none"  # nothing changed: nothing read, nothing judged
    with open(log, "a") as fh:
        fh.write("\n")  # the open line is complete now: no duplicate point, no note
    _jsonl_lines(log, range(100, 200), loss[100:200])
    with open(logs / "train.log", "a") as fh:
        fh.write("epoch 1\n")
    result = w.poll()
    assert result.reloaded == "runs" and result.judged == ("a.jsonl",) and result.new_points == 100
    with open(log, "a") as fh:
        fh.write('{"step": 200, "loss": "not a number"}\nnot json\n')
    write_summarywriter(logs / "tb", {"loss": other[100:300]}, start_step=100)  # a second event file: new file
    assert w.poll().reloaded == "all"
    _jsonl_lines(log, range(201, 300), loss[201:300])
    assert w.poll().judged == ("a.jsonl",)
    fresh = {d.run.id: d for d in analyze(logs, load_options=LoadOptions(cache_dir=None)).diagnoses}
    live = {d.run.id: d for d in w.diagnoses}
    assert set(live) == set(fresh) == {"a.jsonl", "tb"}
    for rid in live:
        a, b = live[rid].run, fresh[rid].run
        assert a.points.equals(b.points) and a.roles == b.roles
        assert {n.kind: n.count for n in a.notes} == {n.kind: n.count for n in b.notes}
        assert _findings(live[rid]) == _findings(fresh[rid])
    # A log rewritten shorter (a restarted job truncating its log) is read afresh, not appended to.
    log.write_text("".join(json.dumps({"step": s, "loss": float(v)}) + "\n" for s, v in enumerate(loss[:50])))
    w.poll()
    assert {d.run.id: d.run.n_points for d in w.diagnoses}["a.jsonl"] == 50


def test_jsonl_dialects_and_restarts_are_read_as_a_fresh_read_would(tmp_path):
    logs = tmp_path / "logs"
    log = logs / "m.jsonl"
    loss = curve(400, seed=5)
    write_jsonl(log, [{"step": s, "loss": float(loss[s])} for s in range(100)])  # plain so far: a tail
    w = Watcher([logs], load_options=LoadOptions(cache_dir=None))
    w.poll()

    def same_as_fresh():
        (fresh,) = analyze(logs, load_options=LoadOptions(cache_dir=None)).diagnoses
        (live,) = w.diagnoses
        assert live.run.points.equals(fresh.run.points) and live.run.roles == fresh.run.roles
        return live.run

    with open(log, "a") as fh:  # a step going back (a restart): read afresh, the latest attempt kept
        fh.write("".join(json.dumps({"step": s, "loss": float(loss[s]) * 1.1}) + "\n" for s in range(80, 150)))
    w.poll()
    assert any(n.kind == "restart" for n in same_as_fresh().notes)
    with open(log, "a") as fh:  # validation records interleaved by a split field: the loader re-tags every record
        for s in range(150, 250):
            fh.write(json.dumps({"step": s, "split": "train", "loss": float(loss[s])}) + "\n")
            if s % 50 == 0:
                fh.write(json.dumps({"step": s, "split": "val", "loss": float(loss[s]) + 0.1}) + "\n")
    w.poll()
    assert {"train/loss", "val/loss"} <= set(same_as_fresh().tags)
    with open(log, "a") as fh:
        fh.write("".join(json.dumps({"step": s, "split": "train", "loss": float(loss[s])}) + "\n"
                         for s in range(250, 300)))
    w.poll()
    same_as_fresh()


def _event_records(steps, values) -> bytes:
    """TensorBoard records (SummaryWriter's framing and protos) of one scalar tag."""
    import io

    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.record_writer import RecordWriter

    sink = io.BytesIO()
    writer = RecordWriter(sink)
    for s, v in zip(steps, values):
        writer.write(Event(wall_time=1.7e9 + s, step=s, summary=Summary(
            value=[Summary.Value(tag="loss", simple_value=float(v))])).SerializeToString())
    return sink.getvalue()


def test_event_files_are_read_from_their_last_whole_record(tmp_path):
    logs = tmp_path / "logs"
    loss = curve(300, seed=4)
    write_summarywriter(logs / "run", {"loss": loss[:100]})
    (events,) = (logs / "run").iterdir()
    w = Watcher([logs], load_options=LoadOptions(cache_dir=None))
    w.poll()
    more = _event_records(range(100, 200), loss[100:200])
    with open(events, "ab") as fh:
        fh.write(more[: len(more) - 7])  # the writer is in the middle of a record
    r = w.poll()
    assert r.reloaded == "runs" and r.new_points == 99
    (fresh,) = analyze(logs, load_options=LoadOptions(cache_dir=None)).diagnoses
    (live,) = w.diagnoses
    assert live.run.points.equals(fresh.run.points) and [n.kind for n in live.run.notes] == ["truncated"]
    with open(events, "ab") as fh:
        fh.write(more[len(more) - 7:] + _event_records(range(50, 120), loss[50:120] * 1.2))  # then a restart
    r = w.poll()
    assert r.reloaded == "runs" and r.judged == ("run",)
    (fresh,) = analyze(logs, load_options=LoadOptions(cache_dir=None)).diagnoses
    (live,) = w.diagnoses
    assert live.run.points.equals(fresh.run.points)
    assert {n.kind: n.count for n in live.run.notes} == {n.kind: n.count for n in fresh.run.notes} == {"restart": 150}


def _fail_on_training(tmp_path, monkeypatch, tail):
    """The CLI against a free-running training in a background thread (a few ms a step)."""
    import analyzer.cli as cli

    logs = tmp_path / "logs"
    training = UnstableTraining(tb=logs / "run")
    stop = threading.Event()
    started = threading.Event()

    def train() -> None:
        while training.step < 900 and not stop.is_set():
            training.train(5, on_step=lambda s: time.sleep(0.004))
            if training.step >= 60:
                started.set()

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    assert started.wait(60)
    writes = []
    real = cli.write_live_report

    def spy(report, output, json_out, refresh_s):
        writes.append(sorted(d.verdict for d in report.diagnoses))
        real(report, output, json_out, refresh_s)

    monkeypatch.setattr(cli, "write_live_report", spy)
    try:
        res = CliRunner().invoke(cli.main, ["watch", str(logs), "--interval", "0.1", "--cache-dir",
                                            str(tmp_path / "cache"), "--max-polls", "400", *tail])
        at_exit = training.step
    finally:
        stop.set()
        thread.join(30)
        training.close()
    return res, writes, at_exit


def test_cli_watch_fails_on_mid_while_the_run_trains(tmp_path, monkeypatch):
    out = tmp_path / "live.html"
    res, writes, at_exit = _fail_on_training(tmp_path, monkeypatch, ["--fail-on", "mid", "-o", str(out)])
    assert res.exit_code == 1, res.output
    assert at_exit < 900  # caught while it was still training
    flagged = [ln for ln in res.stdout.splitlines() if "run: " in ln and ("MID-UNSTABLE" in ln or "DIVERGED" in ln)]
    assert flagged and "(was stable) at step " in flagged[0] and "| fix: " in flagged[0]
    assert "--fail-on mid: 1 run(s) at or above it: run" in res.stderr
    assert writes[0] == ["stable"] and writes[-1][0] in FLAGGED  # rewritten as the verdict changed
    html = out.read_text()
    assert '<meta http-equiv="refresh" content="2">' in html and "steadytrain probe" in html
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]  # atomic: no temp file left
    assert (tmp_path / "live_files" / "probes" / "run.yaml").exists()


def test_cli_watch_once_gates_like_inspect(tmp_path):
    from analyzer.cli import main

    write_jsonl(tmp_path / "logs" / "ok.jsonl", [{"step": s, "loss": 2.0 / (s + 1)} for s in range(60)])
    write_jsonl(tmp_path / "logs" / "nan.jsonl", [{"step": s, "loss": float("nan") if s > 40 else 1.0 / (s + 1)}
                                                  for s in range(60)])
    args = ["watch", str(tmp_path / "logs"), "--once", "--no-cache", "-o", str(tmp_path / "w.html"),
            "--json", str(tmp_path / "w.json")]
    res = CliRunner().invoke(main, args + ["--fail-on", "divergence"])
    assert res.exit_code == 1, res.output
    assert "nan.jsonl: DIVERGED at step 41" in res.stdout
    assert json.loads((tmp_path / "w.json").read_text())["schema_version"] == 1
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and "watched 2 run(s)" in res.stdout and "1 divergence" in res.stdout


def test_ctrl_c_stops_watch_cleanly_with_a_summary(tmp_path):
    write_jsonl(tmp_path / "logs" / "a.jsonl", [{"step": s, "loss": 2.0 / (s + 1)} for s in range(60)])
    proc = subprocess.Popen([sys.executable, "-m", "analyzer.cli", "watch", str(tmp_path / "logs"), "--interval",
                             "0.2", "--no-cache", "-o", str(tmp_path / "live.html")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        first = proc.stdout.readline()
        assert "watching 1 run(s)" in first
        deadline = time.monotonic() + 60
        while not (tmp_path / "live.html").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling by now (a Ctrl-C inside the first write is covered by `writing`)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "watched 1 run(s) for" in out and "1 stable" in out and "Traceback" not in err
    assert (tmp_path / "live.html").exists()


def test_the_watch_loop_runs_without_the_cli(tmp_path):
    """analyzer.live.loop.watch_loop: a notebook or a scheduler runs the same loop with its own writer."""
    import numpy as np

    from analyzer.live.loop import watch_loop
    from analyzer.live.watch import Watcher
    from tests.writers import curve, write_jsonl

    loss = curve(200)
    loss[150:] = np.nan
    write_jsonl(tmp_path / "logs" / "run" / "metrics.jsonl",
                [{"step": s, "loss": float(v) if np.isfinite(v) else "NaN"} for s, v in enumerate(loss)])
    written, lines = [], []
    watcher = Watcher([tmp_path / "logs"], load_options=LoadOptions(cache_dir=None))
    try:
        end = watch_loop(watcher, interval=0.01, write=written.append, echo=lines.append, max_polls=3,
                         fail_on="divergence", watching="logs")
    finally:
        watcher.close()
    assert end.gated and not end.interrupted and watcher.polls == 1
    assert [d.verdict for d in written[0].diagnoses] == ["divergence"]
    assert "watching 1 run(s) under logs" in lines[0] and "DIVERGED" in lines[1]
