"""Neural collapse (Papyan, Han & Donoho 2020; Galanti, György & Hutter 2022) and concept directions of one layer.

X: (N, D) float, one layer; labels: (N,) integer class indices (encoded to 0..C−1 in ascending order); nᶜ, μᶜ:
size and mean of class c; μ = (1/C) Σᶜ μᶜ, the mean of the class means (the global mean of a class-balanced
set, as in Papyan et al., and ``MeanAccumulator.compute()``'s default in rhubarbwu/neural-collapse, so class
imbalance does not tilt the centre); M̃ = the (C, D) matrix of rows μᶜ − μ.

- nc1 = tr(Σ_W Σ_B⁺)/C, Σ_W = (1/N) Σᵢ (xᵢ − μ^{yᵢ})(xᵢ − μ^{yᵢ})ᵀ, Σ_B = (1/C) M̃ᵀM̃ (within-class variability
  relative to the between-class spread; → 0 under collapse). Σ_B has rank r ≤ C − 1, so with the thin SVD
  M̃ = U S Vᵀ, Σ_B⁺ = Σ_ρ (C/s_ρ²) v_ρ v_ρᵀ over the s_ρ² > D·ε·s₁² (the cut of ``torch.linalg.pinv`` on the D×D
  Σ_B) and tr(Σ_W Σ_B⁺) = Σ_ρ (C/s_ρ²) · (1/N) Σᵢ ((xᵢ − μ^{yᵢ})·v_ρ)²: O(N·D·C + C²·D), never a D×D matrix.
- nc2_equinorm = std_c ‖μᶜ − μ‖ / mean_c ‖μᶜ − μ‖ (population std); nc2_equiangularity = std over pairs c ≠ c′ of
  cos(μᶜ − μ, μ^{c′} − μ); nc2_max_angle = mean over c ≠ c′ of |cos(μᶜ − μ, μ^{c′} − μ) + 1/(C − 1)|. All three
  are 0 for a simplex equiangular tight frame (every cosine −1/(C − 1)). O(C²·D).
- cdnv = mean over c < c′ of (Vᶜ + V^{c′}) / (2‖μᶜ − μ^{c′}‖²), Vᶜ = (1/nᶜ) Σ_{i∈c} ‖xᵢ − μᶜ‖² (Galanti et al.'s
  class-distance normalised variance); ∞ when two class means coincide. O(N·D + C²·D).

Concept directions (mass-mean directions, as in Marks & Tegmark 2023): for C = 2 one direction ``1_vs_0``,
u = (μ¹ − μ⁰)/‖μ¹ − μ⁰‖; for C > 2 one per class ``c_vs_rest``, u = (μᶜ − μ^{¬c})/‖·‖ with μ^{¬c} the mean of
every sample not in c. Its probe classifies x as the positive side iff (x − m)·u > 0, m = (μ⁺ + μ⁻)/2, with
the means refitted on the training folds of a stratified k-fold split (seeded) and scored on the held-out fold;
``direction_accuracy`` is the balanced accuracy (mean of the two sides' recalls; chance 0.5) over all
held-out predictions. :func:`direction_cosines` compares the directions of the layers of two models that
share a space.

Metrics that need a within-class spread (nc1, cdnv, the probe) refuse classes with fewer than 2 members.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .clusters import centroid_squared_distances, class_means, features_and_codes

DEFAULT_FOLDS = 5
METRICS = ("nc1", "nc2_equinorm", "nc2_equiangularity", "nc2_max_angle", "cdnv", "direction_accuracy")


def validated(X, labels, min_members: int = 2, what: str = "neural collapse") -> tuple[np.ndarray, ...]:
    """(X float64 (N, D), codes (N,), counts (C,)) after checking ≥ 2 classes of ≥ ``min_members`` each."""
    X, codes, counts = features_and_codes(X, labels)
    if len(counts) < 2:
        raise ValueError(f"{what} needs at least 2 classes, got {len(counts)}")
    small = np.flatnonzero(counts < min_members)
    if len(small):
        names = np.unique(np.asarray(labels))[small]
        raise ValueError(f"{what} needs at least {min_members} samples per class; class(es) "
                         f"{', '.join(str(v) for v in names)} have {', '.join(str(v) for v in counts[small])}")
    return X, codes, counts


def centred_means(X: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class means (C, D), M̃ = class means − their mean (C, D))."""
    means = class_means(X, codes, counts)
    return means, means - means.mean(axis=0)


