"""Extraction: run a model over a dataset and store every layer's pooled activations.

Layer 0 is the embedding output (the input of the first block), layer ℓ the output of block ℓ, and the last
layer the model's ``last_hidden_state`` — the same tensors as ``output_hidden_states=True`` gives, but pooled
by forward hooks as each layer is produced, so no layer's ``(batch, token, feature)`` tensor outlives its block.

Poolings over the non-padding tokens (mask m ∈ {0,1}^{B×T}):
    mean[b]  = Σ_t m[b,t]·h[b,t] / Σ_t m[b,t]
    last[b]  = h[b, max{t : m[b,t] = 1}]
    first[b] = h[b, min{t : m[b,t] = 1}]

Work is split into store chunks of consecutive samples; inside a chunk, sequences are sorted by length and
batched under a padded-token budget. A background thread writes each completed chunk and records it in
``progress.json`` beside the partial store, so a killed job resumes from its last complete chunk and gives
the same store as an uninterrupted run. The finished store is moved into place atomically.
"""

from __future__ import annotations

import math
import platform
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from . import __version__, store
from .config import fingerprint
from .data import load_samples
from .models import load_model

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
FLOAT16_MAX = float(np.finfo(np.float16).max)


class NonFiniteActivationError(FloatingPointError):
    """NaN/Inf (or float16 overflow) in a model's activations; names model, layer and sample."""


# ----------------------------------------------------------------------------------------------- pooling
def pool(hidden: torch.Tensor, mask: torch.Tensor, poolings: list[str]) -> dict[str, torch.Tensor]:
    """Pool ``hidden`` (B, T, D) over the tokens where ``mask`` (B, T) is 1; float32 results (B, D)."""
    h = hidden.float()
    m = mask.to(h.dtype)
    out = {}
    positions = torch.arange(mask.shape[1], device=mask.device)
    rows = torch.arange(mask.shape[0], device=mask.device)
    for p in poolings:
        if p == "mean":
            out[p] = (h * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)
        elif p == "last":
            out[p] = h[rows, torch.where(mask.bool(), positions, -1).amax(1)]
        elif p == "first":
            out[p] = h[rows, torch.where(mask.bool(), positions, mask.shape[1]).amin(1)]
        else:
            raise ValueError(f"unknown pooling {p!r}")
    return out


def find_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's list of transformer blocks: the first ``ModuleList`` of ``num_hidden_layers`` modules."""
    n = getattr(model.config, "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(
        f"cannot find the {n} transformer blocks of {type(model).__name__} (no ModuleList of that length)"
    )


