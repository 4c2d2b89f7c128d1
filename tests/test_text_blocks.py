"""A text log read in blocks gives exactly what reading it at once gives: points (tags, order, steps,
values), notes (kinds, wording, counts) and errors, on every printed format of tests/printed_formats.py
and on hypothesis-built files mixing what can sit across a block boundary (progress-bar redraws,
CRLF, bad bytes, ANSI and OSC escapes over several lines, a BOM, a cut last line, instability
messages, lines that take a neighbour's step, lines that change layout partway, steps past int64)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analyzer.errors import LogFormatError
from analyzer.ingest import text_lines
from analyzer.ingest.text_patterns import DIALECTS
from analyzer.ingest.textlog import TextDialect, read_text_log, sniff
from tests.printed_formats import FORMATS, example_curve, write


def outcome(path: Path, dialect: TextDialect, block_bytes: int | None) -> tuple:
    try:
        pts, notes = read_text_log(path, dialect, block_bytes=block_bytes)
    except LogFormatError as e:
        return ("error", str(e))
    return (pts.tags, pts.tag_codes.tolist(), pts.steps.tolist(), np.nan_to_num(pts.values, nan=-7.5e300).tolist(),
            np.isnan(pts.wall_times).all(), [(n.kind, n.message, n.count) for n in notes])


def assert_same_in_blocks(path: Path, dialect: TextDialect, sizes: list[int]) -> tuple:
    whole = outcome(path, dialect, None)
    for size in sizes:
        assert outcome(path, dialect, size) == whole, size
    return whole


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_printed_format_reads_the_same_in_blocks(tmp_path, name):
    spec = FORMATS[name]
    path = write(name, tmp_path / spec.filename, example_curve(name))
    try:
        dialect = sniff(path)
    except LogFormatError:
        pytest.skip("not a text log (a CSV)")
    size = path.stat().st_size
    whole = assert_same_in_blocks(path, dialect, [size // 7 + 1, 4096])
    assert whole[0] != "error" and whole[2], name


def test_a_megatron_log_with_messages_and_noise_reads_the_same_in_small_blocks(tmp_path):
    lines = []
    for it in range(1, 400):
        lines.append(f" iteration {it:8d}/ 1000 | consumed samples: {it * 8:12d} | lm loss: {3 + 1 / it:.6E} | "
                     f"loss scale: {65536.0:.1f} | grad norm: {1.5:.3f} |\n")
        if it % 37 == 0:
            lines.append("[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768\n")
        if it % 53 == 0:
            lines.append(f" validation loss at iteration {it} | lm loss value: 2.5E+00 | lm loss PPL: 1.2E+01 | \n")
        if it % 11 == 0:
            lines.append("WARNING: something noisy\r\n")
    path = tmp_path / "job.out"
    path.write_text("".join(lines) + " iteration      400/ 1000 | lm loss: 2.1")  # a cut last line
    assert_same_in_blocks(path, sniff(path), [64, 300, 1000, 5000])


def test_items_keep_the_whole_files_order_across_blocks(tmp_path):
    """A tag's items with the key separator come before those split at their last space, over all blocks, and
    tags are ordered by where the first of the first kind sits (`TextPoints` keeps this order within a tag)."""
    common = "".join(f" iteration {i:8d}/ 100 | lm loss: {1 / i:.4f} | grad norm: 0.5 | lr: 1.0 |\n"
                     for i in range(1, 30))
    path = tmp_path / "job.out"
    path.write_text(" iteration       40/ 100 | zb 1.0 | za 2.0 |\n" + common + " iteration       41/ 100 | za: 3.0 |\n"
                    " iteration       42/ 100 | zb 4.0 | za 5.0 |\n")
    whole = assert_same_in_blocks(path, sniff(path), [100, 700])
    tags, codes, _, values = whole[:4]
    assert [v for c, v in zip(codes, values) if tags[c] == "za"] == [3.0, 2.0, 5.0]


def test_a_bar_printed_just_before_a_block_still_gives_the_next_lines_step(tmp_path):
    """HF's printed dicts take their step from the tqdm bar on the line before, which may end the previous
    block."""
    text = "".join(f" {k}%|#  | {10 * k}/1000 [00:0{k % 10}<00:01, 9.9it/s]\n{{'loss': {1 / k:.4f}, 'epoch': 0.{k}}}\n"
                   for k in range(1, 40))
    path = tmp_path / "job.out"
    path.write_text(text)
    whole = assert_same_in_blocks(path, sniff(path), list(range(40, 200, 7)))
    assert whole[2][:3] == [10, 20, 30]


# ---- hypothesis: files mixing every kind of line, read in blocks of any size ----

_LINES = [
    " iteration {i:8d}/ 1000 | consumed samples: {j:6d} | lm loss: {v:.6E} | grad norm: {w:.3f} |",
    " iteration {i:8d}/ 1000 | consumed samples: {j:6d} | lm loss: nan | grad norm: {w:.3f} |",
    " iteration {i:8d}/ 1000 | lm loss: {v:.6E} | extra: 1 | grad norm: {w:.3f} |",  # another layout
    " iteration {i:8d}/ 1000 | lm loss: {v:.6E} | grad norm {w:.3f} | junk |",  # an item with no ':'
    " iteration {i:8d}/ 1000 | consumed samples: {j:6d} | lm loss: {v:.6E} | grad norm: {w:.3f} | cut",
    " iteration 99999999999999999999/ 1000 | lm loss: {v:.6E} |",  # a step past int64
    " iteration {i:8d}/ 1000 | zb {w:.3f} | za {v:.3f} |",  # items split at their last space ...
    " iteration {i:8d}/ 1000 | za: {v:.3f} |",  # ... and the same key with its separator
    " validation loss at iteration {i} | lm loss value: {v:.6E} | lm loss PPL: {w:.3E} | ",
    "iter {i}: loss {v:.4f}, time {w:.2f}ms, mfu -100.00%",
    "iter {i}: loss {v:.4f}, time {w:.2f}ms, mfu {w:.2f}%",
    "step {i}: train loss {v:.4f}, val loss {w:.4f}",
    "validation loss: {v:.4f}",
    "{{'loss': {v:.4f}, 'grad_norm': {w:.3f}, 'learning_rate': 1e-05, 'epoch': 0.{j}}}",
    "{{'eval_loss': {v:.4f}, 'epoch': 0.{j}}}",
    " {j}%|#####     | {i}/1000 [00:04<00:06, 9.9it/s]",
    "epoch 001:     {i} / 500 loss={v:.3f}, nll_loss={w:.3f}, num_updates={i}",
    "epoch 001 | valid on 'valid' subset | loss {v:.3f} | num_updates {i}",
    "Epoch {j}/10",
    "step:{i}/1000 train_loss:{v:.4f} train_time:{j}ms",
    "Epoch {j}: 100%|##########| 50/50 [00:01<00:00, loss={v:.3f}, v_num=0]",
    "Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to {j}.0",
    "Warning: NaN or Inf found in input tensor.",
    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
    "some noise {j}",
    "",
    "   ",
    "\x1b[32mcoloured\x1b[0m iteration {i:8d}/ 1000 | lm loss: {v:.6E} |",
    "\x1b]0;title running over",  # an OSC that a later BEL or ESC ends, lines later
    "the title ends here\x07 iter {i}: loss {v:.4f}, time 1.00ms",
    "\x1b]",
    "\ufeffa BOM inside",
    "a \x1f unit separator",
    "bad bytes \udcff\udcfe here",  # written as the lone bytes 0xff 0xfe
    "\rredrawn {i}\rredrawn again iter {i}: loss {v:.4f}, time 1.00ms",
    "step {i} loss tensor({v:.4f}, device='cuda:0', grad_fn=<NllLossBackward0>)",  # print('step', i, 'loss', loss)
    "iter {i} loss=np.float32({v:.5f}) lr=np.float64(0.001)",
    "np.float32 and tensor( are words here {j}",
]


@st.composite
def _logs(draw: st.DrawFn) -> bytes:
    picks = draw(st.lists(st.integers(0, len(_LINES) - 1), min_size=1, max_size=60))
    ends = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r", "\n\n"]), min_size=len(picks), max_size=len(picks)))
    out = []
    for k, (pick, end) in enumerate(zip(picks, ends)):
        text = _LINES[pick].format(i=k + 1, j=k % 7, v=3 - k / 100, w=0.5 + k / 50)
        out.append(text.encode("utf-8", errors="surrogateescape") + end.encode())
    data = b"".join(out)
    return data[: draw(st.integers(len(data) - 5, len(data)))] if draw(st.booleans()) else data


_ALL = TextDialect(tuple(DIALECTS), 0, 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_logs(), sizes=st.lists(st.integers(1, 400), min_size=1, max_size=3))
@example(data=b"\x1f\nx\n" + b" iteration 1/ 9 | lm loss: 1.0 |\n" * 5, sizes=[3])
@example(data=b"a\n\x1b]0;t\n iteration 1/ 9 | lm loss: 1.0 |\n\x07iteration 2/ 9 | lm loss: 1.0 |\n", sizes=[5])
def test_any_log_reads_the_same_in_blocks_of_any_size(tmp_path, data, sizes):
    path = tmp_path / "job.out"
    path.write_bytes(data)
    assert_same_in_blocks(path, _ALL, sizes)


def test_a_long_first_line_is_read_once_and_the_rest_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(text_lines, "MAX_HEAD_BYTES", 50)
    path = tmp_path / "job.out"
    path.write_text("config " + "x" * 100 + "\n" + "".join(f"iter {i}: loss {1 / i:.4f}, time 1.00ms\n"
                                                          for i in range(1, 200)))
    got = list(text_lines.blocks(path, 120))
    assert len(got) == 2 and got[1].last
    assert_same_in_blocks(path, sniff(path), [120])
