"""The line patterns of training stdout (Slurm .out files, console logs): one entry per kind of line.

Each `LinePattern` says how one tool prints one kind of metric line: a regular expression that
claims the line (and captures its step), how the rest of the line splits into key/value items,
and how keys become tags. The facts come from the tools' own format strings:

- Megatron-LM ``training_log``: ``' iteration {:8d}/{:8d} |'`` then ``' {key}: {value} |'`` items
  (consumed samples, elapsed time per iteration (ms), learning rate, global batch size, every
  loss key, loss scale, grad norm, num zeros, params norm, number of skipped/nan iterations);
  GPT-NeoX prints the same items (``samples/sec`` before the iteration). Validation:
  ``' validation loss at iteration {} | {key} value: {:.6E} | {key} PPL: {:.6E} | '``.
- NeMo 2 ``MegatronProgress``: ``'Training epoch {e}, iteration {n}/{total}'`` + ``' | {metric}: {val}'``.
- nanoGPT ``train.py``: ``f"iter {iter_num}: loss {lossf:.4f}, time {dt*1000:.2f}ms, mfu {mfu*100:.2f}%"``
  and ``f"step {iter_num}: train loss {:.4f}, val loss {:.4f}"``; build-nanogpt:
  ``f"step {step:5d} | loss: {:.6f} | lr {lr:.4e} | norm: {norm:.4f} | dt: {ms:.2f}ms | tok/sec: {:.2f}"``.
- HF Trainer ``ProgressCallback.on_log`` / ``PrinterCallback``: ``str(logs)``, a Python dict repr with
  no step (values are floats, ``'{v:.4g}'`` strings in newer versions, or ``np.float64(...)``).
- fairseq ``SimpleProgressBar``: ``'{prefix}:  {i:5d} / {size:d} {key}={value}, ...'`` per log
  interval and ``'{prefix} | {key} {value} | ...'`` at the end of an epoch or validation, where
  prefix is ``epoch 001`` (with ``valid on 'valid' subset`` for validation); ``JsonProgressBar``
  writes ``json.dumps(stats)`` after the logging prefix (``... | INFO | train_inner | {...}``).

Adding a tool = appending one `LinePattern` to `LINE_PATTERNS` (and a fixture test written from
the tool's format string). Order matters: a line goes to the first pattern that claims it, so a
specific pattern comes before a general one of the same dialect. Regular expressions are run by
polars (Rust ``regex``) and by nothing else: no look-around, no back-references.

`EVENT_PATTERNS` are the instability messages read from the lines no metric pattern claimed;
their tags are listed in `analyzer.ingest.textlog`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

from analyzer.ingest.tabular import PROGRESS_KEYS

#: How a line's body splits into items: on '|' (Megatron, NeMo, fairseq epoch lines), on ','
#: (nanoGPT, fairseq's per-interval line), a Python dict repr, or a JSON object.
Split = Literal["pipe", "comma", "pydict", "json"]
#: How an item splits into key and value; an item without that separator splits at its last space.
KeySep = Literal[":", "=", " "]
#: Where a line's step comes from: the line itself (the `step` group or a `step_keys` item), the
#: count of such lines (HF's printed dicts carry no step), or the metric line before/after it.
StepFrom = Literal["line", "ordinal", "previous", "next"]


@dataclass(frozen=True)
class LinePattern:
    """How one kind of metric line of one tool is recognised and read.

    Attributes:
        dialect: the tool's dialect name (several patterns may share one).
        name: this pattern's name, for notes ("megatron.validation").
        find: regular expression that claims a line. Optional named groups: ``step`` (the step),
            ``body`` (the text holding the items; default the whole line), ``prefix`` (prepended
            to every tag of the line, with a '/'), ``bar`` (HF only: a tqdm counter just before
            the dict, see textlog).
        split: how the body splits into items.
        marker: a literal text every line this pattern claims contains: checked first, because a
            literal search costs a fraction of the expression's on lines that lack it.
        step_find: a shorter expression whose ``step`` group reads the step from a claimed line
            (a capture costs more the longer the expression it runs).
        key_sep: how an item splits into key and value.
        step_from: where the step comes from.
        step_keys: item keys holding the step (first present wins over the ``step`` group).
        step_item: items matching this expression hold the step, not a metric (Megatron's
            ``iteration 100/ 5000`` item, wherever it sits in the line).
        terminated: every item ends with the separator (Megatron's ``' key: value |'``), so a
            non-blank text after the last one is a damaged or cut line: it is not read.
        prefix: prepended to every tag of the line.
        rename: key -> tag, for keys whose printed name would mislead (nanoGPT's ``norm`` is the
            unclipped gradient norm clip_grad_norm_ returns).
        drop_suffix: removed from the end of keys (Megatron validation's ``' value'``).
        skip: keys that are not metrics (the epoch counter, the step key itself).
        units: values may carry a unit (``12.34ms``, ``30.12%``); the unit joins the tag
            (``time_ms``, ``mfu_percent``).
        missing: tag -> value a tool prints before it has measured anything (nanoGPT's mfu is
            -100% for the first iterations); such values are not points.
        attach_prefixes: with ``step_from="ordinal"``, a line whose keys all start with one of
            these (HF's ``eval_*``) is an evaluation: it takes the step of the counted line before it.
        summary_keys: with ``step_from="ordinal"``, a line holding one of these keys is the end-of-
            training summary (an *averaged* loss): it is counted, not read.
        unless: a line ``find`` claims is left to the other readers when this expression matches it too.
    """

    dialect: str
    name: str
    find: str
    split: Split
    marker: str = ""
    step_find: str | None = None
    key_sep: KeySep = ":"
    step_from: StepFrom = "line"
    step_keys: tuple[str, ...] = ()
    step_item: str | None = None
    terminated: bool = False
    prefix: str = ""
    rename: Mapping[str, str] = field(default_factory=dict)
    drop_suffix: str = ""
    skip: frozenset[str] = frozenset()
    units: bool = False
    missing: Mapping[str, float] = field(default_factory=dict)
    attach_prefixes: tuple[str, ...] = ()
    summary_keys: tuple[str, ...] = ()
    unless: str | None = None


_NUM = r"(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?i:nan|inf))"
_UPDATES = ("num_updates",)  # fairseq counts optimizer updates: its step

LINE_PATTERNS: tuple[LinePattern, ...] = (
    # NeMo 2's MegatronProgress (before Megatron's pattern, which its lines also match): the trainer's
    # global_step is an item; the iteration counts within the epoch.
    LinePattern("nemo", "nemo.train", r"Training epoch \d+, iteration (?P<step>\d+)/\d+:?\s*\|(?P<body>.*)$", "pipe",
                marker="Training epoch ", step_keys=("global_step",), skip=frozenset({"global_step"})),
    # Megatron-LM / GPT-NeoX / Megatron-DeepSpeed. Validation first: its line holds "iteration N" too.
    LinePattern("megatron", "megatron.test",
                r"(?:validation|evaluation) (?:loss|results) at iteration (?P<step>\d+) on test set[^|]*\|(?P<body>.*)$",
                "pipe", marker=" on test set", terminated=True, prefix="test", drop_suffix=" value"),
    LinePattern("megatron", "megatron.validation",
                r"(?:validation|evaluation) (?:loss|results) at iteration (?P<step>\d+)[^|]*\|(?P<body>.*)$",
                "pipe", marker=" at iteration ", terminated=True, prefix="validation", drop_suffix=" value"),
    LinePattern("megatron", "megatron.train", r"iteration\s+(?P<step>\d+)/\s*\d+\s*\|", "pipe", marker="iteration",
                step_find=r"iteration\s+(?P<step>\d+)/", step_item=r"iteration\s+\d+/\s*\d+", terminated=True),
    # nanoGPT and build-nanogpt (Karpathy's GPT-2 reproduction).
    LinePattern("nanogpt", "nanogpt.iter", r"(?i)(?:^|\s)iter (?P<step>\d+): (?P<body>loss [^\s,]+(?:,.*)?)$", "comma",
                marker="ter ", key_sep=" ", units=True, missing={"mfu_percent": -100.0, "MFU_percent": -100.0}),
    LinePattern("nanogpt", "nanogpt.eval", r"(?:^|\s)step (?P<step>\d+): (?P<body>train loss [^,]+, val loss .*)$",
                "comma",
                marker="train loss", key_sep=" ", rename={"train loss": "eval/train_loss", "val loss": "val_loss"}),
    LinePattern("nanogpt", "build_nanogpt.step", r"(?:^|\s)step:?\s+(?P<step>\d+) \| (?P<body>loss:? [-+.\w]+ \|.*)$",
                "pipe",
                marker="step", units=True, rename={"norm": "grad_norm"}),
    LinePattern("nanogpt", "build_nanogpt.validation", r"^\s*(?P<body>validation loss: " + _NUM + r")\s*$", "pipe",
                marker="validation loss: ", step_from="next", rename={"validation loss": "val_loss"}),
    # HF Trainer: the printed log dict. The tqdm bar the Trainer redraws may sit just before it.
    LinePattern("hf_trainer_print", "hf_trainer_print.log",
                r"(?:(?P<bar>\d+)/\d+ \[[^\]\n]*\])?\s*(?P<body>\{'[^']+': .*\})\s*$", "pydict", marker="{'",
                step_from="ordinal", step_keys=("step",) + PROGRESS_KEYS,
                skip=frozenset({"epoch", "step", "total_flos", *PROGRESS_KEYS}),
                attach_prefixes=("eval_",), summary_keys=("train_runtime",),
                # a script's own line that prints its counter before the dict (``step 100: {'loss': ...}``) is
                # read by its layout, at that step, not by the dicts' order
                unless=r"(?i)\b(?:step|global_step|iter|iteration|update)\b\s*[:=]?\s*\d+[^{]*\{'"),
    # fairseq's simple progress bar, in its old ("| epoch 001 |") and logging-prefixed forms, and its JSON bar.
    LinePattern("fairseq_text", "fairseq.valid", r"epoch \d+ \| valid on '(?P<prefix>[^']+)' subset \| (?P<body>.*)$",
                "pipe", marker="subset |", key_sep=" ", step_keys=_UPDATES,
                skip=frozenset(_UPDATES)),
    LinePattern("fairseq_text", "fairseq.train_inner", r"epoch \d+:\s+\d+ / \d+ (?P<body>\w+=.*)$", "comma",
                marker=" / ", key_sep="=", step_keys=_UPDATES,
                skip=frozenset(_UPDATES)),
    LinePattern("fairseq_text", "fairseq.train_epoch", r"epoch \d+ \| (?P<body>\w+ \S+ \|.*)$", "pipe",
                marker="epoch ", key_sep=" ", prefix="train", step_keys=_UPDATES,
                skip=frozenset(_UPDATES)),
    LinePattern("fairseq_text", "fairseq.json", r"\| (?:train_inner|train|valid\S*) \| (?P<body>\{\".*\})\s*$",
                "json", marker="{\"", step_keys=("num_updates", "train_num_updates", "valid_num_updates"),
                skip=frozenset({"epoch", "update", "num_updates", "train_num_updates", "valid_num_updates"})),
)

#: Dialect names in registry order.
DIALECTS: tuple[str, ...] = tuple(dict.fromkeys(p.dialect for p in LINE_PATTERNS))


@dataclass(frozen=True)
class EventPattern:
    """An instability message that becomes a point on a ``log_events/*`` tag at its step.

    Attributes:
        tag: the tag its points go to.
        find: regular expression that finds the message in a line no metric pattern claimed.
        value_group: when set, the point's value is this named group's number (a new loss
            scale); otherwise the point is 1 (the message was seen at that step).
    """

    tag: str
    find: str
    value_group: str | None = None


_NONFINITE = r"(?:\bnan\b|\binf\b|infinite|non-finite|nonfinite)"
EVENT_PATTERNS: tuple[EventPattern, ...] = (
    # apex amp: "Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 32768.0";
    # DeepSpeed: "[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768",
    # "Grad overflow on iteration: 4", "fp16 dynamic loss scale overflow! Skipping step";
    # fairseq: "NOTE: gradient overflow detected, ignoring gradient, setting loss scale to: 64.0".
    EventPattern("log_events/overflow_skip",
                 r"Gradient overflow|OVERFLOW!|overflow! Skipping step|[Gg]rad(?:ient)? overflow (?:on|detected)"
                 r"|WARNING: overflow detected"),
    EventPattern("log_events/loss_scale",
                 r"(?i)(?:reducing (?:loss scale )?to|setting loss scale to|loss scale reduces to"
                 r"|(?:reducing|increasing) (?:dynamic )?loss scale from \S+ to):?\s*(?P<value>" + _NUM + ")",
                 value_group="value"),
    EventPattern("log_events/nan_warning",
                 r"(?i)" + _NONFINITE + r".*(?:loss|grad|tensor)|(?:loss|grad|tensor).*" + _NONFINITE),
    EventPattern("log_events/oom", r"(?i)out of memory|OutOfMemoryError"),
)
