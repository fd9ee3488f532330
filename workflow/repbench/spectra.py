"""Spectra of one layer's representations ``X`` (N samples × D features).

Pure functions, no file I/O: the caller opens the activation store and hands over an in-memory array, an
iterable of row chunks, or a Dask array. Every function returns the same three spectra, each a float64 numpy
vector of length ``K = min(N, D)`` sorted in descending order (see :data:`SPECTRUM_KEYS`):

``cov_eigenvalues``
    λ₁ ≥ … ≥ λ_K, eigenvalues of the centred sample covariance ``C = XᶜᵀXᶜ / (N − 1)`` with
    ``Xᶜ = X − 1μᵀ`` and ``μ = Xᵀ1/N`` (unbiased normalisation, as ``numpy.cov``). Centring removes one
    dimension, so when ``N ≤ D`` the last entry is 0 in exact arithmetic (numerically ~1e-16·λ₁).
``singular_values``
    σ₁ ≥ … ≥ σ_K of the *uncentred* ``X`` (no normalisation), computed as √eig(XᵀX) or √eig(XXᵀ).
    Eigenvalues of the product below its rounding level ``K·ε_mach·σ₁²`` are set to 0 before the square
    root, so numerically null directions give σ = 0 rather than ~1e-8·σ₁ of rounding noise. Through the
    squaring, σₖ is accurate to about K·ε_mach·(σ₁/σₖ)² relative (σ₁ dominates when X has a large mean);
    spectral metrics built on σ are insensitive to such tiny values.
``norm_autocorr_eigenvalues``
    eigenvalues of the autocorrelation ``X̂ᵀX̂ / N`` of the L2-normalised rows ``x̂ᵢ = xᵢ/‖xᵢ‖``. Its trace
    is 1, so the vector is already a probability distribution (input of the von Neumann entropy).

Eigenvalues that come out negative through rounding are clipped to 0. Accuracy: from a cross-product
matrix (covariance, Gram), an eigenvalue μₖ is accurate to about K·ε_mach·μ₁/μₖ relative. For λ this is
harmless (centring removes the mean); the uncentred σ and λ̂ of data with a large common mean have one
dominant value, and the small ones are then only accurate to that level (e.g. 1e-7 at μ₁/μₖ = 4e9).

Two exact paths give the same non-zero eigenvalues (AᵀA and AAᵀ share them):

* **Gram path** (used when N < D): N × N matrices ``XᶜXᶜᵀ``, ``XXᵀ``, ``X̂X̂ᵀ``; cost O(N²D + N³), memory
  O(ND + N²). Needs all rows at once.
* **covariance path** (N ≥ D): D × D matrices accumulated row chunk by row chunk in float64; cost
  O(ND² + D³), memory one chunk + O(D²). This is what makes stores larger than memory possible
  (:class:`SpectrumAccumulator`, :func:`spectra_from_chunks`, :func:`spectra_from_dask`).

Accumulation is always in float64, whatever the input dtype. With ``device`` naming a CUDA device (or
``None`` with a GPU present) the products and eigen-decompositions run in torch float64 on the GPU;
otherwise numpy (BLAS/LAPACK) on the CPU.

Input errors are raised as :class:`SpectrumInputError` (a ``ValueError``) naming the offending global row
indices: non-finite values, and rows of zero L2 norm (which have no direction, so ``x̂`` is undefined).
"""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator

import numpy as np

SPECTRUM_KEYS = ("cov_eigenvalues", "singular_values", "norm_autocorr_eigenvalues")
"""Keys of every spectra dict; each value is a float64 vector of length min(N, D), descending."""

METHODS = ("auto", "gram", "covariance")

_DEFAULT_BLOCK_BYTES = 64 * 2**20  # float64 bytes per row block when an in-memory X is fed block-wise
_MAX_REPORTED_ROWS = 10


class SpectrumInputError(ValueError):
    """Invalid rows in a representation matrix; ``rows`` holds (up to 10) offending global row indices."""

    def __init__(self, message: str, rows: list[int] | None = None):
        super().__init__(message)
        self.rows = rows or []


# --------------------------------------------------------------------------------------------------------
# Array backends: numpy on CPU, torch float64 on a CUDA device. Both expose the same few operations.
# --------------------------------------------------------------------------------------------------------


