"""Spectra of representation matrices: both exact paths, chunked/Dask accumulation, edge cases.

Independent reference throughout: ``numpy.linalg.svd`` of the (centred / uncentred / row-normalised) matrix,
a different algorithm from the cross-product eigen-decompositions under test.
"""

import dask.array as da
import numpy as np
import pytest
import torch

from repbench.spectra import (
    SPECTRUM_KEYS,
    SpectrumAccumulator,
    SpectrumInputError,
    spectra_from_array,
    spectra_from_chunks,
    spectra_from_dask,
)

SHAPES = [(40, 90), (200, 30), (64, 64)]  # N < D (Gram), N > D (covariance), N = D


def reference_spectra(X):
    """Hand computation by SVD: λ = s(Xᶜ)²/(N−1), σ = s(X), λ̂ = s(X̂)²/N, each padded/truncated to min(N, D)."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    centred = X - X.mean(axis=0)
    normalised = X / np.linalg.norm(X, axis=1, keepdims=True)
    k = min(n, d)
    return {
        "cov_eigenvalues": np.linalg.svd(centred, compute_uv=False)[:k] ** 2 / (n - 1),
        "singular_values": np.linalg.svd(X, compute_uv=False)[:k],
        "norm_autocorr_eigenvalues": np.linalg.svd(normalised, compute_uv=False)[:k] ** 2 / n,
    }


def assert_spectra_close(actual, expected, rtol, floor=1e-12):
    """Relative agreement per value; values below floor·max are compared absolutely (numerical zeros)."""
    assert set(actual) == set(SPECTRUM_KEYS)
    for key in SPECTRUM_KEYS:
        assert actual[key].shape == expected[key].shape, key
        scale = expected[key].max()
        np.testing.assert_allclose(actual[key], expected[key], rtol=rtol, atol=floor * scale, err_msg=key)


def data(n, d, seed=0, offset=2.0):
    rng = np.random.default_rng(seed)
    # anisotropic, with a mean: exercises centring and the uncentred singular values differently
    return rng.standard_normal((n, d)) * np.linspace(0.5, 3.0, d) + offset


@pytest.mark.parametrize("method", ["auto", "gram", "covariance"])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_svd_reference(shape, method):
    X = data(*shape)
    result = spectra_from_array(X, method=method)
    assert_spectra_close(result, reference_spectra(X), rtol=1e-9)
    for key in SPECTRUM_KEYS:
        values = result[key]
        assert values.dtype == np.float64 and len(values) == min(shape)
        assert np.all(np.diff(values) <= 0) and values.min() >= 0


@pytest.mark.parametrize("shape", SHAPES)
def test_gram_and_covariance_paths_agree(shape):
    X = data(*shape, seed=1)
    gram = spectra_from_array(X, method="gram")
    covariance = spectra_from_array(X, method="covariance")
    assert_spectra_close(gram, covariance, rtol=1e-9)


def test_trace_identities():
    X = data(50, 120, seed=2)
    result = spectra_from_array(X)
    centred = X - X.mean(axis=0)
    # Σλ = total variance, Σσ² = ‖X‖_F², Σλ̂ = 1 (trace of X̂ᵀX̂/N)
    assert result["cov_eigenvalues"].sum() == pytest.approx(np.sum(centred**2) / (len(X) - 1), rel=1e-12)
    assert np.sum(result["singular_values"] ** 2) == pytest.approx(np.sum(X**2), rel=1e-12)
    assert result["norm_autocorr_eigenvalues"].sum() == pytest.approx(1.0, rel=1e-12)
    # centring removes one dimension: with N ≤ D the last covariance eigenvalue is a numerical zero
    assert result["cov_eigenvalues"][-1] < 1e-12 * result["cov_eigenvalues"][0]


def test_float32_input_accumulates_in_float64():
    X32 = data(300, 20, seed=3, offset=50.0).astype(np.float32)
    result = spectra_from_array(X32)
    assert_spectra_close(result, reference_spectra(X32.astype(np.float64)), rtol=1e-9)


def test_planted_covariance_is_recovered_exactly():
    """X = √(N−1)·Q·diag(√λ)·Rᵀ + μ with Q orthonormal and centred columns, R orthogonal: cov eigenvalues = λ."""
    rng = np.random.default_rng(4)
    n, d = 500, 60
    planted = np.arange(1, d + 1, dtype=np.float64) ** -1.5
    gaussian = rng.standard_normal((n, d))
    q, _ = np.linalg.qr(gaussian - gaussian.mean(axis=0))
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    X = np.sqrt(n - 1) * q * np.sqrt(planted) @ rotation.T + rng.standard_normal(d)
    np.testing.assert_allclose(spectra_from_array(X)["cov_eigenvalues"], planted, rtol=1e-9)


# ------------------------------------------------------------------------------------------------------
# Chunked accumulation.
# ------------------------------------------------------------------------------------------------------


def split_rows(X, sizes):
    bounds = np.cumsum([0, *sizes])
    assert bounds[-1] == len(X)
    return [X[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


UNEVEN = {
    (300, 25): [1, 4, 0, 17, 2, 100, 176],  # crosses N = D after several chunks (Gram buffer → D×D sums)
    (60, 150): [7, 1, 30, 22],  # stays below D: Gram path
}


@pytest.mark.parametrize("shape", list(UNEVEN))
def test_accumulator_uneven_chunks_equals_in_memory(shape):
    X = data(*shape, seed=5, offset=30.0)  # large mean: the shifted sums must avoid cancellation
    accumulator = SpectrumAccumulator(shape[1])
    for chunk in split_rows(X, UNEVEN[shape]):
        accumulator.update(chunk)
    assert accumulator.path == ("gram" if shape[0] < shape[1] else "covariance")
    chunked = accumulator.finalize()
    assert_spectra_close(chunked, spectra_from_array(X), rtol=1e-8)
    assert_spectra_close(chunked, reference_spectra(X), rtol=1e-8)


def test_accumulator_large_mean_no_cancellation():
    """Mean 1e4 × spread: a naive XᵀX − nμμᵀ loses ~1e-6 relative; the shifted sums keep λ to 1e-8.

    The uncentred spectra are then dominated by the mean direction (σ₁/σ_K ≈ 9e4, λ̂₁/λ̂_K ≈ 4e9): from a
    K × K cross-product, an eigenvalue μₖ is accurate to about K·ε_mach·μ₁/μₖ relative (σₖ: K·ε_mach·(σ₁/σₖ)²)
    — the inherent limit of the cross-product method, asserted as such (observed ~2e-7 here).
    """
    X = data(400, 20, seed=9, offset=1e4)
    chunked = spectra_from_chunks(split_rows(X, [3, 97, 150, 150]), 20)
    reference = reference_spectra(X)
    np.testing.assert_allclose(chunked["cov_eigenvalues"], reference["cov_eigenvalues"], rtol=1e-8)
    limit = 4 * 20 * np.finfo(float).eps
    squared_sigma = reference["singular_values"] ** 2
    assert np.all(
        np.abs(chunked["singular_values"] ** 2 / squared_sigma - 1) <= limit * squared_sigma[0] / squared_sigma
    )
    autocorr = reference["norm_autocorr_eigenvalues"]
    assert np.all(np.abs(chunked["norm_autocorr_eigenvalues"] / autocorr - 1) <= limit * autocorr[0] / autocorr)


def test_accumulator_gram_cap_switches_to_covariance_path():
    X = data(60, 150, seed=6)
    chunked = spectra_from_chunks(split_rows(X, [10, 10, 40]), 150, gram_max_samples=15)
    assert_spectra_close(chunked, reference_spectra(X), rtol=1e-8)
    accumulator = SpectrumAccumulator(150, gram_max_samples=15)
    accumulator.update(X[:20])
    assert accumulator.path == "covariance"


@pytest.mark.parametrize("shape", list(UNEVEN))
@pytest.mark.parametrize("prefetch", [True, False])
def test_dask_uneven_chunks_equals_in_memory(shape, prefetch):
    X = data(*shape, seed=7)
    column_chunks = (shape[1] // 3, shape[1] - shape[1] // 3)  # several column blocks per block row too
    darr = da.from_array(X, chunks=(tuple(s for s in UNEVEN[shape] if s), column_chunks))
    result = spectra_from_dask(darr, prefetch=prefetch, progress=True)
    assert_spectra_close(result, spectra_from_array(X), rtol=1e-8)


# ------------------------------------------------------------------------------------------------------
# Errors.
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(40, 90), (200, 30)])
def test_zero_norm_row_is_a_clear_error(shape):
    X = data(*shape)
    X[17] = 0.0
    with pytest.raises(SpectrumInputError, match="zero L2 norm") as info:
        spectra_from_array(X)
    assert info.value.rows == [17]


def test_zero_norm_row_reports_global_index_when_chunked():
    X = data(300, 25)
    X[[123, 250]] = 0.0
    with pytest.raises(SpectrumInputError, match="zero L2 norm") as info:
        spectra_from_dask(da.from_array(X, chunks=(100, 25)))
    assert info.value.rows == [123]


def test_non_finite_row_is_a_clear_error():
    X = data(300, 25)
    X[42, 3] = np.nan
    with pytest.raises(SpectrumInputError, match="non-finite") as info:
        spectra_from_chunks(split_rows(X, [30, 270]), 25)
    assert info.value.rows == [42]


def test_shape_errors():
    with pytest.raises(ValueError, match="at least 2 samples"):
        spectra_from_array(np.ones((1, 5)))
    with pytest.raises(ValueError, match="2-D"):
        spectra_from_array(np.ones(5))
    accumulator = SpectrumAccumulator(5)
    with pytest.raises(ValueError, match="shape"):
        accumulator.update(np.ones((3, 4)))
    accumulator.update(np.ones((1, 5)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        accumulator.finalize()


# ------------------------------------------------------------------------------------------------------
# Devices.
# ------------------------------------------------------------------------------------------------------


def _cuda_available():
    return torch.cuda.is_available()


def test_cuda_request_without_gpu_is_an_error():
    if _cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CUDA"):
        spectra_from_array(data(10, 5), device="cuda")


@pytest.mark.parametrize("shape", list(UNEVEN))
def test_cuda_matches_cpu(shape):
    if not _cuda_available():
        pytest.skip("no GPU")
    X = data(*shape, seed=8)
    assert_spectra_close(spectra_from_array(X, device="cuda"), reference_spectra(X), rtol=1e-8)
    chunked = spectra_from_chunks(split_rows(X, UNEVEN[shape]), shape[1], device="cuda")
    assert_spectra_close(chunked, reference_spectra(X), rtol=1e-8)
