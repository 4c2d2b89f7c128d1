"""Tiny real training runs whose folders `steadytrain report` + `steadytrain probe` re-run (CPU, seconds each).

- `hf_run`: the HF Trainer on GPT-2 built from a 2-layer config, no warmup, an LR high enough that the
  loss rises in the first steps; checkpoint-N folders with the tokenizer; the data a JSONL text file;
- `lightning_run`: a Lightning Trainer on a small causal Transformer LM whose own scheduler multiplies the
  LR by 30 at step JUMP (MultiStepLR with gamma=30 where 1/30 was meant); .ckpt files every 20 steps; a
  LightningCLI-format config.yaml naming the LightningModule class (what SaveConfigCallback writes;
  jsonargparse, which LightningCLI needs, is not installed here);
- `nanogpt_run`: nanoGPT's GPT (probes.nanogpt) trained the way nanoGPT's train.py does, from a token
  train.bin read in order, which holds PLANTED garbage batches at steps BAD_STEPS; ckpt.pt kept at the best
  validation loss (always_save_checkpoint=False) and the printed log in train.log.
Every run's data is a fixed Markov chain over the vocabulary (learnable), written where the run reads it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

VOCAB = 64
SEQ = 16


def markov_tokens(n: int, seed: int = 0) -> np.ndarray:
    """``n`` tokens of one fixed Markov chain (the same chain for every seed; the seed picks the sample)."""
    logits = np.random.default_rng(12345).standard_normal((VOCAB, VOCAB)) * 3.0
    rng = np.random.default_rng(seed)
    trans = np.exp(logits - logits.max(axis=1, keepdims=True))
    trans /= trans.sum(axis=1, keepdims=True)
    cum = trans.cumsum(axis=1)
    out = np.empty(n, dtype=np.uint16)
    tok = 0
    u = rng.random(n)
    for i in range(n):
        tok = min(int(np.searchsorted(cum[tok], u[i])), VOCAB - 1)
        out[i] = tok
    return out


# ---- HF Trainer -----------------------------------------------------------------------------------------

def _word_tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0", pad_token="w0")


def hf_run(root: Path, *, lr: float = 0.3, steps: int = 80, save_steps: int = 20) -> tuple[Path, Path]:
    """(output folder, the JSONL data it trained on)."""
    import transformers

    transformers.logging.set_verbosity_error()
    tokens = markov_tokens(SEQ * 8 * steps + SEQ * 64, seed=1)
    lines = [" ".join(f"w{t}" for t in tokens[i:i + SEQ]) for i in range(0, len(tokens) - SEQ + 1, SEQ)]
    data_file = root / "train.jsonl"
    data_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
    tokenizer = _word_tokenizer()
    rows = [{"input_ids": ids, "labels": ids} for ids in tokenizer(lines)["input_ids"]]
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    out = root / "out"
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, learning_rate=lr, warmup_steps=0,
        lr_scheduler_type="linear", logging_steps=1, save_steps=save_steps, report_to="none", use_cpu=True,
        disable_tqdm=True, seed=0, dataloader_num_workers=0, optim="adamw_torch")
    transformers.Trainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer).train()
    return out, data_file


# ---- Lightning ----------------------------------------------------------------------------------------------

JUMP = 110


def _lit_module_class():  # type: ignore[no-untyped-def]
    import lightning.pytorch as pl

    class TinyLM(pl.LightningModule):
        """A causal Transformer LM (Pre-LN) whose scheduler multiplies the LR by ``gamma`` at ``jump``."""

        def __init__(self, vocab_size: int = VOCAB, block_size: int = SEQ, d_model: int = 32, n_layer: int = 2,
                     lr: float = 3e-3, jump: int = JUMP, gamma: float = 30.0, batch_size: int = 16) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.embed = torch.nn.Embedding(vocab_size, d_model)
            self.pos = torch.nn.Parameter(torch.zeros(block_size, d_model))
            self.layers = torch.nn.ModuleList([torch.nn.TransformerEncoderLayer(
                d_model, nhead=2, dim_feedforward=4 * d_model, dropout=0.0, batch_first=True, norm_first=True)
                for _ in range(n_layer)])
            self.head = torch.nn.Linear(d_model, vocab_size)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = x.shape[1]
            mask = torch.nn.Transformer.generate_square_subsequent_mask(t)
            h = self.embed(x) + self.pos[:t]
            for layer in self.layers:
                h = layer(h, src_mask=mask, is_causal=True)
            return self.head(h)

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self(x).reshape(-1, self.hparams.vocab_size), y.reshape(-1))
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[self.hparams.jump], gamma=self.hparams.gamma)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return TinyLM


try:  # the class must be importable by its path (the spec names tests.probe_runs.TinyLM)
    TinyLM = _lit_module_class()
except ImportError:  # no Lightning: the Lightning test skips itself
    TinyLM = None


def lightning_run(root: Path, *, steps: int = 140) -> tuple[Path, Path]:
    """(the logger's version folder, the token file it trained on)."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    batch = 16
    tokens = markov_tokens(SEQ * batch * steps + SEQ * 64, seed=2)
    data_file = root / "tokens.bin"
    tokens.tofile(data_file)
    windows = [torch.from_numpy(tokens[i:i + SEQ + 1].astype(np.int64)) for i in range(0, SEQ * batch * steps, SEQ)]
    pairs = [(w[:-1], w[1:]) for w in windows]
    loader = torch.utils.data.DataLoader(pairs, batch_size=batch, shuffle=False)
    torch.manual_seed(0)
    logger = CSVLogger(root / "lit", name="lightning_logs")
    ckpt = ModelCheckpoint(every_n_train_steps=20, save_top_k=-1, filename="{epoch}-{step}")
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=logger, log_every_n_steps=1,
                         callbacks=[ckpt, LearningRateMonitor(logging_interval="step")], enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=root / "lit")
    trainer.fit(TinyLM(batch_size=batch), loader)
    version = Path(logger.log_dir)
    # What LightningCLI's SaveConfigCallback writes beside the logs (the class path and its arguments).
    (version / "config.yaml").write_text(
        "seed_everything: 0\ntrainer:\n  max_steps: %d\n  gradient_clip_val: null\n  precision: 32-true\n"
        "model:\n  class_path: tests.probe_runs.TinyLM\n  init_args:\n    lr: 0.003\n    jump: %d\n    gamma: 30.0\n"
        "ckpt_path: null\n" % (steps, JUMP))
    return version, data_file


