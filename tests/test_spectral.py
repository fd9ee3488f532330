"""Spectral metrics (RankMe variants, α-ReQ, participation ratio, von Neumann entropy), the tidy per-layer
table, and phase detection over training checkpoints. Every expected value is a hand computation or a
planted ground truth, independent of the code under test."""

import math

import numpy as np
import pytest

from repbench.metrics.spectral import (
    METRICS,
    PHASE_AMBIGUOUS,
    PHASE_COMPRESSION_SEEKING,
    PHASE_ENTROPY_SEEKING,
    PHASE_WARMUP,
    AlphaReqFit,
    UndefinedMetric,
    alpha_req,
    detect_phases,
    layer_metrics,
    local_linear_smooth,
    log_step,
    participation_ratio,
    phase_intervals,
    rankme_lambda,
    rankme_sigma,
    von_neumann_entropy,
)
from repbench.spectra import spectra_from_array

EPS = 1e-7


def hand_rankme(values, eps=EPS):
    total = sum(values)
    entropy = 0.0
    for value in values:
        p = value / total + eps
        if p > 0:
            entropy -= p * math.log(p)
    return math.exp(entropy)


def power_law(length, exponent):
    return np.arange(1, length + 1, dtype=np.float64) ** -exponent


def orthonormal_columns(rng, rows, cols, centred=False):
    gaussian = rng.standard_normal((rows, cols))
    if centred:
        gaussian -= gaussian.mean(axis=0)
    q, _ = np.linalg.qr(gaussian)
    return q


# ------------------------------------------------------------------------------------------------------
# Scalar metrics against hand computations.
# ------------------------------------------------------------------------------------------------------


def test_rankme_formulas_match_hand_computation():
    values = [5.0, 3.0, 1.0, 0.5, 0.0]
    assert rankme_sigma(values) == pytest.approx(hand_rankme(values), rel=1e-12)
    assert rankme_lambda(values) == pytest.approx(hand_rankme(values), rel=1e-12)
    assert rankme_sigma(values, eps=0.0) == pytest.approx(hand_rankme(values, eps=0.0), rel=1e-12)
    # input order is irrelevant
    assert rankme_sigma(values[::-1]) == pytest.approx(rankme_sigma(values), rel=1e-14)


def test_participation_ratio_and_entropy_by_hand():
    assert participation_ratio([4.0, 1.0, 1.0]) == pytest.approx(36.0 / 18.0)
    p = np.array([0.5, 0.25, 0.25, 0.0])
    assert von_neumann_entropy(p) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    # unnormalised input is renormalised
    assert von_neumann_entropy(4 * p) == pytest.approx(von_neumann_entropy(p))


def test_von_neumann_entropy_of_signed_basis_vectors_is_log_r():
    """Rows ±e₁…±e_r equally often (any scale): X̂ᵀX̂/N = I_r/r, so S = log r exactly."""
    r, d = 6, 20
    rows = []
    for i in range(r):
        for sign, scale in [(1, 1.0), (-1, 3.0)]:
            row = np.zeros(d)
            row[i] = sign * scale
            rows.append(row)
    spectra = spectra_from_array(np.array(rows))
    assert von_neumann_entropy(spectra["norm_autocorr_eigenvalues"]) == pytest.approx(math.log(r), rel=1e-10)


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0])
def test_alpha_req_on_planted_power_law_vector(exponent):
    fit = alpha_req(power_law(300, exponent) * 7.3)
    assert isinstance(fit, AlphaReqFit)
    assert fit.alpha == pytest.approx(exponent, rel=1e-10)  # exact power law: exact up to rounding
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)


