"""Layer-wise linear probes: cross-validated logistic (classes) and ridge (numeric targets) probes, a
label-permutation chance baseline, group-transfer splits and the concept depth of a model.

Classification probe (per layer X: (N, D), labels y: (N,) int class indices, K ≥ 2 classes):
features standardised with the mean and (population) standard deviation of the training fold only,
x̃ = (x − μ_train) / σ_train (σ = 1 where a feature is constant), then L2-penalised logistic regression fitted
with the same objective as scikit-learn's ``LogisticRegression(C=C, solver="lbfgs")``:

    K ≥ 3 (multinomial, W: (D, K), b: (K,)):  F(W, b) = C Σᵢ [log Σₖ exp(zᵢₖ) − z_{i,yᵢ}] + ½‖W‖²,  z = x̃W + b
    K = 2 (binomial,    w: (D,),   b: scalar): F(w, b) = C Σᵢ [log(1 + exp(zᵢ)) − yᵢ zᵢ] + ½‖w‖²,   z = x̃w + b

(intercept unpenalised, sum over the training rows). Default C = 1 (scikit-learn's default and the Concept Depth
protocol's). The solver minimises F / (C·n_train) (same minimiser) with a batched L-BFGS in torch: every
problem of a layer (all folds, the real and every permuted label vector) is one column block of a single
X @ [A₁ … A_P] matmul per evaluation, with its own L-BFGS history and backtracking (Armijo) line search; a
problem stops when max |∇(F / (C n))| ≤ ``tol`` (scikit-learn's ``gtol`` criterion) and is reported as
not converged after ``max_iter`` iterations. Standardisation is folded into the weights
(z = (x − μ)W/σ + b = x A + c with A = W/σ, c = b − μA), so the standardised copies of X are never stored;
X is centred once by its global mean so this folding loses no precision. Memory: X, the (N, P·K) logits and
P·(D+1)·K·(2m+3) parameters, never N×N.

Cross-validation: ``StratifiedKFold(n_folds, shuffle=True, random_state=seed)``; per fold accuracy, balanced
accuracy (mean per-class recall over the classes present in the test fold) and macro-F1 (mean per-class F1 over
the classes present in the test fold or predicted); mean and (population, ddof = 0) std over folds.

Chance baseline: ``n_permutations`` label vectors y∘π_r (π_r = ``default_rng(seed).permutation(N)`` drawn in
turn), each cross-validated exactly like y (stratified on the permuted labels, same seed); the chance accuracy is
the mean over folds per permutation; reported: mean and std (ddof = 0) over permutations.

Regression probe (numeric y): ridge regression, closed form on standardised features,
w = (X̃ᵀX̃ + αI)⁻¹ X̃ᵀ(y − ȳ), b = ȳ (α = 1 default, like ``sklearn.linear_model.Ridge()``), float64,
``KFold(n_folds, shuffle=True, random_state=seed)``, test R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ_test)² per fold;
mean/std over folds; permutation baseline of R² as above (one D×D factorisation per fold serves every label
vector).

Concept depth (Jin et al. 2024, "Exploring Concept Depth"): from per-layer accuracies acc(ℓ), ℓ = 0..L−1, the
first layer ℓ* with acc(ℓ*) ≥ threshold, and its relative depth ℓ*/(L−1); threshold = ``fraction``·max acc
(``rule="fraction"``, fraction = 0.9 default) or max acc − ``margin`` (``rule="margin"``, margin 0.01).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

CLASSIFICATION_METRICS = ("probe_accuracy", "probe_balanced_accuracy", "probe_macro_f1", "probe_chance_accuracy")
REGRESSION_METRICS = ("probe_r2", "probe_chance_r2")
TRANSFER_METRICS = ("probe_transfer_accuracy", "probe_transfer_balanced_accuracy", "probe_transfer_macro_f1",
                    "probe_transfer_r2")  # transfer_rows: a split by a sample column (classes; numeric target)
METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS + TRANSFER_METRICS

DEFAULTS = {"n_folds": 5, "n_permutations": 5, "seed": 0, "C": 1.0, "alpha": 1.0, "tol": 1e-4,
            "max_iter": 1000, "device": "cpu", "dtype": "float32"}


# ---------------------------------------------------------------------------------------------- validation
def check_features(X, name: str = "X") -> np.ndarray:
    """X as a 2-D array; raises ValueError naming the problem when X is not 2-D or holds non-finite values."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {X.shape}")
    if not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))
        raise ValueError(f"{name} holds {len(bad)} non-finite values (first at sample {bad[0][0]}, "
                         f"feature {bad[0][1]})")
    return X