# ---- nanoGPT -----------------------------------------------------------------------------------------------

BAD_STEPS = range(130, 135)


def nanogpt_run(root: Path, *, iters: int = 150, batch_size: int = 16, eval_interval: int = 20,
                learning_rate: float = 3e-3) -> Path:
    """nanoGPT's train.py loop, reading train.bin in order; the batches of BAD_STEPS are planted garbage."""
    from probes.nanogpt import GPT, GPTConfig

    out = root / "out"
    out.mkdir(parents=True)
    n = SEQ * batch_size * (iters + 40) + SEQ + 1
    tokens = markov_tokens(n, seed=3)
    garbage = np.random.default_rng(99)
    for step in (s for s in BAD_STEPS if s < iters):  # the batch of step s: tokens [s*B*T, (s+1)*B*T] (+1)
        lo, hi = step * batch_size * SEQ, (step + 1) * batch_size * SEQ + 1
        tokens[lo:hi] = garbage.integers(0, VOCAB, hi - lo)
    tokens.tofile(out / "train.bin")
    val = markov_tokens(SEQ * 64 + 1, seed=4)

    def get_batch(data: np.ndarray, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = (index * batch_size + np.arange(batch_size)) * SEQ
        rows = torch.from_numpy(np.stack([data[s:s + SEQ + 1].astype(np.int64) for s in starts]))
        return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()

    config = {"dataset": "planted", "batch_size": batch_size, "block_size": SEQ, "gradient_accumulation_steps": 1,
              "learning_rate": learning_rate, "max_iters": iters, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
              "grad_clip": 0.0, "decay_lr": False, "warmup_iters": 0, "lr_decay_iters": iters, "min_lr": 3e-4,
              "dtype": "float32", "always_save_checkpoint": False, "eval_interval": eval_interval}
    model_args = dict(n_layer=2, n_head=2, n_embd=32, block_size=SEQ, bias=False, vocab_size=VOCAB, dropout=0.0)
    torch.manual_seed(1337)
    model = GPT(GPTConfig(**model_args))
    opt = model.configure_optimizers(0.1, learning_rate, (0.9, 0.95), "cpu")
    best_val = math.inf
    lines = []
    for it in range(iters + 1):
        if it % eval_interval == 0:
            model.eval()
            with torch.no_grad():
                val_loss = float(np.mean([model(*get_batch(val, i))[1].item() for i in range(3)]))
                train_loss = float(np.mean([model(*get_batch(tokens, i))[1].item() for i in range(3)]))
            model.train()
            lines.append(f"step {it}: train loss {train_loss:.4f}, val loss {val_loss:.4f}")
            if val_loss < best_val and it > 0:
                best_val = val_loss
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "model_args": model_args,
                            "iter_num": it, "best_val_loss": best_val, "config": config}, out / "ckpt.pt")
                lines.append(f"saving checkpoint to {out}")
        if it == iters:
            break
        x, y = get_batch(tokens, it)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lines.append(f"iter {it}: loss {loss.item():.4f}, time 5.00ms, mfu -100.00%")
    (out / "train.log").write_text("\n".join(lines) + "\n")
    return out
