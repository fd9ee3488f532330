"""Exact, blocked k-nearest-neighbour graphs (pure functions on arrays, no file I/O).

Contract (DESIGN.md, "Neighbor graph"): for every sample i the ``kmax`` nearest other samples (self excluded),
sorted by ascending distance, ties broken by lower index; ``indices`` int32 ``(N, kmax)``, ``distances``
float32 ``(N, kmax)``. Any ``k <= kmax`` is a prefix.

Spaces
    cosine     d(i, j) = 1 - x̂ᵢ·x̂ⱼ  with x̂ = x/‖x‖ (zero rows are an error), evaluated in float64 as the
               algebraically identical ½‖x̂ᵢ - x̂ⱼ‖² (no cancellation; exact duplicates give exactly 0).
    euclidean  d(i, j) = ‖xᵢ - xⱼ‖ (not squared), evaluated in float64 from the difference vector.

Algorithm (per block of B query rows; memory O(B·N), never N×N)
    1. approximate distances d̃ to all N points with one float32 matrix product (torch; CUDA when asked or
       available), self set to +inf. E is a rigorous bound on |d̃ − d| (worst-case float32 dot-product error
       (D + c)·u, u = 2⁻²⁴, see ``_prepare_space``);
    2. take the m = kmax + margin smallest d̃ (``torch.topk``, sorted) as candidates; let t = d̃ of the
       kmax-th candidate. The true kmax-th distance is ≤ t + E, so every true neighbour j has d̃ⱼ ≤ t + 2E;
    3. if fewer than m candidates have d̃ ≤ t + 2E, every true neighbour is among them (all other points have
       d̃ ≥ the m-th candidate's > t + 2E): recompute only those candidates' distances exactly in float64 from
       the vectors and sort by (distance, index). Otherwise (ties, near-duplicates, very dense data) the row
       is redone with every point whose d̃ ≤ t + 2E as candidate, which is exact by the same argument.
    The result therefore equals a float64 brute force (``brute_force_knn``) that sorts the same float64
    distances by (distance, index). Exact distances use only correctly rounded elementwise operations in a
    fixed order, so they are bitwise identical on CPU and CUDA.

Complexity: O(N²·D) float32 flops (one GEMM per block) + O(N·(kmax + a few)·D) float64 for the exact
re-ranking; memory ≈ ``budget_bytes`` (default 256 MB) for the working set of the blocks in flight, plus the
input in float32 and float64 on the device. On CPU the blocks run on ``torch.get_num_threads()`` single-threaded
workers and the exact step works in cache-sized tiles; neither changes any result (each row's answer does not
depend on the block it is in).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

SPACES = ("cosine", "euclidean")
DEFAULT_BUDGET_BYTES = 256 * 2**20
_FLOAT32_UNIT_ROUNDOFF = 2.0**-24
_CPU_TILE_BYTES = 2 * 2**20


def knn(X, kmax: int, space: str = "cosine", block_size: int | None = None, device=None,
        budget_bytes: int = DEFAULT_BUDGET_BYTES):
    """Exact k nearest neighbours of every row of ``X`` among the other rows.

    Parameters
    ----------
    X : array_like (N, D), finite real values.
    kmax : number of neighbours, 1 ≤ kmax < N.
    space : ``"cosine"`` (d = 1 - x̂ᵢ·x̂ⱼ) or ``"euclidean"`` (d = ‖xᵢ - xⱼ‖).
    block_size : query rows per block; default from ``budget_bytes``.
    device : torch device for the float32 candidate search; default CUDA when available, else CPU (torch's
        intra-op threads).
    budget_bytes : working-memory budget for one block (default 256 MB).

    Returns
    -------
    indices : int32 (N, kmax), neighbours by ascending distance, ties by lower index, self excluded.
    distances : float32 (N, kmax), the float64 distances rounded to float32.

    Complexity O(N²·D) time, O(block_size·N + N·D) memory. Raises ValueError for kmax ≥ N, kmax < 1,
    non-finite input, zero rows in cosine space or an unknown space.
    """
    X64 = _validated_matrix(X, kmax, space)
    n, d = X64.shape
    device = _resolve_device(device)
    margin = max(16, kmax // 4)
    n_candidates = min(kmax + margin, n - 1)
    workers = torch.get_num_threads() if device.type == "cpu" else 1
    worker_budget = max(1, budget_bytes // workers)
    if block_size is None:
        block_size = _block_size_from_budget(n, n_candidates, worker_budget - _tile_bytes(device, worker_budget))
        if workers > 1:  # enough blocks to keep every worker busy
            block_size = min(block_size, max(64, -(-n // (4 * workers))))
    if block_size < 1:
        raise ValueError(f"block_size must be ≥ 1, got {block_size}")

    exact_points, search_points, search_sq_norms, error_bound = _prepare_space(X64, space)
    exact_t = torch.from_numpy(exact_points).to(device)
    search_t = torch.from_numpy(search_points.astype(np.float32)).to(device)
    sq_norms_t = None if search_sq_norms is None else torch.from_numpy(search_sq_norms.astype(np.float32)).to(device)

    indices = np.empty((n, kmax), dtype=np.int32)
    distances = np.empty((n, kmax), dtype=np.float32)

    def run_block(start):
        rows = torch.arange(start, min(start + block_size, n), device=device)
        idx, dist = _knn_block(rows, exact_t, search_t, sq_norms_t, space, kmax, n_candidates,
                               error_bound, worker_budget)
        indices[start:start + len(rows)] = idx.cpu().numpy()
        distances[start:start + len(rows)] = dist.to(torch.float32).cpu().numpy()

    starts = range(0, n, block_size)
    with _highest_float32_matmul_precision():
        if workers > 1 and len(starts) > 1:
            _run_single_threaded_workers(run_block, starts, workers)
        else:
            for start in starts:
                run_block(start)
    return indices, distances


def brute_force_knn(X, kmax: int, space: str = "cosine"):
    """Reference k-NN: every distance in float64 (same per-pair formula as ``knn``), sorted by (distance, index).

    O(N²·D) time, O(N·D) memory per query row (rows are processed one at a time, on the CPU). For tests and
    benchmarks. Returns (indices int32 (N, kmax), distances float32 (N, kmax)).
    """
    X64 = _validated_matrix(X, kmax, space)
    points = torch.from_numpy(_unit_rows(X64) if space == "cosine" else X64)
    n = points.shape[0]
    indices = np.empty((n, kmax), dtype=np.int32)
    distances = np.empty((n, kmax), dtype=np.float32)
    all_idx = np.arange(n)
    for i in range(n):
        row = _exact_distances_t(points[i:i + 1], points[None], space)[0].numpy()
        row[i] = np.inf
        order = np.lexsort((all_idx, row))[:kmax]
        indices[i] = order
        distances[i] = row[order]
    return indices, distances


# --------------------------------------------------------------------------------------------------- helpers

def _validated_matrix(X, kmax, space) -> np.ndarray:
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; expected one of {SPACES}")
    X64 = np.asarray(X, dtype=np.float64)
    if X64.ndim != 2:
        raise ValueError(f"X must be 2-D (samples, features), got shape {X64.shape}")
    n = X64.shape[0]
    if not isinstance(kmax, (int, np.integer)) or kmax < 1:
        raise ValueError(f"kmax must be a positive integer, got {kmax!r}")
    if kmax >= n:
        raise ValueError(f"kmax={kmax} must be smaller than the number of samples N={n} (self is excluded)")
    if not np.isfinite(X64).all():
        bad = np.argwhere(~np.isfinite(X64))[0]
        raise ValueError(f"X contains non-finite values (first at sample {bad[0]}, feature {bad[1]})")
    if space == "cosine":
        zero = np.flatnonzero(~np.any(X64 != 0, axis=1))
        if zero.size:
            raise ValueError(f"cosine space needs non-zero rows; {zero.size} zero row(s), first at sample {zero[0]}")
    return np.ascontiguousarray(X64)


def _unit_rows(X64: np.ndarray) -> np.ndarray:
    """x̂ = x / ‖x‖ in float64 (rows pre-scaled by their max |x| so the norm cannot overflow)."""
    scaled = X64 / np.abs(X64).max(axis=1, keepdims=True)
    return scaled / np.linalg.norm(scaled, axis=1, keepdims=True)


def _exact_distances_t(queries: torch.Tensor, points: torch.Tensor, space: str, overwrite=False) -> torch.Tensor:
    """Float64 distances between queries (B, D) and their own candidate rows (B, C, D) -> (B, C).

    Only correctly rounded elementwise operations in a fixed order are used, so the value of a pair is
    bitwise the same on every device, in every call and for every batch shape (deterministic tie-breaking).
    ``overwrite=True`` lets the function use ``points`` (a temporary) as its work space.
    """
    diff = points.sub_(queries[:, None, :]) if overwrite else points - queries[:, None, :]
    sq = _sum_last_axis_fixed_order(diff.mul_(diff))
    return sq.mul_(0.5) if space == "cosine" else sq.sqrt_()


def _sum_last_axis_fixed_order(t: torch.Tensor) -> torch.Tensor:
    """In-place pairwise sum over the last axis with a fixed tree: entry i absorbs entry i + h (h = n//2), an
    odd length's last entry moves to position h. Once 16 or fewer partial sums are left they are moved to the
    front axis (same tree, contiguous operands). Overwrites ``t``; returns a new (…,) tensor."""
    n = t.shape[-1]
    while n > 16:
        half = n // 2
        t[..., :half] += t[..., half:2 * half]
        if n % 2:
            t[..., half] = t[..., 2 * half]
        n = half + n % 2
    t = t[..., :n].movedim(-1, 0).contiguous()
    while n > 1:
        half = n // 2
        t[:half] += t[half:2 * half]
        if n % 2:
            t[half] = t[2 * half]
        n = half + n % 2
    return t[0]


def _prepare_space(X64: np.ndarray, space: str):
    """Points for the exact step, points for the float32 search, and the search's error bound E.

    cosine: search on x̂ (‖x̂‖ = 1), approx d̃ = 1 - x̂ᵢ·x̂ⱼ; E = (D + 8)·u covers rounding the inputs to
        float32 (2u), the float32 dot product (D·u·‖x̂ᵢ‖‖x̂ⱼ‖) and the final subtraction.
    euclidean: search on y = (x - mean)/R with R = max‖x - mean‖ (translation/scale do not change the order
        and keep float32 far from overflow); approx d̃ = ‖yᵢ‖² + ‖yⱼ‖² - 2yᵢ·yⱼ (squared, in search units);
        E = (2D + 24)·u bounds the dot-product error (2(D+2)u), the rounded squared norms and the float32
        additions of terms ≤ 4.
    """
    d = X64.shape[1]
    u = _FLOAT32_UNIT_ROUNDOFF
    slack = (d + 8) * 2.0**-48  # float64 rounding of the exact step and of the centring/normalisation
    if space == "cosine":
        unit = _unit_rows(X64)
        return unit, unit, None, (d + 8) * u / (1 - (d + 8) * u) + slack
    centred = X64 - X64.mean(axis=0)
    radius = float(np.sqrt(np.einsum("ij,ij->i", centred, centred).max()))
    scale = radius if radius > 0 else 1.0
    search = centred / scale
    sq_norms = np.einsum("ij,ij->i", search, search)
    return X64, search, sq_norms, (2 * d + 24) * u / (1 - (d + 8) * u) + slack


def _approx_distances(rows, search_t, sq_norms_t, space) -> torch.Tensor:
    """Float32 (B, N) approximate distances in search units, self = +inf."""
    queries = torch.index_select(search_t, 0, rows)
    if space == "cosine":
        approx = torch.addmm(search_t.new_ones(()), queries, search_t.T, alpha=-1.0)
    else:
        approx = torch.addmm(sq_norms_t[None, :], queries, search_t.T, alpha=-2.0)
        approx += sq_norms_t[rows][:, None]
        approx.clamp_(min=0.0)
    approx[torch.arange(len(rows), device=rows.device), rows] = math.inf
    return approx


def _knn_block(rows, exact_t, search_t, sq_norms_t, space, kmax, n_candidates, error_bound, budget_bytes):
    """Exact (int32 indices, float64 distances) (B, kmax) for one block of query rows (steps 1-3 above)."""
    n = exact_t.shape[0]
    approx = _approx_distances(rows, search_t, sq_norms_t, space)
    approx_cand, cand = torch.topk(approx, n_candidates, dim=1, largest=False, sorted=True)
    cutoff = _float32_at_least(approx_cand[:, kmax - 1].to(torch.float64) + 2.0 * error_bound)
    within = (approx_cand <= cutoff[:, None]).sum(dim=1)
    saturated = (within == n_candidates) & (n_candidates < n - 1)
    idx = torch.empty((len(rows), kmax), dtype=torch.int32, device=cand.device)
    dist = torch.empty((len(rows), kmax), dtype=torch.float64, device=cand.device)
    clear = torch.nonzero(~saturated).flatten()
    if clear.numel():
        width = int(within[clear].max())
        idx[clear], dist[clear] = _exact_top_k(rows[clear], cand[clear, :width], exact_t, space, kmax, budget_bytes)
    crowded = torch.nonzero(saturated).flatten()
    if crowded.numel():
        sub = approx[crowded]
        width = min(max(int((sub <= cutoff[crowded, None]).sum(dim=1).max()), kmax), n - 1)
        _, wide = torch.topk(sub, width, dim=1, largest=False, sorted=False)
        idx[crowded], dist[crowded] = _exact_top_k(rows[crowded], wide, exact_t, space, kmax, budget_bytes)
    return idx, dist


def _float32_at_least(values: torch.Tensor) -> torch.Tensor:
    """The smallest float32 ≥ each float64 value, so float32 comparisons `x <= result` equal `x <= value`."""
    rounded = values.to(torch.float32)
    below = rounded.to(torch.float64) < values
    return torch.where(below, torch.nextafter(rounded, torch.full_like(rounded, math.inf)), rounded)


def _exact_top_k(rows, cand, exact_t, space, kmax, budget_bytes):
    """Exact top-kmax of each row among its candidate columns: (int32 indices, float64 distances) (B, kmax).

    Distances of all (row, candidate) pairs are computed in float64 tiles whose (rows × cols × D) working set
    is bounded (≤ 32 MB on CPU: few, large element-wise ops; a third of the budget on CUDA), then sorted once
    by (distance, index).
    """
    b, c = cand.shape
    d = exact_t.shape[1]
    tile_bytes = _tile_bytes(cand.device, budget_bytes)
    tile_elems = max(d, tile_bytes // 8)
    col_chunk = max(1, min(c, tile_elems // d))
    row_chunk = max(1, min(b, tile_elems // (col_chunk * d)))
    queries = torch.index_select(exact_t, 0, rows)
    dist = torch.empty((b, c), dtype=torch.float64, device=cand.device)
    work = torch.empty(row_chunk * col_chunk * d, dtype=torch.float64, device=cand.device)
    for r0 in range(0, b, row_chunk):
        for c0 in range(0, c, col_chunk):
            tile = cand[r0:r0 + row_chunk, c0:c0 + col_chunk]
            points = work[:tile.numel() * d].view(tile.numel(), d)
            torch.index_select(exact_t, 0, tile.reshape(-1), out=points)
            dist[r0:r0 + row_chunk, c0:c0 + col_chunk] = _exact_distances_t(
                queries[r0:r0 + row_chunk], points.view(*tile.shape, d), space, overwrite=True)
    best_idx, best_dist = _merge_sorted(cand, dist, kmax)
    return best_idx.to(torch.int32), best_dist


def _merge_sorted(idx, dist, kmax):
    """Keep the kmax smallest (distance, index) pairs per row, sorted: stable sort by index, then by distance."""
    by_index = torch.sort(idx, dim=1, stable=True).indices
    idx, dist = idx.gather(1, by_index), dist.gather(1, by_index)
    by_dist = torch.sort(dist, dim=1, stable=True).indices[:, :kmax]
    return idx.gather(1, by_dist), dist.gather(1, by_dist)


def _tile_bytes(device, budget_bytes) -> int:
    """Working space of the exact step: a third of the budget on CUDA; on CPU at most ``_CPU_TILE_BYTES`` so
    that a tile's gather, subtraction, squaring and summation passes stay in the core's cache."""
    return budget_bytes // 3 if device.type == "cuda" else min(budget_bytes // 3, _CPU_TILE_BYTES)


def _block_size_from_budget(n, n_candidates, budget_bytes) -> int:
    """Rows per block so that the block's search working set fits ``budget_bytes``.

    Per query row: approx distances (4N) + topk scratch (~8N) + candidate distances (8·m). The exact step
    works in separate, bounded tiles (``_tile_bytes``).
    """
    per_row = 12 * n + 8 * n_candidates + 64
    return int(max(1, min(n, budget_bytes // per_row)))


def _run_single_threaded_workers(fn, items, workers):
    """``fn(item)`` for every item on ``workers`` Python threads, each running torch single-threaded.

    On a CPU the blocks are independent, so one block per core (GEMM, top-k and exact step each on one
    thread, the GIL released inside torch) beats torch's intra-op parallelism: no fork/join barrier per
    small operation, and a core taken by another process only slows its own block instead of stalling
    every operation. torch's thread count is restored afterwards.
    """
    saved = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for future in [pool.submit(fn, item) for item in items]:
                future.result()
    finally:
        torch.set_num_threads(saved)


def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _highest_float32_matmul_precision:
    """Force true float32 matmul (no TF32/bf16) while searching: the error bound E assumes it."""

    def __enter__(self):
        self._saved = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32)
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc):
        torch.set_float32_matmul_precision(self._saved[0])
        torch.backends.cuda.matmul.allow_tf32 = self._saved[1]
        return False
