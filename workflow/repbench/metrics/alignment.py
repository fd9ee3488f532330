"""Alignment metrics between two models' representations of the same N samples (PRH family).

Pure functions on arrays; definitions in the project's METRICS.md (section "Alignment"). Notation: A ∈ ℝ^{N×Dₐ},
B ∈ ℝ^{N×D_b} one layer of each model (rows = the same samples), x̂ = x/‖x‖, Nₖᴬ(i) the k nearest neighbours
of sample i in A (cosine, self excluded, ties by lower index: the prefix k ≤ kmax of a stored graph).

kNN family (inputs: neighbour index arrays ``idx`` (N, ≥k); rows are sets of distinct indices; membership
between graphs is an O(1) look-up in an N×N slot table, or a sorted search when N is large: O(N·k) or
O(N·k·log(N·k)) per layer pair, LCS O(N·k²)):
    mutual_knn(A, B) = (1/N) Σᵢ |Nₖᴬ(i) ∩ Nₖᴮ(i)| / k                    chance level k/(N−1)
    cycle_knn(A, B)  = (1/N) Σᵢ 1[i ∈ ⋃_{j∈Nₖᴮ(i)} Nₖᴬ(j)]                 asymmetric
    lcs_knn(A, B)    = (1/N) Σᵢ LCS(Nₖᴬ(i), Nₖᴮ(i)) / k   (ordered lists; the PRH code forgets the /k)
Kernel family (inputs: features; float64 arithmetic, never an N×N matrix except the optional Gram factor
when D > N, see ``_gram_factor``):
    linear_cka, unbiased_cka (Song et al. 2012 HSIC₁ in feature space), cknna (Huh et al. 2024), svcca
    (Raghu et al. 2017).
Layer × layer: ``pair_matrices`` (per-layer work done once, one layer read at a time; CKA, unbiased CKA and
SVCCA of a layer pair all come from one cross product PₐᵀP_b of the centred layers, computed in a pass that
holds at most ``budget_bytes`` of layers and re-reads the rest, so memory stays bounded for large N),
``summarize``, ``null_calibration`` (permutation null), ``bootstrap_ci`` (per-sample kNN terms). Registry
``METRICS`` at the bottom.

Differences from the PRH reference code (documented, not copied): lcs_knn is divided by k; CKNNA/CKA ratios
have no "+1e-6" in the denominator (undefined ratios give NaN); SVCCA is the paper's definition (variance
fraction per side, exact CCA), not a rank-10 ``svd_lowrank`` plus noise; CKA/unbiased CKA/SVCCA use the
features as given (after optional clipping), L2 normalisation is applied only where a definition says so
(kNN graphs, CKNNA kernels); summaries report the argmax as (layer_a, layer_b).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

_CHUNK_ELEMENTS = 4_000_000  # bound for (rows × k × D) and (n_boot × N) temporaries


# ------------------------------------------------------------------------------------------- preprocessing

def preprocess(X, clip_quantile: float | None = None) -> np.ndarray:
    """Optional outlier clipping of one layer: x ← clip(x, −t, t), t = q-quantile of |x| over all entries.

    X (N, D) finite → float64 (N, D). ``clip_quantile=None`` (or 1) returns the values unchanged. The PRH paper
    used q = 0.95. Normalisation is not done here: it is part of the metrics whose definition has it.
    O(N·D) time (the quantile uses a partition, not a sort).
    """
    X = np.array(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a (samples, features) array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("activations contain non-finite values")
    if clip_quantile is None or clip_quantile == 1:
        return X
    if not 0 < clip_quantile < 1:
        raise ValueError(f"clip_quantile must be in (0, 1], got {clip_quantile}")
    threshold = np.quantile(np.abs(X), clip_quantile)
    return np.clip(X, -threshold, threshold, out=X)


# ----------------------------------------------------------------------------------------------- kNN family

def mutual_knn_per_sample(idx_a, idx_b, k: int) -> np.ndarray:
    """|Nₖᴬ(i) ∩ Nₖᴮ(i)| / k for every sample: float64 (N,). O(N·k) (O(N·k·log(N·k)) for large N), plus
    O(N²) bytes set to zero for the slot table."""
    return (_relations(*_graph_pair(idx_a, idx_b, k)).positions >= 0).sum(axis=1) / k


def mutual_knn(idx_a, idx_b, k: int) -> float:
    """mutual_knn = (1/N) Σᵢ |Nₖᴬ(i) ∩ Nₖᴮ(i)| / k ∈ [0, 1]; chance level k/(N−1)."""
    return float(mutual_knn_per_sample(idx_a, idx_b, k).mean())


def cycle_knn_per_sample(idx_a, idx_b, k: int) -> np.ndarray:
    """1[i ∈ ⋃_{j∈Nₖᴮ(i)} Nₖᴬ(j)] for every sample (go to B's neighbours, come back through A's): float64 (N,).

    Hit for i ⟺ an A-edge j→i whose reverse i→j is a B-edge; found by one look-up per A-edge. O(N·k).
    """
    a, b = _graph_pair(idx_a, idx_b, k)
    return _relations(a, b).cycle_ab().astype(np.float64)


def cycle_knn(idx_a, idx_b, k: int) -> float:
    """cycle_knn(A, B) = (1/N) Σᵢ 1[i ∈ ⋃_{j∈Nₖᴮ(i)} Nₖᴬ(j)]; asymmetric (report both directions).

    Note: cycle_knn(A, A) is the fraction of samples with at least one reciprocal neighbour, which is < 1 when
    some sample is in no neighbour's list (anti-hubs), so the "A vs A → 1" truth check does not hold for it.
    """
    return float(cycle_knn_per_sample(idx_a, idx_b, k).mean())


def lcs_knn_per_sample(idx_a, idx_b, k: int) -> np.ndarray:
    """LCS(Nₖᴬ(i), Nₖᴮ(i)) / k of the ordered neighbour lists, for every sample: float64 (N,).

    The lists hold distinct indices, so the LCS equals the longest strictly increasing subsequence of the
    positions in B's list of A's neighbours (in A's order), computed by patience sorting for all rows at once:
    O(N·k²) time, O(N·k) memory.
    """
    return _lcs_lengths(_relations(*_graph_pair(idx_a, idx_b, k)).positions) / k


def lcs_knn(idx_a, idx_b, k: int) -> float:
    """lcs_knn = (1/N) Σᵢ LCS(Nₖᴬ(i), Nₖᴮ(i)) / k ∈ [0, 1] (ordered lists). O(N·k²)."""
    return float(lcs_knn_per_sample(idx_a, idx_b, k).mean())


def _lcs_lengths(positions: np.ndarray) -> np.ndarray:
    """Longest strictly increasing subsequence of each row's non-negative entries (patience sorting, all rows
    at once): (N, k) int positions (−1 = absent) → (N,) float64 lengths. O(N·k²)."""
    n, k = positions.shape
    tails = np.full((n, k), k, dtype=np.int64)  # tails[r, l]: smallest tail of an increasing run of length l+1
    rows = np.arange(n)
    for t in range(k):
        value = positions[:, t]
        present = value >= 0
        slot = (tails < value[:, None]).sum(axis=1)
        tails[rows[present], slot[present]] = value[present]
    return (tails < k).sum(axis=1).astype(np.float64)


def _prefix(idx, k: int) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"neighbour indices must be an integer (N, kmax) array, got {idx.dtype} {idx.shape}")
    if not 1 <= k <= idx.shape[1]:
        raise ValueError(f"k={k} must be in [1, kmax={idx.shape[1]}]")
    prefix = np.ascontiguousarray(idx[:, :k], dtype=np.int64)
    if prefix.size and (prefix.min() < 0 or prefix.max() >= idx.shape[0]):
        raise ValueError(f"neighbour indices must lie in [0, N={idx.shape[0]})")
    return prefix


def _graph_pair(idx_a, idx_b, k: int):
    a, b = _prefix(idx_a, k), _prefix(idx_b, k)
    if a.shape != b.shape:
        raise ValueError(f"neighbour arrays differ in shape: {a.shape} vs {b.shape} (same samples, same k?)")
    return a, _SlotLookup.from_graph(b)


DENSE_LOOKUP_MAX_BYTES = 256 * 2**20  # N×N slot table when it fits (N ≤ 16384 for k < 255), else sorted keys


@dataclass(frozen=True)
class _SlotLookup:
    """slot(i, j) = position of j in row i of a k-NN graph, or −1: vectorised membership between graphs.

    Dense form: an N×N table of slot+1 (uint8 for k < 255), O(1) per look-up, N²·itemsize bytes, used when
    that is ≤ ``DENSE_LOOKUP_MAX_BYTES``. Sparse form: the sorted edge keys i·N + j, O(log(N·k)) per look-up.
    Rows must hold distinct indices (true for k-NN graphs).
    """

    graph: np.ndarray                 # (N, k) int64
    table: np.ndarray | None = None   # (N, N) slot + 1, 0 = absent
    keys: np.ndarray | None = None    # sorted i·N + j
    key_slots: np.ndarray | None = None

    @classmethod
    def from_graph(cls, graph: np.ndarray, max_dense_bytes: int | None = None) -> _SlotLookup:
        n, k = graph.shape
        dtype = np.uint8 if k < 255 else np.int32
        limit = DENSE_LOOKUP_MAX_BYTES if max_dense_bytes is None else max_dense_bytes
        if n * n * np.dtype(dtype).itemsize <= limit:
            table = np.zeros((n, n), dtype=dtype)
            table[np.arange(n)[:, None], graph] = np.arange(1, k + 1, dtype=dtype)
            return cls(graph, table=table)
        keys = np.repeat(np.arange(n, dtype=np.int64), k) * n + graph.ravel()
        order = np.argsort(keys, kind="stable")
        return cls(graph, keys=keys[order], key_slots=order % k)

    def slots(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Slot of cols[...] in row rows[...] (broadcast arrays), −1 where absent; int64."""
        if self.table is not None:
            return self.table[rows, cols].astype(np.int64) - 1
        n = self.graph.shape[0]
        queries = (rows * n + cols).ravel()
        where = np.minimum(np.searchsorted(self.keys, queries), len(self.keys) - 1)
        found = self.keys[where] == queries
        return np.where(found, self.key_slots[where], -1).reshape(np.broadcast(rows, cols).shape)


