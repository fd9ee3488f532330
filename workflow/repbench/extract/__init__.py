"""Extraction: run a model over a dataset and store every layer's pooled activations.

Layer 0 is the embedding output (the input of the first block), layer ℓ the output of block ℓ, pooled by forward
hooks as each layer is produced (poolings and hooks: :mod:`.pooling`). Inputs come in length-sorted batches under
a padded-token budget (:mod:`.feeds`); the run loop overlaps input preparation, compute and writing (:mod:`.loop`);
device, dtype and GPU slot are chosen by :mod:`.devices`; the store's attributes come from :mod:`.provenance`.
``compile: true`` compiles each block with ``torch.compile``.

This module holds the entry point :func:`extract` (one model on one dataset into one store) and
:func:`prepare_model`, and re-exports the names other code imports from ``repbench.extract``.

Resume. Each finished unit is recorded in ``progress.json`` beside the partial store (``results/.partial/``), so
a killed job redoes only unfinished units and gives the same store as an uninterrupted run; the finished store is
moved into place atomically. The resume state also records the resolved token budget (``auto`` on a GPU depends on
the memory free when the job starts) and the cap after any out-of-memory back-off: a resumed job on the same kind
of device batches with those, not with a budget resolved again, so it makes the original run's batches.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from .. import store
from ..config import fingerprint
from ..data import Samples, load_samples
from ..models import load_model
from .devices import (
    CPU_TOKEN_BUDGET,
    DTYPES,
    GPU_TOKEN_BUDGET_MAX,
    GpuSlot,
    acquire_gpu_slot,
    auto_token_budget,
    cuda_device_ids,
    gpu_lock_dir,
    pick_device,
    pick_dtype,
)
from .feeds import Batch, ImageFeed, TextFeed, pad_batch, plan_batches
from .loop import (
    FLOAT16_MAX,
    WRITE_CONCURRENCY,
    NonFiniteActivationError,
    RunStats,
    check_finite,
    plan_units,
    resume_state,
    resumed_budget,
    run_extraction,
    unit_plan,
)
from .pooling import LayerPooler, PoolingError, find_blocks, is_causal, pool, pool_vision
from .provenance import provenance_attrs

__all__ = [
    "CPU_TOKEN_BUDGET", "DTYPES", "FLOAT16_MAX", "GPU_TOKEN_BUDGET_MAX", "WRITE_CONCURRENCY",
    "Batch", "GpuSlot", "ImageFeed", "LayerPooler", "NonFiniteActivationError", "PoolingError", "RunStats",
    "TextFeed", "acquire_gpu_slot", "auto_token_budget", "check_finite", "cuda_device_ids", "extract",
    "find_blocks", "gpu_lock_dir", "is_causal", "pad_batch", "pick_device", "pick_dtype", "plan_batches",
    "plan_units", "pool", "pool_vision", "prepare_model", "provenance_attrs", "run_extraction", "unit_plan",
]


def prepare_model(loaded, options: dict, device: torch.device, dtype: torch.dtype, samples: Samples | None = None,
                  prefix_override: int | None = None):
    """Move the model to ``device``/``dtype``, hook it, and build its input feed; returns ``(pooler, info)``.

    ``info`` holds what provenance records: layer widths, prefix tokens, attention path, compile.
    """
    model = loaded.model.to(device=device, dtype=dtype)
    poolings = options["poolings"]
    info: dict = {"modality": loaded.modality}
    if loaded.modality == "vision":
        from ..models.vision import prefix_tokens

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

    width = max(info["layer_widths"])
    store_dtype = options.get("store_dtype", "float32")
    chunk = store.chunk_samples_for(width, np.dtype(store_dtype).itemsize, options.get("chunk_mb", 1), len(samples))
    unit_chunks = unit_plan(len(samples), chunk, pooler.n_layers, width, len(options["poolings"]),
                            options.get("unit_mb", 256), 1024 if loaded.modality == "vision" else 1 << 20)
    run_key = fingerprint(
        {"model": model_spec, "revision": revision, "dataset": samples.fingerprint(), "options": options,
         "max_length": max_length, "chunk": chunk, "unit_chunks": unit_chunks, "widths": info["layer_widths"]}
    )
    token_options = options.get("tokens") or {}
    token_plan = None
    if token_options.get("enabled"):
        from . import tokens as token_level

        if loaded.modality == "vision":
            token_plan = token_level.vision_plan(token_options, len(samples), info["positions_per_image"],
                                                 info["n_prefix_tokens"], pooler.n_layers, info["layout"])
        else:
            token_plan = token_level.text_plan(token_options, loaded.tokenizer, samples.texts, max_length,
                                               pooler.n_layers)
        token_level.check_size(token_plan, width, token_options["max_gb"], model_name, dataset_name)
        pooler.capture_layers = set(token_plan.layers)
    partial_dir = Path(partial_root) / f"{model_name}.{run_key}"
    partial_store, progress_file = partial_dir / "store.zarr", partial_dir / "progress.json"
    state = store.read_json(progress_file, {"chunks": []})
    done = set(state["chunks"])
    recorded = resumed_budget(state, device) if done and partial_store.exists() else None
    if recorded is not None:  # batch as the interrupted run did (its budget and the cap it had backed off to)
        budget, cap = recorded
    else:
        budget = options.get("token_budget", "auto")
        budget = auto_token_budget(pooler.model, device, len(options["poolings"])) if budget == "auto" else int(budget)
        cap = budget
    if not done or not partial_store.exists():
        done = set()
        partial_dir.mkdir(parents=True, exist_ok=True)
        group = store.create_activation_store(
            partial_store, sample_ids=samples.ids, n_layers=pooler.n_layers, n_features=width,
            poolings=options["poolings"], chunk_samples=chunk, dtype=store_dtype, attrs={},
            sample_columns=None if samples.view_of is None else {"view_of": samples.view_of, "view": samples.view},
        )
        if len(set(info["layer_widths"])) > 1:
            store.create_array(group, "layer_width", np.asarray(info["layer_widths"], dtype=np.int32), ("layer",))
        if token_plan is not None:
            token_level.create_arrays(group, token_plan, samples.ids, width)
        store.write_json_atomic(progress_file, resume_state(done, budget, cap, device))
    group = store.zarr.open_group(str(partial_store), mode="r+")

    try:
        stats = run_extraction(
            pooler=pooler, feed=feed, sample_ids=samples.ids, model_name=model_name, options=options,
            device=device, chunk=chunk, unit_chunks=unit_chunks, group=group, progress_file=progress_file,
            done_chunks=done, batch_size=model_spec.get("batch_size"), token_budget=budget, token_cap=cap,
            progress=progress,
            desc=f"extract {dataset_name}/{model_name}",
            tokens=None if token_plan is None else token_level.TokenCollector(token_plan, width, device),
        )
    finally:
        pooler.remove()
    if progress:
        print(f"extract: {stats.samples} samples, {stats.tokens} tokens in {stats.seconds:.1f}s "
              f"({stats.samples / max(stats.seconds, 1e-9):.1f} samples/s, {stats.tokens / max(stats.seconds, 1e-9):.0f}"
              f" tokens/s; padding {1 - stats.tokens / max(stats.padded_tokens, 1):.1%}; token budget {budget}"
              f"{' (recorded by the interrupted run)' if recorded is not None else ''}, "
              f"cap {stats.token_cap}, OOM back-offs {stats.oom_backoffs}; waited {stats.writer_wait_s:.2f}s for "
              "the writer)", file=sys.stderr, flush=True)

    attrs = provenance_attrs(
        model_name, model_spec, revision, loaded, dataset_name, dataset_spec, samples, options,
        max_length, pooler.model, device, run_key, info, budget, slot,
    )
    if token_plan is not None:
        attrs.update(token_word_ids=token_plan.word_ids, n_token_samples=len(token_plan.rows),
                     n_tokens=token_plan.n_tokens)
    store.finalize_group(partial_store, attrs)
    store.publish(partial_store, output)
    shutil.rmtree(partial_dir, ignore_errors=True)
    return Path(output)
