"""Vision models: image processors (hub, local, package or built offline from a config) and token layout.

A vision model is any ``AutoModel`` that takes ``pixel_values`` — ViT, DINOv2, the CLIP/SigLIP vision tower
(taken from a dual encoder's ``vision_model``), ConvNeXt, … Its hidden states are either token sequences
``(batch, token, feature)`` — a few prefix tokens (CLS, registers, distillation) followed by patch tokens — or
spatial feature maps ``(batch, channel, height, width)`` (convolutional stages).
"""

from __future__ import annotations

import torch

from . import ModelLoadError


def processor_class(model_type: str, backend: str | None = None):
    """The image-processor class transformers maps ``model_type`` to (``*_vision_model`` → its parent type).

    ``backend``: ``torchvision`` or ``pil``; default: torchvision when installed, else pil (as transformers does).
    """
    from transformers.models.auto.image_processing_auto import (
        IMAGE_PROCESSOR_MAPPING_NAMES,
        get_image_processor_class_from_name,
    )
    from transformers.utils import is_torchvision_available

    candidates = [model_type]
    for suffix in ("_vision_model", "_vision", "_with_registers"):
        if model_type.endswith(suffix):
            candidates.append(model_type[: -len(suffix)])
    for mt in candidates:
        mapping = IMAGE_PROCESSOR_MAPPING_NAMES.get(mt)
        if not mapping:
            continue
        if isinstance(mapping, str):
            return get_image_processor_class_from_name(mapping)
        prefer = backend or ("torchvision" if is_torchvision_available() else "pil")
        order = [prefer] + [b for b in mapping if b != prefer]
        for b in order:
            if not mapping.get(b) or (b == "torchvision" and not is_torchvision_available()):
                continue
            cls = get_image_processor_class_from_name(mapping[b])
            if cls is not None and not getattr(cls, "is_dummy", False):
                return cls
    raise ModelLoadError(
        f"no image processor is known for model type {model_type!r}; give `image_processor` as a hub id, "
        "a directory or 'package:NAME'"
    )


def build_processor(model_type: str, options: dict, image_size: int | None):
    """An image processor of ``model_type``'s class with ``options`` as keyword arguments.

    Without ``size`` in ``options``, a model config's ``image_size`` sets the processor's output size (in the
    processor's own size format), so a random-init model gets inputs of the size it was built for.
    """
    options = dict(options)
    backend = options.pop("backend", None)
    cls = processor_class(model_type, backend)
    try:
        proc = cls(**options)
        if image_size and "size" not in options:
            kw = {}
            size = proc.size
            get = (lambda k: size.get(k)) if isinstance(size, dict) else (lambda k: getattr(size, k, None))
            kw["size"] = ({"height": image_size, "width": image_size} if get("height") is not None
                          else {"shortest_edge": image_size})
            if getattr(proc, "crop_size", None) is not None and "crop_size" not in options:
                kw["crop_size"] = {"height": image_size, "width": image_size}
            proc = cls(**{**options, **kw})
    except Exception as exc:
        raise ModelLoadError(f"cannot build image processor {cls.__name__} with {options}: {exc}") from exc
    return proc


def vision_tower(model: torch.nn.Module) -> torch.nn.Module:
    """The image encoder of a dual encoder (CLIP, SigLIP, …: its ``vision_model``), else the model itself."""
    sub = getattr(model, "vision_model", None)
    if isinstance(sub, torch.nn.Module) and hasattr(model, "text_model"):
        if not hasattr(sub, "config"):
            sub.config = model.config.vision_config
        return sub
    return model


def prefix_tokens(model: torch.nn.Module) -> int:
    """Tokens before the patch tokens: a CLS token, register tokens, a distillation token (0 for none).

    Read off the embedding module's parameters (``cls_token``/``class_embedding``, ``register_tokens``,
    ``distillation_token``); a model key ``prefix_tokens`` overrides it.
    """
    n = 0
    for name, module in model.named_modules():
        if not name.endswith("embeddings"):
            continue
        if hasattr(module, "cls_token") or hasattr(module, "class_embedding"):
            n = 1
            reg = getattr(module, "register_tokens", None)
            if isinstance(reg, torch.Tensor) and reg.ndim >= 2:
                n += int(reg.shape[-2])
            if hasattr(module, "distillation_token"):
                n += 1
            return n
    return n
