"""Preprocessing of one layer before neighbour graphs and alignment metrics: optional |x|-quantile clipping, and
the PRH-parity variant (one threshold per model, rows L2-normalised).

numpy only, so the neighbors stage can use it without importing the alignment metrics.
"""

from __future__ import annotations

import numpy as np


def preprocess(X, clip_quantile: float | None = None, threshold: float | None = None,
               normalize_rows: bool = False) -> np.ndarray:
    """Optional outlier clipping of one layer: x ← clip(x, −t, t), t = q-quantile of |x| over all entries.

    X (N, D) finite → float64 (N, D). ``clip_quantile=None`` (or 1) returns the values unchanged. The PRH paper
    used q = 0.95. Normalisation is not done here: it is part of the metrics whose definition has it.
    O(N·D) time (the quantile uses a partition, not a sort).

    PRH parity (``alignment.preprocess: prh``): ``threshold`` t given (from :func:`prh_threshold`, one value for
    all layers of a model) replaces the layer's own quantile, and ``normalize_rows`` divides every row by its L2
    norm after clipping (the PRH code's ``F.normalize`` before every metric); a zero row is then an error.
    """
    X = np.array(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a (samples, features) array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("activations contain non-finite values")
    if threshold is not None:
        np.clip(X, -threshold, threshold, out=X)
        return _unit_rows(X) if normalize_rows else X
    if normalize_rows:
        return _unit_rows(preprocess(X, clip_quantile))
    if clip_quantile is None or clip_quantile == 1:
        return X
    if not 0 < clip_quantile < 1:
        raise ValueError(f"clip_quantile must be in (0, 1], got {clip_quantile}")
    threshold = np.quantile(np.abs(X), clip_quantile)
    return np.clip(X, -threshold, threshold, out=X)


def _unit_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1)
    if np.any(norms == 0):
        raise ValueError("L2-normalising rows: a sample has a zero vector (after clipping)")
    X /= norms[:, None]
    return X


def prh_threshold(layers, q: float, block_rows: int = 2048) -> float:
    """The PRH code's clipping threshold (``remove_outliers(feats, q, exact=False)`` on a model's (N, L, D) stack):
    t = (1/N) Σᵢ quantileₑ(|xᵢ|), the q-quantile (linear interpolation, as ``torch.quantile``) of sample i's |x|
    over all L layers and D features, averaged over the samples.

    ``layers``: (L, N, D) array-like supporting ``layers[:, rows, :]`` (numpy, zarr, dask). Read in blocks of
    ``block_rows`` samples: O(N·L·D) time, O(block_rows·L·D) memory.
    """
    n = layers.shape[1]
    if not 0 < q <= 1:
        raise ValueError(f"clip quantile must be in (0, 1], got {q}")
    total = 0.0
    for start in range(0, n, block_rows):
        block = np.asarray(layers[:, start:start + block_rows, :], dtype=np.float64)
        if not np.isfinite(block).all():
            raise ValueError("activations contain non-finite values")
        per_sample = np.abs(np.moveaxis(block, 1, 0)).reshape(block.shape[1], -1)
        total += float(np.quantile(per_sample, q, axis=1).sum())
    return total / n
