"""Neighbourhood alignment metrics between two models' representations of the same N samples.

Notation: Nₖᴬ(i) = the k nearest neighbours of sample i in A, the first k columns of A's stored k-NN graph of
the stated space (self excluded, ascending distance, ties by lower index); rᴬᵢⱼ = the rank of j among i's
neighbours in A (1 = nearest) = its position in the stored graph + 1; cos_A(i, j) = âᵢ·âⱼ with â = a/‖a‖.

    jaccard_knn      = (1/N) Σᵢ |Nₖᴬ(i) ∩ Nₖᴮ(i)| / |Nₖᴬ(i) ∪ Nₖᴮ(i)|                         cosine graphs
    rank_sim         = (1/N) Σᵢ vᵢ,  vᵢ = [Σ_{j∈Jᵢ} 2/((1+|rᴬᵢⱼ−rᴮᵢⱼ|)(rᴬᵢⱼ+rᴮᵢⱼ))] / Σ_{m=1}^{|Jᵢ|} 1/m,
                       Jᵢ = Nₖᴬ(i) ∩ Nₖᴮ(i), vᵢ = 0 if Jᵢ = ∅ (Wang et al. 2020)               cosine graphs
    second_order_cos = (1/N) Σᵢ cos((cos_A(i, j))_{j∈Uᵢ}, (cos_B(i, j))_{j∈Uᵢ}),
                       Uᵢ = Nₖᴬ(i) ∪ Nₖᴮ(i) (Hamilton et al. 2016)                   cosine graphs + features
    info_imbalance_ab = Δ(A→B) = (2/N)·(1/(N·k')) Σᵢ Σ_{j∈N_{k'}ᴬ(i)} rᴮᵢⱼ,  info_imbalance_ba = Δ(B→A)
                       (Glielmo et al. 2022), k' = options["info_imbalance"]["k"]   Euclidean graphs + features

Interface of a pair-metric group (the layer × layer pass dispatches to it): ``METRICS``,
``LOWER_IS_MORE_SIMILAR``, :class:`Prepared` (one model's per-layer state), :func:`prepare` and :func:`matrices`.
Single-layer-pair functions: :func:`jaccard_knn`, :func:`rank_sim`, :func:`second_order_cos`,
:func:`info_imbalance`. Options read: ``k`` (default 10), ``info_imbalance.k`` (default 1) and, optionally,
``budget_bytes`` (working memory of the blocked rank count, default 256 MiB).

Costs per layer pair: jaccard_knn and rank_sim O(N·k) (graph look-ups, :class:`.knn._SlotLookup`);
second_order_cos O(N·k·(Dₐ + D_b)) for the cosines at the other model's neighbours; info imbalance O(N·k')
look-ups, plus, for the targets j beyond B's stored kmax, a blocked count over B's distances that costs
O(N²·D_b) per B LAYER (one pass serves every A layer), and only over the rows that have such targets (about
half of it, from the symmetric tiles, when most rows have such targets); when second_order_cos takes its cosines
from the products too, one product serves both (:func:`_cosines_and_ranks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ...neighbors import _exact_distances_t
from ...neighbors import _unit_rows as _neighbors_unit_rows
from .kernels import _as_features
from .knn import _prefix, _SlotLookup

METRICS: tuple[str, ...] = ("jaccard_knn", "rank_sim", "second_order_cos", "info_imbalance_ab", "info_imbalance_ba")
LOWER_IS_MORE_SIMILAR = frozenset({"info_imbalance_ab", "info_imbalance_ba"})

DEFAULT_K = 10
DEFAULT_INFO_IMBALANCE_K = 1
DEFAULT_RANK_BUDGET_BYTES = 256 * 2**20  # float64 difference/distance blocks of the blocked rank count

_COSINE_METRICS = frozenset({"jaccard_knn", "rank_sim", "second_order_cos"})
_INFO_METRICS = frozenset({"info_imbalance_ab", "info_imbalance_ba"})
_CHUNK_ELEMENTS = 4_000_000  # bound for (rows × k × D) gathers and (targets × N) comparisons


# ------------------------------------------------------------------------------------------ options


def _k(options: dict) -> int:
    return int(options.get("k", DEFAULT_K))


def _info_k(options: dict) -> int:
    return int((options.get("info_imbalance") or {}).get("k", DEFAULT_INFO_IMBALANCE_K))


def _budget(options: dict) -> int:
    return int(options.get("budget_bytes", DEFAULT_RANK_BUDGET_BYTES))


# ------------------------------------------------------------------------------------------ prepared state


@dataclass(frozen=True)
class Prepared:
    """One model's per-layer state for this group (from :func:`prepare`).

    cosine_graphs[l]     (N, k) int64: Nₖ of layer l (cosine), when cosine graphs were given;
    own_cosines[l]       (N, k) float64: cos(xᵢ, x_{g[i, t]}) at the layer's own cosine neighbours, when cosine
                         graphs and features were given (second_order_cos);
    euclidean_graphs[l]  (N, kmax): the whole stored Euclidean graph in its own integer type, not copied (ranks up
                         to kmax by look-up), when Euclidean graphs were given (information imbalance);
    layers, order        the features' source, re-read by :func:`matrices` for the cross terms (layer l in the
                         current sample order is ``layers[l][order]``; order None = as stored).
    Memory: L·N·16·k bytes besides the Euclidean graphs the caller holds anyway; no features are kept.
    """

    n_samples: int
    n_layers: int
    k: int
    info_k: int
    cosine_graphs: tuple[np.ndarray, ...] | None = None
    own_cosines: tuple[np.ndarray, ...] | None = None
    euclidean_graphs: tuple[np.ndarray, ...] | None = None
    layers: Sequence | None = None
    order: np.ndarray | None = None

    def __len__(self) -> int:
        return self.n_layers

    def for_metrics(self, metrics) -> Prepared:
        """The state ``matrices(…, metrics)`` reads: the Euclidean graphs only for the information imbalance, the
        own cosines only for second_order_cos, the features' source for either (so a permutation null of
        jaccard_knn and rank_sim relabels the cosine graphs alone, not L·N·kmax Euclidean indices)."""
        chosen = set(metrics)
        return replace(self, euclidean_graphs=self.euclidean_graphs if chosen & _INFO_METRICS else None,
                       own_cosines=self.own_cosines if "second_order_cos" in chosen else None,
                       layers=self.layers if chosen & (_INFO_METRICS | {"second_order_cos"}) else None)

    def permuted(self, perm, inverse) -> Prepared:
        """The same model with samples reordered: new sample i = old sample perm[i]; a graph g becomes
        inverse[g[perm]], per-sample rows are taken at perm; features are reordered when re-read. O(L·N·kmax)."""
        perm, inverse = np.asarray(perm, dtype=np.int64), np.asarray(inverse, dtype=np.int64)

        def relabel(graphs):
            return None if graphs is None else tuple(inverse[g[perm]] for g in graphs)

        return replace(
            self,
            cosine_graphs=relabel(self.cosine_graphs),
            own_cosines=None if self.own_cosines is None else tuple(c[perm] for c in self.own_cosines),
            euclidean_graphs=relabel(self.euclidean_graphs),
            order=perm if self.order is None else self.order[perm],
        )

    def features(self, layer: int) -> np.ndarray:
        """Layer ``layer``'s features in the current sample order, float64 (N, D): one read of the source."""
        if self.layers is None:
            raise ValueError("these metrics need the layer activations (prepare got layers=None)")
        X = _as_features(self.layers[layer])
        if X.shape[0] != self.n_samples:
            raise ValueError(f"layer {layer} has {X.shape[0]} samples, the graphs {self.n_samples}")
        return X if self.order is None else X[self.order]


