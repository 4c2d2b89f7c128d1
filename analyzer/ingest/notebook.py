"""Jupyter notebooks (``.ipynb``): the training log is in the cells' saved outputs.

A run trained in Colab, Kaggle or Jupyter leaves its log in the notebook: what the cells printed (``stream``
outputs: the HF Trainer's dicts, tqdm bars, a loop's own prints), the tables the HF Trainer's notebook callback
draws as HTML (``Step | Training Loss | Validation Loss``, redrawn as training goes: the last drawing holds every
row), and the tracebacks of failed cells (an out-of-memory error is evidence). Those are put together in cell
order as the text of one printed log and read by the text reader (`textlog`), so a notebook reads as the same
output printed to a terminal would.

Why by hand: nbformat would validate and upgrade the notebook, which is not needed to read its outputs (a JSON
document), and it is not among the project's packages; the HTML tables are read with the standard library's
html.parser.
"""

from __future__ import annotations

import json
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, TypeVar

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest import textlog
from analyzer.types import Note

T = TypeVar("T")


class _Tables(HTMLParser):
    """The rows of every HTML table, each a list of its cells' text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _html_tables(html: str) -> list[list[list[str]]]:
    """Each HTML table with more than its header: its rows of cells."""
    parser = _Tables()
    parser.feed(html)
    return [table for table in parser.tables if len(table) > 1]


def _text(value: Any) -> str:
    """A notebook string field: one string, or a list of lines as nbformat stores multi-line text."""
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def _output(output: Any) -> tuple[str, list[list[list[str]]]]:
    """(what an output printed, the HTML tables it draws)."""
    if not isinstance(output, dict):
        return "", []
    kind = output.get("output_type")
    if kind == "stream":
        return _text(output.get("text")), []
    if kind == "error":
        trace = output.get("traceback")
        return "\n".join(_text(line) for line in (trace if isinstance(trace, list) else [trace])), []
    data = output.get("data")
    if kind in ("display_data", "update_display_data", "execute_result") and isinstance(data, dict):
        return "", _html_tables(_text(data.get("text/html")))
    return "", []


def _cell_tables(drawn: list[list[list[str]]]) -> list[list[list[str]]]:
    """The tables of one cell, each training's once: the Trainer redraws its table as it trains (each drawing the
    one before with rows added: the last holds every row), while a cell training several runs (an LR sweep in a
    loop) draws a table per run."""
    kept: list[list[list[str]]] = []
    for table in drawn:
        if kept and table[: len(kept[-1])] == kept[-1]:
            kept[-1] = table
        else:
            kept.append(table)
    return kept


def notebook_text(path: Path, *, tables_first: bool = False) -> str:
    """What the notebook's cells printed, in cell order, each cell's HTML tables (tab-separated) after its printed
    text; ``tables_first``: every table before all printed text (a sample of the head then holds them)."""
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise LogFormatError(f"not a readable notebook ({type(exc).__name__}: not valid JSON)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list) or "nbformat" not in doc:
        raise LogFormatError("a .ipynb without nbformat's cells: not a Jupyter notebook")
    printed: list[str] = []
    tables: list[str] = []
    for cell in doc["cells"]:
        outputs = cell.get("outputs") if isinstance(cell, dict) else None
        drawn: list[list[list[str]]] = []
        for text, cell_tables in map(_output, outputs if isinstance(outputs, list) else []):
            printed.append(text)
            drawn += cell_tables
        shown = ["\n".join("\t".join(row) for row in table) for table in _cell_tables(drawn)]
        (tables if tables_first else printed).extend(shown)
    # each piece on lines of its own (a bar's last redraw ends with no newline); NULs are no text
    text = "".join(p if p.endswith("\n") else p + "\n" for p in tables + printed if p).replace("\x00", "")
    if not text.strip():
        raise LogFormatError("a notebook whose cells saved no output (cleared, or never run)")
    return text


def _with_text(path: Path, read: Callable[[Path], T], *, tables_first: bool = False) -> T:
    """``read(text_path)`` on the notebook's output text, written to a temporary file named like the notebook (the
    text reader reads files, and its notes name the file)."""
    text = notebook_text(path, tables_first=tables_first)
    with tempfile.TemporaryDirectory(prefix="steadytrain-nb-") as tmp:
        out = Path(tmp) / path.name
        out.write_text(text, encoding="utf-8", errors="replace")
        return read(out)


def sniff(path: Path) -> textlog.TextDialect:
    """The text dialect of the notebook's outputs; LogFormatError when they hold no training log."""
    try:
        return _with_text(path, textlog.sniff, tables_first=True)  # the sniff samples the head
    except LogFormatError as exc:
        raise LogFormatError(f"a notebook whose outputs are no training log ({exc})") from None


def read(path: Path, dialect: textlog.TextDialect) -> tuple[RawPoints, list[Note]]:
    """The points of the notebook's printed log, as the text reader reads it."""
    return _with_text(path, lambda text_path: textlog.read_text_log(text_path, dialect))
