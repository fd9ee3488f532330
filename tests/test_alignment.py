"""Alignment metrics (repbench.metrics.alignment) against plain dense N×N implementations of their formulas,
plus the truth checks of METRICS.md."""

import numpy as np
import pytest
from repbench.metrics import alignment as al
from repbench.neighbors import brute_force_knn, knn

# ------------------------------------------------------------------------------------ dense references


def dense_masks(idx, n, k):
    mask = np.zeros((n, n))
    mask[np.arange(n)[:, None], idx[:, :k]] = 1.0
    return mask


def dense_mutual(idx_a, idx_b, k):
    n = len(idx_a)
    return float(((dense_masks(idx_a, n, k) * dense_masks(idx_b, n, k)).sum(1) / k).mean())


def dense_cycle(idx_a, idx_b, k):
    return float(np.mean([i in set(idx_a[idx_b[i, :k], :k].ravel()) for i in range(len(idx_a))]))


def dense_lcs(idx_a, idx_b, k):
    def lcs(x, y):
        table = np.zeros((len(x) + 1, len(y) + 1), dtype=int)
        for i in range(1, len(x) + 1):
            for j in range(1, len(y) + 1):
                table[i, j] = table[i - 1, j - 1] + 1 if x[i - 1] == y[j - 1] else max(table[i - 1, j], table[i, j - 1])
        return table[-1, -1]

    return float(np.mean([lcs(a[:k], b[:k]) / k for a, b in zip(idx_a, idx_b, strict=True)]))


def dense_cka(A, B):
    n = len(A)
    H = np.eye(n) - 1.0 / n
    K, L = A @ A.T, B @ B.T

    def hsic(X, Y):
        return np.trace(X @ H @ Y @ H)

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def dense_hsic1(K, L):
    """Song et al. (2012) eq. 5, literally (works for non-symmetric K, L)."""
    n = len(K)
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0)
    np.fill_diagonal(Lt, 0)
    ones = np.ones(n)
    return (np.trace(Kt @ Lt) + (ones @ Kt @ ones) * (ones @ Lt @ ones) / ((n - 1) * (n - 2))
            - 2 * ones @ Kt @ Lt @ ones / (n - 2)) / (n * (n - 3))


def dense_unbiased_cka(A, B):
    K, L = A @ A.T, B @ B.T
    return dense_hsic1(K, L) / np.sqrt(dense_hsic1(K, K) * dense_hsic1(L, L))


def dense_cknna(A, B, idx_a, idx_b, k):
    n = len(A)
    Au = A / np.linalg.norm(A, axis=1, keepdims=True)
    Bu = B / np.linalg.norm(B, axis=1, keepdims=True)
    K, L = Au @ Au.T, Bu @ Bu.T
    Ma, Mb = dense_masks(idx_a, n, k), dense_masks(idx_b, n, k)
    M = Ma * Mb
    s_kl = dense_hsic1(M * K, M * L)
    s_kk = dense_hsic1(Ma * K, Ma * K)
    s_ll = dense_hsic1(Mb * L, Mb * L)
    return s_kl / np.sqrt(s_kk * s_ll)


def dense_svcca(A, B, variance=0.99, n_components=None):
    """Reduce each side to its top principal directions, then textbook CCA via covariance matrices."""

    def reduce(X):
        Xc = X - X.mean(0)
        _, s, vt = np.linalg.svd(Xc, full_matrices=False)
        if n_components is None:
            r = int(np.argmax(np.cumsum(s**2) / np.sum(s**2) >= variance - 1e-12) + 1)
        else:
            r = n_components
        return Xc @ vt[:r].T

    Xa, Xb = reduce(A), reduce(B)
    Saa, Sbb, Sab = Xa.T @ Xa, Xb.T @ Xb, Xa.T @ Xb
    M = np.linalg.solve(Saa, Sab) @ np.linalg.solve(Sbb, Sab.T)
    rho2 = np.sort(np.linalg.eigvals(M).real)[::-1][: min(Xa.shape[1], Xb.shape[1])]
    return float(np.mean(np.sqrt(np.clip(rho2, 0, 1))))


