"""Basic per-layer geometry: mean norm and anisotropy, computed with Dask from the activation store.

- mean_norm(X)  = (1/N) Σᵢ ‖xᵢ‖₂
- anisotropy(X) = (1/P) Σ_{(i,j)∈S} x̂ᵢ·x̂ⱼ over P seeded random pairs S with i ≠ j, x̂ = x/‖x‖
  (Ethayarajh 2019: the expected cosine similarity of two random representations; 0 for isotropic data).
"""

from __future__ import annotations

import numpy as np


def random_pairs(n: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` index pairs (i, j), i ≠ j, drawn uniformly with a seeded generator."""
    if n < 2:
        raise ValueError(f"anisotropy needs at least 2 samples, got {n}")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=n_pairs)
    j = (i + rng.integers(1, n, size=n_pairs)) % n  # uniform over j ≠ i
    return i, j


def mean_norm(X) -> float:
    """(1/N) Σᵢ ‖xᵢ‖ for X of shape (N, D) (NumPy or Dask)."""
    return float(((X.astype(np.float64) ** 2).sum(axis=1) ** 0.5).mean())


def anisotropy(X, n_pairs: int = 4096, seed: int = 0) -> float:
    """Mean cosine similarity of ``n_pairs`` random pairs of distinct samples of X (N, D)."""
    i, j = random_pairs(X.shape[0], n_pairs, seed)
    rows = np.unique(np.concatenate([i, j]))
    sub = np.asarray(X[rows], dtype=np.float64)
    norms = np.linalg.norm(sub, axis=1)
    if (norms == 0).any():
        raise ValueError("anisotropy is undefined for zero vectors")
    sub /= norms[:, None]
    pos = np.searchsorted(rows, np.stack([i, j]))
    return float(np.einsum("pd,pd->p", sub[pos[0]], sub[pos[1]]).mean())


def layer_metrics(X, params: dict) -> list[dict]:
    """Tidy rows ``{"metric", "value"}`` of every geometry metric of one layer (X: (N, D), NumPy or Dask);
    ``params``: the config's ``metrics.geometry`` (``anisotropy_pairs``, ``seed``)."""
    values = {
        "mean_norm": mean_norm(X),
        "anisotropy": anisotropy(X, params["anisotropy_pairs"], params["seed"]),
    }
    return [{"metric": name, "value": value} for name, value in values.items()]


METRICS = {"mean_norm": mean_norm, "anisotropy": anisotropy}
