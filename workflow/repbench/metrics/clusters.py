"""Cluster quality of one layer's raw vectors with respect to the class labels (Euclidean distances).

X: (N, D) float, one layer; labels: (N,) integer class indices (any distinct integers; they are encoded to
0..C−1 in ascending order, as scikit-learn's ``LabelEncoder`` does). nᶜ = size of class c, μᶜ its mean, μ the
mean of all N samples, d(i, j) = ‖xᵢ − xⱼ‖₂.

- label_overlap(k) = Σᵢ wᵢ·|{j ∈ Nₖ(i): yⱼ = yᵢ}|/k ÷ Σᵢ wᵢ with wᵢ = 1/n_{yᵢ}: the class-balanced fraction of
  each sample's k nearest neighbours (self excluded) that share its label. Read from the stored k-NN graph.
  Equals DADApy's ``MetricComparisons.return_label_overlap(labels, k)`` (``weighted=True``). O(N·k).
- silhouette = (1/N) Σᵢ sᵢ, sᵢ = (bᵢ − aᵢ)/max(aᵢ, bᵢ), aᵢ = mean distance to the other members of i's class,
  bᵢ = min over other classes c of the mean distance to c; sᵢ = 0 for a singleton class (and where
  aᵢ = bᵢ = 0). Rousseeuw 1987; equals ``sklearn.metrics.silhouette_score``. O(N²·D) time, computed in row
  blocks of the distance matrix that accumulate per-class distance sums, so memory is bounded by a budget.
- calinski_harabasz = [Σᶜ nᶜ‖μᶜ − μ‖² / (C − 1)] ÷ [Σᶜ Σ_{i∈c} ‖xᵢ − μᶜ‖² / (N − C)]; 1.0 when the
  within-class dispersion is 0 (scikit-learn's convention). Caliński & Harabasz 1974. O(N·D).
- davies_bouldin = (1/C) Σᶜ max_{c′≠c} (sᶜ + s^{c′}) / ‖μᶜ − μ^{c′}‖, sᶜ = mean_{i∈c} ‖xᵢ − μᶜ‖; 0.0 when every
  sᶜ or every centroid distance is ≈ 0, and a zero centroid distance counts as ∞ (scikit-learn's
  conventions). Davies & Bouldin 1979. O(N·D + C²·D).
- dunn = min_{c≠c′, i∈c, j∈c′} d(i, j) ÷ max_{c; i,j∈c} d(i, j) (higher is better); ∞ when every class has
  diameter 0 and the classes are apart, NaN when both are 0. Dunn 1974. O(N²·D) in row blocks.
- xie_beni = Σᶜ Σ_{i∈c} ‖xᵢ − μᶜ‖² ÷ (N · min_{c≠c′} ‖μᶜ − μ^{c′}‖²) with hard assignments (lower is
  better); ∞ when two centroids coincide. Xie & Beni 1991. O(N·D + C²·D).

Every score needs 2 ≤ C ≤ N − 1 (scikit-learn's rule). The Alignment Quality Index (Borah et al. 2025) is
normalised over a set of compared representations, so it is not a per-layer value: :func:`aqi` combines the
per-layer ``calinski_harabasz`` and ``xie_beni`` of the rows of a table.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from tqdm.auto import tqdm

DEFAULT_K = 30
DEFAULT_BUDGET_BYTES = 256 * 2**20
_CANCELLATION_RATIO = 1e-4  # Gram-trick squared distances below this fraction of ‖a‖²+‖b‖² are recomputed
_ZERO_ATOL = 1e-8  # numpy/scikit-learn isclose(·, 0) tolerance used by davies_bouldin's degenerate case

METRICS = ("label_overlap", "silhouette", "calinski_harabasz", "davies_bouldin", "dunn", "xie_beni")


# --------------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------------


def encode_labels(labels, n_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(codes, counts): labels encoded to 0..C−1 in ascending label order (int64 (N,)) and the class sizes (C,).

    Raises ``ValueError`` for labels that are not a 1-D integer array (a float regression target is refused),
    or whose length is not ``n_samples``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (one class per sample), got shape {labels.shape}")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"class metrics need integer class labels, got dtype {labels.dtype} "
                         "(a float label is a regression target)")
    if n_samples is not None and len(labels) != n_samples:
        raise ValueError(f"{len(labels)} labels for {n_samples} samples")
    classes, codes = np.unique(labels, return_inverse=True)
    return codes.astype(np.int64), np.bincount(codes, minlength=len(classes))


def features_and_codes(X, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X as float64 (N, D), codes (N,), counts (C,)) after checking X is 2-D and finite (shared with collapse)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be (samples, features), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X has non-finite values")
    return (X, *encode_labels(labels, X.shape[0]))


def validated(X, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X as float64 (N, D), codes (N,), counts (C,)) after checking 2 ≤ C ≤ N − 1 and finite values."""
    X, codes, counts = features_and_codes(X, labels)
    n, c = X.shape[0], len(counts)
    if not 2 <= c <= n - 1:
        raise ValueError(f"cluster scores need 2 ≤ number of classes ≤ N − 1, got {c} classes for N = {n}")
    return X, codes, counts


