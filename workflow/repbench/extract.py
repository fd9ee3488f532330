"""Extraction: run a model over a dataset and store every layer's pooled activations.

Layer 0 is the embedding output (the input of the first block), layer ℓ the output of block ℓ — the same tensors
as ``output_hidden_states=True`` gives, but pooled by forward hooks as each layer is produced, so no layer's
``(batch, token, feature)`` tensor outlives its block. For text models the last layer is the model's
``last_hidden_state`` (after a final norm where the model has one, as transformers reports it); for vision models
it is the last block's output (transformers reports ViT/DINOv2 hidden states before their final layer norm).

Text poolings over the non-padding tokens (mask m ∈ {0,1}^{B×T}; batches are right-padded):
    mean[b]  = Σ_t m[b,t]·h[b,t] / Σ_t m[b,t]
    last[b]  = h[b, max{t : m[b,t] = 1}]
    first[b] = h[b, min{t : m[b,t] = 1}]
Vision poolings over a token sequence with P prefix tokens (CLS, registers; detected per model):
    mean[b]  = mean of the patch tokens h[b, P:]        first[b] = h[b, 0] (the CLS token; needs P ≥ 1)
    last[b]  = h[b, T-1] (the last patch; rarely meaningful, kept so every store has the same arrays)
Convolutional stages ``(B, C, H, W)`` (ConvNeXt, …) have no tokens: only ``mean`` (global average over H×W) is
defined. Stages of different widths are zero-padded to the widest (``layer_width`` in the store says how many
features each layer really has; distances, inner products and norms are unchanged by the padding).

Speed. Samples are processed in *work units* of consecutive store chunks (``unit_mb`` of pooled output): a
background thread prepares unit u+1 (tokenises or decodes and preprocesses images, plans length-sorted batches
under a padded-token budget, pads them into pinned memory) while the GPU runs unit u; pooled results stay on the
GPU until the unit is done, then go to pinned host memory on a side stream, and a writer thread stores them in
Zarr while the next unit computes. Causal decoders run without a padding mask when right-padded (checked once per
model: real tokens never attend to the padding on the right), which lets SDPA use its causal flash kernel; nothing
in the batch loop waits for the GPU. CUDA out-of-memory splits the batch and lowers the token cap for every
later batch. ``compile: true`` compiles each block with ``torch.compile``.

Resume. Each finished unit is recorded in ``progress.json`` beside the partial store (``results/.partial/``), so
a killed job redoes only unfinished units and gives the same store as an uninterrupted run; the finished store is
moved into place atomically.

GPUs. With several visible GPUs each extraction takes the first GPU whose lock file (``results/.partial/gpus/``)
it can lock (``fcntl.flock``, released by the kernel even when the job is killed), so concurrent Snakemake jobs
(``--resources gpu=N``) land on distinct devices.
"""

from __future__ import annotations

import fcntl
import math
import os
import platform
import shutil
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__, store
from .config import fingerprint
from .data import Samples, load_samples
from .models import load_model

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
FLOAT16_MAX = float(np.finfo(np.float16).max)
CPU_TOKEN_BUDGET = 8192
WRITE_CONCURRENCY = max(10, 2 * (os.cpu_count() or 1))  # chunks Zarr encodes (zstd, GIL released) at once
GPU_TOKEN_BUDGET_MAX = 65536


class NonFiniteActivationError(FloatingPointError):
    """NaN/Inf (or float16 overflow) in a model's activations; names model, layer and sample."""


class PoolingError(ValueError):
    """A pooling is undefined for a model (e.g. ``first`` without a CLS token)."""


