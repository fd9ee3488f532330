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
