"""collapse family: dense references (nc1, nc2, cdnv), planted truth (separated and identical classes, a simplex
ETF), rhubarbwu/neural-collapse's values on a committed fixture (tests/fixtures/make_collapse_reference.py),
concept directions and their probe, direction cosines, and the errors."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest
from reference import dense_cdnv, dense_nc1, dense_nc2, simplex_etf

from repbench.metrics import collapse as nc

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def gaussian_classes(rng, sizes, dim=6, separation=1.0, spread=1.0):
    centres = separation * rng.standard_normal((len(sizes), dim))
    X = np.concatenate([c + spread * rng.standard_normal((n, dim)) for c, n in zip(centres, sizes)])
    labels = np.repeat(np.arange(len(sizes)), sizes)
    order = rng.permutation(len(labels))
    return X[order], labels[order]


CASES = {
    "balanced_low_dim": dict(sizes=[30, 30, 30, 30], dim=6, separation=1.0),
    "imbalanced": dict(sizes=[12, 40, 25], dim=5, separation=2.0),
    "wide": dict(sizes=[15, 20, 10, 18, 9], dim=200, separation=0.5),  # D > N: Σ_W singular
    "two_classes": dict(sizes=[25, 35], dim=4, separation=1.0),
}


@pytest.fixture(params=list(CASES))
def labelled(request):
    return gaussian_classes(np.random.default_rng(len(request.param) + 100), **CASES[request.param])


# ----------------------------------------------------------------------------------- dense references


def test_nc1_equals_dense_pseudo_inverse(labelled):
    X, labels = labelled
    assert nc.nc1(X, labels) == pytest.approx(dense_nc1(X, labels), rel=1e-9)


def test_nc2_and_cdnv_equal_dense_loops(labelled):
    X, labels = labelled
    values = nc.nc2(X, labels)
    expected = dense_nc2(X, labels)
    assert [values["nc2_equinorm"], values["nc2_equiangularity"], values["nc2_max_angle"]] == pytest.approx(
        expected, rel=1e-9, abs=1e-12)
    assert nc.cdnv(X, labels) == pytest.approx(dense_cdnv(X, labels), rel=1e-12)


def test_label_values_do_not_matter():
    X, labels = gaussian_classes(np.random.default_rng(3), [20, 30, 25], dim=4)
    relabelled = np.array([7, -2, 40])[labels]
    assert nc.nc1(X, relabelled) == pytest.approx(nc.nc1(X, labels), rel=1e-12)
    assert nc.cdnv(X, relabelled) == pytest.approx(nc.cdnv(X, labels), rel=1e-12)


# ------------------------------------------------------------------------------------------ planted truth


def test_separated_classes_collapse_and_identical_ones_do_not():
    rng = np.random.default_rng(4)
    separated = gaussian_classes(rng, [40, 40, 40], dim=8, separation=100.0)
    identical_X = rng.standard_normal((120, 8))
    identical_labels = rng.permutation(np.repeat([0, 1, 2], 40))
    assert nc.nc1(*separated) < 1e-3
    assert nc.cdnv(*separated) < 1e-3
    assert nc.nc1(identical_X, identical_labels) > 10.0
    assert nc.cdnv(identical_X, identical_labels) > 10.0


@pytest.mark.parametrize("n_classes", [2, 3, 5, 10])
def test_simplex_etf_is_fully_collapsed(n_classes):
    rng = np.random.default_rng(n_classes)
    vertices = simplex_etf(n_classes, 16, rng)
    labels = rng.permutation(np.repeat(np.arange(n_classes), 4))
    X = vertices[labels]
    assert nc.nc1(X, labels) == 0.0
    assert nc.cdnv(X, labels) == 0.0
    values = nc.nc2(X, labels)
    assert values["nc2_equinorm"] == pytest.approx(0.0, abs=1e-12)
    assert values["nc2_equiangularity"] == pytest.approx(0.0, abs=1e-12)
    assert values["nc2_max_angle"] == pytest.approx(0.0, abs=1e-12)
    centred = vertices - vertices.mean(axis=0)
    cosines = nc._mean_cosines(centred)
    assert cosines == pytest.approx(np.full(len(cosines), -1.0 / (n_classes - 1)), abs=1e-12)


def test_nc2_sees_unequal_norms_and_angles():
    rng = np.random.default_rng(6)
    vertices = simplex_etf(4, 8, rng)
    centre = vertices.mean(axis=0)
    stretched = centre + (vertices - centre) * np.array([[1.0], [1.0], [1.0], [3.0]])
    labels = np.repeat(np.arange(4), 3)
    values = nc.nc2(stretched[labels], labels)
    assert values["nc2_equinorm"] > 0.1
    assert values["nc2_equiangularity"] > 0.01 and values["nc2_max_angle"] > 0.01


def test_nc1_never_forms_a_width_squared_matrix():
    # D = 20000: a D×D float64 matrix would need 3.2 GB; the span solution needs only (N, C) projections
    rng = np.random.default_rng(7)
    X, labels = gaussian_classes(rng, [5, 6, 7], dim=20000, separation=1.0)
    value = nc.nc1(X, labels)
    assert np.isfinite(value) and value > 0


# ---------------------------------------------------------------------------- rhubarbwu/neural-collapse


def load_reference_module():
    spec = importlib.util.spec_from_file_location("make_collapse_reference",
                                                  FIXTURES / "make_collapse_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COLLAPSE_REFERENCE = FIXTURES / "collapse_reference.json"


def test_equal_rhubarbwu_neural_collapse():
    reference = json.loads(COLLAPSE_REFERENCE.read_text())
    module = load_reference_module()
    assert reference["datasets"], "empty fixture"
    for name, expected in reference["datasets"].items():
        X, labels = module.make_data(name)
        assert [float(X.sum()), float((X * X).sum())] == pytest.approx(expected["checksum"], rel=1e-12), \
            "numpy's random streams changed: regenerate the fixture (see its docstring)"
        assert nc.nc1(X, labels) == pytest.approx(expected["nc1_pinv"], rel=1e-8), name
        assert nc.cdnv(X, labels) == pytest.approx(expected["nc1_cdnv"], rel=1e-8), name
        values = nc.nc2(X, labels)
        for key in ("nc2_equinorm", "nc2_equiangularity", "nc2_max_angle"):
            assert values[key] == pytest.approx(expected[key], rel=1e-8), (name, key)


# ------------------------------------------------------------------------------------- concept directions


def test_concept_directions_are_unit_mass_mean_differences():
    X, labels = gaussian_classes(np.random.default_rng(8), [30, 20], dim=5)
    names, dirs = nc.concept_directions(X, labels)
    difference = X[labels == 1].mean(axis=0) - X[labels == 0].mean(axis=0)
    assert names == ["1_vs_0"]
    assert dirs[0] == pytest.approx(difference / np.linalg.norm(difference), rel=1e-12)
    X3, labels3 = gaussian_classes(np.random.default_rng(9), [10, 12, 14], dim=4)
    names3, dirs3 = nc.concept_directions(X3, np.array([5, 6, 9])[labels3])
    assert names3 == ["5_vs_rest", "6_vs_rest", "9_vs_rest"]
    rest = X3[labels3 != 1].mean(axis=0)
    expected = X3[labels3 == 1].mean(axis=0) - rest
    assert dirs3[1] == pytest.approx(expected / np.linalg.norm(expected), rel=1e-12)


def test_concept_directions_by_layer_stacks_layers():
    rng = np.random.default_rng(14)
    layers = rng.standard_normal((3, 40, 5))
    labels = np.repeat([0, 1, 2], [10, 15, 15])
    names, dirs = nc.concept_directions_by_layer(layers, labels)
    assert dirs.shape == (3, 3, 5) and names == ["0_vs_rest", "1_vs_rest", "2_vs_rest"]
    assert dirs[2] == pytest.approx(nc.concept_directions(layers[2], labels)[1], rel=1e-12)
    # a model against itself, layer by layer: cosine 1 on the diagonal of every concept
    for concept in range(3):
        cosines = nc.direction_cosines(dirs[:, concept], dirs[:, concept])
        assert np.diag(cosines) == pytest.approx(np.ones(3), rel=1e-12)


def test_direction_accuracy_planted():
    rng = np.random.default_rng(10)
    # classes apart along one axis: the probe is perfect; identical classes: chance
    X = rng.standard_normal((200, 6))
    labels = np.repeat([0, 1], 100)
    X[:, 2] += 20.0 * labels
    assert nc.direction_accuracy(X, labels)[0] == 1.0
    noise = rng.standard_normal((400, 6))
    chance = nc.direction_accuracy(noise, rng.permutation(np.repeat([0, 1], 200)))[0]
    assert abs(chance - 0.5) < 0.1


def test_direction_accuracy_matches_a_manual_fold_loop():
    X, labels = gaussian_classes(np.random.default_rng(11), [20, 30, 25], dim=3, separation=0.8)
    correct = {c: [] for c in range(3)}
    folds = nc.stratified_folds(labels, 3, seed=4)
    for fold in range(3):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        for c in range(3):
            pos, neg = X[train][labels[train] == c].mean(0), X[train][labels[train] != c].mean(0)
            for i in test:
                correct[c].append((labels[i] == c, ((X[i] - (pos + neg) / 2) @ (pos - neg) > 0) == (labels[i] == c)))
    expected = [np.mean([np.mean([ok for side, ok in correct[c] if side == s]) for s in (True, False)])
                for c in range(3)]
    assert nc.direction_accuracy(X, labels, n_folds=3, seed=4) == pytest.approx(expected, rel=1e-12)


def test_stratified_folds_deal_every_class_evenly():
    labels = np.repeat([0, 1, 2], [7, 12, 5])
    folds = nc.stratified_folds(labels, 5, seed=3)
    for c, size in enumerate([7, 12, 5]):
        per_fold = np.bincount(folds[labels == c], minlength=5)
        assert per_fold.sum() == size and per_fold.max() - per_fold.min() <= 1
    assert not np.array_equal(folds, nc.stratified_folds(labels, 5, seed=4))
    assert np.array_equal(folds, nc.stratified_folds(labels, 5, seed=3))


def test_direction_cosines():
    rng = np.random.default_rng(12)
    dirs = rng.standard_normal((4, 6))
    same = nc.direction_cosines(dirs, dirs)
    assert np.diag(same) == pytest.approx(np.ones(4), rel=1e-12)
    rotation, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    rotated = nc.direction_cosines(dirs, dirs @ rotation.T)
    assert np.all(np.abs(np.diag(rotated)) < 0.999)
    # a rotation that fixes the first direction (identity on it, a rotation of its complement)
    u = dirs[0] / np.linalg.norm(dirs[0])
    basis, _ = np.linalg.qr(np.column_stack([u, rng.standard_normal((6, 5))]))
    inner, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    fixing = basis @ np.block([[np.ones((1, 1)), np.zeros((1, 5))], [np.zeros((5, 1)), inner]]) @ basis.T
    assert fixing @ u == pytest.approx(u, abs=1e-12)
    assert nc.direction_cosines(dirs[:1], dirs[:1] @ fixing.T)[0, 0] == pytest.approx(1.0, rel=1e-12)
    assert nc.direction_cosines(dirs[:2], dirs[:3]).shape == (2, 3)
    with pytest.raises(ValueError, match="widths differ"):
        nc.direction_cosines(dirs, dirs[:, :5])


# --------------------------------------------------------------------------------------- rows and errors


def test_layer_metrics_rows():
    X, labels = gaussian_classes(np.random.default_rng(13), [20, 25, 15], dim=4)
    rows = nc.layer_metrics(X, labels, {"probe_folds": 3, "seed": 1})
    assert [r["metric"] for r in rows[:5]] == list(nc.METRICS[:5])
    assert [r["concept"] for r in rows[5:]] == ["0_vs_rest", "1_vs_rest", "2_vs_rest"]
    assert rows[0]["value"] == nc.nc1(X, labels)
    assert [r["value"] for r in rows[5:]] == list(nc.direction_accuracy(X, labels, 3, 1))


def test_errors_name_what_is_wrong():
    X = np.random.default_rng(0).standard_normal((8, 3))
    with pytest.raises(ValueError, match="at least 2 classes, got 1"):
        nc.nc1(X, np.zeros(8, int))
    with pytest.raises(ValueError, match="class\\(es\\) 7 have 1"):
        nc.cdnv(X, [0, 0, 0, 0, 3, 3, 3, 7])
    with pytest.raises(ValueError, match="class\\(es\\) 7 have 1"):
        nc.nc1(X, [0, 0, 0, 0, 3, 3, 3, 7])
    with pytest.raises(ValueError, match="5 folds.*class\\(es\\) 3 have 3"):
        nc.direction_accuracy(X, [0, 0, 0, 0, 0, 3, 3, 3])
    with pytest.raises(ValueError, match="regression"):
        nc.nc2(X, np.linspace(0, 1, 8))
