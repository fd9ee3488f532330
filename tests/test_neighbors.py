"""Exact blocked k-NN (repbench.neighbors) against brute force and a plain dense implementation."""

import numpy as np
import pytest
from repbench.neighbors import brute_force_knn, knn

SPACES = ("cosine", "euclidean")


def dense_reference(X, kmax, space):
    """The contract written plainly: full N×N float64 distance matrix, self excluded, order (distance, index)."""
    X = np.asarray(X, dtype=np.float64)
    if space == "cosine":
        unit = X / np.linalg.norm(X, axis=1, keepdims=True)
        dist = 1.0 - unit @ unit.T
    else:
        dist = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    n = len(X)
    order = np.array([np.lexsort((np.arange(n), row))[:kmax] for row in dist])
    return order, np.take_along_axis(dist, order, axis=1)


def data_with_ties(rng, n=240, d=6):
    """Gaussian rows plus exact duplicates and power-of-two multiples (identical directions)."""
    X = rng.normal(size=(n, d))
    X[10:15] = X[3]            # five duplicates of row 3
    X[20] = 4.0 * X[7]         # same direction as row 7 (cosine tie, distinct Euclidean point)
    X[21] = 0.5 * X[7]
    X[30:33] = X[100]          # duplicates of a later row: tie-break must prefer lower indices
    return X


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("block_size", [1, 7, 64, None])
def test_blocked_equals_brute_force_with_ties(space, block_size):
    X = data_with_ties(np.random.default_rng(0))
    expected = brute_force_knn(X, 12, space)
    got = knn(X, 12, space, block_size=block_size, device="cpu")
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("block_size", [3, 50, None])
def test_integer_grid_ties_euclidean(block_size):
    """Integer points: every distance is exact in float64, so mathematical ties are float ties."""
    X = np.random.default_rng(1).integers(-2, 3, size=(300, 3)).astype(np.float64)
    got = knn(X, 20, "euclidean", block_size=block_size, device="cpu")
    ref_idx, ref_dist = dense_reference(X, 20, "euclidean")
    np.testing.assert_array_equal(got[0], ref_idx)
    np.testing.assert_array_equal(got[1], ref_dist.astype(np.float32))
    assert (got[1][:, 0] == 0).sum() > 0  # there are duplicates, at distance exactly 0


def test_duplicate_ties_broken_by_lower_index():
    X = data_with_ties(np.random.default_rng(2))
    for space in SPACES:
        idx, dist = knn(X, 6, space, device="cpu")
        np.testing.assert_array_equal(idx[3, :5], [10, 11, 12, 13, 14])
        np.testing.assert_array_equal(idx[100, :3], [30, 31, 32])
        np.testing.assert_array_equal(idx[30, :3], [31, 32, 100])
        assert np.all(dist[3, :5] == 0) and np.all(dist[30, :3] == 0)
    idx, dist = knn(X, 3, "cosine", device="cpu")
    np.testing.assert_array_equal(idx[7, :2], [20, 21])  # same direction → cosine distance 0


