"""Built-in workloads that reproduce the playbook's cases at small scale on CPU, and user workloads.

A workload is a function returning ``(model, loss_fn, train_batches, eval_batches)``:
model an ``nn.Module``; ``loss_fn(output, target) -> scalar tensor``; ``train_batches(step)`` the
(inputs, targets) batch for a step (deterministic from the seed); ``eval_batches`` a list of batches.
The user's own is named "package.module:function" in the spec.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import torch
from torch import nn

from analyzer.errors import ConfigError

Workload = tuple[nn.Module, Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 Callable[[int], tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]


def _teacher_task(dim: int, classes: int, batch_size: int, seed: int, n_eval: int = 512
                  ) -> tuple[Callable[[int], tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Classification labels from a fixed random teacher network: learnable, not trivial."""
    g = torch.Generator().manual_seed(seed + 7919)
    w1 = torch.randn(dim, 64, generator=g) / dim ** 0.5
    w2 = torch.randn(64, classes, generator=g) / 8.0

    def label(x: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(x @ w1) @ w2).argmax(dim=1)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        x = torch.randn(batch_size, dim, generator=gen)
        return x, label(x)

    xe = torch.randn(n_eval, dim, generator=g)
    return batch, [(xe, label(xe))]


class ResidualBlock(nn.Module):
    def __init__(self, width: int, norm: str) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
        self.norm = nn.LayerNorm(width) if norm != "none" else nn.Identity()
        self.pre = norm == "pre"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre:  # x + Norm(f(x)): the placement the playbook recommends
            return x + self.norm(self.f(x))
        return self.norm(x + self.f(x))  # post-norm, or no norm at all


class ResidualMLP(nn.Module):
    def __init__(self, dim: int, width: int, depth: int, classes: int, norm: str = "none") -> None:
        super().__init__()
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.Sequential(*[ResidualBlock(width, norm) for _ in range(depth)])
        self.out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.inp(x)))


def early_residual_mlp(*, batch_size: int = 64, seed: int = 0, depth: int = 8, width: int = 64,
                       norm: str = "none", dim: int = 32, classes: int = 10) -> Workload:
    """An un-normalised deep residual MLP: at a high LR its first steps blow up (early instability);
    warmup lets the same LR train."""
    torch.manual_seed(seed)
    model = ResidualMLP(dim, width, depth, classes, norm)
    batch, eval_batches = _teacher_task(dim, classes, batch_size, seed)
    return model, nn.functional.cross_entropy, batch, eval_batches


def outlier_batches(*, batch_size: int = 64, seed: int = 0, every: int = 97, scale: float = 30.0,
                    start: int = 150, dim: int = 32, classes: int = 10) -> Workload:
    """A well-behaved MLP whose data has rare outlier batches (inputs x``scale``) after ``start``:
    gradient-norm outliers cause mid-training loss spikes that clipping tames."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, classes))
    clean, eval_batches = _teacher_task(dim, classes, batch_size, seed)

    rng = torch.Generator().manual_seed(seed + 31337)
    outlier_steps = set((torch.rand(100_000, generator=rng) < 1.0 / every).nonzero().flatten().tolist())

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = clean(step)
        if step >= start and step in outlier_steps:  # rare, at irregular steps, as real bad batches come
            x = x * scale
        return x, y

    return model, nn.functional.cross_entropy, batch, eval_batches


def divergent_mlp(*, batch_size: int = 64, seed: int = 0, dim: int = 32, classes: int = 10) -> Workload:
    """A plain MLP regression-style setup that diverges to NaN when the LR is far too high."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, classes))
    batch, eval_batches = _teacher_task(dim, classes, batch_size, seed)
    return model, nn.functional.cross_entropy, batch, eval_batches


