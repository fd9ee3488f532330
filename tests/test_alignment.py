"""Alignment across layers (repbench.metrics.alignment): layer × layer matrices against single calls and dense
formulas, the registry, the truth checks of docs/metrics.md, prepared and permuted layers, bounded memory."""

import numpy as np
import pytest
from reference import (
    dense_cka,
    dense_cknna,
    dense_cycle,
    dense_unbiased_cka,
    graphs,
    null_calibration,
    related_pair,
    rotation,
)

from repbench.metrics import alignment as al
from repbench.neighbors import knn


def test_pair_matrices_equal_single_calls_and_orientation():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(70, 6))
    layers_a = [base @ rng.normal(size=(6, 6)) + s * rng.normal(size=(70, 6)) for s in (0.1, 0.5, 1.0)]
    layers_b = [base @ rng.normal(size=(6, 5)) + s * rng.normal(size=(70, 5)) for s in (0.2, 2.0)]
    ga, gb = np.stack(graphs(*layers_a, kmax=8)), np.stack(graphs(*layers_b, kmax=8))
    ea = np.stack(graphs(*layers_a, kmax=8, space="euclidean"))
    eb = np.stack(graphs(*layers_b, kmax=8, space="euclidean"))
    k = 6
    mats = al.pair_matrices(layers_a, layers_b, {"cosine": ga, "euclidean": ea}, {"cosine": gb, "euclidean": eb}, k,
                            al.PAIR_METRICS)
    assert set(mats) == set(al.PAIR_METRICS)
    for i in range(3):
        for j in range(2):
            A, B = layers_a[i], layers_b[j]
            expected = {
                "mutual_knn": al.mutual_knn(ga[i], gb[j], k),
                "cycle_knn_ab": dense_cycle(ga[i], gb[j], k),
                "cycle_knn_ba": dense_cycle(gb[j], ga[i], k),
                "lcs_knn": al.lcs_knn(ga[i], gb[j], k),
                "cka": dense_cka(A, B),
                "unbiased_cka": dense_unbiased_cka(A, B),
                "cknna": dense_cknna(A, B, ga[i], gb[j], k),
                "svcca": al.svcca(A, B),
            }
            for name, value in expected.items():
                assert mats[name].shape == (3, 2)
                assert mats[name][i, j] == pytest.approx(value, abs=1e-6), name
            for name, spec in al.METRICS.items():  # group metrics: their euclidean graphs recomputed (kmax 32)
                assert spec(A, B, ga[i], gb[j], k) == pytest.approx(mats[name][i, j], abs=1e-9), name
    knn_only = al.pair_matrices(None, None, ga, gb, k, al.KNN_METRICS)
    for name in al.KNN_METRICS:
        np.testing.assert_array_equal(knn_only[name], mats[name])


# ------------------------------------------------------------------------------------------ truth checks


def test_identity_gives_one_for_every_metric():
    A, _ = related_pair(np.random.default_rng(5), n=150)
    (g,) = graphs(A, kmax=10)
    for name in ("mutual_knn", "lcs_knn", "cka", "unbiased_cka", "cknna", "svcca"):
        assert al.METRICS[name](A, A, g, g, 10) == pytest.approx(1.0, abs=1e-9), name
    # cycle_knn(A, A) = fraction of samples with a reciprocal neighbour: 1 only when nobody is an anti-hub
    assert al.cycle_knn(g, g, 10) == pytest.approx(dense_cycle(g, g, 10))
    assert 0.9 < al.cycle_knn(g, g, 10) <= 1.0


def test_orthogonal_rotation_gives_mutual_knn_and_cka_one():
    rng = np.random.default_rng(6)
    A = rng.normal(size=(300, 20))
    B = A @ rotation(rng, 20)
    ga, gb = (knn(X, 10, "cosine", device="cpu")[0] for X in (A, B))
    assert al.mutual_knn(ga, gb, 10) == 1.0
    assert al.lcs_knn(ga, gb, 10) == 1.0
    assert al.linear_cka(A, B) == pytest.approx(1.0, abs=1e-10)
    assert al.unbiased_cka(A, B) == pytest.approx(1.0, abs=1e-10)
    assert al.svcca(A, B) == pytest.approx(1.0, abs=1e-10)


def test_independent_gaussians_hit_chance_level():
    """mutual_knn: by exchangeability E = k/(N−1) exactly. Each per-sample term |∩|/k has variance
    ≲ E|∩|/k² = 1/(N−1) (a near-Poisson count with mean k²/(N−1)), so the mean over N samples has sd ≈ 1/N if
    the terms were independent; we allow a factor 2 for their dependence and 4 sd: tolerance 8/N.
    unbiased CKA: for independent isotropic data its numerator has sd ≈ √(2·Dₐ·D_b)/N relative to the
    denominator √(Dₐ²·D_b²)·(1/√(DₐD_b)), i.e. sd ≈ √2/N; tolerance 5·√2/N."""
    rng = np.random.default_rng(8)
    n, k = 1000, 10
    A, B = rng.normal(size=(n, 16)), rng.normal(size=(n, 12))
    ga, gb = (knn(X, k, "cosine", device="cpu")[0] for X in (A, B))
    assert al.mutual_knn(ga, gb, k) == pytest.approx(k / (n - 1), abs=8 / n)
    assert abs(al.unbiased_cka(A, B)) < 5 * np.sqrt(2) / n
    assert al.linear_cka(A, B) > 5 * np.sqrt(2) / n  # the biased estimator is visibly above 0


