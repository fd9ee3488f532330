"""Reference implementations and shared inputs for the tests (a helper module: ``from reference import ...``).

Alignment metrics as plain dense N×N implementations of their formulas (see docs/metrics.md), the inputs the
alignment tests share, and ``null_calibration`` (a convenience wrapper moved out of the package: only tests used it).
"""

import numpy as np

from repbench.metrics import alignment as al
from repbench.neighbors import brute_force_knn

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


def dense_calibrate(observed, null, alpha=0.05, lower_is_more_similar=False, best=None):
    """The calibrated-similarity rule spelled out on a sorted Python list (NaN null values dropped).

    τ = the ⌈(1−α)(K+1)⌉-th smallest of [observed] + null (largest, for lower_is_more_similar),
    p = (1 + #{null ≥ observed})/(K+1) (≤ for lower), s* = clip((observed − τ)/(best − τ), 0, 1)
    ((τ − observed)/(τ − best) for lower), best = 1 (0 for lower) unless given.
    """
    import math

    values = [float(v) for v in null if not math.isnan(v)]
    k = len(values)
    rank = math.ceil((1 - alpha) * (k + 1))
    if lower_is_more_similar:
        best = 0.0 if best is None else best
        tau = sorted([observed] + values, reverse=True)[rank - 1]
        exceed = sum(1 for v in values if v <= observed)
        gain, room = tau - observed, tau - best
    else:
        best = 1.0 if best is None else best
        tau = sorted([observed] + values)[rank - 1]
        exceed = sum(1 for v in values if v >= observed)
        gain, room = observed - tau, best - tau
    mean = sum(values) / k
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1)) if k > 1 else math.nan
    return {"tau": tau, "p_value": (1 + exceed) / (k + 1), "calibrated": min(max(gain / max(room, 1e-12), 0.0), 1.0),
            "null_mean": mean, "null_std": std, "z": (observed - mean) / std if std > 0 else math.nan}


def dense_rv_null(X, Y):
    """FactoMineR ``coeffRV`` (N ≥ 6) with the N×N matrices W = XᶜXᶜᵀ, V = YᶜYᶜᵀ formed: (rv, mean, variance,
    skewness), the moment formulas of Kazi-Aoual et al. (1995) as coeffRV writes them."""
    n = X.shape[0]
    X, Y = X - X.mean(axis=0), Y - Y.mean(axis=0)
    W, V = X @ X.T, Y @ Y.T
    rv = np.trace(W @ V) / np.sqrt(np.trace(W @ W) * np.trace(V @ V))

    def beta_delta_gamma(M):
        beta = np.trace(M) ** 2 / np.trace(M @ M)
        delta = np.sum(np.diag(M) ** 2) / np.trace(M @ M)
        gamma = (n - 1) * (n * (n + 1) * delta - (n - 1) * (beta + 2)) / ((n - 3) * (n - 1 - beta))
        return beta, gamma

    bx, gx = beta_delta_gamma(W)
    by, gy = beta_delta_gamma(V)
    mean = np.sqrt(bx * by) / (n - 1)
    variance = 2 * (n - 1 - bx) * (n - 1 - by) / ((n + 1) * (n - 1) ** 2 * (n - 2)) * (
        1 + (n - 3) * gx * gy / (2 * n * (n - 1)))

    def terms(M):
        d = np.diag(M)
        return dict(n=n, trace=np.trace(M), trace_sq=np.trace(M @ M), trace_cube=np.trace(M @ M @ M),
                    diag_sq=np.sum(d ** 2), diag_cube=np.sum(d ** 3), cube_sum=np.sum(M ** 3),
                    diag_w_diag=d @ M @ d, diag_w2=d @ np.diag(M @ M))

    from repbench.metrics.alignment import calibration

    skewness = calibration.rv_skewness(calibration.RvSkewnessTerms(**terms(W)),
                                       calibration.RvSkewnessTerms(**terms(V)))
    return rv, mean, variance, skewness


