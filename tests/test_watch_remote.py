"""`steadytrain watch` on an object store (moto's S3 server on a loopback port, talked to by s3fs over
HTTP, as tests/test_remote.py), and the judging of many changed runs in worker processes."""

import json

import numpy as np
from click.testing import CliRunner

from analyzer.ingest.load import LoadOptions
from analyzer.live import Watcher
from tests.test_remote import BUCKET, s3  # noqa: F401 - the S3 server fixture
from tests.writers import curve, write_jsonl, write_summarywriter

FLAGGED = ("mid_instability", "divergence")


def _rows(values, start=0):
    return [{"step": start + i, "loss": float(v) if np.isfinite(v) else "NaN"} for i, v in enumerate(values)]


def test_watch_s3_flags_a_run_turning_divergent_within_two_polls(s3, tmp_path):  # noqa: F811
    loss = curve(600, seed=11)
    local = tmp_path / "runs"
    write_jsonl(local / "live" / "metrics.jsonl", _rows(loss[:400]))
    write_summarywriter(local / "tb_ok", {"train/loss": curve(300, seed=12)})
    s3.put(str(local), f"{BUCKET}/watch", recursive=True)
    url = f"s3://{BUCKET}/watch"
    w = Watcher([url], load_options=LoadOptions(cache_dir=tmp_path / "cache"))
    try:
        first = w.poll()
        assert first.reloaded == "all" and {d.run.id: d.verdict for d in w.diagnoses} == {
            "live/metrics.jsonl": "stable", "tb_ok": "stable"}
        assert w.poll().reloaded == "none"  # nothing changed in the store: nothing fetched, read or judged

        # The training goes on and blows up; its writer uploads the grown log (an append: same first bytes).
        diverging = loss[400:500] * np.exp(np.linspace(0, 6, 100))
        diverging[60:] = np.nan
        write_jsonl(local / "live" / "metrics.jsonl", _rows(np.concatenate([loss[:400], diverging])))
        s3.put_file(str(local / "live" / "metrics.jsonl"), f"{BUCKET}/watch/live/metrics.jsonl")
        flagged_at = None
        for i in range(2):  # within two polls
            result = w.poll()
            hit = [c for c in result.changes if c.run_id == "live/metrics.jsonl" and c.verdict in FLAGGED]
            if hit:
                flagged_at = i
                break
        assert flagged_at is not None, [d.verdict for d in w.diagnoses]
        assert result.reloaded == "runs" and result.judged == ("live/metrics.jsonl",)
        assert hit[0].verdict == "divergence" and "| fix: " in hit[0].line()
        stats = w._sources.last  # only the new bytes were fetched; the unchanged event file not at all
        assert (stats.appended, stats.downloaded, stats.unchanged) == (1, 0, 1)
        assert result.fetch_seconds > 0
        report = w.report()
        live = next(d for d in report.diagnoses if d.run.id == "live/metrics.jsonl")
        assert live.run.sources == (f"{url}/live/metrics.jsonl",)  # named by URL, never the mirror's path
        assert report.roots == (url,) and all(i.path.startswith(url) for i in report.inputs)
        assert str(tmp_path / "cache") not in json.dumps([i.path for i in report.inputs])
    finally:
        w.close()


def test_cli_watch_takes_an_s3_prefix(s3, tmp_path):  # noqa: F811
    from analyzer.cli import main

    rows = _rows(np.concatenate([curve(200, seed=3), [np.nan] * 20]))
    write_jsonl(tmp_path / "nan.jsonl", rows)
    s3.put_file(str(tmp_path / "nan.jsonl"), f"{BUCKET}/cli/nan/metrics.jsonl")
    args = ["watch", f"s3://{BUCKET}/cli", "--once", "--no-html", "--fail-on", "divergence", "--cache-dir",
            str(tmp_path / "cache"), "--json", str(tmp_path / "w.json")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    assert "nan/metrics.jsonl: DIVERGED" in res.stdout
    assert f"watching 1 run(s) under s3://{BUCKET}/cli" in res.stdout
    report = json.loads((tmp_path / "w.json").read_text())
    assert report["runs"][0]["sources"] == [f"s3://{BUCKET}/cli/nan/metrics.jsonl"]
    missing = CliRunner().invoke(main, ["watch", f"s3://{BUCKET}-missing/x", "--once", "--no-html", "--no-cache"])
    assert missing.exit_code == 2 and "no such bucket or prefix" in missing.output
    assert "Traceback" not in missing.output


def test_many_changed_runs_are_judged_in_worker_processes_as_in_this_one(tmp_path):
    logs = tmp_path / "logs"
    n = 6
    loss = {i: curve(400, seed=20 + i) for i in range(n)}
    for i in range(n):
        write_jsonl(logs / f"run{i}.jsonl", _rows(loss[i][:200]))
    pooled = Watcher([logs], load_options=LoadOptions(cache_dir=None, workers=2), parallel_from=2)
    alone = Watcher([logs], load_options=LoadOptions(cache_dir=None, workers=1), parallel_from=2)
    try:
        results = [(pooled.poll(), alone.poll())]
        for i in range(n):  # every run grows; half of them blow up
            tail = loss[i][200:300] * (np.exp(np.linspace(0, 5, 100)) if i % 2 else 1.0)
            with open(logs / f"run{i}.jsonl", "a") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in _rows(tail, start=200)))
        results.append((pooled.poll(), alone.poll()))
        for p, a in results:
            assert p.parallel and not a.parallel
            assert sorted(p.judged) == sorted(a.judged) and len(p.judged) == n
            assert [(c.run_id, c.verdict, c.line()) for c in p.changes] == [(c.run_id, c.verdict, c.line())
                                                                           for c in a.changes]
        assert {c.run_id for c in results[-1][0].changes} == {f"run{i}.jsonl" for i in range(1, n, 2)}
        for d, e in zip(pooled.diagnoses, alone.diagnoses):
            assert d.run.id == e.run.id and d.verdict == e.verdict and d.stats == e.stats
            assert [(f.kind, f.start_step, f.message) for f in d.findings] == [(f.kind, f.start_step, f.message)
                                                                              for f in e.findings]
        assert pooled.report().sweeps == alone.report().sweeps
    finally:
        pooled.close()
        alone.close()