@dataclass(frozen=True)
class _Relations:
    """How A's k-NN lists sit in B's, for all samples at once (the basis of every kNN metric and CKNNA).

    positions[i, t]  = slot of A[i, t] in B's list of i, or −1;
    reciprocal[i, t] = i ∈ B's list of A[i, t] (the A-edge i→A[i, t] is, reversed, a B-edge).
    """

    graph_a: np.ndarray
    positions: np.ndarray
    reciprocal: np.ndarray

    def cycle_ab(self) -> np.ndarray:
        """cycle_knn(A, B) per sample: i hit ⟺ ∃ A-edge j→i with i→j a B-edge (so j ∈ Nₖᴮ(i), i ∈ Nₖᴬ(j))."""
        hit = np.zeros(self.graph_a.shape[0], dtype=bool)
        hit[self.graph_a[self.reciprocal]] = True
        return hit

    def cycle_ba(self) -> np.ndarray:
        """cycle_knn(B, A) per sample: i hit ⟺ ∃ j ∈ Nₖᴬ(i) with i ∈ Nₖᴮ(j)."""
        return self.reciprocal.any(axis=1)


def _relations(graph_a: np.ndarray, lookup_b: _SlotLookup) -> _Relations:
    """Two vectorised look-ups of A's N·k edges in B: forward (positions) and reversed (reciprocal). O(N·k)."""
    if graph_a.shape != lookup_b.graph.shape:
        raise ValueError(f"neighbour arrays differ in shape: {graph_a.shape} vs {lookup_b.graph.shape}")
    rows = np.arange(graph_a.shape[0])[:, None]
    return _Relations(graph_a, lookup_b.slots(rows, graph_a), lookup_b.slots(graph_a, rows) >= 0)