def test_alpha_req_matches_independent_weighted_least_squares():
    rng = np.random.default_rng(0)
    spectrum = power_law(150, 1.3) * np.exp(0.2 * rng.standard_normal(150))
    ranks = np.arange(12, 101, dtype=np.float64)
    y = np.log(np.sort(spectrum)[::-1][11:100])
    design = np.column_stack([-np.log(ranks), np.ones_like(ranks)])
    sqrt_w = np.sqrt(1.0 / ranks)
    coefficients, *_ = np.linalg.lstsq(design * sqrt_w[:, None], y * sqrt_w, rcond=None)
    residual = y - design @ coefficients
    weighted_mean = np.average(y, weights=1 / ranks)
    r2 = 1 - np.sum(residual**2 / ranks) / np.sum((y - weighted_mean) ** 2 / ranks)
    fit = alpha_req(spectrum)
    assert fit.alpha == pytest.approx(coefficients[0], rel=1e-10)
    assert fit.r2 == pytest.approx(r2, rel=1e-10)
    assert fit.r2 < 0.999  # the noise is visible in R²


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0])
def test_alpha_req_from_data_with_exact_planted_covariance(exponent):
    """Data constructed to have sample covariance exactly diag(λ) in a random basis → α to 1e-8."""
    rng = np.random.default_rng(1)
    n, d = 400, 150
    planted = power_law(d, exponent)
    rotation = orthonormal_columns(rng, d, d)
    X = np.sqrt(n - 1) * orthonormal_columns(rng, n, d, centred=True) * np.sqrt(planted) @ rotation.T + 5.0
    fit = alpha_req(spectra_from_array(X)["cov_eigenvalues"])
    assert fit.alpha == pytest.approx(exponent, rel=1e-8)


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0])
def test_alpha_req_from_gaussian_samples_within_two_percent(exponent):
    """N = 20 000 Gaussian samples, D = 200, covariance with λᵢ ∝ i^(−a) in a random basis.

    Sampling noise (≈ √(2/N) per eigenvalue, plus eigenvalue repulsion) leaves α within 0.3 % here
    (seeds 0–2 and a ∈ {0.5, 1, 2} observed ≤ 0.3 %); the asserted tolerance is the 2 % of docs/metrics.md.
    """
    rng = np.random.default_rng(2)
    n, d = 20_000, 200
    rotation = orthonormal_columns(rng, d, d)
    X = rng.standard_normal((n, d)) * np.sqrt(power_law(d, exponent)) @ rotation.T
    fit = alpha_req(spectra_from_array(X)["cov_eigenvalues"])
    assert fit.alpha == pytest.approx(exponent, rel=0.02)
    assert fit.r2 > 0.999


@pytest.mark.parametrize("r", [1, 5, 10])
def test_rankme_exact_rank_r_isotropic_data(r):
    """X = √N·Q·Rᵀ (Q: N×r orthonormal centred columns, R: D×r orthonormal): r equal non-zero σ and λ.

    Both variants equal the closed form with ε (r values pₖ = 1/r + ε, K − r values pₖ ≈ ε), which is r
    up to the ε smoothing: ≈ r·(1 + (K − r)·ε·log(1/ε)) = r·(1 + 8.7e-5) for K = 64, r = 10.
    """
    rng = np.random.default_rng(3)
    n, d = 400, 64
    X = np.sqrt(n) * orthonormal_columns(rng, n, r, centred=True) @ orthonormal_columns(rng, d, r).T
    spectra = spectra_from_array(X)
    k = min(n, d)
    closed_form = math.exp(-r * (1 / r + EPS) * math.log(1 / r + EPS) - (k - r) * EPS * math.log(EPS))
    for value in (rankme_sigma(spectra["singular_values"]), rankme_lambda(spectra["cov_eigenvalues"])):
        assert value == pytest.approx(closed_form, rel=1e-6)
        assert value == pytest.approx(r, rel=2e-4)
    assert participation_ratio(spectra["cov_eigenvalues"]) == pytest.approx(r, rel=1e-9)


def test_rankme_sampled_isotropic_subspace_is_close_to_r():
    """Gaussian samples in a random 10-D subspace of ℝ⁶⁴ (N = 2000): sampling makes the spectrum slightly
    uneven, so both variants fall a little below r (observed ≈ 0.3 % for λ); RankMe_λ ≤ RankMe_σ."""
    rng = np.random.default_rng(4)
    r, n, d = 10, 2000, 64
    X = rng.standard_normal((n, r)) @ orthonormal_columns(rng, d, r).T
    spectra = spectra_from_array(X)
    sigma, lam = rankme_sigma(spectra["singular_values"]), rankme_lambda(spectra["cov_eigenvalues"])
    assert 0.98 * r < lam <= sigma < r + 0.01


# ------------------------------------------------------------------------------------------------------
# Undefined and invalid inputs.
# ------------------------------------------------------------------------------------------------------


def test_alpha_req_too_few_eigenvalues_is_undefined():
    with pytest.raises(UndefinedMetric, match="too few eigenvalues: 99 < rank_max=100"):
        alpha_req(power_law(99, 1.0))
    assert alpha_req(power_law(100, 1.0)).alpha == pytest.approx(1.0)  # inclusive window 12..100


