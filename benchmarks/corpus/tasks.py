"""Synthetic tasks and tiny models for the corpus, each with its known trivial loss.

Every task is built from a seed and returns a :class:`Task`: the model, the loss, the batch of each
optimizer step (deterministic from seed and step, so a run and its paired control see the same
data), fixed eval batches, and two reference levels that make labels checkable:

- ``trivial``: the loss of the best input-independent predictor (the label prior's entropy for a
  classifier, the unigram entropy for a language model). A run that sits there has learned nothing
  beyond the marginal; a collapsed (dead) network ends exactly there.
- ``floor``: the best loss reachable (the Markov chain's entropy rate; 0 for noiseless labels),
  when it is known.

The tasks are small enough that a step costs 1-6 ms on one CPU thread.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Task:
    model: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batch: Callable[[int], Batch]
    eval_batches: list[Batch]
    trivial: float
    floor: float | None
    steps_per_epoch: int | None = None  # finite training sets only


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _seq_ce(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))


# -- token streams ---------------------------------------------------------------------------------

def _markov_chain(vocab: int, branch: int, order: int, seed: int, concentration: float = 0.6) -> np.ndarray:
    """A sparse random transition table over the last `order` tokens: each context has `branch`
    successors with Dirichlet weights, so the entropy rate is far below the unigram entropy (there is
    structure to learn; order 2 needs attention to the token before the last)."""
    rng = np.random.default_rng(seed)
    trans = np.zeros((vocab ** order, vocab))
    for i in range(len(trans)):
        succ = rng.choice(vocab, size=branch, replace=False)
        trans[i, succ] = rng.dirichlet(np.full(branch, concentration))
    return trans


def _sample_chains(trans: np.ndarray, order: int, chains: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """`chains` independent walks of `length` tokens, vectorised over the chains."""
    vocab = trans.shape[1]
    cum = np.cumsum(trans, axis=1)
    cum[:, -1] = 1.0
    out = np.empty((chains, length), dtype=np.int64)
    out[:, :order] = rng.integers(0, vocab, size=(chains, order))
    for t in range(order, length):
        ctx = np.zeros(chains, dtype=np.int64)
        for j in range(order):
            ctx = ctx * vocab + out[:, t - order + j]
        out[:, t] = (rng.random(chains)[:, None] > cum[ctx]).sum(axis=1)
    return out


def _chain_levels(trans: np.ndarray, order: int, pool: np.ndarray) -> tuple[float, float]:
    """(unigram entropy, entropy rate) measured on the sampled pool (exact in expectation)."""
    vocab = trans.shape[1]
    trivial = _entropy(np.bincount(pool[:, order:].ravel(), minlength=vocab) / pool[:, order:].size)
    ctx = np.zeros(pool[:, order:].shape, dtype=np.int64)
    for j in range(order):
        ctx = ctx * vocab + pool[:, j:pool.shape[1] - order + j]
    row_h = np.array([_entropy(r) for r in trans])
    return trivial, float(row_h[ctx].mean())


class _Windows:
    """Random windows of seq+1 tokens from a pre-generated pool: batch(step) is deterministic."""

    def __init__(self, pool: np.ndarray, seq: int, batch_size: int, seed: int) -> None:
        self.pool = torch.from_numpy(pool)
        self.seq, self.batch_size, self.seed = seq, batch_size, seed

    def __call__(self, step: int) -> Batch:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        rows = torch.randint(0, self.pool.shape[0], (self.batch_size,), generator=g)
        cols = torch.randint(0, self.pool.shape[1] - self.seq - 1, (self.batch_size,), generator=g)
        idx = cols[:, None] + torch.arange(self.seq + 1)[None, :]
        s = self.pool[rows[:, None], idx]
        return s[:, :-1], s[:, 1:]


class Block(nn.Module):
    """One Transformer block written out (2x faster on CPU than nn.TransformerEncoderLayer at this size).
    Pre-LN: x + f(Norm(x)); Post-LN: Norm(x + f(x)), the placement the playbook warns about."""

    def __init__(self, d: int, heads: int, norm_first: bool) -> None:
        super().__init__()
        self.heads, self.pre = heads, norm_first
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def attn(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre:
            x = x + self.attn(self.n1(x))
            return x + self.ff(self.n2(x))
        x = self.n1(x + self.attn(x))
        return self.n2(x + self.ff(x))


class TinyLM(nn.Module):
    """A causal Transformer LM (Pre-LN adds a final norm before the head, as GPT-2 does)."""

    def __init__(self, vocab: int, d_model: int, layers: int, seq: int, norm_first: bool, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(seq, d_model) * 0.1)
        self.blocks = nn.Sequential(*[Block(d_model, heads, norm_first) for _ in range(layers)])
        self.final_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pos[: tokens.shape[1]]
        return self.head(self.final_norm(self.blocks(h)))


def markov_lm(*, seed: int, batch_size: int, vocab: int = 32, branch: int = 3, order: int = 1, seq: int = 32,
              d_model: int = 32, layers: int = 2, norm_first: bool = True, chain_seed: int = 0) -> Task:
    """Next-token prediction on a sparse random Markov chain (the chain is fixed by chain_seed so
    runs of a family share the data distribution; the model init and batch order follow seed).
    trivial = unigram entropy, floor = the chain's entropy rate."""
    trans = _markov_chain(vocab, branch, order, 1000 + chain_seed)
    rng = np.random.default_rng(5000 + chain_seed)
    pool = _sample_chains(trans, order, 256, 1024, rng)
    eval_pool = _sample_chains(trans, order, 128, seq + 1 + order, rng)[:, order:]
    trivial, floor = _chain_levels(trans, order, pool)
    torch.manual_seed(seed)
    model = TinyLM(vocab, d_model, layers, seq, norm_first)
    ev = torch.from_numpy(np.ascontiguousarray(eval_pool))
    return Task(model, _seq_ce, _Windows(pool, seq, batch_size, seed), [(ev[:, :-1], ev[:, 1:])], trivial, floor)


