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
Layer × layer: ``pair_matrices`` (per-layer work done once), ``summarize``, ``null_calibration``
(permutation null), ``bootstrap_ci`` (per-sample kNN terms). Registry ``METRICS`` at the bottom.

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
    a, b = _prepare_kernel_layer(A), _prepare_kernel_layer(B)
    _check_same_samples(a.factor.shape[0], b.factor.shape[0])
    return _cka_from_prepared(a, b, _cross_sq_norm(a, b))


def unbiased_cka(A, B) -> float:
    """Unbiased CKA = HSIC₁(K, L)/√(HSIC₁(K, K)·HSIC₁(L, L)), K = AAᵀ, L = BBᵀ (linear kernels).

    HSIC₁ (Song et al. 2012, eq. 5), with K̃, L̃ the kernels with zeroed diagonals:
        HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((N−1)(N−2)) − 2·1ᵀK̃L̃1/(N−2)] / (N(N−3)),
    evaluated in feature space (never N×N), with rᵢ = ‖aᵢ‖², sᵢ = ‖bᵢ‖²:
        tr(K̃L̃) = ‖AᵀB‖²_F − Σᵢ rᵢsᵢ,   1ᵀK̃1 = ‖Σᵢaᵢ‖² − Σᵢrᵢ,   K̃1 = A(Aᵀ1) − r,   1ᵀK̃L̃1 = (K̃1)ᵀ(L̃1).
    HSIC₁ of linear kernels is invariant to translating A or B, so the columns are centred first (numerics
    only). O(N·Dₐ·D_b) time. Needs N ≥ 4; NaN when a self term is ≤ 0. ≈ 0 for independent data.
    """
    a, b = _prepare_kernel_layer(A), _prepare_kernel_layer(B)
    _check_same_samples(a.factor.shape[0], b.factor.shape[0])
    return _unbiased_cka_from_prepared(a, b, _cross_sq_norm(a, b))


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
    O(N·D·min(N, D)) per side + O(N·rₐ·r_b). When r ≥ N−1 every correlation is 1 (CCA is degenerate):
    use N ≫ r.
    """
    _check_same_samples(np.shape(A)[0], np.shape(B)[0])
    a = _prepare_svcca_layer(_prepare_kernel_layer(A).factor, variance, n_components)
    b = _prepare_svcca_layer(_prepare_kernel_layer(B).factor, variance, n_components)
    return _svcca_from_prepared(a, b)


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
    """One layer for CKA / unbiased CKA: a factor P (N, r) with PPᵀ = AᶜAᶜᵀ and its per-layer terms."""

    factor: np.ndarray          # P, (N, r)
    self_norm: float            # ‖PᵀP‖_F = ‖AᶜᵀAᶜ‖_F
    row_sq: np.ndarray          # rᵢ = ‖pᵢ‖² = Kᵢᵢ, (N,)
    ones_kt_ones: float         # 1ᵀK̃1
    kt_ones: np.ndarray         # K̃1, (N,)
    hsic1_self: float           # HSIC₁(K, K)

    def permuted(self, perm):
        return replace(self, factor=self.factor[perm], row_sq=self.row_sq[perm], kt_ones=self.kt_ones[perm])


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


def _prepare_kernel_layer(X) -> _KernelLayer:
    X = _as_features(X)
    n = X.shape[0]
    if n < 4:
        raise ValueError(f"kernel metrics need N ≥ 4 samples, got {n}")
    factor = _gram_factor(X - X.mean(axis=0))
    row_sq = np.einsum("ij,ij->i", factor, factor)
    column_sum = factor.sum(axis=0)
    ones_kt_ones = float(column_sum @ column_sum - row_sq.sum())
    kt_ones = factor @ column_sum - row_sq
    gram = factor.T @ factor
    self_sq = float(np.sum(gram * gram))
    hsic1_self = _hsic1(self_sq - row_sq @ row_sq, ones_kt_ones, ones_kt_ones, kt_ones @ kt_ones, n)
    return _KernelLayer(factor, np.sqrt(self_sq), row_sq, ones_kt_ones, kt_ones, hsic1_self)


def _cross_sq_norm(a: _KernelLayer, b: _KernelLayer) -> float:
    """‖PₐᵀP_b‖²_F = tr(KL) for centred linear kernels. O(N·rₐ·r_b)."""
    cross = a.factor.T @ b.factor
    return float(np.sum(cross * cross))


def _cka_from_prepared(a: _KernelLayer, b: _KernelLayer, cross_sq: float) -> float:
    return _ratio(cross_sq, a.self_norm * b.self_norm)


def _unbiased_cka_from_prepared(a: _KernelLayer, b: _KernelLayer, cross_sq: float) -> float:
    n = a.factor.shape[0]
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
    """One layer for SVCCA: orthonormal basis U_r (N, r) of its top singular subspace."""

    basis: np.ndarray

    def permuted(self, perm):
        return replace(self, basis=self.basis[perm])


def _prepare_svcca_layer(centred_factor: np.ndarray, variance: float, n_components: int | None) -> _SvccaLayer:
    u, s, _ = np.linalg.svd(centred_factor, full_matrices=False)
    rank = int(np.sum(s > s.max() * max(centred_factor.shape) * np.finfo(np.float64).eps)) if s.size else 0
    if rank == 0:
        raise ValueError("SVCCA: layer has zero variance")
    if n_components is not None:
        if n_components < 1:
            raise ValueError(f"n_components must be ≥ 1, got {n_components}")
        keep = min(int(n_components), rank)
    else:
        if not 0 < variance <= 1:
            raise ValueError(f"variance must be in (0, 1], got {variance}")
        explained = np.cumsum(s[:rank] ** 2) / np.sum(s[:rank] ** 2)
        keep = int(np.searchsorted(explained, variance - 1e-12) + 1)
    return _SvccaLayer(u[:, :min(keep, rank)])


def _svcca_from_prepared(a: _SvccaLayer, b: _SvccaLayer) -> float:
    correlations = np.linalg.svd(a.basis.T @ b.basis, compute_uv=False)
    return float(np.clip(correlations, 0.0, 1.0).mean())


# ------------------------------------------------------------------------------------------- layer × layer

PAIR_METRICS = ("mutual_knn", "cycle_knn_ab", "cycle_knn_ba", "lcs_knn", "cka", "unbiased_cka", "cknna", "svcca")
KNN_METRICS = ("mutual_knn", "cycle_knn_ab", "cycle_knn_ba", "lcs_knn")
_GRAPH_METRICS = frozenset(KNN_METRICS + ("cknna",))
_FEATURE_METRICS = frozenset(("cka", "unbiased_cka", "cknna", "svcca"))


@dataclass(frozen=True)
class PreparedLayer:
    """Everything one layer contributes to any pair, computed once (see ``prepare_layers``)."""

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


def prepare_layers(layers, graphs, k: int, metrics, svcca_variance: float = 0.99,
                   svcca_components: int | None = None) -> list[PreparedLayer]:
    """Per-layer work for ``metrics``: k-prefix of the graph, Gram factor and HSIC terms, CKNNA kernel values,
    SVCCA basis. ``layers`` (L of (N, D)) may be None if only kNN metrics are asked, ``graphs`` (L, N, ≥k) if
    only CKA/unbiased CKA/SVCCA are. Cost O(L·N·D·min(N, D)) at most (SVCCA's SVD)."""
    metrics = _validated_metrics(metrics)
    need_graph = bool(_GRAPH_METRICS & set(metrics))
    need_features = bool(_FEATURE_METRICS & set(metrics))
    if need_graph and graphs is None:
        raise ValueError(f"metrics {sorted(_GRAPH_METRICS & set(metrics))} need neighbour graphs")
    if need_features and layers is None:
        raise ValueError(f"metrics {sorted(_FEATURE_METRICS & set(metrics))} need the layer activations")
    n_layers = len(graphs) if need_graph else len(layers)
    if need_graph and need_features and len(layers) != len(graphs):
        raise ValueError(f"{len(layers)} layers but {len(graphs)} graphs")
    prepared = []
    for layer in range(n_layers):
        graph = _prefix(graphs[layer], k) if need_graph else None
        features = _as_features(layers[layer]) if need_features else None
        kernel = _prepare_kernel_layer(features) if {"cka", "unbiased_cka", "svcca"} & set(metrics) else None
        prepared.append(PreparedLayer(
            graph=graph,
            kernel=kernel,
            cknna=_prepare_cknna_layer(features, graph) if "cknna" in metrics else None,
            svcca=(_prepare_svcca_layer(kernel.factor, svcca_variance, svcca_components)
                   if "svcca" in metrics else None),
        ))
    return prepared


def pair_matrices(layers_a, layers_b, graphs_a, graphs_b, k: int, metrics=PAIR_METRICS,
                  svcca_variance: float = 0.99, svcca_components: int | None = None) -> dict[str, np.ndarray]:
    """Layer × layer matrices of every metric for one model pair: {name: float64 (Lₐ, L_b)}, [i, j] = (A layer i,
    B layer j).

    layers_* : sequences of (N, D) float arrays (None when only kNN metrics are asked);
    graphs_*  : int arrays (L, N, kmax) of cosine neighbour graphs (None when no kNN metric/CKNNA is asked);
    k ≤ kmax; metrics ⊆ {mutual_knn, cycle_knn_ab, cycle_knn_ba, lcs_knn, cka, unbiased_cka, cknna, svcca}.
    cycle_knn_ab[i, j] = cycle_knn(Aᵢ, B_j) (via B's neighbours, back through A's); cycle_knn_ba[i, j] =
    cycle_knn(B_j, Aᵢ). Per-layer work (graph prefixes, centring, Gram factors, SVDs, CKNNA kernel values) is
    done once per layer, not per pair. Per pair: O(N·k) for mutual/cycle kNN and CKNNA (O(N·k·log(N·k)) when
    N² exceeds ``DENSE_LOOKUP_MAX_BYTES``), O(N·k²) for LCS, O(N·rₐ·r_b) for the CKA family and SVCCA
    (r = min(N, D), or the kept SVCCA directions).
    """
    metrics = _validated_metrics(metrics)
    prepared_a = prepare_layers(layers_a, graphs_a, k, metrics, svcca_variance, svcca_components)
    prepared_b = prepare_layers(layers_b, graphs_b, k, metrics, svcca_variance, svcca_components)
    return pair_matrices_prepared(prepared_a, prepared_b, metrics)


def pair_matrices_prepared(prepared_a, prepared_b, metrics=PAIR_METRICS) -> dict[str, np.ndarray]:
    """``pair_matrices`` on layers already run through ``prepare_layers`` (e.g. reused across permutations).

    Loops over B's layers outside, so only one B-layer slot look-up (≤ ``DENSE_LOOKUP_MAX_BYTES``) is alive.
    """
    metrics = _validated_metrics(metrics)
    if prepared_a and prepared_b:
        _check_same_samples(_n_samples(prepared_a[0]), _n_samples(prepared_b[0]))
    out = {name: np.full((len(prepared_a), len(prepared_b)), np.nan) for name in metrics}
    uses_graphs = bool(_GRAPH_METRICS & set(metrics))
    for j, b in enumerate(prepared_b):
        lookup_b = _SlotLookup.from_graph(b.graph) if uses_graphs else None
        for i, a in enumerate(prepared_a):
            for name, value in _pair_scores(a, b, lookup_b, metrics).items():
                out[name][i, j] = value
    return out


def _pair_scores(a: PreparedLayer, b: PreparedLayer, lookup_b: _SlotLookup | None, metrics) -> dict[str, float]:
    scores = {}
    if lookup_b is not None:
        relations = _relations(a.graph, lookup_b)
        k = a.graph.shape[1]
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
    if {"cka", "unbiased_cka"} & set(metrics):
        cross_sq = _cross_sq_norm(a.kernel, b.kernel)
        if "cka" in metrics:
            scores["cka"] = _cka_from_prepared(a.kernel, b.kernel, cross_sq)
        if "unbiased_cka" in metrics:
            scores["unbiased_cka"] = _unbiased_cka_from_prepared(a.kernel, b.kernel, cross_sq)
    if "svcca" in metrics:
        scores["svcca"] = _svcca_from_prepared(a.svcca, b.svcca)
    return scores


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
                     svcca_components: int | None = None) -> dict:
    """Permutation null for every summary of every metric.

    B's sample order is permuted P times (``numpy.random.default_rng(seed)``); with perm a permutation and
    inv its inverse, the permuted B has rows B[perm] and graph inv[idx_b[perm]] (a relabelling: no k-NN
    recomputation; equal to recomputing the graph on B[perm] whenever B has no distance ties). Each permuted
    pair is summarised like the observed one (for the max: the max over layer pairs of the permuted matrix).

    Returns {metric: {summary: {observed, null_mean, null_std (ddof=1), z = (observed − mean)/std,
    p_value = (1 + #{null ≥ observed})/(1 + P), n_permutations}}} for summary in (max, last, matched_depth).
    Cost: P × ``pair_matrices_prepared`` (per-layer preparation is permuted, not recomputed). The dense
    metrics (CKA family, SVCCA) cost O(N·rₐ·r_b) per layer pair and permutation: prefer the kNN metrics or a
    small P for them.
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be ≥ 1, got {n_permutations}")
    metrics = _validated_metrics(metrics)
    prepared_a = prepare_layers(layers_a, graphs_a, k, metrics, svcca_variance, svcca_components)
    prepared_b = prepare_layers(layers_b, graphs_b, k, metrics, svcca_variance, svcca_components)
    observed = {name: summarize(mat) for name, mat in pair_matrices_prepared(prepared_a, prepared_b, metrics).items()}
    n = _n_samples(prepared_b[0])
    rng = np.random.default_rng(seed)
    null = {name: {s: np.empty(n_permutations) for s in SUMMARIES} for name in metrics}
    for p in range(n_permutations):
        perm = rng.permutation(n)
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(n)
        permuted_b = [layer.permuted(perm, inverse) for layer in prepared_b]
        for name, mat in pair_matrices_prepared(prepared_a, permuted_b, metrics).items():
            summary = summarize(mat)
            for s in SUMMARIES:
                null[name][s][p] = summary[s]
    return {name: {s: _null_statistics(observed[name][s], null[name][s]) for s in SUMMARIES} for name in metrics}


def _n_samples(layer: PreparedLayer) -> int:
    if layer.graph is not None:
        return layer.graph.shape[0]
    if layer.kernel is not None:
        return layer.kernel.factor.shape[0]
    if layer.svcca is not None:
        return layer.svcca.basis.shape[0]
    raise ValueError("empty prepared layer")


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