def prepare(layers, graphs, options: dict, metrics=METRICS) -> Prepared:
    """Per-layer state of one model, each layer's features read once (only when cosine graphs are given and
    ``second_order_cos`` is among ``metrics``, for the cosines at the layer's own neighbours: O(N·k·D) per layer).

    layers: L arrays (N, D) (may be a lazy sequence) or None; graphs: {"cosine": G, "euclidean": G} with the
    spaces needed, G[l] an int array (N, kmax); options: ``k``, ``info_imbalance.k``. Kept: see
    :class:`Prepared` (O(L·N·k) beside the Euclidean graphs it keeps, no features).
    """
    graphs = graphs or {}
    unknown = set(graphs) - {"cosine", "euclidean"}
    if unknown:
        raise ValueError(f"unknown neighbour space(s) {sorted(unknown)}")
    k, info_k = _k(options), _info_k(options)
    cosine, euclidean = graphs.get("cosine"), graphs.get("euclidean")
    counts = {len(g) for g in (cosine, euclidean, layers) if g is not None}
    if not counts:
        raise ValueError("prepare needs layers or graphs")
    if len(counts) > 1:
        raise ValueError(f"layers and graphs differ in their number of layers: {sorted(counts)}")
    n_layers = counts.pop()
    cosine_graphs = None if cosine is None else tuple(_prefix(cosine[l], k) for l in range(n_layers))
    euclidean_graphs = None
    if euclidean is not None:
        # the whole graphs as stored (int32 from a graph store): shared with the caller, not widened to int64
        euclidean_graphs = tuple(_prefix(euclidean[l], np.asarray(euclidean[l]).shape[1], dtype=None)
                                 for l in range(n_layers))
        if info_k > euclidean_graphs[0].shape[1]:
            raise ValueError(f"info_imbalance.k={info_k} exceeds the Euclidean graphs' kmax "
                             f"({euclidean_graphs[0].shape[1]})")
    sizes = {g[0].shape[0] for g in (cosine_graphs, euclidean_graphs) if g}
    if len(sizes) > 1:
        raise ValueError(f"the cosine and Euclidean graphs hold different numbers of samples: {sorted(sizes)}")
    n = sizes.pop() if sizes else (_as_features(layers[0]).shape[0] if n_layers else 0)
    own = None
    if cosine_graphs is not None and layers is not None and "second_order_cos" in metrics:
        own = []
        for l in range(n_layers):
            X = _as_features(layers[l])
            if X.shape[0] != n:
                raise ValueError(f"layer {l} has {X.shape[0]} samples but the graph has {n}")
            own.append(_cosines_at(_unit_rows(X), cosine_graphs[l]))
            del X
        own = tuple(own)
    return Prepared(n, n_layers, k, info_k, cosine_graphs, own, euclidean_graphs, layers, None)


# ------------------------------------------------------------------------------------------ layer × layer


def matrices(a: Prepared, b: Prepared, metrics: tuple[str, ...], options: dict) -> dict[str, np.ndarray]:
    """{name: float64 (Lₐ, L_b)} for name in ``metrics`` (⊆ METRICS); [i, j] = score(A layer i, B layer j).

    Each model's layers are read at most once per call: one pass over B's layers (B's cosines at every A
    layer's neighbours for second_order_cos; blocked ranks of the targets of Δ(A→B) beyond B's kmax, for all A
    layers at once) and one over A's (the mirror terms). A layer is read only when a term needs it.
    second_order_cos splits Uᵢ = Nᴬ ∪ (Nᴮ∖Nᴬ), c_A = cos_A(i, ·), c_B = cos_B(i, ·):
        sᵢ = (Σ_{Nᴬ} c_A·c_B + Σ_{Nᴮ∖Nᴬ} c_A·c_B) / √((Σ_{Nᴬ} c_A² + Σ_{Nᴮ∖Nᴬ} c_A²)·(Σ_{Nᴮ} c_B² + Σ_{Nᴬ∖Nᴮ} c_B²));
    the sums at a model's own neighbours come from :func:`prepare`, the others from the passes. Memory: 2·Lₐ·L_b·N float64 partial sums (second_order_cos) plus one layer and one block in flight.
    """
    metrics = tuple(dict.fromkeys((metrics,) if isinstance(metrics, str) else metrics))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown or no neighbourhood metric(s) {unknown}; known: {list(METRICS)}")
    if a.n_samples != b.n_samples:
        raise ValueError(f"the two representations must hold the same samples: N={a.n_samples} vs N={b.n_samples}")
    budget = _budget(options)
    out = {name: np.full((len(a), len(b)), np.nan) for name in metrics}
    if set(metrics) & {"jaccard_knn", "rank_sim"}:
        _check_graphs(a, b, "cosine_graphs", "cosine")
        lookup_b = None
        for j, graph_b in enumerate(b.cosine_graphs):
            lookup_b = _SlotLookup.from_graph(graph_b, reuse=lookup_b)
            for i, graph_a in enumerate(a.cosine_graphs):
                positions = _positions(graph_a, lookup_b)
                if "jaccard_knn" in out:
                    out["jaccard_knn"][i, j] = _jaccard_terms(positions).mean()
                if "rank_sim" in out:
                    out["rank_sim"][i, j] = _rank_sim_terms(positions).mean()
    if "second_order_cos" in out:
        _check_graphs(a, b, "cosine_graphs", "cosine")
        if a.own_cosines is None or b.own_cosines is None:
            raise ValueError("second_order_cos needs the layer activations (prepare got layers=None)")
    if set(metrics) & _INFO_METRICS:
        _check_graphs(a, b, "euclidean_graphs", "euclidean")
        if a.info_k != b.info_k:
            raise ValueError(f"information imbalance k differs: {a.info_k} vs {b.info_k}")
    second_order = "second_order_cos" in out
    # pass over B's layers: B's cosines at A's neighbours, ranks in B of A's neighbours (Δ(A→B))
    cross_b = _pass(b, a, True, second_order, "info_imbalance_ab" in out, budget)
    if "info_imbalance_ab" in out:
        out["info_imbalance_ab"][:] = cross_b.imbalance.T
    # pass over A's layers: A's cosines at B's neighbours (finishing second_order_cos), ranks in A (Δ(B→A))
    cross_a = _pass(a, b, False, second_order, "info_imbalance_ba" in out, budget)
    if "info_imbalance_ba" in out:
        out["info_imbalance_ba"][:] = cross_a.imbalance
    if second_order:
        own_sq_b = [np.einsum("nk,nk->n", c, c) for c in b.own_cosines]
        for i in range(len(a)):
            own_sq_a = np.einsum("nk,nk->n", a.own_cosines[i], a.own_cosines[i])
            for j in range(len(b)):
                # cross_b.dot[j, i] = Σ_{t∈Nᴬ} cos_A·cos_B ; cross_a.dot[i, j] = Σ_{t∈Nᴮ∖Nᴬ} cos_A·cos_B
                numerator = cross_b.dot[j][i] + cross_a.dot[i][j]
                sq_a = own_sq_a + cross_a.sq[i][j]
                sq_b = own_sq_b[j] + cross_b.sq[j][i]
                out["second_order_cos"][i, j] = float(np.mean(numerator / np.sqrt(sq_a * sq_b)))
    return out


