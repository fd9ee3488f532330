"""The extraction run loop: work units, batches through the pooler, the finite check, and the writer.

Speed. Samples are processed in *work units* of consecutive store chunks (``unit_mb`` of pooled output): a
background thread prepares unit u+1 (tokenises or decodes and preprocesses images, plans length-sorted batches
under a padded-token budget, pads them into pinned memory) while the GPU runs unit u; pooled results stay on the
GPU until the unit is done, then go to pinned host memory on a side stream, and a writer thread stores them in
Zarr while the next unit computes. Nothing in the batch loop waits for the GPU. CUDA out-of-memory splits the
batch and lowers the token cap for every later batch.

Resume. Each finished unit is recorded in ``progress.json`` beside the partial store; units whose chunks are all
done are skipped, and :func:`plan_units` is deterministic, so a resumed run writes the same chunks. The resume state
also holds the token budget the run resolved (``auto``: from the free GPU memory at its start) and the cap in force
after any out-of-memory back-off (:func:`resume_state`); a resumed run on the same kind of device takes both from it
(:func:`resumed_budget`) instead of resolving them again, so its batches are those the original run would have made
(exactly so without a back-off; after one, those of the cap the original run had reached).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import store
from .devices import CPU_TOKEN_BUDGET
from .pooling import LayerPooler

FLOAT16_MAX = float(np.finfo(np.float16).max)
WRITE_CONCURRENCY = max(10, 2 * (os.cpu_count() or 1))  # chunks Zarr encodes (zstd, GIL released) at once


class NonFiniteActivationError(FloatingPointError):
    """NaN/Inf (or float16 overflow) in a model's activations; names model, layer and sample."""



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
def check_token_values(token_unit, plan, model: str, sample_ids: list[str]) -> None:
    """Refuse NaN/Inf (and, stored as float16, values beyond its range) in a unit's token vectors, naming the
    model, the layer and the sample."""
    t0, _, values = token_unit
    if values.dtype == np.float16 and plan.dtype == "float16":
        return  # cast on the device after its range was checked (TokenCollector.finish)
    limit = FLOAT16_MAX if plan.dtype == "float16" else math.inf
    bad = ~np.isfinite(values) | (np.abs(values) > limit)
    if not bad.any():
        return
    li, t, _ = np.argwhere(bad)[0]
    sample = sample_ids[int(plan.rows[int(np.searchsorted(plan.offsets, t0 + t, side="right")) - 1])]
    what = "non-finite" if not np.isfinite(values[li, t]).all() else f"beyond float16's range ({FLOAT16_MAX:g})"
    raise NonFiniteActivationError(f"model {model!r}: token vector at layer {plan.layers[li]}, sample {sample!r} is "
                                   f"{what} (extract.tokens.dtype: float32 stores large values)")


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


def resume_state(done: set[int] | list[int], token_budget: int, token_cap: int, device: torch.device) -> dict:
    """The content of ``progress.json``: the finished chunks, the token budget the run resolved, the cap after any
    out-of-memory back-off, and the kind of device (``cpu``/``cuda``) they were resolved for."""
    return {"chunks": sorted(int(c) for c in done), "token_budget": int(token_budget), "token_cap": int(token_cap),
            "device": device.type}


def resumed_budget(state: dict, device: torch.device) -> tuple[int, int] | None:
    """``(token_budget, token_cap)`` recorded by an interrupted run on the same kind of device, else ``None``
    (a fresh run, a progress file written before budgets were recorded, or a run moved between CPU and GPU: then
    the budget is resolved again)."""
    if not state.get("chunks") or state.get("token_budget") is None or state.get("device") != device.type:
        return None
    budget = int(state["token_budget"])
    return budget, int(state.get("token_cap") or budget)


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
    token_cap: int | None = None,
    progress: bool = True,
    desc: str = "extract",
    tokens=None,
) -> RunStats:
    """Pool every layer of every sample and write each finished unit into ``group`` (``None``: write nothing).

    Units whose chunks are all in ``done_chunks`` are skipped (resume); ``token_cap`` starts the adaptive cap below
    ``token_budget`` (a resumed run passes the cap its interrupted run had reached). After each written unit,
    ``progress_file`` gets :func:`resume_state` (chunks, budget, current cap, device). ``tokens`` (a
    :class:`~repbench.extract.tokens.TokenCollector`) also stores the token vectors of its samples, written with
    their unit. Returns throughput statistics.
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
    cap = [min(budget, token_cap or budget)]  # adaptive: lowered on CUDA OOM, applies to every later batch

    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="repbench-prefetch")
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="repbench-writer")
    host_buffers = _HostBuffers(pin=cuda)
    copy_stream = torch.cuda.Stream(device) if cuda else None
    pending: deque[Future] = deque()

    def prepare(c0: int, c1: int):
        lo, hi = c0 * chunk, min(n, c1 * chunk)
        return feed.prepare(lo, hi, cap[0], max_bs, batch_size, cuda, sample_ids)

    def write_unit(c0: int, c1: int, host: dict[str, torch.Tensor], flags: torch.Tensor, event, token_unit) -> None:
        if event is not None:
            event.synchronize()  # this unit's device-to-host copies have landed
        lo = c0 * chunk
        try:
            if token_unit is not None:
                check_token_values(token_unit, tokens.plan, model_name, sample_ids)
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
                    if token_unit is not None:
                        t0, t1, values = token_unit
                        group["tokens"][:, t0:t1, :] = values.astype(tokens.plan.dtype, copy=False)
                done.update(range(c0, c1))
                store.write_json_atomic(progress_file, resume_state(done, budget, cap[0], device))
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
            if tokens is not None:
                tokens.begin(lo, hi)
            while batches:
                b = batches.popleft()
                if b.padded > cap[0] and len(b.rows) > 1:
                    batches.extendleft(reversed(b.split()))
                    continue
                oom = False
                capture = tokens.rows_of(b.rows, lo) if tokens is not None else []
                pooler.capture_rows = torch.as_tensor(capture, dtype=torch.long, device=device) if capture else None
                try:
                    inputs = {key: v.to(device, non_blocking=True) for key, v in b.inputs.items()}
                    if "pixel_values" in inputs:
                        inputs["pixel_values"] = inputs["pixel_values"].to(pooler.dtype)
                    pooled = pooler(**inputs)
                    if capture:
                        tokens.take(pooler.captured, capture, b.rows, lo, b.lengths)
                except torch.cuda.OutOfMemoryError:
                    if len(b.rows) == 1:
                        raise
                    oom = True
                pooler.captured, pooler.capture_rows = {}, None
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
            token_unit = tokens.finish() if tokens is not None else None  # on the host (copied synchronously)
            pending.append(writer.submit(write_unit, c0, c1, host, flags, event, token_unit))
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
