"""Neighbourhood alignment metrics (repbench.metrics.alignment.neighborhoods): dense references, planted truth,
layer × layer pass, permutations, the blocked rank count beyond kmax, and the peers' own values (resi, DADApy)."""

import json
import pathlib
import sys

import numpy as np
import pytest
from reference import (
    dense_info_imbalance,
    dense_jaccard,
    dense_rank_sim,
    dense_ranks,
    dense_second_order_cos,
    rank_sim_term,
    related_pair,
    rotation,
)

from repbench.metrics.alignment import neighborhoods as nb
from repbench.neighbors import brute_force_knn

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
RTOL = 1e-9


def cosine_graph(X, kmax=12):
    return brute_force_knn(X, kmax, "cosine")[0]


def euclidean_graph(X, kmax=12):
    return brute_force_knn(X, kmax, "euclidean")[0]


def model_layers(rng, n=90):
    """Two models of three layers each, partly related (noisy linear images of one another)."""
    A0, B0 = related_pair(rng, n=n, da=8, db=6, noise=0.3)
    layers_a = [A0, np.tanh(A0 @ rng.normal(size=(8, 7))), A0 + 0.5 * rng.normal(size=A0.shape)]
    layers_b = [B0, B0 @ rng.normal(size=(6, 5)) + 0.8 * rng.normal(size=(n, 5)), rng.normal(size=(n, 4))]
    return layers_a, layers_b


def prepared(layers, options, kmax_cos=12, kmax_euc=12):
    graphs = {"cosine": [cosine_graph(X, kmax_cos) for X in layers],
              "euclidean": [euclidean_graph(X, kmax_euc) for X in layers]}
    return nb.prepare(layers, graphs, options)


# ------------------------------------------------------------------------------ dense references, single pairs


@pytest.mark.parametrize("k", [1, 5, 12])
def test_graph_metrics_match_dense_references(k):
    rng = np.random.default_rng(0)
    A, B = related_pair(rng, n=100)
    ga, gb = cosine_graph(A), cosine_graph(B)
    assert nb.jaccard_knn(ga, gb, k) == pytest.approx(dense_jaccard(ga, gb, k), rel=RTOL)
    assert nb.rank_sim(ga, gb, k) == pytest.approx(dense_rank_sim(ga, gb, k), rel=RTOL)
    assert nb.second_order_cos(A, B, ga, gb, k) == pytest.approx(dense_second_order_cos(A, B, ga, gb, k), rel=RTOL)
    # the references are not trivially 0 or 1 here
    assert 0.05 < dense_jaccard(ga, gb, k) < 0.95


@pytest.mark.parametrize(("k", "kmax"), [(1, 12), (3, 12), (2, 2), (3, 4)])
def test_info_imbalance_matches_dense_ranks(k, kmax):
    """Small kmax forces many targets beyond B's stored graph (blocked count); both directions."""
    rng = np.random.default_rng(1)
    A, B = related_pair(rng, n=80, noise=1.5)
    ga, gb = euclidean_graph(A, kmax), euclidean_graph(B, kmax)
    ranks_b = dense_ranks(B)
    assert (ranks_b[np.arange(80)[:, None], ga[:, :k]] > kmax).mean() > 0.1  # misses do occur
    assert nb.info_imbalance(A, B, ga, gb, k) == pytest.approx(dense_info_imbalance(A, B, k), rel=RTOL)
    assert nb.info_imbalance(B, A, gb, ga, k) == pytest.approx(dense_info_imbalance(B, A, k), rel=RTOL)
    tiny = nb.info_imbalance(None, B, ga, gb, k, budget_bytes=1)  # one row per block; A is not read
    assert tiny == pytest.approx(dense_info_imbalance(A, B, k), rel=RTOL)


