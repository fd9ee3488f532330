"""Benchmark: layer × layer kNN alignment, repbench path vs the naive path of the PRH reference code.

Workload: M models × L layers × N samples × D features of synthetic activations (seeded). Every model's layer l
is a noisy random linear image of a shared latent that drifts with depth, with noise that is lowest at
mid-depth, so scores are non-trivial and vary over the layer × layer matrix.

repbench path: one exact cosine k-NN graph per (model, layer) with ``repbench.neighbors.knn``, then
``pair_matrices`` for the kNN metrics (mutual_knn, cycle_knn_ab, cycle_knn_ba, lcs_knn) of all M(M−1)/2 model
pairs × L² layer pairs.

naive path (the PRH reference algorithm, re-implemented here in torch float32): for every layer pair, recompute
both kNN sets from a dense N×N similarity matrix and a full argsort, then mutual kNN with dense N×N masks.
When the naive path would take longer than ``--naive-budget-s`` over all layer pairs, it is timed on a stated
subset (the diagonal layer pairs (l, l) of every model pair) and the repbench path is timed on the same subset
(its graphs for every (model, layer) the subset touches plus the pair metrics of the subset), so the final line
compares measured times for the same work.

cached reference (second baseline): the same reference definition, but each (model, layer)'s kNN lists computed
once (dense similarity + argsort) and reused by every layer pair, which then only builds the two dense N×N masks.
naive/cached is what caching the graph gains; cached/repbench is what the O(N·k) implementation gains.

``--pair-job``: one alignment job as the workflow runs it — every registered pair metric of ONE model pair at
N = 10 000, D = 768, 13 × 13 layers (``--quick``: N = 600, D = 64, 4 layers), graphs precomputed (timed
separately, as the neighbors jobs do it), with the calibration the stage does: P = 99 permutations for the graph
metrics (on ``--workers`` threads, default: the CPUs this process may use, as a one-pair job with that many
threads runs them) and the closed-form null for cka/rv; the other dense metrics get no permutations here (each would be a
full pass over both models' features, second_order_cos included; their cost per permutation is about the
"metrics" time). Goals: ≤ 5 min, closed-form nulls ≤ 10 % of the job.

The metrics of the pair job are one ``pair_matrices_prepared`` call, as the stage makes it (groups share work:
the kernel metrics take the dense group's cross products, Jaccard and rank similarity the kNN pass's look-ups);
``--breakdown`` also times each group alone, outside the totals. ``--graph-cache DIR`` keeps the 52 precomputed
graphs between runs (they take ~6 min at N = 10 000 and are not part of the job).

Usage: python benchmarks/alignment.py [--quick] [--naive-budget-s 900]
       | --pair-job [--quick] [--n N] [--permutations P] [--workers W] [--breakdown] [--graph-cache DIR]
Last line: ``alignment: repbench_s=<f> naive_s=<f> ratio=<f> cached_s=<f> cached_ratio=<f> max_abs_diff=<f>``,
or with ``--pair-job``: ``alignment_pair: metrics_s=<f> graph_null_s=<f> closed_null_s=<f> total_s=<f>
closed_null_share=<f>``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "workflow"))

from repbench.metrics.alignment import KNN_METRICS, pair_matrices
from repbench.neighbors import brute_force_knn, knn


def synthetic_activations(n_models, n_layers, n, d, seed=0, latent_dim=48):
    """float32 array (M, L, N, D): X[m, l] = Z_l W[m, l] + σ[m, l] E, Z_l = Z (I + 0.15·l·G)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, latent_dim))
    drift = rng.normal(size=(latent_dim, latent_dim)) / np.sqrt(latent_dim)
    out = np.empty((n_models, n_layers, n, d), dtype=np.float32)
    for m in range(n_models):
        for layer in range(n_layers):
            depth = layer / max(1, n_layers - 1)
            z = latent @ (np.eye(latent_dim) + 0.15 * layer * drift)
            w = rng.normal(size=(latent_dim, d)) / np.sqrt(latent_dim)
            sigma = 1.6 - 0.9 * np.sin(np.pi * depth) + 0.15 * m
            out[m, layer] = z @ w + sigma * rng.normal(size=(n, d))
    return out


def naive_knn(features: torch.Tensor, k: int) -> torch.Tensor:
    """PRH-style: dense N×N cosine similarity, self pushed to the end, full descending argsort, first k."""
    unit = torch.nn.functional.normalize(features, dim=-1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-1e8)
    return similarity.argsort(dim=1, descending=True)[:, :k]