def test_alpha_req_zero_eigenvalue_in_window_is_undefined():
    spectrum = np.concatenate([power_law(50, 1.0), np.zeros(150)])
    with pytest.raises(UndefinedMetric, match="rank 51"):
        alpha_req(spectrum)


def test_alpha_req_invalid_window_is_a_value_error():
    with pytest.raises(ValueError, match="rank_min"):
        alpha_req(power_law(200, 1.0), rank_min=50, rank_max=50)


def test_zero_spectrum_is_undefined_and_bad_input_is_an_error():
    for metric in (rankme_sigma, rankme_lambda, participation_ratio, von_neumann_entropy):
        with pytest.raises(UndefinedMetric, match="all zero"):
            metric(np.zeros(5))
    with pytest.raises(ValueError, match="negative"):
        rankme_lambda([1.0, -0.5])
    with pytest.raises(ValueError, match="non-finite"):
        participation_ratio([1.0, np.nan])
    assert rankme_lambda([1.0, -1e-14]) == pytest.approx(hand_rankme([1.0, 0.0]))  # rounding negatives clip


# ------------------------------------------------------------------------------------------------------
# Tidy per-layer table.
# ------------------------------------------------------------------------------------------------------


def test_layer_metrics_rows_are_tidy():
    spectrum = {
        "cov_eigenvalues": power_law(150, 1.0),
        "singular_values": np.sqrt(power_law(150, 1.0)),
        "norm_autocorr_eigenvalues": power_law(150, 1.0) / power_law(150, 1.0).sum(),
    }
    rows = layer_metrics(spectrum)
    assert [row["metric"] for row in rows] == list(METRICS)
    assert all(set(row) == {"metric", "value", "r2", "reason"} for row in rows)
    by_name = {row["metric"]: row for row in rows}
    assert by_name["alpha_req"]["value"] == pytest.approx(1.0) and by_name["alpha_req"]["r2"] == pytest.approx(1.0)
    assert by_name["rankme_sigma"]["value"] == pytest.approx(hand_rankme(list(spectrum["singular_values"])))
    assert math.isnan(by_name["participation_ratio"]["r2"]) and by_name["participation_ratio"]["reason"] == ""


def test_layer_metrics_config_and_undefined_rows():
    short = {"cov_eigenvalues": power_law(40, 1.0)}
    config = {"metrics": ["alpha_req", "participation_ratio"], "alpha_req": {"rank_min": 12, "rank_max": 100}}
    alpha_row, pr_row = layer_metrics(short, config)
    assert math.isnan(alpha_row["value"]) and "too few eigenvalues" in alpha_row["reason"]
    assert pr_row["value"] == pytest.approx(participation_ratio(short["cov_eigenvalues"]))
    narrow = layer_metrics(short, {"metrics": ["alpha_req"], "alpha_req": {"rank_min": 2, "rank_max": 30}})
    assert narrow[0]["value"] == pytest.approx(1.0) and narrow[0]["reason"] == ""
    with pytest.raises(ValueError, match="unknown spectral metric"):
        layer_metrics(short, {"alpha_reg": {}})
    with pytest.raises(KeyError, match="singular_values"):
        layer_metrics(short, {"metrics": ["rankme_sigma"]})


# ------------------------------------------------------------------------------------------------------
# Phases.
# ------------------------------------------------------------------------------------------------------

PYTHIA_LIKE_STEPS = np.array([0] + [2**i for i in range(10)] + list(range(1000, 143_001, 1000)), dtype=float)


def piecewise_linear(t, knots, values):
    return np.interp(t, knots, values)


def synthetic_trajectory(seed=0):
    """Truth in t = log(1+step): warm-up on [0, 4] (RankMe falls, α also rises), entropy-seeking on [4, 8],
    compression-seeking on [8, end]; small noise on both series."""
    rng = np.random.default_rng(seed)
    t = log_step(PYTHIA_LIKE_STEPS)
    knots = [0.0, 4.0, 8.0, t[-1]]
    rankme = piecewise_linear(t, knots, [100, 40, 200, 120]) + rng.normal(0, 1.0, t.size)
    alpha = piecewise_linear(t, knots, [0.8, 1.0, 0.6, 0.9]) + rng.normal(0, 0.003, t.size)
    return t, rankme, alpha, knots


def true_phase(t_start, t_end, knots, margin):
    """Planted phase of [t_start, t_end] if it lies at least ``margin`` away from both turning points."""
    turning_points = knots[1:3]
    if any(t_start - margin < knot < t_end + margin for knot in turning_points):
        return None
    phases = [PHASE_WARMUP, PHASE_ENTROPY_SEEKING, PHASE_COMPRESSION_SEEKING]
    return phases[int(np.searchsorted(turning_points, t_start))]