def test_ranks_by_count_equal_dense_and_stored_order_with_ties():
    """Integer data with duplicates and equal distances: the blocked count follows the stored graph's order
    (distance, then lower index), for every pair and for a one-row and a several-row block budget."""
    rng = np.random.default_rng(2)
    X = rng.integers(0, 3, size=(60, 3)).astype(np.float64)
    X[10] = X[11]
    n = len(X)
    full = brute_force_knn(X, n - 1, "euclidean")[0]
    rows = np.repeat(np.arange(n), n - 1)
    targets = full.ravel().astype(np.int64)
    expected = np.tile(np.arange(1, n), n)  # position in the stored graph + 1
    for budget in (1, 8 * n * 4 * 7, 2**30):
        shuffle = rng.permutation(len(rows))
        got = nb._ranks_by_count(X, rows[shuffle], targets[shuffle], budget)
        np.testing.assert_array_equal(got, expected[shuffle])
    dense = dense_ranks(X)
    np.testing.assert_array_equal(nb._ranks_by_count(X, rows, targets, 2**20), dense[rows, targets])


# ------------------------------------------------------------------------------ planted truth


def test_rotated_copy_gives_perfect_scores():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(150, 10))
    B = A @ rotation(rng, 10)
    ga, gb = cosine_graph(A), cosine_graph(B)
    ea, eb = euclidean_graph(A), euclidean_graph(B)
    np.testing.assert_array_equal(ga, gb)  # precondition: the same neighbourhoods
    np.testing.assert_array_equal(ea, eb)
    assert nb.jaccard_knn(ga, gb, 10) == 1.0
    assert nb.rank_sim(ga, gb, 10) == pytest.approx(1.0, rel=1e-12)
    assert nb.second_order_cos(A, B, ga, gb, 10) == pytest.approx(1.0, rel=1e-12)
    assert nb.info_imbalance(A, B, ea, eb, 1) == pytest.approx(2 / 150, rel=1e-12)
    assert nb.info_imbalance(A, B, ea, eb, 4) == pytest.approx((4 + 1) / 150, rel=1e-12)  # mean rank (k+1)/2


def test_independent_data_info_imbalance_near_one():
    """Δ = 2/N·mean rank; for independent A, B the rank is uniform on 1..N−1, so Δ ≈ 1 − 1/N with standard
    deviation ≈ 2/√(12N) ≈ 0.033 at N = 300 (rank variance (N²)/12 averaged over N samples); tolerance 0.15."""
    rng = np.random.default_rng(4)
    A, B = rng.normal(size=(300, 5)), rng.normal(size=(300, 5))
    ea, eb = euclidean_graph(A, 5), euclidean_graph(B, 5)
    assert abs(nb.info_imbalance(A, B, ea, eb, 1) - 1) < 0.15
    assert abs(nb.info_imbalance(B, A, eb, ea, 1) - 1) < 0.15


@pytest.mark.parametrize("r", [1, 2, 3, 5])
def test_rank_sim_one_common_neighbour_at_rank_r(r):
    """Hand-made lists: exactly one common neighbour, at rank r in both lists → vᵢ = 1/r."""
    n, k = 40, 5
    idx_a = np.array([[(i + 1 + t) % n for t in range(k)] for i in range(n)])
    idx_b = np.array([[(i + 20 + t) % n for t in range(k)] for i in range(n)])
    idx_b[:, r - 1] = idx_a[:, r - 1]
    assert nb.rank_sim(idx_a, idx_b, k) == pytest.approx(1 / r, rel=1e-12)
    assert rank_sim_term(idx_a[0], idx_b[0]) == pytest.approx(1 / r, rel=1e-12)
    assert nb.jaccard_knn(idx_a, idx_b, k) == pytest.approx(1 / (2 * k - 1), rel=1e-12)
    # no common neighbour at all → 0
    disjoint = (idx_a + 10) % n
    assert nb.rank_sim(idx_a, disjoint, k) == 0.0


# ------------------------------------------------------------------------------ layer × layer, permutations


