"""The HTML report: structure, escaping of untrusted names, spike-preserving decimation, a real browser."""

import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from analyzer.ingest.load import LoadOptions
from analyzer.pipeline import analyze
from reporters.decimate import minmax_decimate
from reporters.html import render_html, write_html
from tests.writers import curve, write_jsonl, write_summarywriter

EVIL = '<script>alert(1)</script>'
EVIL2 = '"><img src=x onerror=alert(2)>'


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _report(tmp_path):
    loss = curve(400, seed=1)
    loss[250:280] *= np.linspace(4, 1.1, 30)
    write_summarywriter(tmp_path / "logs" / EVIL2.replace("/", "_"), {"loss " + EVIL: loss, "grad_norm": curve(400) + 1})
    write_summarywriter(tmp_path / "logs" / "fine", {"train/loss": curve(400, seed=2)})
    write_jsonl(tmp_path / "logs" / "eval_only.jsonl", [{"step": i, "eval_loss": 1.0} for i in range(5)])
    return analyze([tmp_path / "logs"], load_options=LoadOptions(cache_dir=None))


def test_untrusted_names_render_as_text(tmp_path):
    html = render_html(_report(tmp_path))
    assert EVIL not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    parsed = Collector()
    parsed.feed(html)
    scripts = [t for t, _ in parsed.tags if t == "script"]
    assert len(scripts) == 1  # only our own inline script
    assert not [a for t, a in parsed.tags if t == "img"]
    assert not [a for _, a in parsed.tags for k in a if k.startswith("on")]


def test_structure_and_self_contained(tmp_path):
    report = _report(tmp_path)
    out = write_html(report, tmp_path / "r.html")
    html = out.read_text()
    parsed = Collector()
    parsed.feed(html)
    ids = {a.get("id") for _, a in parsed.tags}
    assert {"overview", "runs", "inputs", "config", "overview-table"} <= ids
    rows = html.count('<tr data-verdict="')
    assert rows == len(report.diagnoses) == 3
    assert "mid_instability" in html and "Insufficient data" in html
    assert "No plottable train-loss data" in html  # the eval-only run says so instead of a broken figure
    for tag, attrs in parsed.tags:  # nothing fetched from anywhere
        assert not any(k in ("src", "href") and v and v.startswith(("http", "//")) for k, v in attrs.items()), attrs
        if tag == "link":
            raise AssertionError("no external stylesheets")
    assert html.count("<svg") >= 2 + 4  # two sparklines, loss + grad norm + histogram + loss figures


def test_decimation_keeps_a_one_step_spike_in_a_million_points():
    n = 1_000_000
    steps = np.arange(n)
    values = 1.0 + 0.01 * np.sin(steps / 50.0)
    values[654_321] = 40.0
    values[777_777] = np.nan
    d = minmax_decimate(steps, values, 2000)
    assert d.values.size <= 2004
    assert 654_321 in d.steps and d.values.max() == 40.0
    assert d.nonfinite_steps.tolist() == [777_777]
    assert d.values.min() == pytest.approx(np.nanmin(values))


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (CI installs it)")
def test_report_in_headless_chromium(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    root = Path(__file__).resolve().parents[1]
    report = analyze([root / "sample_logs"], load_options=LoadOptions(cache_dir=None))
    out = write_html(report, tmp_path / "report.html")
    shots = Path(os.environ.get("STEADYTRAIN_ARTIFACTS", root / "artifacts"))
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors, requests = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        assert errors == []
        assert [u for u in requests if not u.startswith("file://")] == []
        rows = page.locator("#overview-table tbody tr")
        total = rows.count()
        assert total == len(report.diagnoses) > 3
        # sort by run name, descending then ascending
        page.locator("#overview-table thead th", has_text="Run").click()
        names = page.locator("#overview-table tbody tr td:nth-child(2)").all_inner_texts()
        assert names == sorted(names, key=str.lower)
        # filter by verdict
        page.select_option("#verdict-filter", "stable")
        visible = page.locator("#overview-table tbody tr:not(.hidden)").count()
        assert visible == sum(1 for d in report.diagnoses if d.verdict == "stable") < total
        page.select_option("#verdict-filter", "")
        # a collapsed stable section expands
        stable = page.locator("details.run[data-verdict=stable]").first
        assert stable.get_attribute("open") is None
        stable.locator(":scope > summary").click()
        assert stable.get_attribute("open") is not None
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / "report.png"), full_page=False)
        page.screenshot(path=str(shots / "report_full.png"), full_page=True)
        browser.close()
    assert (shots / "report.png").stat().st_size > 10_000
