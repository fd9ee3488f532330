"""repbench.metrics.alignment.calibration: permutation calibration (τ, p, calibrated score) and the
closed-form RV (= linear CKA) permutation null."""

import json
import pathlib
import sys

import numpy as np
import pytest
from reference import dense_calibrate, dense_rv_null, enumerated_rv, graphs, rotation
from scipy import stats

from repbench.metrics import alignment as al
from repbench.metrics.alignment import calibration as cal
from repbench.metrics.alignment.kernels import _gram_factor, _prepare_kernel_layer

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_calibration_reference import LAYER_CASES, SCALAR_CASES, layer_case, scalar_case  # noqa: E402

REFERENCE = json.loads((FIXTURES / "calibration_reference.json").read_text())
FLOAT32_REL = 1e-6  # the reference package computes in float32 (eps 1.2e-7; a few operations)


# ----------------------------------------------------------------------------------- permutation calibration

@pytest.mark.parametrize("lower", [False, True])
def test_calibrate_matches_dense_rule(lower):
    rng = np.random.default_rng(0)
    for k in (1, 5, 19, 20, 57, 200):
        for alpha in (0.05, 0.1, 0.5):
            null = np.round(rng.uniform(size=k), 2)  # rounded: ties
            for observed in (null[0], 0.5, float(np.round(rng.uniform(), 2)), 1.0, 0.0):
                got = cal.calibrate(observed, null, alpha, lower_is_more_similar=lower)
                want = dense_calibrate(observed, null, alpha, lower_is_more_similar=lower)
                assert got["tau"] == want["tau"] and got["p_value"] == want["p_value"]
                assert got["calibrated"] == pytest.approx(want["calibrated"], rel=1e-12, abs=1e-15)
                if k > 1:
                    for key in ("null_mean", "null_std", "z"):
                        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12)
                assert got["n_permutations"] == k and got["n_nan"] == 0


def test_calibrate_distance_is_the_mirror_of_similarity():
    rng = np.random.default_rng(1)
    null = rng.uniform(0.2, 0.9, size=99)
    for observed in (0.05, 0.3, 0.95):
        distance = cal.calibrate(observed, null, lower_is_more_similar=True, best=0.0)
        mirrored = cal.calibrate(-observed, -null, best=0.0)
        assert distance["tau"] == -mirrored["tau"]
        assert distance["p_value"] == mirrored["p_value"]
        assert distance["calibrated"] == mirrored["calibrated"]
    # a distance far below chance: p = 1/(K+1), s* = (τ − d)/(τ − 0)
    low = cal.calibrate(0.05, null, lower_is_more_similar=True)
    assert low["p_value"] == 1 / 100
    assert low["calibrated"] == pytest.approx((low["tau"] - 0.05) / low["tau"])
    assert low["tau"] == np.sort(np.append(null, 0.05))[::-1][94]  # ⌈0.95·100⌉ = 95th largest


def test_calibrate_needs_19_permutations_at_alpha_005():
    """K ≤ 18: τ is the largest of all K+1 values, so s* ≡ 0 even for an observed far above the null."""
    rng = np.random.default_rng(2)
    for k in range(1, 19):
        result = cal.calibrate(0.99, rng.uniform(0, 0.1, size=k))
        assert result["tau"] == 0.99 and result["calibrated"] == 0.0
        assert result["p_value"] == 1 / (k + 1)
    null = rng.uniform(0, 0.1, size=19)
    result = cal.calibrate(0.99, null)  # K = 19: the 19th of 20 values, the null's max
    assert result["tau"] == null.max()
    assert result["calibrated"] == pytest.approx((0.99 - null.max()) / (1 - null.max()))


def test_calibrate_nan_handling():
    null = np.array([0.1, np.nan, 0.2, 0.3, np.nan])
    result = cal.calibrate(0.25, null, alpha=0.5)
    assert result["n_nan"] == 2 and result["n_permutations"] == 3
    assert result["p_value"] == (1 + 1) / 4
    assert result["tau"] == dense_calibrate(0.25, null, alpha=0.5)["tau"]
    assert np.isnan(cal.calibrate(float("nan"), null)["calibrated"])
    empty = cal.calibrate(0.3, [np.nan, np.nan])
    assert np.isnan(empty["p_value"]) and empty["n_permutations"] == 0 and empty["n_nan"] == 2
    with pytest.raises(ValueError):
        cal.calibrate(0.3, null, alpha=1.0)