def test_matrices_equal_single_pair_functions():
    rng = np.random.default_rng(5)
    layers_a, layers_b = model_layers(rng)
    options = {"k": 6, "info_imbalance": {"k": 2}, "budget_bytes": 4096}
    a = prepared(layers_a, options, kmax_euc=3)  # small kmax: many ranks by blocked count, all A layers at once
    b = prepared(layers_b, options, kmax_euc=3)
    out = nb.matrices(a, b, nb.METRICS, options)
    assert set(out) == set(nb.METRICS)
    for i, A in enumerate(layers_a):
        for j, B in enumerate(layers_b):
            ga, gb = a.cosine_graphs[i], b.cosine_graphs[j]
            ea, eb = a.euclidean_graphs[i], b.euclidean_graphs[j]
            expected = {
                "jaccard_knn": nb.jaccard_knn(ga, gb, 6),
                "rank_sim": nb.rank_sim(ga, gb, 6),
                "second_order_cos": dense_second_order_cos(A, B, ga, gb, 6),
                "info_imbalance_ab": dense_info_imbalance(A, B, 2),
                "info_imbalance_ba": dense_info_imbalance(B, A, 2),
            }
            assert nb.info_imbalance(A, B, ea, eb, 2) == pytest.approx(expected["info_imbalance_ab"], rel=RTOL)
            for name, value in expected.items():
                assert out[name][i, j] == pytest.approx(value, rel=RTOL), (name, i, j)
    only = nb.matrices(a, b, ("info_imbalance_ba", "rank_sim"), options)
    assert set(only) == {"info_imbalance_ba", "rank_sim"}
    np.testing.assert_array_equal(only["rank_sim"], out["rank_sim"])


class CountingLayers:
    """A lazy layer sequence that counts reads (like a store re-read on every access)."""

    def __init__(self, layers):
        self.layers, self.reads = layers, [0] * len(layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        self.reads[index] += 1
        return self.layers[index].astype(np.float32)


def test_each_layer_read_once_per_pass():
    rng = np.random.default_rng(6)
    layers_a, layers_b = model_layers(rng, n=60)
    lazy_a, lazy_b = CountingLayers(layers_a), CountingLayers(layers_b)
    options = {"k": 4, "info_imbalance": {"k": 2}}
    graphs_a = {"cosine": [cosine_graph(X) for X in layers_a], "euclidean": [euclidean_graph(X, 2) for X in layers_a]}
    graphs_b = {"cosine": [cosine_graph(X) for X in layers_b], "euclidean": [euclidean_graph(X, 2) for X in layers_b]}
    a, b = nb.prepare(lazy_a, graphs_a, options), nb.prepare(lazy_b, graphs_b, options)
    assert lazy_a.reads == [1, 1, 1] and lazy_b.reads == [1, 1, 1]
    nb.matrices(a, b, nb.METRICS, options)
    assert lazy_a.reads == [2, 2, 2] and lazy_b.reads == [2, 2, 2]
    nb.matrices(a, b, ("jaccard_knn", "rank_sim"), options)  # graph-only metrics read no features
    assert lazy_a.reads == [2, 2, 2] and lazy_b.reads == [2, 2, 2]


def test_permuted_equals_recomputing_on_permuted_data():
    rng = np.random.default_rng(7)
    layers_a, layers_b = model_layers(rng, n=70)
    options = {"k": 5, "info_imbalance": {"k": 2}, "budget_bytes": 10_000}
    a = prepared(layers_a, options, kmax_euc=3)
    b = prepared(layers_b, options, kmax_euc=3)
    perm = rng.permutation(70)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(70)
    permuted = b.permuted(perm, inverse)
    twice = permuted.permuted(perm, inverse)  # composition: new sample i = old perm[perm[i]]
    for model, order in ((permuted, perm), (twice, perm[perm])):
        recomputed = prepared([X[order] for X in layers_b], options, kmax_euc=3)
        got = nb.matrices(a, model, nb.METRICS, options)
        expected = nb.matrices(a, recomputed, nb.METRICS, options)
        for name in nb.METRICS:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, err_msg=name)
    # and the permutation does change the values (a test that could not fail otherwise)
    assert not np.allclose(nb.matrices(a, b, nb.METRICS, options)["jaccard_knn"],
                           nb.matrices(a, permuted, nb.METRICS, options)["jaccard_knn"])