def nc1(X, labels) -> float:
    """tr(Σ_W Σ_B⁺)/C computed in the span of the centred class means (see the module docstring)."""
    X, codes, counts = validated(X, labels, what="nc1")
    c, d = len(counts), X.shape[1]
    means, centred = centred_means(X, codes, counts)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    keep = s**2 > max(d, c) * np.finfo(np.float64).eps * s[0] ** 2 if s[0] > 0 else np.zeros(len(s), bool)
    if not keep.any():
        return np.inf  # every class mean coincides: no between-class spread
    projected = (X - means[codes]) @ vt[keep].T  # (N, r)
    within_along = (projected**2).mean(axis=0)  # v_ρᵀ Σ_W v_ρ
    return float((within_along * c / s[keep] ** 2).sum() / c)


def _mean_cosines(centred: np.ndarray) -> np.ndarray:
    """Cosines of the pairs c ≠ c′ of centred class means (C(C−1),), each unordered pair twice."""
    norms = np.linalg.norm(centred, axis=1)
    if (norms == 0).any():
        raise ValueError("nc2: a class mean equals the mean of the class means; its angle is undefined")
    unit = centred / norms[:, None]
    gram = unit @ unit.T
    return gram[~np.eye(len(centred), dtype=bool)]


def nc2(X, labels) -> dict[str, float]:
    """``{"nc2_equinorm", "nc2_equiangularity", "nc2_max_angle"}`` of the centred class means."""
    X, codes, counts = validated(X, labels, min_members=1, what="nc2")
    _, centred = centred_means(X, codes, counts)
    norms = np.linalg.norm(centred, axis=1)
    cosines = _mean_cosines(centred)
    c = len(counts)
    return {"nc2_equinorm": float(norms.std() / norms.mean()),
            "nc2_equiangularity": float(cosines.std()),
            "nc2_max_angle": float(np.abs(cosines + 1.0 / (c - 1)).mean())}


def cdnv(X, labels) -> float:
    """Mean over class pairs of (Vᶜ + V^{c′}) / (2‖μᶜ − μ^{c′}‖²); ∞ when two class means coincide."""
    X, codes, counts = validated(X, labels, what="cdnv")
    means = class_means(X, codes, counts)
    variances = np.zeros(len(counts))
    np.add.at(variances, codes, ((X - means[codes]) ** 2).sum(axis=1))
    variances /= counts
    upper = np.triu_indices(len(counts), k=1)
    gaps = centroid_squared_distances(means)[upper]
    if (gaps == 0).any():
        return np.inf
    return float(((variances[:, None] + variances[None, :])[upper] / (2.0 * gaps)).mean())


# --------------------------------------------------------------------------------------------------------
# Concept directions
# --------------------------------------------------------------------------------------------------------


def direction_names(labels) -> list[str]:
    """``["1_vs_0"]`` for two classes (label values), else ``["c_vs_rest", ...]`` per class in ascending order."""
    classes = np.unique(np.asarray(labels))
    if len(classes) == 2:
        return [f"{classes[1]}_vs_{classes[0]}"]
    return [f"{c}_vs_rest" for c in classes]


