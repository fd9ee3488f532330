"""repbench.metrics.alignment.knn: the kNN-set metrics against dense definitions, slot look-up, LCS."""

import numpy as np
import pytest
from reference import dense_cycle, dense_lcs, dense_mutual, graphs, related_pair

from repbench.metrics import alignment as al
from repbench.metrics.alignment import knn as al_knn


@pytest.mark.parametrize("k", [1, 5, 15])
def test_knn_metrics_equal_dense_definitions(k):
    A, B = related_pair(np.random.default_rng(0))
    ga, gb = graphs(A, B)
    assert al.mutual_knn(ga, gb, k) == pytest.approx(dense_mutual(ga, gb, k), abs=1e-12)
    assert al.cycle_knn(ga, gb, k) == pytest.approx(dense_cycle(ga, gb, k), abs=1e-12)
    assert al.cycle_knn(gb, ga, k) == pytest.approx(dense_cycle(gb, ga, k), abs=1e-12)
    assert al.lcs_knn(ga, gb, k) == pytest.approx(dense_lcs(ga, gb, k), abs=1e-12)


def test_column_lookup_equals_dense_table(monkeypatch):
    """Large N switches membership from the N×N slot table to the slot columns: same numbers."""
    rng = np.random.default_rng(14)
    layers_a = [rng.normal(size=(90, 6)) for _ in range(2)]
    layers_b = [a @ rng.normal(size=(6, 5)) + rng.normal(size=(90, 5)) for a in layers_a]
    ga, gb = np.stack(graphs(*layers_a, kmax=7)), np.stack(graphs(*layers_b, kmax=7))
    metrics = (*al.KNN_METRICS, "cknna")
    dense = al.pair_matrices(layers_a, layers_b, ga, gb, 7, metrics)
    assert al._SlotLookup.from_graph(gb[0]).table is not None
    monkeypatch.setattr(al_knn, "DENSE_LOOKUP_MAX_BYTES", 0)  # looked up in the knn module
    assert al._SlotLookup.from_graph(gb[0]).table is None and al._SlotLookup.from_graph(gb[0]).columns is not None
    sparse = al.pair_matrices(layers_a, layers_b, ga, gb, 7, metrics)
    for name in metrics:
        np.testing.assert_array_equal(sparse[name], dense[name], err_msg=name)
    assert al.cycle_knn(ga[0], gb[1], 7) == pytest.approx(dense_cycle(ga[0], gb[1], 7))
    assert al.lcs_knn(ga[1], gb[0], 7) == pytest.approx(dense_lcs(ga[1], gb[0], 7))


def test_lcs_on_hand_made_lists():
    filler = np.array([[0, 1, 2, 3]] * 6)  # 10 samples, so every index below is a valid sample
    a = np.vstack([[[1, 2, 3, 4], [4, 3, 2, 1], [1, 2, 3, 4], [5, 6, 7, 8]], filler])
    b = np.vstack([[[1, 2, 3, 4], [1, 2, 3, 4], [2, 9, 4, 1], [1, 2, 3, 4]], filler])
    np.testing.assert_allclose(al.lcs_knn_per_sample(a, b, 4)[:4], [1.0, 0.25, 0.5, 0.0])
    np.testing.assert_allclose(al.mutual_knn_per_sample(a, b, 4)[:4], [1.0, 1.0, 0.75, 0.0])
    np.testing.assert_allclose(al.lcs_knn_per_sample(a, b, 2)[:4], [1.0, 0.0, 0.5, 0.0])


def test_slot_lookup_refilled_from_a_spent_one_equals_a_fresh_one():
    """from_graph(reuse=…) clears the spent table's entries and refills it: the same slots as a new table, also
    when the spent graph was wider (a Euclidean kmax graph before a cosine k graph)."""
    rng = np.random.default_rng(15)
    n = 70
    wide = np.stack([rng.permutation(n)[:20] for _ in range(n)])
    narrow = np.stack([rng.permutation(n)[:6] for _ in range(n)])
    spent = al._SlotLookup.from_graph(wide)
    refilled = al._SlotLookup.from_graph(narrow, reuse=spent)
    assert refilled.table is spent.table  # the same memory
    fresh = al._SlotLookup.from_graph(narrow)
    np.testing.assert_array_equal(refilled.table, fresh.table)
    rows, cols = rng.integers(0, n, size=(5, 40)), rng.integers(0, n, size=(5, 40))
    np.testing.assert_array_equal(refilled.slots(rows, cols), fresh.slots(rows, cols))
    np.testing.assert_array_equal(fresh.slots(np.arange(n)[:, None], narrow), np.tile(np.arange(6), (n, 1)))


def test_column_lookup_equals_the_table_at_any_rows_and_columns():
    """The column form answers any (row, column) query, broadcast, as the N×N table does (edge keys too)."""
    rng = np.random.default_rng(16)
    n = 60
    graph = np.stack([rng.permutation(n)[:9] for _ in range(n)])
    table, columns = al._SlotLookup.from_graph(graph), al._SlotLookup.from_graph(graph, max_dense_bytes=0)
    assert table.table is not None and columns.table is None
    rows, cols = rng.integers(0, n, size=(7, 300)), rng.integers(0, n, size=(7, 300))
    cols[:, :9] = graph[rows[:, :9], np.arange(9)]  # some hits for sure
    np.testing.assert_array_equal(columns.slots(rows, cols), table.slots(rows, cols))
    np.testing.assert_array_equal(columns.raw(np.arange(n)[:, None], graph), table.raw(np.arange(n)[:, None], graph))
    np.testing.assert_array_equal(columns.at_keys(rows * n + cols), table.at_keys(rows * n + cols))
    assert (columns.slots(rows, cols) >= 0).sum() >= 9 * 7
