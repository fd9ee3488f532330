"""Calibrated alignment scores: permutation-null threshold τ, p-value and calibrated score s*, and the
closed-form permutation null of the RV coefficient (= linear CKA).

Permutation calibration (Gröger, Wen & Brbić 2026, "calibrated similarity"; reference code: the
``calibrated-similarity`` package, ``calibrate`` / ``calibrate_layers``). Given the observed score s_obs and
K null scores sₖ = s(A, B[πₖ]) (πₖ uniform row permutations of B; for a layer grid one πₖ permutes every
layer of B and the same aggregate is taken of the permuted grid):

    τ_α = the ⌈(1−α)(K+1)⌉-th smallest of {s_obs} ∪ {s₁, …, s_K}     (s_obs is in the set)
    p   = (1 + #{sₖ ≥ s_obs}) / (K+1)                                (ties count as exceedances)
    s*  = clip((s_obs − τ_α) / max(s_max − τ_α, 1e−12), 0, 1)         (s_max = 1 by default)
    z   = (s_obs − mean₀)/sd₀ with the null's mean and sd (ddof = 1).

With K+1 < 1/α (K ≤ 18 for α = 0.05) the order statistic is the largest of all K+1 values, so τ_α ≥ s_obs and
s* ≡ 0: at least ⌈(1−α)/α⌉ = 19 permutations are needed before any score can be called above chance.

Metrics where a smaller value means more similar (distances): the same rule on the negated values, i.e.
τ_α = the ⌈(1−α)(K+1)⌉-th largest of {s_obs} ∪ {sₖ}, p = (1 + #{sₖ ≤ s_obs})/(K+1),
s* = clip((τ_α − s_obs)/max(τ_α − best, 1e−12), 0, 1) with best the metric's most similar value (0 by default).

Closed-form RV null (Kazi-Aoual et al. 1995; Josse, Pagès & Husson 2008; implemented from FactoMineR's
``coeffRV``): the first three moments of RV(A, B[π]) over all N! permutations π, from each layer's own
terms, so the dense metrics need no permutation passes (see :func:`rv_null_from_layers`, :func:`rv_calibration`
and :func:`rv_null_grid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import permutations
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from .kernels import _CHUNK_ELEMENTS, _KernelLayer

if TYPE_CHECKING:
    from . import PreparedModel

_EPSILON = 1e-12  # floor of the calibrated score's denominator (as in the reference code)
_ENUMERATE_BELOW = 6  # coeffRV: N < 6 → all N! permutations instead of the moment formulas


# ------------------------------------------------------------------------------------ permutation calibration

def calibrate(observed: float, null, alpha: float = 0.05, lower_is_more_similar: bool = False,
              best: float | None = None) -> dict:
    """τ, p-value and calibrated score of one observed score against its permutation null (formulas: module doc).

    observed : the unpermuted score s_obs;
    null     : the K permuted scores sₖ; NaN values (a permutation where the score is undefined) are dropped
               and counted in ``n_nan``; ``n_permutations`` is the number K of finite null values used;
    alpha    : level of the threshold τ_α (0 < α < 1);
    lower_is_more_similar : the metric is a distance (mirrored rule, see the module doc);
    best     : the metric's most similar value (default 1 for similarities, 0 for distances).

    Returns {observed, null_mean, null_std (ddof=1), z = (observed − mean)/std (raw orientation: negative for
    a distance that is smaller than chance), tau, p_value, calibrated, n_permutations, n_nan}. A NaN observed
    score, or no finite null value, gives NaN for tau, p_value, calibrated (and z).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    null = np.asarray(null, dtype=np.float64).ravel()
    finite = null[~np.isnan(null)]
    n_nan = int(null.size - finite.size)
    observed = float(observed)
    if best is None:
        best = 0.0 if lower_is_more_similar else 1.0
    count = finite.size
    mean = float(finite.mean()) if count else float("nan")
    std = float(finite.std(ddof=1)) if count > 1 else float("nan")
    z = (observed - mean) / std if std > 0 else float("nan")
    result = {"observed": observed, "null_mean": mean, "null_std": std, "z": float(z), "tau": float("nan"),
              "p_value": float("nan"), "calibrated": float("nan"), "n_permutations": count, "n_nan": n_nan}
    if count == 0 or math.isnan(observed):
        return result
    sign = -1.0 if lower_is_more_similar else 1.0  # distances: the same rule on negated values
    s_obs, s_null, s_best = sign * observed, sign * finite, sign * best
    combined = np.sort(np.concatenate([[s_obs], s_null]))
    index = min(max(math.ceil((1.0 - alpha) * (count + 1)) - 1, 0), count)
    tau = float(combined[index])
    p_value = (1 + int(np.count_nonzero(s_null >= s_obs))) / (count + 1)
    calibrated = float(np.clip((s_obs - tau) / max(s_best - tau, _EPSILON), 0.0, 1.0))
    result.update(tau=sign * tau, p_value=float(p_value), calibrated=calibrated)
    return result