@dataclass
class _CrossTerms:
    """What one pass over model Y's layers (against X's graphs) yields, [y][x] indexed.

    dot[y][x] (N,): Σ over t where X's neighbour is not in Y's list of cos_Y·cos_X — except for the first pass,
    where the sum runs over all of X's neighbours (see ``_pass``); sq[y][x] (N,): Σ over X's neighbours not in
    Y's list of cos_Y²; imbalance (L_y, L_x): Δ(X→Y).
    """

    dot: list | None
    sq: list | None
    imbalance: np.ndarray | None


def _pass(y: Prepared, x: Prepared, y_is_b: bool, second_order: bool, imbalance: bool, budget: int) -> _CrossTerms:
    """One pass over Y's layers, each read at most once, against every layer of X.

    second_order: for each (y, x) layer pair, c = cos_Y(i, X's neighbours of i) (N, k) and m = membership of
    those neighbours in Y's list; when Y is B (first pass, ``y_is_b``) the dot term runs over all of Nᴬ (it
    pairs B's cross cosines with A's own), when Y is A only over Nᴮ∖Nᴬ (A's cross cosines with B's own); the
    squared term always over the non-members (the members are in Y's own cosines).
    imbalance: ranks in Y of X's k' nearest neighbours: look-up in Y's stored Euclidean graph, blocked count over
    Y's distances for the targets beyond its kmax (all X layers' targets at once), Δ(X→Y) = 2/N · mean rank.
    """
    n = y.n_samples
    dot = [[None] * len(x) for _ in range(len(y))] if second_order else None
    sq = [[None] * len(x) for _ in range(len(y))] if second_order else None
    result = np.full((len(y), len(x)), np.nan) if imbalance else None
    rows = np.arange(n)[:, None]
    lookup = None  # one look-up table, refilled for each graph (see _SlotLookup.from_graph)
    for l in range(len(y)):
        features = ranks = missing = miss = counted = None
        if imbalance:
            graph_y = y.euclidean_graphs[l]
            lookup = _SlotLookup.from_graph(graph_y, reuse=lookup)
            ranks = [lookup.slots(rows, g[:, :x.info_k]) + 1 for g in x.euclidean_graphs]  # 0 = beyond kmax
            missing = [r == 0 for r in ranks]
            if any(m.any() for m in missing):
                miss = (np.concatenate([np.nonzero(m)[0] for m in missing]),
                        np.concatenate([x.euclidean_graphs[m][:, :x.info_k][miss] for m, miss in enumerate(missing)]
                                       ).astype(np.int64))
        if second_order:
            features = y.features(l)
            lookup = _SlotLookup.from_graph(y.cosine_graphs[l], reuse=lookup)
            cosines, counted = _cosines_and_ranks(features, x.cosine_graphs, budget, miss)
            for m in range(len(x)):
                graph_x = x.cosine_graphs[m]
                cos_y = cosines[m]
                outside = lookup.slots(rows, graph_x) < 0
                if y_is_b:  # Y = B: Σ over all of Nᴬ of cos_A(own)·cos_B
                    dot[l][m] = np.einsum("nk,nk->n", cos_y, x.own_cosines[m])
                else:       # Y = A: Σ over Nᴮ∖Nᴬ of cos_A·cos_B(own)
                    dot[l][m] = np.einsum("nk,nk->n", cos_y * outside, x.own_cosines[m])
                sq[l][m] = np.einsum("nk,nk->n", cos_y * outside, cos_y)
            del cosines
        if imbalance:
            if miss is not None:
                if counted is None:
                    counted = _ranks(y.features(l) if features is None else features, *miss, budget)
                start = 0
                for r, m in zip(ranks, missing, strict=True):
                    r[m] = counted[start:start + np.count_nonzero(m)]
                    start += np.count_nonzero(m)
            for m, r in enumerate(ranks):
                result[l, m] = 2.0 / n * r.mean()
        del features
    return _CrossTerms(dot, sq, result)




# ------------------------------------------------------------------------------------------ per-sample terms


def _positions(graph_a: np.ndarray, lookup_b: _SlotLookup) -> np.ndarray:
    """positions[i, t] = slot of A's t-th neighbour of i in B's list of i, −1 if absent: (N, k) int64."""
    return lookup_b.slots(np.arange(graph_a.shape[0])[:, None], graph_a)


def _jaccard_terms(positions: np.ndarray) -> np.ndarray:
    """|Nᴬ ∩ Nᴮ| / |Nᴬ ∪ Nᴮ| per sample, with |Nᴬ ∪ Nᴮ| = 2k − |Nᴬ ∩ Nᴮ| (rows of distinct indices)."""
    common = np.count_nonzero(positions >= 0, axis=1)
    return common / (2 * positions.shape[1] - common)