# ----------------------------------------------------------------------------------------- fixtures


def related_pair(rng, n=120, da=12, db=9, noise=0.5):
    """B is a noisy linear image of A: partially aligned, nothing degenerate."""
    A = rng.normal(size=(n, da)) * np.linspace(2.0, 0.5, da)
    B = A @ rng.normal(size=(da, db)) + noise * rng.normal(size=(n, db))
    return A, B


def graphs(*arrays, kmax=15):
    return [brute_force_knn(X, kmax, "cosine")[0] for X in arrays]


def rotation(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


# ---------------------------------------------------------------------- every metric vs its formula


@pytest.mark.parametrize("k", [1, 5, 15])
def test_knn_metrics_equal_dense_definitions(k):
    A, B = related_pair(np.random.default_rng(0))
    ga, gb = graphs(A, B)
    assert al.mutual_knn(ga, gb, k) == pytest.approx(dense_mutual(ga, gb, k), abs=1e-12)
    assert al.cycle_knn(ga, gb, k) == pytest.approx(dense_cycle(ga, gb, k), abs=1e-12)
    assert al.cycle_knn(gb, ga, k) == pytest.approx(dense_cycle(gb, ga, k), abs=1e-12)
    assert al.lcs_knn(ga, gb, k) == pytest.approx(dense_lcs(ga, gb, k), abs=1e-12)


def test_sorted_key_lookup_equals_dense_table(monkeypatch):
    """Large N switches membership from the N×N slot table to sorted edge keys: same numbers."""
    rng = np.random.default_rng(14)
    layers_a = [rng.normal(size=(90, 6)) for _ in range(2)]
    layers_b = [a @ rng.normal(size=(6, 5)) + rng.normal(size=(90, 5)) for a in layers_a]
    ga, gb = np.stack(graphs(*layers_a, kmax=7)), np.stack(graphs(*layers_b, kmax=7))
    metrics = (*al.KNN_METRICS, "cknna")
    dense = al.pair_matrices(layers_a, layers_b, ga, gb, 7, metrics)
    assert al._SlotLookup.from_graph(gb[0]).table is not None
    monkeypatch.setattr(al, "DENSE_LOOKUP_MAX_BYTES", 0)
    assert al._SlotLookup.from_graph(gb[0]).table is None
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


@pytest.mark.parametrize("shape", [(60, 8, 5), (40, 70, 55)])  # D < N and D > N (Gram-factor path)
def test_kernel_metrics_equal_dense_formulas(shape):
    n, da, db = shape
    A, B = related_pair(np.random.default_rng(1), n=n, da=da, db=db)
    A = A + 3.0  # not centred: CKA centres, HSIC₁ is translation invariant
    assert al.linear_cka(A, B) == pytest.approx(dense_cka(A, B), abs=1e-6)
    assert al.unbiased_cka(A, B) == pytest.approx(dense_unbiased_cka(A, B), abs=1e-6)


@pytest.mark.parametrize("k", [3, 10])
def test_cknna_equals_dense_formula(k):
    A, B = related_pair(np.random.default_rng(2), n=80)
    ga, gb = graphs(A, B)
    assert al.cknna(A, B, ga, gb, k) == pytest.approx(dense_cknna(A, B, ga, gb, k), abs=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"variance": 0.8}, {"n_components": 4}])
def test_svcca_equals_dense_cca(kwargs):
    A, B = related_pair(np.random.default_rng(3), n=200, da=10, db=8, noise=1.0)
    assert al.svcca(A, B, **kwargs) == pytest.approx(dense_svcca(A, B, **kwargs), abs=1e-6)


