"""Benchmark: TwoNN + GRIDE from raw vectors, repbench vs DADApy 0.3.4 vs scikit-dimension, in one run.

Workload (seeded): N samples on a 10-D nonlinear manifold embedded in D = 768 dimensions plus small isotropic
noise, float32 (like stored activations): z ~ U(−1, 1)¹⁰, x = tanh(z A) B + 0.01·ε.

repbench path: exact euclidean k-NN graph (``repbench.neighbors.knn``, kmax = 64; if that module cannot be
imported, a float64 brute-force fallback defined here, and the output says so), then
``twonn(discard_fraction=0.1)`` and ``gride`` at n₁ = 1, 2, …, 32.

DADApy path (a separate virtual environment, because DADApy 0.3.4 needs numpy < 2): ``Data(coordinates=X)``,
``compute_distances(maxk=64)``, ``compute_id_2NN()``, ``return_id_scaling_gride(range_max=64)``. The venv is
created on first use in ``.cache/dadapy-venv`` (git-ignored) and reused; ``--dadapy-python`` points at an
existing interpreter instead. X goes to the subprocess as a .npy file; the subprocess times only the DADApy
calls (not its interpreter start, imports or the file load).

scikit-dimension path: ``skdim.id.TwoNN().fit(X)`` (TwoNN only: it has no GRIDE on a precomputed graph).

All three run on the same X on this machine's cores. Times exclude data generation.
ratio_vs_dadapy = dadapy_s / repbench_s (> 1: repbench is faster). max_rel_diff = the largest
|repbench − DADApy| / |DADApy| over the TwoNN estimate and every GRIDE scale.

GEMM floor: the time of just the float32 matrix product the exact graph cannot avoid, timed on the same X in the
same run: X[I]·X[I:]ᵀ for every block I of 2048 rows (the upper triangle of XXᵀ, N²·D FLOP, what repbench's
symmetric tiles multiply), with torch on all threads and with numpy; the faster of the two. graph_vs_floor =
repbench's graph time / that floor (1 would be a graph that costs only its product). The estimators are compared
on their own: repbench's TwoNN + GRIDE on the graph's distances vs DADApy's ``compute_id_2NN`` +
``return_id_scaling_gride`` after its ``compute_distances``.

Usage: python benchmarks/intrinsic_dim.py [--quick] [--n N] [--dadapy-python PATH] [--knn repbench|fallback]
Last line: ``intrinsic_dim: n=<int> repbench_s=<float> dadapy_s=<float> skdim_s=<float> ratio_vs_dadapy=<float>
graph_s=<float> gemm_floor_s=<float> graph_vs_floor=<float> estimators_s=<float> dadapy_estimators_s=<float>
dadapy_graph_s=<float> max_rel_diff=<float>``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import venv

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))

from repbench.metrics.intrinsic_dim import gride, gride_scales, twonn

KMAX = 64
GRIDE_MAX_N1 = 32
DISCARD_FRACTION = 0.1
DADAPY_REQUIREMENTS = ["numpy<2", "dadapy==0.3.4"]
DEFAULT_DADAPY_VENV = ROOT / ".cache" / "dadapy-venv"

DADAPY_WORKER = r"""
import json, sys, time, warnings
import numpy as np
from dadapy import Data
X = np.load(sys.argv[1])
maxk, range_max = int(sys.argv[2]), int(sys.argv[3])
warnings.simplefilter("ignore")
start = time.perf_counter()
data = Data(coordinates=X)
data.compute_distances(maxk=maxk)
graph_seconds = time.perf_counter() - start
twonn_id = data.compute_id_2NN()[0]
ids, errors, scales = data.return_id_scaling_gride(range_max=range_max)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "graph_seconds": graph_seconds, "twonn": float(twonn_id),
                  "gride": [float(v) for v in ids], "numpy": np.__version__}))
