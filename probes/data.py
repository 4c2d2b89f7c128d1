"""Token batches for re-running a language model: the run's own data, or a learnable synthetic stream.

Every batch is a (batch, seq_len + 1) LongTensor of token ids, deterministic from (seed, index), so a
trial can be replayed exactly; the model sees ``[:, :-1]`` and predicts ``[:, 1:]``.

- a token file (nanoGPT's train.bin: uint16 ids, memory-mapped, never read whole);
- a datasets folder (``save_to_disk``): its input_ids, or its text tokenized; needs ``datasets``;
- a .txt / .jsonl file tokenized with the run's tokenizer (the folder's tokenizer files), read up to
  MAX_TEXT_BYTES;
- ``package.module:function(index, batch_size, seq_len, seed)`` returning such a tensor (or (x, y));
- no data: a fixed random Markov chain over the vocabulary, sparse (each token has SUCCESSORS possible
  next tokens), so a language model can learn it (its loss falls toward the chain's entropy).

``order``: "sequential" reads block ``index`` of consecutive windows (how Megatron-style and unshuffled
loaders read, so a replay sees the exact batches of the run's steps); "random" draws window offsets
from (seed, index), like nanoGPT's get_batch.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from analyzer.errors import ConfigError

#: A text/JSONL file is tokenized up to this many bytes (the rest is not needed for a short replay).
MAX_TEXT_BYTES = 256 << 20
#: Next-token candidates per token of the synthetic chain.
SUCCESSORS = 8


@dataclass
class TokenData:
    """A deterministic source of token batches. ``describe`` says what it is, for the report."""

    batch: Callable[[int, int], torch.Tensor]  # (index, batch_size) -> (B, T+1) long
    describe: str
    synthetic: bool = False


def _windows(tokens: np.ndarray, seq_len: int, order: str, seed: int, what: str) -> Callable[[int, int], torch.Tensor]:
    n = int(tokens.shape[0])
    if n < seq_len + 2:
        raise ConfigError(f"{what}: {n:,} tokens, fewer than one sequence of {seq_len + 1}")
    span = n - seq_len - 1

    def batch(index: int, batch_size: int) -> torch.Tensor:
        if order == "sequential":
            starts = ((index * batch_size + np.arange(batch_size, dtype=np.int64)) * seq_len) % span
        else:
            starts = np.random.default_rng([seed, index]).integers(0, span, size=batch_size)
        rows = np.stack([np.asarray(tokens[s:s + seq_len + 1], dtype=np.int64) for s in starts])
        return torch.from_numpy(rows)

    return batch


def token_file(path: Path, seq_len: int, order: str, seed: int) -> TokenData:
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    return TokenData(_windows(tokens, seq_len, order, seed, str(path)),
                     f"{path} ({tokens.shape[0]:,} uint16 tokens, {order} windows of {seq_len + 1})")


def _tokenizer(tokenizer_dir: Path | None, what: str) -> Any:
    if tokenizer_dir is None:
        raise ConfigError(f"{what}: text needs the run's tokenizer, and the run's folder has none (tokenizer.json "
                          "or vocab files beside config.json); give a token .bin or module:function instead")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what}: the tokenizer in {tokenizer_dir} cannot be loaded: {exc}") from None


def _texts(path: Path) -> list[str]:
    raw = path.read_bytes()[:MAX_TEXT_BYTES].decode("utf-8", errors="replace")
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        texts = []
        for line in raw.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                value = record.get("text", next((v for v in record.values() if isinstance(v, str)), None))
                if isinstance(value, str):
                    texts.append(value)
            elif isinstance(record, str):
                texts.append(record)
        if not texts:
            raise ConfigError(f"{path}: no JSON line with a 'text' field (or any string field)")
        return texts
    return [raw]


def _stream(ids: list[list[int]], eos: int | None) -> np.ndarray:
    parts = [np.asarray(x + ([eos] if eos is not None else []), dtype=np.int64) for x in ids if x]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def text_file(path: Path, seq_len: int, order: str, seed: int, tokenizer_dir: Path | None) -> TokenData:
    tok = _tokenizer(tokenizer_dir, str(path))
    texts = _texts(path)
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    tokens = _stream(ids, tok.eos_token_id)
    return TokenData(_windows(tokens, seq_len, order, seed, str(path)),
                     f"{path} ({len(texts):,} texts, {tokens.size:,} tokens with the run's tokenizer from "
                     f"{tokenizer_dir}; {order} windows of {seq_len + 1})")


def datasets_folder(path: Path, seq_len: int, order: str, seed: int, tokenizer_dir: Path | None) -> TokenData:
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"{path}: a datasets folder needs the datasets package (pip install datasets)") from None
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    if "input_ids" in ds.column_names:
        tokens = _stream([list(x) for x in ds["input_ids"]], None)
        how = "its input_ids"
    elif "text" in ds.column_names:
        tok = _tokenizer(tokenizer_dir, str(path))
        tokens = _stream(tok(ds["text"], add_special_tokens=False)["input_ids"], tok.eos_token_id)
        how = f"its text with the run's tokenizer from {tokenizer_dir}"
    else:
        raise ConfigError(f"{path}: a dataset without an input_ids or text column (has {', '.join(ds.column_names)})")
    return TokenData(_windows(tokens, seq_len, order, seed, str(path)),
                     f"{path} (datasets folder, {len(ds):,} rows, {how}; {order} windows of {seq_len + 1})")


def user_function(name: str, seq_len: int, seed: int) -> TokenData:
    module_name, _, func = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), func, None)
    except ImportError as exc:
        raise ConfigError(f"data {name!r}: cannot import {module_name!r} ({exc}); is it on PYTHONPATH?") from None
    if not callable(fn):
        raise ConfigError(f"data {name!r}: {module_name} has no function {func!r}")

    def batch(index: int, batch_size: int) -> torch.Tensor:
        out = fn(index=index, batch_size=batch_size, seq_len=seq_len, seed=seed)
        if isinstance(out, tuple) and len(out) == 2:  # (x, y) with y = x shifted: rebuild the windows
            out = torch.cat([out[0], out[1][:, -1:]], dim=1)
        if not (isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] == seq_len + 1):
            raise ConfigError(f"data {name!r} must return a (batch_size, seq_len + 1) token tensor")
        return out.long()

    return TokenData(batch, f"{name} (your function, called with index, batch_size, seq_len={seq_len}, seed)")


def synthetic(vocab_size: int, seq_len: int, seed: int) -> TokenData:
    g = torch.Generator().manual_seed(seed + 4242)
    successors = torch.randint(0, vocab_size, (vocab_size, SUCCESSORS), generator=g)
    probs = torch.softmax(torch.randn(vocab_size, SUCCESSORS, generator=g) * 2.0, dim=1)

    def batch(index: int, batch_size: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed * 9_000_011 + index)
        tok = torch.randint(0, vocab_size, (batch_size,), generator=gen)
        out = [tok]
        for _ in range(seq_len):
            pick = torch.multinomial(probs[tok], 1, generator=gen).squeeze(1)
            tok = successors[tok, pick]
            out.append(tok)
        return torch.stack(out, dim=1)

    return TokenData(batch, f"SYNTHETIC: a fixed random Markov chain over the {vocab_size:,}-token vocabulary "
                     f"({SUCCESSORS} successors a token), not the run's data", synthetic=True)


def open_data(spec_data: str | None, *, order: str, seq_len: int, seed: int, vocab_size: int,
              tokenizer_dir: Path | None) -> TokenData:
    """The data a spec names (or the synthetic stream), with a one-line error for what cannot be read."""
    if spec_data is None:
        return synthetic(vocab_size, seq_len, seed)
    path = Path(spec_data)
    if not path.exists():
        if ":" in spec_data and not spec_data.startswith(("/", ".")):
            return user_function(spec_data, seq_len, seed)
        raise ConfigError(f"data {spec_data}: no such file or folder")
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file() or \
                (path / "state.json").is_file():
            return datasets_folder(path, seq_len, order, seed, tokenizer_dir)
        raise ConfigError(f"data {path}: a folder that is not a datasets save_to_disk folder (no dataset_info.json)")
    if path.suffix.lower() == ".bin":
        return token_file(path, seq_len, order, seed)
    if path.suffix.lower() in (".txt", ".jsonl", ".json", ".ndjson", ".md"):
        return text_file(path, seq_len, order, seed, tokenizer_dir)
    raise ConfigError(f"data {path}: expected a token .bin, a datasets folder, a .txt/.jsonl file or "
                      "package.module:function")
