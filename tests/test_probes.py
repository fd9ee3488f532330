"""Linear probes (repbench.metrics.probes) against scikit-learn, dense float64 formulas and planted truth."""

import warnings

import numpy as np
import pytest
from reference import dense_logistic_objective, dense_ridge, first_layer_reaching, standardise
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, r2_score
from sklearn.model_selection import KFold, StratifiedKFold

from repbench.metrics import probes as pr


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tiny problems gain nothing from threads, and on a shared, busy machine torch's OpenMP pool makes
    them an order of magnitude slower; the previous setting is restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def blobs(seed, n=300, d=12, k=3, spread=0.6, offset=5.0):
    """k Gaussian classes (unit noise, class means spread·N(0, I)) around a common offset."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    rng.shuffle(y)
    X = spread * rng.standard_normal((k, d))[y] + rng.standard_normal((n, d)) + offset
    return X, y


def sklearn_cv(X, y, n_folds, seed, C=1.0):
    """Per-fold (accuracy, balanced accuracy, macro-F1, coef, intercept) of the sklearn pipeline on the same folds."""
    out = []
    for train, test in StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(X, y):
        Z_train, Z_test = standardise(X[train], X[test])
        model = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(Z_train, y[train])
        pred = model.predict(Z_test)
        out.append((accuracy_score(y[test], pred), balanced_accuracy_score(y[test], pred),
                    f1_score(y[test], pred, average="macro"), model.coef_, model.intercept_))
    return out


# ------------------------------------------------------------------------------------ solver vs sklearn
@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fit_logistic_equals_sklearn_and_dense_objective(k, dtype):
    X, y = blobs(1, n=240, d=10, k=k)
    train = np.ones(len(y), bool)
    train[::4] = False
    original = X.copy()
    fit = pr.fit_logistic(X, y[:, None], train[:, None], k, C=0.5, tol=1e-8, dtype=dtype)
    np.testing.assert_array_equal(X, original)  # the caller's array is never modified
    Z_train, Z_test = standardise(X[train], X[~train])
    model = LogisticRegression(C=0.5, tol=1e-12, max_iter=10000).fit(Z_train, y[train])
    assert fit.converged.all()
    np.testing.assert_allclose(fit.coef[0].T, model.coef_, atol=1e-5)
    np.testing.assert_allclose(fit.intercept[0], model.intercept_, atol=1e-5)
    rtol = 1e-10 if dtype == "float64" else 1e-6  # float32: the mean of the float32 centred copy of X
    np.testing.assert_allclose(fit.mean[0], X[train].mean(0), rtol=rtol)
    np.testing.assert_allclose(fit.scale[0], X[train].std(0), rtol=rtol * 100)
    # the reported loss is F/(C n) of the formula, and sklearn's solution is not better
    ours = dense_logistic_objective(Z_train, y[train], fit.coef[0], fit.intercept[0], 0.5)
    theirs = dense_logistic_objective(Z_train, y[train], model.coef_.T, model.intercept_, 0.5)
    assert fit.loss[0] == pytest.approx(ours, rel=1e-6)
    assert ours <= theirs + 1e-10
    # logits of the test rows = the sklearn decision function
    decision = model.decision_function(Z_test).reshape(len(Z_test), -1)
    np.testing.assert_allclose(fit.logits[~train, 0], decision, atol=1e-4)


def test_probe_classification_matches_sklearn_on_the_same_folds():
    X, y = blobs(2, n=300, d=15, k=3, spread=0.35)
    ours = pr.probe_classification(X, y, n_folds=5, n_permutations=0, seed=3, tol=1e-6)
    theirs = sklearn_cv(X, y, 5, 3)
    assert ours["converged"] and ours["n_folds"] == 5
    np.testing.assert_allclose(ours["accuracy"], [t[0] for t in theirs], atol=0.005)
    np.testing.assert_allclose(ours["balanced_accuracy"], [t[1] for t in theirs], atol=0.005)
    np.testing.assert_allclose(ours["macro_f1"], [t[2] for t in theirs], atol=0.005)
    assert 0.4 < ours["accuracy"].mean() < 0.95  # a problem where the probe can disagree, not a trivial one


def test_float32_and_float64_agree_and_warm_start_changes_nothing():
    X, y = blobs(3, n=150, d=8, k=3, spread=0.5)
    a = pr.probe_classification(X, y, n_permutations=1, dtype="float64", tol=1e-7)
    b = pr.probe_classification(X, y, n_permutations=1, dtype="float32", tol=1e-7)
    np.testing.assert_array_equal(a["accuracy"], b["accuracy"])
    np.testing.assert_array_equal(a["chance_accuracy"], b["chance_accuracy"])
    layers = np.stack([X, X + 0.1 * np.random.default_rng(0).standard_normal(X.shape)])
    warm = pr.probe_layers(layers, y, n_permutations=0, tol=1e-7, progress=False)
    cold = pr.probe_layers(layers, y, n_permutations=0, tol=1e-7, progress=False, warm_start=False)
    for w, c in zip(warm, cold):
        np.testing.assert_array_equal(w["accuracy"], c["accuracy"])
    assert warm[1]["n_iter"] < cold[1]["n_iter"]


def test_non_convergence_is_reported():
    X, y = blobs(4, n=120, d=6)
    result = pr.probe_classification(X, y, n_permutations=0, max_iter=1)
    assert not result["converged"] and result["n_not_converged"] == 5 and result["grad_max"] > 1e-4


def test_classification_scores_equal_sklearn():
    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 4, 50)
    for y_pred in (rng.integers(0, 4, 50), np.where(y_true == 2, 0, y_true), rng.integers(0, 6, 50)):
        scores = pr.classification_scores(y_true, y_pred)
        assert scores["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn warns about predicted classes absent from y_true
            balanced = balanced_accuracy_score(y_true, y_pred)
        assert scores["balanced_accuracy"] == pytest.approx(balanced)
        assert scores["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))


# ------------------------------------------------------------------------------------ planted truth
def test_separated_classes_are_decoded_perfectly_and_chance_is_near_one_over_k():
    X, y = blobs(6, n=400, d=10, k=4, spread=8.0)
    result = pr.probe_classification(X, y, n_permutations=3)
    assert result["accuracy"].min() == 1.0 and result["macro_f1"].min() == 1.0
    # permuted labels carry no information: each CV accuracy is a mean over 400 test predictions whose std
    # under the null is sqrt(1/4 · 3/4 / 400) ≈ 0.022; 0.1 is > 4 of those
    assert result["chance_accuracy"].shape == (3,)
    assert np.abs(result["chance_accuracy"] - 0.25).max() < 0.1


def test_identical_class_distributions_give_chance_accuracy():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((600, 10))
    y = np.arange(600) % 3
    result = pr.probe_classification(X, y, n_permutations=2)
    # null std of a 600-prediction accuracy ≈ 0.019; bound 0.1 (> 5 std)
    assert abs(result["accuracy"].mean() - 1 / 3) < 0.1
    assert abs(result["balanced_accuracy"].mean() - 1 / 3) < 0.1


# ------------------------------------------------------------------------------------ ridge
def test_ridge_probe_equals_sklearn_ridge_and_the_dense_formula():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((150, 9)) * np.arange(1, 10) + 3
    y = X @ rng.standard_normal(9) + 2.0 * rng.standard_normal(150)
    ours = pr.probe_regression(X, y, n_folds=4, n_permutations=0, seed=1, alpha=2.5)
    expected, dense = [], []
    for train, test in KFold(4, shuffle=True, random_state=1).split(X):
        Z_train, Z_test = standardise(X[train], X[test])
        expected.append(r2_score(y[test], Ridge(alpha=2.5).fit(Z_train, y[train]).predict(Z_test)))
        dense.append(r2_score(y[test], dense_ridge(X[train], y[train], X[test], 2.5)))
    np.testing.assert_allclose(ours["r2"], expected, rtol=1e-9)
    np.testing.assert_allclose(ours["r2"], dense, rtol=1e-9)


def test_linear_target_gives_r2_one_and_permuted_target_none():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((300, 6))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0, 0.0, 1.5])
    result = pr.probe_regression(X, y, n_permutations=3, alpha=1e-6)
    assert result["r2"].min() > 1 - 1e-9
    # a permuted target is unrelated to X: R² ≤ 0 up to noise (6 fitted weights on 240 rows)
    assert result["chance_r2"].max() < 0.1


# ------------------------------------------------------------------------------------ group transfer
def test_probe_by_group_equals_sklearn_on_each_split():
    X, y = blobs(10, n=240, d=8, k=3, spread=0.5)
    groups = np.array(["t0", "t1", "t2", "t3"])[np.arange(240) % 4]
    result = pr.probe_by_group(X, y, groups, tol=1e-8)
    assert result["test_groups"] == [["t0"], ["t1"], ["t2"], ["t3"]]
    for g, accuracy in zip(["t0", "t1", "t2", "t3"], result["accuracy"]):
        test = groups == g
        Z_train, Z_test = standardise(X[~test], X[test])
        pred = LogisticRegression(tol=1e-10, max_iter=10000).fit(Z_train, y[~test]).predict(Z_test)
        assert accuracy == pytest.approx(accuracy_score(y[test], pred), abs=0.005)
    single = pr.probe_by_group(X, y, groups, test_groups=["t2", "t3"])
    assert single["test_groups"] == [["t2", "t3"]] and single["accuracy"].shape == (1,)
    target = X[:, 0] * 2.0 + 1.0
    regression = pr.probe_by_group(X, target, groups, test_groups="t1", alpha=1e-8)
    assert regression["r2"][0] > 1 - 1e-9


def test_probe_by_group_errors():
    X, y = blobs(11, n=60, d=4, k=2)
    groups = np.where(y == 0, "a", "b")
    with pytest.raises(ValueError, match=r"testing on groups \['a'\] lacks classes \[0\]"):
        pr.probe_by_group(X, y, groups)
    with pytest.raises(ValueError, match=r"test groups \['z'\] are not among"):
        pr.probe_by_group(X, y, groups, test_groups="z")


# ------------------------------------------------------------------------------------ concept depth
@pytest.mark.parametrize("curve", [[0.5, 0.6, 0.95, 1.0, 0.98], [0.2, 0.2, 0.2], [0.1, 0.89, 0.9, 0.7, 0.995, 1.0]])
def test_concept_depth_on_hand_made_curves(curve):
    best = max(curve)
    by_fraction = pr.concept_depth(curve)
    assert by_fraction["layer"] == first_layer_reaching(curve, 0.9 * best)
    assert by_fraction["relative_depth"] == by_fraction["layer"] / (len(curve) - 1)
    by_margin = pr.concept_depth(curve, rule="margin", margin=0.01)
    assert by_margin["layer"] == first_layer_reaching(curve, best - 0.01)
    assert by_fraction["argmax_layer"] == int(np.argmax(curve))


def test_concept_depth_worked_example_and_rows():
    # 0.9 · 1.0 = 0.9: layer 2 (0.95) is the first at or above it; max − 0.01 = 0.99: layer 3
    assert pr.concept_depth([0.5, 0.6, 0.95, 1.0, 0.98])["relative_depth"] == 0.5
    assert pr.concept_depth([0.5, 0.6, 0.95, 1.0, 0.98], rule="margin")["layer"] == 3
    rows = [{"layer": layer, "metric": "probe_accuracy", "statistic": statistic, "value": value}
            for layer, value in enumerate([0.3, 0.8, 0.7]) for statistic in ("mean", "std")]
    rows += [{"layer": 0, "metric": "probe_macro_f1", "statistic": "mean", "value": 0.99}]
    assert pr.concept_depth_from_rows(rows[::-1]) == pr.concept_depth([0.3, 0.8, 0.7])
    with pytest.raises(ValueError, match="cover layers"):
        pr.concept_depth_from_rows(rows[2:])
    with pytest.raises(ValueError, match="unknown concept depth rule"):
        pr.concept_depth([0.1, 0.2], rule="median")


# ------------------------------------------------------------------------------------ errors
def test_bad_inputs_raise_clear_errors():
    X, y = blobs(12, n=40, d=3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        pr.probe_classification(X, np.zeros(40, int))
    few = y.copy()
    few[:38] = np.where(few[:38] == 2, 0, few[:38])
    few[38:] = 2  # class 2 has 2 members
    with pytest.raises(ValueError, match=r"class 2: 2"):
        pr.probe_classification(X, few, n_folds=5)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite values.*sample 3, feature 1"):
        pr.probe_classification(bad, y)
    with pytest.raises(ValueError, match="non-finite"):
        pr.probe_regression(X, np.where(y == 0, np.inf, 1.0))
    with pytest.raises(ValueError, match="shape"):
        pr.probe_classification(X, y[:-1])
    with pytest.raises(ValueError, match="unknown probe options"):
        pr.layer_metrics(X, y, {"folds": 3})


# ------------------------------------------------------------------------------------ tidy rows
def test_layer_metrics_rows():
    X, y = blobs(13, n=150, d=5, k=3)
    rows = pr.layer_metrics(X, y, {"n_permutations": 2, "n_folds": 3})
    result = pr.probe_classification(X, y, n_folds=3, n_permutations=2)
    assert [r["metric"] for r in rows[::2]] == list(pr.CLASSIFICATION_METRICS)
    assert {r["statistic"] for r in rows} == {"mean", "std"}
    by_name = {(r["metric"], r["statistic"]): r["value"] for r in rows}
    assert by_name["probe_accuracy", "mean"] == pytest.approx(result["accuracy"].mean())
    assert by_name["probe_chance_accuracy", "std"] == pytest.approx(result["chance_accuracy"].std())
    assert all(r["n_folds"] == 3 and r["converged"] is True for r in rows)
    regression = pr.layer_metrics(X, X[:, 0] + 0.1 * y, {"n_permutations": 1})
    assert [r["metric"] for r in regression[::2]] == list(pr.REGRESSION_METRICS)
    assert pr.METRICS == pr.CLASSIFICATION_METRICS + pr.REGRESSION_METRICS + pr.TRANSFER_METRICS


def test_cuda_path_equals_cpu_path():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    X, y = blobs(14, n=200, d=8, k=3, spread=0.5)
    cpu = pr.probe_classification(X, y, n_permutations=1, tol=1e-7)
    gpu = pr.probe_classification(X, y, n_permutations=1, tol=1e-7, device="cuda")
    np.testing.assert_array_equal(cpu["accuracy"], gpu["accuracy"])
    np.testing.assert_array_equal(cpu["chance_accuracy"], gpu["chance_accuracy"])


def test_layer_rows_equal_layer_by_layer_rows():
    """The stage's warm-started pass over layers gives the rows of layer_metrics on each layer."""
    rng = np.random.default_rng(12)
    y = np.repeat(np.arange(3), 30)
    layers = np.stack([rng.normal(size=(90, 6)) + s * np.eye(3, 6)[y] for s in (0.2, 1.0, 3.0)])
    params = {"n_folds": 3, "n_permutations": 2}
    rows = pr.layer_rows(layers, y, params)
    for layer in range(3):
        direct = pr.layer_metrics(layers[layer], y, params)
        assert [(r["metric"], r["statistic"]) for r in rows[layer]] == [(r["metric"], r["statistic"]) for r in direct]
        np.testing.assert_allclose([r["value"] for r in rows[layer]], [r["value"] for r in direct], atol=0.02)
    target = layers[2] @ rng.normal(size=6)
    regression = pr.layer_rows(layers, target, params)
    assert [r["metric"] for r in regression[0]] == ["probe_r2", "probe_r2", "probe_chance_r2", "probe_chance_r2"]


