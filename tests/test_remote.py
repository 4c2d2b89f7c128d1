"""Logs in object stores: a real S3 protocol endpoint (moto's standalone server on a loopback port), talked to by
s3fs over HTTP exactly as a bucket in the cloud would be; the logs are written by the real writers."""

import json
import logging
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.ingest.remote import Mirror, MirrorStats, is_remote, parse_storage_options
from analyzer.errors import ConfigError, InputError
from tests.writers import curve, hf_log_history, write_jsonl, write_lightning_csv, write_summarywriter, write_trainer_state

BUCKET = "logs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A local S3 endpoint for the module; credentials and endpoint set the standard way (environment)."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto keeps its buckets per process, not per server: start from an empty store
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")).close()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # fsspec caches filesystems by their arguments, not the environment
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(BUCKET)
    try:
        yield fs
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _write_runs(root: Path) -> Path:
    """One run of each common format, one of them unstable."""
    spiky = curve(400, seed=1)
    spiky[250:262] *= 6.0
    write_summarywriter(root / "tb_spiky", {"train/loss": spiky, "train/grad_norm": curve(400, seed=2) + 1})
    write_summarywriter(root / "tb_ok", {"train/loss": curve(400, seed=3)})
    write_lightning_csv(root / "lightning" / "version_0", curve(300, seed=4).tolist())
    write_trainer_state(root / "hf_out", hf_log_history(curve(500, seed=5).tolist()), max_steps=500)
    diverged = curve(300, seed=6)
    diverged[200:] = np.nan
    write_jsonl(root / "jsonl_run" / "metrics.jsonl",
                [{"step": s, "loss": float(v) if np.isfinite(v) else "NaN"} for s, v in enumerate(diverged)])
    return root


@pytest.fixture(scope="module")
def uploaded(s3, tmp_path_factory):
    """The same logs on disk and under s3://logs/runs/."""
    local = _write_runs(tmp_path_factory.mktemp("disk") / "runs")
    s3.put(str(local), f"{BUCKET}/runs", recursive=True)
    return local