def naive_mutual_knn(features_a: torch.Tensor, features_b: torch.Tensor, k: int) -> float:
    knn_a, knn_b = naive_knn(features_a, k), naive_knn(features_b, k)
    n = features_a.shape[0]
    rows = torch.arange(n).unsqueeze(1)
    mask_a = torch.zeros(n, n)
    mask_b = torch.zeros(n, n)
    mask_a[rows, knn_a] = 1.0
    mask_b[rows, knn_b] = 1.0
    return float((mask_a * mask_b).sum(dim=1).double().mean() / k)  # float64 mean: compare sets, not rounding


def run_repbench(data, k, model_pairs, layer_pairs):
    """Graphs for every (model, layer) that the listed layer pairs touch, then the kNN metrics of those pairs."""
    needed = {(a, la) for a, _ in model_pairs for la, _ in layer_pairs}
    needed |= {(b, lb) for _, b in model_pairs for _, lb in layer_pairs}
    start = time.perf_counter()
    graphs = {}
    for m, layer in sorted(needed):
        graphs[(m, layer)] = knn(data[m, layer], k, "cosine", device="cpu")[0]
    graph_s = time.perf_counter() - start
    scores = {}
    start = time.perf_counter()
    for a, b in model_pairs:
        rows = sorted({la for la, _ in layer_pairs})
        cols = sorted({lb for _, lb in layer_pairs})
        if len(layer_pairs) == len(rows) * len(cols):  # full rectangle: one call
            mats = pair_matrices(None, None, np.stack([graphs[(a, la)] for la in rows]),
                                 np.stack([graphs[(b, lb)] for lb in cols]), k, KNN_METRICS)
            for (i, la), (j, lb) in itertools.product(enumerate(rows), enumerate(cols)):
                scores[(a, b, la, lb)] = {name: mats[name][i, j] for name in KNN_METRICS}
        else:
            for la, lb in layer_pairs:
                mats = pair_matrices(None, None, graphs[(a, la)][None], graphs[(b, lb)][None], k, KNN_METRICS)
                scores[(a, b, la, lb)] = {name: mats[name][0, 0] for name in KNN_METRICS}
    pair_s = time.perf_counter() - start
    return graph_s, pair_s, scores


def run_naive(data, k, model_pairs, layer_pairs):
    tensors = torch.from_numpy(data)
    scores = {}
    start = time.perf_counter()
    for a, b in model_pairs:
        for la, lb in layer_pairs:
            scores[(a, b, la, lb)] = naive_mutual_knn(tensors[a, la], tensors[b, lb], k)
    return time.perf_counter() - start, scores


def run_cached_reference(data, k, model_pairs, layer_pairs):
    """The reference definition with each (model, layer)'s kNN lists computed once and reused across pairs."""
    tensors = torch.from_numpy(data)
    start = time.perf_counter()
    lists = {}
    needed = sorted({(a, la) for a, _ in model_pairs for la, _ in layer_pairs}
                    | {(b, lb) for _, b in model_pairs for _, lb in layer_pairs})
    for m, layer in needed:
        lists[(m, layer)] = naive_knn(tensors[m, layer], k)
    n = data.shape[2]
    rows = torch.arange(n).unsqueeze(1)
    scores = {}
    for a, b in model_pairs:
        for la, lb in layer_pairs:
            mask_a, mask_b = torch.zeros(n, n), torch.zeros(n, n)
            mask_a[rows, lists[(a, la)]] = 1.0
            mask_b[rows, lists[(b, lb)]] = 1.0
            scores[(a, b, la, lb)] = float((mask_a * mask_b).sum(dim=1).double().mean() / k)
    return time.perf_counter() - start, scores