# ----------------------------------------------------------------------------------------------- pooling
def _masked_sum(h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Σ_t m[b,t]·h[b,t] in float32 as one batched matrix product ``(B,1,T) @ (B,T,D)``.

    On CUDA with bfloat16/float16 activations cuBLAS accumulates in float32 and writes float32 directly (no
    float32 copy of ``h``); elsewhere ``h`` is converted first.
    """
    if h.is_cuda and h.dtype in (torch.bfloat16, torch.float16):
        try:
            return torch.bmm(m.to(h.dtype).unsqueeze(1), h, out_dtype=torch.float32).squeeze(1)
        except (TypeError, RuntimeError, NotImplementedError):  # older torch: no out_dtype
            pass
    return torch.bmm(m.to(torch.float32).unsqueeze(1), h.float()).squeeze(1)


def pool(hidden: torch.Tensor, mask: torch.Tensor, poolings: list[str]) -> dict[str, torch.Tensor]:
    """Pool ``hidden`` (B, T, D) over the tokens where ``mask`` (B, T) is 1; float32 results (B, D).

    No host synchronisation: positions come from reductions on the device, rows from gathers.
    """
    out = {}
    positions = torch.arange(mask.shape[1], device=mask.device)
    rows = torch.arange(mask.shape[0], device=mask.device)
    valid = mask.bool()
    for p in poolings:
        if p == "mean":
            out[p] = _masked_sum(hidden, mask) / mask.sum(1, keepdim=True).clamp_min(1).to(torch.float32)
        elif p == "last":
            out[p] = hidden[rows, torch.where(valid, positions, -1).amax(1)].float()
        elif p == "first":
            out[p] = hidden[rows, torch.where(valid, positions, mask.shape[1]).amin(1)].float()
        else:
            raise ValueError(f"unknown pooling {p!r}")
    return out


def pool_vision(hidden: torch.Tensor, n_prefix: int, poolings: list[str]) -> dict[str, torch.Tensor]:
    """Pool one vision layer: tokens ``(B, T, D)`` (P = ``n_prefix`` CLS/register tokens first) or spatial maps
    ``(B, C, H, W)``; float32 results (B, D) or (B, C)."""
    out = {}
    if hidden.ndim == 4:
        for p in poolings:
            if p != "mean":
                raise PoolingError(f"pooling {p!r} is undefined for spatial feature maps (no tokens); use mean")
            out[p] = hidden.float().mean(dim=(2, 3))
        return out
    for p in poolings:
        if p == "mean":
            patches = hidden[:, n_prefix:] if hidden.shape[1] > n_prefix else hidden
            out[p] = patches.float().mean(1)
        elif p == "first":
            if n_prefix < 1:
                raise PoolingError("pooling 'first' (the CLS token) is undefined: the model has no CLS token")
            out[p] = hidden[:, 0].float()
        elif p == "last":
            out[p] = hidden[:, -1].float()
        else:
            raise ValueError(f"unknown pooling {p!r}")
    return out


def find_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's list of blocks: the first ``ModuleList`` of ``num_hidden_layers`` modules (transformer layers,
    or the stages of a convolutional model: ``num_stages``)."""
    cfg = model.config
    n = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "num_stages", None)
    if n is None and getattr(cfg, "depths", None):
        n = len(cfg.depths)
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(
        f"cannot find the {n} blocks of {type(model).__name__} (no ModuleList of that length)"
    )


class LayerPooler:
    """Forward hooks that pool every layer into ``self.pooled[pooling][layer]`` while the model runs.

    ``modality="text"``: call with ``input_ids`` and ``attention_mask``; the last layer is ``last_hidden_state``.
    ``modality="vision"``: call with ``pixel_values``; every block is hooked (the last layer is the last block's
    output). Pooled vectors narrower than ``width`` are zero-padded to it.
    """

    def __init__(self, model: torch.nn.Module, poolings: list[str], *, modality: str = "text",
                 n_prefix: int = 0, width: int | None = None):
        self.model, self.poolings, self.modality = model, list(poolings), modality
        self.n_prefix = n_prefix
        self.blocks = find_blocks(model)
        self.n_layers = len(self.blocks) + 1
        self.width = width
        self.dtype = next(model.parameters()).dtype  # pixel values are cast to it
        self.pass_mask = True  # False: causal decoder, right padding: run without the padding mask
        self.mask: torch.Tensor | None = None
        self.pooled: dict[str, list[torch.Tensor | None]] = {}
        self.shapes: list[tuple | None] = [None] * self.n_layers
        self.handles = [self.blocks[0].register_forward_pre_hook(self._embedding_hook, with_kwargs=True)]
        hooked = self.blocks if modality == "vision" else self.blocks[:-1]
        for i, block in enumerate(hooked, start=1):
            self.handles.append(block.register_forward_hook(self._make_block_hook(i)))

    def _store(self, layer: int, hidden: torch.Tensor) -> None:
        self.shapes[layer] = tuple(hidden.shape)
        if self.modality == "vision":
            pooled = pool_vision(hidden, self.n_prefix, self.poolings)
        else:
            pooled = pool(hidden, self.mask, self.poolings)
        for p, v in pooled.items():
            if self.width is not None and v.shape[-1] < self.width:
                v = F.pad(v, (0, self.width - v.shape[-1]))
            self.pooled[p][layer] = v

    def _embedding_hook(self, module, args, kwargs):
        hidden = args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values()), None))
        self._store(0, hidden)

    def _make_block_hook(self, layer: int):
        def hook(module, args, output):
            self._store(layer, output[0] if isinstance(output, (tuple, list)) else output)

        return hook

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, *,
                 pixel_values: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Run one batch; returns ``{pooling: (layer, batch, feature)}`` float32 on the model's device."""
        self.run(input_ids, attention_mask, pixel_values=pixel_values)
        return {p: torch.stack(v) for p, v in self.pooled.items()}

    @torch.inference_mode()
    def run(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, *,
            pixel_values: torch.Tensor | None = None) -> None:
        """Run one batch, leaving per-layer results in ``self.pooled`` and their input shapes in ``self.shapes``."""
        self.pooled = {p: [None] * self.n_layers for p in self.poolings}
        if pixel_values is not None:
            self.model(pixel_values=pixel_values)
        else:
            self.mask = attention_mask
            if self.pass_mask:
                out = self.model(input_ids=input_ids, attention_mask=attention_mask)
            else:
                out = self.model(input_ids=input_ids)
            self._store(self.n_layers - 1, out.last_hidden_state)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@torch.inference_mode()
