"""Fast paths of the alignment pair job against the direct definitions they replace: the LCS bit masks, the
rank count sharing its matrix product with second_order_cos, and the core pass reusing the dense group's
eigendecomposition."""

import numpy as np
import pytest
import torch
from reference import dense_info_imbalance, dense_ranks, dense_second_order_cos, related_pair

from repbench.metrics import alignment as al
from repbench.metrics.alignment import knn as al_knn
from repbench.metrics.alignment import neighborhoods as nb
from repbench.neighbors import brute_force_knn


# ------------------------------------------------------------------------------ LCS as one bit mask per row


def random_positions(rng, n, k):
    """(n, k) slots of A's neighbours in B's list: distinct values < k where present, −1 elsewhere."""
    positions = np.full((n, k), -1)
    for row in positions:
        m = rng.integers(0, k + 1)
        row[rng.choice(k, m, replace=False)] = rng.choice(k, m, replace=False)
    return positions


@pytest.mark.parametrize("k", [1, 2, 7, 10, 33, 62, 63, 90])
def test_lcs_bit_masks_equal_patience_piles(k):
    positions = random_positions(np.random.default_rng(k), 600, k)
    np.testing.assert_array_equal(al_knn._lcs_lengths(positions), al_knn._lcs_lengths_piles(positions))


def test_lcs_by_brute_force_on_small_rows():
    """Every subsequence of short rows: the longest increasing one among the present values."""
    from itertools import combinations

    rng = np.random.default_rng(3)
    positions = random_positions(rng, 300, 6)
    expected = []
    for row in positions:
        values = [v for v in row if v >= 0]
        best = max((len(c) for r in range(len(values) + 1) for c in combinations(values, r)
                    if all(x < y for x, y in zip(c, c[1:]))), default=0)
        expected.append(best)
    np.testing.assert_array_equal(al_knn._lcs_lengths(positions), expected)


def test_popcount_without_numpy_bitwise_count(monkeypatch):
    masks = np.array([0, 1, 2**62 - 1, 2**40 + 5, 12345678901], dtype=np.int64)
    expected = [bin(int(m)).count("1") for m in masks]
    np.testing.assert_array_equal(al_knn._popcount(masks), expected)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    np.testing.assert_array_equal(al_knn._popcount(masks), expected)


# ------------------------------------------------------------------------------ kNN terms on the rows that share


def graph_with_overlap(rng, graph, keep):
    """A k-NN-like graph (distinct entries ≠ i per row) keeping a fraction ``keep`` of ``graph``'s entries."""
    n, k = graph.shape
    out = np.empty_like(graph)
    for i, row in enumerate(graph):
        kept = row[rng.random(k) < keep]
        pool = np.setdiff1d(np.arange(n), np.concatenate([kept, [i]]))
        out[i] = rng.permutation(np.concatenate([kept, rng.choice(pool, k - len(kept), replace=False)]))
    return out


@pytest.mark.parametrize("keep", [0.0, 0.02, 0.3, 0.9])
@pytest.mark.parametrize("dense_table", [True, False])
def test_row_terms_on_sharing_rows_equal_the_terms_of_every_row_bitwise(keep, dense_table):
    """Under a permutation null few samples share a neighbour; the kNN terms are computed on those rows only and
    must equal the terms of the whole positions array (both look-up forms, every overlap regime)."""
    rng = np.random.default_rng(int(keep * 100) + dense_table)
    n, k = 400, 7
    graph_a = graph_with_overlap(rng, np.zeros((n, k), dtype=np.int64), 0.0)
    graph_b = graph_with_overlap(rng, graph_a, keep)
    lookup = al_knn._SlotLookup.from_graph(graph_b, max_dense_bytes=None if dense_table else 0)
    assert (lookup.table is not None) == dense_table
    relations = al_knn._relations(graph_a, lookup, al_knn._EdgeKeys.of(graph_a))
    expected_positions = np.array([[list(graph_b[i]).index(j) if j in graph_b[i] else -1 for j in graph_a[i]]
                                   for i in range(n)])
    np.testing.assert_array_equal(relations.positions, expected_positions)
    np.testing.assert_array_equal(relations.reciprocal, [[i in graph_b[j] for j in graph_a[i]] for i in range(n)])
    np.testing.assert_array_equal(relations.common, (expected_positions >= 0).sum(axis=1))
    for terms in (al_knn._lcs_lengths, nb._jaccard_terms, nb._rank_sim_terms):
        np.testing.assert_array_equal(relations.row_terms(terms), terms(expected_positions))
    if keep == 0.02:
        assert 0 < len(relations.hit_rows) < n / 2  # the gathered-rows branch ran