def _row_chunks(n: int, per_row: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, per_row))
    for start in range(0, n, step):
        yield np.arange(start, min(start + step, n))


# -------------------------------------------------------------------------------------------- kernel family

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


def _prepare_kernel_layer(factor: np.ndarray) -> tuple[_KernelLayer, np.ndarray]:
    """The layer's kernel terms and its (m, m) factor Gram PᵀP (for SVCCA) from its centred factor P."""
    n = factor.shape[0]
    if n < 4:
        raise ValueError(f"kernel metrics need N ≥ 4 samples, got {n}")
    row_sq = np.einsum("ij,ij->i", factor, factor)
    column_sum = factor.sum(axis=0)
    ones_kt_ones = float(column_sum @ column_sum - row_sq.sum())
    kt_ones = factor @ column_sum - row_sq
    gram = factor.T @ factor
    self_sq = float(np.sum(gram * gram))
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
        factor = self._cache.get(i)
        if factor is None:
            factor = self.factor_from_features(i, self.features(i))
        return factor if self.perm is None else factor[self.perm]

    def permuted(self, perm: np.ndarray) -> LayerFactors:
        composed = perm if self.perm is None else self.perm[perm]
        return LayerFactors(self.layers, self.cache_bytes, composed, self._cache)


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
    if rank == 0:
        raise ValueError("SVCCA: layer has zero variance")
    if n_components is not None:
        if n_components < 1:
            raise ValueError(f"n_components must be ≥ 1, got {n_components}")
        keep = min(int(n_components), rank)
    else:
        if not 0 < variance <= 1:
            raise ValueError(f"variance must be in (0, 1], got {variance}")
        explained = np.cumsum(eigval[:rank]) / np.sum(eigval[:rank])
        keep = min(int(np.searchsorted(explained, variance - 1e-12) + 1), rank)
    return _SvccaLayer(eigvec[:, :keep] / np.sqrt(eigval[:keep]))


