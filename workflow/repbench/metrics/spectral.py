"""Spectral metrics of one layer, computed from stored spectra (never from raw activations), and phase
detection over training checkpoints.

Inputs are the vectors produced by :mod:`repbench.spectra` (any order accepted; they are sorted descending):
``cov_eigenvalues`` λ (centred covariance), ``singular_values`` σ (uncentred X) and
``norm_autocorr_eigenvalues`` (autocorrelation of L2-normalised rows). Logarithms are natural.

Values for which a metric is undefined (an all-zero spectrum, too few eigenvalues for the α-ReQ window)
raise :class:`UndefinedMetric`; :func:`layer_metrics` turns that into a tidy row with ``value = NaN`` and
the message in its ``reason`` column, so one degenerate layer never aborts a job. Malformed input (not 1-D,
non-finite, clearly negative) raises a plain ``ValueError``.

References: Garrido et al. 2023, "RankMe" (ICML); Agrawal et al. 2022, "α-ReQ" (NeurIPS);
Li et al. 2025, "Tracing the Representation Geometry of Language Models from Pretraining to Post-training".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

RANKME_EPS = 1e-7
NEGATIVE_TOLERANCE = 1e-9  # relative to the largest |value|: smaller negatives are rounding, clipped to 0


class UndefinedMetric(ValueError):
    """The metric is undefined for this (valid) spectrum; the message is the reason for the tidy table."""


def _as_spectrum(values: Any, name: str) -> np.ndarray:
    """Validated float64 copy, sorted descending, rounding negatives (> −1e-9·max|v|) clipped to 0."""
    spectrum = np.asarray(values, dtype=np.float64)
    if spectrum.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {spectrum.shape}")
    if spectrum.size == 0:
        raise UndefinedMetric(f"{name} is empty")
    if not np.isfinite(spectrum).all():
        raise ValueError(f"{name} contains non-finite values")
    scale = float(np.max(np.abs(spectrum)))
    if spectrum.min() < -NEGATIVE_TOLERANCE * scale:
        raise ValueError(f"{name} has a negative value {spectrum.min():.3g} (scale {scale:.3g})")
    return np.sort(np.clip(spectrum, 0.0, None))[::-1]


def _require_positive_total(spectrum: np.ndarray, name: str) -> float:
    total = float(spectrum.sum())
    if total <= 0.0:
        raise UndefinedMetric(f"{name} is all zero (constant representations)")
    return total


# --------------------------------------------------------------------------------------------------------
# Per-layer metrics.
# --------------------------------------------------------------------------------------------------------


def _smoothed_entropy_rank(values: np.ndarray, eps: float, name: str) -> float:
    spectrum = _as_spectrum(values, name)
    probabilities = spectrum / _require_positive_total(spectrum, name) + eps
    return float(np.exp(_entropy(probabilities)))


def _entropy(probabilities: np.ndarray) -> float:
    """−Σ pₖ log pₖ over pₖ > 0 (0·log 0 = 0); no renormalisation."""
    positive = probabilities[probabilities > 0]
    return float(-np.sum(positive * np.log(positive)))


def rankme_sigma(singular_values: Any, eps: float = RANKME_EPS) -> float:
    """RankMe of Garrido et al. (2023) on the singular values σ of the uncentred X.

    ``pₖ = σₖ / Σⱼσⱼ + ε``,  ``RankMe = exp(−Σₖ pₖ log pₖ)`` over all K = min(N, D) values.

    In [1, K] up to the ε smoothing: the +ε terms add about ``K·ε·log(1/ε)`` (≈ 1.6e-6·K for ε = 1e-7) to the
    entropy, so a spectrum with exactly r equal non-zero values gives ``r·(1 + O(K·ε·16))``, i.e. r to 1e-4
    relative for K ≤ 100. O(K). Not to be mixed with :func:`rankme_lambda` (different input, different value).
    """
    return _smoothed_entropy_rank(singular_values, eps, "singular_values")


def rankme_lambda(cov_eigenvalues: Any, eps: float = RANKME_EPS) -> float:
    """RankMe on the covariance eigenvalues λ (the variant of "Tracing the Representation Geometry …").

    ``pₖ = λₖ / Σⱼλⱼ + ε``,  ``RankMe_λ = exp(−Σₖ pₖ log pₖ)``. Since λ = σ_c²/(N−1) (σ_c singular values of the
    centred X) this weights the spectrum by squared rather than plain singular values, so RankMe_λ ≤ RankMe on
    σ_c in general, with equality for a flat spectrum (exact rank-r isotropic data → r for both). O(K).
    """
    return _smoothed_entropy_rank(cov_eigenvalues, eps, "cov_eigenvalues")


class AlphaReqFit(NamedTuple):
    """Result of :func:`alpha_req`: decay exponent and weighted coefficient of determination."""

    alpha: float
    r2: float


def alpha_req(cov_eigenvalues: Any, rank_min: int = 12, rank_max: int = 100) -> AlphaReqFit:
    """α-ReQ (Agrawal et al. 2022): power-law decay exponent of the covariance eigenspectrum, λᵣ ∝ r^(−α).

    Weighted least squares over the 1-based ranks ``r = rank_min … rank_max`` (inclusive) of
    ``log λᵣ ≈ α·(−log r) + b`` with weights ``wᵣ = 1/r``:
    minimise ``Σ wᵣ (log λᵣ + α log r − b)²``, giving with ``uᵣ = −log r`` and weighted means ``ū, ȳ``
    ``α = Σw(u−ū)(y−ȳ) / Σw(u−ū)²``. Weighted ``R² = 1 − Σw(y−ŷ)² / Σw(y−ȳ)²`` (1 for an exact power law).
    O(rank_max) after sorting.

    Raises :class:`UndefinedMetric` when the spectrum has fewer than ``rank_max`` values, or when an
    eigenvalue inside the window is numerically zero (≤ λ₁·K·2.2e-16, the usual numerical-rank threshold),
    since its logarithm is meaningless. The window is never silently shortened, so α from different layers
    is always fitted on the same ranks. ``ValueError`` for an invalid window (needs 1 ≤ rank_min < rank_max).
    """
    if not (1 <= rank_min < rank_max):
        raise ValueError(f"need 1 ≤ rank_min < rank_max, got rank_min={rank_min}, rank_max={rank_max}")
    spectrum = _as_spectrum(cov_eigenvalues, "cov_eigenvalues")
    if spectrum.size < rank_max:
        raise UndefinedMetric(
            f"too few eigenvalues: {spectrum.size} < rank_max={rank_max} (window {rank_min}..{rank_max})"
        )
    window = spectrum[rank_min - 1 : rank_max]
    numerical_zero = spectrum[0] * spectrum.size * np.finfo(np.float64).eps
    if window[-1] <= numerical_zero:
        first_zero_rank = rank_min + int(np.argmax(window <= numerical_zero))
        raise UndefinedMetric(
            f"numerically zero eigenvalue at rank {first_zero_rank} inside window {rank_min}..{rank_max} "
            f"(spectrum rank < {rank_max})"
        )
    ranks = np.arange(rank_min, rank_max + 1, dtype=np.float64)
    return _weighted_line_fit(-np.log(ranks), np.log(window), 1.0 / ranks)


def _weighted_line_fit(u: np.ndarray, y: np.ndarray, w: np.ndarray) -> AlphaReqFit:
    """Slope and weighted R² of the WLS fit y ≈ slope·u + intercept with weights w."""
    u_mean = np.sum(w * u) / np.sum(w)
    y_mean = np.sum(w * y) / np.sum(w)
    slope = np.sum(w * (u - u_mean) * (y - y_mean)) / np.sum(w * (u - u_mean) ** 2)
    residuals = y - (y_mean + slope * (u - u_mean))
    total = np.sum(w * (y - y_mean) ** 2)
    r2 = 1.0 - np.sum(w * residuals**2) / total if total > 0 else 1.0
    return AlphaReqFit(float(slope), float(r2))


def participation_ratio(cov_eigenvalues: Any) -> float:
    """Participation ratio ``PR = (Σλ)² / Σλ²`` ∈ [1, K]; r for r equal non-zero eigenvalues. O(K)."""
    spectrum = _as_spectrum(cov_eigenvalues, "cov_eigenvalues")
    total = _require_positive_total(spectrum, "cov_eigenvalues")
    return float(total**2 / np.sum(spectrum**2))


def von_neumann_entropy(norm_autocorr_eigenvalues: Any) -> float:
    """Von Neumann entropy (nats) of the autocorrelation of L2-normalised rows.

    ``pₖ = λ̂ₖ / Σλ̂``, ``S = −Σ_{pₖ>0} pₖ log pₖ`` ∈ [0, log K] (0·log 0 = 0); λ̂ are the eigenvalues of
    X̂ᵀX̂/N, whose sum is already 1 (renormalised anyway). exp(S) is an effective rank. O(K).
    """
    spectrum = _as_spectrum(norm_autocorr_eigenvalues, "norm_autocorr_eigenvalues")
    return _entropy(spectrum / _require_positive_total(spectrum, "norm_autocorr_eigenvalues"))


# --------------------------------------------------------------------------------------------------------
# Tidy per-layer table.
# --------------------------------------------------------------------------------------------------------


def layer_metrics(spectrum: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> list[dict]:
    """Tidy rows ``{"metric", "value", "r2", "reason"}`` for one layer's spectra.

    ``spectrum``: dict with the keys of :data:`repbench.spectra.SPECTRUM_KEYS` (only those the chosen
    metrics need). ``config`` (optional): ``{"metrics": [names…]}`` (default: all of :data:`METRICS`, in
    registry order) plus, per metric name, a dict of keyword arguments, e.g.
    ``{"alpha_req": {"rank_min": 12, "rank_max": 100}, "rankme_sigma": {"eps": 1e-7}}``. Unknown keys raise.

    Every row has the same columns: ``r2`` is the α-ReQ fit's R² (NaN for other metrics); ``value`` is NaN
    and ``reason`` a message when the metric is undefined for this spectrum (:class:`UndefinedMetric`),
    else ``reason == ""``. The caller adds model/dataset/layer columns.
    """
    config = dict(config or {})
    names = list(config.pop("metrics", METRICS))
    unknown = [name for name in list(names) + list(config) if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown spectral metric(s) {unknown}; known: {list(METRICS)}")
    return [_metric_row(name, spectrum, config.get(name) or {}) for name in names]


def _metric_row(name: str, spectrum: Mapping[str, Any], kwargs: Mapping[str, Any]) -> dict:
    metric = METRICS[name]
    if metric.spectrum_key not in spectrum:
        raise KeyError(f"metric {name!r} needs spectrum {metric.spectrum_key!r}; got {sorted(spectrum)}")
    row = {"metric": name, "value": float("nan"), "r2": float("nan"), "reason": ""}
    try:
        result = metric.function(spectrum[metric.spectrum_key], **kwargs)
    except UndefinedMetric as undefined:
        row["reason"] = str(undefined)
        return row
    if isinstance(result, AlphaReqFit):
        row["value"], row["r2"] = result.alpha, result.r2
    else:
        row["value"] = float(result)
    return row


# --------------------------------------------------------------------------------------------------------
# Phases over training checkpoints.
# --------------------------------------------------------------------------------------------------------

PHASE_WARMUP = "warm-up"
PHASE_ENTROPY_SEEKING = "entropy-seeking"
PHASE_COMPRESSION_SEEKING = "compression-seeking"
PHASE_AMBIGUOUS = "ambiguous"
PHASES = (PHASE_WARMUP, PHASE_ENTROPY_SEEKING, PHASE_COMPRESSION_SEEKING, PHASE_AMBIGUOUS)


def log_step(steps: Any) -> np.ndarray:
    """``t = log(1 + step)``: defined at step 0 (t = 0) and ≈ log step for step ≫ 1. Steps must be ≥ 0."""
    steps = np.asarray(steps, dtype=np.float64)
    if (steps < 0).any():
        raise ValueError("training steps must be ≥ 0")
    return np.log1p(steps)


def local_linear_smooth(t: np.ndarray, y: np.ndarray, bandwidth: float) -> np.ndarray:
    """Local-linear kernel regression of y on t, evaluated at every t (Gaussian kernel, std ``bandwidth``).

    At each tᵢ fit ``y ≈ a + b(t − tᵢ)`` by least squares with weights ``exp(−(tⱼ − tᵢ)²/(2h²))`` and return
    the fitted a (local-linear rather than a moving average: no bias at the ends of a trend). Where the
    weights leave one effective point, the weighted mean is used. ``bandwidth = 0`` returns y. O(n²).
    """
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if bandwidth <= 0:
        return y.copy()
    fitted = np.empty_like(y)
    for i, centre in enumerate(t):
        weights = np.exp(-0.5 * ((t - centre) / bandwidth) ** 2)
        w_sum = weights.sum()
        t_mean = np.sum(weights * t) / w_sum
        y_mean = np.sum(weights * y) / w_sum
        t_var = np.sum(weights * (t - t_mean) ** 2)
        slope = np.sum(weights * (t - t_mean) * (y - y_mean)) / t_var if t_var > 1e-12 * w_sum else 0.0
        fitted[i] = y_mean + slope * (centre - t_mean)
    return fitted


def _normalised_interval_slopes(t: np.ndarray, smoothed: np.ndarray) -> np.ndarray:
    """Slope Δy/Δt per interval, in units of (range of y) / (span of t); 0 everywhere for a constant y."""
    value_range = float(smoothed.max() - smoothed.min())
    if value_range == 0:
        return np.zeros(len(t) - 1)
    return np.diff(smoothed) / np.diff(t) * (t[-1] - t[0]) / value_range


def _slope_signs(slopes: np.ndarray, flat_tol: float) -> np.ndarray:
    return np.where(slopes > flat_tol, 1, np.where(slopes < -flat_tol, -1, 0))


def phase_intervals(
    steps: Sequence[float],
    rankme: Sequence[float],
    alpha: Sequence[float],
    smooth: float = 0.05,
    flat_tol: float = 0.05,
    warmup_max_step: float | None = None,
) -> list[dict]:
    """Per-interval phase labels between consecutive checkpoints (rule in :func:`detect_phases`).

    Rows ``{"start_step", "end_step", "rankme_slope", "alpha_slope", "phase"}``, slopes normalised as
    described there, intervals in increasing step order.
    """
    steps = np.asarray(steps, dtype=np.float64)
    rankme = np.asarray(rankme, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    if not (steps.ndim == rankme.ndim == alpha.ndim == 1 and len(steps) == len(rankme) == len(alpha)):
        raise ValueError("steps, rankme and alpha must be 1-D of equal length")
    if len(steps) < 2:
        raise ValueError("need at least 2 checkpoints")
    if not (np.isfinite(steps).all() and np.isfinite(rankme).all() and np.isfinite(alpha).all()):
        raise ValueError("steps, rankme and alpha must be finite (drop checkpoints with NaN metrics first)")
    order = np.argsort(steps, kind="stable")
    steps, rankme, alpha = steps[order], rankme[order], alpha[order]
    if (np.diff(steps) == 0).any():
        raise ValueError("duplicate training steps")
    t = log_step(steps)
    bandwidth = smooth * (t[-1] - t[0])
    rankme_slopes = _normalised_interval_slopes(t, local_linear_smooth(t, rankme, bandwidth))
    alpha_slopes = _normalised_interval_slopes(t, local_linear_smooth(t, alpha, bandwidth))
    labels = _label_intervals(
        _slope_signs(rankme_slopes, flat_tol), _slope_signs(alpha_slopes, flat_tol), steps, warmup_max_step
    )
    return [
        {
            "start_step": float(steps[i]),
            "end_step": float(steps[i + 1]),
            "rankme_slope": float(rankme_slopes[i]),
            "alpha_slope": float(alpha_slopes[i]),
            "phase": labels[i],
        }
        for i in range(len(labels))
    ]


def _label_intervals(
    rankme_signs: np.ndarray, alpha_signs: np.ndarray, steps: np.ndarray, warmup_max_step: float | None
) -> list[str]:
    labels: list[str] = []
    in_warmup = True
    for i, (rankme_sign, alpha_sign) in enumerate(zip(rankme_signs, alpha_signs)):
        within_cap = warmup_max_step is None or steps[i + 1] <= warmup_max_step
        in_warmup = in_warmup and rankme_sign < 0 and within_cap
        if in_warmup:
            labels.append(PHASE_WARMUP)
        elif rankme_sign > 0 and alpha_sign < 0:
            labels.append(PHASE_ENTROPY_SEEKING)
        elif rankme_sign < 0 and alpha_sign > 0:
            labels.append(PHASE_COMPRESSION_SEEKING)
        else:
            labels.append(PHASE_AMBIGUOUS)
    return labels


def detect_phases(
    steps: Sequence[float],
    rankme: Sequence[float],
    alpha: Sequence[float],
    smooth: float = 0.05,
    flat_tol: float = 0.05,
    warmup_max_step: float | None = None,
) -> list[dict]:
    """Segment a training trajectory into phases (Li et al. 2025, "Tracing the Representation Geometry …").

    Returns tidy segments ``{"start_step", "end_step", "phase"}`` (closed intervals between checkpoint
    steps, in step order; adjacent segments share their boundary checkpoint), with phase one of
    ``"warm-up"`` (RankMe falls), ``"entropy-seeking"`` (RankMe rises, α falls),
    ``"compression-seeking"`` (RankMe falls, α rises) or ``"ambiguous"``.

    Exact rule:

    1. Checkpoints are sorted by step (≥ 0, distinct, ≥ 2 of them; values finite). Time is
       ``t = log(1 + step)``, so step 0 maps to t = 0 and is kept (no log 0).
    2. RankMe and α are each smoothed by local-linear Gaussian kernel regression in t with bandwidth
       ``h = smooth · (t_max − t_min)`` (:func:`local_linear_smooth`; ``smooth = 0``: no smoothing).
    3. For every interval between consecutive checkpoints the slope of the smoothed series Δŷ/Δt is
       normalised by (max ŷ − min ŷ)/(t_max − t_min), so ±1 means "moving at the average rate needed to cover
       the whole range over the whole run". Its sign is +1 above ``flat_tol``, −1 below −``flat_tol``,
       0 (flat) otherwise; a constant series is flat everywhere.
    4. **Warm-up** is the longest *initial* run of intervals whose RankMe sign is −1 (α is not consulted),
       optionally limited to intervals ending at or before ``warmup_max_step``. It is empty when the first
       interval's RankMe does not fall. Once it ends, no later interval is warm-up: a later RankMe fall is
       compression-seeking if α rises, else ambiguous.
    5. After warm-up: RankMe +1 and α −1 → entropy-seeking; RankMe −1 and α +1 → compression-seeking;
       every other combination (both rise, both fall, either flat) → ``"ambiguous"``. Ambiguous intervals
       are reported as such, never absorbed into a neighbour (they typically mark the turning points).
    6. Consecutive intervals with the same label are merged into one segment.

    Cost O(n²) for n checkpoints (the kernel smoother).
    """
    segments: list[dict] = []
    for interval in phase_intervals(steps, rankme, alpha, smooth, flat_tol, warmup_max_step):
        if segments and segments[-1]["phase"] == interval["phase"]:
            segments[-1]["end_step"] = interval["end_step"]
        else:
            segments.append(
                {"start_step": interval["start_step"], "end_step": interval["end_step"], "phase": interval["phase"]}
            )
    return segments


# --------------------------------------------------------------------------------------------------------
# Registry.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpectralMetric:
    """A registered spectral metric: the function and the spectrum (key of the spectra dict) it reads."""

    function: Callable[..., Any]
    spectrum_key: str


METRICS: dict[str, SpectralMetric] = {
    "rankme_sigma": SpectralMetric(rankme_sigma, "singular_values"),
    "rankme_lambda": SpectralMetric(rankme_lambda, "cov_eigenvalues"),
    "alpha_req": SpectralMetric(alpha_req, "cov_eigenvalues"),
    "participation_ratio": SpectralMetric(participation_ratio, "cov_eigenvalues"),
    "von_neumann_entropy": SpectralMetric(von_neumann_entropy, "norm_autocorr_eigenvalues"),
}