def enumerated_rv(X, Y):
    """RV(X, Y[π]) for every permutation π of the rows (N ≤ 8), dense N×N Grams."""
    from itertools import permutations

    X, Y = X - X.mean(axis=0), Y - Y.mean(axis=0)
    W = X @ X.T
    values = []
    for p in permutations(range(X.shape[0])):
        V = Y[list(p)] @ Y[list(p)].T
        values.append(np.sum(W * V) / np.sqrt(np.sum(W * W) * np.sum(V * V)))
    return np.array(values)


def dense_jaccard(idx_a, idx_b, k):
    """(1/N) Σᵢ |Nᴬ ∩ Nᴮ| / |Nᴬ ∪ Nᴮ| with Python sets."""
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / len(set(a[:k]) | set(b[:k]))
                          for a, b in zip(idx_a, idx_b, strict=True)]))


def rank_sim_term(list_a, list_b):
    """vᵢ of rank_sim for two ordered neighbour lists, by plain loops (Wang et al. 2020)."""
    common = [j for j in list_a if j in list(list_b)]
    if not common:
        return 0.0
    score = 0.0
    for j in common:
        rank_a, rank_b = list(list_a).index(j) + 1, list(list_b).index(j) + 1
        score += 2.0 / ((1 + abs(rank_a - rank_b)) * (rank_a + rank_b))
    return score / sum(1.0 / m for m in range(1, len(common) + 1))


def dense_rank_sim(idx_a, idx_b, k):
    return float(np.mean([rank_sim_term(a[:k], b[:k]) for a, b in zip(idx_a, idx_b, strict=True)]))


def dense_cosines(X):
    """N×N cosine similarities x̂ᵢ·x̂ⱼ."""
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    return unit @ unit.T


def dense_second_order_cos(A, B, idx_a, idx_b, k, of_distances=False):
    """(1/N) Σᵢ cos of the vectors (cos_A(i, j))_{j∈U} and (cos_B(i, j))_{j∈U}, U = Nᴬ(i) ∪ Nᴮ(i), from the N×N
    cosine matrices; ``of_distances``: the vectors of cosine distances 1 − cos instead (resi's variant)."""
    Ca, Cb = dense_cosines(A), dense_cosines(B)
    if of_distances:
        Ca, Cb = 1 - Ca, 1 - Cb
    values = []
    for i in range(len(A)):
        union = sorted(set(idx_a[i, :k]) | set(idx_b[i, :k]))
        x, y = Ca[i, union], Cb[i, union]
        values.append(x @ y / np.sqrt((x @ x) * (y @ y)))
    return float(np.mean(values))


def dense_ranks(X):
    """N×N Euclidean ranks: R[i, j] = 1 + #{l ≠ i : (d(i, l), l) < (d(i, j), j)} (R[i, i] = 0), from the dense
    distance matrix sorted by (distance, index)."""
    n = len(X)
    distances = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    ranks = np.zeros((n, n), dtype=int)
    for i in range(n):
        row = distances[i].copy()
        row[i] = np.inf
        order = np.lexsort((np.arange(n), row))[: n - 1]
        ranks[i, order] = np.arange(1, n)
    return ranks


def dense_info_imbalance(A, B, k=1):
    """Δ(A→B) = (2/N) · mean of rᴮᵢⱼ over the pairs with rᴬᵢⱼ ≤ k (Glielmo et al. 2022)."""
    ranks_a, ranks_b = dense_ranks(A), dense_ranks(B)
    chosen = (ranks_a >= 1) & (ranks_a <= k)
    return float(2.0 / len(A) * ranks_b[chosen].mean())


# ----------------------------------------------------------------------------------------- fixtures


def related_pair(rng, n=120, da=12, db=9, noise=0.5):
    """B is a noisy linear image of A: partially aligned, nothing degenerate."""
    A = rng.normal(size=(n, da)) * np.linspace(2.0, 0.5, da)
    B = A @ rng.normal(size=(da, db)) + noise * rng.normal(size=(n, db))
    return A, B


def graphs(*arrays, kmax=15, space="cosine"):
    return [brute_force_knn(X, kmax, space)[0] for X in arrays]