class _NumpyBackend:
    """float64 numpy operations (BLAS/LAPACK threads on the CPU)."""

    name = "numpy"

    def to_float64(self, chunk: Any) -> np.ndarray:
        return np.asarray(chunk, dtype=np.float64)

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, dtype=np.float64)

    def outer(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.outer(a, b)

    def all_finite_rows(self, a: np.ndarray) -> np.ndarray:
        return np.isfinite(a).all(axis=1)

    def eigvalsh_descending(self, sym: np.ndarray) -> np.ndarray:
        return _clip_descending(np.linalg.eigvalsh(sym))

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)


class _TorchBackend:
    """float64 torch operations on one device (used for CUDA)."""

    name = "torch"

    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.device = torch.device(device)

    def to_float64(self, chunk: Any):
        torch = self.torch
        if isinstance(chunk, torch.Tensor):
            return chunk.to(device=self.device, dtype=torch.float64)
        return torch.as_tensor(np.asarray(chunk)).to(device=self.device, dtype=torch.float64)

    def zeros(self, shape: tuple[int, ...]):
        return self.torch.zeros(shape, dtype=self.torch.float64, device=self.device)

    def outer(self, a, b):
        return self.torch.outer(a, b)

    def all_finite_rows(self, a):
        return self.torch.isfinite(a).all(dim=1)

    def eigvalsh_descending(self, sym) -> np.ndarray:
        return _clip_descending(self.torch.linalg.eigvalsh(sym).cpu().numpy())

    def to_numpy(self, a) -> np.ndarray:
        return a.cpu().numpy() if isinstance(a, self.torch.Tensor) else np.asarray(a)


def _clip_descending(eigenvalues: np.ndarray) -> np.ndarray:
    """Ascending LAPACK eigenvalues → descending float64, rounding negatives clipped to 0."""
    return np.clip(np.asarray(eigenvalues, dtype=np.float64)[::-1], 0.0, None).copy()


def _singular_values_from_squares(squares: np.ndarray) -> np.ndarray:
    """σ = √μ for the descending eigenvalues μ of XᵀX or XXᵀ, zeroing μ below K·ε_mach·μ₁ (rounding noise)."""
    noise_level = squares[0] * squares.size * np.finfo(np.float64).eps if squares.size else 0.0
    return np.sqrt(np.where(squares > noise_level, squares, 0.0))


def _torch_cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str | None = None) -> str:
    """Name of the device the spectra are computed on.

    ``None`` or ``"auto"`` → ``"cuda"`` when torch sees a GPU, else ``"cpu"``; ``"cpu"`` → numpy on the CPU;
    ``"cuda"``/``"cuda:<i>"`` → torch on that GPU (error when none is available).
    """
    if device is None or device == "auto":
        return "cuda" if _torch_cuda_available() else "cpu"
    device = str(device)
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not _torch_cuda_available():
            raise RuntimeError(f"device={device!r} requested but torch sees no CUDA device")
        return device
    raise ValueError(f"device must be None, 'auto', 'cpu' or 'cuda[:i]', got {device!r}")


def _backend_for(device: str | None) -> _NumpyBackend | _TorchBackend:
    resolved = resolve_device(device)
    return _NumpyBackend() if resolved == "cpu" else _TorchBackend(resolved)


# --------------------------------------------------------------------------------------------------------
# Row checks shared by both paths.
# --------------------------------------------------------------------------------------------------------


def _raise_on_bad_rows(backend, rows64, squared_norms, first_row_index: int) -> None:
    """Raise SpectrumInputError for non-finite rows or rows of zero L2 norm (global indices reported)."""
    finite = backend.to_numpy(backend.all_finite_rows(rows64))
    if not finite.all():
        bad = (np.flatnonzero(~finite)[:_MAX_REPORTED_ROWS] + first_row_index).tolist()
        raise SpectrumInputError(
            f"{int((~finite).sum())} row(s) contain non-finite values (NaN/inf); first row indices: {bad}",
            rows=bad,
        )
    zero = backend.to_numpy(squared_norms == 0)
    if zero.any():
        bad = (np.flatnonzero(zero)[:_MAX_REPORTED_ROWS] + first_row_index).tolist()
        raise SpectrumInputError(
            f"{int(zero.sum())} row(s) have zero L2 norm, so their direction x/‖x‖ (needed for "
            f"norm_autocorr_eigenvalues) is undefined; first row indices: {bad}. Drop or fix these samples.",
            rows=bad,
        )


