"""clusters family: scikit-learn equality (silhouette, Calinski-Harabasz, Davies-Bouldin), dense references
(dunn, xie_beni, label_overlap), DADApy 0.3.4's label overlap (committed fixture, see
tests/fixtures/make_label_overlap_reference.py), planted truth, the AQI formula and the errors."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib

import numpy as np
import pytest
from reference import dense_dunn, dense_label_overlap, dense_xie_beni
from sklearn import metrics as skm

from repbench.metrics import clusters as cl
from repbench.neighbors import brute_force_knn

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def gaussian_classes(rng, sizes, dim=6, separation=1.0, values=None):
    centres = separation * rng.standard_normal((len(sizes), dim))
    X = np.concatenate([centre + rng.standard_normal((size, dim)) for centre, size in zip(centres, sizes)])
    labels = np.repeat(np.arange(len(sizes)) if values is None else np.asarray(values), sizes)
    order = rng.permutation(len(labels))
    return X[order], labels[order]


CASES = {
    "balanced": dict(sizes=[40, 40, 40], separation=1.5),
    "imbalanced": dict(sizes=[10, 50, 25, 35], separation=0.7),
    "with_singleton": dict(sizes=[30, 1, 40], separation=1.0),
    "label_values": dict(sizes=[20, 30, 25], separation=2.0, values=[9, -3, 4]),
}


@pytest.fixture(params=list(CASES))
def labelled(request):
    return gaussian_classes(np.random.default_rng(len(request.param)), **CASES[request.param])


# ----------------------------------------------------------------------------------------- scikit-learn


@pytest.mark.parametrize("budget", [cl.DEFAULT_BUDGET_BYTES, 1, 8 * 4 * 120 * 7])
def test_silhouette_equals_sklearn_in_any_block_size(labelled, budget):
    X, labels = labelled
    assert cl.silhouette(X, labels, budget_bytes=budget) == pytest.approx(skm.silhouette_score(X, labels),
                                                                          abs=1e-9)


def test_blocks_cover_every_row_once():
    blocks = cl.row_blocks(103, 8 * 4 * 10, 4)
    assert [b.start for b in blocks] == list(range(0, 103, 10)) and blocks[-1].stop == 103
    assert len(cl.row_blocks(5, 1, 10**6)) == 5  # a budget below one row still makes progress


def test_calinski_harabasz_and_davies_bouldin_equal_sklearn(labelled):
    X, labels = labelled
    assert cl.calinski_harabasz(X, labels) == pytest.approx(skm.calinski_harabasz_score(X, labels), rel=1e-9)
    assert cl.davies_bouldin(X, labels) == pytest.approx(skm.davies_bouldin_score(X, labels), rel=1e-9)


def test_sklearn_edge_conventions():
    # no within-class spread: CH = 1.0, DB = 0.0 (every class spread 0), silhouette of coinciding classes 0
    X = np.repeat(np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 5.0]]), 4, axis=0)
    labels = np.repeat([0, 1, 2], 4)
    assert cl.calinski_harabasz(X, labels) == skm.calinski_harabasz_score(X, labels) == 1.0
    assert cl.davies_bouldin(X, labels) == skm.davies_bouldin_score(X, labels) == 0.0
    assert cl.silhouette(X, labels) == pytest.approx(skm.silhouette_score(X, labels), abs=1e-12)
    # two coinciding centroids (the same rows in the same order): their distance counts as ∞ in DB
    rng = np.random.default_rng(5)
    Y = rng.standard_normal((30, 3))
    Y = np.concatenate([Y, Y, Y[:10] + 4.0])
    labels = np.repeat([0, 1, 2], [30, 30, 10])
    assert cl.davies_bouldin(Y, labels) == pytest.approx(skm.davies_bouldin_score(Y, labels), rel=1e-9)
    assert cl.xie_beni(Y, labels) == np.inf


def test_silhouette_keeps_precision_for_near_duplicates():
    rng = np.random.default_rng(2)
    base = 1e3 + rng.standard_normal((60, 4))
    X = np.concatenate([base, base + 1e-6 * rng.standard_normal((60, 4))])
    labels = np.concatenate([rng.integers(0, 3, 60), rng.integers(0, 3, 60)])
    diff = X[:, None, :] - X[None, :, :]
    exact = np.sqrt((diff**2).sum(-1))
    assert cl.silhouette(X, labels, budget_bytes=2000) == pytest.approx(
        skm.silhouette_score(exact, labels, metric="precomputed"), abs=1e-9)


# ----------------------------------------------------------------------------------- dense references


def test_dunn_and_xie_beni_equal_dense_references(labelled):
    X, labels = labelled
    assert cl.dunn(X, labels) == pytest.approx(dense_dunn(X, labels), rel=1e-12)
    assert cl.dunn(X, labels, budget_bytes=1) == pytest.approx(dense_dunn(X, labels), rel=1e-12)
    assert cl.xie_beni(X, labels) == pytest.approx(dense_xie_beni(X, labels), rel=1e-12)


def test_dunn_degenerate_cases():
    X = np.array([[0.0], [0.0], [1.0], [1.0]])
    assert cl.dunn(X, [0, 0, 1, 1]) == np.inf
    assert np.isnan(cl.dunn(np.zeros((4, 2)), [0, 0, 1, 1]))


@pytest.mark.parametrize("k", [1, 7, 15])
def test_label_overlap_equals_dense_reference(labelled, k):
    X, labels = labelled
    graph, _ = brute_force_knn(X, 15, "euclidean")
    assert cl.label_overlap(graph, labels, k) == pytest.approx(dense_label_overlap(X, labels, k), rel=1e-12)


def load_reference_module():
    spec = importlib.util.spec_from_file_location("make_label_overlap_reference",
                                                  FIXTURES / "make_label_overlap_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFERENCE = json.loads((FIXTURES / "label_overlap_reference.json").read_text())


@pytest.mark.parametrize("name", list(REFERENCE["datasets"]))
def test_label_overlap_equals_dadapy(name):
    expected = REFERENCE["datasets"][name]
    module = load_reference_module()
    X, labels = module.make_data(name)
    checksum = module.checksum(X, labels)
    assert checksum["label_counts"] == expected["checksum"]["label_counts"]
    assert [checksum["sum"], checksum["sum_of_squares"]] == pytest.approx(
        [expected["checksum"]["sum"], expected["checksum"]["sum_of_squares"]], rel=1e-12), \
        "numpy's random streams changed: regenerate the fixture (see its docstring)"
    graph, _ = brute_force_knn(X, REFERENCE["maxk"], "euclidean")
    for k, value in expected["label_overlap"].items():
        assert cl.label_overlap(graph, labels, int(k)) == pytest.approx(value, rel=1e-12), f"k={k}"


# ------------------------------------------------------------------------------------------ planted truth


def test_separated_classes_are_pure():
    X, labels = gaussian_classes(np.random.default_rng(7), [50, 70, 60], dim=5, separation=200.0)
    graph, _ = brute_force_knn(X, 10, "euclidean")
    assert cl.label_overlap(graph, labels, 10) == 1.0
    assert cl.silhouette(X, labels) > 0.97
    assert cl.dunn(X, labels) > 1.0
    assert cl.davies_bouldin(X, labels) < 0.2


def test_identical_class_distributions_give_chance_overlap():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((900, 4))
    labels = rng.permutation(np.repeat([0, 1, 2], 300))
    graph, _ = brute_force_knn(X, 10, "euclidean")
    assert cl.label_overlap(graph, labels, 10) == pytest.approx(1 / 3, abs=0.03)
    assert abs(cl.silhouette(X, labels)) < 0.05


def test_label_overlap_weights_classes_equally():
    # class 0 (2 samples) has a class-1 nearest neighbour, class 1 (8 samples) a class-1 one: per-class mean
    # overlaps 0 and 1, so the class-balanced value is (0 + 1)/2 while the plain sample mean is 8/10
    labels = np.array([0, 0] + [1] * 8)
    graph = np.array([[2], [3]] + [[3 + (j % 7)] for j in range(8)])
    assert (labels[graph[2:, 0]] == 1).all() and (graph[:, 0] != np.arange(10)).all()
    assert cl.label_overlap(graph, labels, 1) == pytest.approx(0.5, rel=1e-15)
    assert np.mean(labels[graph[:, 0]] == labels) == pytest.approx(0.8)


# ---------------------------------------------------------------------------------------------------- AQI


def logistic(z):
    return 1.0 / (1.0 + math.exp(-z))


def test_aqi_formula_on_hand_values():
    # CH = 10, 20, 30 → CHₙ = 0, 50, 100; XB = 1, 2, 3: median 2, IQR 2.5 − 1.5 = 1
    expected = [0.5 * ch_n + 0.5 * max(10.0, 100.0 * (1.0 - logistic(z)))
                for ch_n, z in zip([0.0, 50.0, 100.0], [-1.0, 0.0, 1.0])]
    assert cl.aqi([10.0, 20.0, 30.0], [1.0, 2.0, 3.0]) == pytest.approx(expected, rel=1e-12)
    # the XBₙ floor of 10: XB = 1, 2, 3, 100: median 2.5, IQR 27.25 − 1.75 = 25.5
    values = cl.aqi([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 100.0], gamma=0.0)
    assert values[3] == 10.0 > 100.0 * (1.0 - logistic((100.0 - 2.5) / 25.5))
    assert values[0] == pytest.approx(100.0 * (1.0 - logistic((1.0 - 2.5) / 25.5)), rel=1e-12)
    assert cl.aqi([1.0, 3.0], [5.0, 6.0], gamma=1.0) == pytest.approx([0.0, 100.0])


def test_aqi_refuses_sets_it_cannot_normalise():
    with pytest.raises(ValueError, match="set"):
        cl.aqi([1.0], [1.0])
    with pytest.raises(ValueError, match="calinski_harabasz"):
        cl.aqi([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="interquartile"):
        cl.aqi([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        cl.aqi([1.0, 2.0], [1.0, np.inf])


# --------------------------------------------------------------------------------------- rows and errors


def test_layer_metrics_rows():
    X, labels = gaussian_classes(np.random.default_rng(9), [20, 25], dim=3, separation=2.0)
    graph, _ = brute_force_knn(X, 8, "euclidean")
    rows = cl.layer_metrics(X, labels, {"k": 5}, graph)
    assert [r["metric"] for r in rows] == list(cl.METRICS)
    by_name = {r["metric"]: r for r in rows}
    assert by_name["label_overlap"]["k"] == 5
    assert by_name["label_overlap"]["value"] == cl.label_overlap(graph, labels, 5)
    assert by_name["silhouette"]["value"] == pytest.approx(skm.silhouette_score(X, labels), abs=1e-9)
    assert by_name["dunn"]["value"] == pytest.approx(dense_dunn(X, labels), rel=1e-12)
    assert by_name["xie_beni"]["value"] == pytest.approx(dense_xie_beni(X, labels), rel=1e-12)
    missing = cl.layer_metrics(X, labels, {}, None)[0]
    assert np.isnan(missing["value"]) and missing["reason"] and missing["k"] == cl.DEFAULT_K


def test_errors_name_what_is_wrong():
    X = np.random.default_rng(0).standard_normal((6, 2))
    with pytest.raises(ValueError, match="1 classes"):
        cl.silhouette(X, np.zeros(6, int))
    with pytest.raises(ValueError, match="6 classes for N = 6"):
        cl.calinski_harabasz(X, np.arange(6))
    with pytest.raises(ValueError, match="regression"):
        cl.davies_bouldin(X, np.linspace(0, 1, 6))
    with pytest.raises(ValueError, match="5 labels for 6 samples"):
        cl.dunn(X, [0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="kmax = 3"):
        cl.label_overlap(np.zeros((6, 3), int), [0, 1, 0, 1, 0, 1], k=4)
    with pytest.raises(ValueError, match="outside"):
        cl.label_overlap(np.full((6, 3), 6), [0, 1, 0, 1, 0, 1], k=2)
