"""Invariance of one layer to meaning-preserving perturbations: InfoNCE, LiDAR and DiME over augmented views.

Views: ``V`` of shape (N, K, D), ``V[i, k]`` the layer's (pooled) vector of view k of sample i (K ≥ 2). InfoNCE and
DiME compare views 0 and 1 (``A = V[:, 0]``, ``B = V[:, 1]``); LiDAR uses all K views.

- **infonce** (Oord et al. 2018, as the information-flow authors' 2025 code): rows of A and B L2-normalised
  (``normalize``), L = −(1/N) Σᵢ log softmaxⱼ(aᵢ·bⱼ/τ)ᵢ, temperature τ; reported as the mutual-information lower
  bound ``infonce = ln N − L`` (nats; ln N when every view finds its partner with certainty, ≈ 0 when views are
  independent of their sample) and ``infonce_normalized = 1 − L/ln N``.
- **lidar** (Thilak et al. 2023): Σ_b = (1/N) Σᵢ (μᵢ − μ)(μᵢ − μ)ᵀ, μᵢ = mean of sample i's views, μ their mean;
  Σ_w = (1/(N·K)) Σᵢₖ (vᵢₖ − μᵢ)(vᵢₖ − μᵢ)ᵀ + δI; M = Σ_w^{−½} Σ_b Σ_w^{−½}; with λ the eigenvalues of M (clipped
  at 0), pⱼ = λⱼ/Σλ + ε, ``lidar = exp(−Σⱼ pⱼ ln pⱼ)`` (an effective rank ≤ min(N − 1, D); δ = 10⁻⁴, ε = 10⁻⁷).
  ``lidar_entropy = S_α(M)/ln min(N, D)``, the form Skean et al. report.
- **dime** (Skean et al. 2023): rows of A and B centred over the samples and L2-normalised, K_A = A Aᵀ, K_B = B Bᵀ
  (N×N, unit diagonal); ``dime = (E_π S_α(K_A ∘ P_π K_B P_πᵀ) − S_α(K_A ∘ K_B)) / ln min(N, D)``, the expectation
  over ``dime_permutations`` seeded permutations π of the samples, ∘ the Hadamard product.

S_α(K) is the matrix-based Rényi entropy of a positive semi-definite K: pⱼ = λⱼ / Σλ over the positive
eigenvalues, S_α = ln(Σ pⱼ^α)/(1 − α), S₁ = −Σ pⱼ ln pⱼ.

Everything runs in float64 with torch, on the GPU when ``device`` is one (batched: one matrix product per metric,
one eigendecomposition per matrix), exactly on the CPU otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

METRICS = ("infonce", "infonce_normalized", "lidar", "lidar_entropy", "dime")
DEFAULTS = {"temperature": 0.1, "normalize": True, "alpha": 1.0, "lidar_delta": 1e-4, "lidar_eps": 1e-7,
            "dime_permutations": 10, "seed": 0}


def _torch(x, device=None):
    """``x`` as a float64 tensor (a tensor stays on its device unless ``device`` is given)."""
    import torch

    if torch.is_tensor(x):
        return x.to(device=device or x.device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device or "cpu")


def _unit_rows(x):
    import torch

    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def grouped_views(x: np.ndarray, view_of, view) -> tuple[np.ndarray, list[str]]:
    """``(V (N, K, D), base ids)`` from the ``(N·K, D)`` rows of a views store and its ``view_of``/``view`` columns.

    Base samples keep their order of first appearance; every base sample must have views 0 … K − 1 exactly once.
    """
    view_of = [str(v) for v in view_of]
    view = np.asarray(view, dtype=np.int64)
    bases = list(dict.fromkeys(view_of))
    n_views = int(view.max()) + 1 if len(view) else 0
    if n_views < 2:
        raise ValueError(f"invariance needs at least 2 views per sample, the store has {n_views}")
    position = {b: i for i, b in enumerate(bases)}
    rows = np.full((len(bases), n_views), -1, dtype=np.int64)
    for r, (b, k) in enumerate(zip(view_of, view)):
        if rows[position[b], k] != -1:
            raise ValueError(f"sample {b!r} has view {k} twice")
        rows[position[b], k] = r
    missing = np.argwhere(rows < 0)
    if len(missing):
        i, k = missing[0]
        raise ValueError(f"sample {bases[i]!r} lacks view {k} (every sample needs views 0..{n_views - 1})")
    return np.asarray(x)[rows], bases


def matrix_entropy(K, alpha: float = 1.0) -> float:
    """S_α(K): Rényi entropy of the normalised positive eigenvalues of the PSD matrix K (nats)."""
    import torch

    lam = torch.linalg.eigvalsh(K)
    return _entropy_of(lam[lam > 0], alpha)


def _entropy_of(lam, alpha: float) -> float:
    import torch

    p = lam / lam.sum()
    if alpha == 1:
        return float(-(p * torch.log(p)).sum())
    return float(torch.log((p ** alpha).sum()) / (1 - alpha))


def infonce_loss(a, b, temperature: float = 0.1, normalize: bool = True) -> float:
    """L = −(1/N) Σᵢ log softmaxⱼ(aᵢ·bⱼ/τ)ᵢ (rows L2-normalised first when ``normalize``)."""
    import torch

    a, b = _torch(a), _torch(b)
    if normalize:
        a, b = _unit_rows(a), _unit_rows(b)
    logits = a @ b.T / temperature
    return float((torch.logsumexp(logits, dim=1) - torch.diagonal(logits)).mean())


def nt_xent_loss(a, b, temperature: float = 0.1) -> float:
    """The information-flow authors' 2024 form (SimCLR NT-Xent over the 2N views, rows as given): for each of the
    2N rows z, −log(exp(z·z⁺/τ) / Σ_{z′ ≠ z} exp(z·z′/τ)), averaged. Kept to compare with their code; the workflow
    reports :func:`infonce_loss`."""
    import torch

    z = torch.cat([_torch(a), _torch(b)])
    n = len(z) // 2
    logits = z @ z.T / temperature
    logits.fill_diagonal_(-math.inf)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return float((torch.logsumexp(logits, dim=1) - logits[torch.arange(2 * n), partner]).mean())


def lda_matrix(views, delta: float = 1e-4):
    """M = Σ_w^{−½} Σ_b Σ_w^{−½} of views (N, K, D) (the LiDAR matrix; see the module doc)."""
    import torch

    v = _torch(views)
    n, k, d = v.shape
    means = v.mean(dim=1)
    between = means - means.mean(dim=0)
    within = (v - means[:, None, :]).reshape(n * k, d)
    s_b = between.T @ between / n
    s_w = within.T @ within / (n * k) + delta * torch.eye(d, dtype=v.dtype, device=v.device)
    lam, vec = torch.linalg.eigh(s_w)
    inv_sqrt = (vec * lam.rsqrt()) @ vec.T
    m = inv_sqrt @ s_b @ inv_sqrt
    return (m + m.T) / 2


def lidar(views, delta: float = 1e-4, eps: float = 1e-7) -> float:
    """Thilak et al.'s LiDAR: exp of the Shannon entropy of M's eigenvalue distribution (+ ε), see the module doc."""
    import torch

    lam = torch.linalg.eigvalsh(lda_matrix(views, delta)).clamp_min(0)
    p = lam / lam.sum() + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def lidar_entropy(views, alpha: float = 1.0, delta: float = 1e-4) -> float:
    """S_α(M)/ln min(N, D) (Skean et al.'s LiDAR)."""
    n, _, d = tuple(views.shape)
    return matrix_entropy(lda_matrix(views, delta), alpha) / math.log(min(n, d))


def _normalised_gram(x):
    x = x - x.mean(dim=0)
    x = _unit_rows(x)
    return x @ x.T


def dime(a, b, alpha: float = 1.0, n_permutations: int = 10, seed: int = 0) -> float:
    """DiME of views A and B (N, D): :func:`dime_from_grams` of their centred, row-normalised Grams."""
    a, b = _torch(a), _torch(b)
    rng = np.random.default_rng(seed)
    permutations = [rng.permutation(len(a)) for _ in range(n_permutations)]
    return dime_from_grams(_normalised_gram(a), _normalised_gram(b), a.shape[1], alpha, permutations)


def dime_from_grams(k_a, k_b, n_features: int, alpha: float, permutations) -> float:
    """(mean over π of S_α(K_A ∘ P_π K_B P_πᵀ) − S_α(K_A ∘ K_B)) / ln min(N, D) for the given permutations (index
    arrays; (P_π K P_πᵀ)ᵢⱼ = K[π(i), π(j)])."""
    import torch

    k_a, k_b = _torch(k_a), _torch(k_b)
    joint = matrix_entropy(k_a * k_b, alpha)
    permuted = []
    for p in permutations:
        p = torch.as_tensor(np.asarray(p), device=k_b.device)
        permuted.append(matrix_entropy(k_a * k_b[p][:, p], alpha))
    return (float(np.mean(permuted)) - joint) / math.log(min(len(k_a), n_features))


def layer_metrics(views: np.ndarray, params: Mapping | None = None, device: str = "cpu") -> list[dict]:
    """Rows ``{metric, value, n_samples, n_views}`` of one layer's views (N, K, D)."""
    p = dict(DEFAULTS, **(params or {}))
    v = _torch(views, device)
    n, k, d = v.shape
    if n < 2:
        raise ValueError(f"invariance needs at least 2 samples, got {n}")
    if not bool(v.isfinite().all()):
        raise ValueError("non-finite values in the views")
    loss = infonce_loss(v[:, 0], v[:, 1], p["temperature"], p["normalize"])
    values = {
        "infonce": math.log(n) - loss,
        "infonce_normalized": 1 - loss / math.log(n),
        "lidar": lidar(v, p["lidar_delta"], p["lidar_eps"]),
        "lidar_entropy": lidar_entropy(v, p["alpha"], p["lidar_delta"]),
        "dime": dime(v[:, 0], v[:, 1], p["alpha"], p["dime_permutations"], p["seed"]),
    }
    return [{"metric": m, "value": values[m], "n_samples": n, "n_views": k} for m in METRICS]
