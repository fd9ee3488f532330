"""Kernel/feature alignment metrics between two models' representations of the same N samples.

Inputs: features A ∈ ℝ^{N×Dₐ}, B ∈ ℝ^{N×D_b} (rows = the same samples); float64 arithmetic, never an N×N matrix
except the optional Gram factor when D > N (see ``_gram_factor``):
    linear_cka, unbiased_cka (Song et al. 2012 HSIC₁ in feature space), cknna (Huh et al. 2024), svcca
    (Raghu et al. 2017).
Definitions: see docs/metrics.md (section "Alignment"). Also here: the per-layer prepared terms (``_KernelLayer``,
``_CknnaLayer``, ``_SvccaLayer``), the layers' centred Gram factors (:class:`LayerFactors`) and the HSIC helpers
that the layer × layer pass (:func:`repbench.metrics.alignment.pair_matrices_prepared`) combines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .knn import _graph_pair, _relations

_CHUNK_ELEMENTS = 4_000_000  # bound for (rows × k × D) and (n_boot × N) temporaries


def _row_chunks(n: int, per_row: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, per_row))
    for start in range(0, n, step):
        yield np.arange(start, min(start + step, n))


def linear_cka(A, B) -> float:
    """Linear CKA = ‖BᶜᵀAᶜ‖²_F / (‖AᶜᵀAᶜ‖_F ‖BᶜᵀBᶜ‖_F), Aᶜ, Bᶜ column-centred (Kornblith et al. 2019).

    Equals HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)) with K = AAᵀ, L = BBᵀ, HSIC = tr(KHLH). A (N, Dₐ), B (N, D_b).
    Feature-space form: O(N·Dₐ·D_b) time, O(Dₐ·D_b) extra memory. Invariant to rotations and isotropic scaling.
    """
    return _single_pair_score(A, B, "cka")


def unbiased_cka(A, B) -> float:
    """Unbiased CKA = HSIC₁(K, L)/√(HSIC₁(K, K)·HSIC₁(L, L)), K = AAᵀ, L = BBᵀ (linear kernels).

    HSIC₁ (Song et al. 2012, eq. 5), with K̃, L̃ the kernels with zeroed diagonals:
        HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((N−1)(N−2)) − 2·1ᵀK̃L̃1/(N−2)] / (N(N−3)),
    evaluated in feature space (never N×N), with rᵢ = ‖aᵢ‖², sᵢ = ‖bᵢ‖²:
        tr(K̃L̃) = ‖AᵀB‖²_F − Σᵢ rᵢsᵢ,   1ᵀK̃1 = ‖Σᵢaᵢ‖² − Σᵢrᵢ,   K̃1 = A(Aᵀ1) − r,   1ᵀK̃L̃1 = (K̃1)ᵀ(L̃1).
    HSIC₁ of linear kernels is invariant to translating A or B, so the columns are centred first (numerics
    only). O(N·Dₐ·D_b) time. Needs N ≥ 4; NaN when a self term is ≤ 0. ≈ 0 for independent data.
    """
    return _single_pair_score(A, B, "unbiased_cka")


def _single_pair_score(A, B, metric: str, **options) -> float:
    from . import pair_matrices  # the layer × layer pass, for one pair of layers

    layers_a, layers_b = [_as_features(A)], [_as_features(B)]
    _check_same_samples(layers_a[0].shape[0], layers_b[0].shape[0])
    return float(pair_matrices(layers_a, layers_b, None, None, 1, (metric,), **options)[metric][0, 0])


def cknna(A, B, idx_a, idx_b, k: int) -> float:
    """CKNNA (Huh et al. 2024) = s(K, L)/√(s(K, K)·s(L, L)), K = ÂÂᵀ, L = B̂B̂ᵀ (rows L2-normalised).

    s(K, L) = HSIC₁(M∘K, M∘L) with the mask Mᵢⱼ = 1[j ∈ Nₖᴬ(i)]·1[j ∈ Nₖᴮ(i)] (row-wise, diagonal excluded);
    s(K, K) uses the mask of A with itself, Mᵢⱼ = 1[j ∈ Nₖᴬ(i)] (likewise for L). M is not symmetric, so the
    HSIC₁ terms are taken literally: tr(K̃L̃) = Σᵢⱼ K̃ᵢⱼL̃ⱼᵢ and 1ᵀK̃L̃1 = (K̃ᵀ1)ᵀ(L̃1). M∘K has ≤ k non-zeros per
    row, so everything is computed from the sparse entries: O(N·k·D) for the kernel values, O(N·k·log(N·k))
    for the rest. NaN unless s(K, K) > 0 and s(L, L) > 0. ``idx_*`` (N, ≥k) int, cosine graphs.
    """
    graph_a, lookup_b = _graph_pair(idx_a, idx_b, k)
    a = _prepare_cknna_layer(_as_features(A), graph_a)
    b = _prepare_cknna_layer(_as_features(B), lookup_b.graph)
    return _cknna_from_prepared(a, b, _relations(graph_a, lookup_b).positions)


def svcca(A, B, variance: float = 0.99, n_components: int | None = None) -> float:
    """SVCCA (Raghu et al. 2017): mean canonical correlation between the top singular subspaces of A and B.

    Per side: centre the columns, SVD Aᶜ = USVᵀ, keep the r leading directions with
    Σ_{l≤r} σ²_l / Σ σ² ≥ ``variance`` (or r = ``n_components``). CCA between the reduced data AᶜV_r = U_rS_r
    and B's: its canonical correlations are the singular values ρ₁ ≥ … of U_{r,a}ᵀU_{r,b} (the reduced data
    spans the orthonormal columns U_r). SVCCA = mean of the min(rₐ, r_b) correlations ∈ [0, 1].
    Evaluated without U (N×r): V and S come from the eigendecomposition of AᶜᵀAᶜ = VS²Vᵀ, and
    U_{r,a}ᵀU_{r,b} = S_{r,a}⁻¹V_{r,a}ᵀ (AᶜᵀBᶜ) V_{r,b}S_{r,b}⁻¹ reuses CKA's cross product. Directions with
    σ² ≤ σ²_max·max(N, D)·ε are rank-deficient noise and never kept. O(N·D²) per side + O(N·Dₐ·D_b).
    When r ≥ N−1 every correlation is 1 (CCA is degenerate): use N ≫ r.
    """
    return _single_pair_score(A, B, "svcca", svcca_variance=variance, svcca_components=n_components)


def _singular_values(matrix: np.ndarray) -> np.ndarray:
    """σ₁ ≥ σ₂ ≥ … of a float64 matrix: LAPACK's divide-and-conquer SVD through torch (its MKL build takes about
    two thirds of numpy's OpenBLAS time on the 768 × 768 cross products of a layer pair)."""
    return torch.linalg.svdvals(torch.from_numpy(np.ascontiguousarray(matrix))).numpy()


