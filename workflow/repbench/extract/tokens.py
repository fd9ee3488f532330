"""Token level: every non-padding token's vector of a seeded subset of samples, as a ragged array in the store.

Layout (arrays of the activation store, ``extract.tokens``):

- ``tokens`` ``(token_layer, token, feature)``: the vectors, ``extract.tokens.dtype`` (float16 by default, with the
  same overflow guard as the pooled arrays), chunks ``(1, t, feature)`` of at least 1 MiB;
- ``token_layer`` ``(token_layer,)``: which layers (0 = embeddings), all or ``extract.tokens.layers``;
- ``token_sample`` ``(token_sample,)``: the ids of the samples whose tokens are stored, in store order;
- ``token_offsets`` ``(token_offset,)`` = token_sample + 1 entries: sample j's tokens are rows
  ``token_offsets[j] : token_offsets[j + 1]``;
- per token ``(token,)``: ``token_id`` (the tokenizer's id; −1 for image patches), ``position`` (0-based position in
  the model's input), ``word`` (the word index from the tokenizer's ``word_ids``, −1 for special tokens, image
  patches, and everywhere when the tokenizer has no word ids — then the attribute ``token_word_ids`` says
  ``unavailable``), ``token_prefix`` (True for a vision model's CLS/register tokens);
- ``token_truncated`` ``(token_sample,)``: True when the text had more tokens than ``max_length``.

:func:`repbench.store.sample_tokens` returns one sample's ``(token, feature)`` block of one layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

TOKEN_CHUNK_BYTES = 1 << 20


@dataclass
class TokenPlan:
    """What the token arrays hold; built before the extraction runs (lengths come from the tokenizer)."""

    rows: np.ndarray  # (S,) sorted sample indices whose tokens are stored
    layers: list[int]  # stored layers, ascending
    offsets: np.ndarray  # (S + 1,) int64
    token_id: np.ndarray  # (T,) int32
    position: np.ndarray  # (T,) int32
    word: np.ndarray  # (T,) int32
    prefix: np.ndarray  # (T,) bool
    truncated: np.ndarray  # (S,) bool
    word_ids: str  # "tokenizer" or "unavailable" (or "n/a (images)")
    dtype: str

    def __post_init__(self):
        self.index = {int(r): j for j, r in enumerate(self.rows)}  # sample index → subset index

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def nbytes(self, width: int) -> int:
        return len(self.layers) * self.n_tokens * width * np.dtype(self.dtype).itemsize


def subset_rows(n: int, n_samples: int, seed: int) -> np.ndarray:
    """The seeded subset of sample indices (all when ``n_samples ≥ n``), sorted."""
    if n_samples >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=n_samples, replace=False))


def resolve_layers(layers, n_layers: int) -> list[int]:
    """``extract.tokens.layers`` (negative from the end; null = all) as sorted layer indices."""
    if layers is None:
        return list(range(n_layers))
    out = []
    for layer in layers:
        k = layer + n_layers if layer < 0 else layer
        if not 0 <= k < n_layers:
            raise ValueError(f"extract.tokens.layers: layer {layer} does not exist (the model has layers 0..{n_layers - 1})")
        out.append(k)
    return sorted(set(out))


def text_plan(options: dict, tokenizer, texts: list[str], max_length: int, n_layers: int, encoded=None) -> TokenPlan:
    """The plan for a text model: tokenised exactly as :class:`~repbench.extract.feeds.TextFeed` does."""
    rows = subset_rows(len(texts) if texts is not None else len(encoded), options["n_samples"], options["seed"])
    if encoded is not None:
        ids = [list(encoded[r]) for r in rows]
        words = [[-1] * len(i) for i in ids]
        truncated = np.zeros(len(rows), dtype=bool)
        word_ids = "unavailable"
    else:
        chosen = [texts[r] for r in rows]
        enc = tokenizer(chosen, truncation=True, max_length=max_length, add_special_tokens=True)
        ids = enc["input_ids"]
        full = tokenizer(chosen, truncation=False, add_special_tokens=True)["input_ids"]
        truncated = np.array([len(f) > len(i) for f, i in zip(full, ids)], dtype=bool)
        if getattr(enc, "is_fast", False):
            words = [[-1 if w is None else int(w) for w in enc.word_ids(j)] for j in range(len(chosen))]
            word_ids = "tokenizer"
        else:
            words = [[-1] * len(i) for i in ids]
            word_ids = "unavailable"
    lengths = np.array([len(i) for i in ids], dtype=np.int64)
    return TokenPlan(rows, resolve_layers(options["layers"], n_layers), np.concatenate([[0], np.cumsum(lengths)]),
                     np.concatenate(ids).astype(np.int32) if len(ids) else np.zeros(0, np.int32),
                     np.concatenate([np.arange(n) for n in lengths]).astype(np.int32),
                     np.concatenate(words).astype(np.int32), np.zeros(int(lengths.sum()), dtype=bool), truncated,
                     word_ids, options["dtype"])


def vision_plan(options: dict, n_images: int, positions: int, n_prefix: int, n_layers: int, layout: str) -> TokenPlan:
    """The plan for a vision model: every image has the same ``positions`` tokens (prefix tokens first)."""
    if layout != "tokens":
        raise ValueError("extract.tokens needs token sequences, but this vision model produces spatial feature maps "
                         "(a convolutional model); turn tokens off for it (the model's `tokens: false`)")
    rows = subset_rows(n_images, options["n_samples"], options["seed"])
    s = len(rows)
    position = np.tile(np.arange(positions, dtype=np.int32), s)
    return TokenPlan(rows, resolve_layers(options["layers"], n_layers), np.arange(s + 1, dtype=np.int64) * positions,
                     np.full(s * positions, -1, np.int32), position, np.full(s * positions, -1, np.int32),
                     position < n_prefix, np.zeros(s, dtype=bool), "n/a (images)", options["dtype"])


def check_size(plan: TokenPlan, width: int, max_gb: float, model: str, dataset: str) -> None:
    """Print the token array's size; refuse, naming the keys to change, when it exceeds ``max_gb``."""
    size = plan.nbytes(width)
    print(f"extract: token level: {len(plan.rows)} samples, {plan.n_tokens} tokens × {len(plan.layers)} layers × "
          f"{width} features in {plan.dtype} = {size / 1e9:.3f} GB", flush=True)
    if size > max_gb * 1e9:
        raise ValueError(
            f"model {model!r} on dataset {dataset!r}: the token array would take {size / 1e9:.2f} GB, above "
            f"extract.tokens.max_gb = {max_gb}; lower extract.tokens.n_samples ({len(plan.rows)} samples here), "
            "choose fewer extract.tokens.layers, or raise extract.tokens.max_gb"
        )