@pytest.mark.parametrize("name", sorted(SCALAR_CASES))
def test_calibrate_matches_reference_package(name):
    """``calibrated_similarity.calibrate`` fed the same (observed, null): τ is one of the (float32-exact)
    inputs, so equal; p and s* to the package's float32 rounding."""
    observed, null, alpha = scalar_case(name)
    want = REFERENCE["scalar"][name]
    got = cal.calibrate(observed, null, alpha)
    assert got["tau"] == pytest.approx(want["tau"], rel=1e-7)  # float32 → float64 of the same value
    assert got["tau"] == np.float32(want["tau"])
    assert got["p_value"] == pytest.approx(want["p_value"], rel=FLOAT32_REL)
    assert got["calibrated"] == pytest.approx(want["calibrated"], rel=FLOAT32_REL, abs=1e-7)


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_null_calibration_matches_reference_calibrate_layers(name):
    """``calibrate_layers`` (same permutations, its own linear CKA, aggregates max / last / matched depth)
    against ``null_calibration_prepared`` on the same layers and seed."""
    layers_a, layers_b, perms, alpha, seed = layer_case(name)
    model_a = al.prepare_model(layers_a, None, 1, ("cka",))
    model_b = al.prepare_model(layers_b, None, 1, ("cka",))
    got = al.null_calibration_prepared(model_a, model_b, ("cka",), len(perms), seed=seed, alpha=alpha)["cka"]
    for summary in al.SUMMARIES:
        want = REFERENCE["layers"][name][summary]
        assert got[summary]["tau"] == pytest.approx(want["tau"], rel=FLOAT32_REL), summary
        assert got[summary]["p_value"] == pytest.approx(want["p_value"], rel=FLOAT32_REL), summary
        assert got[summary]["calibrated"] == pytest.approx(want["calibrated"], rel=1e-5, abs=1e-7), summary


def test_summarize_best_for_distances():
    m = np.array([[0.4, 0.2, np.nan], [0.1, 0.3, 0.5]])
    low = al.summarize(m, lower_is_more_similar=True)
    assert low["max"] == 0.1 and low["argmax"] == (1, 0)
    assert low["last"] == 0.5
    high = al.summarize(m)
    assert high["max"] == 0.5 and high["argmax"] == (1, 2)
    assert low["matched_depth"] == high["matched_depth"]


def _related_layers(rng, n, n_layers, base, noise):
    return [base @ rng.normal(size=(base.shape[1], 6)) + noise * rng.normal(size=(n, 6)) for _ in range(n_layers)]


def test_rotated_copy_is_fully_calibrated_for_mutual_knn():
    """B = AQ (Q orthogonal): identical cosine graphs, mutual_knn = 1 > every permuted value →
    p = 1/(K+1) and s* = (1 − τ)/(1 − τ) = 1 (K = 39 ≥ 19)."""
    rng = np.random.default_rng(3)
    n, k, P = 150, 5, 39
    layers_a = [rng.normal(size=(n, 8)) for _ in range(2)]
    layers_b = [layers_a[1] @ rotation(rng, 8), rng.normal(size=(n, 8))]
    ga, gb = np.stack(graphs(*layers_a, kmax=k)), np.stack(graphs(*layers_b, kmax=k))
    model_a = al.prepare_model(None, ga, k, ("mutual_knn",))
    model_b = al.prepare_model(None, gb, k, ("mutual_knn",))
    result = al.null_calibration_prepared(model_a, model_b, ("mutual_knn",), P, seed=4)["mutual_knn"]
    assert result["max"]["observed"] == 1.0
    assert result["max"]["p_value"] == 1 / (P + 1)
    assert result["max"]["calibrated"] == 1.0
    assert result["max"]["tau"] < 0.2  # the null of the best pair: a few chance overlaps out of k


