"""The watch loop: poll, print each change, rewrite the live report when it is due, stop on a gate or Ctrl-C.

`steadytrain watch` is this loop with a report writer that renders HTML and JSON (the CLI owns rendering); a
notebook or a scheduler can run it with its own writer, or none. The rewrite policy: the first poll and every
new verdict or finding write at once; while only data change, at most every ``html_every`` seconds, and never
more often than four times the last write took (a large report must not eat the polling).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from analyzer.live.watch import Watcher
from analyzer.types import Report
from analyzer.verdicts import FailOn, reaches


@dataclass(frozen=True)
class WatchEnd:
    """How the loop ended.

    Attributes:
        gated: a run reached the ``fail_on`` level (the caller exits non-zero).
        interrupted: Ctrl-C stopped it.
        summary: one line: how many runs and polls, the verdicts, where the live report is.
    """

    gated: bool
    interrupted: bool
    summary: str


def _stamp() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


def watch_loop(watcher: Watcher, *, interval: float, write: Callable[[Report], None] | None = None,
               echo: Callable[[str], None] = print, html_every: float = 30.0, max_polls: int | None = None,
               fail_on: FailOn | None = None, watching: str = "", report_name: str | None = None) -> WatchEnd:
    """Poll ``watcher`` every ``interval`` seconds until ``max_polls``, a run at or above ``fail_on``, or Ctrl-C.

    ``write`` receives the report when it is due (and once more at the end); ``echo`` each line to print;
    ``watching`` names what is watched in the first line, ``report_name`` where the live report goes.
    """
    started = time.monotonic()
    last_write, render_s = -float("inf"), 0.0
    writing = False  # a Ctrl-C inside a write leaves no consistent state to write again with

    def do_write(report: Report) -> None:
        nonlocal last_write, render_s, writing
        assert write is not None
        t = time.monotonic()
        writing = True
        write(report)
        writing = False
        render_s, last_write = time.monotonic() - t, time.monotonic()

    def summary() -> str:
        counts = Counter(d.verdict for d in watcher.diagnoses)
        parts = ", ".join(f"{n} {v}" for v, n in counts.most_common()) or "no runs yet"
        return (f"watched {len(watcher.diagnoses)} run(s) for {time.monotonic() - started:.0f} s, {watcher.polls} "
                f"poll(s): {parts}" + (f"; live report: {report_name}" if report_name is not None else ""))

    try:
        while True:
            result = watcher.poll()
            if watcher.polls == 1:
                echo(f"[{_stamp()}] watching {result.runs} run(s) under {watching}, polling every {interval:g} s"
                     + (f"; live report: {report_name}" if report_name is not None else ""))
            for change in result.changes:
                echo(f"[{_stamp()}] {change.line()}")
            now = time.monotonic()
            due = watcher.polls == 1 or (result.judged and now - last_write >= max(
                0.0 if result.changes else html_every, 4 * render_s))
            gated = any(reaches(d.verdict, fail_on) for d in watcher.diagnoses)
            last = max_polls is not None and watcher.polls >= max_polls
            if (due or gated or last) and write is not None:
                do_write(watcher.report())
            if gated or last:
                return WatchEnd(gated, False, summary())
            time.sleep(max(0.0, interval - (time.monotonic() - now) - result.seconds))
    except KeyboardInterrupt:
        if write is not None and not writing and watcher.polls:
            do_write(watcher.report())  # the last state; the file of the last complete write stays otherwise
        return WatchEnd(False, True, summary())
