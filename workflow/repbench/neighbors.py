"""Exact, blocked k-nearest-neighbour graphs (pure functions on arrays, no file I/O).

Contract (see docs/design.md, "Neighbor graph"): for every sample i the ``kmax`` nearest other samples (self excluded),
sorted by ascending distance, ties broken by lower index; ``indices`` int32 ``(N, kmax)``, ``distances``
float32 ``(N, kmax)``. Any ``k <= kmax`` is a prefix.

Spaces
    cosine     d(i, j) = 1 - x̂ᵢ·x̂ⱼ  with x̂ = x/‖x‖ (zero rows are an error), evaluated in float64 as the
               algebraically identical ½‖x̂ᵢ - x̂ⱼ‖² (no cancellation; exact duplicates give exactly 0).
    euclidean  d(i, j) = ‖xᵢ - xⱼ‖ (not squared), evaluated in float64 from the difference vector.

Algorithm (memory bounded by the budget plus O(N·m), never N×N)
    1. approximate distances d̃ with float32 matrix products (torch; CUDA when asked or available), self set
       to +inf. E is a rigorous bound on |d̃ − d| (worst-case float32 dot-product error (D + c)·u, u = 2⁻²⁴,
       see ``_prepare_space``); every step below uses only |d̃ − d| ≤ E, never which product gave d̃;
    2. take the m = kmax + margin smallest d̃ of each row as candidates; let t = the kmax-th smallest d̃.
       The true kmax-th distance is ≤ t + E, so every true neighbour j has d̃ⱼ ≤ t + 2E;
    3. if fewer than m candidates have d̃ ≤ t + 2E, every true neighbour is among them (all other points have
       d̃ ≥ the m-th candidate's > t + 2E): recompute only those candidates' distances exactly in float64 from
       the vectors and sort by (distance, index). Otherwise ("saturated": ties, near-duplicates, very dense
       data) the row's full d̃ is recomputed and every point whose d̃ ≤ t + 2E becomes a candidate, which is
       exact by the same argument.
    Steps 2-3 depend on the candidates only through the multiset of the m smallest d̃ (t, the saturation
    test) and, for non-saturated rows, the set {j : d̃ⱼ ≤ t + 2E} — both independent of which of several
    equal d̃ at the m-th place were kept. The result therefore equals a float64 brute force
    (``brute_force_knn``) that sorts the same float64 distances by (distance, index). Exact distances use only
    correctly rounded elementwise operations in a fixed order, so they are bitwise identical on CPU and CUDA.

Two ways to run step 1-2, with the same result
    row blocks (CUDA; CPU for N ≲ 6000): per block of B query rows one (B × N) GEMM and ``torch.topk``.
    symmetric tiles (CPU): d̃ is symmetric, so the N points are cut into nb blocks of S rows and each tile
       (I, J), I ≤ J, is computed once (one S×S GEMM: N²·D instead of 2·N²·D flops). First every diagonal
       tile gives its rows' m smallest d̃ (``torch.topk``) and thereby an upper bound τ₀ ≥ the row's m-th
       smallest d̃. Then each worker takes off-diagonal tiles and keeps, per row, its own list of the m
       smallest d̃ it saw: tile entries that are ≤ τ₀ and < the list's current m-th value are merged into
       rows I and, transposed, rows J. Skipped entries cannot be among a row's m smallest (or equal ones are
       already represented m times), so the m smallest of all lists, merged per block of rows, have the
       multiset of values of the full row's m smallest d̃, which is all steps 2-3 need. Saturated rows
       recompute their full d̃ row as in the row blocks.

Complexity: O(N²·D) float32 flops (halved by the symmetric tiles) + O(N·(kmax + a few)·D) float64 for the
exact re-ranking; memory ≈ ``budget_bytes`` (default 256 MB) for the working set of the blocks or tiles in
flight, plus O(N·m) for the candidate lists (12·N·m bytes per CPU worker and once more for the diagonal
lists), plus the input in float32 and float64 (float32 only, for Euclidean input that float32 represents
exactly) on the device. On CPU the blocks and tiles run on ``torch.get_num_threads()`` single-threaded workers
and the exact step works in cache-sized tiles; none of this changes any result (each row's answer does not
depend on its block, its tiles or their order).
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

SPACES = ("cosine", "euclidean")
DEFAULT_BUDGET_BYTES = 256 * 2**20
_FLOAT32_UNIT_ROUNDOFF = 2.0**-24
_CPU_TILE_BYTES = 2 * 2**20
_SYMMETRIC_MIN_SIDE = 768


def knn(X, kmax: int, space: str = "cosine", block_size: int | None = None, device=None,
        budget_bytes: int = DEFAULT_BUDGET_BYTES):
    """Exact k nearest neighbours of every row of ``X`` among the other rows.

    Parameters
    ----------
    X : array_like (N, D), finite real values.
    kmax : number of neighbours, 1 ≤ kmax < N.
    space : ``"cosine"`` (d = 1 - x̂ᵢ·x̂ⱼ) or ``"euclidean"`` (d = ‖xᵢ - xⱼ‖).
    block_size : query rows per block (the tile side S for the symmetric CPU tiles, which an explicit value
        selects); default from ``budget_bytes``.
    device : torch device for the float32 candidate search; default CUDA when available, else CPU (torch's
        intra-op threads).
    budget_bytes : working-memory budget for the blocks or tiles in flight (default 256 MB).

    Returns
    -------
    indices : int32 (N, kmax), neighbours by ascending distance, ties by lower index, self excluded.
    distances : float32 (N, kmax), the float64 distances rounded to float32.

    Complexity O(N²·D) time, O(block_size·N + N·(D + kmax)) memory. Raises ValueError for kmax ≥ N, kmax < 1,
    non-finite input, zero rows in cosine space or an unknown space.
    """
    X64 = _validated_matrix(X, kmax, space)
    n = X64.shape[0]
    device = _resolve_device(device)
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be ≥ 1, got {block_size}")
    margin = max(16, kmax // 4)
    exact_points, search_points, search_sq_norms, error_bound = _prepare_space(X64, space)
    problem = _Problem(
        exact=torch.from_numpy(_narrowest_exact(exact_points)).to(device),
        search=torch.from_numpy(search_points.astype(np.float32)).to(device),
        sq_norms=None if search_sq_norms is None else torch.from_numpy(search_sq_norms.astype(np.float32)).to(device),
        space=space, kmax=kmax, n_candidates=min(kmax + margin, n - 1), error_bound=error_bound)
    # the problem holds what the search needs (float32 copies where exact); the float64 input and search points
    # are not kept through the search (N·D·16 bytes at most)
    del X64, exact_points, search_points, search_sq_norms
    with _highest_float32_matmul_precision():
        if _use_symmetric_tiles(n, device, block_size, budget_bytes):
            return _knn_symmetric_tiles(problem, block_size, budget_bytes)
        return _knn_row_blocks(problem, block_size, budget_bytes)


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


def _narrowest_exact(points: np.ndarray) -> np.ndarray:
    """``points`` as float32 when that is exact (e.g. float32 input in Euclidean space), else float64."""
    narrow = points.astype(np.float32)
    return narrow if np.array_equal(narrow, points) else points


def _unit_rows(X64: np.ndarray) -> np.ndarray:
    """x̂ = x / ‖x‖ in float64 (rows pre-scaled by their max |x| so the norm cannot overflow)."""
    peak = np.maximum(X64.max(axis=1, keepdims=True), -X64.min(axis=1, keepdims=True))  # max |x|, no |X| copy
    scaled = X64 / peak
    scaled /= np.linalg.norm(scaled, axis=1, keepdims=True)
    return scaled


def _exact_distances_t(queries: torch.Tensor, points: torch.Tensor, space: str) -> torch.Tensor:
    """Float64 distances between queries (B, D) and their own candidate rows (B, C, D) -> (B, C).

    Only correctly rounded elementwise operations in a fixed order are used, so the value of a pair is
    bitwise the same on every device, in every call and for every batch shape (deterministic tie-breaking).
    """
    return _distances_from_differences(points - queries[:, None, :], space)


def _distances_from_differences(diff: torch.Tensor, space: str) -> torch.Tensor:
    """(…, D) float64 differences xⱼ - xᵢ (overwritten) -> (…,) distances: ½Σdiff² (cosine) or √Σdiff²."""
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
    search = centred
    search /= scale  # in place: one N×D float64 copy of the input, not two
    sq_norms = np.einsum("ij,ij->i", search, search)
    return X64, search, sq_norms, (2 * d + 24) * u / (1 - (d + 8) * u) + slack


class _Problem(NamedTuple):
    """One k-NN problem: float64 points for the exact step, float32 search points (and their squared norms,
    Euclidean only), the space, kmax, the number m of candidates per row and the search's error bound E."""
    exact: torch.Tensor
    search: torch.Tensor
    sq_norms: torch.Tensor | None
    space: str
    kmax: int
    n_candidates: int
    error_bound: float


