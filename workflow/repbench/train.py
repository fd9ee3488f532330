"""A real, offline training trajectory: train a small random-init causal LM and save checkpoints.

For studies of representation geometry over training (RankMe / α-ReQ phases) without a model hub: the model
entry ``source: trained`` names an architecture, a config, a tokenizer and a dataset of the same config; this
module trains ``AutoModelForCausalLM.from_config`` with next-token cross-entropy and AdamW (linear warm-up, then
constant learning rate) on fixed-length blocks of the tokenized dataset, and saves ``save_pretrained``
checkpoints (safetensors) at the requested steps, ``step0`` being the initialisation. Batches are drawn with a
seeded generator, so a rerun gives the same trajectory on the same machine and thread count.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from .data import Samples
from .models import load_tokenizer


def token_blocks(texts: list[str], tokenizer, seq_len: int) -> torch.Tensor:
    """Concatenate the tokenized texts (each followed by EOS/SEP) and cut into ``(n_blocks, seq_len)``."""
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    ids: list[int] = []
    for row in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(row)
        if sep is not None:
            ids.append(sep)
    n_blocks = len(ids) // seq_len
    if n_blocks < 1:
        raise ValueError(f"the training data has {len(ids)} tokens, fewer than one block of seq_len={seq_len}")
    return torch.tensor(ids[: n_blocks * seq_len]).view(n_blocks, seq_len)


def train_checkpoints(name: str, spec: dict, samples: Samples, out_dir: str | Path, progress: bool = True) -> list[Path]:
    """Train model entry ``name`` and write ``out_dir/step{N}`` for every N in ``spec['train']['steps']``."""
    from tqdm.auto import tqdm
    from transformers import AutoConfig, AutoModelForCausalLM

    train = spec["train"]
    steps = sorted(train["steps"])
    tokenizer = load_tokenizer(name, spec)
    blocks = token_blocks(samples.texts, tokenizer, train.get("seq_len", 64))
    config = AutoConfig.for_model(spec["architecture"], **{"vocab_size": len(tokenizer), **spec.get("config", {})})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.get("seed", 0))
        model = AutoModelForCausalLM.from_config(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.get("learning_rate", 1e-3))
    warmup = max(1, train.get("warmup_steps", 20))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    rng = np.random.default_rng(spec.get("seed", 0))
    out_dir = Path(out_dir)
    tmp_dir = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    saved = []

    def save(step: int) -> None:
        path = tmp_dir / f"step{step}"
        model.save_pretrained(path, safe_serialization=True)
        tokenizer.save_pretrained(path)
        saved.append(out_dir / f"step{step}")

    model.train()
    bar = tqdm(total=steps[-1], desc=f"train {name}", unit="step", disable=not progress, mininterval=2)
    if steps[0] == 0:
        save(0)
    for step in range(1, steps[-1] + 1):
        batch = blocks[rng.integers(0, len(blocks), size=train.get("batch_size", 16))]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if step in steps:
            save(step)
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    bar.close()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp_dir.rename(out_dir)
    return saved
