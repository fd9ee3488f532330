"""Scale check: the neighbors and alignment jobs at N = 50 000, D = 768, kmax = 64 on this machine's CPU cores.

Builds two activation stores of synthetic layers (seeded; each model's layer l is a noisy random linear image of
a shared 64-D latent, so the metrics have real structure) in a temporary folder, then runs the real stage code
(``repbench.stages.neighbors.neighbors`` and ``repbench.stages.alignment.alignment``, exactly what the rules run) in one child
process per job, with the default config's ``neighbors`` and ``alignment`` options except ``kmax`` (and the device,
CPU). Each child reports its wall time and peak resident memory (``getrusage`` ``ru_maxrss``), i.e. what a
``resources: mem_mb`` request has to cover.

Usage: python benchmarks/alignment_scale.py [--n 50000] [--d 768] [--layers 4] [--kmax 64] [--spaces cosine,euclidean]
Last line: ``alignment_scale: n=<int> d=<int> layers=<int> kmax=<int> neighbors_s=<float> neighbors_peak_mb=<float>
alignment_s=<float> alignment_peak_mb=<float>`` (neighbors: the larger of the two models' jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))


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


class Inputs(dict):
    """A rule's named inputs as Snakemake hands them to a script: by name (``job.input.x``) and by key."""

    __getattr__ = dict.__getitem__


def child(job: str, spec: dict) -> None:
    """Run one stage in this process and print its wall time and peak RSS as JSON."""
    from repbench.config import canonical, load_config
    from repbench.stages import alignment, neighbors

    config, _ = load_config(ROOT / "config" / "config.yaml")
    start = time.perf_counter()
    if job == "neighbors":
        options = canonical({**{k: v for k, v in config["neighbors"].items() if k != "threads"},
                             "kmax": spec["kmax"], "device": "cpu"})
        partial_root = str(Path(spec["out"]).parent / ".partial")
        smk = SimpleNamespace(input=SimpleNamespace(activations=spec["store"]), output=[spec["out"]],
                              params=SimpleNamespace(poolings=["mean"], options=options, partial_root=partial_root),
                              wildcards=SimpleNamespace(space=spec["space"]))
        neighbors.neighbors(smk)
    else:
        options = canonical({**{k: v for k, v in config["alignment"].items() if k not in ("models", "enabled")},
                             "clip_quantile": config["neighbors"]["clip_quantile"]})
        inputs = {"activations_a": spec["stores"][0], "activations_b": spec["stores"][1]}
        for space, paths in spec["graphs"].items():  # the rule's input names: {space}_a, {space}_b
            inputs.update({f"{space}_a": paths[0], f"{space}_b": paths[1]})
        smk = SimpleNamespace(input=Inputs(inputs), output=[spec["out"]], params=SimpleNamespace(options=options),
                              wildcards=SimpleNamespace(pooling="mean"))
        alignment.alignment(smk)
        spec["options"] = options
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "options": spec.get("options")}))


def run_child(job: str, spec: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", job, json.dumps(spec)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{job} job failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--layers", type=int, default=4, help="layers per model (each job's memory is per layer)")
    parser.add_argument("--kmax", type=int, default=64)
    parser.add_argument("--spaces", default=None,
                        help="neighbour spaces, comma-separated (default: those the default config's alignment metrics "
                             "read, cosine and euclidean)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return
    import torch

    print(f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; N={args.n} D={args.d} "
          f"layers={args.layers} kmax={args.kmax}", flush=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache" if (ROOT / ".cache").exists() else None) as tmp:
        tmp = Path(tmp)
        stores = [str(tmp / f"model{m}.zarr") for m in range(2)]
        start = time.perf_counter()
        for m, path in enumerate(stores):
            write_store(Path(path), f"model{m}", args.n, args.d, args.layers, seed=m + 1)
        print(f"stores written in {time.perf_counter() - start:.1f} s "
              f"({args.layers} × {args.n} × {args.d} float32 each)", flush=True)
        if args.spaces:
            spaces = args.spaces.split(",")
        else:
            from repbench import registry
            from repbench.config import load_config

            spaces = registry.spaces_read(load_config(ROOT / "config" / "config.yaml")[0]["alignment"]["metrics"])
        graphs = {space: [str(tmp / f"model{m}.{space}.zarr") for m in range(2)] for space in spaces}
        neighbor_runs = []
        for m, path in enumerate(stores):
            for space in spaces:  # one neighbors job per (model, space), as in the workflow
                result = run_child("neighbors", {"store": path, "out": str(tmp / f"model{m}.{space}.zarr"),
                                                 "kmax": args.kmax, "space": space})
                neighbor_runs.append(result)
                print(f"neighbors job ({Path(path).stem}, {space}): {result['seconds']:.1f} s, "
                      f"peak RSS {result['peak_mb']:.0f} MB", flush=True)
        result = run_child("alignment", {"stores": stores, "graphs": graphs, "out": str(tmp / "pair.nc")})
        print(f"alignment job (all metrics, options {result['options']}): {result['seconds']:.1f} s, "
              f"peak RSS {result['peak_mb']:.0f} MB", flush=True)
        import xarray as xr

        with xr.open_dataset(tmp / "pair.nc", engine="scipy") as pair:
            for name in pair.data_vars:
                print(f"  {name}: max {float(pair[name].max()):.4f} at {pair.attrs[f'{name}_argmax_a']},"
                      f"{pair.attrs[f'{name}_argmax_b']}")
    worst = max(neighbor_runs, key=lambda r: r["peak_mb"])
    print(f"alignment_scale: n={args.n} d={args.d} layers={args.layers} kmax={args.kmax} "
          f"neighbors_s={max(r['seconds'] for r in neighbor_runs):.1f} neighbors_peak_mb={worst['peak_mb']:.0f} "
          f"alignment_s={result['seconds']:.1f} alignment_peak_mb={result['peak_mb']:.0f}")


if __name__ == "__main__":
    main()
