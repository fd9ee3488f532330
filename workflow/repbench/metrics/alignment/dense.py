"""Feature-based pair metrics ("dense" group): RSA, Procrustes, shape metric, PWCCA, RBF CKA.

A ∈ ℝ^{N×Dₐ}, B ∈ ℝ^{N×D_b}: one layer of each model on the same N samples; Xᶜ = X − 1x̄ᵀ column-centred.

* rsa          — correlation (Spearman or Pearson) between the two representational dissimilarity matrices
                 (RDMs) over the sample pairs i < j; dᵢⱼ = 1 − Pearson(xᵢ, xⱼ) ("correlation") or ‖xᵢ − xⱼ‖
                 ("euclidean"). Quadratic in N: on a seeded subset beyond ``pairwise_max_samples``.
* procrustes   — √max(0, 2 − 2‖ÃᵀB̃‖_*), Ã = Aᶜ/‖Aᶜ‖_F, B̃ = Bᶜ/‖Bᶜ‖_F (orthogonal Procrustes distance;
                 zero-padding the narrower side is implicit). Lower = more similar.
* shape_metric — Williams et al. (2021) angular shape metric with partial whitening α:
                 φ(X) = Xᶜ V diag(α + (1−α) max(λ, 10⁻⁷)^{−½}) Vᵀ, (λ, V) = eig(XᶜᵀXᶜ) (no 1/N),
                 θ = arccos(clip(‖φ(A)ᵀφ(B)‖_* / (‖φ(A)‖_F ‖φ(B)‖_F), −1, 1)). Lower = more similar.
* pwcca        — projection-weighted CCA (Morcos et al. 2018): Σᵢ αᵢρᵢ / Σᵢ αᵢ over the canonical pairs.
  (The RV coefficient equals linear CKA: ``rv`` is computed with ``cka`` in the core pass, whose layer terms
  also give its closed-form permutation null.)
* cka_rbf      — CKA with Gaussian kernels (Kornblith et al. 2019), biased HSIC, median-distance bandwidth.
                 Quadratic in N: same subset rule as rsa.

Layer × layer evaluation (:func:`prepare` once per model, :func:`matrices` per model pair): every per-layer
decomposition is done once. Procrustes, shape metric and PWCCA come from one cross product C = PₐᵀP_b of the
layers' centred Gram factors (PPᵀ = XᶜXᶜᵀ, :class:`.kernels.LayerFactors`: Xᶜ itself when D ≤ N, else an N×N
eigen-factor), plus small feature-space terms from the eigendecomposition PᵀP = VΛVᵀ (m×m, m = min(N, D)):
the orthonormal basis of the column space is U = PW with W = V_r Λ_r^{−½}, so UₐᵀU_b = WₐᵀCW_b. RSA and RBF CKA
keep one condensed (pair-indexed) vector per layer, so a layer pair costs one dot product.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .kernels import LayerFactors, _check_same_samples, _singular_values, _svd, layer_groups

METRICS: tuple[str, ...] = ("rsa", "procrustes", "shape_metric", "pwcca", "cka_rbf")
LOWER_IS_MORE_SIMILAR = frozenset({"procrustes", "shape_metric"})

DEFAULT_PAIRWISE_MAX_SAMPLES = 2000
DEFAULT_FACTOR_CACHE_BYTES = 512 * 2**20  # centred Gram factors kept in memory; beyond, layers are re-read
NETREP_EIGVAL_TOL = 1e-7  # netrep.utils.whiten clips the eigenvalues of XᶜᵀXᶜ to at least this value
RDMS = ("correlation", "euclidean")
COMPARES = ("spearman", "pearson")

_FACTOR_METRICS = frozenset({"procrustes", "shape_metric", "pwcca"})
_PAIRWISE_METRICS = frozenset({"rsa", "cka_rbf"})


# ------------------------------------------------------------------------------------------------ options


def pairwise_subset(n: int, options: dict) -> np.ndarray | None:
    """Sorted sample indices used by the quadratic metrics (rsa, cka_rbf), or None when all n samples are used.

    With cap = ``options["pairwise_max_samples"]`` (default 2000): None when n ≤ cap, else ``cap`` indices drawn
    without replacement by ``numpy.random.default_rng(options["seed"]).choice(n, cap, replace=False)``, sorted.
    The same subset serves both models and every layer (it depends only on n and the options).
    """
    cap = int(options.get("pairwise_max_samples", DEFAULT_PAIRWISE_MAX_SAMPLES))
    if cap < 4:
        raise ValueError(f"pairwise_max_samples must be ≥ 4, got {cap}")
    if n <= cap:
        return None
    rng = np.random.default_rng(options.get("seed", 0))
    return np.sort(rng.choice(n, cap, replace=False))


def _rsa_options(options: dict) -> tuple[str, str]:
    settings = options.get("rsa") or {}
    rdm, compare = settings.get("rdm", "correlation"), settings.get("compare", "spearman")
    if rdm not in RDMS:
        raise ValueError(f"rsa rdm must be one of {RDMS}, got {rdm!r}")
    if compare not in COMPARES:
        raise ValueError(f"rsa compare must be one of {COMPARES}, got {compare!r}")
    return rdm, compare


def _shape_alpha(options: dict) -> float:
    alpha = float((options.get("shape_metric") or {}).get("alpha", 1.0))
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"shape_metric alpha must be in [0, 1], got {alpha}")
    return alpha


def _rbf_sigma(options: dict) -> float:
    sigma = float((options.get("cka_rbf") or {}).get("sigma", 0.8))
    if not sigma > 0:
        raise ValueError(f"cka_rbf sigma must be > 0, got {sigma}")
    return sigma


def _validated(metrics) -> tuple[str, ...]:
    metrics = (metrics,) if isinstance(metrics, str) else tuple(dict.fromkeys(metrics))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown dense metric(s) {unknown}; known: {list(METRICS)}")
    if not metrics:
        raise ValueError("no metric requested")
    return metrics


# ----------------------------------------------------------------------------------------- per-layer state


@dataclass(frozen=True)
class _SpectralLayer:
    """Feature-space terms of one layer from PᵀP = VΛVᵀ (r kept directions, λ > λ_max·max(N, m)·ε).

    basis        W = V_r Λ_r^{−½} (m, r): U = PW is an orthonormal basis of the centred column space; when
                 D > N the factor's columns are already orthogonal (P = V√Λ from the N×N Gram), W is diagonal
                 and only its diagonal (m,) is kept, so no N×N matrix is stored per layer;
    frobenius    ‖Xᶜ‖_F = √tr(PᵀP)  (all directions, for procrustes);
    shape_weights t = s·(α + (1−α) max(s², 10⁻⁷)^{−½}) (r,), s = √λ_r the singular values of Xᶜ: the
                 singular values of φ(X) (None unless asked);
    loadings     Λ_r^{½}V_rᵀ = UᵀXᶜ (r, D) for PWCCA's projection weights (None unless asked, or if D ≥ N);
    eigenvalues  the kept λ_r, descending, and gram_sq = ‖PᵀP‖²_F, when the eigendecomposition was computed
                 (D ≤ N; None otherwise): the core pass's CKA and SVCCA terms of the same layer reuse them
                 (``repbench.metrics.alignment.prepare_model``) instead of a second product and eigendecomposition.
    """

    n_features: int
    basis: np.ndarray  # (m, r), or (m,) = the diagonal of W
    frobenius: float
    shape_weights: np.ndarray | None
    loadings: np.ndarray | None
    eigenvalues: np.ndarray | None = None
    gram_sq: float | None = None


def _spectral_layer(factor: np.ndarray, n_features: int, alpha: float | None, with_loadings: bool) -> _SpectralLayer:
    n = factor.shape[0]
    gram_sq = None
    if n_features > n:  # Gram-eigen factor V√Λ (numerically non-zero λ only): PᵀP = Λ, W = Λ^{−½}
        lam = np.einsum("ij,ij->j", factor, factor)
        if not lam.size or not lam.max() > 0:
            raise ValueError("layer has zero variance (all samples equal)")
        vec = None
        frobenius = float(np.sqrt(lam.sum()))
    else:
        gram = factor.T @ factor
        eigval, eigvec = np.linalg.eigh(gram)
        eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
        top = eigval[0] if eigval.size else 0.0
        if not top > 0:
            raise ValueError("layer has zero variance (all samples equal)")
        keep = eigval > top * max(n, gram.shape[0]) * np.finfo(np.float64).eps
        lam, vec = eigval[keep], eigvec[:, keep]
        frobenius = float(np.sqrt(np.trace(gram)))
        gram_sq = float(np.sum(gram * gram))  # as kernels._prepare_kernel_layer computes it
    singular = np.sqrt(lam)
    shape_weights = None
    if alpha is not None:
        if alpha > 1.0 - NETREP_EIGVAL_TOL:  # netrep returns X unwhitened in this case
            shape_weights = singular.copy()
        else:
            shape_weights = singular * (alpha + (1.0 - alpha) / np.sqrt(np.maximum(lam, NETREP_EIGVAL_TOL)))
    loadings = None
    if with_loadings and n_features < n:  # pwcca is undefined for D ≥ N: matrices() raises if it is asked
        loadings = singular[:, None] * vec.T  # factor is Xᶜ itself here (D < N), so UᵀXᶜ = Λ^{½}Vᵀ
    basis = 1.0 / singular if vec is None else vec / singular
    return _SpectralLayer(n_features, basis, frobenius, shape_weights, loadings,
                          None if vec is None else lam, gram_sq)


def _basis_cross(a: _SpectralLayer, b: _SpectralLayer, cross: np.ndarray) -> np.ndarray:
    """UₐᵀU_b = Wₐᵀ C W_b from the factors' cross product C = PₐᵀP_b (diagonal W applied as a scaling)."""
    left = a.basis[:, None] * cross if a.basis.ndim == 1 else a.basis.T @ cross
    return left * b.basis[None, :] if b.basis.ndim == 1 else left @ b.basis