def test_pair_matrices_equal_single_calls_and_orientation():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(70, 6))
    layers_a = [base @ rng.normal(size=(6, 6)) + s * rng.normal(size=(70, 6)) for s in (0.1, 0.5, 1.0)]
    layers_b = [base @ rng.normal(size=(6, 5)) + s * rng.normal(size=(70, 5)) for s in (0.2, 2.0)]
    ga, gb = np.stack(graphs(*layers_a, kmax=8)), np.stack(graphs(*layers_b, kmax=8))
    k = 6
    mats = al.pair_matrices(layers_a, layers_b, ga, gb, k, al.PAIR_METRICS)
    assert set(mats) == set(al.PAIR_METRICS)
    for i in range(3):
        for j in range(2):
            A, B = layers_a[i], layers_b[j]
            expected = {
                "mutual_knn": al.mutual_knn(ga[i], gb[j], k),
                "cycle_knn_ab": dense_cycle(ga[i], gb[j], k),
                "cycle_knn_ba": dense_cycle(gb[j], ga[i], k),
                "lcs_knn": al.lcs_knn(ga[i], gb[j], k),
                "cka": dense_cka(A, B),
                "unbiased_cka": dense_unbiased_cka(A, B),
                "cknna": dense_cknna(A, B, ga[i], gb[j], k),
                "svcca": al.svcca(A, B),
            }
            for name, value in expected.items():
                assert mats[name].shape == (3, 2)
                assert mats[name][i, j] == pytest.approx(value, abs=1e-6), name
            for name, spec in al.METRICS.items():
                assert spec(A, B, ga[i], gb[j], k) == pytest.approx(mats[name][i, j], abs=1e-9), name
    knn_only = al.pair_matrices(None, None, ga, gb, k, al.KNN_METRICS)
    for name in al.KNN_METRICS:
        np.testing.assert_array_equal(knn_only[name], mats[name])


# ------------------------------------------------------------------------------------------ truth checks


def test_identity_gives_one_for_every_metric():
    A, _ = related_pair(np.random.default_rng(5), n=150)
    (g,) = graphs(A, kmax=10)
    for name in ("mutual_knn", "lcs_knn", "cka", "unbiased_cka", "cknna", "svcca"):
        assert al.METRICS[name](A, A, g, g, 10) == pytest.approx(1.0, abs=1e-9), name
    # cycle_knn(A, A) = fraction of samples with a reciprocal neighbour: 1 only when nobody is an anti-hub
    assert al.cycle_knn(g, g, 10) == pytest.approx(dense_cycle(g, g, 10))
    assert 0.9 < al.cycle_knn(g, g, 10) <= 1.0


def test_orthogonal_rotation_gives_mutual_knn_and_cka_one():
    rng = np.random.default_rng(6)
    A = rng.normal(size=(300, 20))
    B = A @ rotation(rng, 20)
    ga, gb = (knn(X, 10, "cosine", device="cpu")[0] for X in (A, B))
    assert al.mutual_knn(ga, gb, 10) == 1.0
    assert al.lcs_knn(ga, gb, 10) == 1.0
    assert al.linear_cka(A, B) == pytest.approx(1.0, abs=1e-10)
    assert al.unbiased_cka(A, B) == pytest.approx(1.0, abs=1e-10)
    assert al.svcca(A, B) == pytest.approx(1.0, abs=1e-10)


def test_cka_invariant_to_isotropic_scaling():
    A, B = related_pair(np.random.default_rng(7))
    reference = al.linear_cka(A, B)
    assert al.linear_cka(7.5 * A, B) == pytest.approx(reference, rel=1e-12)
    assert al.linear_cka(A, 1e-3 * B) == pytest.approx(reference, rel=1e-12)
    assert al.unbiased_cka(3.0 * A, 0.1 * B) == pytest.approx(al.unbiased_cka(A, B), rel=1e-12)


