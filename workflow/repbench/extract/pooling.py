"""Pooling of one layer's activations into one vector per sample, and the forward hooks that pool every layer.

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

Causal decoders run without a padding mask when right-padded (checked once per model by :func:`is_causal`: real
tokens never attend to the padding on the right), which lets SDPA use its causal flash kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class PoolingError(ValueError):
    """A pooling is undefined for a model (e.g. ``first`` without a CLS token)."""


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
        # token level: the hidden states of these batch rows at these layers are kept whole in ``captured``
        self.capture_layers: set[int] = set()
        self.capture_rows: torch.Tensor | None = None
        self.captured: dict[int, torch.Tensor] = {}
        self.handles = [self.blocks[0].register_forward_pre_hook(self._embedding_hook, with_kwargs=True)]
        hooked = self.blocks if modality == "vision" else self.blocks[:-1]
        for i, block in enumerate(hooked, start=1):
            self.handles.append(block.register_forward_hook(self._make_block_hook(i)))

    def _store(self, layer: int, hidden: torch.Tensor) -> None:
        self.shapes[layer] = tuple(hidden.shape)
        if self.capture_rows is not None and layer in self.capture_layers:
            self.captured[layer] = hidden[self.capture_rows]
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
