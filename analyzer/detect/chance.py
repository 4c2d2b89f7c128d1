"""The trivial loss of uniform predictions: ln K for K classes (or K tokens of a vocabulary).

A network that predicts uniformly over K outcomes has a cross-entropy of exactly ln K on every batch,
whatever its labels: its loss sits on ln K with next to no batch-to-batch noise. A loss pinned there
after a blow-up, after thrashing, after having learned below it, or with the grad norm collapsed, is a
dead network (spec/failure-shapes.md, "collapse to chance"; issue 16). Which K: the run's own settings
when they name one (vocab_size, num_labels, num_classes, ...), else a small number of classes, else a
common vocabulary size. Nothing here judges; `checks/divergence.py` does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

#: Settings that name the number of outcomes a model predicts over.
_K_KEYS = re.compile(r"(?i)(?:^|[/._])(?:vocab_size|n_vocab|vocab|num_labels|num_classes|n_classes|nclasses|"
                     r"num_class|n_class|classes|n_tokens|ntokens)$")
#: Classifier sizes tried without a setting: ln K for K up to 20 are at least 2.5% apart.
SMALL_K = tuple(range(2, 21))
#: Vocabulary sizes of common tokenizers (bytes, SentencePiece 1k-32k, GPT-2, nanoGPT's padded GPT-2,
#: LLaMA 1/2 and 3, cl100k, Qwen, Gemma, BLOOM).
VOCAB_K = (256, 1024, 4096, 8192, 16384, 32000, 32768, 50257, 50304, 65536, 100277, 128000, 128256, 151936,
           152064, 250880, 256000)


@dataclass(frozen=True)
class ChancePlateau:
    """The loss pinned at ln K to the end of the log.

    Attributes:
        k: the number of outcomes; source: where K came from ("the run's vocab_size", "classes", "a common
            vocabulary size").
        level: ln K. start: index of the first pinned point. median / noise: the pinned stretch's median
            and its robust relative noise (log units).
    """

    k: int
    source: str
    level: float
    start: int
    median: float
    noise: float


def candidate_ks(hparams: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(K, where it came from), the run's own settings first."""
    out: list[tuple[int, str]] = []
    for key, value in hparams.items():
        if _K_KEYS.search(str(key)) is None or isinstance(value, bool):
            continue
        try:
            k = int(value)
        except (TypeError, ValueError):
            continue
        if k >= 2 and float(value) == k:
            out.append((k, f"the run's {key}"))
    out += [(k, "classes") for k in SMALL_K]
    out += [(k, "a common vocabulary size") for k in VOCAB_K]
    return out


def chance_level(value: float, hparams: Mapping[str, Any], *, tolerance: float) -> tuple[int, str] | None:
    """(K, where K came from) when ``value`` is within ``tolerance`` (relative) of ln K, else None."""
    if not value > 0:
        return None
    for k, source in candidate_ks(hparams):
        if abs(value / math.log(k) - 1.0) <= tolerance:
            return k, source
    return None


def pinned_at_chance(raw: np.ndarray, hparams: Mapping[str, Any], *, tolerance: float, max_noise: float,
                     min_points: int) -> ChancePlateau | None:
    """The stretch at the end of ``raw`` (finite, positive values) that sits on ln K within ``tolerance``
    (relative) with a robust relative noise of at most ``max_noise``; None when there is none of at
    least ``min_points`` points."""
    if raw.size < min_points or not np.all(raw > 0):
        return None
    found = chance_level(float(np.median(raw[-min_points:])), hparams, tolerance=tolerance)
    if found is not None:
        k, source = found
        level = math.log(k)
        off = np.abs(raw / level - 1.0) > 2 * tolerance
        start = int(np.flatnonzero(off)[-1]) + 1 if off.any() else 0
        stretch = np.log(raw[start:])
        if stretch.size < min_points:
            return None
        noise = 1.4826 * float(np.median(np.abs(np.diff(stretch)))) / math.sqrt(2.0)
        if noise > max_noise:
            return None
        return ChancePlateau(k, source, level, start, float(np.median(raw[start:])), noise)
    return None
