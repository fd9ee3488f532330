"""Summaries of a layer × layer alignment matrix, its permutation null, and bootstrap intervals.

``summarize`` (best layer pair and its (layer_a, layer_b), last, matched depth), ``null_calibration_prepared``
(permutation null, threshold, p-value and calibrated score of every summary), ``bootstrap_ci`` (percentile
interval of per-sample kNN terms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .calibration import calibrate
from .kernels import _CHUNK_ELEMENTS

if TYPE_CHECKING:
    from . import PreparedModel

SUMMARIES = ("max", "last", "matched_depth")


def summarize(matrix, lower_is_more_similar: bool = False) -> dict:
    """Summaries of one (Lₐ, L_b) layer × layer matrix M.

    max = the best layer pair's value: max M for a similarity, min M when ``lower_is_more_similar`` (a
    distance); the key names stay "max"/"argmax" and mean "best". NaN ignored. argmax = (layer_a, layer_b) of
    the first best value in row-major order (in that order: A's layer first); last = M[−1, −1];
    matched_depth = (1/Lₐ) Σᵢ M[i, j(i)] with j(i) = round(i·(L_b−1)/(Lₐ−1)) rounding halves up (j = 0 when
    Lₐ = 1). All-NaN → max NaN, argmax (−1, −1).
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"expected a non-empty (layer_a, layer_b) matrix, got shape {m.shape}")
    if np.all(np.isnan(m)):
        best, where = float("nan"), (-1, -1)
    else:
        flat = int(np.nanargmin(m) if lower_is_more_similar else np.nanargmax(m))
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


def null_calibration_prepared(model_a: PreparedModel, model_b: PreparedModel, metrics, n_permutations: int,
                              seed: int = 0, observed: dict[str, np.ndarray] | None = None,
                              lower_is_more_similar: frozenset = frozenset(), alpha: float = 0.05,
                              workers: int = 1) -> dict:
    """Permutation null for every summary of every metric, on models run through ``prepare_model`` (per-layer
    work done once); ``observed`` (the unpermuted matrices, if already computed) saves one pass.

    B's sample order is permuted P times (``numpy.random.default_rng(seed)``); with perm a permutation and
    inv its inverse, the permuted B has rows B[perm] and graph inv[idx_b[perm]] (a relabelling: no k-NN
    recomputation; equal to recomputing the graph on B[perm] whenever B has no distance ties). Each permuted
    pair is summarised like the observed one (for the max: the best layer pair of the permuted matrix, i.e.
    the same permutation for all of B's layers, as the reference ``calibrate_layers``).

    Returns {metric: {summary: ``calibration.calibrate(observed, null, alpha, metric in lower_is_more_similar)``}}
    for summary in (max, last, matched_depth), i.e. {observed, null_mean, null_std (ddof=1), z = (observed −
    mean)/std, tau (threshold: the ⌈(1−α)(P+1)⌉-th smallest of observed and null), p_value = (1 + #{null ≥
    observed})/(1 + P), calibrated = clip((observed − tau)/(1 − tau), 0, 1), n_permutations, n_nan}; metrics
    in ``lower_is_more_similar`` (distances) use the mirrored rule (see ``calibrate``) and their "max" is the
    minimum. NaN null values are dropped (``n_nan`` counts them). P ≤ 18 at α = 0.05 → calibrated ≡ 0.
    Cost: P × ``pair_matrices_prepared`` (per-layer preparation is permuted, not recomputed). The dense
    metrics (CKA family, SVCCA) cost O(N·rₐ·r_b) per layer pair and permutation, i.e. P full passes over the
    features: prefer the kNN metrics or a small P for them. Those that come from the cross product PₐᵀP_b (cka,
    rv, unbiased_cka, svcca) run in one pass with the permutations innermost (:func:`cross_null_matrices`), so
    each layer's factor is fetched once per group of A's layers rather than once per permutation.

    ``workers`` > 1: the permutations run on that many threads (the kNN metrics' look-ups are single-threaded
    numpy calls that release the GIL, bound by memory latency, so two cores do nearly twice the work; the
    dense metrics' products are multi-threaded already: keep 1 for them). The permutations are drawn before
    any runs, so the result does not depend on ``workers``.
    """
    from concurrent.futures import ThreadPoolExecutor

    from . import _DENSE_PAIR_METRICS, _validated_metrics, cross_null_matrices, pair_matrices_prepared
    from .dense import uses_factors

    if n_permutations < 1:
        raise ValueError(f"n_permutations must be ≥ 1, got {n_permutations}")
    metrics = _validated_metrics(metrics)
    model_a, model_b = model_a.for_metrics(metrics), model_b.for_metrics(metrics)  # permute only what is read
    if observed is None:
        observed = pair_matrices_prepared(model_a, model_b, metrics)
    lower = {name: name in lower_is_more_similar for name in metrics}
    observed = {name: summarize(observed[name], lower[name]) for name in metrics}
    n = model_b.n_samples
    rng = np.random.default_rng(seed)
    permutations = [rng.permutation(n) for _ in range(n_permutations)]
    # the cross-product metrics' null in one pass, permutations innermost (each factor read once, not P times);
    # not when the dense group's factor metrics are asked too (they share those products in the per-permutation pass)
    cross = [] if uses_factors(metrics) else [m for m in metrics if m in _DENSE_PAIR_METRICS]
    rest = [m for m in metrics if m not in cross]
    cross_mats = cross_null_matrices(model_a, model_b, cross, permutations) if cross else None
    if cross and rest:
        model_a, model_b = model_a.for_metrics(rest), model_b.for_metrics(rest)

    def null_summaries(p: int) -> dict:
        mats = {} if cross_mats is None else cross_mats[p]
        if rest:
            perm = permutations[p]
            inverse = np.empty_like(perm)
            inverse[perm] = np.arange(n)
            mats = {**mats, **pair_matrices_prepared(model_a, model_b.permuted(perm, inverse), rest)}
        return {name: summarize(mats[name], lower[name]) for name in metrics}

    if workers > 1 and n_permutations > 1 and rest:
        with ThreadPoolExecutor(min(workers, n_permutations)) as pool:
            summaries = list(pool.map(null_summaries, range(n_permutations)))
    else:
        summaries = [null_summaries(p) for p in range(n_permutations)]
    null = {name: {s: np.array([summary[name][s] for summary in summaries]) for s in SUMMARIES} for name in metrics}
    return {name: {s: calibrate(observed[name][s], null[name][s], alpha, lower[name]) for s in SUMMARIES}
            for name in metrics}


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