def rotation(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def null_calibration(layers_a, layers_b, graphs_a, graphs_b, k: int, metrics=al.KNN_METRICS,
                     n_permutations: int = 100, seed: int = 0, svcca_variance: float = 0.99,
                     svcca_components: int | None = None,
                     budget_bytes: int = al.DEFAULT_FEATURE_BUDGET_BYTES) -> dict:
    """``al.null_calibration_prepared`` on raw layers and graphs (both models prepared here).

    Moved out of ``repbench.metrics.alignment`` (only tests called it; the stage prepares each model once and calls
    ``null_calibration_prepared``). The null's definition is documented there.
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be ≥ 1, got {n_permutations}")
    metrics = al._validated_metrics(metrics)
    options = dict(svcca_variance=svcca_variance, svcca_components=svcca_components, budget_bytes=budget_bytes)
    prepared_a = al.prepare_model(layers_a, graphs_a, k, metrics, **options)
    prepared_b = al.prepare_model(layers_b, graphs_b, k, metrics, **options)
    return al.null_calibration_prepared(prepared_a, prepared_b, metrics, n_permutations, seed)


# ------------------------------------------------------------------ dense group (alignment/dense.py)


def dense_rsa(A, B, rdm="correlation", compare="spearman"):
    """scipy's pdist RDMs (pairs i < j) compared by scipy's spearmanr or numpy's corrcoef."""
    from scipy.spatial.distance import pdist
    from scipy.stats import spearmanr

    da, db = pdist(A, rdm), pdist(B, rdm)
    return float(spearmanr(da, db).statistic if compare == "spearman" else np.corrcoef(da, db)[0, 1])


def _centred_unit(X):
    Xc = X - X.mean(0)
    return Xc / np.linalg.norm(Xc)


def dense_procrustes(A, B):
    """min over orthogonal Q of ‖ÃQ − B̃‖_F, Ã = Aᶜ/‖Aᶜ‖_F, B̃ likewise, narrower side zero-padded (scipy)."""
    from scipy.linalg import orthogonal_procrustes

    a_unit, b_unit = _centred_unit(A), _centred_unit(B)
    width = max(a_unit.shape[1], b_unit.shape[1])
    a_unit = np.pad(a_unit, ((0, 0), (0, width - a_unit.shape[1])))
    b_unit = np.pad(b_unit, ((0, 0), (0, width - b_unit.shape[1])))
    Q, _ = orthogonal_procrustes(a_unit, b_unit)
    return float(np.linalg.norm(a_unit @ Q - b_unit))


def dense_shape_metric(A, B, alpha=1.0, eigval_tol=1e-7):
    """φ(X) = Xᶜ V diag(α + (1−α) max(λ, tol)^{−½}) Vᵀ, (λ, V) = eigh(XᶜᵀXᶜ); θ from the best rotation of
    zero-padded φ(A) onto φ(B) (the angle between φ(A)Q and φ(B), Q from scipy's orthogonal_procrustes)."""
    from scipy.linalg import orthogonal_procrustes

    def phi(X):
        Xc = X - X.mean(0)
        lam, V = np.linalg.eigh(Xc.T @ Xc)
        return Xc @ V @ np.diag(alpha + (1 - alpha) / np.sqrt(np.maximum(lam, eigval_tol))) @ V.T

    Pa, Pb = phi(A), phi(B)
    width = max(Pa.shape[1], Pb.shape[1])
    Pa = np.pad(Pa, ((0, 0), (0, width - Pa.shape[1])))
    Pb = np.pad(Pb, ((0, 0), (0, width - Pb.shape[1])))
    Q, _ = orthogonal_procrustes(Pa, Pb)
    cosine = np.sum((Pa @ Q) * Pb) / (np.linalg.norm(Pa) * np.linalg.norm(Pb))
    return float(np.arccos(np.clip(cosine, -1, 1)))


def dense_pwcca(A, B):
    """Textbook CCA via QR of the centred data; canonical variates hᵢ of the side with fewer columns (A on ties),
    αᵢ = Σⱼ |⟨hᵢ, xⱼ⟩| over that side's centred columns; Σαᵢρᵢ/Σαᵢ."""
    Ac, Bc = A - A.mean(0), B - B.mean(0)
    Qa, Qb = np.linalg.qr(Ac)[0], np.linalg.qr(Bc)[0]
    U, rho, Vt = np.linalg.svd(Qa.T @ Qb)
    if A.shape[1] <= B.shape[1]:
        variates, columns = Qa @ U, Ac
    else:
        variates, columns = Qb @ Vt.T, Bc
    rho = np.concatenate([rho, np.zeros(variates.shape[1] - len(rho))])
    weights = np.abs(variates.T @ columns).sum(axis=1)
    return float(np.sum(weights * rho) / np.sum(weights))


def dense_rv(A, B):
    """tr(W_A W_B)/√(tr W_A² tr W_B²), W = XᶜXᶜᵀ (N×N)."""
    Wa, Wb = (A - A.mean(0)) @ (A - A.mean(0)).T, (B - B.mean(0)) @ (B - B.mean(0)).T
    return float(np.trace(Wa @ Wb) / np.sqrt(np.trace(Wa @ Wa) * np.trace(Wb @ Wb)))


def dense_cka_rbf(A, B, sigma=0.8):
    """Kᵢⱼ = exp(−‖xᵢ−xⱼ‖²/(2σ²·median of all N² squared distances)); tr(KHLH)/√(tr(KHKH) tr(LHLH))."""
    from scipy.spatial.distance import cdist

    n = len(A)
    H = np.eye(n) - 1.0 / n

    def kernel(X):
        sq = cdist(X, X, "sqeuclidean")
        return np.exp(-sq / (2 * sigma**2 * np.median(sq)))

    K, L = kernel(A), kernel(B)
    return float(np.trace(K @ H @ L @ H) / np.sqrt(np.trace(K @ H @ K @ H) * np.trace(L @ H @ L @ H)))


# ------------------------------------------------------------------- class-label metrics (clusters, collapse)


def dense_class_stats(X, labels):
    """(classes, per-class row arrays, class means) with classes in ascending label order."""
    X = np.asarray(X, dtype=np.float64)
    classes = np.unique(labels)
    members = [X[labels == c] for c in classes]
    return classes, members, np.array([m.mean(axis=0) for m in members])


def dense_label_overlap(X, labels, k):
    """Σᵢ wᵢ·(same-label fraction of i's k nearest neighbours, self excluded) ÷ Σᵢ wᵢ, wᵢ = 1/n_{yᵢ}; neighbours by
    a full float64 distance matrix sorted by (distance, index)."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    dist = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    numerator = denominator = 0.0
    for i in range(n):
        order = np.lexsort((np.arange(n), dist[i]))[:k]
        weight = 1.0 / np.sum(labels == labels[i])
        numerator += weight * np.mean(labels[order] == labels[i])
        denominator += weight
    return numerator / denominator


def dense_dunn(X, labels):
    """min distance between samples of different classes ÷ max distance within a class, by double loop."""
    X = np.asarray(X, dtype=np.float64)
    separation, diameter = np.inf, 0.0
    for i in range(len(X)):
        for j in range(len(X)):
            d = np.linalg.norm(X[i] - X[j])
            if labels[i] == labels[j]:
                diameter = max(diameter, d)
            else:
                separation = min(separation, d)
    return separation / diameter


def dense_xie_beni(X, labels):
    """Σᶜ Σ_{i∈c} ‖xᵢ − μᶜ‖² ÷ (N · min_{c≠c′} ‖μᶜ − μ^{c′}‖²)."""
    _, members, means = dense_class_stats(X, labels)
    within = sum(((m - mu) ** 2).sum() for m, mu in zip(members, means))
    closest = min(np.sum((means[a] - means[b]) ** 2) for a in range(len(means)) for b in range(len(means)) if a != b)
    return within / (len(X) * closest)


def dense_nc1(X, labels):
    """tr(Σ_W Σ_B⁺)/C with the D×D matrices and numpy's pseudo-inverse; μ = mean of the class means."""
    X = np.asarray(X, dtype=np.float64)
    classes, members, means = dense_class_stats(X, labels)
    c = len(classes)
    centre = means.mean(axis=0)
    sigma_w = sum((m - mu).T @ (m - mu) for m, mu in zip(members, means)) / len(X)
    sigma_b = (means - centre).T @ (means - centre) / c
    return np.trace(sigma_w @ np.linalg.pinv(sigma_b, hermitian=True)) / c


def dense_nc2(X, labels):
    """(equinorm, equiangularity, max_angle) of the class means centred at the mean of the class means, by loops."""
    _, _, means = dense_class_stats(X, labels)
    centred = means - means.mean(axis=0)
    c = len(centred)
    norms = [np.linalg.norm(v) for v in centred]
    cosines = [centred[a] @ centred[b] / (norms[a] * norms[b]) for a in range(c) for b in range(c) if a != b]
    return (np.std(norms) / np.mean(norms), np.std(cosines),
            np.mean([abs(v + 1.0 / (c - 1)) for v in cosines]))


def dense_cdnv(X, labels):
    """mean over c < c′ of (Vᶜ + V^{c′}) / (2‖μᶜ − μ^{c′}‖²), Vᶜ = mean squared distance to μᶜ."""
    _, members, means = dense_class_stats(X, labels)
    variances = [np.mean(((m - mu) ** 2).sum(axis=1)) for m, mu in zip(members, means)]
    c = len(means)
    return np.mean([(variances[a] + variances[b]) / (2 * np.sum((means[a] - means[b]) ** 2))
                    for a in range(c) for b in range(a + 1, c)])


def simplex_etf(n_classes, dim, rng, scale=3.0):
    """(n_classes, dim) vertices of a regular simplex centred at a random offset: rows of the centred identity,
    rotated into dim dimensions by a random orthonormal basis."""
    vertices = np.eye(n_classes) - 1.0 / n_classes
    basis, _ = np.linalg.qr(rng.standard_normal((dim, n_classes)))
    return scale * vertices @ basis.T + rng.standard_normal(dim)


# ------------------------------------------------------------------------------------ probes


def standardise(X_train, X_test):
    """(X − μ_train) / σ_train with the population std of the training rows (1 for a constant feature)."""
    mean = X_train.mean(0)
    scale = X_train.std(0)
    scale[scale == 0] = 1.0
    return (X_train - mean) / scale, (X_test - mean) / scale


def dense_logistic_objective(Z, y, W, b, C):
    """F(W, b) / (C n) in float64 straight from the formula: multinomial when W has K ≥ 3 columns,
    binomial (one column, y ∈ {0, 1}) otherwise: (1/n) Σᵢ loss_i + ‖W‖² / (2 C n)."""
    Z, W, b = np.asarray(Z, np.float64), np.asarray(W, np.float64), np.asarray(b, np.float64)
    n = len(y)
    logits = Z @ W + b
    if W.shape[1] == 1:
        z = logits[:, 0]
        losses = np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0) - y * z
    else:
        top = logits.max(1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(1)) + top[:, 0]
        losses = lse - logits[np.arange(n), y]
    return float(losses.mean() + (W**2).sum() / (2 * C * n))


def dense_ridge(X_train, y_train, X_test, alpha):
    """Ridge predictions on standardised features: w = (X̃ᵀX̃ + αI)⁻¹ X̃ᵀ(y − ȳ), ŷ = X̃_test w + ȳ (float64)."""
    Z_train, Z_test = standardise(np.asarray(X_train, np.float64), np.asarray(X_test, np.float64))
    gram = Z_train.T @ Z_train + alpha * np.eye(Z_train.shape[1])
    w = np.linalg.solve(gram, Z_train.T @ (y_train - y_train.mean()))
    return Z_test @ w + y_train.mean()


def first_layer_reaching(accuracies, threshold):
    """The first index whose accuracy is ≥ threshold, by a plain loop."""
    for layer, value in enumerate(accuracies):
        if value >= threshold:
            return layer
    raise AssertionError("no layer reaches the threshold")