class LayerPooler:
    """Forward hooks that pool every layer into ``self.pooled[pooling][layer]`` while the model runs."""

    def __init__(self, model: torch.nn.Module, poolings: list[str]):
        self.model, self.poolings = model, poolings
        self.blocks = find_blocks(model)
        self.n_layers = len(self.blocks) + 1
        self.mask: torch.Tensor | None = None
        self.pooled: dict[str, list[torch.Tensor | None]] = {}
        self.handles = [self.blocks[0].register_forward_pre_hook(self._embedding_hook, with_kwargs=True)]
        for i, block in enumerate(self.blocks[:-1], start=1):
            self.handles.append(block.register_forward_hook(self._make_block_hook(i)))

    def _store(self, layer: int, hidden: torch.Tensor) -> None:
        for p, v in pool(hidden, self.mask, self.poolings).items():
            self.pooled[p][layer] = v

    def _embedding_hook(self, module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        self._store(0, hidden)

    def _make_block_hook(self, layer: int):
        def hook(module, args, output):
            self._store(layer, output[0] if isinstance(output, (tuple, list)) else output)

        return hook

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run one batch; returns ``{pooling: (layer, batch, feature)}`` float32 on the model's device."""
        self.mask = attention_mask
        self.pooled = {p: [None] * self.n_layers for p in self.poolings}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        self._store(self.n_layers - 1, out.last_hidden_state)
        return {p: torch.stack(v) for p, v in self.pooled.items()}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


# --------------------------------------------------------------------------------------------- batching
def plan_batches(lengths: np.ndarray, token_budget: int, max_batch_size: int, batch_size: int | None) -> list[np.ndarray]:
    """Index batches of one chunk, longest first; each batch's padded size B·max(len) ≤ ``token_budget``.

    A fixed ``batch_size`` overrides the budget. Sorting is stable, so the plan is deterministic.
    """
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        if batch_size:
            size = batch_size
        else:
            size = max(1, min(max_batch_size, token_budget // max(1, int(lengths[order[start]]))))
        batches.append(order[start : start + size])
        start += size
    return batches


def pad_batch(token_ids: list[list[int]], pad_id: int, padding_side: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(t) for t in token_ids)
    ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for i, t in enumerate(token_ids):
        sl = slice(width - len(t), width) if padding_side == "left" else slice(0, len(t))
        ids[i, sl] = torch.as_tensor(t)
        mask[i, sl] = 1
    return ids, mask


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


# ----------------------------------------------------------------------------------------------- driver
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
    from tqdm.auto import tqdm

    samples = load_samples(dataset_name, dataset_spec)
    device = pick_device(options.get("device", "auto"))
    loaded = load_model(model_name, model_spec, revision)
    model = loaded.model.to(device=device, dtype=pick_dtype(model_spec.get("dtype", "auto"), device))
    tok = loaded.tokenizer
    max_length = model_spec.get("max_length") or dataset_spec.get("max_length", 128)
    encoded = tok(samples.texts, truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]
    lengths = np.array([len(e) for e in encoded])
    if (lengths == 0).any():
        raise ValueError(f"dataset {dataset_name!r}: sample {samples.ids[int(np.argmin(lengths))]!r} has no tokens")

    pooler = LayerPooler(model, options["poolings"])
    n_features = int(model.config.hidden_size)
    store_dtype = options.get("store_dtype", "float32")
    chunk = store.chunk_samples_for(n_features, np.dtype(store_dtype).itemsize, options.get("chunk_mb", 1), len(samples))
    run_key = fingerprint(
        {"model": model_spec, "revision": revision, "dataset": samples.fingerprint(), "options": options,
         "max_length": max_length, "chunk": chunk}
    )
    partial_dir = Path(partial_root) / f"{model_name}.{run_key}"
    partial_store, progress_file = partial_dir / "store.zarr", partial_dir / "progress.json"
    done = set(store.read_json(progress_file, {"chunks": []})["chunks"])
    if not done or not partial_store.exists():
        done = set()
        partial_dir.mkdir(parents=True, exist_ok=True)
        store.create_activation_store(
            partial_store, sample_ids=samples.ids, n_layers=pooler.n_layers, n_features=n_features,
            poolings=options["poolings"], chunk_samples=chunk, dtype=store_dtype, attrs={},
        )
        store.write_json_atomic(progress_file, {"chunks": []})
    group = store.zarr.open_group(str(partial_store), mode="r+")

    n_chunks = math.ceil(len(samples) / chunk)
    todo = [c for c in range(n_chunks) if c not in done]
    bar = tqdm(total=len(samples), initial=len(samples) - sum(_chunk_len(c, chunk, len(samples)) for c in todo),
               unit="sample", desc=f"extract {dataset_name}/{model_name}", disable=not progress, mininterval=2)
    tokens_seen, t0 = 0, time.perf_counter()
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zarr-writer")
    pending: deque[Future] = deque()

    def write_chunk(c: int, lo: int, tensors: dict[str, torch.Tensor], copied) -> None:
        if copied is not None:
            copied.synchronize()  # the device-to-host copies of this chunk have landed
        arrays = {p: t.numpy().astype(store_dtype, copy=False) for p, t in tensors.items()}
        check_finite(arrays, store_dtype, model_name, samples.ids[lo:])
        for p, arr in arrays.items():
            group[p][:, lo : lo + arr.shape[1], :] = arr
        done.add(c)
        store.write_json_atomic(progress_file, {"chunks": sorted(done)})

    try:
        for c in todo:
            lo, hi = c * chunk, min(len(samples), (c + 1) * chunk)
            tensors, copied = _run_chunk(pooler, encoded[lo:hi], lengths[lo:hi], tok, options, model_spec, device)
            while len(pending) >= 2:  # bound memory: at most two chunks waiting for the writer
                pending.popleft().result()
            pending.append(writer.submit(write_chunk, c, lo, tensors, copied))
            tokens_seen += int(lengths[lo:hi].sum())
            bar.update(hi - lo)
            bar.set_postfix(tok_s=f"{tokens_seen / (time.perf_counter() - t0):.0f}", refresh=False)
        while pending:
            pending.popleft().result()
    finally:
        writer.shutdown(wait=True)
        bar.close()
        pooler.remove()

    attrs = provenance_attrs(
        model_name, model_spec, revision, loaded.provenance, dataset_name, dataset_spec, samples, options,
        tok, max_length, model, device, run_key,
    )
    store.finalize_group(partial_store, attrs)
    store.publish(partial_store, output)
    shutil.rmtree(partial_dir, ignore_errors=True)
    return Path(output)


def _chunk_len(c: int, chunk: int, n: int) -> int:
    return min(n, (c + 1) * chunk) - c * chunk


def _run_chunk(pooler, encoded, lengths, tok, options, model_spec, device):
    """Pooled activations of one chunk in sample order, ``{pooling: (layer, n, feature)}`` float32 on the host.

    On CUDA the results stay on the GPU until the chunk is done, then one asynchronous copy per pooling goes to
    pinned host memory; the returned event marks its completion (``None`` on CPU). No per-batch host sync.
    """
    n, d = len(encoded), pooler.model.config.hidden_size
    buf = {p: torch.empty((pooler.n_layers, n, d), dtype=torch.float32, device=device) for p in pooler.poolings}
    batches = plan_batches(lengths, options.get("token_budget", 8192), options.get("max_batch_size", 256),
                           model_spec.get("batch_size"))
    i = 0
    while i < len(batches):
        idx = batches[i]
        ids, mask = pad_batch([encoded[j] for j in idx], tok.pad_token_id, tok.padding_side)
        try:
            pooled = pooler(ids.to(device, non_blocking=True), mask.to(device, non_blocking=True))
        except torch.cuda.OutOfMemoryError:
            if len(idx) == 1:
                raise
            torch.cuda.empty_cache()  # back off: split this batch in two and retry
            batches[i : i + 1] = [idx[: len(idx) // 2], idx[len(idx) // 2 :]]
            continue
        index = torch.as_tensor(idx, device=device)
        for p, v in pooled.items():
            buf[p].index_copy_(1, index, v)
        i += 1
    if device.type != "cuda":
        return buf, None
    host = {p: torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for p, t in buf.items()}
    for p, t in buf.items():
        host[p].copy_(t, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()
    return host, copied


def provenance_attrs(model_name, model_spec, revision, model_prov, dataset_name, dataset_spec, samples, options,
                     tok, max_length, model, device, run_key) -> dict:
    """Everything that made the store (recorded in its attributes)."""
    import transformers

    return {
        "repbench_version": __version__,
        "model": model_name,
        "model_spec": model_spec,
        "revision": revision or "",
        **{f"model_{k}": v for k, v in model_prov.items()},
        "dataset": dataset_name,
        "dataset_spec": dataset_spec,
        "dataset_fingerprint": samples.fingerprint(),
        "n_samples": len(samples),
        "extract_options": options,
        "compute_dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "tokenizer": type(tok).__name__,
        "padding_side": tok.padding_side,
        "max_length": max_length,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "host": platform.node(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_hash": run_key,
    }