def is_causal(model: torch.nn.Module, device: torch.device, vocab_size: int) -> bool:
    """Whether changing the last token leaves every earlier position's output unchanged (a causal decoder).

    For such a model, right padding cannot influence real tokens, so the padding mask can be dropped (SDPA then
    runs its causal kernel). Checked once per model with a 6-token probe.
    """
    a = (torch.arange(6, device=device) + 3).remainder(vocab_size).unsqueeze(0)
    b = a.clone()
    b[0, -1] = (b[0, -1] + 1) % vocab_size
    ha = model(input_ids=a).last_hidden_state[:, :-1].float()
    hb = model(input_ids=b).last_hidden_state[:, :-1].float()
    scale = ha.abs().max().clamp_min(1e-6)
    return bool(((ha - hb).abs().max() <= 1e-3 * scale).item())


# --------------------------------------------------------------------------------------------- batching
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
        from .data.images import load_image

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


# ------------------------------------------------------------------------------------------ device choice
def pick_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("extract.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[requested]


class GpuSlot:
    """An exclusive claim on one GPU, held as an ``flock`` on ``{lock_dir}/gpu-{device_id}.lock``.

    The kernel drops the lock when the process ends, however it ends, so a killed job never leaves a GPU taken.
    """

    def __init__(self, index: int, device_id: str, fd: int, path: Path):
        self.index, self.device_id, self._fd, self.path = index, device_id, fd, path

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> GpuSlot:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire_gpu_slot(lock_dir: str | Path, device_ids: list[str], *, wait: bool = True,
                     poll_s: float = 2.0, log=None) -> GpuSlot | None:
    """Lock the first free GPU among ``device_ids`` (stable ids, e.g. UUIDs; their order gives the index).

    Returns ``None`` when all are taken and ``wait`` is false; otherwise polls until one frees up (which only
    happens when more jobs than GPUs were allowed to run, e.g. ``--resources gpu=4`` on two GPUs).
    """
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    announced = False
    while True:
        for index, dev in enumerate(device_ids):
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(dev))
            path = lock_dir / f"gpu-{safe}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {platform.node()}\n".encode())
            return GpuSlot(index, str(dev), fd, path)
        if not wait:
            return None
        if not announced and log is not None:
            log(f"all {len(device_ids)} GPUs are taken by other extractions; waiting for one ({lock_dir})")
            announced = True
        time.sleep(poll_s)


def cuda_device_ids() -> list[str]:
    """Stable ids of the visible CUDA devices (UUIDs where torch reports them, else indices)."""
    ids = []
    for i in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(i), "uuid", None)
        ids.append(str(uuid) if uuid else str(i))
    return ids