def _use_symmetric_tiles(n, device, block_size, budget_bytes) -> bool:
    """Symmetric tiles on CPU, for an explicit ``block_size`` or once the default tile side reaches
    ``_SYMMETRIC_MIN_SIDE`` (N ≳ 6000; below, per-tile overheads outweigh the halved GEMM); row blocks on CUDA."""
    if device.type != "cpu":
        return False
    workers = torch.get_num_threads()
    worker_budget = max(1, budget_bytes // workers)
    side = _tile_side_from_budget(n, worker_budget - _tile_bytes(device, worker_budget))
    return block_size is not None or side >= _SYMMETRIC_MIN_SIDE


def _knn_row_blocks(problem: _Problem, block_size, budget_bytes):
    """Steps 1-3 per block of query rows against all N points (CUDA; on CPU the reference for the tiles)."""
    n = problem.exact.shape[0]
    device = problem.exact.device
    workers = torch.get_num_threads() if device.type == "cpu" else 1
    worker_budget = max(1, budget_bytes // workers)
    block_size = block_size or _rows_per_block(n, problem.n_candidates, device, worker_budget, workers)
    return _blocks_to_arrays(
        lambda rows: _knn_block(rows, problem, worker_budget), n, problem.kmax, block_size, device, workers)


def _knn_symmetric_tiles(problem: _Problem, block_size, budget_bytes):
    """CPU: step 1 once per unordered pair of blocks (I ≤ J), then steps 2-3 per block of rows.

    Phase 1 (one task per block I): the diagonal tile (I, I) and its row-wise m smallest (d̃, j), which also
    give every row an upper bound τ₀ on its m-th smallest d̃. Phase 2 (one task per tile I < J): each worker
    merges the tile entries below its running thresholds into its own lists (``_scan_tiles``). Phase 3 (one
    task per block of rows): the m smallest of all lists (``_merge_best``), then ``_rerank``, which
    recomputes full approximate rows only for saturated rows.
    """
    n, m = problem.exact.shape[0], problem.n_candidates
    device = problem.exact.device
    workers = torch.get_num_threads()
    worker_budget = max(1, budget_bytes // workers)
    side = block_size or _tile_side_from_budget(n, worker_budget - _tile_bytes(device, worker_budget))
    starts = range(0, n, side)
    first = (torch.empty((n, m), dtype=torch.float32), torch.empty((n, m), dtype=torch.int64))

    def diagonal(start):
        rows = slice(start, min(start + side, n))
        tile = _approx_tile(rows, rows, problem.search, problem.sq_norms, problem.space)
        values, cand = _smallest(tile, m, start)
        first[0][rows], first[1][rows] = _pad_to(values, m, math.inf), _pad_to(cand, m, 0)

    _run_single_threaded_workers(diagonal, starts, workers)
    bound = _float32_above(first[0].max(dim=1).values)  # d̃ < bound ⇔ d̃ ≤ τ₀
    pairs = iter([(i, j) for a, i in enumerate(starts) for j in starts[a + 1:]])
    lock = threading.Lock()

    def next_pair():
        with lock:
            return next(pairs, None)

    lists = [first] + _run_single_threaded_workers(
        lambda _: _scan_tiles(next_pair, side, bound, problem), range(workers), workers)

    def run_rows(rows):
        values, cand = _merge_best([v[rows] for v, _ in lists], [c[rows] for _, c in lists], m, sorted=True)
        return _rerank(rows, values, cand, problem, worker_budget,
                       lambda sel: _approx_distances(rows[sel], problem.search, problem.sq_norms, problem.space))

    rows_per_block = _rows_per_block(n, m, device, worker_budget, workers)
    return _blocks_to_arrays(run_rows, n, problem.kmax, rows_per_block, device, workers)


def _blocks_to_arrays(run_rows, n, kmax, block_size, device, workers):
    """``run_rows(rows)`` -> (int32, float64) (B, kmax) for every block of ``block_size`` rows, on CPU workers."""
    indices = np.empty((n, kmax), dtype=np.int32)
    distances = np.empty((n, kmax), dtype=np.float32)

    def run_block(start):
        rows = torch.arange(start, min(start + block_size, n), device=device)
        idx, dist = run_rows(rows)
        indices[start:start + len(rows)] = idx.cpu().numpy()
        distances[start:start + len(rows)] = dist.to(torch.float32).cpu().numpy()

    starts = range(0, n, block_size)
    if workers > 1 and len(starts) > 1:
        _run_single_threaded_workers(run_block, starts, workers)
    else:
        for start in starts:
            run_block(start)
    return indices, distances


def _scan_tiles(next_pair, side, bound, problem: _Problem):
    """One worker's lists over the off-diagonal tiles it takes: float32 (N, m) d̃ and int64 (N, m) j, unsorted.

    Tile (I, J), I < J, holds d̃ between blocks I and J (``side`` rows each); d̃ is symmetric, so the tile
    serves rows I (columns J) and, transposed, rows J (columns I). Only entries below the row's threshold
    enter a list: min(``bound``, the list's current m-th value), strictly. Lists start as (+inf, 0)
    placeholders, which cannot survive the final merge (every row has N - 1 ≥ m finite d̃).
    """
    n, m = problem.search.shape[0], problem.n_candidates
    values = torch.full((n, m), math.inf, dtype=torch.float32)
    cand = torch.zeros((n, m), dtype=torch.int64)
    threshold = bound.clone()
    while (pair := next_pair()) is not None:
        i0, j0 = pair
        rows_i, rows_j = slice(i0, min(i0 + side, n)), slice(j0, min(j0 + side, n))
        tile = _approx_tile(rows_i, rows_j, problem.search, problem.sq_norms, problem.space)
        hit_i, hit_j = torch.nonzero(tile < threshold[rows_i, None], as_tuple=True)
        hits = (hit_i + i0, hit_j + j0, tile[hit_i, hit_j])
        hit_i, hit_j = torch.nonzero(tile < threshold[None, rows_j], as_tuple=True)
        _merge_hits(values, cand, threshold, *hits, m)
        _merge_hits(values, cand, threshold, hit_j + j0, hit_i + i0, tile[hit_i, hit_j], m)
    return values, cand


def _merge_hits(values, cand, threshold, rows, cols, hit_values, m):
    """Merge the entries (rows, cols, hit_values) into the lists of their rows and lower those rows' thresholds
    to the new m-th value of their list."""
    if rows.numel() == 0:
        return
    rows, order = torch.sort(rows, stable=True)
    cols, hit_values = cols[order], hit_values[order]
    hit_rows, counts = torch.unique_consecutive(rows, return_counts=True)
    slot = torch.repeat_interleave(torch.arange(len(hit_rows)), counts)
    offset = torch.arange(len(rows)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    new_values = torch.full((len(hit_rows), int(counts.max())), math.inf, dtype=torch.float32)
    new_cand = torch.zeros(new_values.shape, dtype=torch.int64)
    new_values[slot, offset], new_cand[slot, offset] = hit_values, cols
    best, best_cand = _merge_best([values[hit_rows], new_values], [cand[hit_rows], new_cand], m)
    values[hit_rows], cand[hit_rows] = best, best_cand
    threshold[hit_rows] = torch.minimum(threshold[hit_rows], best.max(dim=1).values)


def _smallest(tile, m, col0):
    """Each row's min(m, width) smallest entries of ``tile`` and their columns (+ col0), unsorted."""
    values, cols = torch.topk(tile, min(m, tile.shape[1]), dim=1, largest=False, sorted=False)
    return values, cols.add_(col0)


def _pad_to(t, width, fill):
    """``t`` (B, w) padded on the right with ``fill`` to (B, width)."""
    return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=fill) if t.shape[1] < width else t


def _merge_best(values, cand, m, sorted=False):
    """The m smallest values (and their candidates) of the concatenated lists, per row.

    Exact for the multiset of values: the m smallest of A ∪ B lie among the m smallest of A and of B. Among
    equal values at the m-th place the kept candidates are arbitrary; ``_rerank`` does not depend on them.
    """
    values, cand = torch.cat(values, dim=1), torch.cat(cand, dim=1)
    best, pos = torch.topk(values, m, dim=1, largest=False, sorted=sorted)
    return best, cand.gather(1, pos)


def _approx_tile(rows: slice, cols: slice, search_t, sq_norms_t, space) -> torch.Tensor:
    """Float32 (|rows|, |cols|) approximate distances in search units; self = +inf on a diagonal tile."""
    queries, points = search_t[rows], search_t[cols]
    if space == "cosine":
        approx = torch.addmm(search_t.new_ones(()), queries, points.T, alpha=-1.0)
    else:
        approx = torch.addmm(sq_norms_t[None, cols], queries, points.T, alpha=-2.0)
        approx += sq_norms_t[rows][:, None]
        approx.clamp_(min=0.0)
    if rows == cols:
        approx.fill_diagonal_(math.inf)
    return approx


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


def _knn_block(rows, problem: _Problem, budget_bytes):
    """Exact (int32 indices, float64 distances) (B, kmax) for one block of query rows (steps 1-3 above)."""
    approx = _approx_distances(rows, problem.search, problem.sq_norms, problem.space)
    approx_cand, cand = torch.topk(approx, problem.n_candidates, dim=1, largest=False, sorted=True)
    return _rerank(rows, approx_cand, cand, problem, budget_bytes, lambda sel: approx[sel])


def _rerank(rows, approx_cand, cand, problem: _Problem, budget_bytes, approx_rows):
    """Steps 2-3 for rows whose m smallest d̃ (ascending) and candidates are given: (int32, float64) (B, kmax).

    Depends on the candidates only through the values ``approx_cand`` and the set {j : d̃ⱼ ≤ t + 2E} of
    non-saturated rows, so any choice among tied d̃ gives the same result. ``approx_rows(sel)`` returns the
    full approximate rows (B', N) of ``rows[sel]`` for the saturated ones.
    """
    n, kmax, m = problem.exact.shape[0], problem.kmax, problem.n_candidates
    cutoff = _float32_at_least(approx_cand[:, kmax - 1].to(torch.float64) + 2.0 * problem.error_bound)
    within = (approx_cand <= cutoff[:, None]).sum(dim=1)
    saturated = (within == m) & (m < n - 1)
    idx = torch.empty((len(rows), kmax), dtype=torch.int32, device=cand.device)
    dist = torch.empty((len(rows), kmax), dtype=torch.float64, device=cand.device)
    clear = torch.nonzero(~saturated).flatten()
    if clear.numel():
        width = int(within[clear].max())
        idx[clear], dist[clear] = _exact_top_k(rows[clear], cand[clear, :width], problem.exact, problem.space,
                                               kmax, budget_bytes)
    crowded = torch.nonzero(saturated).flatten()
    if crowded.numel():
        sub = approx_rows(crowded)
        width = min(max(int((sub <= cutoff[crowded, None]).sum(dim=1).max()), kmax), n - 1)
        _, wide = torch.topk(sub, width, dim=1, largest=False, sorted=False)
        idx[crowded], dist[crowded] = _exact_top_k(rows[crowded], wide, problem.exact, problem.space, kmax,
                                                   budget_bytes)
    return idx, dist


def _float32_above(values: torch.Tensor) -> torch.Tensor:
    """The next float32 above each float32 value (+inf stays), so `x < result` equals `x <= value`."""
    return torch.nextafter(values, torch.full_like(values, math.inf))


def _float32_at_least(values: torch.Tensor) -> torch.Tensor:
    """The smallest float32 ≥ each float64 value, so float32 comparisons `x <= result` equal `x <= value`."""
    rounded = values.to(torch.float32)
    below = rounded.to(torch.float64) < values
    return torch.where(below, torch.nextafter(rounded, torch.full_like(rounded, math.inf)), rounded)


def _exact_top_k(rows, cand, exact_t, space, kmax, budget_bytes):
    """Exact top-kmax of each row among its candidate columns: (int32 indices, float64 distances) (B, kmax).

    Distances of all (row, candidate) pairs are computed in float64 tiles whose (rows × cols × D) working set
    is bounded (≤ 2 MB on CPU, plus a float32 staging half as large when ``exact_t`` is float32; a third of
    the budget on CUDA), then sorted once by (distance, index). float32 points are gathered as float32 and
    widened exactly inside the float64 subtraction (half the memory traffic, the same values).
    """
    b, c = cand.shape
    d = exact_t.shape[1]
    tile_bytes = _tile_bytes(cand.device, budget_bytes)
    tile_elems = max(d, tile_bytes // 8)
    col_chunk = max(1, min(c, tile_elems // d))
    row_chunk = max(1, min(b, tile_elems // (col_chunk * d)))
    queries = torch.index_select(exact_t, 0, rows).to(torch.float64)
    dist = torch.empty((b, c), dtype=torch.float64, device=cand.device)
    work = torch.empty(row_chunk * col_chunk * d, dtype=torch.float64, device=cand.device)
    staging = work if exact_t.dtype == torch.float64 else torch.empty(work.shape, dtype=exact_t.dtype,
                                                                       device=cand.device)
    for r0 in range(0, b, row_chunk):
        for c0 in range(0, c, col_chunk):
            tile = cand[r0:r0 + row_chunk, c0:c0 + col_chunk]
            points = staging[:tile.numel() * d].view(*tile.shape, d)
            torch.index_select(exact_t, 0, tile.reshape(-1), out=points.view(-1, d))
            diff = torch.sub(points, queries[r0:r0 + row_chunk, None, :], out=work[:points.numel()].view(points.shape))
            dist[r0:r0 + row_chunk, c0:c0 + col_chunk] = _distances_from_differences(diff, space)
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


def _rows_per_block(n, n_candidates, device, budget_bytes, workers) -> int:
    """Query rows per block of ``_knn_row_blocks`` / the re-ranking: the budget, and ≥ 4 blocks per CPU worker."""
    rows = _block_size_from_budget(n, n_candidates, budget_bytes - _tile_bytes(device, budget_bytes))
    return min(rows, max(64, -(-n // (4 * workers)))) if workers > 1 else rows


def _block_size_from_budget(n, n_candidates, budget_bytes) -> int:
    """Rows per block so that the block's search working set fits ``budget_bytes``.

    Per query row: approx distances (4N) + topk scratch (~8N) + candidate distances (8·m). The exact step
    works in separate, bounded tiles (``_tile_bytes``).
    """
    per_row = 12 * n + 8 * n_candidates + 64
    return int(max(1, min(n, budget_bytes // per_row)))


def _tile_side_from_budget(n, budget_bytes) -> int:
    """Block side S of the symmetric tiles: about ⌈N / 8⌉ (≥ 8 diagonal and 28 off-diagonal tiles to share
    among the workers), rounded up to a multiple of 256 (the float32 GEMM runs ~30% faster on such shapes
    than on e.g. 2500), and at most S_max, the largest multiple of 256 whose S×S float32 tile and masks
    (6·S² bytes, counted as 8·S²) fit the budget."""
    side = -(-n // 8)
    if side <= 256:
        return side
    largest = max(256, math.isqrt(max(1, budget_bytes // 8)) // 256 * 256)
    return min(-(-side // 256) * 256, largest)


def _run_single_threaded_workers(fn, items, workers) -> list:
    """``[fn(item) for item in items]``, run on ``workers`` Python threads, each running torch single-threaded.

    On a CPU the blocks are independent, so one block per core (GEMM, top-k and exact step each on one
    thread, the GIL released inside torch) beats torch's intra-op parallelism: no fork/join barrier per
    small operation, and a core taken by another process only slows its own block instead of stalling
    every operation. torch's thread count is restored afterwards.
    """
    saved = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            return [future.result() for future in [pool.submit(fn, item) for item in items]]
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