def test_independent_models_are_calibrated_to_zero():
    """Independent A and B: the observed max is exchangeable with the K = 19 permuted maxima, so
    P(s* > 0) = P(observed is the strict largest of 20) ≤ 1/20. Over 30 seeds the count of s* > 0 is
    Binomial(30, ≤ 0.05) (mean 1.5); ≤ 5 holds with probability > 0.99 under the null, while a calibration
    that ignored the null (e.g. τ = null mean) gives s* > 0 in about half the seeds."""
    n, k, P, seeds = 50, 4, 19, 30
    positive = 0
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        ga = np.stack(graphs(*[rng.normal(size=(n, 5)) for _ in range(2)], kmax=k))
        gb = np.stack(graphs(*[rng.normal(size=(n, 5)) for _ in range(2)], kmax=k))
        model_a = al.prepare_model(None, ga, k, ("mutual_knn",))
        model_b = al.prepare_model(None, gb, k, ("mutual_knn",))
        result = al.null_calibration_prepared(model_a, model_b, ("mutual_knn",), P, seed=seed)["mutual_knn"]
        positive += result["max"]["calibrated"] > 0
    assert positive <= 5
    assert stats.binom.sf(5, seeds, 0.05) < 0.01  # the bound's justification


def test_null_calibration_lower_is_more_similar():
    """A metric declared lower-is-more-similar: summaries take the minimum, calibration the mirrored rule."""
    rng = np.random.default_rng(5)
    n, k, P = 80, 4, 19
    base = rng.normal(size=(n, 5))
    layers = [base + 0.1 * rng.normal(size=(n, 5)) for _ in range(2)]
    g = np.stack(graphs(*layers, kmax=k))
    model = al.prepare_model(None, g, k, ("mutual_knn",))
    similar = al.null_calibration_prepared(model, model, ("mutual_knn",), P, seed=1)["mutual_knn"]
    lower = al.null_calibration_prepared(model, model, ("mutual_knn",), P, seed=1,
                                         lower_is_more_similar=frozenset({"mutual_knn"}))["mutual_knn"]
    # read as a distance, a high overlap is "far": p = 1 (every permuted value ≤ observed)
    matrix = al.pair_matrices_prepared(model, model, ("mutual_knn",))["mutual_knn"]
    assert lower["max"]["observed"] == matrix.min() < similar["max"]["observed"] == matrix.max()
    assert lower["max"]["p_value"] == 1.0 and lower["max"]["calibrated"] == 0.0
    assert similar["max"]["p_value"] == 1 / (P + 1)


# ----------------------------------------------------------------------------------- closed-form RV null

def _kernel(X):
    """A layer's kernel terms and RV skewness terms from its centred Gram factor (V√Λ of the Gram when D > N)."""
    factor = _gram_factor(np.asarray(X, dtype=np.float64) - np.mean(X, axis=0))
    return _prepare_kernel_layer(factor.copy())[0], cal.rv_skewness_terms(factor)


def test_rv_null_matches_dense_coeffrv():
    rng = np.random.default_rng(6)
    for n, da, db in ((12, 3, 5), (40, 7, 2), (30, 45, 50)):
        X = rng.normal(size=(n, da)) ** 3
        Y = rng.normal(size=(n, db)) + X[:, :1]
        rv, mean, variance, skewness = dense_rv_null(X, Y)
        (ka, sa), (kb, sb) = _kernel(X), _kernel(Y)
        null = cal.rv_null_from_layers(ka, kb, sa, sb)
        assert null["mean"] == pytest.approx(mean, rel=1e-9)
        assert null["std"] ** 2 == pytest.approx(variance, rel=1e-9)
        assert null["skewness"] == pytest.approx(skewness, rel=1e-9)
        assert al.linear_cka(X, Y) == pytest.approx(rv, rel=1e-9)


def test_rv_single_columns():
    """One column each: RV = r² (squared Pearson correlation) and β = 1, so E₀ = 1/(n−1)."""
    rng = np.random.default_rng(7)
    n = 25
    x, y = rng.normal(size=(n, 1)), rng.normal(size=(n, 1))
    (ka, sa), (kb, sb) = _kernel(x), _kernel(y)
    assert al.linear_cka(x, y) == pytest.approx(np.corrcoef(x[:, 0], y[:, 0])[0, 1] ** 2, rel=1e-12)
    assert cal.rv_null_from_layers(ka, kb, sa, sb)["mean"] == pytest.approx(1 / (n - 1), rel=1e-12)


