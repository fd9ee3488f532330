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