"""


def synthetic_manifold(n: int, ambient_dim: int = 768, latent_dim: int = 10, hidden: int = 64,
                       noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """float32 (n, ambient_dim): tanh(z A) B + noise·ε with z ~ U(−1, 1)^latent_dim (a 10-D curved manifold)."""
    rng = np.random.default_rng(seed)
    latent = rng.uniform(-1.0, 1.0, size=(n, latent_dim))
    lift = rng.standard_normal((latent_dim, hidden))
    embed = rng.standard_normal((hidden, ambient_dim)) / np.sqrt(hidden)
    X = np.tanh(latent @ lift) @ embed + noise * rng.standard_normal((n, ambient_dim))
    return X.astype(np.float32)


def fallback_knn(X: np.ndarray, kmax: int, block: int = 1024):
    """Brute force: float64 Gram-trick candidates (kmax + 16), exact float64 re-ranking by (distance, index)."""
    import torch

    points = torch.from_numpy(np.asarray(X, dtype=np.float64))
    sq_norms = (points * points).sum(1)
    n = points.shape[0]
    width = min(kmax + 16, n - 1)
    indices = np.empty((n, kmax), dtype=np.int32)
    distances = np.empty((n, kmax), dtype=np.float64)
    for start in range(0, n, block):
        rows = torch.arange(start, min(start + block, n))
        approx = sq_norms[rows, None] + sq_norms[None, :] - 2.0 * points[rows] @ points.T
        approx[torch.arange(len(rows)), rows] = float("inf")
        cand = torch.topk(approx, width, dim=1, largest=False).indices.sort(dim=1).values
        exact = torch.empty(cand.shape, dtype=torch.float64)
        for sub in range(0, len(rows), 64):  # (64, width, D) float64 differences at a time
            part = slice(sub, sub + 64)
            diff = points[cand[part]] - points[rows[part]][:, None, :]
            exact[part] = torch.einsum("bcd,bcd->bc", diff, diff).sqrt()
        order = torch.sort(exact, dim=1, stable=True).indices[:, :kmax]
        indices[start:start + len(rows)] = cand.gather(1, order).numpy()
        distances[start:start + len(rows)] = exact.gather(1, order).numpy()
    return indices, distances


def resolve_knn(choice: str):
    """The graph builder: repbench.neighbors.knn unless asked for (or forced to) the local fallback."""
    if choice == "repbench":
        try:
            from repbench.neighbors import knn
        except ImportError:
            pass
        else:
            return (lambda X, k: knn(X, k, space="euclidean")), "repbench.neighbors.knn(space='euclidean')"
        return fallback_knn, "fallback brute force in this script (repbench.neighbors not importable)"
    return fallback_knn, "fallback brute force in this script (--knn fallback)"


def gemm_floor(X: np.ndarray, block: int = 2048) -> dict:
    """Seconds of the upper-triangle product X[I]·X[I:]ᵀ over blocks I of ``block`` rows (N²·D FLOP + the
    diagonal blocks' other half), float32, in torch (all threads) and in numpy; only the products are timed."""
    import torch

    n, d = X.shape
    flops = sum(2.0 * min(block, n - i) * (n - i) * d for i in range(0, n, block))
    Xt = torch.from_numpy(X)
    torch.mm(Xt[:block], Xt[:block].T)  # warm-up
    X[:block] @ X[:block].T
    out = {"flops": flops}
    for name, product in (("torch", lambda i: torch.mm(Xt[i:i + block], Xt[i:].T)),
                          ("numpy", lambda i: X[i:i + block] @ X[i:].T)):
        start = time.perf_counter()
        for i in range(0, n, block):
            product(i)
        out[name] = time.perf_counter() - start
    out["seconds"] = min(out["torch"], out["numpy"])
    return out


def run_repbench(X: np.ndarray, knn_choice: str) -> dict:
    knn, knn_name = resolve_knn(knn_choice)
    start = time.perf_counter()
    _, distances = knn(X, KMAX)
    graph_s = time.perf_counter() - start
    twonn_id = twonn(distances, DISCARD_FRACTION)
    estimates = gride(distances, gride_scales(GRIDE_MAX_N1))
    total_s = time.perf_counter() - start
    return {"seconds": total_s, "graph_seconds": graph_s, "knn": knn_name, "twonn": twonn_id,
            "gride": [e.dimension for e in estimates], "gride_stderr": [e.stderr for e in estimates],
            "gride_scale": [e.scale for e in estimates]}


def dadapy_python(explicit: str | None) -> pathlib.Path:
    """An interpreter with DADApy 0.3.4 and numpy < 2: ``explicit``, or the cached venv (created if needed)."""
    if explicit:
        return pathlib.Path(explicit)
    python = DEFAULT_DADAPY_VENV / "bin" / "python"
    probe = [str(python), "-c", "import dadapy, numpy; assert numpy.__version__ < '2'"]
    if python.exists() and subprocess.run(probe, check=False, capture_output=True).returncode == 0:
        return python
    print(f"creating {DEFAULT_DADAPY_VENV} with {' '.join(DADAPY_REQUIREMENTS)} (first run only) ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(DEFAULT_DADAPY_VENV)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *DADAPY_REQUIREMENTS], check=True)
    return python


def run_dadapy(X: np.ndarray, python: pathlib.Path) -> dict:
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        data_path = pathlib.Path(tmp) / "X.npy"
        np.save(data_path, X)
        done = subprocess.run([str(python), "-c", DADAPY_WORKER, str(data_path), str(KMAX), str(2 * GRIDE_MAX_N1)],
                              check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"DADApy subprocess failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_skdim(X: np.ndarray) -> dict:
    import skdim

    start = time.perf_counter()
    dimension = skdim.id.TwoNN(discard_fraction=DISCARD_FRACTION).fit(X).dimension_
    return {"seconds": time.perf_counter() - start, "twonn": float(dimension)}


def relative_differences(ours: dict, theirs: dict) -> list[float]:
    pairs = [(ours["twonn"], theirs["twonn"])] + list(zip(ours["gride"], theirs["gride"], strict=True))
    return [abs(a - b) / abs(b) for a, b in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with N = 2000")
    parser.add_argument("--n", type=int, default=None, help="number of samples (default 20000, 2000 with --quick)")
    parser.add_argument("--dadapy-python", default=None, help="interpreter with dadapy==0.3.4 and numpy<2")
    parser.add_argument("--knn", choices=["repbench", "fallback"], default="repbench",
                        help="graph builder for the repbench path (default repbench.neighbors.knn)")
    args = parser.parse_args()
    n = args.n or (2000 if args.quick else 20000)
    (ROOT / ".cache").mkdir(exist_ok=True)

    import torch

    X = synthetic_manifold(n)
    print(f"workload: N={n} D={X.shape[1]} float32, 10-D manifold + noise 0.01; kmax={KMAX}, "
          f"GRIDE n1 = {gride_scales(GRIDE_MAX_N1)}; CPU cores={os.cpu_count()}, "
          f"torch threads={torch.get_num_threads()}")
    python = dadapy_python(args.dadapy_python)

    floor = gemm_floor(X)
    print(f"GEMM floor: {floor['seconds']:.2f} s for the N²·D float32 product ({floor['flops'] / 1e9:.0f} GFLOP; "
          f"torch {floor['torch']:.2f} s, numpy {floor['numpy']:.2f} s: "
          f"{floor['flops'] / floor['seconds'] / 1e9:.1f} GFLOP/s)")
    ours = run_repbench(X, args.knn)
    ours_est = ours["seconds"] - ours["graph_seconds"]
    print(f"repbench: {ours['seconds']:.2f} s (graph {ours['graph_seconds']:.2f} s via {ours['knn']} = "
          f"{ours['graph_seconds'] / floor['seconds']:.2f}× the GEMM floor {floor['seconds']:.2f} s; "
          f"estimators {ours_est:.3f} s)")
    theirs = run_dadapy(X, python)
    theirs_est = theirs["seconds"] - theirs["graph_seconds"]
    print(f"dadapy:   {theirs['seconds']:.2f} s (compute_distances {theirs['graph_seconds']:.2f} s, "
          f"compute_id_2NN + return_id_scaling_gride {theirs_est:.3f} s; numpy {theirs['numpy']})")
    print(f"estimators: repbench {ours_est:.3f} s vs DADApy {theirs_est:.3f} s "
          f"({theirs_est / ours_est:.1f}×); graph: repbench {ours['graph_seconds']:.2f} s vs DADApy "
          f"{theirs['graph_seconds']:.2f} s vs GEMM floor {floor['seconds']:.2f} s")
    skdim_result = run_skdim(X)
    print(f"skdim:    {skdim_result['seconds']:.2f} s (TwoNN().fit only)")

    print(f"{'estimate':<12}{'repbench':>14}{'dadapy':>14}{'skdim':>14}{'rel diff':>12}")
    diffs = relative_differences(ours, theirs)
    print(f"{'twonn':<12}{ours['twonn']:>14.6f}{theirs['twonn']:>14.6f}{skdim_result['twonn']:>14.6f}{diffs[0]:>12.2e}")
    for n1, a, b, diff, err, scale in zip(gride_scales(GRIDE_MAX_N1), ours["gride"], theirs["gride"], diffs[1:],
                                         ours["gride_stderr"], ours["gride_scale"]):
        print(f"{f'gride n1={n1}':<12}{a:>14.6f}{b:>14.6f}{'':>14}{diff:>12.2e}   ± {err:.4f} at scale {scale:.4f}")
    ratio = theirs["seconds"] / ours["seconds"]
    print(f"speed: dadapy/repbench = {ratio:.2f}x, skdim/repbench = {skdim_result['seconds'] / ours['seconds']:.2f}x "
          f"(skdim computes TwoNN only)")
    print(f"intrinsic_dim: n={n} repbench_s={ours['seconds']:.3f} dadapy_s={theirs['seconds']:.3f} "
          f"skdim_s={skdim_result['seconds']:.3f} ratio_vs_dadapy={ratio:.3f} graph_s={ours['graph_seconds']:.3f} "
          f"gemm_floor_s={floor['seconds']:.3f} graph_vs_floor={ours['graph_seconds'] / floor['seconds']:.3f} "
          f"estimators_s={ours_est:.4f} dadapy_estimators_s={theirs_est:.4f} "
          f"dadapy_graph_s={theirs['graph_seconds']:.3f} max_rel_diff={max(diffs):.3e}")


if __name__ == "__main__":
    main()
