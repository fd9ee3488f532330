"""Information-flow metrics of one layer (Skean et al. 2025), on the token level: prompt entropy, dataset entropy,
curvature.

Tokens: the layer's ragged token array (token, D) with ``offsets`` (S + 1): prompt s is Zₛ = rows
offsets[s]:offsets[s + 1] (T tokens). Pooled: the layer's ``mean`` pooling (N, D) of every sample.

S_α(K), the matrix-based Rényi entropy of a PSD matrix: pⱼ = λⱼ/Σλ over the positive eigenvalues of K,
S_α = ln(Σ pⱼ^α)/(1 − α), S₁ = −Σ pⱼ ln pⱼ. ZZᵀ and ZᵀZ have the same positive eigenvalues, so the smaller of the
two is decomposed (the value does not depend on the choice).

- **prompt_entropy**: Ẑ = Z centred over its tokens, rows L2-normalised; S_α(ẐẐᵀ)/ln min(T, D), averaged over the
  prompts with T ≥ 2 (``prompt_entropy_raw``: the same without the normalisation, nats). T orthonormal tokens give
  ln(T − 1) (centring removes one direction); identical tokens give 0.
- **dataset_entropy**: the same on the N pooled vectors (centred over the samples, rows L2-normalised), divided by
  ln min(N, D).
- **curvature** (Hosseini & Fedorenko 2023): with steps vₖ = z_{k+1} − zₖ of the raw tokens,
  (1/(T − 2)) Σₖ arccos(cos(vₖ, v_{k+1})) ∈ [0, π], averaged over the prompts with T ≥ 3: 0 for tokens on a
  straight line at steady direction, π for a path that reverses at every step, ≈ 2π/3 for i.i.d. Gaussian tokens
  in high dimension. (The information-flow code of 2025 takes |cos|, folding angles into [0, π/2]; the 2024 code
  takes angles between normalised tokens, not steps — see docs/metrics.md.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

METRICS = ("prompt_entropy", "prompt_entropy_raw", "dataset_entropy", "curvature")
DEFAULTS = {"alpha": 1.0, "max_prompts": 1000}


def renyi_entropy(eigenvalues: np.ndarray, alpha: float = 1.0) -> float:
    """S_α of the normalised positive eigenvalues (nats); 0 for a single positive eigenvalue."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    lam = lam[lam > lam.max() * 1e-12] if lam.size and lam.max() > 0 else lam[:0]
    if lam.size == 0:
        return 0.0
    p = lam / lam.sum()
    if alpha == 1:
        return float(-(p * np.log(p)).sum())
    return float(np.log((p ** alpha).sum()) / (1 - alpha))


def gram_eigenvalues(z: np.ndarray) -> np.ndarray:
    """Eigenvalues of ZZᵀ via the smaller of ZZᵀ and ZᵀZ (float64)."""
    z = np.asarray(z, dtype=np.float64)
    small = z @ z.T if z.shape[0] <= z.shape[1] else z.T @ z
    return np.linalg.eigvalsh(small)


def centred_unit_rows(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.mean(axis=0)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return np.divide(z, norms, out=np.zeros_like(z), where=norms > 0)


def entropy_of_points(z: np.ndarray, alpha: float = 1.0) -> float:
    """S_α of the Gram of Z centred over its rows and row-normalised (nats)."""
    return renyi_entropy(gram_eigenvalues(centred_unit_rows(z)), alpha)


def prompt_entropy(z: np.ndarray, alpha: float = 1.0, normalise: bool = True) -> float:
    """Prompt entropy of one prompt's tokens (T, D), T ≥ 2: S_α / ln min(T, D) (or nats)."""
    t, d = z.shape
    if t < 2:
        raise ValueError(f"prompt entropy needs at least 2 tokens, got {t}")
    h = entropy_of_points(z, alpha)
    return h / math.log(min(t, d)) if normalise else h


def curvature(z: np.ndarray) -> float:
    """Mean turning angle between consecutive steps of the token path (T, D), T ≥ 3, in [0, π]."""
    z = np.asarray(z, dtype=np.float64)
    if len(z) < 3:
        raise ValueError(f"curvature needs at least 3 tokens, got {len(z)}")
    v = np.diff(z, axis=0)
    norms = np.linalg.norm(v, axis=1)
    if (norms == 0).any():
        raise ValueError("two consecutive tokens are identical: a zero step has no direction")
    cos = np.einsum("kd,kd->k", v[:-1], v[1:]) / (norms[:-1] * norms[1:])
    return float(np.arccos(np.clip(cos, -1.0, 1.0)).mean())


def _entropies_batched(z: np.ndarray, alpha: float) -> np.ndarray:
    """S_α (nats) of each prompt of a stack Z (G, T, D) of equal-length prompts, in float64 with torch.

    One batched product gives the raw Grams ZZᵀ (G, T, T); centring the tokens is H(ZZᵀ)H (H = I − 11ᵀ/T) and
    normalising them divides by the square roots of the diagonal, both in Gram space (T × T, never a second pass
    over the D features); one batched eigendecomposition follows. Tokens that centre to zero (identical tokens)
    drop out, as in :func:`centred_unit_rows`.
    """
    import torch

    zt = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float64))
    gram = torch.bmm(zt, zt.transpose(1, 2))
    gram = gram - gram.mean(dim=2, keepdim=True) - gram.mean(dim=1, keepdim=True) + gram.mean(dim=(1, 2), keepdim=True)
    diag = torch.diagonal(gram, dim1=1, dim2=2)
    scale = diag.amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    alive = diag > scale * 1e-24  # a token at the centre (‖x − x̄‖ = 0 up to rounding) has no direction
    root = torch.where(alive, diag.clamp_min(0).sqrt(), torch.ones_like(diag))
    gram = gram / (root[:, :, None] * root[:, None, :]) * (alive[:, :, None] & alive[:, None, :])
    lam = torch.linalg.eigvalsh(gram).numpy()
    keep = (lam > np.maximum(lam.max(axis=1, keepdims=True), 0) * 1e-12) & (lam > 0)
    lam = np.where(keep, lam, 0.0)
    total = lam.sum(axis=1, keepdims=True)
    p = np.divide(lam, total, out=np.zeros_like(lam), where=total > 0)
    if alpha == 1:
        return -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
    sums = (np.where(p > 0, p, 0.0) ** alpha).sum(axis=1)
    return np.where(total[:, 0] > 0, np.log(np.where(sums > 0, sums, 1.0)) / (1 - alpha), 0.0)