def check_classes(y, n_samples: int, n_folds: int, context: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Encode y (N,) as 0..K−1 and return ``(codes, classes)``; raises ValueError with the counts when there are
    fewer than 2 classes or a class has fewer members than ``n_folds``."""
    y = np.asarray(y)
    where = f" in {context}" if context else ""
    if y.shape != (n_samples,):
        raise ValueError(f"labels{where} must have shape ({n_samples},), got {y.shape}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"labels{where} hold {int((~np.isfinite(y)).sum())} non-finite values")
    classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"a classification probe needs at least 2 classes{where}, got {len(classes)} "
                         f"({dict(zip(classes.tolist(), counts.tolist()))})")
    small = counts < n_folds
    if small.any():
        detail = ", ".join(f"class {c!r}: {n}" for c, n in zip(classes[small].tolist(), counts[small].tolist()))
        raise ValueError(f"every class needs at least n_folds = {n_folds} members for stratified {n_folds}-fold "
                         f"cross-validation{where}; too few: {detail}")
    return codes, classes


def check_target(y, n_samples: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (n_samples,):
        raise ValueError(f"regression target must have shape ({n_samples},), got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError(f"regression target holds {int((~np.isfinite(y)).sum())} non-finite values")
    if np.ptp(y) == 0:
        raise ValueError("regression target is constant: R² is undefined")
    return y


# ---------------------------------------------------------------------------------------------- folds
def stratified_folds(codes: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``StratifiedKFold(n_folds, shuffle=True, random_state=seed)`` (train, test) index pairs."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(codes), 1)), codes))


def kfolds(n: int, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``KFold(n_folds, shuffle=True, random_state=seed)`` (train, test) index pairs."""
    from sklearn.model_selection import KFold

    if n < n_folds:
        raise ValueError(f"{n_folds}-fold cross-validation needs at least {n_folds} samples, got {n}")
    return list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros((n, 1))))


def permuted_labels(y: np.ndarray, n_permutations: int, seed: int) -> list[np.ndarray]:
    """``n_permutations`` label vectors y[π_r], π_r = ``default_rng(seed).permutation(N)`` drawn in turn."""
    rng = np.random.default_rng(seed)
    return [y[rng.permutation(len(y))] for _ in range(n_permutations)]


# ---------------------------------------------------------------------------------------------- solver
@dataclass
class LogisticFit:
    """Batched fit of P problems. ``coef``: (P, D, K') on standardised features (K' = 1 when K = 2),
    ``intercept``: (P, K'), ``mean``/``scale``: (P, D) standardisation of each problem's training rows
    (in the caller's coordinates), ``loss``: (P,) F/(C n) at the solution, ``grad_max``: (P,) max |∇|,
    ``n_iter``: (P,), ``converged``: (P,) bool, ``logits``: (N, P, K') decision values for every sample."""

    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    loss: np.ndarray
    grad_max: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    logits: np.ndarray = field(repr=False)


