"""repbench.metrics.alignment.dense: rsa, procrustes, shape_metric, pwcca, cka_rbf (and rv, computed with cka) against dense formulas,
planted truth, the layer × layer pass, permutations, the pairwise subset and the peers' own values."""

import json
import pathlib
import sys

import numpy as np
import pytest
from reference import (
    dense_cka_rbf,
    dense_procrustes,
    dense_pwcca,
    dense_rsa,
    dense_rv,
    dense_shape_metric,
    related_pair,
    rotation,
)

from repbench.metrics import alignment as al
from repbench.metrics.alignment import dense as dn
from repbench.metrics.alignment import linear_cka
from repbench.neighbors import knn

FIXTURES = pathlib.Path(__file__).with_name("fixtures")
sys.path.insert(0, str(FIXTURES))
from make_dense_similarity_reference import checksum, make_data  # noqa: E402

REFERENCE = json.loads((FIXTURES / "dense_similarity_reference.json").read_text())

# (N, Dₐ, D_b): N > D with Dₐ < D_b and Dₐ > D_b (pwcca picks the other side), and D > N (Gram-factor path)
SHAPES = [(90, 6, 9), (80, 10, 7), (40, 60, 50)]


def _pair(shape, seed=1):
    n, da, db = shape
    A, B = related_pair(np.random.default_rng(seed), n=n, da=da, db=db, noise=0.8)
    return A + 2.0, B - 1.0  # not centred: every metric centres (or is translation invariant)


# ------------------------------------------------------------------------------ dense formulas, 1e-9


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rdm", ["correlation", "euclidean"])
@pytest.mark.parametrize("compare", ["spearman", "pearson"])
def test_rsa_equals_scipy_rdms(shape, rdm, compare):
    A, B = _pair(shape)
    assert dn.rsa(A, B, rdm, compare) == pytest.approx(dense_rsa(A, B, rdm, compare), rel=1e-9)


@pytest.mark.parametrize("shape", SHAPES)
def test_procrustes_rv_cka_rbf_equal_dense_formulas(shape):
    A, B = _pair(shape)
    assert dn.procrustes(A, B) == pytest.approx(dense_procrustes(A, B), rel=1e-9)
    assert al.METRICS["rv"](A, B) == pytest.approx(dense_rv(A, B), rel=1e-9)
    for sigma in (0.2, 0.8):
        assert dn.cka_rbf(A, B, sigma) == pytest.approx(dense_cka_rbf(A, B, sigma), rel=1e-9)


@pytest.mark.parametrize("shape", SHAPES)
def test_rv_is_linear_cka(shape):
    A, B = _pair(shape)
    assert al.METRICS["rv"](A, B) == pytest.approx(linear_cka(A, B), rel=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9, 1.0])
def test_shape_metric_equals_dense_formula(shape, alpha):
    A, B = _pair(shape)
    expected = dense_shape_metric(A, B, alpha)
    if shape[1] > shape[0] and alpha == 0:  # D > N: full whitening makes every canonical correlation 1
        assert expected == pytest.approx(0.0, abs=1e-6) and dn.shape_metric(A, B, alpha) == pytest.approx(0, abs=1e-6)
    else:
        assert dn.shape_metric(A, B, alpha) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_pwcca_equals_dense_cca(shape):
    A, B = _pair(shape)
    assert dn.pwcca(A, B) == pytest.approx(dense_pwcca(A, B), rel=1e-9)
    assert dn.pwcca(B, A) == pytest.approx(dense_pwcca(B, A), rel=1e-9)


def test_pwcca_needs_more_samples_than_features():
    A, B = _pair(SHAPES[2])
    with pytest.raises(ValueError, match="more samples than features"):
        dn.pwcca(A, B)
    wide = dn.prepare([A], None, {})  # the group's other metrics stay usable on wide layers
    assert np.isfinite(dn.matrices(wide, wide, ("procrustes", "shape_metric"), {})["procrustes"]).all()
    # in the layer × layer pass a layer pair with D ≥ N on either side is NaN (the job goes on; the docs say why)
    assert np.isnan(dn.matrices(wide, wide, ("pwcca",), {})["pwcca"]).all()


