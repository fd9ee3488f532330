"""Preprocessing of one layer before neighbour graphs and alignment metrics: optional |x|-quantile clipping.

numpy only, so the neighbors stage can use it without importing the alignment metrics.
"""

from __future__ import annotations

import numpy as np


def preprocess(X, clip_quantile: float | None = None) -> np.ndarray:
    """Optional outlier clipping of one layer: x ← clip(x, −t, t), t = q-quantile of |x| over all entries.

    X (N, D) finite → float64 (N, D). ``clip_quantile=None`` (or 1) returns the values unchanged. The PRH paper
    used q = 0.95. Normalisation is not done here: it is part of the metrics whose definition has it.
    O(N·D) time (the quantile uses a partition, not a sort).
    """
    X = np.array(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a (samples, features) array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("activations contain non-finite values")
    if clip_quantile is None or clip_quantile == 1:
        return X
    if not 0 < clip_quantile < 1:
        raise ValueError(f"clip_quantile must be in (0, 1], got {clip_quantile}")
    threshold = np.quantile(np.abs(X), clip_quantile)
    return np.clip(X, -threshold, threshold, out=X)