def test_state_for_metrics_keeps_what_they_read():
    """A state trimmed to jaccard_knn and rank_sim drops the Euclidean graphs, own cosines and features' source
    (a permutation null then relabels the cosine graphs alone), gives the same matrices, and refuses the metrics
    that need what it dropped."""
    rng = np.random.default_rng(5)
    layers_a, layers_b = model_layers(rng, n=60)
    options = {"k": 5, "info_imbalance": {"k": 1}}
    a, b = prepared(layers_a, options), prepared(layers_b, options)
    graph_metrics = ("jaccard_knn", "rank_sim")
    ta, tb = a.for_metrics(graph_metrics), b.for_metrics(graph_metrics)
    assert ta.euclidean_graphs is ta.own_cosines is ta.layers is None
    assert a.euclidean_graphs is not None and a.own_cosines is not None  # the original is untouched
    full, trimmed = nb.matrices(a, b, graph_metrics, options), nb.matrices(ta, tb, graph_metrics, options)
    for name in graph_metrics:
        np.testing.assert_array_equal(full[name], trimmed[name], err_msg=name)
    with pytest.raises(ValueError, match="euclidean"):
        nb.matrices(ta, tb, ("info_imbalance_ab",), options)
    kept = a.for_metrics(("info_imbalance_ba",))
    assert kept.euclidean_graphs is a.euclidean_graphs and kept.layers is a.layers and kept.own_cosines is None


def test_interface_and_errors():
    assert nb.LOWER_IS_MORE_SIMILAR == {"info_imbalance_ab", "info_imbalance_ba"}
    rng = np.random.default_rng(8)
    A, B = related_pair(rng, n=40)
    a = nb.prepare(None, {"cosine": [cosine_graph(A)]}, {"k": 5})
    b = nb.prepare(None, {"cosine": [cosine_graph(B[:30], 12)]}, {"k": 5})
    with pytest.raises(ValueError, match="same samples"):
        nb.matrices(a, b, ("jaccard_knn",), {})
    with pytest.raises(ValueError, match="activations"):
        nb.matrices(a, a, ("second_order_cos",), {})
    with pytest.raises(ValueError, match="Euclidean|euclidean"):
        nb.matrices(a, a, ("info_imbalance_ab",), {})
    with pytest.raises(ValueError, match="unknown"):
        nb.matrices(a, a, ("mutual_knn",), {})
    with pytest.raises(ValueError, match="exceeds"):
        nb.prepare(None, {"euclidean": [euclidean_graph(A, 2)]}, {"info_imbalance": {"k": 3}})


# ------------------------------------------------------------------------------ peers' own values


def reference_fixture():
    sys.path.insert(0, str(FIXTURES))
    try:
        import make_neighborhood_reference as maker
    finally:
        sys.path.remove(str(FIXTURES))
    return maker, json.loads((FIXTURES / "neighborhood_reference.json").read_text())


def test_resi_nearest_neighbour_measures():
    """resi (mklabunde/resi) jaccard/rank/second-order values on generic data (no duplicates, so its
    "k+1 neighbours, drop the first" equals our self-excluded graphs). resi's second-order measure takes the
    cosine of the vectors of cosine DISTANCES 1 − cos: compared with the dense reference in that variant,
    which with ``of_distances=False`` is the formula our module is checked against above."""
    maker, reference = reference_fixture()
    for name, case in reference["resi"].items():
        A, B = maker.make_data(name)
        assert maker.checksum(A) == pytest.approx(case["checksum_a"], rel=1e-12)
        assert maker.checksum(B) == pytest.approx(case["checksum_b"], rel=1e-12)
        k = case["k"]
        ga, gb = cosine_graph(A, k), cosine_graph(B, k)
        assert nb.jaccard_knn(ga, gb, k) == pytest.approx(case["jaccard_similarity"], rel=RTOL)
        assert nb.rank_sim(ga, gb, k) == pytest.approx(case["rank_similarity"], rel=RTOL)
        assert dense_second_order_cos(A, B, ga, gb, k, of_distances=True) == pytest.approx(
            case["second_order_cosine_similarity"], rel=1e-9)
        assert nb.second_order_cos(A, B, ga, gb, k) == pytest.approx(dense_second_order_cos(A, B, ga, gb, k), rel=RTOL)


