"""Provenance of an activation store: everything that made it, recorded in the store's attributes."""

from __future__ import annotations

import platform
from datetime import datetime, timezone

import torch

from .. import __version__


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
        # a random twin (MODEL@random) names the model it stands beside; its seed and config are model_seed and
        # model_config
        "random_twin_of": loaded.provenance.get("random_twin_of", ""),
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
