"""One rule for "appended or rewritten", shared by the decode cache, the live tails and the object-store mirror."""

from __future__ import annotations

import json

from analyzer.ingest.append_cursor import EDGE, AppendCursor
from analyzer.live.tail import EventTail, JsonlTail
from tests.writers import curve, write_jsonl, write_summarywriter


def _lines(values, start=0):  # type: ignore[no-untyped-def]
    return "".join(json.dumps({"step": start + i, "loss": round(float(v), 6)}) + "\n" for i, v in enumerate(values))


def test_an_appended_file_holds_and_gives_only_the_new_bytes(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(_lines(curve(500)))
    cursor = AppendCursor.at(log, log.stat().st_size)
    with open(log, "a") as fh:
        fh.write(_lines([0.5, 0.4], start=500))
    assert cursor.holds() and cursor.read_new() == _lines([0.5, 0.4], start=500).encode()


def test_a_rewrite_that_keeps_the_first_line_and_the_length_is_caught(tmp_path):
    log = tmp_path / "log.jsonl"
    loss = curve(500)
    log.write_text(_lines(loss))
    size = log.stat().st_size
    cursor = AppendCursor.at(log, size)
    rerun = loss.copy()
    rerun[-3] += 1e-4  # the same script run again: a value near the end differs
    log.write_text(_lines(rerun) + _lines([0.3], start=500))
    assert log.stat().st_size > size and log.read_bytes()[:EDGE] == _lines(loss).encode()[:EDGE]
    assert not cursor.holds() and cursor.read_new() is None
    log.write_text(_lines(loss)[:100])  # truncated
    assert not cursor.holds()
    assert AppendCursor.at(log, 100).holds()  # a cursor at the end of a file holds


def test_the_jsonl_tail_reads_a_rerun_afresh_instead_of_appending_to_it(tmp_path):
    log = tmp_path / "metrics.jsonl"
    loss = curve(300)
    write_jsonl(log, [{"step": i, "loss": round(float(v), 6)} for i, v in enumerate(loss)])
    tail = JsonlTail.at(log, log.stat().st_size, "step")
    assert tail is not None
    with open(log, "a") as fh:
        fh.write(_lines([0.2], start=300))
    points, lines = tail.read_new() or (None, 0)
    assert lines == 1 and points is not None and points.steps.tolist() == [300]
    rerun = loss.copy()
    rerun[290] *= 1.5  # rewritten by a rerun: same first line, same newline before the offset, longer
    log.write_text(_lines(rerun) + _lines([0.2, 0.19, 0.18], start=300))
    assert tail.read_new() is None


def test_the_event_tail_reads_records_flushed_later_and_refuses_a_new_file_at_the_path(tmp_path):
    run = write_summarywriter(tmp_path / "a", {"loss": curve(50)})
    event = next(run.glob("*tfevents*"))
    tail = EventTail.at(event)
    assert tail is not None
    before = tail.cursor.offset
    assert tail.read_new(verify_crc=True) is not None and tail.cursor.offset == before  # nothing new
    other = write_summarywriter(tmp_path / "b", {"loss": curve(80, seed=3)})
    event.write_bytes(next(other.glob("*tfevents*")).read_bytes())  # another run's file at this path
    assert tail.read_new(verify_crc=True) is None