def fit_logistic(X, codes: np.ndarray, train: np.ndarray, n_classes: int, C: float = 1.0, tol: float = 1e-4,
                 max_iter: int = 1000, history: int = 10, device: str = "cpu", dtype: str = "float32",
                 init: tuple[np.ndarray, np.ndarray] | None = None) -> LogisticFit:
    """Fit P L2-penalised logistic regressions at once (the objective of the module docstring).

    X: (N, D) features; codes: (N, P) int class index (0..K−1) per sample and problem; train: (N, P) bool,
    the training rows of each problem. Each problem standardises X with its own training rows.
    ``dtype``: float32 (default) or float64 for X and the logits; the per-sample losses are summed, and the
    parameters and L-BFGS state are kept, in float64. ``init``: optional (coef, intercept) warm start.
    """
    import torch

    if n_classes < 2:
        raise ValueError(f"logistic regression needs at least 2 classes, got {n_classes}")
    X = check_features(X)
    n, d = X.shape
    codes = np.asarray(codes)
    train = np.asarray(train, dtype=bool)
    p = codes.shape[1]
    if codes.shape != (n, p) or train.shape != (n, p):
        raise ValueError(f"codes and train must have shape ({n}, P), got {codes.shape} and {train.shape}")
    n_train = train.sum(0)
    if (n_train == 0).any():
        raise ValueError(f"problems {np.flatnonzero(n_train == 0).tolist()} have no training rows")
    k = 1 if n_classes == 2 else n_classes
    fdt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    dev = torch.device(device)
    f64 = torch.float64

    # centre once (float64 mean), then per-problem training mean and population std from masked matmuls
    X64 = torch.tensor(X, device=dev, dtype=f64)  # always a copy: centred and squared in place below
    global_mean = X64.mean(0)
    X64 -= global_mean
    Xc = X64.to(fdt, copy=True)  # a copy even for float64: X64 is squared in place below
    M = torch.as_tensor(train, device=dev, dtype=f64)  # (N, P)
    nt = M.sum(0)  # (P,)
    mu = (M.T @ X64) / nt[:, None]  # (P, D)
    var = (M.T @ X64.square_()) / nt[:, None] - mu**2
    del X64
    sd = var.clamp_min(0).sqrt()
    sd = torch.where(sd > 1e-12 * (1 + mu.abs()), sd, torch.ones_like(sd))  # sklearn: scale 1 for constant
    weight64 = M / nt  # (N, P): 1/n on training rows
    weight = weight64.to(fdt)
    lab = torch.as_tensor(codes, device=dev, dtype=torch.long)
    target = lab.to(fdt)  # binomial: y ∈ {0, 1}
    reg = 1.0 / (C * nt)  # (P,)

    def logits(theta):
        """(N, P, K) decision values of theta (P, D+1, K) float64, in the compute dtype."""
        W, b = theta[:, :d], theta[:, d]  # (P, D, K), (P, K)
        A = W / sd[:, :, None]
        c = b - torch.einsum("pd,pdk->pk", mu, A)
        return (Xc @ A.permute(1, 0, 2).reshape(d, p * k).to(fdt)).reshape(n, p, k) + c.to(fdt)

    def evaluate(theta):
        """theta: (P, D+1, K) float64 → F/(C n) (P,) and its gradient (P, D+1, K), both float64. Elementwise
        work in the compute dtype, sums over samples of the losses in float64."""
        W = theta[:, :d]
        Z = logits(theta)
        if k == 1:
            z = Z[..., 0]
            per = torch.nn.functional.softplus(z) - target * z
            G = (weight * (torch.sigmoid(z) - target))[..., None]
        else:
            top = Z.amax(2, keepdim=True)
            G = torch.sub(Z, top).exp_()  # one exp serves log Σ exp and the softmax
            total = G.sum(2, keepdim=True)
            per = (top + total.log())[..., 0] - Z.gather(2, lab[:, :, None])[..., 0]
            G /= total
            G.scatter_add_(2, lab[:, :, None], torch.full((n, p, 1), -1.0, device=dev, dtype=fdt))
            G *= weight[..., None]
        del Z
        loss = (weight64 * per.to(f64)).sum(0) + 0.5 * reg * (W * W).sum((1, 2))
        gsum = G.sum(0, dtype=f64)  # (P, K)
        XtG = (Xc.T @ G.reshape(n, p * k)).to(f64).reshape(d, p, k).permute(1, 0, 2)
        gW = (XtG - mu[:, :, None] * gsum[:, None, :]) / sd[:, :, None] + reg[:, None, None] * W
        return loss, torch.cat([gW, gsum[:, None, :]], 1)

    theta = torch.zeros(p, d + 1, k, device=dev, dtype=f64)
    if init is not None:
        theta[:, :d] = torch.as_tensor(init[0], device=dev, dtype=f64).reshape(p, d, k)
        theta[:, d] = torch.as_tensor(init[1], device=dev, dtype=f64).reshape(p, k)
    loss, grad = evaluate(theta)
    S = torch.zeros(history, p, d + 1, k, device=dev, dtype=f64)
    Y = torch.zeros_like(S)
    rho = torch.zeros(history, p, device=dev, dtype=f64)
    n_hist = torch.zeros(p, device=dev, dtype=torch.long)
    n_iter = torch.zeros(p, device=dev, dtype=torch.long)
    gmax = grad.abs().amax((1, 2))
    done = gmax <= tol
    stalled = torch.zeros(p, device=dev, dtype=torch.bool)
    dot = lambda a, b: (a * b).sum((-2, -1))  # noqa: E731

    for _ in range(max_iter):
        active = ~(done | stalled)
        if not active.any():
            break
        # two-loop recursion, every problem with its own history: slots are right-aligned (newest at
        # history − 1), slot j is valid when j ≥ history − n_hist
        q = grad.clone()
        alpha = torch.zeros(history, p, device=dev, dtype=f64)
        first = history - n_hist
        for j in reversed(range(history)):
            valid = (j >= first).to(f64)
            alpha[j] = valid * rho[j] * dot(S[j], q)
            q -= alpha[j][:, None, None] * Y[j]
        sy = dot(S[-1], Y[-1])
        yy = dot(Y[-1], Y[-1])
        gamma = torch.where(n_hist > 0, sy / yy.clamp_min(1e-300), 1.0 / grad.abs().sum((1, 2)).clamp_min(1.0))
        r = gamma[:, None, None] * q
        for j in range(history):
            valid = (j >= first).to(f64)
            beta = valid * rho[j] * dot(Y[j], r)
            r += (alpha[j] - beta)[:, None, None] * S[j]
        direction = -r
        slope = dot(grad, direction)
        bad = slope >= 0  # not a descent direction: restart with steepest descent
        if bad.any():
            direction[bad] = -grad[bad]
            slope = dot(grad, direction)
            n_hist[bad] = 0
        # backtracking Armijo line search, per problem
        step = active.to(f64)
        accepted = ~active
        new_loss, new_grad = loss.clone(), grad.clone()
        for _ls in range(40):
            trial = theta + step[:, None, None] * direction
            t_loss, t_grad = evaluate(trial)
            # Armijo, or (convexity) a directional derivative still ≤ 0 at the trial point: then F decreased
            # along the whole segment, a test that float32 logits' rounding in F cannot break
            ok = (~accepted) & ((t_loss <= loss + 1e-4 * step * slope) | (dot(t_grad, direction) <= 0))
            new_loss[ok], new_grad[ok] = t_loss[ok], t_grad[ok]
            accepted |= ok
            if accepted.all():
                break
            step = torch.where(accepted, step, step * 0.5)
        failed = ~accepted
        step = torch.where(failed, torch.zeros_like(step), step)
        moved = active & accepted
        s = step[:, None, None] * direction
        theta = theta + s
        yv = new_grad - grad
        sy = dot(s, yv)
        keep = moved & (sy > 1e-12 * dot(yv, yv))
        if keep.any():
            S[:, keep] = torch.roll(S[:, keep], -1, 0)
            Y[:, keep] = torch.roll(Y[:, keep], -1, 0)
            rho[:, keep] = torch.roll(rho[:, keep], -1, 0)
            S[-1, keep], Y[-1, keep], rho[-1, keep] = s[keep], yv[keep], 1.0 / sy[keep]
            n_hist[keep] = (n_hist[keep] + 1).clamp_max(history)
        previous = loss
        loss, grad = new_loss, new_grad
        n_iter += active.long()
        gmax = grad.abs().amax((1, 2))
        # converged: max |∇| ≤ tol, or a relative decrease of F ≤ 64 float64 eps (scipy's ftol, which
        # scikit-learn sets to this value and counts as convergence); a failed line search is not
        flat = moved & ((previous - loss).abs() <= 64 * torch.finfo(f64).eps * loss.abs().clamp_min(1.0))
        done = done | (gmax <= tol) | flat
        stalled = stalled | (active & failed & ~done)

    return LogisticFit(coef=theta[:, :d].cpu().numpy(), intercept=theta[:, d].cpu().numpy(),
                       mean=(mu + global_mean).cpu().numpy(), scale=sd.cpu().numpy(),
                       loss=loss.cpu().numpy(), grad_max=gmax.cpu().numpy(), n_iter=n_iter.cpu().numpy(),
                       converged=done.cpu().numpy(), logits=logits(theta).cpu().numpy())


