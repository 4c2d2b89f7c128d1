"""Which tag plays which metric role: train loss, eval loss, unclipped grad norm, learning rate.

By name, over the spellings real tools write (SummaryWriter scripts, Lightning's train_loss_step
and lr-Adam, HF's loss/grad_norm/learning_rate/eval_loss, ...); the user overrides any role with
--role ROLE=TAG. Ties go to the tag with more points (step-level beats epoch-level), then to the one logged
first (YOLO logs box_loss, cls_loss and dfl_loss, and no total).
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

from analyzer.errors import ConfigError
from analyzer.types import ROLE_NAMES, Roles

#: Tags under which a text log's printed messages are counted (analyzer/ingest/textlog.py): never a metric role.
MESSAGE_TAG_PREFIX = "log_events/"

#: A W&B panel export's bucket envelope beside the metric's line (analyzer/ingest/wandb_logs.py).
_ENVELOPE = ("__MIN", "__MAX")

#: Words that say a metric (or a printed line) is of an evaluation, or of training. The text-log reader
#: uses the same words to tell a line's kind (analyzer/ingest/text_layout.py).
EVAL_WORDS = frozenset({"val", "valid", "validation", "validate", "validating", "eval", "evaluation", "evaluate",
                        "evaluating", "dev", "test", "testing", "holdout"})
TRAIN_WORDS = frozenset({"train", "training", "trn"})
_EVAL_WORDS = EVAL_WORDS
_TRAIN_WORDS = TRAIN_WORDS


def _tokens(tag: str) -> list[str]:
    # camelCase names split like snake_case ones: OLMo's ``train/CrossEntropyLoss``, Keras-style ``valLoss``
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", tag)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


#: Not metrics: the AMP loss scaler's scale, and the counts of messages a text log printed (log_events/...).
_NOT_A_LOSS = frozenset({"scale", "scaler"})


#: Printed logs' short names: llm.c's ``-o`` log prints ``s:N trl:X`` and ``s:N tel:X`` (train and eval loss).
_TRAIN_LOSS_ABBREVIATIONS = frozenset({"trl", "trloss"})
_EVAL_LOSS_ABBREVIATIONS = frozenset({"tel", "vl", "vloss"})


_CROSS_ENTROPY = frozenset({"cross", "entropy", "crossentropy", "ce", "xent", "nll"})


def _names_cross_entropy(tokens: list[str]) -> bool:
    """A loss named by what it is, without the word: Composer's ``LanguageCrossEntropy``, ``xent``, ``nll``."""
    return {"cross", "entropy"} <= set(tokens) or bool({"crossentropy", "xent", "nll"} & set(tokens))


def _loss_like(tokens: list[str]) -> bool:
    return "loss" in tokens or "losses" in tokens or _names_cross_entropy(tokens)


def _score_train_loss(tokens: list[str]) -> int:
    if len(tokens) == 1 and tokens[0] in _TRAIN_LOSS_ABBREVIATIONS:
        return 80
    if len(tokens) == 1 and tokens[0] in _TRAIN_WORDS:
        return 60  # build-nanogpt's log.txt: ``{step} train {loss}``: a split's name alone names its loss
    if not _loss_like(tokens) or _EVAL_WORDS & set(tokens) or _NOT_A_LOSS & set(tokens):
        return 0
    rest = [t for t in tokens if t not in {"loss", "losses"} | _TRAIN_WORDS]
    if not rest:
        return 100
    if rest == ["step"]:
        return 95
    if rest in (["total"], ["avg"], ["mean"], ["smoothed"], ["lm"]):  # Megatron/NeMo print "lm loss"
        return 85
    if rest == ["epoch"]:
        return 60
    if set(rest) <= _CROSS_ENTROPY:  # the loss named by what it is: ``CrossEntropyLoss``, ``ce_loss``, ``nll_loss``
        return 80  # below a total: Mask2Former's ``loss_ce`` is one term of its ``total_loss``
    if "ppl" in tokens or "perplexity" in tokens:
        return 0
    return 30  # a component loss (loss_cls, mlm_loss): better than nothing


