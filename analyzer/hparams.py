"""Hyperparameters found beside a log: hparams.yaml, config/args JSON, LR in directory names.

Only reading and light normalisation live here; which hparams make an LR sweep is sweep.py's.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from analyzer.errors import LogFormatError
from analyzer.ingest.tabular import flatten

#: Files whose content is a run's configuration when they sit beside its log.
SIDE_FILE_NAMES = frozenset({
    "hparams.yaml", "hparams.yml", "config.yaml", "config.yml", "hparams.json", "config.json", "args.json",
    "params.json", "training_args.json", "cfg.yaml", "opt.yaml",
})

LR_KEYS = ("learning_rate", "lr", "base_lr", "max_lr", "optimizer.lr", "optimizer/lr", "optim.lr",
           "train.lr", "peak_lr", "hp/lr", "hparams/lr")
_LR_IN_NAME = re.compile(
    r"(?:^|[_\-/.,=\s])(?:learning_rate|lr)[_=\-:]?((?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?)(?=$|[_\-/,\s]|\.(?!\d))",
    re.IGNORECASE,
)


#: A config beside a log with more keys than this is not a run's configuration (or is a YAML alias bomb).
MAX_SIDE_KEYS = 10_000


def read_side_file(path: Path) -> dict[str, Any]:
    """Flattened key -> value of a YAML/JSON config; {} when it holds no mapping.

    LogFormatError when it is not YAML/JSON text (binary, malformed, absurdly large when flattened).
    """
    import yaml  # here: 15 ms a process without a YAML side file never needs

    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise LogFormatError("binary content, not a YAML/JSON configuration")
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise LogFormatError(f"configuration that is not valid {'JSON' if path.suffix == '.json' else 'YAML'} "
                             f"({type(exc).__name__})") from None
    if not isinstance(data, Mapping):
        return {}
    flat = flatten(data, ".", max_keys=MAX_SIDE_KEYS)
    return {str(k): v for k, v in flat.items() if isinstance(v, (str, int, float, bool)) or v is None}


def lr_from_name(name: str) -> float | None:
    """The LR spelled in a run's path: lr_1e-3, lr=0.01, lr0.1, learning_rate-3e-4."""
    found = None
    for match in _LR_IN_NAME.finditer(name):
        found = match.group(1)  # the innermost (last) one wins: sweep/lr_0.1/seed_1
    if found is None:
        return None
    try:
        value = float(found)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def lr_from_hparams(hparams: Mapping[str, Any]) -> float | None:
    for key in LR_KEYS:
        for k, v in hparams.items():
            if k == key or k.endswith("." + key) or k.endswith("/" + key):
                try:
                    value = float(v)
                except (TypeError, ValueError, OverflowError):
                    continue
                if math.isfinite(value) and value > 0:
                    return value
    return None