def _check_matrix(X: Any) -> tuple[int, int]:
    shape = tuple(getattr(X, "shape", ()))
    if len(shape) != 2:
        raise ValueError(f"expected a 2-D (samples × features) array, got shape {shape}")
    n_samples, n_features = int(shape[0]), int(shape[1])
    if n_samples < 2 or n_features < 1:
        raise ValueError(f"need at least 2 samples and 1 feature for a covariance, got shape {shape}")
    return n_samples, n_features


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _truncate(spectra: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """Keep the top ``length`` = min(N, D) values of every spectrum (the rest are exact zeros)."""
    return {key: np.ascontiguousarray(values[:length]) for key, values in spectra.items()}


# --------------------------------------------------------------------------------------------------------
# Gram path (N × N).
# --------------------------------------------------------------------------------------------------------


def _gram_spectra(X: Any, backend) -> dict[str, np.ndarray]:
    """All three spectra from N × N Gram matrices; returns N values each (descending).

    Formula: eig(XᶜXᶜᵀ)/(N−1), √eig(XXᵀ), eig(D⁻¹XXᵀD⁻¹)/N with D = diag(‖xᵢ‖).
    Cost O(N²D + N³) time, O(ND + N²) memory.
    """
    n_samples, _ = _check_matrix(X)
    x64 = backend.to_float64(X)
    squared_norms = (x64 * x64).sum(1)
    _raise_on_bad_rows(backend, x64, squared_norms, 0)

    centred = x64 - x64.mean(0)
    cov_eigenvalues = backend.eigvalsh_descending(centred @ centred.T) / (n_samples - 1)
    del centred

    gram = x64 @ x64.T
    singular_values = _singular_values_from_squares(backend.eigvalsh_descending(gram))
    inverse_norms = 1.0 / (squared_norms**0.5)
    normalised_gram = gram * inverse_norms[:, None] * inverse_norms[None, :]
    norm_autocorr_eigenvalues = backend.eigvalsh_descending(normalised_gram) / n_samples
    return {
        "cov_eigenvalues": cov_eigenvalues,
        "singular_values": singular_values,
        "norm_autocorr_eigenvalues": norm_autocorr_eigenvalues,
    }


# --------------------------------------------------------------------------------------------------------
# Covariance path (D × D), chunked.
# --------------------------------------------------------------------------------------------------------


class _CrossProductSums:
    """Shifted float64 sums over row chunks for the D × D path.

    With a shift ``s`` (the mean of the first chunk), keeps ``S = Σ(x−s)(x−s)ᵀ``, ``t = Σ(x−s)``, the row
    count ``n`` and ``A = Σ x̂x̂ᵀ``. Then
    ``XᶜᵀXᶜ = S − ttᵀ/n`` (shifting keeps this subtraction free of cancellation when the data have a large
    mean) and ``XᵀX = S + stᵀ + tsᵀ + n·ssᵀ``. Memory 2·D² float64; cost O(rows·D²) per chunk.
    """

    def __init__(self, n_features: int, backend):
        self.backend = backend
        self.n_features = n_features
        self.n_rows = 0
        self.shift = None
        self.shifted_scatter = backend.zeros((n_features, n_features))
        self.shifted_sum = backend.zeros((n_features,))
        self.normalised_scatter = backend.zeros((n_features, n_features))

    def add(self, rows64, squared_norms) -> None:
        if rows64.shape[0] == 0:
            return
        if self.shift is None:
            self.shift = rows64.mean(0)
        shifted = rows64 - self.shift
        self.shifted_scatter += shifted.T @ shifted
        self.shifted_sum += shifted.sum(0)
        normalised = rows64 / (squared_norms**0.5)[:, None]
        self.normalised_scatter += normalised.T @ normalised
        self.n_rows += int(rows64.shape[0])

    def spectra(self) -> dict[str, np.ndarray]:
        """D values of each spectrum (descending)."""
        backend, n, s, t = self.backend, self.n_rows, self.shift, self.shifted_sum
        centred_scatter = self.shifted_scatter - backend.outer(t, t) / n
        cov_eigenvalues = backend.eigvalsh_descending(centred_scatter) / (n - 1)
        del centred_scatter
        uncentred_scatter = self.shifted_scatter + backend.outer(s, t) + backend.outer(t, s) + n * backend.outer(s, s)
        singular_values = _singular_values_from_squares(backend.eigvalsh_descending(uncentred_scatter))
        del uncentred_scatter
        norm_autocorr_eigenvalues = backend.eigvalsh_descending(self.normalised_scatter) / n
        return {
            "cov_eigenvalues": cov_eigenvalues,
            "singular_values": singular_values,
            "norm_autocorr_eigenvalues": norm_autocorr_eigenvalues,
        }


class SpectrumAccumulator:
    """Spectra of a matrix streamed as row chunks of any sizes, in float64.

    Usage::

        acc = SpectrumAccumulator(n_features=D)
        for chunk in chunks:          # each (rows_i × D), any rows_i ≥ 0
            acc.update(chunk)
        spectra = acc.finalize()      # dict with SPECTRUM_KEYS, each length min(N, D)

    Path choice (``method="auto"``): rows are buffered (as given, no float64 copy) while the row count stays
    below D (and at most ``gram_max_samples`` when set); the result then comes from the exact Gram path.
    As soon as the count reaches D (or exceeds ``gram_max_samples``) the buffer is folded into D × D float64
    sums (:class:`_CrossProductSums`) and every later chunk is added and dropped, so memory stays one chunk
    plus 2·D² float64 (+ the buffer, < D rows, before the switch). ``method="gram"`` always buffers (all rows
    in memory), ``method="covariance"`` never does. Both paths give the same eigenvalues to rounding.

    Each chunk is checked for non-finite values and zero-norm rows (:class:`SpectrumInputError` with global
    row indices). Complexity: O(N·D²) (covariance) or O(N²·D) (Gram) time.
    """

    def __init__(
        self,
        n_features: int,
        *,
        device: str | None = None,
        method: str = "auto",
        gram_max_samples: int | None = None,
    ):
        _check_method(method)
        if n_features < 1:
            raise ValueError(f"n_features must be ≥ 1, got {n_features}")
        self.n_features = int(n_features)
        self.method = method
        self.gram_max_samples = gram_max_samples
        self.backend = _backend_for(device)
        self.n_samples = 0
        self._buffer: list[np.ndarray] | None = [] if method != "covariance" else None
        self._sums = _CrossProductSums(self.n_features, self.backend) if method == "covariance" else None
        self._finalized = False

    @property
    def path(self) -> str:
        """``"gram"`` while rows are buffered, ``"covariance"`` once D × D sums are accumulated."""
        return "gram" if self._buffer is not None else "covariance"

    def update(self, chunk: Any) -> None:
        """Add a (rows × D) chunk (numpy, anything ``np.asarray`` accepts, or a torch tensor)."""
        if self._finalized:
            raise RuntimeError("SpectrumAccumulator.update() after finalize()")
        if isinstance(chunk, np.ndarray) or not hasattr(chunk, "shape"):
            chunk = np.asarray(chunk)
        if chunk.ndim != 2 or chunk.shape[1] != self.n_features:
            raise ValueError(f"chunk must have shape (rows, {self.n_features}), got {tuple(chunk.shape)}")
        first_row = self.n_samples
        self.n_samples += int(chunk.shape[0])
        if self._buffer is not None:
            rows64 = self.backend.to_float64(chunk)
            _raise_on_bad_rows(self.backend, rows64, (rows64 * rows64).sum(1), first_row)
            self._buffer.append(np.array(self.backend.to_numpy(chunk), copy=True))
            if self.method == "auto" and self._gram_too_large():
                self._fold_buffer_into_sums()
        else:
            self._add_to_sums(chunk, first_row)

    def _gram_too_large(self) -> bool:
        over_cap = self.gram_max_samples is not None and self.n_samples > self.gram_max_samples
        return self.n_samples >= self.n_features or over_cap

    def _add_to_sums(self, chunk: Any, first_row: int) -> None:
        rows64 = self.backend.to_float64(chunk)
        squared_norms = (rows64 * rows64).sum(1)
        _raise_on_bad_rows(self.backend, rows64, squared_norms, first_row)
        self._sums.add(rows64, squared_norms)

    def _fold_buffer_into_sums(self) -> None:
        buffered, self._buffer = self._buffer, None
        self._sums = _CrossProductSums(self.n_features, self.backend)
        rows = np.concatenate(buffered, axis=0)
        rows64 = self.backend.to_float64(rows)
        self._sums.add(rows64, (rows64 * rows64).sum(1))

    def finalize(self) -> dict[str, np.ndarray]:
        """The three spectra (see module docstring), each float64 of length min(N, D), descending."""
        if self.n_samples < 2:
            raise ValueError(f"need at least 2 samples for a covariance, got {self.n_samples}")
        self._finalized = True
        length = min(self.n_samples, self.n_features)
        if self._buffer is not None:
            rows = np.concatenate(self._buffer, axis=0)
            self._buffer = []
            return _truncate(_gram_spectra(rows, self.backend), length)
        return _truncate(self._sums.spectra(), length)


def spectra_from_chunks(
    chunks: Iterable[Any],
    n_features: int,
    *,
    device: str | None = None,
    method: str = "auto",
    gram_max_samples: int | None = None,
) -> dict[str, np.ndarray]:
    """Spectra of the matrix whose rows are the concatenation of ``chunks`` (see :class:`SpectrumAccumulator`)."""
    accumulator = SpectrumAccumulator(n_features, device=device, method=method, gram_max_samples=gram_max_samples)
    for chunk in chunks:
        accumulator.update(chunk)
    return accumulator.finalize()


def _row_blocks(X: Any, block_rows: int) -> Iterator[Any]:
    for start in range(0, X.shape[0], block_rows):
        yield X[start : start + block_rows]


def spectra_from_array(
    X: Any,
    *,
    device: str | None = None,
    method: str = "auto",
    block_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """Spectra of an in-memory representation matrix ``X`` (N × D, any real dtype; numpy or torch).

    Returns ``{"cov_eigenvalues", "singular_values", "norm_autocorr_eigenvalues"}``, each float64 of
    length ``min(N, D)``, descending (definitions and normalisations in the module docstring).

    ``method="auto"`` uses the Gram path (N × N, O(N²D + N³)) when N < D and the covariance path
    (D × D, O(ND² + D³)) otherwise; ``"gram"``/``"covariance"`` force one (both exact). The covariance path
    runs over row blocks of ``block_rows`` rows (default ≈ 64 MiB of float64), so extra memory is one
    float64 block + 2·D², not a float64 copy of X. ``device``: see :func:`resolve_device`.

    Raises :class:`SpectrumInputError` for non-finite values or zero-norm rows, ``ValueError`` for N < 2.
    """
    _check_method(method)
    n_samples, n_features = _check_matrix(X)
    use_gram = method == "gram" or (method == "auto" and n_samples < n_features)
    if use_gram:
        return _truncate(_gram_spectra(X, _backend_for(device)), min(n_samples, n_features))
    if block_rows is None:
        block_rows = max(1, _DEFAULT_BLOCK_BYTES // (8 * n_features))
    return spectra_from_chunks(_row_blocks(X, block_rows), n_features, device=device, method="covariance")


def _dask_row_blocks(darr: Any, prefetch: bool) -> Iterator[np.ndarray]:
    """Compute a 2-D Dask array one row of blocks at a time; with ``prefetch`` the next block is read in a
    background thread while the current one is processed (memory: two row blocks)."""
    n_blocks = darr.numblocks[0]
    if not prefetch or n_blocks < 2:
        for i in range(n_blocks):
            yield np.asarray(darr.blocks[i].compute())
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(lambda: np.asarray(darr.blocks[0].compute()))
        for i in range(n_blocks):
            block = pending.result()
            if i + 1 < n_blocks:
                pending = pool.submit(lambda j=i + 1: np.asarray(darr.blocks[j].compute()))
            yield block


def spectra_from_dask(
    darr: Any,
    *,
    device: str | None = None,
    method: str = "auto",
    gram_max_samples: int | None = None,
    prefetch: bool = True,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Spectra of a 2-D Dask array (N × D, e.g. one layer of a Zarr activation store: ``darr[layer]``).

    Iterates over ``darr.blocks`` along the sample axis (any, uneven, chunk sizes; column chunks of a block
    row are computed together), feeding a :class:`SpectrumAccumulator`: memory stays about two row blocks
    (one being read while the previous is reduced, when ``prefetch``) + 2·D² float64 (or the rows themselves
    on the Gram path, N < D). ``progress`` shows a tqdm bar over row blocks. Result as
    :func:`spectra_from_array`.
    """
    _check_matrix(darr)
    blocks: Iterable[np.ndarray] = _dask_row_blocks(darr, prefetch)
    if progress:
        from tqdm.auto import tqdm

        blocks = tqdm(blocks, total=darr.numblocks[0], desc="spectra", unit="block")
    return spectra_from_chunks(
        blocks, int(darr.shape[1]), device=device, method=method, gram_max_samples=gram_max_samples
    )