def _svcca_from_cross(a: _SvccaLayer, b: _SvccaLayer, cross: np.ndarray) -> float:
    """Mean of the singular values of U_{r,a}ᵀU_{r,b} = Wₐᵀ (PₐᵀP_b) W_b, clipped to [0, 1]."""
    correlations = np.linalg.svd(a.projection.T @ cross @ b.projection, compute_uv=False)
    return float(np.clip(correlations, 0.0, 1.0).mean())


# ------------------------------------------------------------------------------------------- layer × layer

PAIR_METRICS = ("mutual_knn", "cycle_knn_ab", "cycle_knn_ba", "lcs_knn", "cka", "unbiased_cka", "cknna", "svcca")
KNN_METRICS = ("mutual_knn", "cycle_knn_ab", "cycle_knn_ba", "lcs_knn")
_GRAPH_METRICS = frozenset(KNN_METRICS + ("cknna",))
_FEATURE_METRICS = frozenset(("cka", "unbiased_cka", "cknna", "svcca"))


DEFAULT_FEATURE_BUDGET_BYTES = 1024 * 2**20  # features held at once by the dense metrics (see LayerFactors)
_DENSE_PAIR_METRICS = frozenset(("cka", "unbiased_cka", "svcca"))


@dataclass(frozen=True)
class PreparedLayer:
    """Everything one layer contributes to any pair except its N×m factor, computed once (``prepare_model``)."""

    graph: np.ndarray | None  # (N, k) int64 k-NN prefix
    kernel: _KernelLayer | None
    cknna: _CknnaLayer | None
    svcca: _SvccaLayer | None

    def permuted(self, perm: np.ndarray, inverse: np.ndarray) -> PreparedLayer:
        """The same layer with its samples reordered (new sample i = old perm[i]); graphs relabelled."""
        return PreparedLayer(
            graph=None if self.graph is None else inverse[self.graph[perm]],
            kernel=None if self.kernel is None else self.kernel.permuted(perm),
            cknna=None if self.cknna is None else self.cknna.permuted(perm, inverse),
            svcca=None if self.svcca is None else self.svcca.permuted(perm),
        )

    @property
    def n_samples(self) -> int:
        if self.graph is not None:
            return self.graph.shape[0]
        if self.kernel is not None:
            return len(self.kernel.row_sq)
        raise ValueError("empty prepared layer")


@dataclass(frozen=True)
class PreparedModel:
    """One model's prepared layers plus access to their factors (only when a dense pair metric is asked)."""

    layers: list[PreparedLayer]
    factors: LayerFactors | None
    budget_bytes: int = DEFAULT_FEATURE_BUDGET_BYTES

    def __len__(self) -> int:
        return len(self.layers)

    def permuted(self, perm: np.ndarray, inverse: np.ndarray) -> PreparedModel:
        """Samples reordered (new sample i = old perm[i]) without recomputing anything per layer."""
        return replace(self, layers=[layer.permuted(perm, inverse) for layer in self.layers],
                       factors=None if self.factors is None else self.factors.permuted(perm))