def test_transfer_rows_summarise_leave_one_group_out_per_layer():
    """transfer_rows: per layer the mean and std over held-out groups of probe_by_group's scores."""
    rng = np.random.default_rng(13)
    y = np.repeat(np.arange(2), 60)
    groups = np.array(["a", "b", "c"])[np.arange(120) % 3]
    layers = np.stack([rng.normal(size=(120, 5)) + s * np.eye(2, 5)[y] for s in (0.1, 4.0)])
    rows = pr.transfer_rows(layers, y, groups, "template", progress=False)
    assert len(rows) == 2
    for layer, layer_rows in enumerate(rows):
        direct = pr.probe_by_group(layers[layer], y, groups)
        got = {(r["metric"], r["statistic"]): r["value"] for r in layer_rows}
        assert set(got) == {(m, s) for m in pr.TRANSFER_METRICS[:3] for s in ("mean", "std")}
        assert got["probe_transfer_accuracy", "mean"] == pytest.approx(direct["accuracy"].mean(), abs=1e-12)
        assert got["probe_transfer_accuracy", "std"] == pytest.approx(direct["accuracy"].std(), abs=1e-12)
        assert {r["transfer_by"] for r in layer_rows} == {"template"} and {r["n_splits"] for r in layer_rows} == {3}
    assert rows[1][0]["value"] == 1.0  # separated classes transfer perfectly
    regression = pr.transfer_rows(layers, layers[1] @ np.arange(1.0, 6.0), groups, "template", progress=False)
    assert [r["metric"] for r in regression[1]] == ["probe_transfer_r2"] * 2 and regression[1][0]["value"] > 0.999