# ---------------------------------------------------------------------------------------------- scores
def classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 of one test fold, as scikit-learn's ``accuracy_score``,
    ``balanced_accuracy_score`` (mean recall over the classes of y_true) and ``f1_score(average="macro")``
    (mean over the classes in y_true or y_pred of F1 = 2TP / (2TP + FP + FN))."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.union1d(y_true, y_pred)
    t = np.searchsorted(labels, y_true)
    q = np.searchsorted(labels, y_pred)
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(confusion, (t, q), 1)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(1)
    predicted = confusion.sum(0)
    present = support > 0
    denominator = support + predicted
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return {"accuracy": float(tp.sum() / len(y_true)),
            "balanced_accuracy": float((tp[present] / support[present]).mean()),
            "macro_f1": float(f1.mean())}


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ)² (scikit-learn's ``r2_score``; NaN for a constant y_true)."""
    total = ((y_true - y_true.mean()) ** 2).sum()
    return float(1.0 - ((y_true - y_pred) ** 2).sum() / total) if total > 0 else math.nan


# ---------------------------------------------------------------------------------------------- probes
def _splits_for(codes: np.ndarray, n_folds: int, seed: int, n_permutations: int):
    """Label vectors (real first, then permuted) and the stratified folds of each."""
    label_sets = [codes, *permuted_labels(codes, n_permutations, seed)]
    return label_sets, [stratified_folds(labels, n_folds, seed) for labels in label_sets]


def _logistic_problems(n: int, label_sets, splits):
    """(N, P) codes and train masks of the problems (label set r, split f), r-major."""
    codes, train, tests = [], [], []
    for labels, folds in zip(label_sets, splits, strict=True):
        for train_idx, test_idx in folds:
            mask = np.zeros(n, dtype=bool)
            mask[train_idx] = True
            codes.append(labels)
            train.append(mask)
            tests.append(test_idx)
    return np.stack(codes, 1), np.stack(train, 1), tests


def _predict(fit: LogisticFit, problem: int, rows: np.ndarray) -> np.ndarray:
    z = fit.logits[rows, problem]
    return (z[:, 0] > 0).astype(np.int64) if z.shape[1] == 1 else z.argmax(1)


def _summarise_classification(fit: LogisticFit, label_sets, splits, tests) -> dict:
    n_folds = len(splits[0])
    scores = [classification_scores(label_sets[p // n_folds][rows], _predict(fit, p, rows))
              for p, rows in enumerate(tests)]
    real = scores[:n_folds]
    chance = [np.mean([s["accuracy"] for s in scores[r * n_folds:(r + 1) * n_folds]])
              for r in range(1, len(label_sets))]
    return {"accuracy": np.array([s["accuracy"] for s in real]),
            "balanced_accuracy": np.array([s["balanced_accuracy"] for s in real]),
            "macro_f1": np.array([s["macro_f1"] for s in real]),
            "chance_accuracy": np.array(chance),
            "converged": bool(fit.converged.all()), "n_not_converged": int((~fit.converged).sum()),
            "n_iter": int(fit.n_iter.max()), "grad_max": float(fit.grad_max.max()), "n_folds": n_folds}


def probe_classification(X, y, n_folds: int = 5, n_permutations: int = 5, seed: int = 0, C: float = 1.0,
                         tol: float = 1e-4, max_iter: int = 1000, device: str = "cpu", dtype: str = "float32",
                         init: LogisticFit | None = None, return_fit: bool = False) -> dict:
    """Cross-validated logistic probe of one layer X (N, D) for class labels y (N,) and its permutation chance.

    Returns ``accuracy``, ``balanced_accuracy``, ``macro_f1``: (n_folds,) per-fold scores; ``chance_accuracy``:
    (n_permutations,) mean CV accuracy per permuted label vector; ``converged`` (all fits), ``n_not_converged``,
    ``n_iter`` (largest), ``grad_max`` (largest final max |∇|), ``n_folds``; with ``return_fit`` also ``fit``
    (the :class:`LogisticFit` of all problems, usable as ``init`` of the next layer: a warm start)."""
    X = check_features(X)
    codes, classes = check_classes(y, X.shape[0], n_folds)
    label_sets, splits = _splits_for(codes, n_folds, seed, n_permutations)
    problem_codes, train, tests = _logistic_problems(X.shape[0], label_sets, splits)
    start = None if init is None else (init.coef, init.intercept)
    fit = fit_logistic(X, problem_codes, train, len(classes), C=C, tol=tol, max_iter=max_iter, device=device,
                       dtype=dtype, init=start)
    result = _summarise_classification(fit, label_sets, splits, tests)
    if return_fit:
        result["fit"] = fit
    return result


def ridge_fold(X_train: np.ndarray, Y_train: np.ndarray, alpha: float):
    """Ridge on standardised features (float64): returns ``(mean, scale, coef (D, T), intercept (T,))`` with
    w = (X̃ᵀX̃ + αI)⁻¹ X̃ᵀ(Y − Ȳ), b = Ȳ, for T target columns at once (one Cholesky factorisation)."""
    import scipy.linalg

    mean = X_train.mean(0)
    scale = X_train.std(0)
    scale[scale <= 1e-12 * (1 + np.abs(mean))] = 1.0
    Z = (X_train - mean) / scale  # Z has zero column means, so centring Y is the intercept's closed form
    y_mean = Y_train.mean(0)
    gram = Z.T @ Z
    gram[np.diag_indices_from(gram)] += alpha
    coef = scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram), Z.T @ (Y_train - y_mean))
    return mean, scale, coef, y_mean


def probe_regression(X, y, n_folds: int = 5, n_permutations: int = 5, seed: int = 0, alpha: float = 1.0) -> dict:
    """Cross-validated ridge probe of one layer X (N, D) for a numeric target y (N,) and its permutation chance.

    Returns ``r2``: (n_folds,) test R² per fold, ``chance_r2``: (n_permutations,) mean CV R² per permuted target,
    ``n_folds``."""
    X = np.asarray(check_features(X), dtype=np.float64)
    y = check_target(y, X.shape[0])
    targets = np.stack([y, *permuted_labels(y, n_permutations, seed)], 1)  # (N, 1 + R)
    scores = np.zeros((n_folds, targets.shape[1]))
    for f, (train_idx, test_idx) in enumerate(kfolds(X.shape[0], n_folds, seed)):
        mean, scale, coef, intercept = ridge_fold(X[train_idx], targets[train_idx], alpha)
        predicted = ((X[test_idx] - mean) / scale) @ coef + intercept
        scores[f] = [r2(targets[test_idx, t], predicted[:, t]) for t in range(targets.shape[1])]
    return {"r2": scores[:, 0], "chance_r2": scores[:, 1:].mean(0), "n_folds": n_folds}


def infer_task(y) -> str:
    """``"classification"`` for integer, boolean or string labels, ``"regression"`` for floating targets."""
    return "regression" if np.asarray(y).dtype.kind in "fc" else "classification"


def probe_by_group(X, y, groups, test_groups=None, task: str | None = None, C: float = 1.0, alpha: float = 1.0,
                   tol: float = 1e-4, max_iter: int = 1000, device: str = "cpu", dtype: str = "float32") -> dict:
    """Transfer probe: train on some groups (e.g. prompt templates), test on the others.

    ``test_groups`` given: one split, train on the samples whose group is not in ``test_groups``, test on the
    rest. ``test_groups=None``: leave-one-group-out, one split per group (tested on that group, trained on all
    others). Every training set must hold every class (else ValueError naming the split and class). No
    permutation baseline. Returns ``test_groups`` (list of the test groups per split) and per split
    ``accuracy``, ``balanced_accuracy``, ``macro_f1`` (classification, plus ``converged``) or ``r2``."""
    X = check_features(X)
    n = X.shape[0]
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {groups.shape}")
    unique = np.unique(groups)
    if test_groups is None:
        if len(unique) < 2:
            raise ValueError(f"leave-one-group-out needs at least 2 groups, got {unique.tolist()}")
        split_groups = [[g] for g in unique.tolist()]
    else:
        split_groups = [list(np.atleast_1d(test_groups).tolist())]
        missing = sorted(set(split_groups[0]) - set(unique.tolist()))
        if missing:
            raise ValueError(f"test groups {missing} are not among the groups {unique.tolist()}")
    splits = []
    for test in split_groups:
        is_test = np.isin(groups, test)
        if is_test.all():
            raise ValueError(f"test groups {test} hold every sample: nothing left to train on")
        splits.append((np.flatnonzero(~is_test), np.flatnonzero(is_test)))
    task = task or infer_task(y)
    if task == "regression":
        Xd = np.asarray(X, dtype=np.float64)
        target = check_target(y, n)
        values = []
        for train_idx, test_idx in splits:
            mean, scale, coef, intercept = ridge_fold(Xd[train_idx], target[train_idx, None], alpha)
            values.append(r2(target[test_idx], (((Xd[test_idx] - mean) / scale) @ coef + intercept)[:, 0]))
        return {"test_groups": split_groups, "r2": np.array(values)}
    if task != "classification":
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    codes, classes = check_classes(y, n, 1)
    for test, (train_idx, _) in zip(split_groups, splits, strict=True):
        absent = np.setdiff1d(np.arange(len(classes)), codes[train_idx])
        if len(absent):
            raise ValueError(f"training set of the split testing on groups {test} lacks classes "
                             f"{classes[absent].tolist()}")
    problem_codes, train, tests = _logistic_problems(n, [codes], [splits])
    fit = fit_logistic(X, problem_codes, train, len(classes), C=C, tol=tol, max_iter=max_iter, device=device,
                       dtype=dtype)
    scores = [classification_scores(codes[rows], _predict(fit, p, rows)) for p, rows in enumerate(tests)]
    return {"test_groups": split_groups, **{key: np.array([s[key] for s in scores]) for key in scores[0]},
            "converged": fit.converged.copy()}


def probe_layers(activations, y, warm_start: bool = True, progress: bool = True, **options) -> list[dict]:
    """:func:`probe_classification` of every layer of ``activations`` (L, N, D) (NumPy, Dask or Zarr: one layer
    is loaded at a time), warm-starting each layer's fits from the previous layer's solutions (same problems,
    same standardised coordinates; the minimiser is unique, so only the iteration count changes)."""
    results, fit = [], None
    for layer in tqdm(range(activations.shape[0]), desc="probe layers", mininterval=2, disable=not progress):
        result = probe_classification(np.asarray(activations[layer]), y, init=fit if warm_start else None,
                                      return_fit=True, **options)
        fit = result.pop("fit")
        results.append(result)
    return results


# ---------------------------------------------------------------------------------------------- concept depth
CONCEPT_DEPTH_RULES = ("fraction", "margin")


def concept_depth(accuracies, rule: str = "fraction", fraction: float = 0.9, margin: float = 0.01) -> dict:
    """Concept depth from per-layer accuracies acc(ℓ), ℓ = 0..L−1: the first layer ℓ* with acc(ℓ*) ≥ threshold,
    threshold = ``fraction``·max acc (``rule="fraction"``) or max acc − ``margin`` (``rule="margin"``).

    Returns ``{"layer": ℓ*, "relative_depth": ℓ*/(L−1) (0 when L = 1), "threshold", "max_accuracy",
    "argmax_layer"}``."""
    acc = np.asarray(accuracies, dtype=np.float64)
    if acc.ndim != 1 or len(acc) == 0:
        raise ValueError(f"concept depth needs a 1-D sequence of per-layer accuracies, got shape {acc.shape}")
    if not np.isfinite(acc).all():
        bad = np.flatnonzero(~np.isfinite(acc)).tolist()
        raise ValueError(f"per-layer accuracies hold non-finite values at layers {bad}")
    best = float(acc.max())
    if rule == "fraction":
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        threshold = fraction * best
    elif rule == "margin":
        if margin < 0:
            raise ValueError(f"margin must be ≥ 0, got {margin}")
        threshold = best - margin
    else:
        raise ValueError(f"unknown concept depth rule {rule!r}; choose one of {CONCEPT_DEPTH_RULES}")
    layer = int(np.flatnonzero(acc >= threshold)[0])
    return {"layer": layer, "relative_depth": layer / max(1, len(acc) - 1), "threshold": float(threshold),
            "max_accuracy": best, "argmax_layer": int(acc.argmax())}


def concept_depth_from_rows(rows, metric: str = "probe_accuracy", statistic: str = "mean", **rule) -> dict:
    """:func:`concept_depth` from tidy per-layer rows of one model and pooling (dicts or a DataFrame with
    ``layer``, ``metric``, ``statistic``, ``value``): the ``metric``/``statistic`` value of every layer."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    picked = frame[(frame["metric"] == metric) & (frame["statistic"] == statistic)]
    if picked.empty:
        raise ValueError(f"no rows with metric {metric!r} and statistic {statistic!r}")
    if picked["layer"].duplicated().any():
        raise ValueError(f"several {metric!r} rows per layer: pass the rows of one model and pooling")
    picked = picked.sort_values("layer")
    layers = picked["layer"].to_numpy()
    if not np.array_equal(layers, np.arange(len(layers))):
        raise ValueError(f"{metric!r} rows must cover layers 0..L−1 once each, got {layers.tolist()}")
    return concept_depth(picked["value"].to_numpy(), **rule)


# ---------------------------------------------------------------------------------------------- entry point
def layer_metrics(X, labels, params: dict | None = None) -> list[dict]:
    """Tidy rows of one layer X (N, D) for ``labels`` (N,): integer/boolean/string class labels →
    ``probe_accuracy``, ``probe_balanced_accuracy``, ``probe_macro_f1`` (mean and std over folds) and
    ``probe_chance_accuracy`` (mean and std over permutations); floating targets → ``probe_r2`` and
    ``probe_chance_r2``. Extra columns: ``n_folds``, ``n_permutations`` and, for classification, ``converged``.
    ``params``: ``n_folds``, ``n_permutations``, ``seed``, ``C``, ``alpha``, ``tol``, ``max_iter``, ``device``,
    ``dtype`` (missing keys take :data:`DEFAULTS`)."""
    options = {**DEFAULTS, **(params or {})}
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown probe options {unknown}; known: {sorted(DEFAULTS)}")
    extra = {"n_folds": options["n_folds"], "n_permutations": options["n_permutations"]}
    common = {key: options[key] for key in ("n_folds", "n_permutations", "seed")}
    if infer_task(labels) == "regression":
        result = probe_regression(X, labels, alpha=options["alpha"], **common)
        values = {"probe_r2": result["r2"], "probe_chance_r2": result["chance_r2"]}
    else:
        result = probe_classification(X, labels, C=options["C"], tol=options["tol"], max_iter=options["max_iter"],
                                      device=options["device"], dtype=options["dtype"], **common)
        values = {"probe_accuracy": result["accuracy"], "probe_balanced_accuracy": result["balanced_accuracy"],
                  "probe_macro_f1": result["macro_f1"], "probe_chance_accuracy": result["chance_accuracy"]}
        extra["converged"] = result["converged"]
    return _mean_std_rows(values, extra)


def _mean_std_rows(values: dict, extra: dict) -> list[dict]:
    """One ``mean`` and one ``std`` row per score array of ``values`` (NaN for an empty array), with ``extra``."""
    rows = []
    for name, per in values.items():
        for statistic, value in (("mean", per.mean() if len(per) else math.nan),
                                 ("std", per.std() if len(per) else math.nan)):
            rows.append({"metric": name, "statistic": statistic, "value": float(value), **extra})
    return rows


def layer_rows(activations, labels, params: dict | None = None) -> list[list[dict]]:
    """:func:`layer_metrics` rows of every layer of ``activations`` (L, N, D), classification layers warm-started
    from the previous layer's solution (:func:`probe_layers`); a numeric target probes layer by layer (ridge is
    closed form). Same rows as calling :func:`layer_metrics` per layer."""
    options = {**DEFAULTS, **(params or {})}
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown probe options {unknown}; known: {sorted(DEFAULTS)}")
    if infer_task(labels) == "regression":
        return [layer_metrics(np.asarray(activations[layer]), labels, options) for layer in range(len(activations))]
    keys = ("n_folds", "n_permutations", "seed", "C", "tol", "max_iter", "device", "dtype")
    results = probe_layers(activations, labels, **{key: options[key] for key in keys})
    return [_classification_rows(result, options) for result in results]


def transfer_rows(activations, labels, groups, column: str, params: dict | None = None,
                  progress: bool = True) -> list[list[dict]]:
    """Per layer of ``activations`` (L, N, D), the leave-one-group-out transfer probe (:func:`probe_by_group`,
    ``groups`` (N,) the values of the sample column ``column``): one split per value g, trained on the samples
    with another value, tested on those with g. Rows ``probe_transfer_accuracy``,
    ``probe_transfer_balanced_accuracy``, ``probe_transfer_macro_f1`` (classes) or ``probe_transfer_r2`` (a numeric
    target), ``mean`` and ``std`` over the splits, with the columns ``transfer_by`` and ``n_splits``. Same
    regularisation as the k-fold probe (``C``, ``alpha``, ``tol``, ``max_iter``, ``device``, ``dtype``)."""
    options = {**DEFAULTS, **(params or {})}
    keys = ("C", "alpha", "tol", "max_iter", "device", "dtype")
    rows = []
    for layer in tqdm(range(activations.shape[0]), desc="transfer probe layers", mininterval=2,
                      disable=not progress):
        result = probe_by_group(np.asarray(activations[layer]), labels, groups, **{k: options[k] for k in keys})
        extra = {"transfer_by": column, "n_splits": len(result["test_groups"])}
        if "r2" in result:
            values = {TRANSFER_METRICS[3]: result["r2"]}
        else:
            values = {metric: result[name] for metric, name in
                      zip(TRANSFER_METRICS[:3], ("accuracy", "balanced_accuracy", "macro_f1"), strict=True)}
            extra["converged"] = result["converged"]
        rows.append(_mean_std_rows(values, extra))
    return rows


def _classification_rows(result: dict, options: dict) -> list[dict]:
    extra = {"n_folds": options["n_folds"], "n_permutations": options["n_permutations"],
             "converged": result["converged"]}
    values = {"probe_accuracy": result["accuracy"], "probe_balanced_accuracy": result["balanced_accuracy"],
              "probe_macro_f1": result["macro_f1"], "probe_chance_accuracy": result["chance_accuracy"]}
    return _mean_std_rows(values, extra)