@pytest.mark.parametrize("space", SPACES)
def test_matches_plain_dense_formula(space):
    X = np.random.default_rng(3).normal(size=(200, 16)) + (2.0 if space == "cosine" else 0.0)
    got_idx, got_dist = knn(X, 15, space, block_size=33, device="cpu")
    ref_idx, ref_dist = dense_reference(X, 15, space)
    np.testing.assert_array_equal(got_idx, ref_idx)
    np.testing.assert_allclose(got_dist, ref_dist, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("space", SPACES)
def test_contract_shapes_sorting_self_excluded_prefix(space):
    X = np.random.default_rng(4).normal(size=(150, 10)).astype(np.float32)
    idx, dist = knn(X, 9, space, device="cpu")
    assert idx.shape == dist.shape == (150, 9)
    assert idx.dtype == np.int32 and dist.dtype == np.float32
    assert not np.any(idx == np.arange(150)[:, None])
    assert np.all(np.diff(dist, axis=1) >= 0)
    assert all(len(set(row)) == 9 for row in idx)
    small_idx, small_dist = knn(X, 4, space, device="cpu")
    np.testing.assert_array_equal(small_idx, idx[:, :4])
    np.testing.assert_array_equal(small_dist, dist[:, :4])


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("case", ["constant", "far_offset", "clusters"])
def test_degenerate_inputs_take_the_exact_fallback(space, case):
    rng = np.random.default_rng(5)
    X = {
        "constant": np.ones((40, 4)),
        "far_offset": 1e4 + 1e-3 * rng.normal(size=(120, 5)),   # cosine distances ~1e-13: below float32
        "clusters": np.repeat(rng.normal(size=(8, 3)), 25, axis=0),  # 25 copies each, kmax < and > 24
    }[case]
    for kmax in (5, 30):
        expected = brute_force_knn(X, kmax, space)
        got = knn(X, kmax, space, block_size=16, device="cpu")
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


def test_budget_drives_block_size_without_changing_results():
    X = np.random.default_rng(6).normal(size=(300, 8))
    a = knn(X, 5, "cosine", device="cpu")
    b = knn(X, 5, "cosine", device="cpu", budget_bytes=50_000)  # a few rows per block
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_errors():
    X = np.random.default_rng(7).normal(size=(10, 3))
    with pytest.raises(ValueError, match="kmax=10 must be smaller"):
        knn(X, 10)
    with pytest.raises(ValueError, match="positive integer"):
        knn(X, 0)
    bad = X.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite.*sample 4"):
        knn(bad, 3)
    bad[4, 1] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        knn(bad, 3, "euclidean")
    zero = X.copy()
    zero[2] = 0
    with pytest.raises(ValueError, match="zero row"):
        knn(zero, 3, "cosine")
    knn(zero, 3, "euclidean")  # zero rows are fine in Euclidean space
    with pytest.raises(ValueError, match="unknown space"):
        knn(X, 3, "manhattan")
    with pytest.raises(ValueError, match="2-D"):
        knn(X[0], 3)


def test_cpu_workers_match_serial_and_restore_thread_count():
    """Blocks run on single-threaded workers on CPU: same result as one thread, torch's thread count restored."""
    import torch
    X = data_with_ties(np.random.default_rng(8), n=500, d=12)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        parallel = knn(X, 7, "euclidean", block_size=40, device="cpu")
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        serial = knn(X, 7, "euclidean", block_size=40, device="cpu")
    finally:
        torch.set_num_threads(saved)
    np.testing.assert_array_equal(parallel[0], serial[0])
    np.testing.assert_array_equal(parallel[1], serial[1])
    expected = brute_force_knn(X, 7, "euclidean")
    np.testing.assert_array_equal(parallel[0], expected[0])
    np.testing.assert_array_equal(parallel[1], expected[1])


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("kmax", [1, 12, 40])
@pytest.mark.parametrize("block_size", [5, 37, 64, None])
def test_symmetric_tiles_equal_row_blocks_and_brute_force(space, kmax, block_size, monkeypatch):
    """The CPU symmetric tiles (forced: explicit block_size, or a minimum side of 1) give bit for bit the
    result of the row-block search and of brute force, with ties, duplicates and N not a multiple of S."""
    from repbench import neighbors

    X = data_with_ties(np.random.default_rng(9), n=203, d=5)
    X[150:170] = X[40]  # 21 copies: saturated rows for kmax = 12 and 40
    X[171] = -X[41]
    monkeypatch.setattr(neighbors, "_SYMMETRIC_MIN_SIDE", 1)
    tiles = knn(X, kmax, space, block_size=block_size, device="cpu")
    monkeypatch.setattr(neighbors, "_use_symmetric_tiles", lambda *args: False)
    rows = knn(X, kmax, space, block_size=block_size, device="cpu")
    expected = brute_force_knn(X, kmax, space)
    for got in (tiles, rows):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


def test_symmetric_tiles_float32_input_and_integer_ties():
    """float32 Euclidean input (gathered as float32 in the exact step) and an integer grid full of exact ties."""
    from repbench import neighbors

    X = np.random.default_rng(10).integers(-2, 3, size=(257, 3)).astype(np.float32)
    for block_size in (16, 100):
        got = knn(X, 20, "euclidean", block_size=block_size, device="cpu")
        ref_idx, ref_dist = dense_reference(X, 20, "euclidean")
        np.testing.assert_array_equal(got[0], ref_idx)
        np.testing.assert_array_equal(got[1], ref_dist.astype(np.float32))
    assert neighbors._narrowest_exact(X.astype(np.float64)).dtype == np.float32
    assert neighbors._narrowest_exact(X.astype(np.float64) / 3).dtype == np.float64


def test_tile_side_is_gemm_friendly_and_within_budget():
    from repbench.neighbors import _tile_side_from_budget

    assert _tile_side_from_budget(2048, 128 * 2**20) == 256
    assert _tile_side_from_budget(20000, 128 * 2**20) == 2560
    assert _tile_side_from_budget(50000, 126 * 2**20) == 3840  # 8·S² ≤ budget
    assert _tile_side_from_budget(100, 128 * 2**20) == 13