# ------------------------------------------------------------------------------------ closed-form RV null

@dataclass(frozen=True)
class RvSkewnessTerms:
    """One layer's terms for the third permutation moment of RV (coeffRV's ``asym``), W = AᶜAᶜᵀ = PPᵀ, d = diag W.

    trace = tr W, trace_sq = tr W², trace_cube = tr W³, diag_sq = Σᵢ dᵢ², diag_cube = Σᵢ dᵢ³,
    cube_sum = Σᵢⱼ Wᵢⱼ³ (coeffRV's U), diag_w_diag = dᵀWd (B), diag_w2 = dᵀ diag(W²) (R).
    """

    n: int
    trace: float
    trace_sq: float
    trace_cube: float
    diag_sq: float
    diag_cube: float
    cube_sum: float
    diag_w_diag: float
    diag_w2: float


def rv_skewness_terms(factor: np.ndarray) -> RvSkewnessTerms:
    """``RvSkewnessTerms`` from a centred Gram factor P (N, m), PPᵀ = W, without forming W at once.

    With G = PᵀP (m, m): tr W² = ‖G‖²_F, tr W³ = Σ G∘(GG), dᵀWd = ‖Pᵀd‖², diag(W²)ᵢ = pᵢᵀGpᵢ; Σᵢⱼ Wᵢⱼ³ goes
    through W in row blocks. Cost O(N²·m) time (the cube sum), O(N·m + m²) memory plus one block.
    """
    factor = np.asarray(factor, dtype=np.float64)
    n, m = factor.shape
    diag = np.einsum("ij,ij->i", factor, factor)
    gram = factor.T @ factor
    cube_sum = 0.0
    step = max(1, _CHUNK_ELEMENTS // max(1, n))
    for start in range(0, n, step):
        block = factor[start:start + step] @ factor.T
        cube_sum += float(np.sum(block ** 3))
    return RvSkewnessTerms(
        n=n, trace=float(diag.sum()), trace_sq=float(np.sum(gram * gram)),
        trace_cube=float(np.sum(gram * (gram @ gram))), diag_sq=float(diag @ diag),
        diag_cube=float(np.sum(diag ** 3)), cube_sum=cube_sum,
        diag_w_diag=float(np.sum((factor.T @ diag) ** 2)),
        diag_w2=float(diag @ np.einsum("ij,jk,ik->i", factor, gram, factor)))


def rv_null_from_layers(a: _KernelLayer, b: _KernelLayer, skew_a: RvSkewnessTerms | None = None,
                        skew_b: RvSkewnessTerms | None = None) -> dict:
    """Exact mean, std and skewness of RV(A, B[π]) over all N! row permutations π (N ≥ 6), from each layer's terms.

    With W = AᶜAᶜᵀ (tr W = Σᵢ rᵢ, tr W² = ‖AᶜᵀAᶜ‖²_F, Σᵢ Wᵢᵢ² = Σᵢ rᵢ², rᵢ = ‖aᶜᵢ‖²: ``row_sq``, ``self_norm``):
        β = (tr W)²/tr W²,  δ = Σᵢ Wᵢᵢ²/tr W²,  γ = (n−1)(n(n+1)δ − (n−1)(β+2)) / ((n−3)(n−1−β)),
        E₀ = √(β_A β_B)/(n−1),
        Var₀ = 2(n−1−β_A)(n−1−β_B)/((n+1)(n−1)²(n−2)) · [1 + (n−3)γ_A γ_B/(2n(n−1))].
    Skewness (only when both ``skew_*`` terms are given, else NaN): coeffRV's ``asym``, i.e. the exact third
    central moment of T = tr(W_A W_B[π]) (Kazi-Aoual et al. 1995) over Var(T)^{3/2}; RV = T/√(tr W_A² tr W_B²),
    so it is also RV's skewness. O(1) given the terms. Returns {n, mean, std, skewness}.
    N < 6: use :func:`rv_null_exact` (coeffRV enumerates the N! permutations there).
    """
    n = len(a.row_sq)
    if len(b.row_sq) != n:
        raise ValueError(f"the two layers must hold the same samples: N={n} vs N={len(b.row_sq)}")
    if n < _ENUMERATE_BELOW:
        raise ValueError(f"the RV moment formulas need N ≥ {_ENUMERATE_BELOW}; use rv_null_exact for N={n}")
    trace_sq_a, trace_sq_b = a.self_norm ** 2, b.self_norm ** 2
    if not (trace_sq_a > 0 and trace_sq_b > 0):
        return {"n": n, "mean": float("nan"), "std": float("nan"), "skewness": float("nan")}
    beta_a, beta_b = float(a.row_sq.sum()) ** 2 / trace_sq_a, float(b.row_sq.sum()) ** 2 / trace_sq_b
    delta_a, delta_b = float(a.row_sq @ a.row_sq) / trace_sq_a, float(b.row_sq @ b.row_sq) / trace_sq_b

    def gamma_times_alpha(beta: float, delta: float) -> float:  # γ·(n−1−β): no division by n−1−β (it can be 0)
        return (n - 1) * (n * (n + 1) * delta - (n - 1) * (beta + 2)) / (n - 3)

    mean = math.sqrt(beta_a * beta_b) / (n - 1)
    # Var₀ with γ_A γ_B (n−1−β_A)(n−1−β_B) multiplied out
    variance = 2 / ((n + 1) * (n - 1) ** 2 * (n - 2)) * (
        (n - 1 - beta_a) * (n - 1 - beta_b)
        + (n - 3) * gamma_times_alpha(beta_a, delta_a) * gamma_times_alpha(beta_b, delta_b) / (2 * n * (n - 1)))
    skewness = float("nan") if skew_a is None or skew_b is None else rv_skewness(skew_a, skew_b)
    return {"n": n, "mean": float(mean), "std": float(math.sqrt(max(variance, 0.0))), "skewness": skewness}


def rv_skewness(x: RvSkewnessTerms, y: RvSkewnessTerms) -> float:
    """Skewness of tr(W_X W_Y[π]) over the N! permutations: coeffRV's ``asym`` term by term (N ≥ 6).

    E[T³] is the Kazi-Aoual et al. (1995) polynomial in (tr W, tr W², tr W³, Σdᵢ², Σdᵢ³, ΣWᵢⱼ³, dᵀWd,
    dᵀdiag(W²)) of both sides divided by n(n−1)(n−2)(n−3)(n−4)(n−5); with E[T] = tr W_X tr W_Y/(n−1) and
    Var[T] from the same paper, skewness = (E[T³] − 3E[T]Var[T] − E[T]³)/Var[T]^{3/2}.
    """
    n = x.n
    S3, S3e = x.diag_cube, y.diag_cube
    U, Ue = x.cube_sum, y.cube_sum
    B, Be = x.diag_w_diag, y.diag_w_diag
    R, Re = x.diag_w2, y.diag_w2
    T, Te = x.trace, y.trace
    S2, S2e = x.diag_sq, y.diag_sq
    T2, T2e = x.trace_sq, y.trace_sq
    T3, T3e = x.trace_cube, y.trace_cube
    total = (n ** 2 * (n + 1) * (n ** 2 + 15 * n - 4) * S3 * S3e
             + 4 * (n ** 4 - 8 * n ** 3 + 19 * n ** 2 - 4 * n - 16) * U * Ue
             + 24 * (n ** 2 - n - 4) * (U * Be + B * Ue)
             + 6 * (n ** 4 - 8 * n ** 3 + 21 * n ** 2 - 6 * n - 24) * B * Be
             + 12 * (n ** 4 - n ** 3 - 8 * n ** 2 + 36 * n - 48) * R * Re
             + 12 * (n ** 3 - 2 * n ** 2 + 9 * n - 12) * (T * S2 * Re + R * Te * S2e)
             + 3 * (n ** 4 - 4 * n ** 3 - 2 * n ** 2 + 9 * n - 12) * (T * Te * S2 * S2e)
             + 24 * ((n ** 3 - 3 * n ** 2 - 2 * n + 8) * (R * Ue + U * Re)
                     + (n ** 3 - 2 * n ** 2 - 3 * n + 12) * (R * Be + B * Re))
             + 12 * (n ** 2 - n + 4) * (T * S2 * Ue + U * Te * S2e)
             + 6 * (2 * n ** 3 - 7 * n ** 2 - 3 * n + 12) * (T * S2 * Be + B * Te * S2e)
             - 2 * n * (n - 1) * (n ** 2 - n + 4) * ((2 * U + 3 * B) * S3e + (2 * Ue + 3 * Be) * S3)
             - 3 * n * (n - 1) ** 2 * (n + 4) * ((T * S2 + 4 * R) * S3e + (Te * S2e + 4 * Re) * S3)
             + 2 * n * (n - 1) * (n - 2) * ((T ** 3 + 6 * T * T2 + 8 * T3) * S3e
                                            + (Te ** 3 + 6 * Te * T2e + 8 * T3e) * S3)
             + T ** 3 * ((n ** 3 - 9 * n ** 2 + 23 * n - 14) * Te ** 3 + 6 * (n - 4) * Te * T2e + 8 * T3e)
             + 6 * T * T2 * ((n - 4) * Te ** 3 + (n ** 3 - 9 * n ** 2 + 24 * n - 14) * Te * T2e + 4 * (n - 3) * T3e)
             + 8 * T3 * (Te ** 3 + 3 * (n - 3) * Te * T2e + (n ** 3 - 9 * n ** 2 + 26 * n - 22) * T3e)
             - 16 * (T ** 3 * Ue + U * Te ** 3) - 6 * (T * T2 * Ue + U * Te * T2e) * (2 * n ** 2 - 10 * n + 16)
             - 8 * (T3 * Ue + U * T3e) * (3 * n ** 2 - 15 * n + 16)
             - (T ** 3 * Be + B * Te ** 3) * (6 * n ** 2 - 30 * n + 24)
             - 6 * (T * T2 * Be + B * Te * T2e) * (4 * n ** 2 - 20 * n + 24)
             - 8 * (T3 * Be + B * T3e) * (3 * n ** 2 - 15 * n + 24)
             - (n - 2) * (24 * (T ** 3 * Re + R * Te ** 3)
                          + 6 * (T * T2 * Re + R * Te * T2e) * (2 * n ** 2 - 10 * n + 24)
                          + 8 * (T3 * Re + R * T3e) * (3 * n ** 2 - 15 * n + 24)
                          + (3 * n ** 2 - 15 * n + 6) * (T ** 3 * Te * S2e + T * S2 * Te ** 3)
                          + 6 * (T * T2 * Te * S2e + T * S2 * Te * T2e) * (n ** 2 - 5 * n + 6)
                          + 48 * (T3 * Te * S2e + T * S2 * T3e)))
    third_raw = total / (n * (n - 1) * (n - 2) * (n - 3) * (n - 4) * (n - 5))
    mean = T * Te / (n - 1)
    variance = (2 * ((n - 1) * T2 - T ** 2) * ((n - 1) * T2e - Te ** 2) / ((n - 1) ** 2 * (n + 1) * (n - 2))
                + (n * (n + 1) * S2 - (n - 1) * (T ** 2 + 2 * T2)) * (n * (n + 1) * S2e - (n - 1) * (Te ** 2 + 2 * T2e))
                / ((n + 1) * n * (n - 1) * (n - 2) * (n - 3)))
    if not variance > 0:
        return float("nan")
    return float((third_raw - 3 * mean * variance - mean ** 3) / variance ** 1.5)


def rv_null_exact(factor_a: np.ndarray, factor_b: np.ndarray) -> tuple[float, np.ndarray]:
    """(RV(A, B), RV(A, B[π]) for all N! permutations π) by enumeration, from centred Gram factors (N ≤ 8).

    The first value of the null is the identity permutation (= the observed RV). coeffRV enumerates for N < 6.
    """
    n = factor_a.shape[0]
    if n > 8:
        raise ValueError(f"enumerating {n}! permutations is too many (N ≤ 8)")
    norm = np.linalg.norm(factor_a.T @ factor_a) * np.linalg.norm(factor_b.T @ factor_b)
    values = np.array([np.sum((factor_a.T @ factor_b[list(p)]) ** 2) / norm for p in permutations(range(n))])
    observed = float(np.sum((factor_a.T @ factor_b) ** 2) / norm)
    return observed, values


def _pearson3_upper_tail(z: float, skewness: float) -> float:
    """P(Z ≥ z) for a standardised Pearson type III with the given skewness (coeffRV's p-value).

    a > 0: Z = G − 2/a, G ~ Gamma(shape 4/a², scale a/2) (mean 2/a, variance 1); a < 0: Z = 2/|a| − G with
    |a|; a = 0 or NaN: standard normal.
    """
    if not np.isfinite(skewness) or skewness == 0:
        return float(stats.norm.sf(z))
    shape, scale = 4.0 / skewness ** 2, abs(skewness) / 2.0
    if skewness > 0:
        return float(stats.gamma.sf(z + 2.0 / skewness, shape, scale=scale))
    return float(stats.gamma.cdf(-z + 2.0 / abs(skewness), shape, scale=scale))


def _pearson3_quantile(q: float, skewness: float) -> float:
    """The q-quantile of the standardised Pearson type III of ``_pearson3_upper_tail``."""
    if not np.isfinite(skewness) or skewness == 0:
        return float(stats.norm.ppf(q))
    shape, scale = 4.0 / skewness ** 2, abs(skewness) / 2.0
    if skewness > 0:
        return float(stats.gamma.ppf(q, shape, scale=scale) - 2.0 / skewness)
    return float(2.0 / abs(skewness) - stats.gamma.ppf(1.0 - q, shape, scale=scale))


def rv_calibration(observed: float, null: dict, alpha: float = 0.05, best: float = 1.0) -> dict:
    """The ``calibrate`` dict for an RV/CKA score from its closed-form null {n, mean, std, skewness}.

    z = (RV − E₀)/sd₀; p = P(Z ≥ z) under the Pearson type III with the null's skewness (as coeffRV; normal when
    the skewness is NaN); τ_α = E₀ + sd₀·q_{1−α} (q the Pearson III quantile); s* = clip((RV − τ_α)/
    max(best − τ_α, 1e−12), 0, 1). ``n_permutations`` is 0 (no sampled permutation), ``n_nan`` 0.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    mean, std, skewness = null["mean"], null["std"], null["skewness"]
    result = {"observed": float(observed), "null_mean": mean, "null_std": std, "z": float("nan"),
              "tau": float("nan"), "p_value": float("nan"), "calibrated": float("nan"), "n_permutations": 0,
              "n_nan": 0}
    if not (std > 0 and np.isfinite(observed) and np.isfinite(mean)):
        return result
    z = (observed - mean) / std
    tau = mean + std * _pearson3_quantile(1.0 - alpha, skewness)
    result.update(z=float(z), tau=float(tau), p_value=_pearson3_upper_tail(z, skewness),
                  calibrated=float(np.clip((observed - tau) / max(best - tau, _EPSILON), 0.0, 1.0)))
    return result


def rv_null_grid(model_a: PreparedModel, model_b: PreparedModel, alpha: float = 0.05,
                 observed: np.ndarray | None = None, skewness: bool = True) -> dict:
    """Closed-form RV (= linear CKA) null of every layer pair of two prepared models (``cka``,
    ``unbiased_cka`` or ``svcca`` among their metrics, so each layer has ``kernel`` and the model ``factors``).

    Per cell (i, j), exact permutation moments (:func:`rv_null_from_layers`) and :func:`rv_calibration`:
    arrays (Lₐ, L_b) ``observed`` (the CKA matrix; computed here when not given), ``null_mean``, ``null_std``,
    ``skewness``, ``z``, ``p_value``, ``tau``, ``calibrated``. ``skewness=False`` skips the O(N²·m) per-layer
    third-moment terms and uses the normal approximation (skewness NaN).

    Grid aggregates: a closed form exists per cell, so ``last`` (cell (−1, −1)) is exact. The maximum over the
    grid (and the matched-depth mean) depends on the joint null of all cells under one shared permutation,
    whose correlations have no closed form; for the max this function gives a Bonferroni bound instead:
    ``max`` = {observed (max RV), argmax, p_value = min(1, Lₐ·L_b·minᵢⱼ pᵢⱼ), calibrated = maxᵢⱼ
    clip((RVᵢⱼ − τᵢⱼ)/(1 − τᵢⱼ), 0, 1) with τᵢⱼ the per-cell quantile at 1 − α/(Lₐ·L_b)}. Under the null,
    P(any cell exceeds its τᵢⱼ) ≤ α, so this calibrated max is 0 with probability ≥ 1 − α, like ``calibrate``'s
    s*; it is conservative when cells are correlated (adjacent layers). For the exact permutation calibration
    of the max and the matched depth, use ``null_calibration_prepared`` with K ≥ 19 permutations.
    N < 6: every cell is enumerated over the N! permutations (as coeffRV) and calibrated with ``calibrate`` on
    the N!−1 non-identity values (so p = #{RV_π ≥ RV}/N! exactly; coeffRV reports #{RV_π > RV}/N!).
    """
    from . import pair_matrices_prepared

    layers_a, layers_b = model_a.layers, model_b.layers
    if any(layer.kernel is None for layer in layers_a + layers_b) or model_a.factors is None or model_b.factors is None:
        raise ValueError("rv_null_grid needs models prepared with a dense metric (cka, unbiased_cka or svcca)")
    if observed is None:
        observed = pair_matrices_prepared(model_a, model_b, ("cka",))["cka"]
    observed = np.asarray(observed, dtype=np.float64)
    shape = (len(layers_a), len(layers_b))
    keys = ("null_mean", "null_std", "skewness", "z", "p_value", "tau", "calibrated")
    out = {key: np.full(shape, np.nan) for key in keys}
    out["observed"] = observed
    n = layers_a[0].n_samples
    cells = shape[0] * shape[1]
    bonferroni_calibrated = np.full(shape, np.nan)
    if n < _ENUMERATE_BELOW:
        for i in range(shape[0]):
            for j in range(shape[1]):
                value, null = rv_null_exact(model_a.factors[i], model_b.factors[j])
                null = null[1:]  # drop the identity (it is the observed value): p = #{RV_π ≥ RV}/N! exactly
                cell = calibrate(value, null, alpha)
                out["skewness"][i, j] = float(stats.skew(np.append(null, value)))
                for key in ("null_mean", "null_std", "z", "p_value", "tau", "calibrated"):
                    out[key][i, j] = cell[key]
                bonferroni_calibrated[i, j] = calibrate(value, null, alpha / cells)["calibrated"]
    else:
        skew_a = [rv_skewness_terms(model_a.factors[i]) if skewness else None for i in range(shape[0])]
        skew_b = [rv_skewness_terms(model_b.factors[j]) if skewness else None for j in range(shape[1])]
        for i, a in enumerate(layers_a):
            for j, b in enumerate(layers_b):
                null = rv_null_from_layers(a.kernel, b.kernel, skew_a[i], skew_b[j])
                cell = rv_calibration(observed[i, j], null, alpha)
                out["skewness"][i, j] = null["skewness"]
                for key in ("null_mean", "null_std", "z", "p_value", "tau", "calibrated"):
                    out[key][i, j] = cell[key]
                bonferroni_calibrated[i, j] = rv_calibration(observed[i, j], null, alpha / cells)["calibrated"]
    if np.all(np.isnan(observed)):
        best, where = float("nan"), (-1, -1)
    else:
        where = tuple(int(v) for v in np.unravel_index(int(np.nanargmax(observed)), shape))
        best = float(observed[where])
    out["max"] = {"observed": best, "argmax": where,
                  "p_value": float(min(1.0, cells * np.nanmin(out["p_value"]))) if cells else float("nan"),
                  "calibrated": float(np.nanmax(bonferroni_calibrated)) if np.any(~np.isnan(bonferroni_calibrated))
                  else float("nan")}
    out["last"] = {key: float(out[key][-1, -1]) for key in ("observed",) + keys}
    return out