def _sides(codes: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Per direction, the boolean (N,) mask of its positive side."""
    if n_classes == 2:
        return [codes == 1]
    return [codes == c for c in range(n_classes)]


def _mass_mean(X: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(μ⁺ − μ⁻, (μ⁺ + μ⁻)/2) of the two sides of ``positive``."""
    mean_pos, mean_neg = X[positive].mean(axis=0), X[~positive].mean(axis=0)
    return mean_pos - mean_neg, 0.5 * (mean_pos + mean_neg)


def concept_directions(X, labels) -> tuple[list[str], np.ndarray]:
    """(names, unit directions (n_directions, D)): μ¹ − μ⁰ for 2 classes, μᶜ − μ^{¬c} per class otherwise,
    normalised. Raises ``ValueError`` when a difference is 0 (the direction is undefined)."""
    X, codes, counts = validated(X, labels, min_members=1, what="concept directions")
    names = direction_names(labels)
    directions = np.stack([_mass_mean(X, side)[0] for side in _sides(codes, len(counts))])
    norms = np.linalg.norm(directions, axis=1)
    if (norms == 0).any():
        raise ValueError(f"concept direction {names[int(np.argmin(norms))]}: the two means coincide")
    return names, directions / norms[:, None]


def stratified_folds(codes: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number (N,) of every sample: each class's members, in an order shuffled by
    ``np.random.default_rng(seed)``, are dealt to folds 0, 1, …, n_folds − 1, 0, 1, … so every fold holds
    ⌊nᶜ/k⌋ or ⌈nᶜ/k⌉ members of class c."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(codes), dtype=np.int64)
    for c in range(int(codes.max()) + 1):
        members = rng.permutation(np.flatnonzero(codes == c))
        folds[members] = np.arange(len(members)) % n_folds
    return folds


def concept_directions_by_layer(layers, labels) -> tuple[list[str], np.ndarray]:
    """(names, (L, n_directions, D) unit directions) of every layer of ``layers`` (L, N, D), as the activation
    store holds one pooling; layer by layer, so a lazily loaded array is read one layer at a time."""
    names, per_layer = None, []
    for layer in range(len(layers)):
        names, directions = concept_directions(np.asarray(layers[layer]), labels)
        per_layer.append(directions)
    if not per_layer:
        raise ValueError("concept directions: no layers given")
    return names, np.stack(per_layer)


def direction_accuracy(X, labels, n_folds: int = DEFAULT_FOLDS, seed: int = 0) -> np.ndarray:
    """Held-out balanced accuracy (n_directions,) of each mass-mean probe (see the module docstring): stratified
    ``n_folds``-fold split (:func:`stratified_folds`); per fold the means are fitted on the other folds. Needs
    every class to have at least ``n_folds`` samples."""
    if n_folds < 2:
        raise ValueError(f"direction_accuracy needs n_folds ≥ 2, got {n_folds}")
    X, codes, counts = validated(X, labels, min_members=n_folds, what=f"direction_accuracy ({n_folds} folds)")
    c = len(counts)
    sides = _sides(codes, c)
    predicted = np.zeros((len(sides), len(codes)), dtype=bool)
    folds = stratified_folds(codes, n_folds, seed)
    for fold in range(n_folds):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        train_counts = np.bincount(codes[train], minlength=c)
        train_sums = class_means(X[train], codes[train], train_counts) * train_counts[:, None]
        if c == 2:
            positive, negative = train_sums[1:] / train_counts[1], train_sums[:1] / train_counts[0]
        else:  # class c against the rest: the rest's mean from the total minus the class's sum
            positive = train_sums / train_counts[:, None]
            negative = (train_sums.sum(axis=0) - train_sums) / (len(train) - train_counts)[:, None]
        directions, midpoints = positive - negative, 0.5 * (positive + negative)
        scores = X[test] @ directions.T - np.einsum("kd,kd->k", midpoints, directions)  # (x − m)·u
        predicted[:, test] = scores.T > 0
    return np.array([0.5 * (predicted[d][side].mean() + (~predicted[d][~side]).mean())
                     for d, side in enumerate(sides)])


def direction_cosines(dirs_a, dirs_b) -> np.ndarray:
    """Cosines (La, Lb) between the per-layer directions of one concept in two models of the same width:
    ``dirs_a`` (La, D), ``dirs_b`` (Lb, D). Only meaningful when the two models share a space (the same
    model at two checkpoints, a fine-tune of it); the diagonal of a same-depth pair is the matched-layer cosine."""
    a, b = np.asarray(dirs_a, dtype=np.float64), np.asarray(dirs_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"direction_cosines: expected (layers, width) arrays, got {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"direction_cosines: widths differ ({a.shape[1]} vs {b.shape[1]}); the models do not "
                         "share a space")
    norms_a, norms_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if (norms_a == 0).any() or (norms_b == 0).any():
        raise ValueError("direction_cosines: a direction is the zero vector")
    return (a / norms_a[:, None]) @ (b / norms_b[:, None]).T


# --------------------------------------------------------------------------------------------------------
# One layer
# --------------------------------------------------------------------------------------------------------


def layer_metrics(X, labels, params: Mapping | None = None, graph=None) -> list[dict]:
    """Tidy rows ``{"metric", "value", ...}`` of one layer: nc1, the three nc2, cdnv and one
    ``direction_accuracy`` row per concept direction (column ``concept`` = its name). ``params``:
    ``probe_folds`` (default 5) and ``seed`` (default 0). ``graph`` is unused (uniform family signature).
    The directions themselves come from :func:`concept_directions`."""
    params = dict(params or {})
    n_folds = int(params.get("probe_folds", DEFAULT_FOLDS))
    seed = int(params.get("seed", 0))
    X, codes, _ = validated(X, labels)
    rows = [{"metric": "nc1", "value": nc1(X, codes)}]
    rows += [{"metric": name, "value": value} for name, value in nc2(X, codes).items()]
    rows.append({"metric": "cdnv", "value": cdnv(X, codes)})
    accuracies = direction_accuracy(X, codes, n_folds, seed)
    rows += [{"metric": "direction_accuracy", "value": float(value), "concept": name}
             for name, value in zip(direction_names(labels), accuracies, strict=True)]
    return rows