@pytest.mark.parametrize("space", ["cosine", "euclidean"])
def test_permutation_relabelling_equals_recomputed_knn(space):
    rng = np.random.default_rng(10)
    B = rng.normal(size=(150, 7))
    idx_b = knn(B, 9, space, device="cpu")[0]
    perm = rng.permutation(150)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(150)
    relabelled = inverse[idx_b[perm]]
    np.testing.assert_array_equal(relabelled, knn(B[perm], 9, space, device="cpu")[0])
    prepared = al.prepare_model([B], [idx_b], 9, ("mutual_knn", "cknna")).layers[0].permuted(perm, inverse)
    np.testing.assert_array_equal(prepared.graph, relabelled)
    fresh = al.prepare_model([B[perm]], [relabelled], 9, ("cknna",)).layers[0]
    np.testing.assert_allclose(prepared.cknna.kernel_at_graph, fresh.cknna.kernel_at_graph, rtol=1e-12)


def test_permuted_prepared_layers_equal_recomputed_metrics():
    rng = np.random.default_rng(11)
    A, B = related_pair(rng, n=90, da=8, db=6)
    ga, gb = graphs(A, B, kmax=6)
    ea, eb = graphs(A, B, kmax=6, space="euclidean")
    perm = rng.permutation(90)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(90)
    prep_a = al.prepare_model([A], {"cosine": [ga], "euclidean": [ea]}, 6, al.PAIR_METRICS)
    prep_b = al.prepare_model([B], {"cosine": [gb], "euclidean": [eb]}, 6, al.PAIR_METRICS)
    via_relabel = al.pair_matrices_prepared(prep_a, prep_b.permuted(perm, inverse), al.PAIR_METRICS)
    direct = al.pair_matrices([A], [B[perm]], {"cosine": [ga], "euclidean": [ea]},
                              {"cosine": [inverse[gb[perm]]], "euclidean": [inverse[eb[perm]]]}, 6, al.PAIR_METRICS)
    for name in al.PAIR_METRICS:
        np.testing.assert_allclose(via_relabel[name], direct[name], atol=1e-10, err_msg=name)


def test_input_errors():
    g = np.zeros((10, 3), dtype=np.int32)
    with pytest.raises(ValueError, match="k=4"):
        al.mutual_knn(g, g, 4)
    with pytest.raises(ValueError, match="shape"):
        al.mutual_knn(g, np.zeros((9, 3), dtype=np.int32), 2)
    with pytest.raises(ValueError, match="unknown alignment metric"):
        al.pair_matrices(None, None, [g], [g], 2, ["mutual"])
    with pytest.raises(ValueError, match="need the layer activations"):
        al.pair_matrices(None, None, [g], [g], 2, ["cka"])
    with pytest.raises(ValueError, match="same samples"):
        al.linear_cka(np.ones((10, 2)) + np.eye(10, 2), np.ones((9, 2)) + np.eye(9, 2))
    with pytest.raises(ValueError, match="N ≥ 4"):
        al.unbiased_cka(np.ones((3, 2)), np.ones((3, 2)))


class CountingLayers:
    """A lazy layer sequence (like the stage's store reader) that counts how often each layer is read."""

    def __init__(self, layers):
        self.layers, self.reads = layers, [0] * len(layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        self.reads[i] += 1
        return self.layers[i].astype(np.float32)


def test_feature_budget_bounds_what_is_held_without_changing_any_number():
    """With a budget below one layer's factor, the dense metrics re-read layers group by group (bounded memory
    for large N) and give bit-identical matrices and nulls to the all-in-memory path."""
    rng = np.random.default_rng(15)
    base = rng.normal(size=(80, 6))
    layers_a = [base @ rng.normal(size=(6, 9)) + s * rng.normal(size=(80, 9)) for s in (0.1, 0.7, 2.0)]
    layers_b = [base @ rng.normal(size=(6, 7)) + s * rng.normal(size=(80, 7)) for s in (0.3, 1.5)]
    ga, gb = np.stack(graphs(*layers_a, kmax=6)), np.stack(graphs(*layers_b, kmax=6))
    lazy_a, lazy_b = CountingLayers(layers_a), CountingLayers(layers_b)
    roomy = al.pair_matrices([x.astype(np.float32) for x in layers_a], [x.astype(np.float32) for x in layers_b],
                             ga, gb, 5, al.CORE_METRICS)
    tight = al.pair_matrices(lazy_a, lazy_b, ga, gb, 5, al.CORE_METRICS, budget_bytes=1)
    for name in al.CORE_METRICS:
        np.testing.assert_array_equal(tight[name], roomy[name], err_msg=name)
    assert lazy_a.reads == [2, 2, 2]  # preparation + its group of one
    assert lazy_b.reads == [4, 4]     # preparation + once per group of A
    null_roomy = null_calibration(layers_a, layers_b, ga, gb, 5, ("mutual_knn", "cka", "svcca"), 3, seed=2)
    null_tight = null_calibration(layers_a, layers_b, ga, gb, 5, ("mutual_knn", "cka", "svcca"), 3, seed=2,
                                     budget_bytes=1)
    assert null_tight == null_roomy