def _curvatures_batched(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(curvature, valid) of each prompt of a stack Z (G, T, D), T ≥ 3; invalid where a step is zero."""
    v = np.diff(z, axis=1)
    norms = np.linalg.norm(v, axis=2)
    valid = (norms > 0).all(axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    cos = np.einsum("gkd,gkd->gk", v[:, :-1], v[:, 1:]) / (safe[:, :-1] * safe[:, 1:])
    return np.arccos(np.clip(cos, -1.0, 1.0)).mean(axis=1), valid


def _by_length(tokens: np.ndarray, offsets: np.ndarray, shortest: int):
    """``(members, stack (G, T, D))`` for every prompt length T ≥ ``shortest``: the prompts of that length."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    for t in np.unique(lengths):
        if t >= shortest:
            members = np.flatnonzero(lengths == t)
            yield members, tokens[(offsets[members][:, None] + np.arange(t)[None, :])]


def prompt_entropies(tokens: np.ndarray, offsets: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """S_α (nats) of every prompt (NaN when T < 2); prompts of equal length are decomposed in one batch."""
    tokens = np.asarray(tokens, dtype=np.float64)
    out = np.full(len(offsets) - 1, np.nan)
    for members, stack in _by_length(tokens, offsets, 2):
        if stack.shape[1] <= stack.shape[2]:
            out[members] = _entropies_batched(stack, alpha)
        else:  # long prompts (T > D): the D × D side is the smaller eigenproblem
            out[members] = [entropy_of_points(z, alpha) for z in stack]
    return out


def prompt_curvatures(tokens: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The curvature of every prompt (NaN when T < 3 or a step is zero), batched per length."""
    tokens = np.asarray(tokens, dtype=np.float64)
    out = np.full(len(offsets) - 1, np.nan)
    for members, stack in _by_length(tokens, offsets, 3):
        values, valid = _curvatures_batched(stack)
        out[members] = np.where(valid, values, np.nan)
    return out


def prompt_values(tokens: np.ndarray, offsets: np.ndarray, alpha: float = 1.0) -> dict[str, np.ndarray]:
    """Per prompt: ``entropy`` (nats; NaN when T < 2), ``normaliser`` ln min(T, D), ``curvature`` (NaN when T < 3
    or a step is zero)."""
    lengths = np.diff(np.asarray(offsets, dtype=np.int64))
    normaliser = np.log(np.minimum(np.maximum(lengths, 2), np.shape(tokens)[1]).astype(np.float64))
    return {"entropy": prompt_entropies(tokens, offsets, alpha), "normaliser": normaliser,
            "curvature": prompt_curvatures(tokens, offsets)}


def layer_metrics(tokens: np.ndarray, offsets: np.ndarray, pooled: np.ndarray | None,
                  params: Mapping | None = None) -> list[dict]:
    """Rows ``{metric, value, n_prompts, reason}`` of one layer: tokens (token, D), offsets (S + 1), pooled (N, D)."""
    p = dict(DEFAULTS, **(params or {}))
    alpha = float(p["alpha"])
    offsets = np.asarray(offsets, dtype=np.int64)[: int(p["max_prompts"]) + 1]
    per = prompt_values(tokens, offsets, alpha)
    has_entropy = ~np.isnan(per["entropy"])
    has_curve = ~np.isnan(per["curvature"])
    rows = []

    def row(metric, values, what):
        if len(values):
            rows.append({"metric": metric, "value": float(np.mean(values)), "n_prompts": len(values), "reason": ""})
        else:
            rows.append({"metric": metric, "value": float("nan"), "n_prompts": 0, "reason": what})

    row("prompt_entropy", per["entropy"][has_entropy] / per["normaliser"][has_entropy],
        "no prompt with at least 2 tokens")
    row("prompt_entropy_raw", per["entropy"][has_entropy], "no prompt with at least 2 tokens")
    if pooled is None or len(pooled) < 2:
        why = "the store has no mean pooling (extract.poolings)" if pooled is None else "fewer than 2 samples"
        rows.append({"metric": "dataset_entropy", "value": float("nan"), "n_prompts": 0, "reason": why})
    else:
        n, d = pooled.shape
        rows.append({"metric": "dataset_entropy", "value": entropy_of_points(pooled, alpha) / math.log(min(n, d)),
                     "n_prompts": n, "reason": ""})
    row("curvature", per["curvature"][has_curve], "no prompt with at least 3 tokens and distinct consecutive tokens")
    return rows
