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
    """S_α (nats) of each prompt of a stack Z (G, T, D) of equal-length prompts: one batched eigendecomposition."""
    z = z - z.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(z, axis=2, keepdims=True)
    z = np.divide(z, norms, out=np.zeros_like(z), where=norms > 0)
    gram = z @ z.transpose(0, 2, 1) if z.shape[1] <= z.shape[2] else z.transpose(0, 2, 1) @ z
    lam = np.linalg.eigvalsh(gram)
    keep = lam > np.maximum(lam.max(axis=1, keepdims=True), 0) * 1e-12
    keep &= lam > 0
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


def prompt_values(tokens: np.ndarray, offsets: np.ndarray, alpha: float = 1.0) -> dict[str, np.ndarray]:
    """Per prompt: ``entropy`` (nats; NaN when T < 2), ``normaliser`` ln min(T, D), ``curvature`` (NaN when T < 3
    or a step is zero). Prompts of equal length are stacked and decomposed together (one LAPACK call per length)."""
    tokens = np.asarray(tokens, dtype=np.float64)
    lengths = np.diff(np.asarray(offsets, dtype=np.int64))
    d = tokens.shape[1]
    entropy = np.full(len(lengths), np.nan)
    curve = np.full(len(lengths), np.nan)
    for t in np.unique(lengths):
        members = np.flatnonzero(lengths == t)
        if t < 2:
            continue
        stack = tokens[(offsets[members][:, None] + np.arange(t)[None, :])]  # (G, T, D)
        entropy[members] = _entropies_batched(stack, alpha)
        if t >= 3:
            values, valid = _curvatures_batched(stack)
            curve[members] = np.where(valid, values, np.nan)
    normaliser = np.log(np.minimum(np.maximum(lengths, 2), d).astype(np.float64))
    return {"entropy": entropy, "normaliser": normaliser, "curvature": curve}


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
