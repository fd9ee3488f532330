"""Input feeds: length-sorted batches under a padded-token budget, padded (and pinned) on the host.

A feed turns one work unit's samples into :class:`Batch` es: :class:`TextFeed` tokenises texts (or takes ready
token ids), :class:`ImageFeed` decodes and preprocesses images; both run in the extraction's prefetch thread
while the GPU computes the previous unit (see :mod:`repbench.extract.loop`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def plan_batches(lengths: np.ndarray, token_budget: int, max_batch_size: int, batch_size: int | None,
                 max_waste: float = 0.05, min_tokens: int | None = None) -> list[np.ndarray]:
    """Index batches of one unit, longest first; each batch's padded size B·max(len) ≤ ``token_budget``.

    A batch also ends early when the next sequence is more than ``max_waste`` shorter than the batch's longest
    one, once the batch holds ``min_tokens`` padded tokens (default ``token_budget // 4``): short sequences would
    otherwise fill a budget-sized batch with mostly padding. A fixed ``batch_size`` overrides the budget. Sorting
    is stable, so the plan is deterministic.
    """
    order = np.argsort(-lengths, kind="stable")
    min_tokens = token_budget // 4 if min_tokens is None else min_tokens
    batches, start = [], 0
    while start < len(order):
        if batch_size:
            end = start + batch_size
        else:
            longest = max(1, int(lengths[order[start]]))
            end = start + max(1, min(max_batch_size, token_budget // longest))
            floor = (1.0 - max_waste) * longest
            for k in range(start + 1, min(end, len(order))):
                if lengths[order[k]] < floor and (k - start) * longest >= min_tokens:
                    end = k
                    break
        batches.append(order[start:end])
        start = end
    return batches


def pad_batch(token_ids: list[list[int]], pad_id: int, padding_side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(t) for t in token_ids)
    ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for i, t in enumerate(token_ids):
        sl = slice(width - len(t), width) if padding_side == "left" else slice(0, len(t))
        ids[i, sl] = torch.as_tensor(t)
        mask[i, sl] = 1
    return ids, mask


@dataclass
class Batch:
    """One model call: ``rows`` (positions within the unit) and CPU inputs (pinned when the device is CUDA)."""

    rows: torch.Tensor
    inputs: dict[str, torch.Tensor]
    lengths: np.ndarray  # real tokens per row (vision: tokens per image)
    padded: int  # B × T: what the batch costs in memory

    def split(self) -> tuple[Batch, Batch]:
        """Two halves (right padding: each half trimmed to its own longest row)."""
        h = len(self.rows) // 2
        halves = []
        for sl in (slice(0, h), slice(h, None)):
            lengths = self.lengths[sl]
            inputs = {}
            for k, v in self.inputs.items():
                v = v[sl]
                if k in ("input_ids", "attention_mask"):
                    v = v[:, : int(lengths.max())]
                inputs[k] = v.contiguous()
            width = next(iter(inputs.values())).shape[1] if "input_ids" in inputs else int(lengths.max())
            halves.append(Batch(self.rows[sl].contiguous(), inputs, lengths, len(lengths) * width))
        return halves[0], halves[1]


def _pin(t: torch.Tensor, pin: bool) -> torch.Tensor:
    return t.pin_memory() if pin else t


class TextFeed:
    """Text inputs: strings tokenised unit by unit (in the prefetch thread), or ready token ids (``encoded``)."""

    modality = "text"

    def __init__(self, tokenizer=None, texts: list[str] | None = None, max_length: int | None = None,
                 encoded: list[list[int]] | None = None, pad_id: int | None = None):
        self.tokenizer, self.texts, self.max_length, self.encoded = tokenizer, texts, max_length, encoded
        self.pad_id = pad_id if pad_id is not None else (tokenizer.pad_token_id if tokenizer is not None else 0)
        self.n = len(encoded) if encoded is not None else len(texts)

    def encode(self, lo: int, hi: int) -> list[list[int]]:
        if self.encoded is not None:
            return self.encoded[lo:hi]
        return self.tokenizer(self.texts[lo:hi], truncation=True, max_length=self.max_length,
                              add_special_tokens=True)["input_ids"]

    def prepare(self, lo: int, hi: int, budget: int, max_batch_size: int, batch_size: int | None, pin: bool,
                ids: list[str]) -> list[Batch]:
        enc = self.encode(lo, hi)
        lengths = np.array([len(e) for e in enc])
        if (lengths == 0).any():
            raise ValueError(f"sample {ids[lo + int(np.argmin(lengths))]!r} has no tokens")
        batches = []
        for idx in plan_batches(lengths, budget, max_batch_size, batch_size):
            input_ids, mask = pad_batch([enc[j] for j in idx], self.pad_id, "right")
            batches.append(Batch(_pin(torch.as_tensor(idx, dtype=torch.long), pin),
                                 {"input_ids": _pin(input_ids, pin), "attention_mask": _pin(mask, pin)},
                                 lengths[idx], int(input_ids.numel())))
        return batches


class ImageFeed:
    """Images decoded and preprocessed unit by unit (in the prefetch thread) by the model's image processor."""

    modality = "vision"

    def __init__(self, processor, images: list, n_positions: int = 1):
        self.processor, self.images, self.n_positions = processor, images, n_positions
        self.n = len(images)

    def pixels(self, lo: int, hi: int) -> torch.Tensor:
        from ..data.images import load_image

        pics = [load_image(ref) for ref in self.images[lo:hi]]
        return self.processor(images=pics, return_tensors="pt")["pixel_values"].to(torch.float32)

    def prepare(self, lo: int, hi: int, budget: int, max_batch_size: int, batch_size: int | None, pin: bool,
                ids: list[str]) -> list[Batch]:
        pixels = self.pixels(lo, hi)
        size = batch_size or max(1, min(max_batch_size, budget // max(1, self.n_positions)))
        batches = []
        for start in range(0, hi - lo, size):
            rows = torch.arange(start, min(hi - lo, start + size), dtype=torch.long)
            batches.append(Batch(_pin(rows, pin), {"pixel_values": _pin(pixels[start : start + size].contiguous(), pin)},
                                 np.full(len(rows), self.n_positions), len(rows) * self.n_positions))
        return batches