def create_arrays(group, plan: TokenPlan, sample_ids: list[str], width: int) -> None:
    """The token arrays of ``plan`` in the (partial) store ``group``; ``tokens`` is filled unit by unit."""
    from .. import store

    t_chunk = max(1, math.ceil(TOKEN_CHUNK_BYTES / (width * np.dtype(plan.dtype).itemsize)))
    store.create_array(group, "tokens", (len(plan.layers), max(plan.n_tokens, 1), width),
                       ("token_layer", "token", "feature"), chunks=(1, min(t_chunk, max(plan.n_tokens, 1)), width),
                       dtype=plan.dtype)
    store.create_array(group, "token_layer", np.asarray(plan.layers, dtype=np.int32), ("token_layer",))
    store.create_array(group, "token_sample", np.asarray([sample_ids[r] for r in plan.rows], dtype=str),
                       ("token_sample",))
    store.create_array(group, "token_offsets", plan.offsets, ("token_offset",))
    store.create_array(group, "token_truncated", plan.truncated, ("token_sample",))
    for name, values in (("token_id", plan.token_id), ("position", plan.position), ("word", plan.word),
                         ("token_prefix", plan.prefix)):
        store.create_array(group, name, values, ("token",))


class TokenCollector:
    """Gathers one work unit's token vectors from the pooler's captures, on the compute device.

    ``begin(lo, hi)`` starts a unit of samples ``lo:hi``; ``rows_of(batch_rows, lo)`` tells the pooler which rows of
    a batch to capture; ``take(...)`` copies their real tokens into the unit buffer; ``finish()`` returns
    ``(t0, t1, buffer)``: the unit's token rows and their ``(layer, t1 − t0, width)`` float32 values.
    """

    def __init__(self, plan: TokenPlan, width: int, device):
        self.plan, self.width, self.device = plan, width, device
        self.buf, self.t0, self.t1 = None, 0, 0

    def begin(self, lo: int, hi: int) -> None:
        inside = [self.plan.index[r] for r in range(lo, hi) if r in self.plan.index]
        if not inside:
            self.buf = None
            return
        self.t0, self.t1 = int(self.plan.offsets[inside[0]]), int(self.plan.offsets[inside[-1] + 1])
        self.buf = torch.zeros((len(self.plan.layers), self.t1 - self.t0, self.width), dtype=torch.float32,
                               device=self.device)

    def rows_of(self, batch_rows: torch.Tensor, lo: int) -> list[int]:
        """Positions within a batch whose sample's tokens are stored."""
        if self.buf is None:
            return []
        return [k for k, r in enumerate(batch_rows.tolist()) if lo + r in self.plan.index]

    def take(self, captured: dict[int, torch.Tensor], positions: list[int], batch_rows: torch.Tensor, lo: int,
             lengths: np.ndarray) -> None:
        """Copy the captured ``(len(positions), T, D)`` hidden states of every stored layer into the buffer."""
        rows = batch_rows.tolist()
        for j, k in enumerate(positions):
            sub = self.plan.index[lo + rows[k]]
            a, b = int(self.plan.offsets[sub]) - self.t0, int(self.plan.offsets[sub + 1]) - self.t0
            n = int(lengths[k])
            if n != b - a:
                raise RuntimeError(f"token count mismatch for sample index {lo + rows[k]}: planned {b - a}, got {n}")
            for li, layer in enumerate(self.plan.layers):
                hidden = captured[layer][j, :n]
                self.buf[li, a:b, : hidden.shape[-1]] = hidden.float()

    def finish(self):
        """``(t0, t1, values)`` of the unit (``None`` without stored samples): float16/float32 numpy on the host,
        cast on the device after one reduction found every value finite and in range; otherwise the float32 values,
        for :func:`~repbench.extract.loop.check_token_values` to locate the bad one."""
        if self.buf is None:
            return None
        buf, self.buf = self.buf, None
        peak = float(buf.abs().amax()) if buf.numel() else 0.0
        limit = float(np.finfo(np.float16).max) if self.plan.dtype == "float16" else math.inf
        if math.isfinite(peak) and peak <= limit:
            buf = buf.to(torch.float16) if self.plan.dtype == "float16" else buf
        return self.t0, self.t1, buf.cpu().numpy()
