"""Intrinsic-dimension estimators: differential tests against scikit-dimension (same process) and DADApy
(committed reference values, see tests/fixtures/make_dadapy_reference.py), planted low-dimensional data,
duplicate handling and error paths."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import warnings

import numpy as np
import pytest
import skdim
from scipy.spatial.distance import cdist

from repbench import neighbors
from repbench.metrics import intrinsic_dim as idm

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


# ------------------------------------------------------------------------------------------------ helpers


def exact_knn(X, k):
    """Brute-force exact euclidean k-NN: self excluded, ascending distance, ties by lower index."""
    distances = cdist(X, X)
    np.fill_diagonal(distances, np.inf)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return order.astype(np.int32), np.take_along_axis(distances, order, axis=1)


def embed(latent, ambient_dim, rng):
    """Isometric embedding of latent coordinates into ambient_dim dimensions, plus a random offset."""
    basis, _ = np.linalg.qr(rng.standard_normal((ambient_dim, latent.shape[1])))
    return latent @ basis.T + rng.standard_normal(ambient_dim)


def load_reference_module():
    spec = importlib.util.spec_from_file_location("make_dadapy_reference", FIXTURES / "make_dadapy_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def by_estimator(rows):
    return {(r["metric"], r["statistic"], r["k"]): r for r in rows}


@pytest.fixture(scope="module")
def curved():
    rng = np.random.default_rng(3)
    X = np.tanh(rng.uniform(-1, 1, (1200, 5)) @ rng.standard_normal((5, 40)))
    return X, *exact_knn(X, 64)


@pytest.fixture(scope="module")
def circle():
    rng = np.random.default_rng(4)
    angle = rng.uniform(0, 2 * np.pi, 1000)
    X = embed(3.0 * np.c_[np.cos(angle), np.sin(angle)], 768, rng)
    return X, *exact_knn(X, 128)


@pytest.fixture(scope="module")
def subspace3():
    rng = np.random.default_rng(5)
    X = embed(rng.standard_normal((1500, 3)), 768, rng)
    return X, *exact_knn(X, 128)


# ------------------------------------------------------------------------------ scikit-dimension (in process)


@pytest.mark.parametrize("ambient_dim", [12, 40])  # skdim: kNN search for D ≤ 25, chunked distance matrix above
@pytest.mark.parametrize("discard_fraction", [0.1, 0.25])
def test_twonn_matches_skdim(ambient_dim, discard_fraction):
    rng = np.random.default_rng(ambient_dim)
    X = np.sin(rng.uniform(-2, 2, (1500, 4)) @ rng.standard_normal((4, ambient_dim)))
    _, distances = exact_knn(X, 2)
    expected = skdim.id.TwoNN(discard_fraction=discard_fraction).fit(X).dimension_
    assert idm.twonn(distances, discard_fraction) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("k", [20, 8])
def test_mle_levina_bickel_matches_skdim(curved, k):
    X, _, distances = curved
    expected = skdim.id.MLE().fit(X, n_neighbors=k).dimension_  # comb="mle": harmonic mean
    assert idm.mle_levina_bickel(distances, k) == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------------- DADApy (fixtures)

REFERENCE = json.loads((FIXTURES / "dadapy_reference.json").read_text())


@pytest.mark.parametrize("name", sorted(REFERENCE["datasets"]))
def test_matches_dadapy_reference(name):
    expected = REFERENCE["datasets"][name]
    X = load_reference_module().make_dataset(name)
    assert list(X.shape) == expected["shape"]
    np.testing.assert_allclose([X.sum(), (X * X).sum()], expected["checksum"], rtol=1e-12,
                               err_msg="numpy's random stream changed: regenerate the fixture")
    _, distances = exact_knn(X, REFERENCE["maxk"])

    assert idm.twonn(distances, 0.1) == pytest.approx(expected["twonn"], rel=1e-6)
    assert idm.twonn_mle(distances) == pytest.approx(expected["twonn_ml"], rel=1e-6)

    scales = idm.gride_scales(REFERENCE["gride_range_max"] // 2)
    assert scales == expected["gride_n1"]
    estimates = idm.gride(distances, scales)
    np.testing.assert_allclose([e.dimension for e in estimates], expected["gride_id"], rtol=1e-6)
    np.testing.assert_allclose([e.scale for e in estimates], expected["gride_scale"], rtol=1e-9)
    for estimate, stderr in zip(estimates, expected["gride_stderr"]):
        # documented difference: our information uses the filtered sample, DADApy's the unfiltered one
        filtered = len(X) - estimate.n_used
        assert estimate.stderr == pytest.approx(stderr, rel=1e-6 if filtered == 0 else filtered / len(X))


def test_dadapy_fixture_exercises_the_gride_outlier_filter():
    X = load_reference_module().make_dataset("near_copies_6d_in_20d")
    _, distances = exact_knn(X, 2)
    assert idm.gride(distances, [1])[0].n_used == len(X) - 30  # the 15 near-copy pairs


# -------------------------------------------------------------------------------------------- planted data


def test_circle_in_768d_is_one_dimensional(circle):
    X, indices, distances = circle
    rows = idm.estimate_layer(X, indices, distances, {"local_k": 128})
    for row in rows:
        assert row["value"] == pytest.approx(1.0, abs=0.15), row
        assert row["n_duplicates"] == 0
    assert {(r["metric"], r["statistic"]) for r in rows} >= {("local_id", "median"), ("gride", "estimate")}


def test_linear_3d_subspace_of_768d_is_three_dimensional(subspace3):
    X, indices, distances = subspace3
    rows = idm.estimate_layer(X, indices, distances, {"local_k": 64})
    for row in rows:
        if row["statistic"] in ("q25", "q75"):
            continue
        assert row["value"] == pytest.approx(3.0, abs=0.35), row


def test_full_rank_gaussian_is_high_dimensional():
    X = np.random.default_rng(6).standard_normal((800, 768))
    _, distances = exact_knn(X, 64)
    assert idm.twonn(distances) > 50
    assert idm.twonn_mle(distances) > 50
    assert min(e.dimension for e in idm.gride(distances, idm.gride_scales(32))) > 50
    assert idm.mle_levina_bickel(distances) > 50


def test_twonn_mle_equals_unfiltered_gride_at_n1_1(curved):
    _, _, distances = curved
    gride_one = idm.gride(distances, [1], filter_outliers=False)[0]
    assert gride_one.dimension == pytest.approx(idm.twonn_mle(distances), rel=1e-12)


# ------------------------------------------------------------------------------------------------ local ID


def test_local_id_is_twonn_on_each_neighbourhood(circle):
    X, indices, _ = circle
    k = 32
    values = idm.local_id(X, indices, k)
    for i in (0, 17, 999):
        cloud = X[np.r_[i, indices[i, :k]]]
        _, cloud_distances = exact_knn(cloud, 2)
        assert values[i] == pytest.approx(idm.twonn(cloud_distances), rel=1e-9)


def test_local_id_summary():
    summary = idm.local_id_summary([1.0, 2.0, 3.0, 4.0, 5.0])
    assert summary == {"mean": 3.0, "median": 3.0, "q25": 2.0, "q75": 4.0}


# ---------------------------------------------------------------------------------------------- duplicates


@pytest.fixture(scope="module")
def with_duplicates():
    """600 distinct 3-D points in 50-D, plus 10 single copies and one group of 41 copies (> kmax)."""
    rng = np.random.default_rng(7)
    unique = embed(rng.standard_normal((600, 3)), 50, rng)
    copies = np.concatenate([unique[:10], np.repeat(unique[20:21], 40, axis=0)])
    X = np.concatenate([unique, copies])[rng.permutation(650)]
    return unique, X


def test_duplicates_do_not_collapse_the_estimates(with_duplicates):
    unique, X = with_duplicates
    config = {"gride_max_scale": 8, "mle_k": 10, "local_k": 16}
    rows = idm.estimate_layer(X, *exact_knn(X, 32), config)
    reference = by_estimator(idm.estimate_layer(unique, *exact_knn(unique, 32), config))
    assert {row["n_duplicates"] for row in rows} == {50}
    for row in rows:
        expected = reference[(row["metric"], row["statistic"], row["k"])]
        assert row["value"] == pytest.approx(expected["value"], rel=1e-9)
        if row["statistic"] in ("estimate", "mean", "median"):
            assert row["value"] == pytest.approx(3.0, abs=0.6), row
        assert row["n_used"] == expected["n_used"]


def test_zero_distances_raise_instead_of_collapsing(with_duplicates):
    _, X = with_duplicates
    _, distances = exact_knn(X, 32)
    for estimate in (idm.twonn, idm.twonn_mle, idm.mle_levina_bickel, lambda r: idm.gride(r, [1, 2])):
        with pytest.raises(ValueError, match="duplicates must be removed"):
            estimate(distances)


def test_duplicate_masks_agree_and_keep_the_lowest_index(with_duplicates):
    _, X = with_duplicates
    indices, distances = exact_knn(X, 32)
    mask = idm.duplicate_mask(X)
    assert mask.sum() == 50
    np.testing.assert_array_equal(mask, idm.duplicate_mask_from_graph(indices, distances))
    _, first = np.unique(X, axis=0, return_index=True)
    assert not mask[first].any()


def test_duplicate_mask_treats_negative_zero_as_zero():
    X = np.array([[0.0, 1.0], [-0.0, 1.0], [1.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(idm.duplicate_mask(X), [False, True, False, True])


def test_deduplicated_graph_recomputes_short_rows_or_asks_for_x(with_duplicates):
    _, X = with_duplicates
    indices, distances = exact_knn(X, 32)
    mask = idm.duplicate_mask(X)
    graph = idm.deduplicate_graph(indices, distances, mask, 16, X)
    # the kept copy of the 41-copy group and its neighbours, whose 32-lists the copies fill
    assert graph.n_duplicates == 50 and graph.n_recomputed >= 2
    expected_idx, expected_dist = exact_knn(X[graph.kept], 16)
    np.testing.assert_array_equal(graph.indices, expected_idx)
    np.testing.assert_allclose(graph.distances, expected_dist, rtol=1e-12)
    with pytest.raises(ValueError, match="pass X"):
        idm.deduplicate_graph(indices, distances, mask, 16)
    with pytest.raises(ValueError, match="pass X"):
        idm.estimate_layer(None, indices, distances, {"estimators": ["twonn"]})


def test_graph_that_disagrees_with_x_is_rejected(curved):
    X, indices, distances = curved
    shifted = X.copy()
    shifted[1] = shifted[0]
    with pytest.raises(ValueError, match="does not match X"):
        idm.estimate_layer(shifted, indices, distances, {"estimators": ["twonn"]})


# ---------------------------------------------------------------------------------------- errors, config


def test_too_few_distinct_samples_raise():
    rng = np.random.default_rng(8)
    X = np.repeat(rng.standard_normal((5, 10)), 10, axis=0)
    indices, distances = exact_knn(X, 16)
    rows = idm.estimate_layer(X, indices, distances, {"estimators": ["twonn"]})
    assert rows[0]["n_used"] == 5 and rows[0]["n_duplicates"] == 45
    with pytest.raises(ValueError, match=r"gride needs at least 9 distinct samples, got 5 \(45 exact duplicates"):
        idm.estimate_layer(X, indices, distances, {"estimators": ["gride"], "gride_max_scale": 4})
    same = np.ones((20, 4))
    with pytest.raises(ValueError, match="at least 3 distinct samples, got 1"):
        idm.estimate_layer(same, *exact_knn(same, 4), {"estimators": ["twonn"]})
    with pytest.raises(ValueError, match="at least 3 distinct samples"):
        idm.twonn(distances[:2])


def test_tied_distances_raise_instead_of_nan():
    X = np.eye(12)  # every pairwise distance is √2: all ratios μ = 1
    _, distances = exact_knn(X, 8)
    with pytest.raises(ValueError, match="equal"):
        idm.twonn(distances)
    with pytest.raises(ValueError, match="equal"):
        idm.twonn_mle(distances)
    with pytest.raises(ValueError):
        idm.gride(distances, [1, 2])
    with pytest.raises(ValueError, match="equal"):
        idm.mle_levina_bickel(distances, 5)


def test_config_and_graph_width_are_validated(curved):
    X, indices, distances = curved
    with pytest.raises(ValueError, match="unknown intrinsic-dimension config keys"):
        idm.estimate_layer(X, indices, distances, {"twonn_fraction": 0.1})
    with pytest.raises(ValueError, match="unknown intrinsic-dimension estimator"):
        idm.estimate_layer(X, indices, distances, {"estimators": ["pca"]})
    with pytest.raises(ValueError, match="kmax = 64"):
        idm.estimate_layer(X, indices, distances, {"estimators": ["gride"], "gride_max_scale": 64})
    with pytest.raises(ValueError, match="discard_fraction"):
        idm.twonn(distances, 0.0)


def test_rows_have_the_tidy_schema(curved):
    X, indices, distances = curved
    rows = idm.estimate_layer(X, indices, distances, {"local_k": 32})
    assert {tuple(sorted(r)) for r in rows} == {
        ("k", "metric", "n_duplicates", "n_used", "scale", "statistic", "stderr", "value")}
    assert [r["k"] for r in rows if r["metric"] == "gride"] == [1, 2, 4, 8, 16, 32]
    assert all(math.isfinite(r["value"]) and math.isfinite(r["scale"]) for r in rows)
    assert set(idm.ESTIMATORS) == {"twonn", "twonn_mle", "gride", "mle_levina_bickel", "local_id"}


def test_float32_graph_from_repbench_neighbors_gives_the_same_estimates(curved):
    X, indices, distances = curved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast_indices, fast_distances = neighbors.knn(X, 64, space="euclidean")
    config = {"local_k": 32}
    fast = by_estimator(idm.estimate_layer(X, fast_indices, fast_distances, config))
    for key, row in by_estimator(idm.estimate_layer(X, indices, distances, config)).items():
        assert fast[key]["value"] == pytest.approx(row["value"], rel=1e-5), key