def test_rv_moments_exact_over_all_permutations_n7():
    """n = 7: mean, variance and skewness equal the moments over all 5040 permutations (the formulas are
    exact permutation moments; this also checks the transcription of coeffRV's skewness polynomial)."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(7, 3)) ** 2
    Y = rng.normal(size=(7, 2)) ** 3
    values = enumerated_rv(X, Y)
    assert len(values) == 5040
    (ka, sa), (kb, sb) = _kernel(X), _kernel(Y)
    null = cal.rv_null_from_layers(ka, kb, sa, sb)
    assert null["mean"] == pytest.approx(values.mean(), rel=1e-10)
    assert null["std"] ** 2 == pytest.approx(values.var(), rel=1e-10)
    assert null["skewness"] == pytest.approx(stats.skew(values), rel=1e-9)


def test_rv_null_against_2000_permutations():
    """n = 30: the closed-form mean/variance against 2000 random permutations. Tolerances: the Monte-Carlo
    mean has standard error sd/√2000 (tested within 4 s.e.); the sample variance has relative s.e.
    √((κ₄/σ⁴ − 1)/2000), bounded here with the sample kurtosis (tested within 4 s.e.). The Pearson III p-value
    against the permutation p-value (add-one, 2000 permutations): within 4 binomial s.e. + 0.01 for the
    approximation."""
    rng = np.random.default_rng(9)
    n = 30
    X = rng.normal(size=(n, 4)) * np.array([3.0, 1.0, 0.5, 0.2])
    Y = 0.12 * X[:, :3] @ rng.normal(size=(3, 3)) + rng.normal(size=(n, 3))
    (ka, sa), (kb, sb) = _kernel(X), _kernel(Y)
    null = cal.rv_null_from_layers(ka, kb, sa, sb)
    xc, yc = X - X.mean(0), Y - Y.mean(0)
    norm = np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)
    perm_rng = np.random.default_rng(10)
    sampled = np.array([np.sum((xc.T @ yc[perm_rng.permutation(n)]) ** 2) / norm for _ in range(2000)])
    assert abs(sampled.mean() - null["mean"]) < 4 * sampled.std() / np.sqrt(2000)
    kurtosis = stats.kurtosis(sampled, fisher=False)
    rel_se = np.sqrt((kurtosis - 1) / 2000)
    assert abs(sampled.var(ddof=1) / null["std"] ** 2 - 1) < 4 * rel_se
    observed = np.sum((xc.T @ yc) ** 2) / norm
    closed = cal.rv_calibration(observed, null)
    permuted = cal.calibrate(observed, sampled)
    assert 0.005 < permuted["p_value"] < 0.5  # an informative p (not at the add-one floor)
    p = permuted["p_value"]
    assert abs(closed["p_value"] - p) < 4 * np.sqrt(p * (1 - p) / 2000) + 0.01
    assert closed["tau"] == pytest.approx(permuted["tau"], rel=0.03)  # 95% quantiles (MC s.e. ≈ 1 %)


def test_pearson3_tail_and_quantile():
    """coeffRV's gamma form of the Pearson III equals scipy's pearson3 (standardised), both signs of skewness."""
    for skew in (0.8, -0.6, 0.0):
        for z in (-1.0, 0.3, 2.5):
            assert cal._pearson3_upper_tail(z, skew) == pytest.approx(stats.pearson3.sf(z, skew), rel=1e-10)
        q = cal._pearson3_quantile(0.95, skew)
        assert q == pytest.approx(stats.pearson3.ppf(0.95, skew), rel=1e-10)
        assert cal._pearson3_upper_tail(q, skew) == pytest.approx(0.05, rel=1e-10)


def test_rv_null_grid():
    rng = np.random.default_rng(11)
    n = 50
    base = rng.normal(size=(n, 4))
    layers_a = _related_layers(rng, n, 3, base, 0.5)
    layers_b = _related_layers(rng, n, 2, base, 0.5) + [rng.normal(size=(n, 6))]
    model_a = al.prepare_model(layers_a, None, 1, ("cka",))
    model_b = al.prepare_model(layers_b, None, 1, ("cka",))
    grid = cal.rv_null_grid(model_a, model_b)
    assert grid["p_value"].shape == (3, 3)
    for i in range(3):
        for j in range(3):
            (ka, sa), (kb, sb) = _kernel(layers_a[i]), _kernel(layers_b[j])
            cell = cal.rv_calibration(al.linear_cka(layers_a[i], layers_b[j]), cal.rv_null_from_layers(ka, kb, sa, sb))
            for key in ("null_mean", "null_std", "z", "p_value", "tau", "calibrated"):
                assert grid[key][i, j] == pytest.approx(cell[key], rel=1e-9, abs=1e-15), (key, i, j)
    assert np.all(grid["p_value"][:, :2] < 1e-6) and np.all(grid["calibrated"][:, :2] > 0)
    assert np.all(grid["calibrated"][:, 2] == 0)  # the independent layer
    assert grid["last"]["p_value"] == grid["p_value"][-1, -1]
    assert grid["max"]["observed"] == grid["observed"].max()
    assert grid["max"]["p_value"] == pytest.approx(min(1.0, 9 * grid["p_value"].min()))
    # Bonferroni-calibrated max ≤ the uncorrected best cell's calibrated score
    assert 0 < grid["max"]["calibrated"] <= grid["calibrated"].max()
    normal = cal.rv_null_grid(model_a, model_b, skewness=False)
    assert np.all(np.isnan(normal["skewness"])) and np.allclose(normal["null_mean"], grid["null_mean"])


def test_rv_null_grid_independent_max_is_zero_at_level():
    """Independent models, 3 × 3 grid, 100 seeds: the Bonferroni-calibrated max is > 0 with probability
    ≤ α = 0.05 (up to the Pearson III approximation); ≤ 11 of 100 holds with probability 0.99 at 0.05."""
    positive = 0
    for seed in range(100):
        rng = np.random.default_rng(200 + seed)
        a = [rng.normal(size=(20, 3)) for _ in range(3)]
        b = [rng.normal(size=(20, 3)) for _ in range(3)]
        grid = cal.rv_null_grid(al.prepare_model(a, None, 1, ("cka",)), al.prepare_model(b, None, 1, ("cka",)))
        positive += grid["max"]["calibrated"] > 0
    assert positive <= 11
    assert stats.binom.sf(11, 100, 0.05) < 0.01


def test_rv_null_small_n_enumerates():
    rng = np.random.default_rng(12)
    a, b = [rng.normal(size=(5, 2))], [rng.normal(size=(5, 3))]
    grid = cal.rv_null_grid(al.prepare_model(a, None, 1, ("cka",)), al.prepare_model(b, None, 1, ("cka",)))
    values = enumerated_rv(a[0], b[0])
    observed = al.linear_cka(a[0], b[0])
    assert grid["observed"][0, 0] == pytest.approx(observed, rel=1e-12)
    assert grid["p_value"][0, 0] == pytest.approx(np.mean(values >= observed - 1e-12), rel=1e-12)
    assert grid["null_mean"][0, 0] == pytest.approx(np.mean(values[1:]), rel=1e-12)
    with pytest.raises(ValueError):
        cal.rv_null_from_layers(_kernel(a[0])[0], _kernel(b[0])[0])


def test_rv_skewness_is_numerically_stable_for_large_n():
    """The skewness polynomial cancels terms of order n⁶: evaluated in float64 and in exact rational arithmetic
    (``fractions.Fraction``) on the same layer terms it agrees to 1e-8 at N = 2000."""
    import dataclasses
    from fractions import Fraction

    rng = np.random.default_rng(13)
    n = 2000
    X = rng.normal(size=(n, 6)) * np.linspace(3.0, 0.1, 6)
    Y = rng.normal(size=(n, 4)) ** 2
    terms = [cal.rv_skewness_terms(Z - Z.mean(axis=0)) for Z in (X, Y)]
    exact = [cal.RvSkewnessTerms(**{key: value if key == "n" else Fraction(value)
                                    for key, value in dataclasses.asdict(t).items()}) for t in terms]
    assert cal.rv_skewness(*terms) == pytest.approx(float(cal.rv_skewness(*exact)), rel=1e-8)


def related_layers(seed: int, n: int, k: int):
    """(rng, A's 3 layers, B's 2 layers, their cosine graphs (kmax k)): two models of one latent, 4-D."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 4))
    layers_a = [base @ rng.normal(size=(4, 7)) + 0.3 * rng.normal(size=(n, 7)) for _ in range(3)]
    layers_b = [base @ rng.normal(size=(4, 6)) + 0.5 * rng.normal(size=(n, 6)) for _ in range(2)]
    ga, gb = np.stack(graphs(*layers_a, kmax=k)), np.stack(graphs(*layers_b, kmax=k))
    return rng, layers_a, layers_b, ga, gb