class _PreActBlock(nn.Module):
    """WideResNet's block: BN-ReLU-conv-BN-ReLU-conv plus the shortcut (1x1 conv when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if c_in != c_out or stride != 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        y = self.conv2(torch.relu(self.bn2(self.conv1(o))))
        return y + (self.shortcut(o) if self.shortcut is not None else x)


def wide_resnet(*, batch_size: int = 64, seed: int = 0, stride: int = 2, width: int = 16, blocks: int = 1,
                classes: int = 10, signal: float = 0.35, noise: float = 1.0, label_noise: float = 0.1) -> Workload:
    """A small WideResNet-like conv net (pre-activation blocks with BatchNorm, three stages of width
    w, 2w, 4w) on synthetic 16x16 images, for the playbook's Figure 4 case; ``stride`` is the stem's.

    Measured on CPU (Nesterov momentum 0.9, batch 64, 200 steps): stable up to lr 1.0; at lr 2.0 the
    loss rises to ~1.6-2.4x its start in the first steps and recovers (early instability, both
    strides); 10-20 warmup steps make lr 2.0 train stably. Changing the stride did not move that
    edge at this size. The images are class patterns under noise with 10% of labels flipped, so the
    loss keeps a floor instead of going to 0 (a near-zero loss makes every bump look huge).
    """
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, stride, 1, bias=False)]
    c = width
    for c_out, stage_stride in ((width, 1), (2 * width, 2), (4 * width, 2)):
        for i in range(blocks):
            layers.append(_PreActBlock(c, c_out, stage_stride if i == 0 else 1))
            c = c_out
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
    model = nn.Sequential(*layers)
    g = torch.Generator().manual_seed(seed + 1)
    patterns = nn.functional.interpolate(torch.randn(classes, 3, 4, 4, generator=g), size=16, mode="bilinear")

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed * 7_000_003 + step)
        y = torch.randint(0, classes, (batch_size,), generator=gen)
        x = signal * patterns[y] + noise * torch.randn(batch_size, 3, 16, 16, generator=gen)
        flip = torch.rand(batch_size, generator=gen) < label_noise
        return x, torch.where(flip, torch.randint(0, classes, (batch_size,), generator=gen), y)

    eval_batches = [batch(10_000_000 + i) for i in range(2)]
    return model, nn.functional.cross_entropy, batch, eval_batches


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int, d_model: int, layers: int, seq: int, norm_first: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(seq, d_model) * 0.1)
        layer = nn.TransformerEncoderLayer(d_model, nhead=4, dim_feedforward=4 * d_model, dropout=0.0,
                                           batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        mask: torch.Tensor = self.mask  # type: ignore[assignment]  # a registered buffer
        h = self.embed(tokens) + self.pos[:n]
        return self.head(self.encoder(h, mask=mask[:n, :n], is_causal=True))


def tiny_transformer(*, batch_size: int = 32, seed: int = 0, norm_first: bool = False, d_model: int = 64,
                     layers: int = 2, seq: int = 32, vocab: int = 32) -> Workload:
    """A causal Transformer on next-token prediction of a fixed random Markov chain, Post-LN by default
    (norm_first=False: Norm(x + f(x))), for probing Transformer-style settings. At this default tiny size
    it trained stably with Adam up to lr 0.03 without warmup in our checks (300 steps, ~12 s on CPU).
    With layers=4 at lr 0.03 (150 steps, batch 32) it is seed-dependent, not a clean case: seed 0 stayed
    near its starting loss without warmup (best 3.28) and reached 1.63 with 15 warmup steps; seeds 1-2
    learned without warmup (best 2.76, 2.26) and with warmup spiked near step 11 before reaching 1.81,
    1.59. So the corpus does not use it."""
    torch.manual_seed(seed)
    model = TinyTransformer(vocab, d_model, layers, seq, norm_first)
    g = torch.Generator().manual_seed(seed + 4242)
    logits = torch.randn(vocab, vocab, generator=g) * 2.5
    trans = torch.softmax(logits, dim=1)

    def sample(gen: torch.Generator, n: int) -> torch.Tensor:
        tok = torch.randint(0, vocab, (n,), generator=gen)
        out = [tok]
        for _ in range(seq):
            tok = torch.multinomial(trans[tok], 1, generator=gen).squeeze(1)
            out.append(tok)
        return torch.stack(out, dim=1)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = sample(torch.Generator().manual_seed(seed * 9_000_011 + step), batch_size)
        return s[:, :-1], s[:, 1:]

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))

    eval_batches = [batch(10_000_000 + i) for i in range(2)]
    return model, loss_fn, batch, eval_batches


BUILTIN: dict[str, Callable[..., Workload]] = {
    "tiny_transformer": tiny_transformer,
    "early_residual_mlp": early_residual_mlp,
    "outlier_batches": outlier_batches,
    "divergent_mlp": divergent_mlp,
    "wide_resnet": wide_resnet,
}


def resolve(name: str) -> Callable[..., Workload]:
    """The workload function named in a spec: builtin:NAME or package.module:function."""
    if name.startswith("builtin:"):
        key = name.split(":", 1)[1]
        if key not in BUILTIN:
            raise ConfigError(f"workload {name!r}: unknown built-in; expected one of "
                              + ", ".join(f"builtin:{k}" for k in BUILTIN))
        return BUILTIN[key]
    module_name, _, func = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"workload {name!r}: cannot import {module_name!r} ({exc}); is it on PYTHONPATH?") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise ConfigError(f"workload {name!r}: {module_name} has no function {func!r}")
    return fn


def build(name: str, args: dict[str, Any], *, batch_size: int, seed: int) -> Workload:
    fn = resolve(name)
    try:
        result = fn(batch_size=batch_size, seed=seed, **args)
    except TypeError as exc:
        raise ConfigError(f"workload {name!r}: {exc}") from None
    if not (isinstance(result, tuple) and len(result) == 4):
        raise ConfigError(f"workload {name!r} must return (model, loss_fn, train_batches, eval_batches)")
    return result