def _condensed_index(m: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Position of pair (rows, cols), rows < cols, in the row-major condensed order of the m×m upper triangle."""
    rows, cols = rows.astype(np.int64), cols.astype(np.int64)
    return rows * m - rows * (rows + 1) // 2 + cols - rows - 1


def _squared_distances(X: np.ndarray) -> np.ndarray:
    """(m, m) squared Euclidean distances of the rows (columns centred first, exact zeros on the diagonal)."""
    Xc = X - X.mean(axis=0)
    sq = np.einsum("ij,ij->i", Xc, Xc)
    dist = sq[:, None] + sq[None, :] - 2.0 * (Xc @ Xc.T)
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, 0.0)
    return dist


def _rdm_condensed(X: np.ndarray, rdm: str) -> np.ndarray:
    """Condensed RDM (pairs i < j, row-major as scipy's pdist) of the rows of X (m, D)."""
    m = X.shape[0]
    upper = np.triu_indices(m, 1)
    if rdm == "euclidean":
        return np.sqrt(_squared_distances(X)[upper])
    centred = X - X.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = centred / norms[:, None]  # a constant sample gives NaN: its correlation distance is undefined
    return 1.0 - (unit @ unit.T)[upper]


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1 … n of a 1-d float array, tied values sharing the average of their ranks: scipy's
    ``rankdata(values)`` (method "average"), value for value. Tied values all get the same rank, so the order among
    them is irrelevant and numpy's unstable (vectorised) sort serves: about a third of ``rankdata``'s time, which
    sorts stably, on the two million sample pairs of a 2 000-sample RDM."""
    order = np.argsort(values)
    ordered = values[order]
    edges = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1], [True]]))
    starts, ends = edges[:-1], edges[1:]  # each run of equal values: sorted positions starts … ends − 1
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _unit_centred(values: np.ndarray) -> np.ndarray:
    """(v − v̄)/‖v − v̄‖, so that Pearson(v, w) is a dot product; NaN when v is constant or undefined."""
    centred = values - values.mean()
    norm = np.linalg.norm(centred)
    return centred / norm if norm > 0 else np.full_like(values, np.nan)


def _rsa_vector(X: np.ndarray, rdm: str, compare: str) -> np.ndarray:
    distances = _rdm_condensed(X, rdm)
    if compare == "spearman":
        if np.isnan(distances).any():
            return np.full_like(distances, np.nan)
        distances = average_ranks(distances)  # average ranks for ties, as scipy.stats.spearmanr
    return _unit_centred(distances)


def _rbf_vector(X: np.ndarray, sigma: float) -> np.ndarray:
    """Centred RBF kernel K̃ = HKH as a unit vector v with ⟨v_K, v_L⟩ = ⟨K̃, L̃⟩_F/(‖K̃‖_F‖L̃‖_F).

    Kᵢⱼ = exp(−‖xᵢ − xⱼ‖² / (2σ²·med)), med = median of all m² squared distances (zero diagonal included).
    v = [√2·K̃ᵢⱼ (i < j), K̃ᵢᵢ] / ‖K̃‖_F (K̃ is symmetric, so the upper triangle and diagonal suffice).
    """
    m = X.shape[0]
    dist = _squared_distances(X)
    upper = np.triu_indices(m, 1)
    median = _median_with_zero_diagonal(dist[upper], m)
    if not median > 0:
        raise ValueError("cka_rbf: the median squared distance is 0 (more than half the sample pairs coincide)")
    K = np.exp(-dist / (2.0 * sigma**2 * median))
    del dist
    K -= K.mean(axis=0)[None, :]
    K -= K.mean(axis=1)[:, None]
    vector = np.concatenate([np.sqrt(2.0) * K[upper], np.diag(K)])
    return vector / np.linalg.norm(vector)


def _median_with_zero_diagonal(off_diagonal: np.ndarray, m: int) -> float:
    """Median of the m² entries of a symmetric matrix with zero diagonal, from its m(m−1)/2 upper entries ≥ 0."""
    total = m * m

    def sorted_entry(position: int) -> float:  # the position-th smallest of all m² entries (0-based)
        if position < m:
            return 0.0
        return float(np.partition(off_diagonal, (position - m) // 2)[(position - m) // 2])

    if total % 2:
        return sorted_entry(total // 2)
    return 0.5 * (sorted_entry(total // 2 - 1) + sorted_entry(total // 2))


# --------------------------------------------------------------------------------------------- Prepared


@dataclass(frozen=True)
class Prepared:
    """One model's per-layer state for the dense group (see :func:`prepare`).

    factors      centred Gram factors (N, m) per layer, cached within a byte budget, else re-read (None when
                 no factor metric is asked); rows follow the current sample order.
    spectral     per-layer feature-space terms (order-independent), or None.
    rsa, rbf     per-layer condensed unit vectors over the pairs of the pairwise subset, in BASE order, or None.
    subset       sorted subset indices (None = all samples); pair_order: the current order of the subset's
                 samples as positions into the base subset (None = unpermuted).
    """

    metrics: tuple[str, ...]
    n_samples: int
    n_layers: int
    factors: LayerFactors | None
    spectral: list[_SpectralLayer] | None
    rsa: list[np.ndarray] | None
    rbf: list[np.ndarray] | None
    subset: np.ndarray | None
    pair_order: np.ndarray | None
    options: dict

    def __len__(self) -> int:
        return self.n_layers

    def permuted(self, perm, inverse) -> Prepared:
        """The same model with samples reordered (new sample i = old sample perm[i]); nothing is recomputed.

        Factor rows are reordered lazily. The quadratic metrics live on the pairwise subset S: when S holds all
        samples this is exactly the permuted data; with a proper subset, the subset's samples are reordered
        among themselves in the order they take in ``perm`` (a uniform permutation of S when perm is uniform),
        i.e. the permutation null of the subset statistic.
        """
        perm = np.asarray(perm, dtype=np.int64)
        if perm.shape != (self.n_samples,):
            raise ValueError(f"perm must have shape ({self.n_samples},), got {perm.shape}")
        pair_order = self.pair_order
        if self.rsa is not None or self.rbf is not None:
            if self.subset is None:
                local = perm
            else:
                local = np.searchsorted(self.subset, perm[np.isin(perm, self.subset)])
            pair_order = local if self.pair_order is None else self.pair_order[local]
        return replace(self, factors=None if self.factors is None else self.factors.permuted(perm),
                       pair_order=pair_order)

    def pair_vectors(self, which: str):
        """The condensed per-layer vectors of ``which`` ("rsa" or "rbf") in the current sample order."""
        vectors = getattr(self, which)
        if vectors is None:
            raise ValueError(f"{which} was not prepared")
        if self.pair_order is None:
            yield from vectors
            return
        order = self.pair_order
        m = len(order)
        rows, cols = np.triu_indices(m, 1)
        a, b = order[rows], order[cols]
        index = _condensed_index(m, np.minimum(a, b), np.maximum(a, b))
        if which == "rbf":
            index = np.concatenate([index, len(index) + order])
        for vector in vectors:
            yield vector[index]


def prepare(layers, graphs, options: dict, metrics=METRICS,
            cache_bytes: int = DEFAULT_FACTOR_CACHE_BYTES) -> Prepared:
    """Per-layer work for ``metrics`` (default: all of :data:`METRICS`), reading each layer once.

    layers  : sequence of L arrays (N, D) (may be lazy); ``graphs`` is not used (this group reads no graphs).
    options : ``pairwise_max_samples``, ``seed`` (subset of the quadratic metrics, :func:`pairwise_subset`),
              ``rsa: {rdm, compare}``, ``shape_metric: {alpha}``, ``cka_rbf: {sigma}``.
    Per layer: the centred Gram factor P (N×min(N, D), kept while the factors fit ``cache_bytes``, else
    re-read from ``layers`` in :func:`matrices`) and the eigendecomposition of PᵀP, O(N·D·min(N, D)); for rsa
    and cka_rbf the n×n RDM/kernel of the subset (n ≤ cap), O(n²·D), kept as condensed vectors of n²/2 floats.
    Memory kept per layer: a D×D eigenbasis when D < N (m floats when D > N), D² more for pwcca, n²/2 floats per
    quadratic metric; plus the cached factors. In flight: one layer (N×D), its N×N Gram when D > N, and one n×n
    matrix (n = min(N, cap)).
    """
    del graphs
    metrics = _validated(metrics)
    if layers is None:
        raise ValueError("the dense metrics need the layer activations")
    rdm, compare = _rsa_options(options)
    alpha = _shape_alpha(options) if "shape_metric" in metrics else None
    sigma = _rbf_sigma(options)
    need_factors = bool(_FACTOR_METRICS & set(metrics))
    factors = LayerFactors(layers, cache_bytes)
    spectral, rsa_vectors, rbf_vectors = [], [], []
    n_samples, subset = None, None
    for i in range(len(layers)):
        X = factors.features(i)
        if n_samples is None:
            n_samples = X.shape[0]
            subset = pairwise_subset(n_samples, options)
            if n_samples < 4:
                raise ValueError(f"dense metrics need N ≥ 4 samples, got {n_samples}")
        _check_same_samples(n_samples, X.shape[0])
        if _PAIRWISE_METRICS & set(metrics):
            Xs = X if subset is None else X[subset]
            if "rsa" in metrics:
                rsa_vectors.append(_rsa_vector(Xs, rdm, compare))
            if "cka_rbf" in metrics:
                rbf_vectors.append(_rbf_vector(Xs, sigma))
            del Xs
        if need_factors:
            n_features = X.shape[1]
            factor = factors.factor_from_features(i, X)
            spectral.append(_spectral_layer(factor, n_features, alpha, "pwcca" in metrics))
            del factor
        del X
    return Prepared(
        metrics=metrics, n_samples=n_samples or 0, n_layers=len(layers),
        factors=factors if need_factors else None, spectral=spectral if need_factors else None,
        rsa=rsa_vectors if "rsa" in metrics else None, rbf=rbf_vectors if "cka_rbf" in metrics else None,
        subset=subset, pair_order=None,
        options={"rdm": rdm, "compare": compare, "alpha": alpha, "sigma": sigma, "cache_bytes": cache_bytes},
    )


# --------------------------------------------------------------------------------------------- pair terms


def _procrustes_from_nuclear(a: _SpectralLayer, b: _SpectralLayer, nuclear: float) -> float:
    """From ‖PₐᵀP_b‖_* = ‖AᶜᵀBᶜ‖_* (P = Xᶜ·rotation, so the singular values are those of AᶜᵀBᶜ)."""
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * nuclear / (a.frobenius * b.frobenius))))


def _shape_from_basis_cross(a: _SpectralLayer, b: _SpectralLayer, basis_cross: np.ndarray) -> float:
    """θ from UₐᵀU_b: ‖φ(A)ᵀφ(B)‖_* = ‖diag(tₐ) UₐᵀU_b diag(t_b)‖_*, ‖φ(X)‖_F = ‖t‖."""
    weighted = a.shape_weights[:, None] * basis_cross * b.shape_weights[None, :]
    cosine = _singular_values(weighted).sum() / (
        np.linalg.norm(a.shape_weights) * np.linalg.norm(b.shape_weights))
    return float(np.arccos(np.clip(cosine, -1.0, 1.0)))


def _pwcca_from_basis_cross(a: _SpectralLayer, b: _SpectralLayer, basis_cross: np.ndarray) -> float:
    """Canonical correlations ρ = singular values of UₐᵀU_b; variates of the side with fewer features (A on ties).

    For side A the variates are hᵢ = Uₐpᵢ (pᵢ its left singular vectors, already orthonormal), and
    αᵢ = Σⱼ |⟨hᵢ, aⱼ⟩| = Σⱼ |(pᵢᵀ Λₐ^{½}Vₐᵀ)ⱼ| over A's centred neuron columns aⱼ; ρᵢ = 0 beyond min(rₐ, r_b).
    """
    if a.n_features <= b.n_features:
        vectors, correlations, _ = _svd(basis_cross)
        side = a
    else:
        _, correlations, vectors_t = _svd(basis_cross)
        vectors, side = vectors_t.T, b
    rho = np.zeros(vectors.shape[1])
    rho[: len(correlations)] = correlations
    weights = np.abs(vectors.T @ side.loadings).sum(axis=1)
    return float(weights @ rho / weights.sum())


def matrices(a: Prepared, b: Prepared, metrics: tuple[str, ...], options: dict, on_cross=None
             ) -> dict[str, np.ndarray]:
    """{name: float64 (Lₐ, L_b)} for ``metrics`` ⊆ METRICS; [i, j] = score(A layer i, B layer j).

    The options that shaped the per-layer state were fixed in :func:`prepare` (both models must agree); here
    ``options`` is only checked against them. Per pair: O(N·mₐ·m_b) for the cross product of the factors plus
    O(m³) for its SVD (procrustes, shape_metric, pwcca), O(n²) for rsa and cka_rbf. ``pwcca`` is NaN for a layer
    pair where either side has D ≥ N (CCA is degenerate there); the single-pair :func:`pwcca` raises instead.
    ``on_cross(i, j, C)``, when given, receives every cross product C = PₐᵀP_b of the factor metrics' pass (the
    core pass computes its CKA and SVCCA from the same C instead of a second product).
    """
    metrics = _validated(metrics)
    missing = [m for m in metrics if m not in a.metrics or m not in b.metrics]
    if missing:
        raise ValueError(f"metrics {missing} were not prepared for both models")
    _check_same_samples(a.n_samples, b.n_samples)
    for key in ("rdm", "compare", "alpha", "sigma"):
        if a.options[key] != b.options[key] and any(m in metrics for m in _OPTION_USERS[key]):
            raise ValueError(f"the two models were prepared with different {key}: {a.options[key]} vs {b.options[key]}")
    if (a.subset is None) != (b.subset is None) or (a.subset is not None and not np.array_equal(a.subset, b.subset)):
        raise ValueError("the two models were prepared on different pairwise subsets")
    del options
    out = {name: np.full((len(a), len(b)), np.nan) for name in metrics}
    for which, name in (("rsa", "rsa"), ("rbf", "cka_rbf")):
        if name in metrics:
            vectors_a = list(a.pair_vectors(which))  # the stored arrays themselves unless A is permuted
            for j, vector_b in enumerate(b.pair_vectors(which)):
                for i, vector_a in enumerate(vectors_a):
                    out[name][i, j] = vector_a @ vector_b
    factor_metrics = [m for m in metrics if m in _FACTOR_METRICS]
    if factor_metrics:
        _factor_scores(a, b, factor_metrics, out, on_cross)
    return out


def uses_factors(metrics) -> bool:
    """Whether :func:`matrices` of ``metrics`` runs the factor pass (and so calls ``on_cross``)."""
    return bool(_FACTOR_METRICS & set(metrics))


_OPTION_USERS = {"rdm": ("rsa",), "compare": ("rsa",), "alpha": ("shape_metric",), "sigma": ("cka_rbf",)}


def _factor_scores(a: Prepared, b: Prepared, metrics, out: dict[str, np.ndarray], on_cross=None) -> None:
    """A's factors in groups within half of the cache budget; each B factor fetched once per group."""
    n = a.n_samples
    alpha = a.options["alpha"]
    unwhitened_shape = "shape_metric" in metrics and alpha is not None and alpha > 1.0 - NETREP_EIGVAL_TOL
    widths = [n * layer.basis.shape[0] * 8 for layer in a.spectral]  # the factor is (N, m)
    groups = layer_groups(widths, max(1, a.options["cache_bytes"] // 2))
    for rows in groups:
        factors_a = {i: a.factors[i] for i in rows}
        for j, layer_b in enumerate(b.spectral):
            factor_b = b.factors[j]
            for i in rows:
                layer_a = a.spectral[i]
                cross = factors_a[i].T @ factor_b
                if on_cross is not None:
                    on_cross(i, j, cross)
                nuclear = None
                if "procrustes" in metrics or unwhitened_shape:
                    nuclear = float(_singular_values(cross).sum())
                if "procrustes" in metrics:
                    out["procrustes"][i, j] = _procrustes_from_nuclear(layer_a, layer_b, nuclear)
                if unwhitened_shape:  # α = 1: φ(X) = Xᶜ, θ = arccos(‖AᶜᵀBᶜ‖_*/(‖Aᶜ‖_F‖Bᶜ‖_F)), same SVD
                    cosine = nuclear / (layer_a.frobenius * layer_b.frobenius)
                    out["shape_metric"][i, j] = float(np.arccos(np.clip(cosine, -1.0, 1.0)))
                if ("shape_metric" in metrics and not unwhitened_shape) or "pwcca" in metrics:
                    basis_cross = _basis_cross(layer_a, layer_b, cross)
                    if "shape_metric" in metrics and not unwhitened_shape:
                        out["shape_metric"][i, j] = _shape_from_basis_cross(layer_a, layer_b, basis_cross)
                    if "pwcca" in metrics and max(layer_a.n_features, layer_b.n_features) < n:
                        out["pwcca"][i, j] = _pwcca_from_basis_cross(layer_a, layer_b, basis_cross)
            del factor_b
        del factors_a


# ------------------------------------------------------------------------------------ single-pair functions


def _single(A, B, metric: str, options: dict) -> float:
    prepared_a = prepare([A], None, options, metrics=(metric,))
    prepared_b = prepare([B], None, options, metrics=(metric,))
    if metric == "pwcca":
        wide = [label for label, model in (("A", prepared_a), ("B", prepared_b))
                if model.spectral[0].n_features >= model.n_samples]
        if wide:
            raise ValueError(f"pwcca needs more samples than features (CCA is degenerate otherwise): {wide} have "
                             f"D ≥ N = {prepared_a.n_samples}")
    return float(matrices(prepared_a, prepared_b, (metric,), options)[metric][0, 0])


def rsa(A, B, rdm: str = "correlation", compare: str = "spearman", max_samples: int = DEFAULT_PAIRWISE_MAX_SAMPLES,
        seed: int = 0) -> float:
    """RSA: ``compare``-correlation of the condensed RDMs {dᵢⱼ}_{i<j} of A and B.

    rdm = "correlation": dᵢⱼ = 1 − Pearson(xᵢ, xⱼ) across features (undefined, NaN, for a constant sample);
    rdm = "euclidean": dᵢⱼ = ‖xᵢ − xⱼ‖ (invariant to rotations, translations; to scaling under "spearman").
    compare = "spearman" (Pearson of average ranks) or "pearson". On a seeded subset when N > ``max_samples``.
    """
    options = {"rsa": {"rdm": rdm, "compare": compare}, "pairwise_max_samples": max_samples, "seed": seed}
    return _single(A, B, "rsa", options)


def procrustes(A, B) -> float:
    """Orthogonal Procrustes distance √max(0, 2 − 2‖ÃᵀB̃‖_*), Ã = Aᶜ/‖Aᶜ‖_F, B̃ = Bᶜ/‖Bᶜ‖_F; ∈ [0, √2]."""
    return _single(A, B, "procrustes", {})


def shape_metric(A, B, alpha: float = 1.0) -> float:
    """Angular shape metric θ ∈ [0, π/2] with partial whitening α (netrep ``LinearMetric``, see module doc).

    α = 1: angular Procrustes distance arccos(‖ÃᵀB̃‖_*); α = 0: arccos(Σρᵢ/√(rₐr_b)) with ρ the canonical
    correlations (the mean canonical correlation when both sides have the same rank), → 0 unless N ≫ D.
    """
    return _single(A, B, "shape_metric", {"shape_metric": {"alpha": alpha}})


def pwcca(A, B) -> float:
    """Projection-weighted CCA = Σᵢ αᵢρᵢ / Σᵢ αᵢ (Morcos et al. 2018).

    ρᵢ: canonical correlations of Aᶜ and Bᶜ; hᵢ: the unit-norm canonical variates of the side with fewer
    features (A when Dₐ ≤ D_b), αᵢ = Σⱼ |⟨hᵢ, xⱼ⟩| over that side's centred feature columns xⱼ. Needs N > D on
    both sides (ValueError otherwise). Asymmetric only through the choice of side.
    """
    return _single(A, B, "pwcca", {})


def canonical_correlations(A, B) -> np.ndarray:
    """The canonical correlations ρ₁ ≥ ρ₂ ≥ … of Aᶜ and Bᶜ (min(rₐ, r_b) values): singular values of UₐᵀU_b."""
    layer_a, factor_a = _single_spectral(A)
    layer_b, factor_b = _single_spectral(B)
    _check_same_samples(factor_a.shape[0], factor_b.shape[0])
    return _singular_values(_basis_cross(layer_a, layer_b, factor_a.T @ factor_b))


def _single_spectral(X) -> tuple[_SpectralLayer, np.ndarray]:
    factors = LayerFactors([X], 0)
    features = factors.features(0)
    n_features = features.shape[1]
    factor = factors.factor_from_features(0, features)
    return _spectral_layer(factor, n_features, None, False), factor


def cka_rbf(A, B, sigma: float = 0.8, max_samples: int = DEFAULT_PAIRWISE_MAX_SAMPLES, seed: int = 0) -> float:
    """RBF CKA = ⟨K̃, L̃⟩_F/(‖K̃‖_F‖L̃‖_F), K̃ = HKH, Kᵢⱼ = exp(−‖xᵢ − xⱼ‖²/(2σ²·med)) (biased HSIC).

    med: median of all N² squared distances of that side (diagonal zeros included). On a seeded subset when
    N > ``max_samples``.
    """
    options = {"cka_rbf": {"sigma": sigma}, "pairwise_max_samples": max_samples, "seed": seed}
    return _single(A, B, "cka_rbf", options)