def test_log_step_keeps_step_zero():
    np.testing.assert_allclose(log_step([0, 1, 999]), [0.0, math.log(2), math.log(1000)])


def test_local_linear_smoother_reproduces_lines():
    t = np.sort(np.random.default_rng(5).uniform(0, 10, 40))
    np.testing.assert_allclose(local_linear_smooth(t, 3 - 2 * t, bandwidth=1.5), 3 - 2 * t, atol=1e-10)


def test_detect_phases_on_synthetic_trajectory():
    t, rankme, alpha, knots = synthetic_trajectory()
    bandwidth = 0.05 * t[-1]
    intervals = phase_intervals(PYTHIA_LIKE_STEPS, rankme, alpha)
    checked = 0
    for interval, t_start, t_end in zip(intervals, t[:-1], t[1:]):
        # intervals farther than 2 bandwidths from a turning point must carry the true label
        truth = true_phase(t_start, t_end, knots, margin=2 * bandwidth)
        if truth is not None:
            assert interval["phase"] == truth, (interval, t_start, t_end)
            checked += 1
    assert checked > 0.7 * len(intervals)

    segments = detect_phases(PYTHIA_LIKE_STEPS, rankme, alpha)
    assert segments[0]["start_step"] == 0 and segments[-1]["end_step"] == PYTHIA_LIKE_STEPS[-1]
    for before, after in zip(segments[:-1], segments[1:]):
        assert before["end_step"] == after["start_step"]
    main = [s for s in segments if s["phase"] != PHASE_AMBIGUOUS]
    assert [s["phase"] for s in main] == [PHASE_WARMUP, PHASE_ENTROPY_SEEKING, PHASE_COMPRESSION_SEEKING]
    # each boundary between main phases lies within 2 bandwidths of the planted turning point
    for segment, knot in zip(main[:-1], knots[1:3]):
        assert abs(math.log1p(segment["end_step"]) - knot) < 2 * bandwidth
    for segment, knot in zip(main[1:], knots[1:3]):
        assert abs(math.log1p(segment["start_step"]) - knot) < 2 * bandwidth


def test_detect_phases_is_order_invariant():
    _, rankme, alpha, _ = synthetic_trajectory(seed=1)
    order = np.random.default_rng(6).permutation(len(PYTHIA_LIKE_STEPS))
    assert detect_phases(PYTHIA_LIKE_STEPS[order], rankme[order], alpha[order]) == detect_phases(
        PYTHIA_LIKE_STEPS, rankme, alpha
    )


def test_phase_rules_without_smoothing():
    """smooth = 0: labels follow the raw interval slopes exactly (hand-labelled)."""
    steps = [0, 1, 3, 7, 15, 31, 63, 127]  # t = log(1+step) = 0, 1·ln2, 2·ln2, …: evenly spaced
    rankme = [10, 8, 6, 9, 12, 10, 8, 6]
    alpha = [1.0, 1.0, 1.0, 0.8, 0.6, 0.7, 0.6, 0.7]
    labels = [row["phase"] for row in phase_intervals(steps, rankme, alpha, smooth=0)]
    assert labels == [
        PHASE_WARMUP,  # RankMe falls, α flat: still warm-up (α not consulted)
        PHASE_WARMUP,
        PHASE_ENTROPY_SEEKING,
        PHASE_ENTROPY_SEEKING,
        PHASE_COMPRESSION_SEEKING,
        PHASE_AMBIGUOUS,  # RankMe falls but α falls too: after warm-up this is not a phase
        PHASE_COMPRESSION_SEEKING,
    ]
    capped = [row["phase"] for row in phase_intervals(steps, rankme, alpha, smooth=0, warmup_max_step=1)]
    assert capped[:2] == [PHASE_WARMUP, PHASE_AMBIGUOUS]
    rising_start = [row["phase"] for row in phase_intervals(steps, rankme[2:][::-1] + [1, 2], alpha, smooth=0)]
    assert PHASE_WARMUP not in rising_start


def test_phase_input_errors():
    with pytest.raises(ValueError, match="duplicate"):
        detect_phases([0, 1, 1], [1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="at least 2"):
        detect_phases([0], [1], [1])
    with pytest.raises(ValueError, match="≥ 0"):
        detect_phases([-1, 1], [1, 2], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        detect_phases([0, 1], [1, np.nan], [1, 2])