def gpu_lock_dir(partial_root: str | Path) -> Path:
    """``results/.partial/gpus`` for the workflow's ``results/.partial/activations/{dataset}``."""
    root = Path(partial_root)
    return root.parent.parent / "gpus" if root.parent.name == "activations" else root / "gpus"


def auto_token_budget(model: torch.nn.Module, device: torch.device, n_poolings: int) -> int:
    """Padded tokens per batch: ``8192`` on CPU; on CUDA about half the free memory over a per-token estimate
    of inference activations (q/k/v/attention/MLP in the compute dtype plus float32 pooling), capped at 65 536.
    CUDA out-of-memory still backs off (see :func:`run_extraction`)."""
    if device.type != "cuda":
        return CPU_TOKEN_BUDGET
    cfg = model.config
    d = int(getattr(cfg, "hidden_size", 0) or max(getattr(cfg, "hidden_sizes", [1024])))
    inter = int(getattr(cfg, "intermediate_size", 0) or 4 * d)
    itemsize = next(model.parameters()).element_size()
    per_token = itemsize * (12 * d + 3 * inter) + 4 * d * (2 + n_poolings)
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(GPU_TOKEN_BUDGET_MAX, max(1024, 0.5 * free // per_token)))


# ------------------------------------------------------------------------------------------------ checks
def check_finite(chunk: dict[str, np.ndarray], store_dtype: str, model: str, sample_ids: list[str]) -> None:
    """Raise :class:`NonFiniteActivationError` naming model, layer, pooling and sample on NaN/Inf/overflow."""
    limit = FLOAT16_MAX if store_dtype == "float16" else np.inf
    for pooling, arr in chunk.items():
        bad = ~np.isfinite(arr) | (np.abs(arr) > limit)
        if bad.any():
            layer, sample, _ = np.argwhere(bad)[0]
            what = "overflows float16" if np.isfinite(arr[layer, sample]).all() else "is not finite (NaN/Inf)"
            raise NonFiniteActivationError(
                f"model {model!r}: activation at layer {layer}, sample {sample_ids[sample]!r} "
                f"(pooling {pooling!r}) {what}; try dtype float32 for this model or store_dtype float32"
            )


# ------------------------------------------------------------------------------------------ the run loop
@dataclass
class RunStats:
    samples: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    seconds: float = 0.0
    units: int = 0
    oom_backoffs: int = 0
    token_cap: int | None = None
    writer_wait_s: float = 0.0  # time the compute loop waited for the writer (should stay ~0)
    extra: dict = field(default_factory=dict)


class _HostBuffers:
    """Reusable pinned host buffers (allocating pinned memory is slow): a unit's ``(layer, n, feature)`` view."""

    def __init__(self, pin: bool):
        self.pin = pin
        self.free: list[torch.Tensor] = []
        self.lock = threading.Lock()

    def get(self, shape: tuple[int, ...]) -> torch.Tensor:
        numel = math.prod(shape)
        with self.lock:
            for i, buf in enumerate(self.free):
                if buf.numel() >= numel:
                    return self.free.pop(i)[:numel].view(shape)
        return torch.empty(shape, dtype=torch.float32, pin_memory=self.pin)

    def put(self, view: torch.Tensor) -> None:
        base = view._base if view._base is not None else view
        with self.lock:
            self.free.append(base.view(-1))


def unit_plan(n_samples: int, chunk: int, n_layers: int, width: int, n_poolings: int, unit_mb: float,
              max_unit_samples: int, min_units: int = 3) -> int:
    """Store chunks per work unit: at most about ``unit_mb`` MiB of float32 pooled output (≥ 1 chunk), units of
    equal size, and at least ``min_units`` of them where there are enough chunks (the last unit's write cannot
    overlap compute; larger units sort over more samples and pad less)."""
    per_sample = n_layers * width * 4 * n_poolings
    samples = max(1, min(max_unit_samples, int(unit_mb * 2**20 // per_sample)))
    n_chunks = math.ceil(n_samples / chunk)
    n_units = max(min(min_units, n_chunks), math.ceil(n_chunks / max(1, samples // chunk)))
    return max(1, math.ceil(n_chunks / n_units))


def plan_units(n_chunks: int, unit_chunks: int) -> list[tuple[int, int]]:
    """Work units as chunk ranges ``[c0, c1)``: units of ``unit_chunks`` chunks, the last one tapered into halves
    (⌈u/2⌉, ⌈u/4⌉, …, 1 chunk), so that each piece's write overlaps the next piece's compute and only one chunk is
    written after the last forward pass. Deterministic in its arguments (resume relies on it)."""
    units, c0 = [], 0
    while n_chunks - c0 > unit_chunks:
        units.append((c0, c0 + unit_chunks))
        c0 += unit_chunks
    while c0 < n_chunks:
        size = max(1, math.ceil((n_chunks - c0) / 2)) if n_chunks - c0 > 2 else 1
        units.append((c0, c0 + size))
        c0 += size
    return units


def run_extraction(
    *,
    pooler: LayerPooler,
    feed,
    sample_ids: list[str],
    model_name: str,
    options: dict,
    device: torch.device,
    chunk: int,
    unit_chunks: int,
    group=None,
    progress_file: Path | None = None,
    done_chunks: set[int] | None = None,
    batch_size: int | None = None,
    token_budget: int | None = None,
    progress: bool = True,
    desc: str = "extract",
) -> RunStats:
    """Pool every layer of every sample and write each finished unit into ``group`` (``None``: write nothing).

    Units whose chunks are all in ``done_chunks`` are skipped (resume). Returns throughput statistics.
    """
    from tqdm.auto import tqdm

    n = len(sample_ids)
    store_dtype = options.get("store_dtype", "float32")
    poolings = pooler.poolings
    width = pooler.width
    done = set(done_chunks or ())
    n_chunks = math.ceil(n / chunk)
    units = plan_units(n_chunks, unit_chunks)
    todo = [(c0, c1) for c0, c1 in units if not all(c in done for c in range(c0, c1))]
    budget = token_budget or CPU_TOKEN_BUDGET
    max_bs = options.get("max_batch_size", 1024)
    cuda = device.type == "cuda"
    limit = FLOAT16_MAX if store_dtype == "float16" else math.inf
    stats = RunStats(extra={"token_budget": budget})
    cap = [budget]  # adaptive: lowered on CUDA OOM, applies to every later batch

    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="repbench-prefetch")
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="repbench-writer")
    host_buffers = _HostBuffers(pin=cuda)
    copy_stream = torch.cuda.Stream(device) if cuda else None
    pending: deque[Future] = deque()

    def prepare(c0: int, c1: int):
        lo, hi = c0 * chunk, min(n, c1 * chunk)
        return feed.prepare(lo, hi, cap[0], max_bs, batch_size, cuda, sample_ids)

    def write_unit(c0: int, c1: int, host: dict[str, torch.Tensor], flags: torch.Tensor, event) -> None:
        if event is not None:
            event.synchronize()  # this unit's device-to-host copies have landed
        lo = c0 * chunk
        try:
            if not (flags.isfinite().all() and (flags <= limit).all()):
                arrays = {p: host[p].numpy() for p in poolings}
                check_finite(arrays, store_dtype, model_name, sample_ids[lo:])
                raise NonFiniteActivationError(f"model {model_name!r}: non-finite activations in samples "
                                               f"{sample_ids[lo]!r}… (not located)")
            if group is not None:
                with store.zarr.config.set({"async.concurrency": WRITE_CONCURRENCY}):
                    for p in poolings:
                        arr = host[p].numpy()
                        group[p][:, lo : lo + arr.shape[1], :] = arr.astype(store_dtype, copy=False)
                done.update(range(c0, c1))
                store.write_json_atomic(progress_file, {"chunks": sorted(done)})
        finally:
            for p in poolings:
                host_buffers.put(host[p])

    total_done = n - sum(min(n, c1 * chunk) - c0 * chunk for c0, c1 in todo)
    bar = tqdm(total=n, initial=total_done, unit="sample", desc=desc, disable=not progress, mininterval=2,
               file=sys.stderr)
    t0 = time.perf_counter()
    try:
        nxt = prefetch.submit(prepare, *todo[0]) if todo else None
        for k, (c0, c1) in enumerate(todo):
            batches = deque(nxt.result())
            nxt = prefetch.submit(prepare, *todo[k + 1]) if k + 1 < len(todo) else None
            lo, hi = c0 * chunk, min(n, c1 * chunk)
            buf = {p: torch.empty((pooler.n_layers, hi - lo, width), dtype=torch.float32, device=device)
                   for p in poolings}
            while batches:
                b = batches.popleft()
                if b.padded > cap[0] and len(b.rows) > 1:
                    batches.extendleft(reversed(b.split()))
                    continue
                oom = False
                try:
                    inputs = {key: v.to(device, non_blocking=True) for key, v in b.inputs.items()}
                    if "pixel_values" in inputs:
                        inputs["pixel_values"] = inputs["pixel_values"].to(pooler.dtype)
                    pooled = pooler(**inputs)
                except torch.cuda.OutOfMemoryError:
                    if len(b.rows) == 1:
                        raise
                    oom = True
                if oom:  # back off outside the except block, so the failed batch's tensors can be freed
                    pooler.pooled, inputs = {}, None
                    torch.cuda.empty_cache()
                    cap[0] = max(1, min(cap[0], b.padded // 2))
                    stats.oom_backoffs += 1
                    batches.extendleft(reversed(b.split()))
                    continue
                rows = b.rows.to(device, non_blocking=True)
                for p, v in pooled.items():
                    buf[p].index_copy_(1, rows, v)
                stats.tokens += int(b.lengths.sum())
                stats.padded_tokens += b.padded
                bar.update(len(b.rows))
                elapsed = time.perf_counter() - t0
                bar.set_postfix(tok_s=f"{stats.tokens / max(elapsed, 1e-9):.0f}", refresh=False)
            # one reduction per pooling flags NaN/Inf/overflow without a host sync (checked by the writer)
            flags_dev = torch.stack([buf[p].abs().amax() for p in poolings])
            host = {p: host_buffers.get(tuple(buf[p].shape)) for p in poolings}
            if cuda:
                flags = torch.empty(flags_dev.shape, dtype=torch.float32, pin_memory=True)
                copy_stream.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(copy_stream):
                    for p in poolings:
                        host[p].copy_(buf[p], non_blocking=True)
                        buf[p].record_stream(copy_stream)
                    flags.copy_(flags_dev, non_blocking=True)
                    flags_dev.record_stream(copy_stream)
                    event = torch.cuda.Event()
                    event.record(copy_stream)
            else:
                for p in poolings:
                    host[p].copy_(buf[p])
                flags, event = flags_dev, None
            del buf
            wait0 = time.perf_counter()
            while len(pending) >= 2:  # bound host memory: at most two units waiting for the writer
                pending.popleft().result()
            stats.writer_wait_s += time.perf_counter() - wait0
            pending.append(writer.submit(write_unit, c0, c1, host, flags, event))
            stats.samples += hi - lo
            stats.units += 1
        while pending:
            pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
        prefetch.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True)
        bar.close()
    stats.seconds = time.perf_counter() - t0
    stats.token_cap = cap[0]
    return stats


# ----------------------------------------------------------------------------------------------- driver
def prepare_model(loaded, options: dict, device: torch.device, dtype: torch.dtype, samples: Samples | None = None,
                  prefix_override: int | None = None):
    """Move the model to ``device``/``dtype``, hook it, and build its input feed; returns ``(pooler, info)``.

    ``info`` holds what provenance records: layer widths, prefix tokens, attention path, compile.
    """
    model = loaded.model.to(device=device, dtype=dtype)
    poolings = options["poolings"]
    info: dict = {"modality": loaded.modality}
    if loaded.modality == "vision":
        from .models.vision import prefix_tokens

        n_prefix = prefix_override if prefix_override is not None else prefix_tokens(model)
        pooler = LayerPooler(model, ["mean"], modality="vision", n_prefix=n_prefix)
        probe = ImageFeed(loaded.image_processor, samples.images[:1]).pixels(0, 1)
        pooler.run(pixel_values=probe.to(device, dtype))
        shapes = list(pooler.shapes)
        spatial = len(shapes[0]) == 4
        widths = [s[1] if len(s) == 4 else s[-1] for s in shapes]
        positions = int(np.prod(shapes[0][2:])) if spatial else int(shapes[0][1])
        if spatial and set(poolings) - {"mean"}:
            raise PoolingError(
                f"model {loaded.provenance.get('model_type')!r} produces spatial feature maps (no tokens): only "
                f"'mean' pooling (global average over height × width) is defined, but extract.poolings is "
                f"{poolings}; set extract.poolings: [mean]"
            )
        if not spatial and "first" in poolings and n_prefix < 1:
            raise PoolingError(
                f"model {loaded.provenance.get('model_type')!r} has no CLS token, so pooling 'first' is undefined; "
                "drop 'first' from extract.poolings (or set the model's prefix_tokens if detection is wrong)"
            )
        pooler.remove()
        pooler = LayerPooler(model, poolings, modality="vision", n_prefix=n_prefix, width=max(widths))
        info.update(n_prefix_tokens=n_prefix, layer_widths=widths, layout="spatial" if spatial else "tokens",
                    positions_per_image=positions, attention="n/a (images)")
    else:
        vocab = int(getattr(model.config, "vocab_size", 0) or len(loaded.tokenizer))
        causal = is_causal(model, device, vocab)  # before hooking: the probe is not pooled
        pooler = LayerPooler(model, poolings, width=int(model.config.hidden_size))
        pooler.pass_mask = not causal
        info["layer_widths"] = [int(model.config.hidden_size)] * pooler.n_layers
        info["attention"] = "causal, right padding, no padding mask" if causal else "padding mask"
    if options.get("compile"):
        import torch._dynamo.config as dynamo_config

        for key in ("recompile_limit", "cache_size_limit"):
            if hasattr(dynamo_config, key):
                setattr(dynamo_config, key, max(getattr(dynamo_config, key), 8 * len(pooler.blocks)))
        for block in pooler.blocks:
            block.forward = torch.compile(block.forward, dynamic=True)
    info["compile"] = bool(options.get("compile"))
    return pooler, info


def extract(
    *,
    model_name: str,
    model_spec: dict,
    revision: str | None,
    dataset_name: str,
    dataset_spec: dict,
    options: dict,
    output: str | Path,
    partial_root: str | Path,
    progress: bool = True,
) -> Path:
    """Extract ``model_name`` on ``dataset_name`` into the activation store ``output`` (resumable)."""
    modality = model_spec.get("modality", "text")
    samples = load_samples(dataset_name, dataset_spec)
    if modality == "text" and samples.texts is None:
        raise ValueError(f"dataset {dataset_name!r} has no texts for text model {model_name!r} "
                         "(modality vision; text models need modality text or paired)")
    if modality == "vision" and samples.images is None:
        raise ValueError(f"dataset {dataset_name!r} has no images for vision model {model_name!r} "
                         "(modality text; vision models need modality vision or paired)")
    device = pick_device(options.get("device", "auto"))
    slot = None
    if device.type == "cuda" and options.get("gpu_slots", True):
        ids = cuda_device_ids()
        slot = acquire_gpu_slot(gpu_lock_dir(partial_root), ids, log=lambda m: print(m, file=sys.stderr, flush=True))
        device = torch.device("cuda", slot.index)
        torch.cuda.set_device(device)
        print(f"extract: GPU {slot.index} of {len(ids)} ({torch.cuda.get_device_name(device)}), lock {slot.path}",
              file=sys.stderr, flush=True)
    try:
        return _extract_on(device, slot, model_name, model_spec, revision, dataset_name, dataset_spec, options,
                           output, partial_root, progress, samples)
    finally:
        if slot is not None:
            slot.release()


def _extract_on(device, slot, model_name, model_spec, revision, dataset_name, dataset_spec, options, output,
                partial_root, progress, samples) -> Path:
    loaded = load_model(model_name, model_spec, revision)
    dtype = pick_dtype(model_spec.get("dtype", "auto"), device)
    pooler, info = prepare_model(loaded, options, device, dtype, samples, model_spec.get("prefix_tokens"))
    if loaded.modality == "vision":
        feed = ImageFeed(loaded.image_processor, samples.images, info["positions_per_image"])
        max_length = None
    else:
        max_length = model_spec.get("max_length") or dataset_spec.get("max_length", 128)
        feed = TextFeed(loaded.tokenizer, samples.texts, max_length)
    budget = options.get("token_budget", "auto")
    budget = auto_token_budget(pooler.model, device, len(options["poolings"])) if budget == "auto" else int(budget)

    width = max(info["layer_widths"])
    store_dtype = options.get("store_dtype", "float32")
    chunk = store.chunk_samples_for(width, np.dtype(store_dtype).itemsize, options.get("chunk_mb", 1), len(samples))
    unit_chunks = unit_plan(len(samples), chunk, pooler.n_layers, width, len(options["poolings"]),
                            options.get("unit_mb", 256), 1024 if loaded.modality == "vision" else 1 << 20)
    run_key = fingerprint(
        {"model": model_spec, "revision": revision, "dataset": samples.fingerprint(), "options": options,
         "max_length": max_length, "chunk": chunk, "unit_chunks": unit_chunks, "widths": info["layer_widths"]}
    )
    partial_dir = Path(partial_root) / f"{model_name}.{run_key}"
    partial_store, progress_file = partial_dir / "store.zarr", partial_dir / "progress.json"
    done = set(store.read_json(progress_file, {"chunks": []})["chunks"])
    if not done or not partial_store.exists():
        done = set()
        partial_dir.mkdir(parents=True, exist_ok=True)
        group = store.create_activation_store(
            partial_store, sample_ids=samples.ids, n_layers=pooler.n_layers, n_features=width,
            poolings=options["poolings"], chunk_samples=chunk, dtype=store_dtype, attrs={},
        )
        if len(set(info["layer_widths"])) > 1:
            store.create_array(group, "layer_width", np.asarray(info["layer_widths"], dtype=np.int32), ("layer",))
        store.write_json_atomic(progress_file, {"chunks": []})
    group = store.zarr.open_group(str(partial_store), mode="r+")

    try:
        stats = run_extraction(
            pooler=pooler, feed=feed, sample_ids=samples.ids, model_name=model_name, options=options,
            device=device, chunk=chunk, unit_chunks=unit_chunks, group=group, progress_file=progress_file,
            done_chunks=done, batch_size=model_spec.get("batch_size"), token_budget=budget, progress=progress,
            desc=f"extract {dataset_name}/{model_name}",
        )
    finally:
        pooler.remove()
    if progress:
        print(f"extract: {stats.samples} samples, {stats.tokens} tokens in {stats.seconds:.1f}s "
              f"({stats.samples / max(stats.seconds, 1e-9):.1f} samples/s, {stats.tokens / max(stats.seconds, 1e-9):.0f}"
              f" tokens/s; padding {1 - stats.tokens / max(stats.padded_tokens, 1):.1%}; token budget {budget}, "
              f"cap {stats.token_cap}, OOM back-offs {stats.oom_backoffs}; waited {stats.writer_wait_s:.2f}s for "
              "the writer)", file=sys.stderr, flush=True)

    attrs = provenance_attrs(
        model_name, model_spec, revision, loaded, dataset_name, dataset_spec, samples, options,
        max_length, pooler.model, device, run_key, info, budget, slot,
    )
    store.finalize_group(partial_store, attrs)
    store.publish(partial_store, output)
    shutil.rmtree(partial_dir, ignore_errors=True)
    return Path(output)


def provenance_attrs(model_name, model_spec, revision, loaded, dataset_name, dataset_spec, samples, options,
                     max_length, model, device, run_key, info, budget, slot) -> dict:
    """Everything that made the store (recorded in its attributes)."""
    import transformers

    tok = loaded.tokenizer
    attrs = {
        "repbench_version": __version__,
        "model": model_name,
        "model_spec": model_spec,
        "revision": revision or "",
        **{f"model_{k}": v for k, v in loaded.provenance.items()},
        "dataset": dataset_name,
        "dataset_spec": dataset_spec,
        "dataset_modality": samples.modality,
        "dataset_fingerprint": samples.fingerprint(),
        "n_samples": len(samples),
        "n_skipped": len(samples.skipped),
        "skipped_samples": list(samples.skipped),
        "extract_options": options,
        "modality": loaded.modality,
        "compute_dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "gpu_index": slot.index if slot is not None else (device.index if device.type == "cuda" else -1),
        "token_budget": budget,
        "layer_widths": info["layer_widths"],
        "feature_padding": len(set(info["layer_widths"])) > 1,
        "attention": info.get("attention", ""),
        "compile": info.get("compile", False),
        "tokenizer": type(tok).__name__ if tok is not None else "",
        "padding_side": "right" if tok is not None else "",
        "max_length": max_length if max_length is not None else 0,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "host": platform.node(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_hash": run_key,
    }
    if loaded.modality == "vision":
        attrs.update(n_prefix_tokens=info["n_prefix_tokens"], layout=info["layout"],
                     positions_per_image=info["positions_per_image"])
    return attrs