def test_canonical_correlations_equal_qr_cca():
    A, B = _pair(SHAPES[0])
    Qa, Qb = np.linalg.qr(A - A.mean(0))[0], np.linalg.qr(B - B.mean(0))[0]
    expected = np.linalg.svd(Qa.T @ Qb, compute_uv=False)
    np.testing.assert_allclose(dn.canonical_correlations(A, B), expected, rtol=1e-9)


# ---------------------------------------------------------------------------------------- planted truth


def test_rotation_gives_perfect_scores():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(120, 7)) * np.linspace(3.0, 0.5, 7)
    B = A @ rotation(rng, 7) + 4.0
    for compare in ("spearman", "pearson"):
        assert dn.rsa(A, B, "euclidean", compare) == pytest.approx(1.0, abs=1e-12)
    assert al.METRICS["rv"](A, B) == pytest.approx(1.0, abs=1e-12)
    assert dn.cka_rbf(A, B) == pytest.approx(1.0, abs=1e-12)
    assert dn.procrustes(A, B) == pytest.approx(0.0, abs=1e-6)  # √(2 − 2cos): rounding 1e-16 → 1e-8
    assert dn.shape_metric(A, B, 1.0) == pytest.approx(0.0, abs=1e-6)


def test_invertible_linear_map_gives_zero_whitened_distance_and_unit_pwcca():
    rng = np.random.default_rng(6)
    A = rng.normal(size=(300, 5)) * np.linspace(2.0, 0.5, 5)
    B = A @ rng.normal(size=(5, 5)) - 1.0
    assert dn.shape_metric(A, B, 0.0) == pytest.approx(0.0, abs=1e-6)
    assert dn.pwcca(A, B) == pytest.approx(1.0, rel=1e-9)
    assert dn.shape_metric(A, B, 1.0) > 0.1  # not a rotation: the unwhitened metric sees the difference


def test_independent_data_give_rsa_near_zero():
    rng = np.random.default_rng(7)
    A, B = rng.normal(size=(300, 10)), rng.normal(size=(300, 10))
    for rdm in ("correlation", "euclidean"):
        assert abs(dn.rsa(A, B, rdm)) < 0.05
    related = dn.rsa(A, A + 0.5 * rng.normal(size=A.shape))
    assert related > 0.5


# ------------------------------------------------------------------------- layer × layer, permutations


OPTIONS = {"rsa": {"rdm": "euclidean", "compare": "pearson"}, "shape_metric": {"alpha": 0.5},
           "cka_rbf": {"sigma": 0.4}, "pairwise_max_samples": 2000, "seed": 3}


def _layers(seed, n, widths):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 4))
    return [np.tanh(base @ rng.normal(size=(4, d))) + 0.3 * rng.normal(size=(n, d)) for d in widths]


def _single(A, B, metric, options):
    return {"rsa": lambda: dn.rsa(A, B, options["rsa"]["rdm"], options["rsa"]["compare"]),
            "procrustes": lambda: dn.procrustes(A, B),
            "shape_metric": lambda: dn.shape_metric(A, B, options["shape_metric"]["alpha"]),
            "pwcca": lambda: dn.pwcca(A, B),
            "cka_rbf": lambda: dn.cka_rbf(A, B, options["cka_rbf"]["sigma"])}[metric]()