def test_dadapy_information_imbalance():
    """DADApy's ``return_information_imbalace(coordinates_B, k)`` on N ≤ 2000 (one subset = all samples)."""
    maker, reference = reference_fixture()
    for name, case in reference["dadapy"].items():
        A, B = maker.make_data(name)
        assert maker.checksum(A) == pytest.approx(case["checksum_a"], rel=1e-12)
        k = case["k"]
        ea, eb = euclidean_graph(A, 3), euclidean_graph(B, 3)
        assert nb.info_imbalance(A, B, ea, eb, k) == pytest.approx(case["imbalance_ab"], rel=RTOL)
        assert nb.info_imbalance(B, A, eb, ea, k) == pytest.approx(case["imbalance_ba"], rel=RTOL)


def test_ranks_by_count_are_exact_where_the_matrix_product_screen_is_not():
    """Far from the origin the product form ‖x‖² + ‖y‖² − 2x·y loses every digit of a small distance; the screen's
    error bound sends those points to the exact difference form, so the ranks still follow the stored graph."""
    rng = np.random.default_rng(8)
    X = 1e6 + rng.normal(size=(60, 5)) * 1e-3
    X[7] = X[3] + 1e-9  # a near-duplicate
    n = len(X)
    full = brute_force_knn(X, n - 1, "euclidean")[0]
    rows = np.repeat(np.arange(n), n - 1)
    targets = full.ravel().astype(np.int64)
    np.testing.assert_array_equal(nb._ranks_by_count(X, rows, targets, 2**20), np.tile(np.arange(1, n), n))


def test_ranks_by_count_equal_dense_ranks_on_offset_data_with_outlier_norms():
    """A large common offset (anisotropy) and rows of very different norms: the float32 screen's bound is per
    point, and the counts over every target of a row at once equal the dense ranks for any block budget."""
    rng = np.random.default_rng(21)
    n, d = 150, 24
    X = 50.0 + rng.normal(size=(n, d)) * rng.choice([0.01, 1.0, 30.0], size=(n, 1))
    X[5] = X[6]  # a duplicate: equal distances, ordered by index
    dense = dense_ranks(X)
    rows = np.repeat(np.arange(n), 12)
    targets = rng.integers(0, n - 1, size=len(rows))
    targets = np.where(targets >= rows, targets + 1, targets)  # never the row itself
    for budget in (1, 8 * n * 4 * 9, 2**30):
        np.testing.assert_array_equal(nb._ranks_by_count(X, rows, targets, budget), dense[rows, targets])


def test_cosines_at_many_block_product_equals_gathers():
    """The block cosine-matrix path (many neighbours per row) reads the same cosines as the row gathers."""
    rng = np.random.default_rng(22)
    X = rng.normal(size=(90, 7)) + 2.0
    unit = nb._unit_rows(X)
    graphs = [rng.integers(0, 90, size=(90, k)) for k in (3, 5)]
    gathered = [nb._cosines_at(unit, g) for g in graphs]
    assert sum(g.shape[1] for g in graphs) * nb._GATHER_COST_IN_FLOPS >= len(X)  # the product path is taken
    for budget in (1, 8 * 90 * 7, 2**30):
        for got, want in zip(nb._cosines_at_many(unit, graphs, budget), gathered, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    wide = rng.normal(size=(2000, 3))  # few neighbours per row: the gather path
    unit = nb._unit_rows(wide)
    graph = rng.integers(0, 2000, size=(2000, 2))
    assert graph.shape[1] * nb._GATHER_COST_IN_FLOPS < len(wide)
    np.testing.assert_array_equal(nb._cosines_at_many(unit, [graph], 2**20)[0], nb._cosines_at(unit, graph))
