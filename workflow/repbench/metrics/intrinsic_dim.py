"""Intrinsic-dimension (ID) estimators working from an exact euclidean k-NN graph.

Inputs follow the neighbour-graph contract (see docs/design.md): for N samples, ``indices`` int (N, kmax) and
``distances`` float (N, kmax), self excluded, ascending distance, ties broken by lower index, distances exact
(exact duplicate rows are at distance exactly 0). Column j (0-based) holds the (j+1)-th neighbour, so
rⱼ(i) = ``distances[i, j-1]``. Every estimator computes in float64 and returns a finite float or raises
``ValueError``; none returns NaN for a degenerate input.

Estimators (N = number of distinct samples, μ a ratio of neighbour distances, logs natural)
    twonn               Facco et al. 2017: μᵢ = r₂/r₁, linear fit through the origin of
                        y = −log(1 − i/N) on x = log μ₍ᵢ₎ over the ⌊(1−f)N⌋ smallest μ; d = Σxy/Σx².
    twonn_mle           d = (N−1)/Σ log μᵢ (unbiased Pareto-shape MLE; DADApy ``algorithm="ml"``).
    gride               Denti et al. 2022: μᵢ = r_{2n₁}/r_{n₁}, maximum likelihood per scale n₁.
    mle_levina_bickel   Levina & Bickel 2004: mᵢ = (k−1)/Σ_{j<k} log(R_k/R_j), harmonic-mean combine.
    local_id            Ruppik et al. ("Less is more"): TwoNN inside each point's k-neighbourhood.

Duplicates (see docs/metrics.md): exact duplicate rows make r₁ = 0 and collapse TwoNN/MLE to 0, so they are removed
first — :func:`duplicate_mask` (from raw rows) or :func:`duplicate_mask_from_graph` (from the graph's
exact zeros and its tie rule), then :func:`deduplicate_graph` drops them from the sample set and from the
neighbour lists, recomputing exactly the few rows left with too few neighbours. :func:`estimate_layer`
does all of this for one layer and returns tidy rows.

Deliberate differences from the peers (scikit-dimension 0.5.0, DADApy 0.3.4)
    - Exact duplicates are removed and counted; an estimator given a zero nearest-neighbour distance
      raises instead of returning 0/inf (DADApy warns and continues; scikit-dimension drops every point
      whose r₁ is 0, including the kept copy of each duplicate group).
    - GRIDE's MLE is solved with a bracketing root finder on the score (to ~machine precision) instead of
      DADApy's bisection to 1e-7 in d; the search interval widens past 1000 if the root lies beyond it.
    - GRIDE's standard error uses the observed information of the same μ sample the estimate used (after
      DADApy's outlier filter); DADApy evaluates it on the unfiltered sample. The two differ by the
      handful of filtered points (relative difference ≈ n_filtered/2N).
    - A μ exactly equal to 1 (tied neighbour distances, n₁ > 1) contributes its analytic limit to the GRIDE
      score; DADApy nudges it by 10·eps and clamps, which drops that term. Only tied data are affected.
    - scikit-dimension's MLE silently lowers k when k ≥ N; here that is a ValueError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy import optimize

GRIDE_OUTLIER_SPREAD = 20.0  # DADApy: drop μ ≥ q₅₀ + 20·(q₉₅ − q₅₀) ("overlapping data points")
GRIDE_SEARCH_INTERVAL = (1e-3, 1e3)  # DADApy's default (d0, d1); widened here if the root lies above
LOCAL_ID_BLOCK_BYTES = 64 * 2**20
_CANCELLATION_RATIO = 1e-4  # Gram-trick squared distances below this fraction of ‖a‖²+‖b‖² are recomputed


class GrideEstimate(NamedTuple):
    """GRIDE at one scale: n₁, the ID, its standard error, the distance scale, samples in the fit."""

    n1: int
    dimension: float
    stderr: float
    scale: float
    n_used: int


class DeduplicatedGraph(NamedTuple):
    """A k-NN graph restricted to distinct samples (row r of the arrays is original sample ``kept[r]``)."""

    indices: np.ndarray  # int64 (M, k), into the deduplicated sample set
    distances: np.ndarray  # float64 (M, k)
    kept: np.ndarray  # int64 (M,), original row numbers of the distinct samples, ascending
    n_duplicates: int  # N − M rows removed
    n_recomputed: int  # rows whose neighbour list was recomputed exactly from X


# --------------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------------


def _neighbour_distances(distances, n_columns: int, estimator: str, min_samples: int) -> np.ndarray:
    """First ``n_columns`` neighbour distances as float64, checked for shape, order and zero distances."""
    r = np.asarray(distances, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"{estimator}: distances must be 2-D (samples, neighbours), got shape {r.shape}")
    n, available = r.shape
    if available < n_columns:
        raise ValueError(f"{estimator} needs {n_columns} neighbours per sample, the graph has {available}")
    if n < min_samples:
        raise ValueError(f"{estimator} needs at least {min_samples} distinct samples, got {n}")
    r = r[:, :n_columns]
    if not np.isfinite(r).all() or (r < 0).any():
        raise ValueError(f"{estimator}: distances must be finite and non-negative")
    if n_columns > 1 and (np.diff(r, axis=1) < 0).any():
        raise ValueError(f"{estimator}: each row of distances must be sorted ascending")
    zero_rows = np.flatnonzero(r[:, 0] == 0)
    if zero_rows.size:
        raise ValueError(
            f"{estimator}: {zero_rows.size} sample(s) have a neighbour at distance 0 (first: row "
            f"{zero_rows[0]}); exact duplicates must be removed first (see deduplicate_graph)")
    return r


def _finite_estimate(value: float, estimator: str, reason: str) -> float:
    if not np.isfinite(value):
        raise ValueError(f"{estimator} is undefined for this input: {reason}")
    return float(value)


def _validated_points(X) -> np.ndarray:
    points = np.asarray(X)
    if points.ndim != 2:
        raise ValueError(f"X must be 2-D (samples, features), got shape {points.shape}")
    if not np.isfinite(points).all():
        bad = np.argwhere(~np.isfinite(points))[0]
        raise ValueError(f"X contains non-finite values (first at sample {bad[0]}, feature {bad[1]})")
    return points


def _validated_indices(indices, n_samples: int, n_columns: int, estimator: str) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.shape[0] != n_samples:
        raise ValueError(f"{estimator}: indices must have shape ({n_samples}, k), got {idx.shape}")
    if idx.shape[1] < n_columns:
        raise ValueError(f"{estimator} needs {n_columns} neighbours per sample, the graph has {idx.shape[1]}")
    idx = idx[:, :n_columns].astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n_samples):
        raise ValueError(f"{estimator}: neighbour indices out of range [0, {n_samples})")
    return idx


# --------------------------------------------------------------------------------------------------------
# TwoNN
# --------------------------------------------------------------------------------------------------------


def _twonn_fit(sorted_log_mu: np.ndarray, n_total: int) -> np.ndarray:
    """Σxy/Σx² of the TwoNN line for rows of ascending log μ (…, n_keep) out of ``n_total`` ratios."""
    n_keep = sorted_log_mu.shape[-1]
    y = -np.log1p(-np.arange(1, n_keep + 1) / n_total)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (sorted_log_mu @ y) / np.einsum("...i,...i->...", sorted_log_mu, sorted_log_mu)


def _twonn_keep_count(n: int, discard_fraction: float) -> int:
    if not 0.0 < discard_fraction < 1.0:
        raise ValueError(
            f"TwoNN discard_fraction must be in (0, 1), got {discard_fraction} (for 0 use twonn_mle: "
            "the largest μ would sit at F = 1, where −log(1 − F) is infinite)")
    return int(n * (1.0 - discard_fraction))


def twonn(distances, discard_fraction: float = 0.1) -> float:
    """TwoNN intrinsic dimension (Facco, d'Errico, Rodriguez & Laio 2017, Sci. Rep. 7:12140).

    With r₁, r₂ the first two neighbour distances (``distances[:, 0]``, ``distances[:, 1]``), μᵢ = r₂/r₁
    follows a Pareto law F(μ) = 1 − μ^{−d}. Sort μ ascending, keep the n = ⌊(1 − f)·N⌋ smallest
    (f = ``discard_fraction``), and fit through the origin

        yᵢ = −log(1 − i/N) on xᵢ = log μ₍ᵢ₎, i = 1 … n:    d = Σ xᵢyᵢ / Σ xᵢ².

    The denominator of the empirical CDF is N (all samples), not n. Identical to scikit-dimension 0.5
    ``TwoNN(discard_fraction=f)`` and DADApy ``compute_id_2NN(mu_fraction=1 − f)``.

    distances: (N, ≥2), exact, no zero distances. O(N log N) time, O(N) memory. Needs N ≥ 3.
    """
    r = _neighbour_distances(distances, 2, "TwoNN", min_samples=3)
    n = r.shape[0]
    n_keep = _twonn_keep_count(n, discard_fraction)
    if n_keep < 2:
        raise ValueError(f"TwoNN keeps ⌊{1 - discard_fraction:g}·N⌋ = {n_keep} ratios; needs ≥ 2 (N = {n})")
    sorted_log_mu = np.sort(np.log(r[:, 1] / r[:, 0]))[:n_keep]
    return _finite_estimate(_twonn_fit(sorted_log_mu, n), "TwoNN",
                            "every kept ratio μ = r₂/r₁ equals 1 (tied neighbour distances)")


def twonn_mle(distances) -> float:
    """TwoNN maximum-likelihood estimate d = (N − 1) / Σᵢ log(r₂/r₁).

    log μ ~ Exponential(d) gives Σ log μ ~ Gamma(N, d), so (N−1)/Σ log μ is unbiased with standard error
    d/√(N−2) (:func:`twonn_mle_stderr`). Equals DADApy ``compute_id_2NN(algorithm="ml")`` and GRIDE at n₁ = 1
    without its outlier filter. distances: (N, ≥2). O(N). Needs N ≥ 3.
    """
    r = _neighbour_distances(distances, 2, "TwoNN-MLE", min_samples=3)
    n = r.shape[0]
    total = float(np.log(r[:, 1] / r[:, 0]).sum())
    if total == 0.0:
        raise ValueError("TwoNN-MLE is undefined for this input: every ratio μ = r₂/r₁ equals 1")
    return (n - 1) / total


def twonn_mle_stderr(dimension: float, n_samples: int) -> float:
    """Standard error d/√(N − 2) of the unbiased estimate (N−1)/Σ log μ (Gamma(N, d) sum)."""
    return float(dimension) / np.sqrt(n_samples - 2)


# --------------------------------------------------------------------------------------------------------
# GRIDE
# --------------------------------------------------------------------------------------------------------


def _gride_outlier_filter(mu: np.ndarray) -> np.ndarray:
    """DADApy's heuristic: keep μ < q₅₀ + 20·(q₉₅ − q₅₀) (linear-interpolated percentiles)."""
    q95, q50 = np.percentile(mu, [95, 50])
    return mu[mu < q50 + GRIDE_OUTLIER_SPREAD * (q95 - q50)]


def _log_mu_over_expm1(d: float, log_mu: np.ndarray) -> np.ndarray:
    """log μ / (μᵈ − 1), with its limit 1/d at μ = 1."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ratio = log_mu / np.expm1(d * log_mu)
    return np.where(log_mu > 0, ratio, 1.0 / d)


def _gride_score(d: float, log_mu: np.ndarray, n1: int) -> float:
    """dℓ/dd = (N−1)/d + (n₁−1)·Σ log μ/(μᵈ−1) − n₁·Σ log μ (decreasing in d: one root)."""
    n = log_mu.size
    return (n - 1) / d + (n1 - 1) * _log_mu_over_expm1(d, log_mu).sum() - n1 * log_mu.sum()


def _gride_observed_information(d: float, log_mu: np.ndarray, n1: int) -> float:
    """−d²ℓ/dd² = N/d² + (n₁−1)·Σ (log μ)² μᵈ/(μᵈ−1)² (limit 1/d² per term at μ = 1)."""
    a = d * log_mu
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        term = log_mu**2 / (np.expm1(a) * -np.expm1(-a))
    term = np.where(log_mu > 0, term, 1.0 / d**2)
    return log_mu.size / d**2 + (n1 - 1) * float(np.nan_to_num(term, posinf=0.0).sum())


def _gride_root(log_mu: np.ndarray, n1: int) -> float:
    low, high = GRIDE_SEARCH_INTERVAL
    while _gride_score(high, log_mu, n1) > 0:
        high *= 10.0
        if high > 1e8:
            raise ValueError("GRIDE is undefined for this input: the likelihood increases without bound in d")
    return optimize.brentq(_gride_score, low, high, args=(log_mu, n1), xtol=1e-13, rtol=4 * np.finfo(float).eps)


def gride_single_scale(mu: np.ndarray, n1: int, filter_outliers: bool = True) -> tuple[float, float, int]:
    """ML estimate of d from ratios μᵢ = r_{2n₁}/r_{n₁}; returns (d, standard error, samples used).

    Each μ has density f(μ) = d·(μᵈ − 1)^{n₁−1} / (B(n₁, n₁)·μ^{(2n₁−1)d+1}), μ > 1 (Denti et al. 2022,
    with n₂ = 2n₁). d maximises the log-likelihood in DADApy's form, whose d·log term carries N − 1:

        ℓ(d) = (N−1)·log d + (n₁−1)·Σ log(μᵢᵈ − 1) − ((2n₁−1)d + 1)·Σ log μᵢ − N·log B(n₁, n₁)

    (N − 1 makes the n₁ = 1 case the unbiased (N−1)/Σ log μ). ℓ is concave, so the root of dℓ/dd is found
    with Brent's method (``scipy.optimize.brentq``). Standard error = (−d²ℓ/dd²)^{−1/2} at the optimum
    (inverse observed Fisher information). With ``filter_outliers`` μ ≥ q₅₀ + 20(q₉₅ − q₅₀) are dropped
    first, as DADApy does. O(N) per likelihood evaluation.
    """
    mu = np.asarray(mu, dtype=np.float64)
    if filter_outliers:
        mu = _gride_outlier_filter(mu)
    if mu.size < 3:
        raise ValueError(f"GRIDE at n1={n1} needs at least 3 ratios after the outlier filter, got {mu.size}")
    log_mu = np.log(mu)
    if not (log_mu > 0).any():
        raise ValueError(f"GRIDE at n1={n1} is undefined: every ratio μ equals 1 (tied neighbour distances)")
    dimension = _gride_root(log_mu, n1)
    stderr = 1.0 / np.sqrt(_gride_observed_information(dimension, log_mu, n1))
    return float(dimension), float(stderr), int(mu.size)


def gride_scales(max_n1: int) -> list[int]:
    """n₁ = 1, 2, 4, … ≤ max_n1 (DADApy ``range_max = 2·max_n1`` gives the same list)."""
    if max_n1 < 1:
        raise ValueError(f"GRIDE max scale must be ≥ 1, got {max_n1}")
    return [2**p for p in range(int(np.log2(max_n1)) + 1)]


def gride(distances, n1_scales: Sequence[int], filter_outliers: bool = True) -> list[GrideEstimate]:
    """GRIDE intrinsic dimension at several scales (Denti, Doimo, Laio & Mira 2022, Sci. Rep. 12:20005).

    For each n₁ in ``n1_scales``: μᵢ = r_{2n₁}(i)/r_{n₁}(i) (``distances[:, 2n₁−1] / distances[:, n₁−1]``),
    d and its standard error from :func:`gride_single_scale`, and the scale
    mean over i of (r_{n₁}(i) + r_{2n₁}(i))/2 over all samples (DADApy's ``rs_scaling``).

    ``return_id_scaling_gride(range_max=R)`` of DADApy uses n₁ = 2⁰ … 2^{⌊log₂R⌋−1}, i.e.
    ``n1_scales = gride_scales(R // 2)``. distances: (N, ≥ 2·max n₁). O(N·S) time for S scales.
    """
    scales = sorted({int(n1) for n1 in n1_scales})
    if not scales or scales[0] < 1:
        raise ValueError(f"GRIDE scales must be positive integers, got {list(n1_scales)}")
    r = _neighbour_distances(distances, 2 * scales[-1], "GRIDE", min_samples=3)
    estimates = []
    for n1 in scales:
        near, far = r[:, n1 - 1], r[:, 2 * n1 - 1]
        dimension, stderr, n_used = gride_single_scale(far / near, n1, filter_outliers)
        estimates.append(GrideEstimate(n1, dimension, stderr, float(np.mean((near + far) / 2.0)), n_used))
    return estimates


# --------------------------------------------------------------------------------------------------------
# Levina–Bickel MLE
# --------------------------------------------------------------------------------------------------------


def mle_levina_bickel_pointwise(distances, k: int = 20) -> np.ndarray:
    """Per-sample mᵢ = (k − 1) / Σ_{j<k} log(R_k(i)/R_j(i)) from the first k neighbour distances.

    +inf where all k distances are equal (it then adds 0 to the harmonic mean). O(N·k).
    """
    if k < 2:
        raise ValueError(f"Levina–Bickel MLE needs k ≥ 2, got {k}")
    r = _neighbour_distances(distances, k, "Levina–Bickel MLE", min_samples=k + 1)
    log_sums = np.log(r[:, -1:] / r[:, :-1]).sum(axis=1)
    with np.errstate(divide="ignore"):
        return (k - 1) / log_sums


def mle_levina_bickel(distances, k: int = 20) -> float:
    """Levina & Bickel (2004, NeurIPS) MLE, combined by the harmonic mean (MacKay & Ghahramani's note).

    mᵢ = (k−1)/Σ_{j=1}^{k−1} log(R_k(i)/R_j(i)),   d = 1 / mean(1/mᵢ) = (k−1)·N / Σᵢ Σ_{j<k} log(R_k/R_j).

    This is scikit-dimension 0.5 ``MLE().fit(X, n_neighbors=k)`` (``comb="mle"``, no noise model, not
    unbiased). distances: (N, ≥k), needs N ≥ k + 1. O(N·k).
    """
    inverse = 1.0 / mle_levina_bickel_pointwise(distances, k)
    with np.errstate(divide="ignore"):
        combined = 1.0 / inverse.mean()
    return _finite_estimate(combined, "Levina–Bickel MLE",
                            "every sample has all k neighbour distances equal")


# --------------------------------------------------------------------------------------------------------
# Local ID (TwoNN inside k-neighbourhoods)
# --------------------------------------------------------------------------------------------------------


def _cloud_squared_distances(clouds: np.ndarray) -> np.ndarray:
    """Mutual squared euclidean distances (B, m, m) of B point clouds (B, m, D), float64.

    Gram trick on clouds centred at their first point; entries small against ‖a‖² + ‖b‖² (where the trick
    cancels) are recomputed from the difference vectors, so every entry is accurate to ~1e-9 relative.
    """
    batch = torch.from_numpy(clouds)
    gram = torch.bmm(batch, batch.transpose(1, 2)).numpy()  # torch: a real batched GEMM on every platform
    norms = np.einsum("bii->bi", gram)
    norm_sums = norms[:, :, None] + norms[:, None, :]
    squared = np.maximum(norm_sums - 2.0 * gram, 0.0)
    b, i, j = np.nonzero(squared < _CANCELLATION_RATIO * norm_sums)
    off_diagonal = i != j
    b, i, j = b[off_diagonal], i[off_diagonal], j[off_diagonal]
    diff = clouds[b, i] - clouds[b, j]
    squared[b, i, j] = np.einsum("pd,pd->p", diff, diff)
    return squared


def local_id(X, indices, k: int = 128, discard_fraction: float = 0.1) -> np.ndarray:
    """Per-sample local ID: TwoNN on the point cloud of sample i and its k nearest neighbours (Ruppik et al.).

    For each i the cloud Cᵢ = {xᵢ} ∪ {x_j : j ∈ N_k(i)} (m = k + 1 points); within Cᵢ every point's r₁, r₂
    come from the mutual distances of Cᵢ (computed from X), and the value is :func:`twonn` on those m
    ratios (n = ⌊(1−f)m⌋ kept, CDF denominator m).

    X: (N, D) distinct rows; indices: (N, ≥k) the graph of X. Returns float64 (N,).
    O(N·k²·D) time (one batched Gram product per block), memory ≈ 64 MB blocks.
    """
    points = _validated_points(X).astype(np.float64, copy=False)
    n = points.shape[0]
    if k < 3:
        raise ValueError(f"local ID needs k ≥ 3, got {k}")
    if n < k + 1:
        raise ValueError(f"local ID with k={k} needs at least {k + 1} distinct samples, got {n}")
    neighbours = _validated_indices(indices, n, k, "local ID")
    cloud_size = k + 1
    n_keep = _twonn_keep_count(cloud_size, discard_fraction)
    if n_keep < 2:
        raise ValueError(f"local ID with k={k} keeps {n_keep} ratios per neighbourhood; needs ≥ 2")
    block = max(1, LOCAL_ID_BLOCK_BYTES // (8 * cloud_size * max(points.shape[1], cloud_size) * 3))
    values = np.empty(n, dtype=np.float64)
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        members = np.concatenate([rows[:, None], neighbours[rows]], axis=1)
        clouds = points[members] - points[rows][:, None, :]
        squared = _cloud_squared_distances(clouds)
        squared[:, np.arange(cloud_size), np.arange(cloud_size)] = np.inf
        two_smallest = np.partition(squared, 1, axis=2)[:, :, :2]
        if (two_smallest[:, :, 0] == 0).any():
            bad = rows[np.nonzero((two_smallest[:, :, 0] == 0).any(axis=1))[0][0]]
            raise ValueError(f"local ID: the neighbourhood of sample {bad} contains exact duplicates; "
                             "remove duplicates first (see deduplicate_graph)")
        log_mu = 0.5 * np.log(two_smallest[:, :, 1] / two_smallest[:, :, 0])
        values[rows] = _twonn_fit(np.sort(log_mu, axis=1)[:, :n_keep], cloud_size)
    if not np.isfinite(values).all():
        bad = np.flatnonzero(~np.isfinite(values))[0]
        raise ValueError(f"local ID is undefined at sample {bad}: every ratio in its neighbourhood equals 1")
    return values


def local_id_summary(values) -> dict[str, float]:
    """Mean, median and quartiles (q25, q75) of per-sample local ID values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError("local ID summary needs a non-empty array of finite values")
    q25, median, q75 = np.percentile(v, [25, 50, 75])
    return {"mean": float(v.mean()), "median": float(median), "q25": float(q25), "q75": float(q75)}


# --------------------------------------------------------------------------------------------------------
# Exact duplicates
# --------------------------------------------------------------------------------------------------------


def duplicate_mask(X) -> np.ndarray:
    """True for every row equal to an earlier row (the lowest index of each group is kept).

    Equality is exact value equality (−0.0 == 0.0). O(N·D log N) via a sort of the rows' bytes.
    """
    points = _validated_points(X)
    rows = np.ascontiguousarray(points + 0.0)  # + 0.0 turns −0.0 into +0.0 so bytes compare like values
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first = np.unique(keys, return_index=True)  # index of the first occurrence of each distinct row
    mask = np.ones(points.shape[0], dtype=bool)
    mask[first] = False
    return mask


def duplicate_mask_from_graph(indices, distances) -> np.ndarray:
    """Same as :func:`duplicate_mask`, from the graph alone: row i duplicates an earlier row iff
    ``distances[i, 0] == 0`` and ``indices[i, 0] < i``.

    Exact zeros and the lower-index tie rule put the group's smallest other index first in every member's
    list, so this holds for any group size (even larger than kmax). O(N).
    """
    idx = np.asarray(indices)
    dist = np.asarray(distances)
    if idx.ndim != 2 or idx.shape != dist.shape or idx.shape[1] < 1:
        raise ValueError(f"indices and distances must have the same shape (N, k ≥ 1), got {idx.shape}, {dist.shape}")
    return (dist[:, 0] == 0) & (idx[:, 0] < np.arange(idx.shape[0]))


def _exact_neighbours(points: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest other rows of ``points`` for each of ``rows`` (float64 difference norms, ties by index)."""
    order_by_index = np.arange(points.shape[0])
    indices = np.empty((rows.size, k), dtype=np.int64)
    distances = np.empty((rows.size, k), dtype=np.float64)
    for out, row in enumerate(rows):
        diff = points - points[row]
        dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        dist[row] = np.inf
        nearest = np.lexsort((order_by_index, dist))[:k]
        indices[out], distances[out] = nearest, dist[nearest]
    return indices, distances


def deduplicate_graph(indices, distances, duplicates, n_neighbors: int, X=None) -> DeduplicatedGraph:
    """Restrict a k-NN graph to distinct samples, keeping the first ``n_neighbors`` neighbours of each.

    Rows flagged in ``duplicates`` (bool (N,)) are dropped, and dropped samples are removed from the
    remaining rows' neighbour lists (order kept, indices renumbered into the kept set). Because a dropped
    sample is an exact copy of a kept one at the same distance and lower index, what is left is exactly the
    prefix of the deduplicated graph. Rows left with fewer than ``n_neighbors`` entries are recomputed
    exactly from ``X`` (ValueError when X is None). O(N·kmax) plus O(N·D) per recomputed row.
    """
    idx = np.asarray(indices)
    dist = np.asarray(distances)
    drop = np.asarray(duplicates, dtype=bool)
    n = idx.shape[0]
    if idx.ndim != 2 or idx.shape != dist.shape or drop.shape != (n,):
        raise ValueError(f"indices {idx.shape}, distances {dist.shape} and duplicates {drop.shape} disagree")
    kept = np.flatnonzero(~drop)
    n_distinct = kept.size
    if n_neighbors > n_distinct - 1:
        raise ValueError(f"{n_neighbors} neighbours per sample need at least {n_neighbors + 1} distinct samples, "
                         f"got {n_distinct} ({n - n_distinct} exact duplicates removed)")
    if n_neighbors > idx.shape[1]:
        raise ValueError(f"{n_neighbors} neighbours requested but the graph has kmax = {idx.shape[1]}")
    new_number = np.full(n, -1, dtype=np.int64)
    new_number[kept] = np.arange(n_distinct)
    valid = ~drop[idx[kept]]
    order = np.argsort(~valid, axis=1, kind="stable")[:, :n_neighbors]  # valid entries first, order kept
    out_idx = np.take_along_axis(new_number[idx[kept]], order, axis=1)
    out_dist = np.take_along_axis(dist[kept].astype(np.float64), order, axis=1)
    short = np.flatnonzero(valid.sum(axis=1) < n_neighbors)
    if short.size:
        if X is None:
            raise ValueError(f"{short.size} distinct samples keep fewer than {n_neighbors} neighbours after "
                             "removing duplicates; pass X to recompute them exactly")
        out_idx[short], out_dist[short] = _exact_neighbours(
            _validated_points(X)[kept].astype(np.float64), short, n_neighbors)
    return DeduplicatedGraph(out_idx, out_dist, kept, int(n - n_distinct), int(short.size))


# --------------------------------------------------------------------------------------------------------
# One layer → tidy rows
# --------------------------------------------------------------------------------------------------------


def _resolved_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    from ..config import schema_defaults

    cfg = schema_defaults("metrics", "intrinsic_dim")  # the config schema is the one source of defaults
    unknown = set(config or {}) - set(cfg)
    if unknown:
        raise ValueError(f"unknown intrinsic-dimension config keys {sorted(unknown)}; expected {sorted(cfg)}")
    cfg.update(config or {})
    names = list(cfg["estimators"])
    bad = [name for name in names if name not in ESTIMATORS]
    if bad:
        raise ValueError(f"unknown intrinsic-dimension estimator(s) {bad}; expected a subset of {list(ESTIMATORS)}")
    cfg["estimators"] = names
    return cfg


def _neighbours_needed(name: str, cfg: Mapping[str, Any]) -> int:
    return {"twonn": 2, "twonn_mle": 2, "gride": 2 * gride_scales(cfg["gride_max_scale"])[-1],
            "mle_levina_bickel": cfg["mle_k"], "local_id": cfg["local_k"]}[name]


def _row(estimator, k, value, stderr=np.nan, scale=np.nan, statistic="estimate", n_used=0, n_duplicates=0):
    return {"metric": estimator, "statistic": statistic, "k": int(k), "scale": float(scale),
            "value": float(value), "stderr": float(stderr), "n_used": int(n_used),
            "n_duplicates": int(n_duplicates)}


def _twonn_rows(graph, cfg, X):
    r = graph.distances
    value = twonn(r, cfg["twonn_discard_fraction"])
    return [_row("twonn", 2, value, scale=r[:, :2].mean(), n_used=r.shape[0])]


def _twonn_mle_rows(graph, cfg, X):
    r = graph.distances
    value = twonn_mle(r)
    return [_row("twonn_mle", 2, value, twonn_mle_stderr(value, r.shape[0]), r[:, :2].mean(), n_used=r.shape[0])]


def _gride_rows(graph, cfg, X):
    return [_row("gride", e.n1, e.dimension, e.stderr, e.scale, n_used=e.n_used)
            for e in gride(graph.distances, gride_scales(cfg["gride_max_scale"]))]


def _mle_rows(graph, cfg, X):
    k = cfg["mle_k"]
    value = mle_levina_bickel(graph.distances, k)
    return [_row("mle_levina_bickel", k, value, scale=graph.distances[:, k - 1].mean(),
                 n_used=graph.distances.shape[0])]


def _local_id_rows(graph, cfg, X):
    if X is None:
        raise ValueError("local ID needs the raw vectors X (mutual distances inside each neighbourhood)")
    k = cfg["local_k"]
    values = local_id(np.asarray(X)[graph.kept], graph.indices, k, cfg["twonn_discard_fraction"])
    scale = graph.distances[:, k - 1].mean()
    return [_row("local_id", k, value, scale=scale, statistic=stat, n_used=values.size)
            for stat, value in local_id_summary(values).items()]


_ROW_BUILDERS: dict[str, Callable] = {"twonn": _twonn_rows, "twonn_mle": _twonn_mle_rows, "gride": _gride_rows,
                                      "mle_levina_bickel": _mle_rows, "local_id": _local_id_rows}


def estimate_layer(X, indices, distances, config: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """All configured ID estimators for one layer, after exact-duplicate removal, as tidy rows.

    X: (N, D) raw vectors or None (then duplicates come from the graph, and ``local_id`` and the exact
    recomputation of short rows are unavailable); indices/distances: the layer's euclidean graph
    (N, kmax). ``config`` keys (defaults: the config schema, ``metrics.intrinsic_dim``): ``twonn_discard_fraction``,
    ``gride_max_scale`` (n₁ = 1, 2, 4, … ≤ it; needs 2·n₁ ≤ kmax), ``mle_k``, ``local_k``, ``estimators``.

    Each row: metric (the estimator), statistic ("estimate"; "mean"/"median"/"q25"/"q75" for local_id), k (2 for TwoNN,
    n₁ for GRIDE, k otherwise), scale (mean distance of the neighbours involved: r₁,r₂ for TwoNN,
    r_{n₁},r_{2n₁} for GRIDE, r_k otherwise), value, stderr (NaN where the estimator has none: TwoNN's
    linear fit, MLE, local ID), n_used (distinct samples in the estimate; after the outlier filter for
    GRIDE), n_duplicates. Raises ValueError for too few distinct samples or degenerate data; the caller
    adds model and layer to the message.
    """
    cfg = _resolved_config(config)
    idx = np.asarray(indices)
    dist = np.asarray(distances)
    duplicates = duplicate_mask_from_graph(idx, dist)
    if X is not None:
        from_rows = duplicate_mask(X)
        if np.asarray(X).shape[0] != idx.shape[0] or not np.array_equal(from_rows, duplicates):
            raise ValueError("the neighbour graph does not match X (exact duplicate rows of X must be at "
                             "distance exactly 0, first neighbour = lowest index of the group)")
    n_distinct = int((~duplicates).sum())
    needed = {name: _neighbours_needed(name, cfg) for name in cfg["estimators"]}
    for name, width in needed.items():
        if width > idx.shape[1]:
            raise ValueError(f"{name} needs {width} neighbours per sample but the graph has kmax = {idx.shape[1]}")
        if n_distinct < max(width + 1, 3):
            raise ValueError(f"{name} needs at least {max(width + 1, 3)} distinct samples, got {n_distinct} "
                             f"({int(duplicates.sum())} exact duplicates removed)")
    graph = deduplicate_graph(idx, dist, duplicates, max(needed.values(), default=2), X)
    rows = []
    for name in cfg["estimators"]:
        for row in _ROW_BUILDERS[name](graph, cfg, X):
            row["n_duplicates"] = graph.n_duplicates
            rows.append(row)
    return rows


ESTIMATORS: dict[str, Callable] = {
    "twonn": twonn,
    "twonn_mle": twonn_mle,
    "gride": gride,
    "mle_levina_bickel": mle_levina_bickel,
    "local_id": local_id,
}