@pytest.mark.parametrize("cache_bytes", [dn.DEFAULT_FACTOR_CACHE_BYTES, 0])  # 0: every factor re-read
@pytest.mark.parametrize(("widths_a", "widths_b"), [((5, 9, 12), (8, 6)), ((5, 90, 12), (80, 6))])  # D > N too
def test_matrices_equal_single_pair_calls(cache_bytes, widths_a, widths_b):
    layers_a, layers_b = _layers(1, 70, widths_a), _layers(2, 70, widths_b)
    metrics = tuple(m for m in dn.METRICS if m != "pwcca" or max(*widths_a, *widths_b) < 70)
    a = dn.prepare(layers_a, None, OPTIONS, metrics=metrics, cache_bytes=cache_bytes)
    b = dn.prepare(layers_b, None, OPTIONS, metrics=metrics, cache_bytes=cache_bytes)
    assert len(a) == 3 and len(b) == 2
    out = dn.matrices(a, b, metrics, OPTIONS)
    assert set(out) == set(metrics)
    for name, matrix in out.items():
        assert matrix.shape == (3, 2) and matrix.dtype == np.float64
        expected = [[_single(A, B, name, OPTIONS) for B in layers_b] for A in layers_a]
        np.testing.assert_allclose(matrix, expected, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("widths_b", [(7, 6, 4), (7, 75)])  # D > N: Gram-eigen factors
def test_permuted_equals_recomputing_on_permuted_samples(widths_b):
    layers_a, layers_b = _layers(3, 60, (5, 8)), _layers(4, 60, widths_b)
    metrics = tuple(m for m in dn.METRICS if m != "pwcca" or max(widths_b) < 60)
    a, b = dn.prepare(layers_a, None, OPTIONS, metrics), dn.prepare(layers_b, None, OPTIONS, metrics)
    rng = np.random.default_rng(9)
    permuted, data = b, layers_b
    for _ in range(2):  # composed permutations
        perm = rng.permutation(60)
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(60)
        permuted, data = permuted.permuted(perm, inverse), [X[perm] for X in data]
        expected = dn.matrices(a, dn.prepare(data, None, OPTIONS, metrics), metrics, OPTIONS)
        got = dn.matrices(a, permuted, metrics, OPTIONS)
        for name in metrics:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-10, atol=1e-12, err_msg=name)
    assert not np.allclose(got["rsa"], dn.matrices(a, b, ("rsa",), OPTIONS)["rsa"])


def test_prepare_without_metrics_prepares_the_whole_group():
    a = dn.prepare(_layers(3, 40, (5, 8)), None, {})
    assert a.metrics == dn.METRICS and len(a) == 2
    assert set(dn.matrices(a, a, dn.METRICS, {})) == set(dn.METRICS)


def test_permuted_with_subset_reorders_the_subset_samples():
    options = {**OPTIONS, "pairwise_max_samples": 40}
    A, B = _pair((90, 6, 9), seed=4)
    a, b = dn.prepare([A], None, options), dn.prepare([B], None, options)
    subset = dn.pairwise_subset(90, options)
    perm = np.random.default_rng(2).permutation(90)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(90)
    got = dn.matrices(a, b.permuted(perm, inverse), dn.METRICS, options)
    subset_in_new_order = perm[np.isin(perm, subset)]  # B's subset samples in the order perm gives them
    assert got["rsa"][0, 0] == pytest.approx(dense_rsa(A[subset], B[subset_in_new_order], "euclidean", "pearson"),
                                             rel=1e-9)
    assert got["cka_rbf"][0, 0] == pytest.approx(dense_cka_rbf(A[subset], B[subset_in_new_order], 0.4), rel=1e-9)
    assert got["procrustes"][0, 0] == pytest.approx(dense_procrustes(A, B[perm]), rel=1e-9)  # all samples


# ------------------------------------------------------------------------------------- pairwise subset


def test_pairwise_subset_rule():
    options = {"pairwise_max_samples": 50, "seed": 4}
    assert dn.pairwise_subset(50, options) is None
    subset = dn.pairwise_subset(200, options)
    assert len(subset) == 50 and len(np.unique(subset)) == 50 and np.all(np.diff(subset) > 0)
    expected = np.sort(np.random.default_rng(4).choice(200, 50, replace=False))
    np.testing.assert_array_equal(subset, expected)
    assert not np.array_equal(subset, dn.pairwise_subset(200, {**options, "seed": 5}))