def prepare_model(layers, graphs, k: int, metrics, svcca_variance: float = 0.99,
                  svcca_components: int | None = None,
                  budget_bytes: int = DEFAULT_FEATURE_BUDGET_BYTES) -> PreparedModel:
    """Per-layer work for ``metrics``, one layer at a time: k-prefix of the graph, centred Gram factor and its
    HSIC terms, CKNNA kernel values, SVCCA projection.

    ``layers`` (L of (N, D), e.g. a lazy sequence reading a store; None if only kNN metrics are asked) is read
    once here; when a dense pair metric (CKA, unbiased CKA, SVCCA) is asked, the factors are kept up to a quarter
    of ``budget_bytes`` and re-read from ``layers`` beyond it. ``graphs`` (L, N, ≥k), None if only CKA/unbiased
    CKA/SVCCA are asked. Cost O(L·N·D·min(N, D)); memory O(N·(k + D)) per layer in flight plus the kept factors.
    """
    metrics = _validated_metrics(metrics)
    need_graph = bool(_GRAPH_METRICS & set(metrics))
    need_features = bool(_FEATURE_METRICS & set(metrics))
    need_kernel = bool(_DENSE_PAIR_METRICS & set(metrics))
    if need_graph and graphs is None:
        raise ValueError(f"metrics {sorted(_GRAPH_METRICS & set(metrics))} need neighbour graphs")
    if need_features and layers is None:
        raise ValueError(f"metrics {sorted(_FEATURE_METRICS & set(metrics))} need the layer activations")
    n_layers = len(graphs) if need_graph else len(layers)
    if need_graph and need_features and len(layers) != len(graphs):
        raise ValueError(f"{len(layers)} layers but {len(graphs)} graphs")
    factors = LayerFactors(layers, budget_bytes // 4) if need_features else None
    prepared = []
    for layer in range(n_layers):
        graph = _prefix(graphs[layer], k) if need_graph else None
        features = factors.features(layer) if need_features else None
        if graph is not None and features is not None and features.shape[0] != graph.shape[0]:
            raise ValueError(f"features have {features.shape[0]} samples but the graph has {graph.shape[0]}")
        cknna_layer = _prepare_cknna_layer(features, graph) if "cknna" in metrics else None
        kernel = svcca_layer = None
        if need_kernel:
            kernel, gram = _prepare_kernel_layer(factors.factor_from_features(layer, features))
            if "svcca" in metrics:
                svcca_layer = _prepare_svcca_layer(gram, features.shape[0], svcca_variance, svcca_components)
        prepared.append(PreparedLayer(graph=graph, kernel=kernel, cknna=cknna_layer, svcca=svcca_layer))
        del features
    return PreparedModel(prepared, factors if need_kernel else None, budget_bytes)


def pair_matrices(layers_a, layers_b, graphs_a, graphs_b, k: int, metrics=PAIR_METRICS,
                  svcca_variance: float = 0.99, svcca_components: int | None = None,
                  budget_bytes: int = DEFAULT_FEATURE_BUDGET_BYTES) -> dict[str, np.ndarray]:
    """Layer × layer matrices of every metric for one model pair: {name: float64 (Lₐ, L_b)}, [i, j] = (A layer i,
    B layer j).

    layers_* : sequences of (N, D) float arrays (None when only kNN metrics are asked); a lazy sequence (e.g.
               reading a Zarr store) keeps memory bounded for large N: see ``budget_bytes``;
    graphs_*  : int arrays (L, N, kmax) of cosine neighbour graphs (None when no kNN metric/CKNNA is asked);
    k ≤ kmax; metrics ⊆ {mutual_knn, cycle_knn_ab, cycle_knn_ba, lcs_knn, cka, unbiased_cka, cknna, svcca};
    budget_bytes : float64 factors (N×min(N, D) each) held at once by the dense metrics; A's layers go through
               in groups of at most half of it, B's are re-read once per group when they do not fit.
    cycle_knn_ab[i, j] = cycle_knn(Aᵢ, B_j) (via B's neighbours, back through A's); cycle_knn_ba[i, j] =
    cycle_knn(B_j, Aᵢ). Per-layer work (graph prefixes, centring, Gram factors, SVCCA bases, CKNNA kernel values)
    is done once per layer, not per pair. Per pair: O(N·k) for mutual/cycle kNN and CKNNA (O(N·k·log(N·k)) when
    N² exceeds ``DENSE_LOOKUP_MAX_BYTES``), O(N·k²) for LCS, O(N·rₐ·r_b) for the CKA family and SVCCA (one
    cross product PₐᵀP_b, r = min(N, D)).
    """
    metrics = _validated_metrics(metrics)
    options = dict(svcca_variance=svcca_variance, svcca_components=svcca_components, budget_bytes=budget_bytes)
    model_a = prepare_model(layers_a, graphs_a, k, metrics, **options)
    model_b = prepare_model(layers_b, graphs_b, k, metrics, **options)
    return pair_matrices_prepared(model_a, model_b, metrics)


def pair_matrices_prepared(model_a: PreparedModel, model_b: PreparedModel, metrics=PAIR_METRICS) -> dict[str, np.ndarray]:
    """``pair_matrices`` on models already run through ``prepare_model`` (e.g. reused across permutations).

    Graph metrics loop over B's layers outside, so only one B-layer slot look-up (≤ ``DENSE_LOOKUP_MAX_BYTES``)
    is alive; dense metrics go through ``_dense_scores``.
    """
    metrics = _validated_metrics(metrics)
    if len(model_a) and len(model_b):
        _check_same_samples(model_a.layers[0].n_samples, model_b.layers[0].n_samples)
    out = {name: np.full((len(model_a), len(model_b)), np.nan) for name in metrics}
    graph_metrics = [m for m in metrics if m in _GRAPH_METRICS]
    if graph_metrics:
        for j, b in enumerate(model_b.layers):
            lookup_b = _SlotLookup.from_graph(b.graph)
            for i, a in enumerate(model_a.layers):
                for name, value in _graph_scores(a, b, lookup_b, graph_metrics).items():
                    out[name][i, j] = value
    dense_metrics = [m for m in metrics if m in _DENSE_PAIR_METRICS]
    if dense_metrics:
        _dense_scores(model_a, model_b, dense_metrics, out)
    return out


def _graph_scores(a: PreparedLayer, b: PreparedLayer, lookup_b: _SlotLookup, metrics) -> dict[str, float]:
    relations = _relations(a.graph, lookup_b)
    k = a.graph.shape[1]
    scores = {}
    if "mutual_knn" in metrics:
        scores["mutual_knn"] = float(np.count_nonzero(relations.positions >= 0) / relations.positions.size)
    if "lcs_knn" in metrics:
        scores["lcs_knn"] = float(_lcs_lengths(relations.positions).mean() / k)
    if "cycle_knn_ab" in metrics:
        scores["cycle_knn_ab"] = float(relations.cycle_ab().mean())
    if "cycle_knn_ba" in metrics:
        scores["cycle_knn_ba"] = float(relations.cycle_ba().mean())
    if "cknna" in metrics:
        scores["cknna"] = _cknna_from_prepared(a.cknna, b.cknna, relations.positions)
    return scores


def _dense_scores(model_a: PreparedModel, model_b: PreparedModel, metrics, out: dict[str, np.ndarray]) -> None:
    """CKA, unbiased CKA and SVCCA of every layer pair from one cross product C = PₐᵀP_b each.

    A's layers go in groups whose factors take at most half of A's budget; for each group every B factor is
    fetched once (from the cache or re-read), so memory stays within the budget plus one B layer.
    """
    n = model_a.layers[0].n_samples
    group_bytes = max(1, model_a.budget_bytes // 2)
    group: list[int] = []
    groups, size = [], 0
    for i, layer in enumerate(model_a.layers):
        width_bytes = n * layer.kernel.width * 8
        if group and size + width_bytes > group_bytes:
            groups.append(group)
            group, size = [], 0
        group.append(i)
        size += width_bytes
    groups.append(group)
    for rows in groups:
        factors_a = {i: model_a.factors[i] for i in rows}
        for j, b in enumerate(model_b.layers):
            factor_b = model_b.factors[j]
            for i in rows:
                a = model_a.layers[i]
                cross = factors_a[i].T @ factor_b
                cross_sq = _cross_sq_norm(cross)
                if "cka" in metrics:
                    out["cka"][i, j] = _cka_from_prepared(a.kernel, b.kernel, cross_sq)
                if "unbiased_cka" in metrics:
                    out["unbiased_cka"][i, j] = _unbiased_cka_from_prepared(a.kernel, b.kernel, cross_sq)
                if "svcca" in metrics:
                    out["svcca"][i, j] = _svcca_from_cross(a.svcca, b.svcca, cross)
            del factor_b
        del factors_a


def _validated_metrics(metrics) -> tuple[str, ...]:
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in metrics if m not in PAIR_METRICS]
    if unknown:
        raise ValueError(f"unknown alignment metric(s) {unknown}; known: {list(PAIR_METRICS)}")
    if not metrics:
        raise ValueError("no metric requested")
    return tuple(dict.fromkeys(metrics))


# ------------------------------------------------------------------------------------ summaries and nulls

SUMMARIES = ("max", "last", "matched_depth")


def summarize(matrix) -> dict:
    """Summaries of one (Lₐ, L_b) layer × layer matrix M.

    max = max M (NaN ignored); argmax = (layer_a, layer_b) of the first maximum in row-major order (in that
    order: A's layer first); last = M[−1, −1]; matched_depth = (1/Lₐ) Σᵢ M[i, j(i)] with
    j(i) = round(i·(L_b−1)/(Lₐ−1)) rounding halves up (j = 0 when Lₐ = 1). All-NaN → max NaN, argmax (−1, −1).
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"expected a non-empty (layer_a, layer_b) matrix, got shape {m.shape}")
    if np.all(np.isnan(m)):
        best, where = float("nan"), (-1, -1)
    else:
        flat = int(np.nanargmax(m))
        where = tuple(int(v) for v in np.unravel_index(flat, m.shape))
        best = float(m[where])
    return {"max": best, "argmax": where, "last": float(m[-1, -1]), "matched_depth": _matched_depth(m)}


def matched_layers(n_a: int, n_b: int) -> np.ndarray:
    """j(i) = round(i·(L_b−1)/(Lₐ−1)), halves up, in exact integer arithmetic; (Lₐ,) int."""
    i = np.arange(n_a)
    if n_a == 1:
        return np.zeros(1, dtype=np.int64)
    return (2 * i * (n_b - 1) + (n_a - 1)) // (2 * (n_a - 1))


def _matched_depth(m: np.ndarray) -> float:
    return float(np.mean(m[np.arange(m.shape[0]), matched_layers(*m.shape)]))


def null_calibration(layers_a, layers_b, graphs_a, graphs_b, k: int, metrics=KNN_METRICS,
                     n_permutations: int = 100, seed: int = 0, svcca_variance: float = 0.99,
                     svcca_components: int | None = None,
                     budget_bytes: int = DEFAULT_FEATURE_BUDGET_BYTES) -> dict:
    """Permutation null for every summary of every metric.

    B's sample order is permuted P times (``numpy.random.default_rng(seed)``); with perm a permutation and
    inv its inverse, the permuted B has rows B[perm] and graph inv[idx_b[perm]] (a relabelling: no k-NN
    recomputation; equal to recomputing the graph on B[perm] whenever B has no distance ties). Each permuted
    pair is summarised like the observed one (for the max: the max over layer pairs of the permuted matrix).

    Returns {metric: {summary: {observed, null_mean, null_std (ddof=1), z = (observed − mean)/std,
    p_value = (1 + #{null ≥ observed})/(1 + P), n_permutations}}} for summary in (max, last, matched_depth).
    Cost: P × ``pair_matrices_prepared`` (per-layer preparation is permuted, not recomputed). The dense
    metrics (CKA family, SVCCA) cost O(N·rₐ·r_b) per layer pair and permutation, i.e. P full passes over the
    features: prefer the kNN metrics or a small P for them.
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be ≥ 1, got {n_permutations}")
    metrics = _validated_metrics(metrics)
    options = dict(svcca_variance=svcca_variance, svcca_components=svcca_components, budget_bytes=budget_bytes)
    prepared_a = prepare_model(layers_a, graphs_a, k, metrics, **options)
    prepared_b = prepare_model(layers_b, graphs_b, k, metrics, **options)
    return null_calibration_prepared(prepared_a, prepared_b, metrics, n_permutations, seed)


def null_calibration_prepared(model_a: PreparedModel, model_b: PreparedModel, metrics, n_permutations: int,
                              seed: int = 0, observed: dict[str, np.ndarray] | None = None) -> dict:
    """``null_calibration`` on prepared models; ``observed`` (the unpermuted matrices, if already computed)
    saves one pass."""
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be ≥ 1, got {n_permutations}")
    metrics = _validated_metrics(metrics)
    if observed is None:
        observed = pair_matrices_prepared(model_a, model_b, metrics)
    observed = {name: summarize(observed[name]) for name in metrics}
    n = model_b.layers[0].n_samples
    rng = np.random.default_rng(seed)
    null = {name: {s: np.empty(n_permutations) for s in SUMMARIES} for name in metrics}
    for p in range(n_permutations):
        perm = rng.permutation(n)
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(n)
        permuted_b = model_b.permuted(perm, inverse)
        for name, mat in pair_matrices_prepared(model_a, permuted_b, metrics).items():
            summary = summarize(mat)
            for s in SUMMARIES:
                null[name][s][p] = summary[s]
    return {name: {s: _null_statistics(observed[name][s], null[name][s]) for s in SUMMARIES} for name in metrics}


def _null_statistics(observed: float, null: np.ndarray) -> dict:
    mean = float(np.nanmean(null)) if np.any(~np.isnan(null)) else float("nan")
    std = float(np.nanstd(null, ddof=1)) if np.sum(~np.isnan(null)) > 1 else float("nan")
    z = (observed - mean) / std if std > 0 else float("nan")
    p_value = (1 + int(np.sum(null >= observed))) / (1 + len(null))
    return {"observed": float(observed), "null_mean": mean, "null_std": std, "z": float(z),
            "p_value": float(p_value), "n_permutations": len(null)}


def bootstrap_ci(per_sample_scores, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-sample terms (e.g. ``mutual_knn_per_sample``).

    Resamples the N samples with replacement ``n_boot`` times (``numpy.random.default_rng(seed)``) and returns
    the ((1−level)/2, (1+level)/2) quantiles of the resampled means. O(n_boot·N) time, memory bounded by
    chunking. Note: the k-NN terms of different samples are not independent (shared neighbourhoods), so the
    interval reflects sampling of query points for fixed graphs.
    """
    scores = np.asarray(per_sample_scores, dtype=np.float64).ravel()
    if scores.size == 0 or not np.isfinite(scores).all():
        raise ValueError("per_sample_scores must be a non-empty finite array")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be ≥ 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = scores.size
    means = np.empty(n_boot)
    step = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, step):
        count = min(step, n_boot - start)
        means[start:start + count] = scores[rng.integers(0, n, size=(count, n))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


# ----------------------------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class AlignmentMetric:
    """Registry entry: ``function`` with its own signature; ``__call__(A, B, idx_a, idx_b, k)`` uniform."""

    name: str
    function: Callable
    uses_features: bool
    uses_graphs: bool

    def __call__(self, A=None, B=None, idx_a=None, idx_b=None, k=None):
        if self.uses_features and self.uses_graphs:
            return self.function(A, B, idx_a, idx_b, k)
        if self.uses_graphs:
            return self.function(idx_a, idx_b, k)
        return self.function(A, B)


def _cycle_knn_ba(idx_a, idx_b, k: int) -> float:
    """cycle_knn in the other direction: cycle_knn(B, A)."""
    return cycle_knn(idx_b, idx_a, k)


METRICS: dict[str, AlignmentMetric] = {
    "mutual_knn": AlignmentMetric("mutual_knn", mutual_knn, uses_features=False, uses_graphs=True),
    "cycle_knn_ab": AlignmentMetric("cycle_knn_ab", cycle_knn, uses_features=False, uses_graphs=True),
    "cycle_knn_ba": AlignmentMetric("cycle_knn_ba", _cycle_knn_ba, uses_features=False, uses_graphs=True),
    "lcs_knn": AlignmentMetric("lcs_knn", lcs_knn, uses_features=False, uses_graphs=True),
    "cka": AlignmentMetric("cka", linear_cka, uses_features=True, uses_graphs=False),
    "unbiased_cka": AlignmentMetric("unbiased_cka", unbiased_cka, uses_features=True, uses_graphs=False),
    "cknna": AlignmentMetric("cknna", cknna, uses_features=True, uses_graphs=True),
    "svcca": AlignmentMetric("svcca", svcca, uses_features=True, uses_graphs=False),
}