# -- character text from a small probabilistic grammar ----------------------------------------------

@functools.lru_cache(maxsize=4)
def _grammar_text(n_chars: int, seed: int) -> tuple[np.ndarray, int]:
    """Pseudo-English: 40 made-up words (Zipf frequencies) strung by a word-bigram grammar with
    spaces and full stops. A char model must learn spelling (deterministic inside a word) and the
    grammar (which words follow which)."""
    rng = np.random.default_rng(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(list(letters), size=rng.integers(2, 7))) for _ in range(40)]
    zipf = 1.0 / np.arange(1, 41)
    follow = np.stack([rng.dirichlet(zipf * 4) for _ in range(40)])
    alphabet = letters + " ."
    code = {c: i for i, c in enumerate(alphabet)}
    out: list[int] = []
    w = 0
    while len(out) < n_chars:
        out.extend(code[c] for c in words[w])
        if rng.random() < 0.12:
            out.append(code["."])
        out.append(code[" "])
        w = rng.choice(40, p=follow[w])
    return np.array(out[:n_chars], dtype=np.int64), len(alphabet)


class CharRNN(nn.Module):
    def __init__(self, vocab: int, hidden: int, cell: str, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(hidden, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.embed(tokens))
        return self.head(h)


def char_lm(*, seed: int, batch_size: int, seq: int = 48, hidden: int = 64, cell: str = "lstm", layers: int = 1,
            text_seed: int = 0, corrupt: tuple[int, int] | None = None) -> Task:
    """A character LSTM/GRU LM on grammar text. trivial = the character unigram entropy.

    corrupt=(every, start): after step start, about one batch in `every` is garbage (uniformly random
    characters, as a broken shard or a mis-decoded file gives): a large, confident-wrong gradient."""
    text, vocab = _grammar_text(300_000, 77 + text_seed)
    counts = np.bincount(text, minlength=vocab) / len(text)
    n_train = 280_000
    pool = text[:n_train].reshape(-1, 1000)
    ev = torch.from_numpy(text[n_train:n_train + 64 * (seq + 1)].reshape(64, seq + 1))
    torch.manual_seed(seed)
    model = CharRNN(vocab, hidden, cell, layers)
    clean = _Windows(pool, seq, batch_size, seed)
    bad: set[int] = set()
    if corrupt is not None:
        r = np.random.default_rng(seed + 4243)
        bad = {int(s) for s in np.nonzero(r.random(200_000) < 1.0 / corrupt[0])[0] if s >= corrupt[1]}

    def batch(step: int) -> Batch:
        if step not in bad:
            return clean(step)
        g = torch.Generator().manual_seed(seed * 7_000_001 + step)
        s = torch.randint(0, vocab, (batch_size, seq + 1), generator=g)
        return s[:, :-1], s[:, 1:]

    return Task(model, _seq_ce, batch, [(ev[:, :-1], ev[:, 1:])], _entropy(counts), None)


# -- classification from a random teacher --------------------------------------------------------------

def _teacher(dim: int, classes: int, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 7919)
    w1 = torch.randn(dim, 64, generator=g) / dim ** 0.5
    w2 = torch.randn(64, classes, generator=g) / 8.0
    return lambda x: (torch.tanh(x @ w1) @ w2).argmax(dim=1)


def mlp(dim: int, width: int, depth: int, classes: int, *, batchnorm: bool = False) -> nn.Sequential:
    """depth hidden ReLU layers (optionally Linear-BN-ReLU)."""
    layers: list[nn.Module] = []
    d = dim
    for _ in range(depth):
        layers.append(nn.Linear(d, width))
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU())
        d = width
    layers.append(nn.Linear(d, classes))
    return nn.Sequential(*layers)


