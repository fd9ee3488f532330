"""Benchmark: one layer of the ``clusters`` and ``collapse`` families against scikit-learn.

Workload: N samples × D features in C seeded Gaussian classes (anisotropic, unequal sizes), float32 as stored,
plus its exact Euclidean k-NN graph (k = 30, built once with ``repbench.neighbors.knn``, timed separately as
the neighbors jobs do it).

repbench path: ``clusters.layer_metrics`` (label_overlap from the graph, blocked silhouette within a 256 MiB
budget, Calinski-Harabasz, Davies-Bouldin, blocked Dunn, Xie-Beni) and ``collapse.layer_metrics`` (NC1 in the
span of the class means, NC2, CDNV, one mass-mean probe per class with 5 folds).
reference path: scikit-learn's ``silhouette_score``, ``calinski_harabasz_score``, ``davies_bouldin_score``
(the three scores both paths compute); ``max_abs_diff`` is the largest difference of those three.

Usage: python benchmarks/clusters.py [--quick] [--n N] [--dim D] [--classes C]
Last line: ``clusters: n=<N> d=<D> c=<C> graph_s=<f> clusters_s=<f> collapse_s=<f> sklearn_s=<f>
max_abs_diff=<g>``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "workflow"))

from repbench.metrics import clusters, collapse  # noqa: E402
from repbench.neighbors import knn  # noqa: E402


def make_layer(n: int, dim: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(n - 10 * n_classes, np.ones(n_classes) / n_classes) + 10
    centres = 0.5 * rng.standard_normal((n_classes, dim))
    scales = rng.uniform(0.5, 2.0, dim)
    X = np.concatenate([c + scales * rng.standard_normal((s, dim)) for c, s in zip(centres, sizes)])
    labels = np.repeat(np.arange(n_classes), sizes)
    order = rng.permutation(n)
    return X[order].astype(np.float32), labels[order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 2000, D = 128, C = 10")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    n, dim, n_classes = (2000, 128, 10) if args.quick else (args.n, args.dim, args.classes)
    X, labels = make_layer(n, dim, n_classes)

    start = time.perf_counter()
    graph, _ = knn(X, 30, space="euclidean")
    graph_s = time.perf_counter() - start

    start = time.perf_counter()
    rows = {r["metric"]: r["value"] for r in clusters.layer_metrics(X, labels, {"k": 30}, graph)}
    clusters_s = time.perf_counter() - start
    start = time.perf_counter()
    collapse.layer_metrics(X, labels, {"probe_folds": 5, "seed": 0})
    collapse_s = time.perf_counter() - start

    from sklearn import metrics

    start = time.perf_counter()
    reference = {"silhouette": metrics.silhouette_score(X, labels),
                 "calinski_harabasz": metrics.calinski_harabasz_score(X, labels),
                 "davies_bouldin": metrics.davies_bouldin_score(X, labels)}
    sklearn_s = time.perf_counter() - start
    # scikit-learn keeps float32 input in float32; repbench computes in float64, so compare on float64 input too
    X64 = X.astype(np.float64)
    reference64 = {"silhouette": metrics.silhouette_score(X64, labels),
                   "calinski_harabasz": metrics.calinski_harabasz_score(X64, labels),
                   "davies_bouldin": metrics.davies_bouldin_score(X64, labels)}
    for name in reference:
        print(f"{name}: repbench={rows[name]:.12g} sklearn_float32={reference[name]:.12g} "
              f"sklearn_float64={reference64[name]:.12g}")
    max_abs_diff = max(abs(rows[name] - reference64[name]) for name in reference64)
    print(f"clusters: n={n} d={dim} c={n_classes} graph_s={graph_s:.2f} clusters_s={clusters_s:.2f} "
          f"collapse_s={collapse_s:.2f} sklearn_s={sklearn_s:.2f} max_abs_diff={max_abs_diff:.3g}")


if __name__ == "__main__":
    main()