def _report(args: list[str], tmp: Path, name: str) -> dict:
    out = tmp / f"{name}.json"
    res = CliRunner().invoke(main, ["report", *args, "--no-html", "--json", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def test_report_from_s3_gives_the_verdicts_of_the_same_files_on_disk(uploaded, tmp_path):
    disk = _report([str(uploaded), "--no-cache"], tmp_path, "disk")
    remote = _report([f"s3://{BUCKET}/runs", "--cache-dir", str(tmp_path / "cache")], tmp_path, "s3")
    assert {r["id"]: r["verdict"] for r in remote["runs"]} == {r["id"]: r["verdict"] for r in disk["runs"]}
    assert {r["verdict"] for r in remote["runs"]} >= {"divergence", "stable"}
    for a, b in zip(disk["runs"], remote["runs"]):
        assert [f["kind"] for f in a["findings"]] == [f["kind"] for f in b["findings"]]
        assert a["stats"] == b["stats"]
    # every file is accounted for, named by its URL (never the mirror's local path)
    rel = {os.path.relpath(i["path"], uploaded): i["status"] for i in disk["inputs"]}
    assert {i["path"].removeprefix(f"s3://{BUCKET}/runs/"): i["status"] for i in remote["inputs"]} == rel
    assert all(s.startswith(f"s3://{BUCKET}/runs/") for r in remote["runs"] for s in r["sources"])
    assert str(tmp_path / "cache") not in json.dumps(remote)
    assert remote["roots"] == [f"s3://{BUCKET}/runs"]


def test_credentials_in_the_url_are_used_and_never_shown(uploaded, tmp_path):
    """s3://KEY:SECRET@bucket/x works (the credentials become s3fs's key/secret) and the secret is in no
    output: stdout, -v/--debug logs, the JSON, the HTML, nor the mirror's paths on disk."""
    secret = "Sup3rS3cret/with+slash"
    cache = tmp_path / "cache"
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    res = CliRunner().invoke(main, ["-v", "--debug", "report", f"s3://AKIAEXAMPLE:{secret}@{BUCKET}/runs", "--cache-dir",
                                    str(cache), "--json", str(out), "-o", str(html)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert {r["verdict"] for r in data["runs"]} >= {"divergence", "stable"}
    assert data["roots"] == [f"s3://***@{BUCKET}/runs"]
    assert all(s.startswith(f"s3://{BUCKET}/runs/") for r in data["runs"] for s in r["sources"])
    for text in (res.stdout, res.stderr, out.read_text(), html.read_text(),
                 "\n".join(str(p) for p in cache.rglob("*"))):
        assert secret not in text and "AKIAEXAMPLE" not in text


def test_second_run_downloads_nothing_and_decodes_nothing(uploaded, tmp_path):
    args = ["-v", "inspect", f"s3://{BUCKET}/runs", "--cache-dir", str(tmp_path / "cache")]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "0 unchanged, 6 downloaded" in first.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "6 unchanged, 0 downloaded, 0 grown (new bytes only), 0 failed, 0 removed; 0 bytes downloaded" in again.output
    assert again.output.count("unchanged since the last read, taken from the run cache") == 5
    assert "read s3://logs/runs/tb_ok/" in again.output  # -v names files by URL too


def test_a_grown_object_fetches_only_its_new_bytes(s3, tmp_path):
    rows = [{"step": s, "loss": float(v)} for s, v in enumerate(curve(3000, seed=7))]
    write_jsonl(tmp_path / "live.jsonl", rows[:2000])
    s3.put_file(str(tmp_path / "live.jsonl"), f"{BUCKET}/live/run/metrics.jsonl")
    mirror = Mirror(tmp_path / "mirror")
    local, skipped = mirror.sync(f"s3://{BUCKET}/live", first := MirrorStats())
    assert not skipped and first.downloaded == 1
    old_size = (local / "run" / "metrics.jsonl").stat().st_size
    opts = LoadOptions(cache_dir=tmp_path / "mirror")
    (run,), _ = load_runs([f"s3://{BUCKET}/live"], opts)
    assert run.step_range() == (0, 1999)

    write_jsonl(tmp_path / "live.jsonl", rows)  # the training appended 1,000 lines
    s3.put_file(str(tmp_path / "live.jsonl"), f"{BUCKET}/live/run/metrics.jsonl")
    new_size = (tmp_path / "live.jsonl").stat().st_size
    _, skipped = mirror.sync(f"s3://{BUCKET}/live", grown := MirrorStats())
    assert not skipped and (grown.appended, grown.downloaded) == (1, 0)
    # the new bytes, plus 4 KiB at each end of the old length to check it was an append
    assert grown.bytes == (new_size - old_size) + 2 * 4096
    assert (local / "run" / "metrics.jsonl").read_bytes() == (tmp_path / "live.jsonl").read_bytes()
    (run,), _ = load_runs([f"s3://{BUCKET}/live"], opts)
    assert run.step_range() == (0, 2999)

    rewritten = [{"step": s, "loss": 1.0} for s in range(2500)]  # not an append: the head changed
    write_jsonl(tmp_path / "live.jsonl", rewritten)
    s3.put_file(str(tmp_path / "live.jsonl"), f"{BUCKET}/live/run/metrics.jsonl")
    _, _ = mirror.sync(f"s3://{BUCKET}/live", again := MirrorStats())
    assert (again.appended, again.downloaded) == (0, 1)
    assert (local / "run" / "metrics.jsonl").read_bytes() == (tmp_path / "live.jsonl").read_bytes()


@pytest.mark.parametrize("fault,reason", [(PermissionError("Access Denied"), "access denied"),
                                          (TimeoutError("read timed out"), "timed out")])
def test_a_fault_on_one_object_skips_only_that_file(uploaded, tmp_path, monkeypatch, fault, reason):
    import s3fs

    real = s3fs.S3FileSystem._cat_file
    bad_key = f"{BUCKET}/runs/jsonl_run/metrics.jsonl"

    async def flaky(self, path, *args, **kwargs):
        if path.removeprefix("s3://") == bad_key:
            raise fault
        return await real(self, path, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_cat_file", flaky)
    s3fs.S3FileSystem.clear_instance_cache()  # instances bind their sync methods when made
    data = _report([f"s3://{BUCKET}/runs", "--cache-dir", str(tmp_path / "cache")], tmp_path, "fault")
    skipped = [i for i in data["inputs"] if i["status"] == "skipped"]
    assert [i["path"] for i in skipped] == [f"s3://{bad_key}"]
    assert reason in skipped[0]["reason"] and "object store" in skipped[0]["reason"]
    assert sorted(r["id"] for r in data["runs"]) == ["hf_out", "lightning/version_0", "tb_ok", "tb_spiky"]

    monkeypatch.setattr(s3fs.S3FileSystem, "_cat_file", real)  # the store is back: the file is read again
    s3fs.S3FileSystem.clear_instance_cache()
    data = _report([f"s3://{BUCKET}/runs", "--cache-dir", str(tmp_path / "cache")], tmp_path, "back")
    assert {i["status"] for i in data["inputs"]} == {"read"} and len(data["runs"]) == 5


def test_a_deleted_object_leaves_the_mirror(s3, tmp_path):
    for name in ("a", "b"):
        write_jsonl(tmp_path / name / "log.jsonl", [{"step": s, "loss": 2.0 / (s + 1)} for s in range(50)])
        s3.put_file(str(tmp_path / name / "log.jsonl"), f"{BUCKET}/gone/{name}/log.jsonl")
    opts = LoadOptions(cache_dir=tmp_path / "cache")
    assert [r.id for r in load_runs([f"s3://{BUCKET}/gone"], opts)[0]] == ["a/log.jsonl", "b/log.jsonl"]
    s3.rm_file(f"{BUCKET}/gone/b/log.jsonl")
    assert [r.id for r in load_runs([f"s3://{BUCKET}/gone"], opts)[0]] == ["a/log.jsonl"]


def test_one_object_named_is_read_as_its_own_run(uploaded, tmp_path):
    runs, inputs = load_runs([f"s3://{BUCKET}/runs/jsonl_run/metrics.jsonl"], LoadOptions(cache_dir=None))
    assert [r.id for r in runs] == ["metrics.jsonl"] and runs[0].sources == (f"s3://{BUCKET}/runs/jsonl_run/metrics.jsonl",)
    assert [i.path for i in inputs] == [f"s3://{BUCKET}/runs/jsonl_run/metrics.jsonl"]


@pytest.mark.parametrize("url,message", [("s3://no-such-bucket/runs", "no such bucket or prefix"),
                                         (f"s3://{BUCKET}/no/such/prefix", "no objects under this prefix")])
def test_a_missing_bucket_or_prefix_is_a_one_line_error(s3, url, message):
    res = CliRunner().invoke(main, ["inspect", url, "--no-cache"])
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_storage_option_values_are_never_logged(uploaded, tmp_path):
    res = CliRunner().invoke(main, ["--debug", "inspect", f"s3://{BUCKET}/runs", "--cache-dir", str(tmp_path / "c"),
                                    "--storage-option", "secret=TOPSECRET-abc123", "--storage-option", "key=testing"])
    assert res.exit_code == 0, res.output
    assert "TOPSECRET" not in res.output and "storage options: key=…, secret=…" in res.output


def test_storage_options_parse_and_refuse_what_is_not_key_value():
    assert parse_storage_options(["anon=true", "default_block_size=5242880", 'client_kwargs={"region_name": "x"}',
                                  "token=abc=def", 'pin="0123"']) == {
        "anon": True, "default_block_size": 5242880, "client_kwargs": {"region_name": "x"}, "token": "abc=def",
        "pin": "0123"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_storage_options(["anon"])
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_storage_options(["client_kwargs={oops"])


def test_file_urls_are_local_paths_and_unknown_protocols_one_line(tmp_path):
    write_jsonl(tmp_path / "r" / "log.jsonl", [{"step": s, "loss": 2.0 / (s + 1)} for s in range(50)])
    assert not is_remote(f"file://{tmp_path}") and is_remote("s3://b/k") and not is_remote("/a/b:c")
    runs, _ = load_runs([f"file://{tmp_path}"], LoadOptions(cache_dir=None))
    assert [r.id for r in runs] == ["r/log.jsonl"]
    with pytest.raises(InputError, match="not a protocol fsspec knows"):
        load_runs(["nosuchproto://bucket/x"], LoadOptions(cache_dir=None))


def test_a_store_that_refuses_the_connection_is_one_line_naming_the_url_without_its_secret():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(InputError) as err:
        load_runs([f"ftp://user:s3cret@127.0.0.1:{port}/logs"], LoadOptions(cache_dir=None))
    text = str(err.value)
    assert text.startswith(f"ftp://***@127.0.0.1:{port}/logs: cannot connect") and "s3cret" not in text


def test_import_analyzer_loads_no_object_store_or_ray_package():
    code = ("import sys, analyzer, analyzer.cli, analyzer.pipeline; "
            "bad = [m for m in ('fsspec', 's3fs', 'ray', 'botocore') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