# ------------------------------------------------------------------------------ one product, two metrics


def euclidean(X, kmax):
    return brute_force_knn(X, kmax, "euclidean")[0]


@pytest.mark.parametrize("budget", [1, 8 * 70 * 3 * 9, 2**30])
def test_shared_product_gives_the_gathered_cosines_and_the_exact_ranks(budget):
    """_cosines_and_ranks on its product path: cosines equal the unit-row gathers within rounding, ranks equal
    the separate count and the dense ranks, for a one-row, a several-row and a one-block budget."""
    rng = np.random.default_rng(31)
    n = 70
    X = 40.0 + rng.normal(size=(n, 9)) * rng.choice([0.1, 1.0, 5.0], size=(n, 1))  # offset, uneven norms
    X[4] = X[5]  # a duplicate: ties ordered by index
    cosine_graphs = [brute_force_knn(X + rng.normal(size=X.shape), 6, "cosine")[0] for _ in range(2)]
    assert sum(g.shape[1] for g in cosine_graphs) * nb._GATHER_COST_IN_FLOPS >= n  # the product path
    rows = np.repeat(np.arange(n), 3)
    rows = rows[rng.random(len(rows)) < 0.7]  # some rows have no target
    targets = rng.integers(0, n - 1, size=len(rows))
    targets = np.where(targets >= rows, targets + 1, targets)
    cosines, ranks = nb._cosines_and_ranks(X, cosine_graphs, budget, (rows, targets))
    unit = nb._unit_rows(X)
    for got, graph in zip(cosines, cosine_graphs, strict=True):
        np.testing.assert_allclose(got, nb._cosines_at(unit, graph), rtol=0, atol=1e-13)
    np.testing.assert_array_equal(ranks, nb._ranks_by_count(X, rows, targets, budget))
    np.testing.assert_array_equal(ranks, dense_ranks(X)[rows, targets])
    none_cosines, none_ranks = nb._cosines_and_ranks(X, cosine_graphs, budget, None)  # no rank asked
    assert none_ranks is None
    for got, want in zip(none_cosines, cosines, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


@pytest.mark.parametrize("budget", [1, 24 * 7 * 7, 2**30])
def test_symmetric_tiles_rank_exact_ties_across_tiles(budget):
    """Many exact distance ties (60 samples on 15 distinct points, so near ties sit in every tile, on and off the
    diagonal, and targets in other tiles than their row): the tiled count gives the dense (distance, index)
    ranks for every (row, target)."""
    rng = np.random.default_rng(34)
    n = 60
    X = 3.0 + rng.normal(size=(15, 5))[rng.integers(0, 15, size=n)]
    graphs = [np.stack([rng.permutation(np.delete(np.arange(n), i))[:8] for i in range(n)]) for _ in range(2)]
    assert sum(g.shape[1] for g in graphs) * nb._GATHER_COST_IN_FLOPS >= n  # the product path
    rows, targets = np.nonzero(~np.eye(n, dtype=bool))  # every target of every row
    cosines, ranks = nb._cosines_and_ranks(X, graphs, budget, (rows, targets))
    np.testing.assert_array_equal(ranks, dense_ranks(X)[rows, targets])
    unit = nb._unit_rows(X)
    for got, graph in zip(cosines, graphs, strict=True):
        np.testing.assert_allclose(got, nb._cosines_at(unit, graph), rtol=0, atol=1e-13)


@pytest.mark.parametrize("budget", [1, 24 * 9 * 9, 2**30])
def test_ranks_of_most_rows_come_from_the_symmetric_tiles_and_equal_the_dense_ranks(budget, monkeypatch):
    """More than half of the rows counted: _ranks takes the tiled pass without cosines (half the product), also on
    the cosines' gather path of _cosines_and_ranks; fewer: the counted rows' own products. Both give the dense
    (distance, index) ranks, ties included."""
    rng = np.random.default_rng(35)
    n = 100
    X = 3.0 + rng.normal(size=(30, 5))[rng.integers(0, 30, size=n)]  # exact ties
    rows = np.repeat(np.arange(n), 2)
    targets = (rows + rng.integers(1, n, size=len(rows))) % n
    dense = dense_ranks(X)
    tiled = []
    real = nb._tiled_pass
    monkeypatch.setattr(nb, "_tiled_pass", lambda *args: tiled.append(len(args[1])) or real(*args))
    np.testing.assert_array_equal(nb._ranks(X, rows, targets, budget), dense[rows, targets])
    assert tiled == [0]  # ranks only, no cosines
    few = rows < n // 3
    np.testing.assert_array_equal(nb._ranks(X, rows[few], targets[few], budget), dense[rows[few], targets[few]])
    assert tiled == [0]  # the row blocks
    graph = [np.stack([rng.permutation(np.delete(np.arange(n), i))[:1] for i in range(n)])]
    assert graph[0].shape[1] * nb._GATHER_COST_IN_FLOPS < n  # the cosines' gather path
    cosines, ranks = nb._cosines_and_ranks(X, graph, budget, (rows, targets))
    np.testing.assert_array_equal(ranks, dense[rows, targets])
    np.testing.assert_array_equal(cosines[0], nb._cosines_at(nb._unit_rows(X), graph[0]))
    assert tiled == [0, 0]


@pytest.mark.parametrize("columns", [1, 8, 12, 13, 30])
def test_count_below_by_comparison_equals_the_placement(columns, monkeypatch):
    """#{values < threshold} per row and column: the comparison passes (≤ 12 columns) and the sorted placement
    give the same counts, with ties, +inf thresholds (rows with fewer targets) and +inf values (self)."""
    rng = np.random.default_rng(columns)
    values = torch.from_numpy(rng.integers(0, 40, size=(300, 500)).astype(np.float64))
    values[np.arange(300), rng.integers(0, 500, size=300)] = float("inf")
    thresholds = torch.from_numpy(rng.integers(0, 40, size=(300, columns)).astype(np.float64))
    thresholds[rng.random((300, columns)) < 0.2] = float("inf")
    want = (values[:, :, None] < thresholds[:, None, :]).sum(dim=1)
    np.testing.assert_array_equal(nb._count_below(values, thresholds), want)
    monkeypatch.setattr(nb, "_COMPARE_MAX_THRESHOLDS", 0)  # the placement for every column count
    np.testing.assert_array_equal(nb._count_below(values, thresholds), want)


def test_shared_product_zero_row_is_an_error():
    X = np.random.default_rng(0).normal(size=(20, 3))
    X[3] = 0.0
    graph = [np.random.default_rng(1).integers(0, 20, size=(20, 4))]
    with pytest.raises(ValueError, match="non-zero rows"):
        nb._cosines_and_ranks(X, graph, 2**20, (np.array([0]), np.array([1])))


def test_matrices_with_both_metrics_of_the_shared_product_equal_dense_references():
    """second_order_cos and both information imbalances in one matrices call (the product is shared, kmax small
    so that many ranks are counted) equal the dense references and the metrics computed alone."""
    rng = np.random.default_rng(32)
    n, k = 80, 5
    A, B = related_pair(rng, n=n, da=7, db=6, noise=1.2)
    layers_a, layers_b = [A, np.tanh(A)], [B, B + rng.normal(size=B.shape)]
    options = {"k": k, "info_imbalance": {"k": 2}}

    def prepare(layers):
        return nb.prepare(layers, {"cosine": [brute_force_knn(X, 8, "cosine")[0] for X in layers],
                                   "euclidean": [euclidean(X, 3) for X in layers]}, options)

    a, b = prepare(layers_a), prepare(layers_b)
    both = nb.matrices(a, b, ("second_order_cos", "info_imbalance_ab", "info_imbalance_ba"), options)
    alone = {m: nb.matrices(a, b, (m,), options)[m]
             for m in ("second_order_cos", "info_imbalance_ab", "info_imbalance_ba")}
    for i, Xa in enumerate(layers_a):
        for j, Xb in enumerate(layers_b):
            ga, gb = brute_force_knn(Xa, 8, "cosine")[0], brute_force_knn(Xb, 8, "cosine")[0]
            assert both["second_order_cos"][i, j] == pytest.approx(dense_second_order_cos(Xa, Xb, ga, gb, k),
                                                                   rel=1e-12)
            assert both["info_imbalance_ab"][i, j] == pytest.approx(dense_info_imbalance(Xa, Xb, 2), rel=1e-12)
            assert both["info_imbalance_ba"][i, j] == pytest.approx(dense_info_imbalance(Xb, Xa, 2), rel=1e-12)
    np.testing.assert_array_equal(both["info_imbalance_ab"], alone["info_imbalance_ab"])
    np.testing.assert_array_equal(both["info_imbalance_ba"], alone["info_imbalance_ba"])
    np.testing.assert_allclose(both["second_order_cos"], alone["second_order_cos"], rtol=1e-13, atol=0)


# ------------------------------------------------------------------------------ one eigendecomposition per layer


@pytest.mark.parametrize("svcca", [{}, {"svcca_variance": 0.8}, {"svcca_components": 3}])
def test_core_pass_reusing_the_dense_eigendecomposition_is_bitwise_unchanged(svcca):
    """CKA, unbiased CKA, RV and SVCCA prepared next to the dense factor metrics (the core takes ‖PᵀP‖²_F and
    SVCCA's basis from the dense group) equal the same metrics prepared alone, bit for bit; D > N included."""
    rng = np.random.default_rng(33)
    for n, d in ((60, 8), (30, 45)):
        layers_a = [rng.normal(size=(n, d)) + 1.0 for _ in range(2)]
        layers_b = [a[:, :d - 2] @ rng.normal(size=(d - 2, d - 2)) + rng.normal(size=(n, d - 2)) for a in layers_a]
        core = ("cka", "unbiased_cka", "svcca", "rv")
        alone = al.pair_matrices(layers_a, layers_b, None, None, 1, core, **svcca)
        with_dense = al.pair_matrices(layers_a, layers_b, None, None, 1, core + ("procrustes", "shape_metric"),
                                      **svcca)
        for name in core:
            np.testing.assert_array_equal(with_dense[name], alone[name], err_msg=f"{name} (N={n}, D={d})")
        prepared = al.prepare_model(layers_a, None, 1, core + ("procrustes",),
                                    svcca_variance=svcca.get("svcca_variance", 0.99),
                                    svcca_components=svcca.get("svcca_components"))
        reused = [layer is not None for layer in al._dense_spectral(prepared.groups["dense"], 2)]
        assert reused == [d <= n] * 2


# ------------------------------------------------------------------------------ rank similarity at the common neighbours


@pytest.mark.parametrize("k", [1, 4, 10, 30])
def test_rank_sim_terms_equal_the_dense_formula_bitwise(k):
    positions = random_positions(np.random.default_rng(40 + k), 500, k)
    found = positions >= 0
    rank_a, rank_b = np.arange(1, k + 1)[None, :], positions + 1
    weights = np.where(found, 2.0 / ((1 + np.abs(rank_a - rank_b)) * (rank_a + rank_b)), 0.0)
    harmonic = np.concatenate([[1.0], np.cumsum(1.0 / np.arange(1, k + 1))])
    np.testing.assert_array_equal(nb._rank_sim_terms(positions), weights.sum(axis=1) / harmonic[found.sum(axis=1)])
