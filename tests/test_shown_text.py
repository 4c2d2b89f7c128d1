"""What steadytrain shows goes through one function (analyzer.display): credentials inside a URL never reach a
message, a log line, a report or an exception's text, and a name that is not UTF-8 is shown with escapes,
never an internal error."""

import json
import os
import socket

import pytest
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.display import redact, shown
from analyzer.errors import InputError
from analyzer.ingest.load import LoadOptions, load_runs
from tests.writers import curve, write_summarywriter

SECRET = "hunter2-Xy9"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.mark.parametrize("url, expected", [
    ("s3://AKIAKEY:se/cr+et@bucket/runs", "s3://***@bucket/runs"),
    ("https://user:p@ss@host/logs", "https://***@host/logs"),
    ("gs://token@bucket/x", "gs://***@bucket/x"),
    ("ftp://:pw@host/", "ftp://***@host/"),
    ("s3://bucket/dir@v2/x", "s3://bucket/dir@v2/x"),  # an '@' in a key is not a credential
    ("mail someone@example.com", "mail someone@example.com"),
])
def test_redact(url, expected):
    assert redact(url) == expected
    assert redact(f"error: {url}: failed") == f"error: {expected}: failed"


def test_credentials_in_a_url_appear_in_no_message_log_line_or_traceback(tmp_path, monkeypatch):
    port = _closed_port()
    out = tmp_path / "o.json"
    for url in (f"https://user:{SECRET}@127.0.0.1:{port}/logs/", f"s3://AKIAKEY:{SECRET}/z@bucket/runs"):
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        for flags in ([], ["-v", "--debug"]):
            res = CliRunner().invoke(main, [*flags, "inspect", url, "--no-cache", "--json", str(out)])
            assert res.exit_code == 2, res.output
            assert SECRET not in res.stdout + res.stderr and "***@" in res.stderr, res.stderr
        with pytest.raises(InputError) as caught:  # the library's own exceptions too
            load_runs([url], LoadOptions(cache_dir=None))
        assert SECRET not in str(caught.value)


def test_an_internal_error_quoting_a_url_is_redacted_in_its_line_and_traceback(tmp_path, monkeypatch):
    import analyzer.engine as engine

    write_summarywriter(tmp_path / "logs" / "ok", {"train/loss": curve(100)})

    def leaky(*a, **k):
        raise RuntimeError(f"could not reach https://admin:{SECRET}@store.internal/x")

    monkeypatch.setattr(engine, "find_sweeps", leaky)
    for flags in ([], ["--debug"]):
        res = CliRunner().invoke(main, ["inspect", str(tmp_path / "logs"), "--no-cache", *flags])
        assert res.exit_code == 3, res.output
        assert SECRET not in res.stderr and "https://***@store.internal/x" in res.stderr
        assert ("Traceback" in res.stderr) == bool(flags)


def test_a_folder_named_with_a_byte_that_is_not_utf8_is_shown_with_an_escape(tmp_path):
    logs = tmp_path / "logs"
    write_summarywriter(logs / "fine", {"train/loss": curve(200)})
    write_summarywriter(logs / "cafe", {"train/loss": curve(200, seed=2)})
    os.rename(os.fsencode(logs / "cafe"), os.fsencode(logs) + b"/caf\xff")  # a name the writer cannot spell
    html, js = tmp_path / "r.html", tmp_path / "r.json"
    res = CliRunner().invoke(main, ["report", str(logs), "--no-cache", "-o", str(html), "--json", str(js)])
    assert res.exit_code == 0, res.output
    assert "caf\\xff" in res.stdout
    data = json.loads(js.read_bytes().decode("utf-8"))  # strict UTF-8: no lone surrogate in the file
    assert {r["id"] for r in data["runs"]} == {"fine", "caf\\xff"}
    assert "caf\\xff" in html.read_bytes().decode("utf-8")
    res = CliRunner().invoke(main, ["inspect", str(logs), "--no-cache", "-a", "-v"])
    assert res.exit_code == 0 and "caf\\xff" in res.stdout and "\udcff" not in res.stdout + res.stderr



def test_a_name_that_is_not_utf8_is_read_through_the_run_cache(tmp_path):
    """Regression: the run cache's key encoded the path as strict UTF-8, so with the cache on (the default) a
    file or folder named with a byte 0xff ended the whole command with an internal error (exit 3)."""
    logs = tmp_path / "logs"
    write_summarywriter(logs / "fine", {"train/loss": curve(200)})
    write_summarywriter(logs / "cafe", {"train/loss": curve(200, seed=2)})
    os.rename(os.fsencode(logs / "cafe"), os.fsencode(logs) + b"/caf\xff")
    for _ in range(2):  # a cache miss, then a hit
        res = CliRunner().invoke(main, ["inspect", str(logs), "--cache-dir", str(tmp_path / "cache")])
        assert res.exit_code == 0, res.output
        assert "caf\\xff" in res.stdout and "2 run(s)" in res.stdout
    # the decode cache of event files holds both folders' files too (its key encoded the path the same way)
    assert len(list((tmp_path / "cache").glob("*.bin"))) == 2

def test_shown_keeps_ordinary_text_as_it_is():
    text = "runs/日本語/lr_3e-4: loss 2.31 -> 0.4 at step 1,000"
    assert shown(text) == text
