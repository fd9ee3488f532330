"""repbench.preprocess: |x|-quantile clipping."""

import numpy as np
import pytest

from repbench.preprocess import preprocess


def test_preprocess_clips_at_quantile():
    X = np.random.default_rng(13).standard_cauchy(size=(100, 20))
    clipped = preprocess(X, clip_quantile=0.95)
    t = np.quantile(np.abs(X), 0.95)
    assert np.abs(clipped).max() == pytest.approx(t)
    np.testing.assert_array_equal(clipped[np.abs(X) <= t], X[np.abs(X) <= t])
    np.testing.assert_array_equal(preprocess(X), X)
    with pytest.raises(ValueError):
        preprocess(X, clip_quantile=1.5)
    with pytest.raises(ValueError, match="non-finite"):
        preprocess(np.full((3, 3), np.nan))


def test_prh_threshold_is_the_prh_codes_per_sample_quantile_mean():
    """The PRH code (``remove_outliers(feats, q, exact=False)`` on a model's (N, L, D) stack) clips at
    torch.quantile(|feats|.flatten(start_dim=1), q, dim=1).mean(): computed here with torch on the same stack."""
    import torch

    from repbench.preprocess import prh_threshold

    layers = np.random.default_rng(3).standard_t(3, size=(4, 37, 11))  # (L, N, D) as stored
    feats = torch.from_numpy(np.moveaxis(layers, 0, 1).copy())  # (N, L, D) as the PRH code holds them
    expected = float(torch.quantile(feats.abs().flatten(start_dim=1), 0.95, dim=1).mean())
    assert prh_threshold(layers, 0.95) == pytest.approx(expected, rel=1e-12)
    assert prh_threshold(layers, 0.95, block_rows=5) == pytest.approx(expected, rel=1e-12)  # blocked = whole
    one_layer = preprocess(layers[2], threshold=expected, normalize_rows=True)
    clipped = np.clip(layers[2], -expected, expected)
    np.testing.assert_allclose(one_layer, clipped / np.linalg.norm(clipped, axis=1, keepdims=True), rtol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(one_layer, axis=1), 1.0, rtol=1e-14)
    with pytest.raises(ValueError, match="zero vector"):
        preprocess(np.zeros((3, 4)), threshold=1.0, normalize_rows=True)