def teacher_cls(*, seed: int, batch_size: int, dim: int = 32, classes: int = 10, width: int = 128, depth: int = 2,
                label_noise: float = 0.0, train_size: int | None = None, shuffle: bool = True,
                input_scale: float = 1.0, outliers: tuple[int, float, int] | None = None,
                model: str = "mlp", res_norm: str = "none", batchnorm: bool = False, data_seed: int = 0) -> Task:
    """Labels from a fixed random teacher network (learnable, not trivial).

    train_size: a finite training set (epochs; shuffle=False keeps a fixed data order, which makes the
    per-epoch sawtooth); label_noise flips that share of the labels (a loss floor, and overfitting on a
    small train set); outliers=(every, scale, start): rare batches with inputs x scale after step start
    (gradient-norm outliers); model "mlp" or "resmlp" (probes' residual MLP, res_norm none|pre|post).
    """
    label = _teacher(dim, classes, 100 + data_seed)
    g = torch.Generator().manual_seed(200 + data_seed)
    xe = torch.randn(2048, dim, generator=g)
    ye = label(xe)
    prior = torch.bincount(ye, minlength=classes).double() / len(ye)
    trivial = _entropy(prior.numpy())

    def noisy(y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not label_noise:
            return y
        flip = torch.rand(len(y), generator=gen) < label_noise
        return torch.where(flip, torch.randint(0, classes, (len(y),), generator=gen), y)

    steps_per_epoch = None
    if train_size is not None:
        gt = torch.Generator().manual_seed(300 + data_seed)
        xt = torch.randn(train_size, dim, generator=gt) * input_scale
        yt = noisy(label(xt / input_scale), gt)
        steps_per_epoch = train_size // batch_size

        def batch(step: int) -> Batch:
            epoch, i = divmod(step, steps_per_epoch)
            if shuffle:
                perm = torch.randperm(train_size, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
            else:
                perm = torch.arange(train_size)
            idx = perm[i * batch_size:(i + 1) * batch_size]
            return xt[idx], yt[idx]
    else:
        out_steps: set[int] = set()
        if outliers is not None:
            every, _, start = outliers
            r = np.random.default_rng(seed + 31337)
            out_steps = {int(s) for s in np.nonzero(r.random(200_000) < 1.0 / every)[0] if s >= start}

        def batch(step: int) -> Batch:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
            x = torch.randn(batch_size, dim, generator=gen)
            y = noisy(label(x), gen)
            x = x * input_scale
            if step in out_steps:  # rare, at irregular steps, as real bad batches come
                x = x * outliers[1]  # type: ignore[index]
            return x, y

    torch.manual_seed(seed)
    if model == "resmlp":
        from probes.workloads import ResidualMLP
        net: nn.Module = ResidualMLP(dim, width, depth, classes, res_norm)
    else:
        net = mlp(dim, width, depth, classes, batchnorm=batchnorm)
    eval_noise = torch.Generator().manual_seed(400 + data_seed)
    return Task(net, nn.functional.cross_entropy, batch, [(xe * input_scale, noisy(ye, eval_noise))], trivial,
                0.0 if not label_noise else None, steps_per_epoch)


# -- images ---------------------------------------------------------------------------------------

def images(*, seed: int, batch_size: int, stride: int = 2, width: int = 16, blocks: int = 1) -> Task:
    """probes' WideResNet-like conv net (BatchNorm, pre-activation blocks) on 16x16 class patterns
    under noise with 10% flipped labels (10 balanced classes: trivial = ln 10)."""
    from probes.workloads import wide_resnet
    model, loss_fn, batch, eval_batches = wide_resnet(batch_size=batch_size, seed=seed, stride=stride,
                                                      width=width, blocks=blocks)
    return Task(model, loss_fn, batch, eval_batches, math.log(10), None)


TASKS: dict[str, Callable[..., Task]] = {
    "markov_lm": markov_lm,
    "char_lm": char_lm,
    "teacher_cls": teacher_cls,
    "images": images,
}


def build_task(name: str, args: dict, *, seed: int, batch_size: int) -> Task:
    return TASKS[name](seed=seed, batch_size=batch_size, **args)