def test_independent_gaussians_hit_chance_level():
    """mutual_knn: by exchangeability E = k/(N−1) exactly. Each per-sample term |∩|/k has variance
    ≲ E|∩|/k² = 1/(N−1) (a near-Poisson count with mean k²/(N−1)), so the mean over N samples has sd ≈ 1/N if
    the terms were independent; we allow a factor 2 for their dependence and 4 sd: tolerance 8/N.
    unbiased CKA: for independent isotropic data its numerator has sd ≈ √(2·Dₐ·D_b)/N relative to the
    denominator √(Dₐ²·D_b²)·(1/√(DₐD_b)), i.e. sd ≈ √2/N; tolerance 5·√2/N."""
    rng = np.random.default_rng(8)
    n, k = 1000, 10
    A, B = rng.normal(size=(n, 16)), rng.normal(size=(n, 12))
    ga, gb = (knn(X, k, "cosine", device="cpu")[0] for X in (A, B))
    assert al.mutual_knn(ga, gb, k) == pytest.approx(k / (n - 1), abs=8 / n)
    assert abs(al.unbiased_cka(A, B)) < 5 * np.sqrt(2) / n
    assert al.linear_cka(A, B) > 5 * np.sqrt(2) / n  # the biased estimator is visibly above 0


# ---------------------------------------------------------------------------------- summaries and nulls


def test_summarize_order_and_values():
    m = np.arange(12, dtype=float).reshape(3, 4) / 100
    m[2, 1] = 0.9
    s = al.summarize(m)
    assert s["max"] == 0.9 and s["argmax"] == (2, 1)  # (layer_a, layer_b)
    assert s["last"] == m[2, 3]
    # matched relative depth: j(i) = round(i·3/2) halves up → 0, 2 (1.5↑), 3
    np.testing.assert_array_equal(al.matched_layers(3, 4), [0, 2, 3])
    assert s["matched_depth"] == pytest.approx((m[0, 0] + m[1, 2] + m[2, 3]) / 3)
    np.testing.assert_array_equal(al.matched_layers(4, 2), [0, 0, 1, 1])  # 0, 1/3, 2/3, 1
    np.testing.assert_array_equal(al.matched_layers(1, 5), [0])
    t = al.summarize(m.T)
    assert t["argmax"] == (1, 2)
    nan_m = m.copy()
    nan_m[0, 0] = np.nan
    assert al.summarize(nan_m)["argmax"] == (2, 1)


def _model_layers(rng, base, n_layers, noise):
    return [base @ rng.normal(size=(base.shape[1], base.shape[1])) + noise * rng.normal(size=base.shape)
            for _ in range(n_layers)]


def test_null_calibration_aligned_vs_independent():
    rng = np.random.default_rng(9)
    n, d, k, P = 200, 8, 5, 49
    base = rng.normal(size=(n, d))
    layers_a = _model_layers(rng, base, 2, 0.3)
    layers_b = _model_layers(rng, base, 3, 0.3)
    ga = np.stack(graphs(*layers_a, kmax=k))
    gb = np.stack(graphs(*layers_b, kmax=k))
    metrics = ("mutual_knn", "cycle_knn_ab", "lcs_knn", "cka", "cknna")
    aligned = al.null_calibration(layers_a, layers_b, ga, gb, k, metrics, n_permutations=P, seed=1)
    for name in metrics:
        for summary in al.SUMMARIES:
            result = aligned[name][summary]
            assert result["p_value"] == pytest.approx(1 / (P + 1)), (name, summary)
            assert result["z"] > 5, (name, summary)
            assert result["n_permutations"] == P
    assert aligned["mutual_knn"]["max"]["null_mean"] == pytest.approx(k / (n - 1), abs=0.02)

    other = _model_layers(rng, rng.normal(size=(n, d)), 3, 0.3)
    go = np.stack(graphs(*other, kmax=k))
    independent = al.null_calibration(layers_a, other, ga, go, k, metrics, n_permutations=P, seed=1)
    for name in metrics:
        for summary in al.SUMMARIES:
            assert independent[name][summary]["p_value"] > 0.05, (name, summary)
    # same seed → same result
    again = al.null_calibration(layers_a, other, ga, go, k, ("mutual_knn",), n_permutations=P, seed=1)
    assert again["mutual_knn"] == independent["mutual_knn"]