def _score_eval_loss(tokens: list[str]) -> int:
    if len(tokens) == 1 and tokens[0] in _EVAL_LOSS_ABBREVIATIONS:
        return 80
    if len(tokens) == 1 and tokens[0] in _EVAL_WORDS:
        return 60 if tokens[0] != "test" else 40  # ``{step} val {loss}``
    if not ("loss" in tokens or _names_cross_entropy(tokens)) or not (_EVAL_WORDS & set(tokens)):
        return 0
    # An evaluation's result is the average over its batches: timm prints ``Loss: 0.51 (0.60)`` per eval batch.
    averaged = 5 if {"avg", "mean"} & set(tokens) else 0
    if "test" in tokens and not ({"val", "valid", "validation", "eval"} & set(tokens)):
        return 50 + averaged
    return 90 - len(tokens) + averaged


def _score_grad_norm(tokens: list[str]) -> int:
    joined = "_".join(tokens)
    has_grad = any(t.startswith("grad") for t in tokens) or "gnorm" in tokens
    if "clip" in joined or "clipped" in joined:
        return 10  # a clipped norm hides the outliers the threshold is chosen from
    if has_grad and ("norm" in tokens or "norms" in tokens or "l2" in tokens or "gnorm" in tokens):
        return 90 - len(tokens)
    if joined in ("total_norm", "global_norm", "gradient_global_norm"):
        return 70
    if tokens == ["norm"]:
        return 60  # llm.c and build-nanogpt print clip_grad_norm_'s return value as ``norm``
    if tokens in (["grad"], ["gradient"]):
        return 55  # Meta's lingua prints the norm clip_grad_norm_ returns as ``grad: 1.23e+00``
    return 0


def _score_lr(tokens: list[str]) -> int:
    joined = "_".join(tokens)
    if joined in ("lr", "learning_rate", "learningrate"):
        return 100
    if tokens[:1] == ["lr"] or joined.startswith("learning_rate"):
        return 90 - len(tokens)  # lr-Adam, lr-SGD/pg1, learning_rate_group0
    if tokens[-1:] == ["lr"] or joined.endswith("learning_rate"):
        return 85 - len(tokens)  # train/lr, optimizer/lr
    if "lr" in tokens and "scale" not in tokens:
        return 40
    return 0


_SCORERS: Mapping[str, Callable[[list[str]], int]] = {
    "train_loss": _score_train_loss,
    "eval_loss": _score_eval_loss,
    "grad_norm": _score_grad_norm,
    "lr": _score_lr,
}


def parse_overrides(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """ROLE=TAG strings -> {role: tag}, with a one-line error naming the allowed roles."""
    out: dict[str, str] = {}
    for pair in pairs:
        role, sep, tag = pair.partition("=")
        if not sep or not tag:
            raise ConfigError(f"--role {pair!r}: expected ROLE=TAG, e.g. grad_norm=train/grad_norm")
        if role not in ROLE_NAMES:
            raise ConfigError(f"--role {pair!r}: unknown role {role!r}; expected one of {', '.join(ROLE_NAMES)}")
        out[role] = tag
    return out


def assign_roles(tag_counts: Mapping[str, int], overrides: Mapping[str, str] | None = None) -> Roles:
    """The role of each tag of one run. ``tag_counts`` maps tag -> number of points."""
    overrides = overrides or {}
    chosen: dict[str, str | None] = {}
    for role, scorer in _SCORERS.items():
        if role in overrides and overrides[role] in tag_counts:
            chosen[role] = overrides[role]
            continue
        best: tuple[int, int, int, str] | None = None
        for order, (tag, count) in enumerate(tag_counts.items()):
            if tag.startswith(MESSAGE_TAG_PREFIX) or tag.endswith(_ENVELOPE):
                continue
            score = scorer(_tokens(tag))
            # ties: more points, then the tag logged first (YOLO's box_loss before cls_loss and dfl_loss)
            if score > 0 and (best is None or (score, count, -order) > best[:3]):
                best = (score, count, -order, tag)
        chosen[role] = best[3] if best else None
    if chosen["eval_loss"] is not None and chosen["eval_loss"] == chosen["train_loss"]:
        chosen["eval_loss"] = None
    return Roles(**chosen)