def _rank_sim_terms(positions: np.ndarray) -> np.ndarray:
    """vᵢ = Σ_{j∈J} 2/((1+|rᴬ−rᴮ|)(rᴬ+rᴮ)) / H_{|J|} per sample (0 when J = ∅), rᴬ = t + 1, rᴮ = slot + 1.

    The weights are evaluated at the common neighbours only (few under a permutation null) and summed per row
    over the full (N, k) array of weights, zeros elsewhere, as the dense formula does."""
    k = positions.shape[1]
    found = positions >= 0
    row, slot = np.nonzero(found)
    rank_a = slot + 1
    rank_b = positions[row, slot] + 1
    weights = np.zeros(positions.shape)
    weights[row, slot] = 2.0 / ((1 + np.abs(rank_a - rank_b)) * (rank_a + rank_b))
    harmonic = np.concatenate([[1.0], np.cumsum(1.0 / np.arange(1, k + 1))])  # H_0 := 1 (numerator 0 there)
    return weights.sum(axis=1) / harmonic[found.sum(axis=1)]


class _Screen:
    """One layer's state for the rank count: float64 points, centred points c = x − x̄ (distances do not change;
    centring keeps ‖c‖² near the scale of the distances even for data far from the origin), their squared
    norms and the screen's error constant κ (see :func:`_ranks_by_count`)."""

    def __init__(self, features: np.ndarray):
        points = np.ascontiguousarray(features, dtype=np.float64)
        self.points_t = torch.from_numpy(points)
        self.mean = self.points_t.mean(dim=0)
        self.centred = self.points_t - self.mean
        self.sq_norms = (self.centred * self.centred).sum(dim=1)
        self.sq_max = self.sq_norms.max() if len(points) else torch.zeros((), dtype=torch.float64)
        self.kappa = 12.0 * (points.shape[1] + 4) * 2.0 ** -53

    def products(self, rows) -> torch.Tensor:
        """cᵣ·c_l for the rows ``rows`` (a slice or an index tensor) and every l: (R, N) float64."""
        return self.centred[rows] @ self.centred.T


