"""The lines of a text log, read in blocks: each block's lines are exactly those the whole file would give.

A block ends after a newline, so no line and no UTF-8 character is cut, and a CRLF stays whole.
What else could tell a block from the middle of the file is carried across the cut:

- ANSI escapes are removed before the lines are split, and an OSC sequence (``ESC ] ... BEL``)
  may run across lines: a block is cut only where no such sequence can span the cut.
- polars' CSV reader (which splits the lines) reads the first line of its input differently (a
  UTF-8 BOM is dropped; its separators fix the column count): every later block is read with the
  file's first line in front of it, and that line's row dropped.
- A line's step may come from the line printed just before it (`Block.before`), which may be the
  previous block's last line.

`ahead` reads the next block in a second thread while the caller reads this one.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl

#: A file is read in blocks of about this many bytes (the last line of each completed from the next). Larger
#: blocks fault in fresh pages for every block (polars' and the bytes' buffers are not reused at 32-64 MB:
#: 2x the page faults of 8 MB); smaller ones pay polars' per-call cost more often.
BLOCK_BYTES = 16 << 20
#: The file's first line is read again in front of every block; a longer one (a dump on one line) reads
#: the rest of the file as one block instead.
MAX_HEAD_BYTES = 1 << 20

_ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


#: A number printed inside a wrapper: a torch tensor's repr (``print("loss", loss)`` of a tensor writes
#: ``tensor(2.3456, device='cuda:0', grad_fn=<NllLossBackward0>)``) or numpy 2's scalar repr (``np.float32(2.3456)``).
#: Matched by polars (Rust's regex finds the literal starts with SIMD: ~3 ms a 16 MB block without any).
_WRAPPED = (r"\b(?:tensor|torch\.tensor|(?:np|numpy)\.(?:float|int|uint)(?:16|32|64|128)?)\(\s*"
            r"([-+]?(?:[0-9][0-9.]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|nan|inf))\s*(?:,[^()]*)?\)")


def clean(data: bytes) -> bytes:
    """ANSI colour and cursor codes removed."""
    return _ANSI.sub(b"", data) if b"\x1b" in data else data


#: absl's and glog's line prefix (``I1207 12:00:00.123456 140234567 train.py:123] ``): its thread id is a number
#: that no word names, and would take the name printed after it.
_ABSL_PREFIX = r"^[IWEFD][0-9]{4} [0-9:.]+ +[0-9]+ [^\s\]]+:[0-9]+\] "


def plain_numbers(lines: pl.DataFrame) -> pl.DataFrame:
    """``lines`` (a ``line`` column) with a number printed inside a tensor's or numpy scalar's repr unwrapped
    (``loss: tensor(2.31, device='cuda:0')`` reads as ``loss: 2.31``) and absl's prefix removed: what the readers
    of any layout read (the known layouts' patterns print neither, and are not searched)."""
    line = lines.get_column("line")
    if bool(line.str.contains(_ABSL_PREFIX).any()):
        line = line.str.replace(_ABSL_PREFIX, "")
    if bool(line.str.contains(_WRAPPED).any()):
        line = line.str.replace_all(_WRAPPED, "${1}")
    return lines.with_columns(line)


def lines_of(data: bytes, skip: int = 0) -> pl.Series:
    """The lines of ``data`` (row i = line i + 1; blank lines are null or whitespace), decoded leniently.

    CRLF ends a line; so does a lone CR (a progress bar redrawing itself): each redraw is a line. ``skip``: 1
    when ``data`` is a later part of a file with the file's first line in front (that line is not returned)."""
    if len(data) <= skip:
        return pl.Series("line", [], dtype=pl.String)
    try:
        # polars' CSV reader splits lines in Rust (and drops the CR of a CRLF); a separator no log prints
        # makes each line one cell.
        lines = pl.read_csv(data, has_header=False, separator="\x1f", quote_char=None, new_columns=["line"],
                            encoding="utf8-lossy", infer_schema=False,
                            truncate_ragged_lines=True).get_column("line").slice(skip)
    except pl.exceptions.PolarsError:  # a first line holding the separator; the plain split is slower
        text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
        lines = pl.Series("line", text[skip:-1] if data.endswith(b"\n") else text[skip:], dtype=pl.String)
    has_cr = lines.str.contains("\r", literal=True).fill_null(False).to_numpy()
    if not has_cr.any():
        return lines
    # Split only the lines holding a CR (few, unless the file is all progress bars) and gather every line or
    # piece into its place.
    at_cr = np.flatnonzero(has_cr)
    pieces = lines.gather(at_cr).str.split("\r")
    k = pieces.list.len().to_numpy().astype(np.int64)
    counts = np.ones(len(lines), np.int64)
    counts[at_cr] = k
    starts = np.cumsum(counts) - counts
    order = np.empty(int(counts.sum()), np.int64)
    whole = np.flatnonzero(~has_cr)
    order[starts[whole]] = whole
    first_piece = np.repeat(np.cumsum(k) - k, k)
    order[np.repeat(starts[at_cr], k) + np.arange(int(k.sum())) - first_piece] = len(lines) + np.arange(int(k.sum()))
    return pl.concat([lines, pieces.explode()]).gather(order)


@dataclass(frozen=True)
class Block:
    """Consecutive lines of a text log.

    Attributes:
        lines: ``row`` (u32 line index in the file), ``line``.
        before: the line before the first one (None: blank, or the block is the first).
        last: the block ends the file.
        unterminated: (last block only) the file's last line has no newline: it may be cut off.
    """

    lines: pl.DataFrame
    before: str | None
    last: bool
    unterminated: bool


def _cut(data: bytes) -> int:
    """Where ``data`` may end a block: after its last newline that no OSC escape sequence (``ESC ]``, ended by
    BEL or by the next ESC) can run across; 0 where there is none yet."""
    cut = data.rfind(b"\n") + 1
    while cut:
        # Every OSC before the last ESC ends by that ESC; only the last ESC, if it starts one, may run on.
        esc = data.rfind(b"\x1b", 0, cut)
        if esc < 0 or data[esc + 1] != 0x5D or data.find(b"\x07", esc + 2, cut) >= 0:
            return cut
        cut = data.rfind(b"\n", 0, esc) + 1
    return 0


def _pieces(path: Path, block_bytes: int | None) -> Iterator[tuple[bytes, int, bool]]:
    """The file's bytes in pieces of whole lines (`_cut`): (bytes, where the piece ends in them, last); the last
    piece is the rest of the file. A piece is read again from its end (the bytes after it are not kept)."""
    with open(path, "rb") as fh:
        pos = 0
        want = block_bytes
        while True:
            chunk = fh.read(want) if want is not None else fh.read()
            if want is None or len(chunk) < want:
                yield chunk, len(chunk), True
                return
            cut = _cut(chunk)
            if not cut:
                want *= 2  # a line longer than a block
                fh.seek(pos)
                continue
            yield chunk, cut, False
            pos += cut
            fh.seek(pos)
            if pos == cut and chunk.find(b"\n") + 1 > MAX_HEAD_BYTES:
                want = None  # the first line is read again in front of every block: too long for that
            else:
                want = block_bytes


def blocks(path: Path, block_bytes: int | None = BLOCK_BYTES) -> Iterator[Block]:
    """The lines of the file at ``path`` in blocks of about ``block_bytes`` (None: one block)."""
    head = b""  # the file's first line, once read
    row = 0
    before: str | None = None
    for n, (chunk, cut, last) in enumerate(_pieces(path, block_bytes)):
        if not n:
            data = clean(chunk[:cut] if cut < len(chunk) else chunk)
            lines = lines_of(data)
            head = data[: data.find(b"\n") + 1]
        elif chunk.find(b"\x1b", 0, cut) < 0:  # one copy: the first line and the piece
            data = b"".join((head, memoryview(chunk)[:cut]))
            lines = lines_of(data, 1)
        else:
            data = head + clean(chunk[:cut])
            lines = lines_of(data, 1)
        unterminated = last and len(data) > (len(head) if n else 0) and not data.endswith(b"\n")
        del chunk, data  # the block's text is in ``lines`` now; its bytes would double it while it is read
        yield Block(lines.to_frame().with_row_index("row", offset=row), before, last, unterminated)
        row += len(lines)
        if len(lines):
            before = lines[-1]


def ahead(items: Iterator[Block]) -> Iterator[Block]:
    """``items``, each made in a second thread while the one before is used: file reads and polars release the
    GIL, so reading the next block's lines overlaps with reading this one's numbers."""
    with ThreadPoolExecutor(1) as pool:
        coming = pool.submit(next, items, None)
        while (item := coming.result()) is not None:
            coming = pool.submit(next, items, None)
            yield item
