"""The HTML report: structure, escaping of untrusted names, spike-preserving decimation, a real browser."""

import os
import re
import shutil
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from analyzer.ingest.load import LoadOptions
from analyzer.pipeline import analyze
from analyzer.recommend.summary import fix_summary
from reporters.decimate import minmax_decimate
from reporters.html import anchor, render_html, write_html
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
    rows = _overview_rows(html)
    assert len(rows) == len(report.diagnoses) == 3
    # each row's verdict is its own run's verdict (not a label the filter and badges always contain)
    assert {r["id"]: r["verdict"] for r in rows} == {d.run.id: d.verdict for d in report.diagnoses}
    by_id = {r["id"]: r for r in rows}
    assert by_id["eval_only.jsonl"]["verdict"] == "insufficient_data"
    assert by_id[EVIL2.replace("/", "_")]["verdict"] == "mid_instability"
    assert by_id["fine"]["verdict"] == "stable"
    assert "No plottable train-loss data" in html  # the eval-only run says so instead of a broken figure
    for tag, attrs in parsed.tags:  # nothing fetched from anywhere
        assert not any(k in ("src", "href") and v and v.startswith(("http", "//")) for k, v in attrs.items()), attrs
        if tag == "link":
            raise AssertionError("no external stylesheets")
    assert html.count("<svg") >= 2 + 4  # two sparklines, loss + grad norm + histogram + loss figures


def _overview_rows(html):
    """(verdict, anchor, id, full finding, shown finding, fix) of each overview row, unescaped."""
    found = re.findall(r'<tr data-verdict="([^"]+)">.*?<a href="#([^"]+)">(.*?)</a>.*?'
                       r'<td class="finding-cell" title="([^"]*)">(.*?)</td>\s*<td class="fix-cell">(.*?)</td>', html, re.S)
    keys = ("verdict", "anchor", "id", "finding", "shown", "fix")
    return [dict(zip(keys, (unescape(x) for x in row))) for row in found]


def test_overview_fix_column_and_one_line_findings(tmp_path):
    report = _report(tmp_path)
    html = render_html(report)
    rows = {r["id"]: r for r in _overview_rows(html)}
    for d in report.diagnoses:
        row = rows[d.run.id]
        kinds = [r.kind for r in d.recommendations]
        by_words = {fix_summary(r): r.kind for r in d.recommendations}
        if d.verdict == "stable":
            assert row["fix"] == ""  # a stable run needs no fix, not "log_metric"
        elif d.verdict != "insufficient_data":
            kind = by_words[row["fix"]]  # the fix in words, with its number: "clip at 1.3", "lower LR to 3e-4"
            assert kind != "log_metric" or set(kinds) == {"log_metric"}
            assert kind not in ("warmup", "clip", "lower_lr") or re.search(r"\d", row["fix"]), row["fix"]
        full = d.headline.message if d.headline else ""
        assert row["finding"] == full  # the whole text is in the title...
        assert len(row["shown"]) <= 110 and full.startswith(row["shown"].rstrip("…"))  # ...the cell is one line
    fine = next(d for d in report.diagnoses if d.run.id == "fine")
    assert fine.verdict == "stable" and "log_metric" in [r.kind for r in fine.recommendations]
    assert rows["fine"]["fix"] == ""  # it has a log_metric recommendation, and the column still stays empty


@pytest.mark.parametrize("names", [["a b", "a-b", "a_b"], ["日本語", "中文", "한국어"], ["filter", "overview", "runs"]])
def test_run_anchors_are_unique_and_stable(tmp_path, names):
    for i, name in enumerate(names):
        write_jsonl(tmp_path / "logs" / name / "log.jsonl", [{"step": s, "loss": 2.0 / (s + 1 + i)} for s in range(30)])
    report = analyze([tmp_path / "logs"], load_options=LoadOptions(cache_dir=None))
    html = render_html(report)
    parsed = Collector()
    parsed.feed(html)
    ids = [a["id"] for _, a in parsed.tags if a.get("id")]
    assert len(ids) == len(set(ids))  # no run anchor collides with another or with the page's own ids
    rows = _overview_rows(html)
    assert len({r["anchor"] for r in rows}) == len(names)
    for r in rows:
        assert ids.count(r["anchor"]) == 1  # every link lands on its run
        assert f'id="{r["anchor"]}" data-verdict' in html
    assert render_html(report).count(rows[0]["anchor"]) == html.count(rows[0]["anchor"])  # stable across renders
    assert anchor(names[0]) == anchor(names[0]) and anchor("a b") != anchor("a-b")


def test_extreme_values_draw_and_a_failing_figure_is_a_placeholder(tmp_path, monkeypatch):
    from reporters import plots

    loss = curve(200)
    loss[100:150] = 1e308
    loss[150:] = -1e308
    grad = np.r_[np.full(100, 1.0), np.full(100, 1e308)]
    write_jsonl(tmp_path / "logs" / "extreme.jsonl",  # float64 values (an event file's float32 makes them inf)
                [{"step": i, "loss": float(loss[i]), "grad_norm": float(grad[i])} for i in range(200)])
    report = analyze([tmp_path / "logs"], load_options=LoadOptions(cache_dir=None))
    html = render_html(report)
    assert "could not be drawn" not in html and html.count("<svg") >= 4  # +-1e308 no longer breaks matplotlib
    assert "drawn at that edge" in html  # and the figure says what it clipped

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(plots, "grad_histogram", broken)
    html = render_html(report)
    assert html.count('class="fig-error"') == 1
    assert "Gradient norm histogram</strong> could not be drawn (LinAlgError: Singular matrix)" in html
    assert 'aria-label="Loss"' in html and 'aria-label="Gradient norm"' in html  # the others still render


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


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (CI installs it)")
def test_overview_top_fix_shows_the_fix_with_its_number_readable_at_1400px(tmp_path):
    """The overview answers "what do I do" at a laptop's 1,400 px: every flagged run's fix is on screen,
    whole, on one line and with its number; the page does not scroll sideways (a screenshot is kept)."""
    playwright = pytest.importorskip("playwright.sync_api")
    root = Path(__file__).resolve().parents[1]
    report = analyze([root / "sample_logs"], load_options=LoadOptions(cache_dir=None))
    out = write_html(report, tmp_path / "report.html")
    shots = Path(os.environ.get("STEADYTRAIN_ARTIFACTS", root / "artifacts"))
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400  # nothing off to the right
        cells = page.evaluate("""Array.from(document.querySelectorAll('#overview-table tbody tr')).map(tr => {
            const td = tr.querySelector('td.fix-cell'), box = td.getBoundingClientRect(), r = document.createRange();
            r.selectNodeContents(td);
            return {verdict: tr.dataset.verdict, text: td.innerText.trim(), right: box.right,
                    clipped: td.scrollWidth > td.clientWidth, lines: r.getClientRects().length};
        })""")
        page.locator("#overview").screenshot(path=str(shots / "overview_1400.png"))
        browser.close()
    flagged = [c for c in cells if c["verdict"] not in ("stable", "insufficient_data")]
    assert len(flagged) >= 3
    for c in flagged:
        assert re.search(r"\d", c["text"]), c  # "warmup 20 steps", "clip at 1.96": the number, not "clip"
        assert c["right"] <= 1400 and not c["clipped"] and c["lines"] == 1, c
    assert (shots / "overview_1400.png").stat().st_size > 10_000
