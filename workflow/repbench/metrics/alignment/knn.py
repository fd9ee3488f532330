"""kNN-set alignment metrics between two models' neighbour graphs of the same N samples.

Inputs: neighbour index arrays ``idx`` (N, ≥k); rows are sets of distinct indices, Nₖᴬ(i) the k nearest
neighbours of sample i in A (cosine, self excluded, ties by lower index: the prefix k ≤ kmax of a stored graph).
Membership between graphs is an O(1) look-up in an N×N slot table, or k cache-resident column gathers when N is
large: O(N·k) or O(N·k²) per layer pair, LCS O(N·k²):
    mutual_knn(A, B) = (1/N) Σᵢ |Nₖᴬ(i) ∩ Nₖᴮ(i)| / k                    chance level k/(N−1)
    cycle_knn(A, B)  = (1/N) Σᵢ 1[i ∈ ⋃_{j∈Nₖᴮ(i)} Nₖᴬ(j)]                 asymmetric
    lcs_knn(A, B)    = (1/N) Σᵢ LCS(Nₖᴬ(i), Nₖᴮ(i)) / k   (ordered lists; the PRH code forgets the /k)
Definitions: see docs/metrics.md (section "Alignment"). The slot look-up and the relations of A's edges in B
(:class:`_SlotLookup`, :func:`_relations`) are shared with CKNNA (:mod:`.kernels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


def mutual_knn_per_sample(idx_a, idx_b, k: int) -> np.ndarray:
    """|Nₖᴬ(i) ∩ Nₖᴮ(i)| / k for every sample: float64 (N,). O(N·k) (O(N·k²) for large N), plus
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
    at once): (N, k) int positions (−1 = absent, else < k) → (N,) float64 lengths. O(N·k²).

    For k ≤ 62 the patience piles' tails (a strictly increasing set of values < k) are one int64 bit mask per
    row: a value v replaces the smallest tail ≥ v (lowest set bit of mask & −2^v) by v, and the length is the
    number of set bits, so each of the k steps is a few vectorised integer operations on (N,) arrays.
    """
    n, k = positions.shape
    if k > _LCS_MASK_MAX_K:
        return _lcs_lengths_piles(positions)
    mask = np.zeros(n, dtype=np.int64)
    for t in range(k):
        value = positions[:, t]
        bit = np.left_shift(np.int64(1), np.maximum(value, 0))
        above = mask & -bit  # the tails ≥ v
        replaced = (mask ^ (above & -above)) | bit
        mask = np.where(value >= 0, replaced, mask)
    return _popcount(mask).astype(np.float64)


_LCS_MASK_MAX_K = 62


def _popcount(mask: np.ndarray) -> np.ndarray:
    """Set bits of each non-negative int64."""
    if hasattr(np, "bitwise_count"):  # numpy ≥ 2
        return np.bitwise_count(mask)
    table = np.array([bin(b).count("1") for b in range(256)], dtype=np.int64)
    return table[np.ascontiguousarray(mask).view(np.uint8)].reshape(len(mask), 8).sum(axis=1)


def _lcs_lengths_piles(positions: np.ndarray) -> np.ndarray:
    """``_lcs_lengths`` with the piles' tails as an (N, k) array (any k). O(N·k²)."""
    n, k = positions.shape
    tails = np.full((n, k), k, dtype=np.int64)  # tails[r, l]: smallest tail of an increasing run of length l+1
    rows = np.arange(n)
    for t in range(k):
        value = positions[:, t]
        present = value >= 0
        slot = (tails < value[:, None]).sum(axis=1)
        tails[rows[present], slot[present]] = value[present]
    return (tails < k).sum(axis=1).astype(np.float64)


def _prefix(idx, k: int, dtype=np.int64) -> np.ndarray:
    """The first k columns of a neighbour graph, validated, as a contiguous ``dtype`` array (``dtype=None``: the
    graph's own integer type, so a whole contiguous graph is returned without a copy)."""
    idx = np.asarray(idx)
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"neighbour indices must be an integer (N, kmax) array, got {idx.dtype} {idx.shape}")
    if not 1 <= k <= idx.shape[1]:
        raise ValueError(f"k={k} must be in [1, kmax={idx.shape[1]}]")
    prefix = np.ascontiguousarray(idx[:, :k], dtype=dtype)
    if prefix.size and (prefix.min() < 0 or prefix.max() >= idx.shape[0]):
        raise ValueError(f"neighbour indices must lie in [0, N={idx.shape[0]})")
    return prefix