@pytest.mark.parametrize("space", ["cosine", "euclidean"])
def test_permutation_relabelling_equals_recomputed_knn(space):
    rng = np.random.default_rng(10)
    B = rng.normal(size=(150, 7))
    idx_b = knn(B, 9, space, device="cpu")[0]
    perm = rng.permutation(150)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(150)
    relabelled = inverse[idx_b[perm]]
    np.testing.assert_array_equal(relabelled, knn(B[perm], 9, space, device="cpu")[0])
    prepared = al.prepare_model([B], [idx_b], 9, ("mutual_knn", "cknna")).layers[0].permuted(perm, inverse)
    np.testing.assert_array_equal(prepared.graph, relabelled)
    fresh = al.prepare_model([B[perm]], [relabelled], 9, ("cknna",)).layers[0]
    np.testing.assert_allclose(prepared.cknna.kernel_at_graph, fresh.cknna.kernel_at_graph, rtol=1e-12)


def test_permuted_prepared_layers_equal_recomputed_metrics():
    rng = np.random.default_rng(11)
    A, B = related_pair(rng, n=90, da=8, db=6)
    ga, gb = graphs(A, B, kmax=6)
    perm = rng.permutation(90)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(90)
    prep_a = al.prepare_model([A], [ga], 6, al.PAIR_METRICS)
    prep_b = al.prepare_model([B], [gb], 6, al.PAIR_METRICS)
    via_relabel = al.pair_matrices_prepared(prep_a, prep_b.permuted(perm, inverse), al.PAIR_METRICS)
    direct = al.pair_matrices([A], [B[perm]], [ga], [inverse[gb[perm]]], 6, al.PAIR_METRICS)
    for name in al.PAIR_METRICS:
        np.testing.assert_allclose(via_relabel[name], direct[name], atol=1e-10, err_msg=name)


def test_bootstrap_ci():
    rng = np.random.default_rng(12)
    scores = rng.uniform(size=2000)
    low, high = al.bootstrap_ci(scores, n_boot=2000, seed=3)
    assert low < scores.mean() < high
    normal_half_width = 1.96 * scores.std(ddof=1) / np.sqrt(len(scores))
    assert (high - low) / 2 == pytest.approx(normal_half_width, rel=0.15)
    assert al.bootstrap_ci(scores, n_boot=2000, seed=3) == (low, high)
    narrow = al.bootstrap_ci(scores, n_boot=2000, seed=3, level=0.5)
    assert low < narrow[0] < narrow[1] < high
    assert al.bootstrap_ci(np.full(50, 0.3), n_boot=100, seed=0) == pytest.approx((0.3, 0.3))
    A, B = related_pair(rng)
    ga, gb = graphs(A, B, kmax=5)
    for per_sample, metric in [(al.mutual_knn_per_sample, al.mutual_knn), (al.cycle_knn_per_sample, al.cycle_knn),
                               (al.lcs_knn_per_sample, al.lcs_knn)]:
        terms = per_sample(ga, gb, 5)
        assert terms.shape == (len(A),)
        assert terms.mean() == pytest.approx(metric(ga, gb, 5))


def test_preprocess_clips_at_quantile():
    X = np.random.default_rng(13).standard_cauchy(size=(100, 20))
    clipped = al.preprocess(X, clip_quantile=0.95)
    t = np.quantile(np.abs(X), 0.95)
    assert np.abs(clipped).max() == pytest.approx(t)
    np.testing.assert_array_equal(clipped[np.abs(X) <= t], X[np.abs(X) <= t])
    np.testing.assert_array_equal(al.preprocess(X), X)
    with pytest.raises(ValueError):
        al.preprocess(X, clip_quantile=1.5)
    with pytest.raises(ValueError, match="non-finite"):
        al.preprocess(np.full((3, 3), np.nan))