def test_quadratic_metrics_use_the_subset_beyond_the_cap():
    A, B = _pair((150, 5, 8), seed=8)
    subset = dn.pairwise_subset(150, {"pairwise_max_samples": 60, "seed": 1})
    assert dn.rsa(A, B, max_samples=60, seed=1) == pytest.approx(dense_rsa(A[subset], B[subset]), rel=1e-9)
    assert dn.cka_rbf(A, B, max_samples=60, seed=1) == pytest.approx(dense_cka_rbf(A[subset], B[subset]), rel=1e-9)
    assert dn.rsa(A, B, max_samples=60, seed=1) != pytest.approx(dense_rsa(A, B), rel=1e-6)


# ------------------------------------------------------------------------------------------ interface


def test_interface_and_option_checks():
    assert dn.METRICS == ("rsa", "procrustes", "shape_metric", "pwcca", "cka_rbf")
    assert dn.LOWER_IS_MORE_SIMILAR == {"procrustes", "shape_metric"}
    A, B = _pair((30, 4, 5))
    with pytest.raises(ValueError, match="rdm"):
        dn.rsa(A, B, rdm="cosine")
    with pytest.raises(ValueError, match="alpha"):
        dn.shape_metric(A, B, alpha=1.5)
    with pytest.raises(ValueError, match="unknown"):
        dn.prepare([A], None, {}, metrics=("cka",))
    a = dn.prepare([A], None, {}, metrics=("procrustes",))
    with pytest.raises(ValueError, match="not prepared"):
        dn.matrices(a, a, ("rsa",), {})
    with pytest.raises(ValueError, match="different"):
        dn.matrices(dn.prepare([A], None, {"cka_rbf": {"sigma": 0.2}}), dn.prepare([B], None, {}), ("cka_rbf",), {})


# ------------------------------------------------------------------------------- peers' own values


@pytest.mark.parametrize("name", sorted(REFERENCE["datasets"]))
def test_fixture_data_are_regenerated_exactly(name):
    entry = REFERENCE["datasets"][name]
    A, B = make_data(name)
    np.testing.assert_allclose(checksum(A), entry["checksum_a"], rtol=1e-12)
    np.testing.assert_allclose(checksum(B), entry["checksum_b"], rtol=1e-12)


@pytest.mark.parametrize("name", sorted(REFERENCE["datasets"]))
def test_matches_netrep_shape_metric(name):
    A, B = make_data(name)
    values = REFERENCE["datasets"][name]["netrep"]["shape_metric"]
    assert values
    for alpha, value in values.items():  # θ = 0 exactly for alpha = 0 when D > N (all correlations 1)
        assert dn.shape_metric(A, B, float(alpha)) == pytest.approx(value, rel=1e-9, abs=1e-7 * (value == 0)), alpha


@pytest.mark.parametrize("name", sorted(REFERENCE["datasets"]))
def test_matches_resi_rsa_and_procrustes(name):
    A, B = make_data(name)
    resi = REFERENCE["datasets"][name]["resi"]
    for rdm, value in resi["rsa_spearman"].items():
        assert dn.rsa(A, B, rdm, "spearman") == pytest.approx(value, rel=1e-9), rdm
    assert dn.procrustes(A, B) == pytest.approx(resi["procrustes"], rel=1e-9)


@pytest.mark.parametrize("name", sorted(REFERENCE["datasets"]))
def test_matches_google_rbf_cka(name):
    A, B = make_data(name)
    google = REFERENCE["datasets"][name]["google_cka"]
    for sigma, value in google["cka_rbf"].items():
        assert dn.cka_rbf(A, B, float(sigma)) == pytest.approx(value, rel=1e-9), sigma
    assert al.METRICS["rv"](A, B) == pytest.approx(google["linear_cka"], rel=1e-9)


PWCCA_SETS = sorted(name for name, entry in REFERENCE["datasets"].items() if entry["svcca"])