def _graph_pair(idx_a, idx_b, k: int):
    a, b = _prefix(idx_a, k), _prefix(idx_b, k)
    if a.shape != b.shape:
        raise ValueError(f"neighbour arrays differ in shape: {a.shape} vs {b.shape} (same samples, same k?)")
    return a, _SlotLookup.from_graph(b)


DENSE_LOOKUP_MAX_BYTES = 256 * 2**20  # N×N slot table when it fits (N ≤ 16384 for k < 255), else slot columns


@dataclass(frozen=True)
class _SlotLookup:
    """slot(i, j) = position of j in row i of a k-NN graph, or −1: vectorised membership between graphs.

    Dense form: an N×N table of slot+1 (uint8 for k < 255), O(1) per look-up, N²·itemsize bytes, used when
    that is ≤ ``DENSE_LOOKUP_MAX_BYTES``. Column form (larger N): the graph's k slot columns g[:, s] (k × N int32,
    4·N·k bytes); a look-up of (i, j) compares j with g[i, s] for s = 0 … k − 1, each step one vectorised gather
    from a column of N entries, which stays in the CPU cache: O(k) per look-up but no cache miss per step. At
    N = 50 000, k = 10: 7.9 ms for A's N·k edges forward and 22.5 ms reversed, against 36.8 and 217 ms for a
    binary search over B's sorted edge keys.
    Rows must hold distinct indices (true for k-NN graphs).
    """

    graph: np.ndarray                 # (N, k) int64
    table: np.ndarray | None = None   # (N, N) slot + 1, 0 = absent
    columns: np.ndarray | None = None  # (k, N) int32: columns[s, i] = g[i, s]

    @classmethod
    def from_graph(cls, graph: np.ndarray, max_dense_bytes: int | None = None,
                   reuse: _SlotLookup | None = None) -> _SlotLookup:
        """The look-up of ``graph`` (N, k). ``reuse``: a look-up the caller is done with; its N×N table, if of the
        same shape, is cleared entry by entry and refilled (O(N·k)) instead of allocating and zeroing a new one
        (page faults on N² bytes: ~0.1 s at N = 10 000, paid per B layer and permutation). ``reuse`` is invalid
        afterwards."""
        n, k = graph.shape
        dtype = _slot_dtype(k)
        limit = DENSE_LOOKUP_MAX_BYTES if max_dense_bytes is None else max_dense_bytes
        if n * n * np.dtype(dtype).itemsize <= limit:
            rows = np.arange(n, dtype=np.int64)[:, None] * n
            table = None
            if reuse is not None and reuse.table is not None and reuse.table.shape == (n, n) \
                    and reuse.table.dtype == dtype:
                table = reuse.table
                table.reshape(-1)[rows + reuse.graph] = 0
            if table is None:
                table = np.zeros((n, n), dtype=dtype)
            table.reshape(-1)[rows + graph] = np.arange(1, k + 1, dtype=dtype)
            return cls(graph, table=table)
        index = np.int32 if n < 2**31 else np.int64
        return cls(graph, columns=np.ascontiguousarray(graph.T, dtype=index))

    def raw(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Slot + 1 of cols[...] in row rows[...] (broadcast arrays), 0 where absent, in the table's own dtype (no
        conversion: the kNN pass counts and tests these values, most of them 0 under a permutation null)."""
        if self.table is not None:
            return self.at_keys(np.asarray(rows, dtype=np.int64) * self.graph.shape[0] + cols)
        rows, cols = np.asarray(rows), np.asarray(cols)
        out = np.zeros(np.broadcast_shapes(rows.shape, cols.shape), dtype=_slot_dtype(len(self.columns)))
        for slot, column in enumerate(self.columns, start=1):  # rows hold distinct indices: at most one match
            out[np.take(column, rows) == cols] = slot
        return out

    def at_keys(self, keys: np.ndarray) -> np.ndarray:
        """:meth:`raw` at edge keys i·N + j (any shape), e.g. those of an :class:`_EdgeKeys` kept across look-ups."""
        if self.table is not None:  # flat take: ~2.5× numpy's two-index gather
            return np.take(self.table.reshape(-1), keys)
        rows, cols = np.divmod(keys, self.graph.shape[0])
        return self.raw(rows, cols)

    def slots(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Slot of cols[...] in row rows[...] (broadcast arrays), −1 where absent; int64."""
        return self.raw(rows, cols).astype(np.int64) - 1