def test_input_errors():
    g = np.zeros((10, 3), dtype=np.int32)
    with pytest.raises(ValueError, match="k=4"):
        al.mutual_knn(g, g, 4)
    with pytest.raises(ValueError, match="shape"):
        al.mutual_knn(g, np.zeros((9, 3), dtype=np.int32), 2)
    with pytest.raises(ValueError, match="unknown alignment metric"):
        al.pair_matrices(None, None, [g], [g], 2, ["mutual"])
    with pytest.raises(ValueError, match="need the layer activations"):
        al.pair_matrices(None, None, [g], [g], 2, ["cka"])
    with pytest.raises(ValueError, match="same samples"):
        al.linear_cka(np.ones((10, 2)) + np.eye(10, 2), np.ones((9, 2)) + np.eye(9, 2))
    with pytest.raises(ValueError, match="N ≥ 4"):
        al.unbiased_cka(np.ones((3, 2)), np.ones((3, 2)))


class CountingLayers:
    """A lazy layer sequence (like the stage's store reader) that counts how often each layer is read."""

    def __init__(self, layers):
        self.layers, self.reads = layers, [0] * len(layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        self.reads[i] += 1
        return self.layers[i].astype(np.float32)


def test_feature_budget_bounds_what_is_held_without_changing_any_number():
    """With a budget below one layer's factor, the dense metrics re-read layers group by group (bounded memory
    for large N) and give bit-identical matrices and nulls to the all-in-memory path."""
    rng = np.random.default_rng(15)
    base = rng.normal(size=(80, 6))
    layers_a = [base @ rng.normal(size=(6, 9)) + s * rng.normal(size=(80, 9)) for s in (0.1, 0.7, 2.0)]
    layers_b = [base @ rng.normal(size=(6, 7)) + s * rng.normal(size=(80, 7)) for s in (0.3, 1.5)]
    ga, gb = np.stack(graphs(*layers_a, kmax=6)), np.stack(graphs(*layers_b, kmax=6))
    lazy_a, lazy_b = CountingLayers(layers_a), CountingLayers(layers_b)
    roomy = al.pair_matrices([x.astype(np.float32) for x in layers_a], [x.astype(np.float32) for x in layers_b],
                             ga, gb, 5, al.PAIR_METRICS)
    tight = al.pair_matrices(lazy_a, lazy_b, ga, gb, 5, al.PAIR_METRICS, budget_bytes=1)
    for name in al.PAIR_METRICS:
        np.testing.assert_array_equal(tight[name], roomy[name], err_msg=name)
    assert lazy_a.reads == [2, 2, 2]  # preparation + its group of one
    assert lazy_b.reads == [4, 4]     # preparation + once per group of A
    null_roomy = al.null_calibration(layers_a, layers_b, ga, gb, 5, ("mutual_knn", "cka", "svcca"), 3, seed=2)
    null_tight = al.null_calibration(layers_a, layers_b, ga, gb, 5, ("mutual_knn", "cka", "svcca"), 3, seed=2,
                                     budget_bytes=1)
    assert null_tight == null_roomy


def test_resource_estimate_uses_the_metrics_feature_budget():
    from repbench import jobs

    assert jobs.FEATURE_BUDGET_BYTES == al.DEFAULT_FEATURE_BUDGET_BYTES


def test_store_layers_read_lazily_and_name_model_and_layer_on_non_finite_values(tmp_path):
    from repbench import store
    from repbench.cli import StoreLayers

    path = tmp_path / "m.zarr"
    group = store.create_activation_store(path, sample_ids=[f"s{i}" for i in range(6)], n_layers=2, n_features=3,
                                          poolings=["mean"], chunk_samples=6, dtype="float32", attrs={"model": "m1"})
    values = np.arange(36, dtype=np.float32).reshape(2, 6, 3)
    values[1, 4, 2] = np.nan
    group["mean"][...] = values
    layers = StoreLayers(path, "mean", None)
    assert len(layers) == 2
    np.testing.assert_array_equal(layers[0], values[0])
    with pytest.raises(ValueError, match="model 'm1', pooling 'mean', layer 1: activations contain non-finite"):
        layers[1]
