"""repbench.metrics.alignment.summaries: summaries, permutation null, bootstrap intervals."""

import numpy as np
import pytest
from reference import graphs, null_calibration, related_pair

from repbench.metrics import alignment as al


def test_summarize_order_and_values():
    m = np.arange(12, dtype=float).reshape(3, 4) / 100
    m[2, 1] = 0.9
    s = al.summarize(m)
    assert s["max"] == 0.9 and s["argmax"] == (2, 1)  # (layer_a, layer_b)
    assert s["last"] == m[2, 3]
    # matched relative depth: j(i) = round(i·3/2) halves up → 0, 2 (1.5↑), 3
    np.testing.assert_array_equal(al.matched_layers(3, 4), [0, 2, 3])
    assert s["matched_depth"] == pytest.approx((m[0, 0] + m[1, 2] + m[2, 3]) / 3)
    np.testing.assert_array_equal(al.matched_layers(4, 2), [0, 0, 1, 1])  # 0, 1/3, 2/3, 1
    np.testing.assert_array_equal(al.matched_layers(1, 5), [0])
    t = al.summarize(m.T)
    assert t["argmax"] == (1, 2)
    nan_m = m.copy()
    nan_m[0, 0] = np.nan
    assert al.summarize(nan_m)["argmax"] == (2, 1)


def _model_layers(rng, base, n_layers, noise):
    return [base @ rng.normal(size=(base.shape[1], base.shape[1])) + noise * rng.normal(size=base.shape)
            for _ in range(n_layers)]


def test_null_calibration_aligned_vs_independent():
    rng = np.random.default_rng(9)
    n, d, k, P = 200, 8, 5, 49
    base = rng.normal(size=(n, d))
    layers_a = _model_layers(rng, base, 2, 0.3)
    layers_b = _model_layers(rng, base, 3, 0.3)
    ga = np.stack(graphs(*layers_a, kmax=k))
    gb = np.stack(graphs(*layers_b, kmax=k))
    metrics = ("mutual_knn", "cycle_knn_ab", "lcs_knn", "cka", "cknna")
    aligned = null_calibration(layers_a, layers_b, ga, gb, k, metrics, n_permutations=P, seed=1)
    for name in metrics:
        for summary in al.SUMMARIES:
            result = aligned[name][summary]
            assert result["p_value"] == pytest.approx(1 / (P + 1)), (name, summary)
            assert result["z"] > 5, (name, summary)
            assert result["n_permutations"] == P
    assert aligned["mutual_knn"]["max"]["null_mean"] == pytest.approx(k / (n - 1), abs=0.02)

    other = _model_layers(rng, rng.normal(size=(n, d)), 3, 0.3)
    go = np.stack(graphs(*other, kmax=k))
    independent = null_calibration(layers_a, other, ga, go, k, metrics, n_permutations=P, seed=1)
    for name in metrics:
        for summary in al.SUMMARIES:
            assert independent[name][summary]["p_value"] > 0.05, (name, summary)
    # same seed → same result
    again = null_calibration(layers_a, other, ga, go, k, ("mutual_knn",), n_permutations=P, seed=1)
    assert again["mutual_knn"] == independent["mutual_knn"]


def test_bootstrap_ci():
    rng = np.random.default_rng(12)
    scores = rng.uniform(size=2000)
    low, high = al.bootstrap_ci(scores, n_boot=2000, seed=3)
    assert low < scores.mean() < high
    normal_half_width = 1.96 * scores.std(ddof=1) / np.sqrt(len(scores))
    assert (high - low) / 2 == pytest.approx(normal_half_width, rel=0.15)
    assert al.bootstrap_ci(scores, n_boot=2000, seed=3) == (low, high)
    narrow = al.bootstrap_ci(scores, n_boot=2000, seed=3, level=0.5)
    assert low < narrow[0] < narrow[1] < high
    assert al.bootstrap_ci(np.full(50, 0.3), n_boot=100, seed=0) == pytest.approx((0.3, 0.3))
    A, B = related_pair(rng)
    ga, gb = graphs(A, B, kmax=5)
    for per_sample, metric in [(al.mutual_knn_per_sample, al.mutual_knn), (al.cycle_knn_per_sample, al.cycle_knn),
                               (al.lcs_knn_per_sample, al.lcs_knn)]:
        terms = per_sample(ga, gb, 5)
        assert terms.shape == (len(A),)
        assert terms.mean() == pytest.approx(metric(ga, gb, 5))