def explain_differences(data, k, rep_scores, naive_scores, max_pairs=2):
    """For layer pairs where the two paths disagree, check both graphs against a float64 brute force."""
    differing = [key for key, value in naive_scores.items() if rep_scores[key]["mutual_knn"] != value]
    for a, b, la, lb in differing[:max_pairs]:
        for model, layer in ((a, la), (b, lb)):
            exact = brute_force_knn(data[model, layer], k, "cosine")[0]
            ours = knn(data[model, layer], k, "cosine", device="cpu")[0]
            naive = naive_knn(torch.from_numpy(data[model, layer]), k).numpy()
            print(f"  model {model} layer {layer}: rows differing from float64 brute force: "
                  f"repbench {int(np.any(ours != exact, axis=1).sum())}, "
                  f"naive float32 argsort {int(np.any(naive != exact, axis=1).sum())}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (M=3, L=3, N=256, D=32)")
    parser.add_argument("--naive-budget-s", type=float, default=900.0,
                        help="run the naive path on every layer pair only if its estimate is below this")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pair-job", action="store_true", help="time one pair job with every metric (see above)")
    parser.add_argument("--n", type=int, default=None, help="--pair-job: samples (default 10 000; --quick 600)")
    parser.add_argument("--permutations", type=int, default=99, help="--pair-job: graph-metric permutations")
    parser.add_argument("--breakdown", action="store_true",
                        help="--pair-job: also time each metric group alone (not part of the totals)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="--pair-job: threads of the graph-metric null (as a one-pair job gets its threads)")
    parser.add_argument("--graph-cache", default=None,
                        help="--pair-job: folder keeping the precomputed graphs between runs (same N, D, L, seed)")
    args = parser.parse_args(argv)
    if args.pair_job:
        return pair_job(args)
    n_models, n_layers, n, d = (3, 3, 256, 32) if args.quick else (6, 13, 2048, 384)
    k = args.k

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs")
    data = synthetic_activations(n_models, n_layers, n, d, seed=args.seed)
    model_pairs = list(itertools.combinations(range(n_models), 2))
    all_layer_pairs = list(itertools.product(range(n_layers), repeat=2))
    n_layer_pairs = len(model_pairs) * len(all_layer_pairs)
    print(f"workload: M={n_models} models × L={n_layers} layers × N={n} × D={d}, k={k}; "
          f"{len(model_pairs)} model pairs × {len(all_layer_pairs)} layer pairs = {n_layer_pairs} layer pairs")

    # warm-up of both paths (thread pools, allocator), excluded from every timing
    knn(data[0, 0, :256], k, "cosine", device="cpu")
    naive_mutual_knn(torch.from_numpy(data[0, 0, :256]), torch.from_numpy(data[0, 1, :256]), k)

    # repbench on everything
    graph_s, pair_s, rep_scores = run_repbench(data, k, model_pairs, all_layer_pairs)
    rep_total = graph_s + pair_s
    print(f"repbench (all layer pairs): {n_models * n_layers} kNN graphs {graph_s:.2f} s "
          f"({graph_s / (n_models * n_layers):.3f} s/graph) + pair_matrices[{', '.join(KNN_METRICS)}] "
          f"{pair_s:.2f} s = {rep_total:.2f} s ({rep_total / n_layer_pairs * 1e3:.2f} ms per layer pair)")

    # naive: estimate from one layer pair, then all pairs or the stated subset
    probe_s, _ = run_naive(data, k, model_pairs[:1], all_layer_pairs[:1])
    estimate = probe_s * n_layer_pairs
    if estimate <= args.naive_budget_s:
        subset_name, layer_pairs = "all layer pairs", all_layer_pairs
    else:
        subset_name = f"subset: diagonal layer pairs (l, l) of all {len(model_pairs)} model pairs"
        layer_pairs = [(layer, layer) for layer in range(n_layers)]
        print(f"naive path estimated at {estimate:.0f} s for all {n_layer_pairs} layer pairs "
              f"(> budget {args.naive_budget_s:.0f} s): timing both paths on the {subset_name}")
    naive_s, naive_scores = run_naive(data, k, model_pairs, layer_pairs)
    n_measured = len(naive_scores)
    print(f"naive ({subset_name}, {n_measured} layer pairs): {naive_s:.2f} s "
          f"({naive_s / n_measured * 1e3:.1f} ms per layer pair)")

    if n_measured == n_layer_pairs:
        repbench_s = rep_total
    else:
        sub_graph_s, sub_pair_s, _ = run_repbench(data, k, model_pairs, layer_pairs)
        repbench_s = sub_graph_s + sub_pair_s
        print(f"repbench on the same {n_measured} layer pairs: graphs {sub_graph_s:.2f} s + pairs "
              f"{sub_pair_s:.2f} s = {repbench_s:.2f} s")
        print(f"full-study estimate (extrapolated, not measured): naive {naive_s / n_measured * n_layer_pairs:.0f} s "
              f"vs repbench measured {rep_total:.2f} s → {naive_s / n_measured * n_layer_pairs / rep_total:.1f}×")
    cached_s, cached_scores = run_cached_reference(data, k, model_pairs, layer_pairs)
    print(f"cached reference ({subset_name}): kNN lists once per (model, layer), dense masks per layer pair: "
          f"{cached_s:.2f} s; naive/cached = {naive_s / cached_s:.2f}× (caching), "
          f"cached/repbench = {cached_s / repbench_s:.2f}× (implementation)")
    assert all(cached_scores[key] == naive_scores[key] for key in naive_scores)  # the same definition
    diffs = [abs(rep_scores[key]["mutual_knn"] - value) for key, value in naive_scores.items()]
    max_abs_diff = float(max(diffs))
    mutual = np.array([rep_scores[key]["mutual_knn"] for key in naive_scores])
    print(f"mutual_knn over compared pairs: min {mutual.min():.3f}, mean {mutual.mean():.3f}, max {mutual.max():.3f} "
          f"(chance {k / (n - 1):.4f}); pairs differing: {int(np.sum(np.array(diffs) > 0))}")
    explain_differences(data, k, rep_scores, naive_scores)
    print(f"alignment: repbench_s={repbench_s:.3f} naive_s={naive_s:.3f} ratio={naive_s / repbench_s:.2f} "
          f"cached_s={cached_s:.3f} cached_ratio={cached_s / repbench_s:.2f} max_abs_diff={max_abs_diff:.3g}")


def pair_job(args):
    """Every registered pair metric of one model pair, timed like the alignment job (see the module docstring)."""
    from repbench import registry
    from repbench.config import schema_defaults
    from repbench.metrics import alignment as al
    from repbench.stages.alignment import calibration

    n_layers, n, d = (4, 600, 64) if args.quick else (13, 10_000, 768)
    n = args.n or n
    kmax = 32 if args.quick else 128
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs; one pair: L={n_layers} × N={n} × D={d}, kmax={kmax}")
    data = synthetic_activations(2, n_layers, n, d, seed=args.seed)
    start = time.perf_counter()
    cache = None
    if args.graph_cache:
        os.makedirs(args.graph_cache, exist_ok=True)
        cache = os.path.join(args.graph_cache, f"pair_graphs_L{n_layers}_N{n}_D{d}_k{kmax}_seed{args.seed}.npz")
    if cache and os.path.exists(cache):
        with np.load(cache) as stored:
            graphs = [{space: stored[f"{space}{m}"] for space in ("cosine", "euclidean")} for m in range(2)]
        print(f"graphs (the neighbors jobs, not part of the pair job): read from {cache}")
    else:
        graphs = [{space: np.stack([knn(data[m, layer], kmax, space, device="cpu")[0]
                                    for layer in range(n_layers)])
                   for space in ("cosine", "euclidean")} for m in range(2)]
        print(f"graphs (the neighbors jobs, not part of the pair job): {4 * n_layers} graphs in "
              f"{time.perf_counter() - start:.1f} s")
        if cache:
            np.savez(cache, **{f"{space}{m}": graphs[m][space] for m in range(2) for space in graphs[m]})
    options = schema_defaults("alignment") | {"k": args.k, "clip_quantile": None, "seed": args.seed}
    metrics = registry.names("alignment")
    options.update(metrics=list(metrics), null_metrics=list(metrics), null_permutations=args.permutations,
                   null_permutations_dense=0)
    start = time.perf_counter()
    prepared = [al.prepare_model(list(data[m]), graphs[m], args.k, metrics, options=options) for m in range(2)]
    prepare_s = time.perf_counter() - start
    print(f"prepare (per-layer work, both models): {prepare_s:.1f} s", flush=True)
    if args.breakdown:  # each group alone: their sum exceeds the joint call, which shares cross products
        for group in ("core", "dense", "neighborhoods"):
            chosen = [m for m in metrics if (registry.METRICS[m].group or "core") == group]
            start = time.perf_counter()
            al.pair_matrices_prepared(*prepared, chosen)
            print(f"  alone: matrices of the {group} metrics ({', '.join(chosen)}): "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    mats = al.pair_matrices_prepared(*prepared, metrics)  # one call, as the alignment stage makes it
    matrices_s = time.perf_counter() - start
    graph_metrics = [m for m in metrics if m not in registry.dense(metrics)]  # null: O(N·k) per layer pair
    start = time.perf_counter()
    calibration(prepared, mats, options | {"null_metrics": graph_metrics}, workers=args.workers)
    graph_null_s = time.perf_counter() - start
    start = time.perf_counter()
    closed = calibration(prepared, mats, options | {"null_metrics": ["cka", "rv"]})
    closed_null_s = time.perf_counter() - start
    total = prepare_s + matrices_s + graph_null_s + closed_null_s
    print(f"prepare (per-layer work, both models) {prepare_s:.1f} s; layer × layer matrices of {len(metrics)} "
          f"metrics {matrices_s:.1f} s; null of {len(graph_metrics)} graph metrics (P={args.permutations}) "
          f"{graph_null_s:.1f} s on {args.workers} threads; "
          f"closed-form cka/rv null {closed_null_s:.2f} s ({closed['cka']['method']})")
    for name in metrics:
        summary = al.summarize(mats[name], lower_is_more_similar=registry.METRICS[name].lower_is_more_similar)
        print(f"  {name:18s} best {summary['max']:.4f} at {summary['argmax']}, last {summary['last']:.4f}")
    metrics_s = prepare_s + matrices_s
    print(f"alignment_pair: metrics_s={metrics_s:.2f} graph_null_s={graph_null_s:.2f} "
          f"closed_null_s={closed_null_s:.2f} total_s={total:.2f} closed_null_share={closed_null_s / total:.3f}")


if __name__ == "__main__":
    main()
