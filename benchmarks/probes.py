"""Benchmark: layer-wise logistic probes, repbench (batched torch L-BFGS) vs the reference protocol, in one run.

Workload (seeded, float32 like stored activations): L layers of N samples in D dimensions, K balanced classes;
layer ℓ = class mean·s(ℓ) + unit isotropic noise + a shared random offset, with a class signal s(ℓ) that grows
with depth (s(ℓ) = 0.05 + 0.6·ℓ/(L−1): accuracy climbs from chance to about 0.7), the noise of adjacent layers
correlated like a residual stream (``--layer-correlation``, default 0.9; 0 = independent layers), see
:func:`make_layers`. The layer correlation matters to repbench only (it warm-starts each layer from the previous
one); the reference fits every layer from scratch, as the Concept Depth code does.

Both paths use the same folds, ``StratifiedKFold(n_folds, shuffle=True, random_state=0)``, and the same
objective (C = 1, standardisation fit on the training fold), no permutation baseline (n_permutations = 0):

- repbench: :func:`repbench.metrics.probes.probe_layers` (all folds of a layer in one batched L-BFGS, float32
  logits, tol = 1e-4 on max |∇| like scikit-learn's gtol, warm start from the previous layer);
- reference (the Concept Depth protocol, with scaling): per layer and fold ``StandardScaler`` on the training
  fold, ``LogisticRegression(C=1, max_iter=1000)`` (lbfgs, tol = 1e-4), accuracy on the test fold.

Prints both times, ratio = reference_s / repbench_s (> 1: repbench faster), the largest |accuracy difference|
over layers and folds, both mean accuracy curves, peak memory (tracemalloc of Python/NumPy allocations, and
the process's max RSS after the repbench path). Times exclude data generation and one untimed warm-up of both
paths on 500 samples of one layer.

Threads: both paths run with the same thread count (``--threads``, default 1: torch.set_num_threads and
threadpoolctl's BLAS/OpenMP limit for NumPy/scikit-learn), because on a shared, loaded machine torch's OpenMP
pool slows down by an order of magnitude when other processes hold the cores.

Usage: python benchmarks/probes.py [--quick] [--n N] [--d D] [--layers L] [--classes K] [--folds F] [--threads T]
Last line: ``probes: repbench_s=<f> reference_s=<f> ratio=<f> max_acc_diff=<f>``.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import sys
import time
import tracemalloc
import warnings

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))

from repbench.metrics.probes import classification_scores, probe_layers, stratified_folds  # noqa: E402


def make_layers(n: int, d: int, n_layers: int, n_classes: int, seed: int = 0,
                layer_correlation: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """(L, N, D) float32 activations and (N,) labels: x_ℓ = s(ℓ)·m_y + ε_ℓ + o, s(ℓ) = 0.05 + 0.6·ℓ/(L−1),
    m_k ~ N(0, 16 I / D) class means, o ~ N(0, 4 I) one offset for all samples, and noise
    ε_ℓ = ρ ε_{ℓ−1} + √(1 − ρ²) ξ_ℓ (ξ_ℓ, ε_0 ~ N(0, I)): unit variance in every layer and correlation ρ =
    ``layer_correlation`` between adjacent layers, like a residual stream (ρ = 0: independent layers)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    means = rng.standard_normal((n_classes, d)).astype(np.float32) / np.sqrt(d) * 4
    offset = 2 * rng.standard_normal(d).astype(np.float32)
    layers = np.empty((n_layers, n, d), dtype=np.float32)
    noise = rng.standard_normal((n, d), dtype=np.float32)
    for layer in range(n_layers):
        if layer:
            noise *= layer_correlation
            noise += np.float32(np.sqrt(1 - layer_correlation**2)) * rng.standard_normal((n, d), dtype=np.float32)
        signal = 0.05 + 0.6 * layer / max(1, n_layers - 1)
        layers[layer] = signal * means[y] + noise + offset
    return layers, y


def reference(layers: np.ndarray, y: np.ndarray, n_folds: int) -> np.ndarray:
    """(L, n_folds) test accuracies of the reference protocol."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    folds = stratified_folds(y, n_folds, 0)
    accuracy = np.zeros((len(layers), n_folds))
    for layer, X in enumerate(layers):
        for f, (train, test) in enumerate(folds):
            scaler = StandardScaler().fit(X[train])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(X[train]), y[train])
            accuracy[layer, f] = classification_scores(y[test], model.predict(scaler.transform(X[test])))["accuracy"]
    return accuracy


def max_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def traced_peak_mib(X: np.ndarray, y: np.ndarray, n_folds: int) -> float:
    """tracemalloc peak of one untimed repbench layer (tracemalloc slows Python-level work, so never timed)."""
    from repbench.metrics.probes import probe_classification

    tracemalloc.start()
    probe_classification(X, y, n_folds=n_folds, n_permutations=0, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (N=2000, D=64, 4 layers)")
    parser.add_argument("--n", type=int)
    parser.add_argument("--d", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layer-correlation", type=float, default=0.9,
                        help="correlation of the noise of adjacent layers (0: independent layers)")
    args = parser.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    n = args.n or (2000 if args.quick else 20000)
    d = args.d or (64 if args.quick else 768)
    n_layers = args.layers or (4 if args.quick else 13)
    layers, y = make_layers(n, d, n_layers, args.classes, layer_correlation=args.layer_correlation)
    print(f"workload: N={n} D={d} layers={n_layers} classes={args.classes} folds={args.folds} float32 "
          f"threads={args.threads} layer_correlation={args.layer_correlation}", flush=True)

    # warm-up, untimed: first-call costs (torch kernels, scikit-learn imports) are not the algorithms' cost
    probe_layers(layers[:1, :500], y[:500], n_folds=args.folds, n_permutations=0, progress=False)
    reference(layers[:1, :500], y[:500], args.folds)
    rss_before = max_rss_mib()
    start = time.perf_counter()
    results = probe_layers(layers, y, n_folds=args.folds, n_permutations=0, seed=0, progress=False)
    repbench_s = time.perf_counter() - start
    rss_repbench = max_rss_mib()
    ours = np.stack([r["accuracy"] for r in results])
    iterations = [r["n_iter"] for r in results]
    print(f"repbench: {repbench_s:.2f} s, converged={all(r['converged'] for r in results)}, "
          f"L-BFGS iterations per layer {iterations}", flush=True)
    print(f"repbench peak memory: max RSS {rss_repbench:.0f} MiB (before: {rss_before:.0f} MiB, with the data and "
          f"the imports); one layer again under tracemalloc: {traced_peak_mib(layers[-1], y, args.folds):.0f} MiB "
          "of NumPy/Python allocations", flush=True)

    start = time.perf_counter()
    theirs = reference(layers, y, args.folds)
    reference_s = time.perf_counter() - start
    print(f"reference (sklearn LogisticRegression per layer and fold): {reference_s:.2f} s, "
          f"max RSS after it {max_rss_mib():.0f} MiB", flush=True)
    print("mean accuracy per layer, repbench :", np.round(ours.mean(1), 4).tolist())
    print("mean accuracy per layer, reference:", np.round(theirs.mean(1), 4).tolist())
    print(f"data: {layers.nbytes / 2**20:.0f} MiB")
    diff = float(np.abs(ours - theirs).max())
    print(f"probes: repbench_s={repbench_s:.3f} reference_s={reference_s:.3f} "
          f"ratio={reference_s / repbench_s:.3f} max_acc_diff={diff:.5f}")


if __name__ == "__main__":
    main()