def test_null_on_threads_equals_the_sequential_null():
    """The permutations are drawn before they run: the null on two threads is the sequential one, value for value,
    and a model prepared with dense metrics keeps its graphs' null (the unused per-layer states are dropped)."""
    n, k, P = 120, 5, 23
    _, layers_a, layers_b, ga, gb = related_layers(8, n, k)
    metrics = ("mutual_knn", "cycle_knn_ab", "cycle_knn_ba", "lcs_knn", "jaccard_knn", "rank_sim")
    wide = metrics + ("cka", "cknna", "svcca")
    model_a, model_b = (al.prepare_model(layers, g, k, wide) for layers, g in ((layers_a, ga), (layers_b, gb)))
    sequential = al.null_calibration_prepared(model_a, model_b, metrics, P, seed=2)
    threaded = al.null_calibration_prepared(model_a, model_b, metrics, P, seed=2, workers=2)
    graphs_only = al.null_calibration_prepared(*(al.prepare_model(None, g, k, metrics) for g in (ga, gb)),
                                               metrics, P, seed=2)
    assert threaded == sequential == graphs_only
    assert sequential["mutual_knn"]["max"]["p_value"] == 1 / (P + 1)  # related models: the null was really run


@pytest.mark.parametrize("budget,block_rows", [(1, None), (2**30, None), (1, 16)])
def test_cross_product_null_in_one_pass_equals_the_per_permutation_pass(budget, block_rows, monkeypatch):
    """cka/unbiased_cka/svcca's null runs with the permutations innermost (each factor fetched once per group of
    A's layers): its matrices are those of the permuted models' own pass bit for bit, with every factor re-read
    (budget 1 byte: nothing cached, one A layer per group) or all cached, with the reordered B gathered in one
    block or in blocks of 16 rows, and the calibration equals the one the per-permutation pass gives (forced
    here by claiming the dense group's factor metrics are asked)."""
    from repbench.metrics.alignment import dense, summaries

    if block_rows:  # B's factors are (N, 6): 16 rows of float64 per block
        monkeypatch.setattr(al, "_CROSS_BLOCK_BYTES", 8 * 6 * block_rows)
    n, k, P = 90, 5, 7
    rng, layers_a, layers_b, ga, gb = related_layers(9, n, k)
    reads = []

    class Counted(list):
        def __getitem__(self, i):
            reads.append(i)
            return list.__getitem__(self, i)

    cross = ("cka", "unbiased_cka", "svcca")
    model_a = al.prepare_model(Counted(layers_a), ga, k, cross + ("mutual_knn",), budget_bytes=budget)
    model_b = al.prepare_model(Counted(layers_b), gb, k, cross + ("mutual_knn",), budget_bytes=budget)
    perms = [rng.permutation(n) for _ in range(P)]
    reads.clear()
    one_pass = al.cross_null_matrices(model_a, model_b, cross, perms)
    assert len(reads) == (len(layers_a) + len(layers_a) * len(layers_b) if budget == 1 else 0)  # not × P
    for perm, mats in zip(perms, one_pass):
        inverse = np.argsort(perm)
        own = al.pair_matrices_prepared(model_a, model_b.permuted(perm, inverse), cross)
        for name in cross:
            np.testing.assert_array_equal(mats[name], own[name], err_msg=name)
    metrics = cross + ("mutual_knn",)
    fast = al.null_calibration_prepared(model_a, model_b, metrics, P, seed=4, workers=2)
    monkeypatch.setattr(dense, "uses_factors", lambda chosen: True)
    assert summaries.null_calibration_prepared(model_a, model_b, metrics, P, seed=4, workers=2) == fast


def test_reordered_crosses_are_the_product_with_the_reordered_factor(monkeypatch):
    """Σ over row blocks of Pᵢ[block]ᵀ P_b[rows[block]] = Pᵢᵀ P_b[rows] (to rounding), whatever the block size."""
    rng = np.random.default_rng(3)
    n = 53
    factors_a = {0: rng.normal(size=(n, 5)), 2: rng.normal(size=(n, 3))}
    factor_b, rows = rng.normal(size=(n, 4)), rng.permutation(n)
    whole = {i: f.T @ factor_b[rows] for i, f in factors_a.items()}
    for block_rows in (1, 7, 53, 1000):
        monkeypatch.setattr(al, "_CROSS_BLOCK_BYTES", 8 * 4 * block_rows)
        blocked = al._reordered_crosses(factors_a, factor_b, rows)
        assert blocked.keys() == whole.keys()
        for i in whole:
            np.testing.assert_allclose(blocked[i], whole[i], rtol=1e-12, atol=1e-12)