def class_means(X: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(C, D) class means μᶜ."""
    return np.stack([X[codes == c].sum(axis=0) for c in range(len(counts))]) / counts[:, None]


# --------------------------------------------------------------------------------------------------------
# Blocked exact distances
# --------------------------------------------------------------------------------------------------------


def block_distances(queries: np.ndarray, points: np.ndarray, query_sq: np.ndarray, point_sq: np.ndarray,
                    query_rows: np.ndarray | None = None, max_pairs: int = 2**16) -> np.ndarray:
    """Euclidean distances (B, N) of ``queries`` to ``points`` by the Gram identity, with the entries that lose
    precision to cancellation (squared distance < 1e-4·(‖a‖² + ‖b‖²)) recomputed from differences,
    ``max_pairs`` pairs at a time, and d(i, i) = 0 exactly where ``query_rows`` (the queries' row numbers in
    ``points``) is given."""
    sums = query_sq[:, None] + point_sq[None, :]
    squared = np.maximum(sums - 2.0 * (queries @ points.T), 0.0)
    rows, cols = np.nonzero(squared < _CANCELLATION_RATIO * sums)
    for start in range(0, len(rows), max_pairs):
        r, c = rows[start:start + max_pairs], cols[start:start + max_pairs]
        diff = queries[r] - points[c]
        squared[r, c] = np.einsum("pd,pd->p", diff, diff)
    if query_rows is not None:
        squared[np.arange(len(query_rows)), query_rows] = 0.0
    return np.sqrt(squared)


def centroid_squared_distances(means: np.ndarray) -> np.ndarray:
    """(C, C) squared distances ‖μᶜ − μ^{c′}‖² from differences, one row at a time (memory O(C·D))."""
    out = np.empty((len(means), len(means)))
    for c, mean in enumerate(means):
        diff = means - mean
        out[c] = np.einsum("cd,cd->c", diff, diff)
    return out


def row_blocks(n: int, budget_bytes: int, floats_per_row: int) -> list[slice]:
    """Row slices whose float64 working set (``floats_per_row`` floats per row) fits ``budget_bytes``."""
    rows = max(1, int(budget_bytes // (8 * max(1, floats_per_row))))
    return [slice(start, min(n, start + rows)) for start in range(0, n, rows)]


def _blocks(X: np.ndarray, budget_bytes: int, what: str):
    """Yield (row slice, distance block (B, N)) over X, a few N-wide float64 arrays per row in the budget."""
    n = X.shape[0]
    sq = np.einsum("nd,nd->n", X, X)
    blocks = row_blocks(n, budget_bytes, 6 * n)
    for rows in tqdm(blocks, desc=what, unit="block", mininterval=2, disable=len(blocks) < 4, leave=False):
        yield rows, block_distances(X[rows], X, sq[rows], sq, np.arange(rows.start, rows.stop),
                                    max_pairs=max(1, budget_bytes // (8 * 4 * max(1, X.shape[1]))))


# --------------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------------


def label_overlap(graph, labels, k: int = DEFAULT_K) -> float:
    """Σᵢ wᵢ·|{j ∈ Nₖ(i): yⱼ = yᵢ}|/k ÷ Σᵢ wᵢ, wᵢ = 1/n_{yᵢ}, from ``graph`` (N, kmax) int neighbour indices (self
    excluded, ascending distance), using its first k columns. 1 = every neighbourhood is pure; ≈ 1/C for
    classes that are indistinguishable (balanced classes)."""
    graph = np.asarray(graph)
    codes, counts = encode_labels(labels)
    n = len(codes)
    if graph.ndim != 2 or graph.shape[0] != n:
        raise ValueError(f"label_overlap: the k-NN graph must be (N={n}, kmax), got shape {graph.shape}")
    if not 1 <= k <= graph.shape[1]:
        raise ValueError(f"label_overlap: k = {k} must be between 1 and the graph's kmax = {graph.shape[1]}")
    neighbours = graph[:, :k]
    if neighbours.min() < 0 or neighbours.max() >= n:
        raise ValueError(f"label_overlap: the k-NN graph has indices outside 0..{n - 1}")
    same = (codes[neighbours] == codes[:, None]).sum(axis=1) / k
    weights = 1.0 / counts[codes]
    return float((weights * same).sum() / weights.sum())


def silhouette_and_dunn(X, labels, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> tuple[float, float]:
    """(silhouette, dunn) from ONE blocked pass over the distance matrix (both are O(N²·D); see
    :func:`silhouette` and :func:`dunn`)."""
    X, codes, counts = validated(X, labels)
    n, c = len(codes), len(counts)
    one_hot = np.zeros((n, c))
    one_hot[np.arange(n), codes] = 1.0
    total, separation, diameter = 0.0, np.inf, 0.0
    for rows, dist in _blocks(X, budget_bytes, "silhouette, dunn"):
        own = codes[rows]
        same = own[:, None] == codes[None, :]
        separation = min(separation, float(np.where(same, np.inf, dist).min()))
        diameter = max(diameter, float(np.where(same, dist, 0.0).max()))
        sums = dist @ one_hot  # (B, C): Σ of distances to each class
        b_rows = np.arange(len(own))
        a = sums[b_rows, own] / np.maximum(counts[own] - 1, 1)
        means = sums / counts[None, :]
        means[b_rows, own] = np.inf
        b = means.min(axis=1)
        denominator = np.maximum(a, b)
        s = np.zeros(len(own))
        defined = (counts[own] > 1) & (denominator > 0)
        s[defined] = (b[defined] - a[defined]) / denominator[defined]
        total += s.sum()
    if diameter == 0.0:
        dunn_index = np.inf if separation > 0 else np.nan
    else:
        dunn_index = separation / diameter
    return float(total / n), dunn_index


def silhouette(X, labels, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> float:
    """Mean silhouette coefficient (see the module docstring), exact, with row blocks of the distance matrix
    holding at most ``budget_bytes`` (one block (B, N), its same-class mask and per-class sums at a time)."""
    return silhouette_and_dunn(X, labels, budget_bytes)[0]


def calinski_harabasz(X, labels) -> float:
    """Variance-ratio criterion (see the module docstring); 1.0 when the within-class dispersion is 0."""
    X, codes, counts = validated(X, labels)
    n, c = len(codes), len(counts)
    means = class_means(X, codes, counts)
    between = float((counts * ((means - X.mean(axis=0)) ** 2).sum(axis=1)).sum())
    within = float(((X - means[codes]) ** 2).sum())
    return 1.0 if within == 0.0 else between * (n - c) / (within * (c - 1.0))


def davies_bouldin(X, labels) -> float:
    """Mean over classes of the worst (sᶜ + s^{c′})/‖μᶜ − μ^{c′}‖ (see the module docstring; lower is better)."""
    X, codes, counts = validated(X, labels)
    means = class_means(X, codes, counts)
    spread = np.zeros(len(counts))
    np.add.at(spread, codes, np.linalg.norm(X - means[codes], axis=1))
    spread /= counts
    centroid_distances = np.sqrt(centroid_squared_distances(means))
    if np.all(np.abs(spread) <= _ZERO_ATOL) or np.all(np.abs(centroid_distances) <= _ZERO_ATOL):
        return 0.0
    centroid_distances[centroid_distances == 0] = np.inf
    return float(np.max((spread[:, None] + spread[None, :]) / centroid_distances, axis=1).mean())


def dunn(X, labels, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> float:
    """Smallest distance between two samples of different classes ÷ largest distance within one class, exact in
    row blocks of at most ``budget_bytes``. ∞ when every class has diameter 0 (and the classes are apart);
    NaN when both are 0 (coinciding samples in different classes and no spread)."""
    return silhouette_and_dunn(X, labels, budget_bytes)[1]


def xie_beni(X, labels) -> float:
    """Within-class sum of squares ÷ (N · smallest squared centroid distance), hard assignments (lower is
    better); ∞ when two class means coincide."""
    X, codes, counts = validated(X, labels)
    means = class_means(X, codes, counts)
    within = float(((X - means[codes]) ** 2).sum())
    gaps = centroid_squared_distances(means)
    closest = float(gaps[~np.eye(len(counts), dtype=bool)].min())
    return np.inf if closest == 0.0 else within / (len(codes) * closest)


# --------------------------------------------------------------------------------------------------------
# Alignment Quality Index (set-relative)
# --------------------------------------------------------------------------------------------------------


def aqi(ch, xb, gamma: float = 0.5) -> np.ndarray:
    """Alignment Quality Index (Borah et al. 2025) of a SET of compared representations (one per row).

    CHₙ = 100·(CH − min CH)/(max CH − min CH); XBₙ = max(10, 100·[1 − σ((XB − median XB)/IQR XB)]) with
    σ(z) = 1/(1 + e⁻ᶻ) and IQR = q₇₅ − q₂₅ (numpy's linear-interpolation percentiles);
    AQI = γ·CHₙ + (1 − γ)·XBₙ. The min, max, median and IQR are those of the set, so a value only means
    something next to the others of the same call. ``ch``, ``xb``: (M,) finite; returns (M,) in [5, 100] for
    γ = 0.5. Raises ``ValueError`` when the set cannot be normalised (fewer than 2 rows, all CH equal,
    IQR of XB = 0).
    """
    ch = np.asarray(ch, dtype=np.float64)
    xb = np.asarray(xb, dtype=np.float64)
    if ch.ndim != 1 or ch.shape != xb.shape:
        raise ValueError(f"aqi: ch and xb must be 1-D of the same length, got {ch.shape} and {xb.shape}")
    if len(ch) < 2:
        raise ValueError(f"aqi normalises over a set of representations; got {len(ch)} row(s)")
    if not (np.isfinite(ch).all() and np.isfinite(xb).all()):
        raise ValueError("aqi: ch and xb must be finite (a coinciding pair of class means gives xie_beni = inf)")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"aqi: gamma must be in [0, 1], got {gamma}")
    ch_range = ch.max() - ch.min()
    q25, median, q75 = np.percentile(xb, [25, 50, 75])
    if ch_range == 0:
        raise ValueError("aqi: every calinski_harabasz value of the set is equal; CHₙ is undefined")
    if q75 == q25:
        raise ValueError("aqi: the interquartile range of xie_beni over the set is 0; XBₙ is undefined")
    ch_normalised = 100.0 * (ch - ch.min()) / ch_range
    logistic = 1.0 / (1.0 + np.exp(-(xb - median) / (q75 - q25)))
    xb_normalised = np.maximum(10.0, 100.0 * (1.0 - logistic))
    return gamma * ch_normalised + (1.0 - gamma) * xb_normalised


# --------------------------------------------------------------------------------------------------------
# One layer
# --------------------------------------------------------------------------------------------------------


def layer_metrics(X, labels, params: Mapping | None = None, graph=None) -> list[dict]:
    """Tidy rows ``{"metric", "value", ...}`` of every cluster score of one layer.

    X: (N, D); labels: (N,) int; ``params``: ``k`` (label_overlap neighbours, default 30) and ``budget_bytes``
    (memory for the blocked silhouette and dunn, default 256 MiB); ``graph``: the layer's Euclidean k-NN
    graph (N, kmax) indices. ``label_overlap`` carries ``k``; without a graph its value is NaN with a
    ``reason``, as is ``dunn`` when it is 0/0.
    """
    params = dict(params or {})
    k = int(params.get("k", DEFAULT_K))
    budget = int(params.get("budget_bytes", DEFAULT_BUDGET_BYTES))
    X, codes, _ = validated(X, labels)
    rows = []
    if graph is None:
        rows.append({"metric": "label_overlap", "value": np.nan, "k": k, "reason": "no k-NN graph given"})
    else:
        rows.append({"metric": "label_overlap", "value": label_overlap(graph, codes, k), "k": k})
    silhouette_value, value = silhouette_and_dunn(X, codes, budget)
    rows.append({"metric": "silhouette", "value": silhouette_value})
    rows.append({"metric": "calinski_harabasz", "value": calinski_harabasz(X, codes)})
    rows.append({"metric": "davies_bouldin", "value": davies_bouldin(X, codes)})
    row = {"metric": "dunn", "value": value}
    if np.isnan(value):
        row["reason"] = "samples of different classes coincide and no class has spread (0/0)"
    rows.append(row)
    rows.append({"metric": "xie_beni", "value": xie_beni(X, codes)})
    return rows