def _slot_dtype(k: int):
    return np.uint8 if k < 255 else np.int32


@dataclass(frozen=True)
class _Relations:
    """How A's k-NN lists sit in B's, for all samples at once (the basis of every kNN metric and CKNNA).

    found[i, t]   = 1 + slot of A[i, t] in B's list of i, 0 if absent (:meth:`_SlotLookup.raw`);
    reverse[i, t] ≠ 0 ⟺ i ∈ B's list of A[i, t] (the A-edge i→A[i, t] is, reversed, a B-edge).
    Derived on first use: positions = found − 1 (int64, −1 = absent), reciprocal = reverse ≠ 0, common (the
    number of shared neighbours per sample) and hit_rows (the samples sharing at least one).
    """

    graph_a: np.ndarray
    found: np.ndarray
    reverse: np.ndarray

    @cached_property
    def positions(self) -> np.ndarray:
        return self.found.astype(np.int64) - 1

    @property
    def reciprocal(self) -> np.ndarray:
        return self.reverse != 0

    @cached_property
    def common(self) -> np.ndarray:
        """|Nₖᴬ(i) ∩ Nₖᴮ(i)| per sample: (N,) int64."""
        return np.count_nonzero(self.found, axis=1)

    @cached_property
    def hit_rows(self) -> np.ndarray:
        return np.flatnonzero(self.common)

    def row_terms(self, terms) -> np.ndarray:
        """Per-sample terms of a metric that is 0 wherever the two lists share nothing (LCS, Jaccard, rank
        similarity): ``terms(positions)`` evaluated on the samples sharing a neighbour only, 0 elsewhere, (N,)
        float64, equal to ``terms`` of the whole ``positions`` row by row. Under a permutation null these are a
        few samples (about k² of N), so the metric costs O(N·k) to find them and little more."""
        n = self.found.shape[0]
        rows = self.hit_rows
        if 2 * len(rows) > n:  # most samples: the whole array (no gather and scatter of rows)
            return terms(self.positions)
        out = np.zeros(n)
        if len(rows):
            out[rows] = terms(self.found[rows].astype(np.int64) - 1)
        return out

    def cycle_ab(self) -> np.ndarray:
        """cycle_knn(A, B) per sample: i hit ⟺ ∃ A-edge j→i with i→j a B-edge (so j ∈ Nₖᴮ(i), i ∈ Nₖᴬ(j))."""
        hit = np.zeros(self.graph_a.shape[0], dtype=bool)
        hit[self.graph_a[self.reverse != 0]] = True
        return hit

    def cycle_ba(self) -> np.ndarray:
        """cycle_knn(B, A) per sample: i hit ⟺ ∃ j ∈ Nₖᴬ(i) with i ∈ Nₖᴮ(j)."""
        return self.reverse.any(axis=1)


@dataclass(frozen=True)
class _EdgeKeys:
    """A graph's N·k edges as look-up keys: forward[i, t] = i·N + g[i, t] (is g[i, t] in the other graph's list of
    i?), reverse[i, t] = g[i, t]·N + i (is i in the other graph's list of g[i, t]?). Kept per layer, they serve
    every look-up of that layer's edges (each B layer, each permutation of B)."""

    forward: np.ndarray
    reverse: np.ndarray

    @classmethod
    def of(cls, graph: np.ndarray) -> _EdgeKeys:
        n = graph.shape[0]
        rows = np.arange(n, dtype=np.int64)[:, None]
        return cls(rows * n + graph, graph * n + rows)


def _relations(graph_a: np.ndarray, lookup_b: _SlotLookup, keys_a: _EdgeKeys | None = None) -> _Relations:
    """Two vectorised look-ups of A's N·k edges in B: forward (found) and reversed (reverse). O(N·k).
    ``keys_a``: A's :class:`_EdgeKeys`, when kept (else computed here)."""
    if graph_a.shape != lookup_b.graph.shape:
        raise ValueError(f"neighbour arrays differ in shape: {graph_a.shape} vs {lookup_b.graph.shape}")
    if lookup_b.table is None:  # column form: the rows are A's own (forward) and A's neighbours (reverse)
        rows = np.arange(graph_a.shape[0])[:, None]
        return _Relations(graph_a, lookup_b.raw(rows, graph_a), lookup_b.raw(graph_a, rows))
    keys_a = keys_a or _EdgeKeys.of(graph_a)
    return _Relations(graph_a, lookup_b.at_keys(keys_a.forward), lookup_b.at_keys(keys_a.reverse))