@pytest.mark.parametrize("name", PWCCA_SETS)
def test_canonical_correlations_match_svcca(name):
    A, B = make_data(name)
    peer = REFERENCE["datasets"][name]["svcca"]["canonical_correlations"]
    np.testing.assert_allclose(dn.canonical_correlations(A, B), peer, rtol=1e-9, atol=1e-12)


def test_pwcca_matches_svcca_and_resi_where_their_variates_are_canonical():
    """svcca's compute_pwcca (and resi's copy) orthonormalise uᵢᵀ(Aᶜ)ᵀ + means instead of the canonical variates
    (Aᶜ Σₐₐ^{−½} uᵢ); both coincide when A's columns are centred, orthogonal and of equal norm."""
    A, B = make_data("whitened_6_9")
    entry = REFERENCE["datasets"]["whitened_6_9"]
    assert dn.pwcca(A, B) == pytest.approx(entry["svcca"]["pwcca"], rel=1e-9)
    assert dn.pwcca(A, B) == pytest.approx(entry["resi"]["pwcca"], rel=1e-9)


@pytest.mark.parametrize("name", [n for n in PWCCA_SETS if n != "whitened_6_9"])
def test_pwcca_differs_from_svcca_on_unwhitened_data(name):
    """The documented difference is real: on general data the peers' weighting is not the paper's."""
    A, B = make_data(name)
    entry = REFERENCE["datasets"][name]
    assert entry["svcca"]["pwcca"] == pytest.approx(entry["resi"]["pwcca"], rel=1e-9)
    assert abs(dn.pwcca(A, B) - entry["svcca"]["pwcca"]) > 1e-3
    assert dn.pwcca(A, B) == pytest.approx(dense_pwcca(A, B), rel=1e-9)


@pytest.mark.parametrize("cache_bytes", [0, 2**30])
def test_kernel_scores_from_the_dense_groups_cross_products_equal_their_own_pass(cache_bytes):
    """With a factor metric of the dense group in the same call, CKA, RV, unbiased CKA and SVCCA come from the
    dense pass's cross products (one per layer pair): the same values as the kernel pass alone, and the same
    kNN-pass Jaccard and rank similarity as the neighbourhood group's own pass."""
    rng = np.random.default_rng(31)
    layers_a = [rng.normal(size=(80, d)) for d in (5, 9)]
    layers_b = [rng.normal(size=(80, d)) + layers_a[0][:, :1] for d in (7, 3, 6)]
    graphs = [np.stack([knn(X, 12, "cosine")[0] for X in layers]) for layers in (layers_a, layers_b)]
    kernel = ("cka", "rv", "unbiased_cka", "svcca")
    position = ("jaccard_knn", "rank_sim")
    alone = al.pair_matrices(layers_a, layers_b, graphs[0], graphs[1], 5, kernel, budget_bytes=cache_bytes)
    apart = al.pair_matrices(None, None, graphs[0], graphs[1], 5, position)
    together = al.pair_matrices(layers_a, layers_b, graphs[0], graphs[1], 5,
                                kernel + position + ("mutual_knn", "procrustes"), budget_bytes=cache_bytes)
    for name in kernel:
        np.testing.assert_allclose(together[name], alone[name], rtol=1e-12, atol=1e-14)
    for name in position:
        np.testing.assert_array_equal(together[name], apart[name])


@pytest.mark.parametrize("decimals", [None, 2, 0])
def test_average_ranks_equal_scipy_rankdata_value_for_value(decimals):
    """The RSA ranks (unstable sort, ties averaged) against scipy's rankdata: distinct values, many ties, one run."""
    from scipy.stats import rankdata

    values = np.random.default_rng(6).normal(size=5000)
    if decimals is not None:
        values = np.round(values, decimals)
    np.testing.assert_array_equal(dn.average_ranks(values), rankdata(values))
    np.testing.assert_array_equal(dn.average_ranks(np.full(7, 0.5)), np.full(7, 4.0))
    np.testing.assert_array_equal(dn.average_ranks(np.array([0.0, -0.0, 1.0])), [1.5, 1.5, 3.0])