def _svd(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full SVD U, σ, Vᵀ (``full_matrices=True``) of a float64 matrix, through torch as :func:`_singular_values`."""
    u, sigma, vt = torch.linalg.svd(torch.from_numpy(np.ascontiguousarray(matrix)), full_matrices=True)
    return u.numpy(), sigma.numpy(), vt.numpy()


def _check_same_samples(n_a: int, n_b: int) -> None:
    if n_a != n_b:
        raise ValueError(f"the two representations must hold the same samples: N={n_a} vs N={n_b}")


def _as_features(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a (samples, features) array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("activations contain non-finite values")
    return X


@dataclass(frozen=True)
class _KernelLayer:
    """One layer's own terms for CKA / unbiased CKA, from its centred Gram factor P (N, m), PPᵀ = AᶜAᶜᵀ.

    P itself (N×m) is not kept here: pair terms need the cross product PₐᵀP_b, computed in a pass over the
    layers' factors (``LayerFactors``, ``_dense_scores``).
    """

    width: int                  # m, columns of P
    self_norm: float            # ‖PᵀP‖_F = ‖AᶜᵀAᶜ‖_F
    row_sq: np.ndarray          # rᵢ = ‖pᵢ‖² = Kᵢᵢ, (N,)
    ones_kt_ones: float         # 1ᵀK̃1
    kt_ones: np.ndarray         # K̃1, (N,)
    hsic1_self: float           # HSIC₁(K, K)

    def permuted(self, perm):
        return replace(self, row_sq=self.row_sq[perm], kt_ones=self.kt_ones[perm])


def _gram_factor(centred: np.ndarray) -> np.ndarray:
    """P with PPᵀ = AᶜAᶜᵀ and the fewest columns: Aᶜ itself when D ≤ N, else V√Λ from the N×N Gram's eigh.

    All CKA terms depend on A only through the Gram matrix, so P can replace Aᶜ (cost O(N³) once per layer,
    then O(N·rₐ·r_b) per pair instead of O(N·Dₐ·D_b)).
    """
    n, d = centred.shape
    if d <= n:
        return centred
    eigval, eigvec = np.linalg.eigh(centred @ centred.T)
    keep = eigval > eigval.max() * n * np.finfo(np.float64).eps
    return eigvec[:, keep] * np.sqrt(eigval[keep])


def _prepare_kernel_layer(factor: np.ndarray, gram_sq: float | None = None
                          ) -> tuple[_KernelLayer, np.ndarray | None]:
    """The layer's kernel terms and its (m, m) factor Gram PᵀP (for SVCCA) from its centred factor P.

    ``gram_sq``: ‖PᵀP‖²_F when already known (the dense group's eigendecomposition of the same PᵀP); then PᵀP is
    not formed and None is returned in its place.
    """
    n = factor.shape[0]
    if n < 4:
        raise ValueError(f"kernel metrics need N ≥ 4 samples, got {n}")
    row_sq = np.einsum("ij,ij->i", factor, factor)
    column_sum = factor.sum(axis=0)
    ones_kt_ones = float(column_sum @ column_sum - row_sq.sum())
    kt_ones = factor @ column_sum - row_sq
    gram = None
    if gram_sq is None:
        gram = factor.T @ factor
        gram_sq = float(np.sum(gram * gram))
    self_sq = gram_sq
    hsic1_self = _hsic1(self_sq - row_sq @ row_sq, ones_kt_ones, ones_kt_ones, kt_ones @ kt_ones, n)
    return _KernelLayer(factor.shape[1], np.sqrt(self_sq), row_sq, ones_kt_ones, kt_ones, hsic1_self), gram


class LayerFactors:
    """Centred Gram factors P (N, m) of one model's layers, computed on demand from ``layers``.

    ``layers[i]`` is any (N, D) array-like (a list of arrays, or a lazy sequence that reads a store). A factor
    is ``_gram_factor`` of the column-centred float64 layer. Factors are kept while their total stays within
    ``cache_bytes`` (so small problems compute each once); beyond it a layer is recomputed from ``layers``
    whenever a pass needs it, which bounds memory for large N. ``permuted`` shares the cache and reorders rows.
    """

    def __init__(self, layers, cache_bytes: int, perm: np.ndarray | None = None, _cache: dict | None = None):
        self.layers, self.cache_bytes, self.perm = layers, cache_bytes, perm
        self._cache = {} if _cache is None else _cache

    def __len__(self) -> int:
        return len(self.layers)

    def features(self, i: int) -> np.ndarray:
        """Layer i as a float64 (N, D) array owned by the caller (validated: 2-D, finite), rows not permuted."""
        X = np.array(self.layers[i], dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"expected a (samples, features) array, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("activations contain non-finite values")
        return X

    def factor_from_features(self, i: int, X: np.ndarray) -> np.ndarray:
        """Layer i's factor from its features ``X`` (centred in place, so X is consumed); kept if it fits."""
        X -= X.mean(axis=0)
        factor = _gram_factor(X)
        used = sum(f.nbytes for f in self._cache.values())
        if i not in self._cache and used + factor.nbytes <= self.cache_bytes:
            self._cache[i] = factor
        return factor

    def __getitem__(self, i: int) -> np.ndarray:
        factor = self.stored(i)
        return factor if self.perm is None else factor[self.perm]

    def stored(self, i: int) -> np.ndarray:
        """Layer i's factor with its rows as stored (``perm`` not applied: no reordered copy)."""
        factor = self._cache.get(i)
        return self.factor_from_features(i, self.features(i)) if factor is None else factor

    def permuted(self, perm: np.ndarray) -> LayerFactors:
        composed = perm if self.perm is None else self.perm[perm]
        return LayerFactors(self.layers, self.cache_bytes, composed, self._cache)


def layer_groups(item_bytes, group_bytes: int) -> list[list[int]]:
    """Consecutive layer indices grouped so each group's ``item_bytes`` sum to at most ``group_bytes`` (a layer
    larger than that forms a group of its own): the groups of A's factors held at once in a layer × layer pass."""
    groups, group, size = [], [], 0
    for i, width_bytes in enumerate(item_bytes):
        if group and size + width_bytes > group_bytes:
            groups.append(group)
            group, size = [], 0
        group.append(i)
        size += width_bytes
    groups.append(group)
    return groups


def _cross_sq_norm(cross: np.ndarray) -> float:
    """‖PₐᵀP_b‖²_F = tr(KL) for centred linear kernels, from the cross product C = PₐᵀP_b."""
    return float(np.sum(cross * cross))


def _cka_from_prepared(a: _KernelLayer, b: _KernelLayer, cross_sq: float) -> float:
    return _ratio(cross_sq, a.self_norm * b.self_norm)


def _unbiased_cka_from_prepared(a: _KernelLayer, b: _KernelLayer, cross_sq: float) -> float:
    n = len(a.row_sq)
    hsic_ab = _hsic1(cross_sq - a.row_sq @ b.row_sq, a.ones_kt_ones, b.ones_kt_ones, a.kt_ones @ b.kt_ones, n)
    return _ratio_of_self_terms(hsic_ab, a.hsic1_self, b.hsic1_self)


def _hsic1(trace_kl: float, ones_k_ones: float, ones_l_ones: float, ones_kl_ones: float, n: int) -> float:
    """Song et al. (2012) unbiased HSIC from its four terms (kernels with zeroed diagonals)."""
    return (trace_kl + ones_k_ones * ones_l_ones / ((n - 1) * (n - 2)) - 2.0 * ones_kl_ones / (n - 2)) / (n * (n - 3))


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else float("nan")


def _ratio_of_self_terms(cross: float, self_a: float, self_b: float) -> float:
    return float(cross / np.sqrt(self_a * self_b)) if self_a > 0 and self_b > 0 else float("nan")


@dataclass(frozen=True)
class _CknnaLayer:
    """One layer for CKNNA: its k-NN lists, the kernel values Kᵢ,ⱼ at them, and s(K, K)."""

    graph: np.ndarray           # (N, k) int64
    kernel_at_graph: np.ndarray  # (N, k) float64, x̂ᵢ·x̂_{graph[i, t]}
    self_term: float            # HSIC₁(M_A∘K, M_A∘K)

    def permuted(self, perm, inverse):
        return replace(self, graph=inverse[self.graph[perm]], kernel_at_graph=self.kernel_at_graph[perm])


def _prepare_cknna_layer(X: np.ndarray, graph: np.ndarray) -> _CknnaLayer:
    n, k = graph.shape
    if X.shape[0] != n:
        raise ValueError(f"features have {X.shape[0]} samples but the graph has {n}")
    norms = np.linalg.norm(X, axis=1)
    if np.any(norms == 0):
        raise ValueError("CKNNA normalises rows: zero rows are not allowed")
    unit = X / norms[:, None]
    values = np.empty((n, k), dtype=np.float64)
    for rows in _row_chunks(n, k * X.shape[1]):
        values[rows] = np.einsum("rd,rtd->rt", unit[rows], unit[graph[rows]])
    rows_all = np.repeat(np.arange(n), k)
    self_term = _hsic1_sparse(rows_all, graph.ravel(), values.ravel(), values.ravel(), n)
    return _CknnaLayer(graph, values, self_term)


def _cknna_from_prepared(a: _CknnaLayer, b: _CknnaLayer, positions: np.ndarray) -> float:
    """Mask entries (i, j) with j in both lists: K from A's stored values, L from B's at j's position in B."""
    n = a.graph.shape[0]
    row, slot = np.nonzero(positions >= 0)
    cols = a.graph[row, slot]
    k_vals = a.kernel_at_graph[row, slot]
    l_vals = b.kernel_at_graph[row, positions[row, slot]]
    cross = _hsic1_sparse(row, cols, k_vals, l_vals, n)
    return _ratio_of_self_terms(cross, a.self_term, b.self_term)


def _hsic1_sparse(rows, cols, k_vals, l_vals, n: int) -> float:
    """HSIC₁(K̃, L̃) for K̃, L̃ sharing the sparse support {(rows[e], cols[e])} (no repeated entries).

    tr(K̃L̃) = Σ_e K̃[e]·L̃[transpose of e] over entries whose transpose is also in the support (found by a
    sorted-key search), 1ᵀK̃1 = ΣK̃, 1ᵀK̃L̃1 = (column sums of K̃)·(row sums of L̃). O(E log E), E entries.
    """
    off_diagonal = rows != cols
    rows, cols, k_vals, l_vals = rows[off_diagonal], cols[off_diagonal], k_vals[off_diagonal], l_vals[off_diagonal]
    keys = rows.astype(np.int64) * n + cols
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    transposed = cols.astype(np.int64) * n + rows
    where = np.minimum(np.searchsorted(sorted_keys, transposed), max(len(sorted_keys) - 1, 0))
    has_transpose = sorted_keys[where] == transposed if len(sorted_keys) else np.zeros(0, dtype=bool)
    trace_kl = float(np.sum(k_vals[has_transpose] * l_vals[order[where[has_transpose]]]))
    k_column_sums = np.bincount(cols, weights=k_vals, minlength=n)
    l_row_sums = np.bincount(rows, weights=l_vals, minlength=n)
    return _hsic1(trace_kl, float(k_vals.sum()), float(l_vals.sum()), float(k_column_sums @ l_row_sums), n)


@dataclass(frozen=True)
class _SvccaLayer:
    """One layer for SVCCA: projection W = V_r S_r⁻¹ (m, r), so that U_r = P W is its top singular basis."""

    projection: np.ndarray

    def permuted(self, perm):
        return self  # W lives in feature space: permuting samples does not change it


def _prepare_svcca_layer(gram: np.ndarray, n: int, variance: float, n_components: int | None) -> _SvccaLayer:
    """From the factor Gram PᵀP = VS²Vᵀ (m, m): keep r directions (variance fraction or ``n_components``)."""
    eigval, eigvec = np.linalg.eigh(gram)
    eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
    top = eigval[0] if eigval.size else 0.0
    rank = int(np.sum(eigval > top * max(n, gram.shape[0]) * np.finfo(np.float64).eps)) if top > 0 else 0
    keep = _svcca_keep(eigval, rank, variance, n_components)
    return _SvccaLayer(eigvec[:, :keep] / np.sqrt(eigval[:keep]))


def _svcca_layer_from_basis(eigenvalues: np.ndarray, basis: np.ndarray, variance: float,
                            n_components: int | None) -> _SvccaLayer:
    """The same ``_SvccaLayer`` from an eigendecomposition of PᵀP already made (the dense group's): the kept
    eigenvalues λ (descending, λ > λ_max·max(N, m)·ε, the rank rule above) and basis V_rλ^{−½} (m, r)."""
    keep = _svcca_keep(eigenvalues, len(eigenvalues), variance, n_components)
    return _SvccaLayer(np.ascontiguousarray(basis[:, :keep]))


def _svcca_keep(eigval: np.ndarray, rank: int, variance: float, n_components: int | None) -> int:
    """Directions SVCCA keeps among the ``rank`` leading eigenvalues (descending) ``eigval``."""
    if rank == 0:
        raise ValueError("SVCCA: layer has zero variance")
    if n_components is not None:
        if n_components < 1:
            raise ValueError(f"n_components must be ≥ 1, got {n_components}")
        return min(int(n_components), rank)
    if not 0 < variance <= 1:
        raise ValueError(f"variance must be in (0, 1], got {variance}")
    explained = np.cumsum(eigval[:rank]) / np.sum(eigval[:rank])
    return min(int(np.searchsorted(explained, variance - 1e-12) + 1), rank)


def _svcca_from_cross(a: _SvccaLayer, b: _SvccaLayer, cross: np.ndarray) -> float:
    """Mean of the singular values of U_{r,a}ᵀU_{r,b} = Wₐᵀ (PₐᵀP_b) W_b, clipped to [0, 1]."""
    correlations = _singular_values(a.projection.T @ cross @ b.projection)
    return float(np.clip(correlations, 0.0, 1.0).mean())
