"""How one kind of printed metric line is laid out, learned from one of its lines.

A training script prints the same line again and again with new numbers in it: ``step:120/20000
train_loss:3.2104 train_time:5300ms``, ``step  120/20000 | train loss 3.210400 | norm 1.2345 |
lr 6.00e-04``, ``120 train 3.210400``, ``Epoch [3/10], Step [100/500], Loss: 2.31``. The lines of
one kind share a *template*: the line with each number replaced by a placeholder
(`analyzer.ingest.text_generic` groups lines by it). This module reads one example line of a
template the way a person reads it and says what each number is:

- a **counter**: the step (``step``, ``iter``, ``it``, ``s:``, ``global_step``, a leading integer,
  a key-less ``N/M``), the epoch (``Epoch 3/10``), or a batch counter within the epoch;
- a **metric** named by the words before it (``train loss 3.21``, ``loss=3.21``, ``'loss': 3.21``,
  ``- loss: 3.21``), or after it when nothing names it before (``2000 tok/s``, ``40% bf16 MFU``), with
  its unit (``ms``, ``s``, ``%``, ``BPC``) or multiplier (``12.3k``, ``124M``);
- or **not a value**: a date or clock (``2024-05-01 12:00:01``, ``[00:10<00:12``), a version, the
  total of a fraction (``/20000``), or a digit inside a name (``bf16``, ``Acc@1``, ``layers.0``).

A line's kind word (``val``, ``eval``, ``test``, ``train``) in the words before its first number, or in
a counter's key (``Epoch(val)``, ``Test: [ 10/50]``), prefixes the tags that do not already say it.

Why by hand: log-template miners (Drain and its kin) group lines but do not name the numbers, and no
library reads "a number and the words before it" with the units training scripts print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from analyzer.ingest.text_numbers import Token, is_integer, mark_roles, read_units, tokens_of
from analyzer.roles import EVAL_WORDS, TRAIN_WORDS

#: What a template holds in place of a number, and of a progress bar's glyphs (whose fill changes with every
#: redraw): characters of Unicode's private use area, which no training script prints.
NUM_MARK = "\ue000"
BAR_MARK = "\ue001"

#: Where one item of a line ends and the next begins.
_DELIMITER = re.compile(r"\||,|;|\t| - |\[|\]|\(|\)|\{|\}|<|>| {2,}")
#: The same, but for the name before a bracket, which may hold parentheses (``Epoch(train) [1]``).
_OUTER_DELIMITER = re.compile(r"\||,|;|\t| - |\[|\]|\{|\}| {2,}")
#: A word of a key (``train_loss``, ``lr-Adam``, ``Acc@1``, ``time(ms)``, ``tok/s``).
_WORD = r"(?:[A-Za-z_][\w@.\-/%]*(?:\([\w ]+\))?|\([A-Za-z/%]+\))"
#: The words before the last one of a key are plain words (``train loss``, ``elapsed time per iteration (ms)``):
#: a word holding digits (``v1.2.3``, ``bf16``, ``top-1``) ends a key rather than starting one.
_PLAIN_WORD = r"(?:[A-Za-z_][A-Za-z_\-/]*(?:\([\w ]+\))?|\([A-Za-z/%]+\))"
_KEY_AT_END = re.compile(rf"((?:(?:{_PLAIN_WORD}) ){{0,4}}(?:{_WORD}))$")
_PAREN_UNIT = re.compile(r" ?\([A-Za-z/%]+\)$")
#: An arrow between a key and its number (nanoT5's ``Loss --> 2.345``, ``lr => 1e-4``): a separator like ``:``.
_ARROW_AT_END = re.compile(r"\s*(?:-+>|=+>|\u2192)\s*$")
_KEY_AT_START = re.compile(rf"^((?:{_WORD})(?: (?:{_WORD})){{0,2}})")
#: Log-record prefixes that are not part of a key (``09:59:53 INFO epoch 1``).
_LOG_LEVELS = frozenset({"INFO", "DEBUG", "WARNING", "WARN", "ERROR", "CRITICAL", "TRACE", "NOTICE", "I", "W", "D"})
#: What may wrap a kind word printed on its own (``eval:``, ``[val]``, ``- test -``).
_WORD_PUNCTUATION = ":=|-[](){}<>\"'*#"


#: Counter keys, once qualifiers (``global_step``, ``train_step``, ``num_updates``) are set aside.
_STEP_WORDS = frozenset({"step", "steps", "iter", "iters", "iteration", "iterations", "it", "update", "updates",
                         "niter", "gstep", "globalstep"})
_FIRST_ONLY_STEP_WORDS = frozenset({"s", "i"})  # llm.c's ``s:120 trl:3.21``; only as a line's first item
_QUALIFIERS = frozenset({"global", "train", "training", "trainer", "num", "n", "cur", "current", "opt", "optimizer",
                         "total", "optim"}) | EVAL_WORDS
_EPOCH_WORDS = frozenset({"epoch", "epochs", "ep"})
#: Keys that are bookkeeping, not metrics (Lightning's bar prints its logger version as v_num; every tqdm bar, a data
#: loader's or an evaluation's too, prints its rate).
_NOT_METRICS = frozenset({"v_num", "eta", "epoch", "epochs", "ep", "it/s", "s/it"})  # tqdm's rate: not a metric

Counter = Literal["step", "epoch", "batch", "leading"]


@dataclass(frozen=True)
class Metric:
    """A named number of a line kind.

    Attributes:
        position: the index of its number among the template's numbers.
        tag: its tag (key as printed, kind prefix, unit suffix: ``val/loss``, ``train_time_ms``).
        scale: the multiplier its suffix stands for (``12.3k`` -> 1e3).
    """

    position: int
    tag: str
    scale: float = 1.0


@dataclass(frozen=True)
class LineLayout:
    """What the numbers of one line kind are.

    Attributes:
        metrics: the named numbers.
        step: the position of the step counter (a training step, or a batch within the epoch when
            ``within_epoch``), or None.
        step_key: the counter's key as printed (``step``, ``s``) or how it was found (``leading integer``).
        step_total: the position of the counter's fraction total (``step:120/20000`` -> 20000), or None.
        epoch: the position of an epoch counter, or None.
        within_epoch: the step counter counts batches within an epoch (a key-less ``N/M`` beside an
            epoch, ``Epoch [3/10], Step [100/500]``): a global step needs the epoch.
        kind: the line's kind word (``val``, ``train``, ...) or None.
        counter: how the step counter was found.
        measured: a metric of the example line is printed with a fraction or exponent (a measurement, not a
            count: what tells ``100 train 3.2140`` from an nvidia-smi table's ``| 0 ... 80GB |``).
    """

    metrics: tuple[Metric, ...]
    step: int | None
    step_key: str
    step_total: int | None
    epoch: int | None
    within_epoch: bool
    kind: str | None
    counter: Counter | None
    measured: bool = False

    @property
    def is_metric_line(self) -> bool:
        """Named numbers over a counter."""
        return bool(self.metrics) and (self.step is not None or self.epoch is not None)

    @property
    def is_stepless_evaluation(self) -> bool:
        """Named numbers of an evaluation with no counter (llm.c's ``val loss 3.2104``, build-nanogpt's
        ``validation loss: 3.2104``): the line belongs to the training step printed before it."""
        if not self.metrics or self.step is not None or self.epoch is not None:
            return False
        return self.kind in EVAL_WORDS or all(set(_words(m.tag)) & EVAL_WORDS for m in self.metrics)

    @property
    def is_header(self) -> bool:
        """An epoch counter alone (Keras' ``Epoch 3/10`` line): the epoch of the lines after it."""
        return not self.metrics and self.epoch is not None and self.step is None



def _words(key: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", key.lower()) if w]


def _kind_of(words: list[str]) -> str | None:
    for w in words:
        if w in EVAL_WORDS or w in TRAIN_WORDS:
            return w
    return None



def _clean_key(text: str) -> str | None:
    """The key at the end of ``text`` (the words before a number), or None."""
    text = text.rstrip(" \t:=\"'#")
    text = text.rsplit(":", 1)[-1] if ":" in text else text
    text = text.strip(" \t\"'")
    m = _KEY_AT_END.search(text)
    if m is None:
        return None
    words = m.group(1).split(" ")
    while words and words[0] in _LOG_LEVELS:
        words = words[1:]
    return " ".join(words) or None


def _key_before(line: str, boundary: int, start: int) -> tuple[str | None, str]:
    """The key printed between ``boundary`` and a number at ``start``, and the text before that key."""
    text = line[boundary:start]
    body = _ARROW_AT_END.sub("", text).rstrip(" \t:=\"'#")
    unit = _PAREN_UNIT.search(body)  # ``elapsed time per iteration (ms): 812.3``
    cut = 0
    for m in _DELIMITER.finditer(body[: unit.start()] if unit else body):
        cut = m.end()
    seg = body[cut:]
    key = _clean_key(seg) if seg.strip() else None
    if key is None and cut and body[cut - 1] in "[(":
        # ``Epoch [3/10]``, ``Epoch(train) [1][ 50/500]``, ``Test: [ 10/50]``: the name before the bracket.
        before = body[: cut - 1].rstrip(" :")
        inner = 0
        for m in _OUTER_DELIMITER.finditer(before):
            inner = m.end()
        found = _KEY_AT_END.search(before[inner:])
        if found is not None and (found.start() == 0 or before[inner:][found.start() - 1] in " \t"):
            key = _clean_key(found.group(1))
    return key, text[:cut]


def _key_after(line: str, stop: int, next_start: int) -> str | None:
    """A key printed after a number that nothing names before (``2000 tok/s)``, ``40% bf16 MFU |``): the words
    up to the next delimiter, when they end at one (not at the next number, whose key they are)."""
    after = line[stop:next_start]
    m = _DELIMITER.search(after)
    if m is None and next_start < len(line):
        return None
    piece = after[: m.start()] if m is not None else after
    found = _KEY_AT_START.match(piece.strip(" :=\"'"))
    return found.group(1) if found else None




def learn_layout(line: str) -> LineLayout:
    """The layout of the line kind ``line`` is an example of."""
    tokens = tokens_of(line)
    mark_roles(line, tokens)
    read_units(line, tokens)
    boundary = 0
    first_value: int | None = None
    prefix_words: list[str] = []
    previous_value: Token | None = None
    for j, t in enumerate(tokens):
        if t.role != "value":
            if t.role in ("total", "group", "location"):
                boundary = max(boundary, t.stop)
            continue
        key, before = _key_before(line, boundary, t.start)
        if key is None and t.suffix and t.unit is None:
            key = t.suffix + re.match(r"[\w/]*", line[t.stop:]).group(0)  # type: ignore[union-attr]  # 43.2it/s
        if key is None:
            nxt = next((u.start for u in tokens[j + 1:] if u.role != "name"), len(line))
            key = _key_after(line, t.stop, nxt)
            if key is not None and previous_value is not None and previous_value.key is not None \
                    and line[boundary:t.start].strip() == "(" and line[t.stop:].lstrip().startswith(")"):
                key = None
            if key is None and previous_value is not None and previous_value.key is not None \
                    and line[boundary:t.start].strip() == "(":
                key = f"{previous_value.key}_avg"  # timm, fairseq: ``Loss: 2.31 (2.40)``, the running average
        if first_value is None:
            first_value = j
            prefix_words = _words(before + (line[boundary:t.start] if key is None else ""))
            if key is not None:  # a kind word printed before the first key (``eval: step 100``, ``INFO val: loss``)
                segment = line[boundary:t.start]
                cut = segment.rfind(key)
                prefix_words += [w for w in (w.strip(_WORD_PUNCTUATION).lower() for w in segment[:max(cut, 0)].split())
                                 if w in EVAL_WORDS or w in TRAIN_WORDS]
        t.key = key
        boundary = t.stop
        previous_value = t
    return _assemble(line, tokens, first_value, prefix_words)


#: With several counters on a line, the optimizer's step wins: litgpt prints ``iter 80 step 20`` (micro-batches,
#: optimizer steps), Megatron-DeepSpeed ``steps: 10`` beside ``iteration 10``.
_STEP_PRIORITY = {"step": 0, "steps": 0, "gstep": 0, "globalstep": 0, "update": 1, "updates": 1, "iteration": 2,
                  "iterations": 2, "iter": 2, "iters": 2, "niter": 2, "it": 3}


def _step_priority(key: str | None) -> int:
    words = [w for w in _words((key or "").rsplit(" ", 1)[-1]) if w not in _QUALIFIERS]
    return _STEP_PRIORITY.get(words[0], 4) if len(words) == 1 else 4


def _counter_kind(key: str | None, first: bool) -> str | None:
    if key is None:
        return None
    words = _words(key.rsplit(" ", 1)[-1])  # ``gen-val step 10``: the last word names the number
    core = [w for w in words if w not in _QUALIFIERS]
    if len(core) == 1 and (core[0] in _STEP_WORDS or (first and core[0] in _FIRST_ONLY_STEP_WORDS and len(words) == 1)):
        return "step"
    if len(core) == 1 and core[0] in _EPOCH_WORDS:
        return "epoch"
    if len(core) == 1 and core[0] == "batch":
        return "batch"
    if not core and words and all(w in EVAL_WORDS | TRAIN_WORDS for w in words):
        return "kind"  # ``Train: 3 [...]``, ``Test: [ 10/50]``: a kind word naming a counter
    return None


def _assemble(line: str, tokens: list[Token], first_value: int | None, prefix_words: list[str]) -> LineLayout:
    values = [(j, t) for j, t in enumerate(tokens) if t.role == "value"]
    has_total = {j for j, t in values if j + 1 < len(tokens) and tokens[j + 1].role == "total"}
    step = epoch = None
    step_key = ""
    counter: Counter | None = None
    within = False
    kind = _kind_of(prefix_words)
    used: set[int] = set()
    kinds = {j: _counter_kind(t.key, j == first_value) for j, t in values}
    integer = {j for j, t in values if is_integer(t.text) and not t.suffix}
    steps_keyed = [j for j, t in values if kinds[j] == "step" and j in integer]
    preferred = min(steps_keyed, key=lambda j: _step_priority(tokens[j].key), default=None)
    for j, t in values:
        what = kinds[j]
        if j not in integer:
            continue
        if what == "step" and j == preferred:
            step, step_key, counter = j, t.key or "", "step"
        elif what == "epoch" and epoch is None:
            epoch = j
        elif what == "kind":
            kind = kind or _kind_of(_words(t.key or ""))
            if j + 1 < len(tokens) and tokens[j + 1].role == "total" and step is None:
                step, step_key, counter = j, t.key or "", "batch"
            elif epoch is None and t.key is not None and any(k in has_total for k in integer if k > j):
                epoch = j  # timm's ``Train: 3 [ 100/500 (20%)]``: the kind word names the epoch
            else:
                continue
        else:
            continue
        used.add(j)
    if step is None:
        keyless = [j for j, t in values if j in integer and j in has_total and (t.key is None or kinds[j] == "batch")]
        if len(keyless) >= 2 and epoch is None and _adjacent(values, keyless[0], keyless[1]):
            # ``[3/25][100/1583]`` (PyTorch's DCGAN example, GAN scripts): the epoch, then the batch within it
            epoch, step, step_key, counter = keyless[0], keyless[1], "N/M", "batch"
            used.update((epoch, step))
            within = True
        elif keyless:
            step, step_key, counter = keyless[0], "N/M", "batch"
            used.add(step)
            within = True
        elif first_value is not None and first_value in integer and tokens[first_value].key is None:
            step, step_key, counter = first_value, "leading integer", "leading"
            used.add(step)
    elif epoch is not None and step is not None and counter == "batch":
        within = True
    if step is None and epoch is not None:
        counter = "epoch"
    for j, t in values:  # a key naming the kind (Epoch(val), Test: [...]) sets it
        if kind is None and t.key is not None and j in used:
            kind = _kind_of(_words(t.key))
    metrics = []
    for j, t in values:
        if j in used or t.key is None:
            continue
        if set(_words(t.key)) & _EPOCH_WORDS and j in integer:
            continue
        if t.key.lower() in _NOT_METRICS or _words(t.key)[-1:] in (["pid"], ["ip"]):  # Ray's ``(Worker pid=1, ip=...)``
            continue
        metrics.append(Metric(j, _tag(t, kind), t.unit[1] if t.unit else 1.0))
    step_total = step + 1 if step is not None and step in has_total else None
    measured = any(not is_integer(tokens[m.position].text) for m in metrics)
    return LineLayout(tuple(metrics), step, step_key, step_total, epoch, within, kind, counter, measured)


def _adjacent(values: list[tuple[int, Token]], a: int, b: int) -> bool:
    """Whether the values at token positions ``a`` and ``b`` follow each other (no value between them)."""
    order = [j for j, _ in values]
    return order.index(b) == order.index(a) + 1


def _tag(t: Token, kind: str | None) -> str:
    key = t.key or ""
    if t.unit is not None and t.unit[0] is not None and not _words(key)[-1:] == [t.unit[0].lower()]:
        key = f"{key}_{t.unit[0]}"
    if kind is not None and not (set(_words(key)) & (EVAL_WORDS | TRAIN_WORDS)):
        key = f"{kind}/{key}"
    return key