@dataclass(frozen=True)
class _RankPlan:
    """The (row, target) entries of one layer's rank count, grouped by row: unique rows (sorted), each entry's
    row position and slot among its row's targets, and the entries in row order."""

    rows: np.ndarray        # (S,) int64, the entries' rows, input order
    targets: np.ndarray     # (S,) int64
    order: np.ndarray       # entries sorted by row (stable)
    unique_rows: np.ndarray
    starts: np.ndarray      # first position in ``order`` of each unique row
    counts: np.ndarray      # entries per unique row
    slot: np.ndarray        # (S,) slot of each entry of ``order`` among its row's targets

    @classmethod
    def of(cls, rows, targets) -> _RankPlan:
        rows, targets = np.asarray(rows, dtype=np.int64), np.asarray(targets, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        unique_rows, starts, counts = np.unique(rows[order], return_index=True, return_counts=True)
        slot = np.arange(len(rows)) - np.repeat(starts, counts)
        return cls(rows, targets, order, unique_rows, starts, counts, slot)

    def span(self, u0: int, u1: int) -> slice:
        """Positions in ``order`` of the entries of unique rows u0 … u1 − 1."""
        return slice(int(self.starts[u0]), int(self.starts[u1 - 1] + self.counts[u1 - 1])) if u1 > u0 else slice(0, 0)


def _ranks_by_count(features: np.ndarray, rows: np.ndarray, targets: np.ndarray, budget_bytes: int) -> np.ndarray:
    """rᵢⱼ = 1 + #{l ≠ i : (d(i, l), l) < (d(i, j), j)} for each (i, j) = (rows[s], targets[s]), j ≠ i: int64 (S,).

    d = Euclidean distance computed exactly as the stored graphs' (``repbench.neighbors``: float64 differences,
    fixed summation order), so these ranks continue the stored graph's order beyond kmax. Screen, then settle.

    Screen: on the centred points c = x − x̄, g = ‖cᵢ‖² + ‖c_l‖² − 2·cᵢ·c_l in float64 (one matrix product per
    block of rows). Its error against the exact d² is at most Eᵢ = κ·(‖cᵢ‖² + max_l ‖c_l‖²), κ = 12(D + 4)·u₆₄
    (the dot product, (D + 2)·u₆₄·‖cᵢ‖‖c_l‖, doubled; the centring and the exact form's own rounding, a few u₆₄
    more). A float32 product would be twice as fast, but its band, ~10⁻⁴·d², holds so many near-ties that settling
    them costs more. The target's own screen value g_t is within Eᵢ of its exact d_t² too, so with
    M = 3Eᵢ + 16u₆₄·|g_t| (the two errors and the rounding of the thresholds):
        surely closer   g_l <  a = g_t − M,       maybe closer   g_l ≤ b = g_t + M,
    self and the target itself excluded; no exact distance is needed for that. Every target of a row is counted
    in one pass over the row: the row's 2T thresholds are sorted, each g_l is placed among them
    (``torch.searchsorted``, O(log T)), and a histogram of the places with its cumulative sum gives #{g < a} and
    #{g ≤ b} for every target at once. Settle: only where a ≤ g_l ≤ b (near-ties, usually none) are the exact
    distances of the target and of those l computed and compared in (distance, index) order.
    Only the rows that occur are computed, in blocks of r rows with r·N·8·3 ≤ ``budget_bytes`` (at least one
    row): never N×N. O(#rows·N·D) float64 products + O(#rows·N·log T) placements + O(near-ties·D).
    """
    rows, targets = np.asarray(rows, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    ranks = np.empty(len(rows), dtype=np.int64)
    if not len(rows):
        return ranks
    screen = _Screen(features)
    plan = _RankPlan.of(rows, targets)
    n = screen.centred.shape[0]
    block = _block_rows(budget_bytes, n)
    for u0 in range(0, len(plan.unique_rows), block):
        u1 = min(u0 + block, len(plan.unique_rows))
        block_rows = torch.from_numpy(plan.unique_rows[u0:u1])
        _count_block(screen, plan, u0, u1, screen.products(block_rows), ranks)
    return ranks


def _block_rows(budget_bytes: int, n: int) -> int:
    """Rows per block of the screen: three (rows, N) float64 arrays within ``budget_bytes``, at least one row."""
    return max(1, int(budget_bytes) // (8 * n * 3))


def _count_block(screen: _Screen, plan: _RankPlan, u0: int, u1: int, products: torch.Tensor, ranks: np.ndarray
                 ) -> None:
    """Ranks of the entries of unique rows u0 … u1 − 1 of ``plan`` from their rows' products cᵣ·c_l (R, N), which
    are overwritten by the screen g; written into ``ranks`` (input order)."""
    span = plan.span(u0, u1)
    entries = torch.from_numpy(plan.order[span])  # into rows/targets
    local = torch.from_numpy(np.repeat(np.arange(u1 - u0), plan.counts[u0:u1]))
    slot = torch.from_numpy(plan.slot[span])
    width = int(plan.counts[u0:u1].max())  # targets per row; shorter rows are padded with +inf thresholds
    block_rows = torch.from_numpy(plan.unique_rows[u0:u1])
    entry_targets = torch.from_numpy(plan.targets[plan.order[span]])
    sq = screen.sq_norms
    screened = products.mul_(-2.0).add_(sq[block_rows][:, None]).add_(sq[None, :])
    screened.scatter_(1, block_rows[:, None], float("inf"))  # self never counts
    at_target = screened[local, entry_targets]  # g_t: the target is not its own competitor
    low, high, thresholds = _thresholds(screen, block_rows[local], at_target, local, slot, u1 - u0, width)
    below = _count_below(screened, thresholds)  # #{g < low}, #{g < high⁺} = #{g ≤ high}
    closer = below[local, slot] - (at_target < low).long()
    maybe = below[local, width + slot] - (at_target <= high).long()
    count = closer
    unsure = torch.nonzero(maybe > closer).flatten()
    if len(unsure):
        count[unsure] += _settle(screen.points_t, screened, low[unsure], high[unsure], local[unsure],
                                 block_rows[local[unsure]], entry_targets[unsure])
    ranks[entries.numpy()] = 1 + count.numpy()


def _thresholds(screen: _Screen, entry_rows, at_target, local, slot, n_rows: int, width: int):
    """(low, high, thresholds) of the screen for entries with target screen values g_t = ``at_target``, their rows
    ``entry_rows``, each at row ``local`` and column ``slot`` of an (n_rows, 2·width) table: low = g_t − M,
    high = g_t + M, M = 3κ(‖cᵢ‖² + max ‖c‖²) + 16u₆₄|g_t| (see :func:`_ranks_by_count`); the table holds the lows,
    then the highs nudged up one ulp (so #{g < high⁺} = #{g ≤ high}), +inf where a row has fewer targets."""
    margin = 3.0 * screen.kappa * (screen.sq_norms[entry_rows] + screen.sq_max) + 16.0 * 2.0 ** -53 * at_target.abs()
    low, high = at_target - margin, at_target + margin
    thresholds = torch.full((n_rows, 2 * width), float("inf"), dtype=torch.float64)
    thresholds[local, slot] = low
    thresholds[local, width + slot] = torch.nextafter(high, torch.tensor(float("inf"), dtype=torch.float64))
    return low, high, thresholds


_COMPARE_MAX_THRESHOLDS = 12  # 2 cores, float64: one comparison pass 0.013 s per 11 M values, the placement 0.13–0.26 s


def _count_below(values: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """#{l : values[r, l] < thresholds[r, p]} for every row r and column p: (R, P) int64.

    Up to ``_COMPARE_MAX_THRESHOLDS`` columns: one vectorised comparison pass per column, over row chunks that stay
    in the CPU cache. More: each value is placed among its row's sorted thresholds (p = #{thresholds ≤ value},
    O(log P)); #{v < s} is the number of values placed at or before the first position of s, read from the
    cumulative histogram of places.
    """
    if thresholds.shape[1] <= _COMPARE_MAX_THRESHOLDS:
        v, t = values.numpy(), thresholds.numpy()
        out = np.empty(t.shape, dtype=np.int64)
        step = max(1, 2**17 // max(1, v.shape[1]))  # 1 MiB of float64 values per chunk
        for r0 in range(0, v.shape[0], step):
            chunk = v[r0:r0 + step]
            for p in range(t.shape[1]):
                out[r0:r0 + step, p] = np.count_nonzero(chunk < t[r0:r0 + step, p, None], axis=1)
        return torch.from_numpy(out)
    sorted_t, position = torch.sort(thresholds, dim=1)
    place = torch.searchsorted(sorted_t, values, right=True)
    histogram = torch.zeros(thresholds.shape[0], thresholds.shape[1] + 1, dtype=torch.int64)
    histogram.scatter_add_(1, place, torch.ones(1, dtype=torch.int64).expand_as(place))
    per_sorted = torch.gather(histogram.cumsum(dim=1), 1, torch.searchsorted(sorted_t, sorted_t, right=False))
    return torch.empty_like(per_sorted).scatter_(1, position, per_sorted)


def _settle(points_t, values, low, high, value_rows, query_rows, query_targets, col0: int = 0) -> torch.Tensor:
    """How many of the screen's near-ties (low ≤ g ≤ high, the target excluded) precede the target in exact
    (distance, index) order, per query: (Q,) int64. Query s reads row ``value_rows[s]`` of ``values`` (screened
    values of columns col0 … col0 + C − 1: a whole row, or a tile's part of it), is about row ``query_rows[s]``
    and its target ``query_targets[s]`` with thresholds ``low[s]``, ``high[s]``. The exact distances (of the
    target and of the near-ties) are computed here, for these queries only."""
    extra = torch.zeros(len(value_rows), dtype=torch.int64)
    step = max(1, _CHUNK_ELEMENTS // values.shape[1])
    for c0 in range(0, len(value_rows), step):
        part = slice(c0, c0 + step)
        rows_, targets_ = query_rows[part], query_targets[part]
        chunk = values[value_rows[part]]
        band = (chunk >= low[part][:, None]) & (chunk <= high[part][:, None])
        target_col = targets_ - col0
        inside = torch.nonzero((target_col >= 0) & (target_col < values.shape[1])).flatten()
        band[inside, target_col[inside]] = False
        s_idx, l_idx = torch.nonzero(band, as_tuple=True)
        l_idx = l_idx + col0
        exact = _exact_distances_t(points_t[rows_[s_idx]], points_t[l_idx][:, None], "euclidean")[:, 0]
        at_target = _exact_distances_t(points_t[rows_], points_t[targets_][:, None], "euclidean")[:, 0]
        before = (exact < at_target[s_idx]) | ((exact == at_target[s_idx]) & (l_idx < targets_[s_idx]))
        extra[part] = torch.bincount(s_idx[before], minlength=len(rows_))
    return extra


# ------------------------------------------------------------------------------------------ helpers


def _check_graphs(a: Prepared, b: Prepared, field: str, space: str) -> None:
    for side, model in (("A", a), ("B", b)):
        if getattr(model, field) is None:
            raise ValueError(f"model {side} was prepared without {space} graphs")
    if getattr(a, field)[0].shape[1:] != getattr(b, field)[0].shape[1:] and field == "cosine_graphs":
        raise ValueError(f"k differs between the models: {a.k} vs {b.k}")


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """x̂ = x/‖x‖ in float64 (as the cosine graphs); zero rows are an error."""
    if not np.any(X != 0, axis=1).all():
        raise ValueError("cosine similarities need non-zero rows")
    return _neighbors_unit_rows(X)


#: A gathered feature costs about this many multiply-adds of a matrix product (measured on the 2-core CI machine,
#: float64, N = 10 000, D = 768: 3.4 ns per gathered element vs 0.039 ns per multiply-add of the block product).
_GATHER_COST_IN_FLOPS = 88


def _cosines_at_many(unit: np.ndarray, graphs, budget_bytes: int) -> list[np.ndarray]:
    """[_cosines_at(unit, g) for g in graphs], computed the cheaper way: gathers of the neighbours' rows
    (O(N·Σk·D) memory traffic) or, when the graphs hold many neighbours per row together (Σk·88 ≥ N), the
    cosine matrix in row blocks of b rows (b·N·8 ≤ ``budget_bytes``), X̂_b X̂ᵀ, read at the graphs' entries
    (O(N²·D) flops, never N×N in memory)."""
    n = unit.shape[0]
    if sum(g.shape[1] for g in graphs) * _GATHER_COST_IN_FLOPS < n:
        return [_cosines_at(unit, g) for g in graphs]
    out = [np.empty(g.shape) for g in graphs]
    unit_t = torch.from_numpy(np.ascontiguousarray(unit))
    block = max(1, int(budget_bytes) // (8 * n))
    for r0 in range(0, n, block):
        gram = (unit_t[r0:r0 + block] @ unit_t.T).numpy()
        for graph, values in zip(graphs, out, strict=True):
            values[r0:r0 + block] = np.take_along_axis(gram, graph[r0:r0 + block], axis=1)
    return out


def _cosines_and_ranks(features: np.ndarray, graphs, budget_bytes: int, miss) -> tuple[list, np.ndarray | None]:
    """([_cosines_at(x̂, g) for g in graphs], _ranks_by_count(features, *miss) or None) of one layer, with one
    matrix product serving both when both take the product path.

    When the cosines come from the product (:func:`_cosines_at_many`) and ranks are to be counted, the screen's
    centred products cᵢ·c_l (c = x − x̄) give the cosines too: xᵢ·x_l = cᵢ·c_l + cᵢ·x̄ + c_l·x̄ + x̄·x̄ and
    cos = xᵢ·x_l/(‖xᵢ‖‖x_l‖), read at the graphs' entries only; so the layer is multiplied once, not twice.
    The product is symmetric, so only its tiles on and above the diagonal are formed (:class:`_SymmetricTiles`:
    blocks of b rows, a tile b × b float64 with b²·8·3 ≤ ``budget_bytes``, at least six blocks): a little over
    half of the N²·D work. A tile
    (p, q) serves the entries of rows in block p over the columns of block q and, transposed, those of block q
    over block p; a row's rank count (:func:`_count_below`, additive over columns) and its near-ties
    (:func:`_settle`) are gathered tile by tile. The thresholds need each target's screen value before the
    first tile: it comes from a direct dot product (its error obeys the same bound as the tiles', which is what
    the screen's margin allows for), and the target's own tile value is taken out of the counts as in
    :func:`_count_block`. Cosines equal the unit-row product's within float64 rounding (a few u₆₄·D); the ranks
    are exactly :func:`_ranks_by_count`'s.
    """
    n = features.shape[0]
    if miss is None or sum(g.shape[1] for g in graphs) * _GATHER_COST_IN_FLOPS < n:
        cosines = _cosines_at_many(_unit_rows(features), graphs, budget_bytes)
        return cosines, None if miss is None else _ranks(features, *miss, budget_bytes)
    return _tiled_pass(features, graphs, budget_bytes, miss)


def _ranks(features: np.ndarray, rows: np.ndarray, targets: np.ndarray, budget_bytes: int) -> np.ndarray:
    """:func:`_ranks_by_count`'s ranks, the cheaper way: when more than half of the samples are counted rows, from
    the symmetric tiles (:func:`_tiled_pass` without cosines: each unordered pair of blocks multiplied once, about
    N²·D/2 instead of rows·N·D), else from the counted rows' own products."""
    if 2 * len(np.unique(rows)) <= features.shape[0]:
        return _ranks_by_count(features, rows, targets, budget_bytes)
    return _tiled_pass(features, [], budget_bytes, (rows, targets))[1]


def _tiled_pass(features: np.ndarray, graphs, budget_bytes: int, miss) -> tuple[list, np.ndarray]:
    """The product path of :func:`_cosines_and_ranks` (``graphs`` may be empty: ranks only)."""
    n = features.shape[0]
    screen = _Screen(features)
    norms = _row_norms(screen.points_t) if len(graphs) else None
    shift = screen.centred @ screen.mean  # cᵢ·x̄
    mean_sq = screen.mean @ screen.mean
    tiles = _SymmetricTiles(n, _tile_rows(budget_bytes, n))
    out = [np.empty(g.shape) for g in graphs]
    reads = [tiles.reads(np.repeat(np.arange(n), g.shape[1]), np.asarray(g, dtype=np.int64).ravel()) for g in graphs]
    counts = _TileCounts(screen, _RankPlan.of(*miss), tiles)
    sq = screen.sq_norms
    for p, q in tiles.pairs():
        rows_p, rows_q = tiles.span(p), tiles.span(q)
        product = screen.centred[rows_p] @ screen.centred[rows_q].T
        for read, values in zip(reads, out, strict=True):
            entries, at = read.of(p, q)
            if len(entries):
                i, j = torch.from_numpy(read.rows[entries]), torch.from_numpy(read.cols[entries])
                dots = product[at].add_(shift[i]).add_(shift[j]).add_(mean_sq)
                values.reshape(-1)[entries] = dots.div_(norms[i]).div_(norms[j]).numpy()
        screened = product.mul_(-2.0).add_(sq[rows_p][:, None]).add_(sq[rows_q][None, :])
        if p == q:
            screened.fill_diagonal_(float("inf"))  # self never counts
        counts.add(p, q, screened)
        if p != q:
            counts.add(q, p, screened.T)
        del product, screened
    return out, counts.ranks()


_MIN_TILE_BLOCKS = 6  # N = 10 000, D = 768 on 2 cores: 3 blocks 3.8–4.1 s per layer, 6 blocks 2.9–3.3 s, 10: 3.2–3.3 s


def _tile_rows(budget_bytes: int, n: int) -> int:
    """Rows b of a block of the symmetric tiling: three b × b float64 arrays within ``budget_bytes``, and at least
    six blocks (the diagonal tiles, formed whole, are then a sixth of the product, and the counts' inputs stay
    small), 1 ≤ b ≤ N."""
    return max(1, min(n, int(np.sqrt(max(1, int(budget_bytes)) / 24)), -(-n // _MIN_TILE_BLOCKS)))


class _SymmetricTiles:
    """Blocks of ``size`` consecutive rows of an N × N symmetric matrix and its tiles (p, q), p ≤ q."""

    def __init__(self, n: int, size: int):
        self.n, self.size = n, size
        self.count = -(-n // size)

    def pairs(self):
        return [(p, q) for p in range(self.count) for q in range(p, self.count)]

    def span(self, block: int) -> slice:
        return slice(block * self.size, min(self.n, (block + 1) * self.size))

    def reads(self, rows, cols) -> _TileReads:
        return _TileReads(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64), self)


class _TileReads:
    """Entries (rows[e], cols[e]) of the symmetric matrix grouped by the tile that holds them: (i, j) is read in
    tile (min(bᵢ, bⱼ), max(bᵢ, bⱼ)) of block indices b, at (i, j) when bᵢ ≤ bⱼ, else at (j, i)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, tiles: _SymmetricTiles):
        self.rows, self.cols, self.count = rows, cols, tiles.count
        block_i, block_j = rows // tiles.size, cols // tiles.size
        low, high = np.minimum(block_i, block_j), np.maximum(block_i, block_j)
        key = low * tiles.count + high
        self.order = np.argsort(key, kind="stable")
        self.bounds = np.searchsorted(key[self.order], np.arange(tiles.count * tiles.count + 1))
        swap = block_i > block_j
        self.tile_row = torch.from_numpy(np.where(swap, cols, rows) - low * tiles.size)
        self.tile_col = torch.from_numpy(np.where(swap, rows, cols) - high * tiles.size)

    def of(self, p: int, q: int):
        """(entries in tile (p, q), the (row, column) index tensors of those entries inside the tile)."""
        key = p * self.count + q
        entries = self.order[self.bounds[key]:self.bounds[key + 1]]
        index = torch.from_numpy(entries)
        return entries, (self.tile_row[index], self.tile_col[index])


@dataclass
class _BlockCounts:
    """The counted rows of one block of the tiling and their running sums (see :class:`_TileCounts`).

    entries: the plan's entries of these rows (input order positions); local: each entry's row among ``rows``;
    slot/width: its column among the row's targets (thresholds (R, 2·width): lows, then highs); low/high: its
    thresholds; whole: every row of the block is counted (the tile's rows need no gather); below: running
    #{g < low}, #{g ≤ high}; own_low: the target's own tile value below low (it is not its own competitor);
    extra: settled near ties.
    """

    entries: torch.Tensor
    local: torch.Tensor
    slot: torch.Tensor
    width: int
    rows: torch.Tensor
    targets: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    thresholds: torch.Tensor
    tile_rows: torch.Tensor
    whole: bool
    below: torch.Tensor
    own_low: torch.Tensor
    extra: torch.Tensor


class _TileCounts:
    """The rank counts of :func:`_count_block`, gathered over the tiles of a row instead of one whole row.

    Per block of rows: the rows with targets (``plan``), their thresholds low/high from the target's screen
    value (a direct dot product, before any tile), and running sums of #{g < low}, #{g ≤ high}, the target's own
    tile value below low (taken out as in :func:`_count_block`) and the near ties settled in each tile (values in
    [low, high] other than the target: :func:`_settle` on that tile).
    """

    def __init__(self, screen: _Screen, plan: _RankPlan, tiles: _SymmetricTiles):
        self.screen, self.tiles = screen, tiles
        self.blocks: dict[int, _BlockCounts] = {}
        centred, sq = screen.centred, screen.sq_norms
        rows_all, targets_all = torch.from_numpy(plan.rows), torch.from_numpy(plan.targets)
        at_target = torch.empty(len(plan.rows), dtype=torch.float64)
        step = max(1, _CHUNK_ELEMENTS // max(1, centred.shape[1]))
        for c0 in range(0, len(plan.rows), step):
            r, t = rows_all[c0:c0 + step], targets_all[c0:c0 + step]
            dot = (centred[r] * centred[t]).sum(dim=1)
            at_target[c0:c0 + step] = dot.mul_(-2.0).add_(sq[r]).add_(sq[t])
        self.ranks_out = np.empty(len(plan.rows), dtype=np.int64)
        for block in range(tiles.count):
            span = tiles.span(block)
            u0, u1 = (int(v) for v in np.searchsorted(plan.unique_rows, [span.start, span.stop]))
            if u1 == u0:
                continue
            positions = plan.span(u0, u1)
            entries = torch.from_numpy(plan.order[positions])
            local = torch.from_numpy(np.repeat(np.arange(u1 - u0), plan.counts[u0:u1]))
            slot = torch.from_numpy(plan.slot[positions])
            width = int(plan.counts[u0:u1].max())
            rows = torch.from_numpy(plan.unique_rows[u0:u1])
            g_t = at_target[entries]
            low, high, thresholds = _thresholds(screen, rows[local], g_t, local, slot, u1 - u0, width)
            zeros = torch.zeros(len(entries), dtype=torch.int64)
            self.blocks[block] = _BlockCounts(
                entries, local, slot, width, rows, targets_all[entries], low, high, thresholds, rows - span.start,
                (u1 - u0) == span.stop - span.start, torch.zeros((u1 - u0, 2 * width), dtype=torch.int64),
                zeros, zeros.clone())

    def add(self, p: int, q: int, screened: torch.Tensor) -> None:
        """The counts of block p's rows over block q's columns, from their screened values (rows of p × cols of q)."""
        state = self.blocks.get(p)
        if state is None:
            return
        values = (screened if state.whole else screened[state.tile_rows]).contiguous()
        below = _count_below(values, state.thresholds)
        state.below += below
        local, slot, width, low, high = state.local, state.slot, state.width, state.low, state.high
        col0 = self.tiles.span(q).start
        target_col = state.targets - col0
        inside = torch.nonzero((target_col >= 0) & (target_col < values.shape[1])).flatten()
        own = torch.full((len(target_col),), float("nan"), dtype=torch.float64)  # NaN: the target is elsewhere
        own[inside] = values[local[inside], target_col[inside]]
        state.own_low += (own < low).long()
        near_ties = below[local, width + slot] - below[local, slot] - ((own >= low) & (own <= high)).long()
        unsure = torch.nonzero(near_ties > 0).flatten()
        if len(unsure):
            state.extra[unsure] += _settle(self.screen.points_t, values, low[unsure], high[unsure], local[unsure],
                                           state.rows[local[unsure]], state.targets[unsure], col0)

    def ranks(self) -> np.ndarray:
        """rᵢⱼ for the plan's entries, input order (after every tile was added)."""
        for state in self.blocks.values():
            closer = state.below[state.local, state.slot] - state.own_low
            self.ranks_out[state.entries.numpy()] = 1 + (closer + state.extra).numpy()
        return self.ranks_out


def _row_norms(points_t: torch.Tensor) -> torch.Tensor:
    """‖xᵢ‖ in float64 (rows pre-scaled by their max |x| so the norm cannot overflow); zero rows are an error."""
    scale = points_t.abs().amax(dim=1)
    if not bool((scale > 0).all()):
        raise ValueError("cosine similarities need non-zero rows")
    return torch.linalg.vector_norm(points_t / scale[:, None], dim=1) * scale


def _cosines_at(unit: np.ndarray, graph: np.ndarray) -> np.ndarray:
    """cos(xᵢ, x_{graph[i, t]}) = x̂ᵢ·x̂_{graph[i, t]}: (N, k) float64, in row chunks (O(N·k·D))."""
    n, k = graph.shape
    out = np.empty((n, k))
    step = max(1, _CHUNK_ELEMENTS // max(1, k * unit.shape[1]))
    for start in range(0, n, step):
        rows = slice(start, start + step)
        out[rows] = np.einsum("nd,nkd->nk", unit[rows], unit[graph[rows]])
    return out


# ------------------------------------------------------------------------------------------ single layer pairs


def jaccard_knn(idx_a, idx_b, k: int) -> float:
    """jaccard_knn = (1/N) Σᵢ |Nₖᴬ(i) ∩ Nₖᴮ(i)| / |Nₖᴬ(i) ∪ Nₖᴮ(i)| ∈ [0, 1]; ``idx_*`` (N, ≥k) int (cosine
    graphs). O(N·k). Chance level ≈ k/(2(N−1)) for independent graphs (≈ mutual_knn/(2 − mutual_knn))."""
    return _single(None, None, {"cosine": [idx_a]}, {"cosine": [idx_b]}, {"k": k}, "jaccard_knn")


def rank_sim(idx_a, idx_b, k: int) -> float:
    """rank_sim (Wang et al. 2020) = (1/N) Σᵢ vᵢ ∈ [0, 1] with Jᵢ = Nₖᴬ(i) ∩ Nₖᴮ(i), ranks rᴬ, rᴮ ∈ 1..k:
    vᵢ = Σ_{j∈Jᵢ} 2/((1+|rᴬᵢⱼ−rᴮᵢⱼ|)(rᴬᵢⱼ+rᴮᵢⱼ)) / Σ_{m=1}^{|Jᵢ|} 1/m, vᵢ = 0 if Jᵢ = ∅. vᵢ = 1 iff the
    common neighbours are exactly ranks 1..|Jᵢ| in both lists; one common neighbour at rank r in both → 1/r.
    ``idx_*`` (N, ≥k) int (cosine graphs). O(N·k)."""
    return _single(None, None, {"cosine": [idx_a]}, {"cosine": [idx_b]}, {"k": k}, "rank_sim")


def second_order_cos(A, B, idx_a, idx_b, k: int) -> float:
    """second_order_cos (Hamilton et al. 2016) = (1/N) Σᵢ sᵢ ∈ [−1, 1] with Uᵢ = Nₖᴬ(i) ∪ Nₖᴮ(i) and
    sᵢ = Σ_{j∈Uᵢ} cos_A(i, j)·cos_B(i, j) / √(Σ_{j∈Uᵢ} cos_A(i, j)² · Σ_{j∈Uᵢ} cos_B(i, j)²),
    cos_A(i, j) = âᵢ·âⱼ. A (N, Dₐ), B (N, D_b); ``idx_*`` (N, ≥k) int cosine graphs of A and B. NaN for a
    sample whose cosines over Uᵢ all vanish. O(N·k·(Dₐ + D_b)).

    Differs from resi's ``second_order_cosine_similarity``, which takes the cosine of the vectors of cosine
    DISTANCES (1 − cos) and finds neighbours with k + 1 and drops the first as "self" (wrong with duplicates).
    """
    return _single([A], [B], {"cosine": [idx_a]}, {"cosine": [idx_b]}, {"k": k}, "second_order_cos")


def info_imbalance(A, B, idx_a, idx_b, k: int = 1, budget_bytes: int = DEFAULT_RANK_BUDGET_BYTES) -> float:
    """Information imbalance Δ(A→B) (Glielmo et al. 2022, PNAS Nexus) = (2/N)·(1/(N·k)) Σᵢ Σ_{j∈Nₖᴬ(i)} rᴮᵢⱼ.

    rᴮᵢⱼ = rank of j among i's neighbours in B (Euclidean distance, 1 = nearest, self excluded, ties by lower
    index: the position in B's stored graph + 1). Direction (the paper's): Δ(A→B) is small (→ 2/N with k = 1)
    when A's nearest neighbours are also B's nearest neighbours, i.e. A is informative about / predicts B;
    ≈ 1 when A and B are independent. ``idx_*`` (N, kmax ≥ k) int Euclidean graphs of A and B; B (N, D_b)
    features, read only for pairs (i, j) whose j lies beyond B's kmax (blocked count, rows in blocks of at most
    ``budget_bytes``); A is not read (may be None). O(N·k) + O(N²·D_b) when some rank is beyond kmax.
    """
    return _single(None if A is None else [A], [B], {"euclidean": [idx_a]}, {"euclidean": [idx_b]},
                   {"info_imbalance": {"k": k}, "budget_bytes": budget_bytes}, "info_imbalance_ab")


def _single(layers_a, layers_b, graphs_a, graphs_b, options: dict, metric: str) -> float:
    a = prepare(layers_a, graphs_a, options)
    b = prepare(layers_b, graphs_b, options)
    return float(matrices(a, b, (metric,), options)[metric][0, 0])
