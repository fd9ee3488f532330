"""Entry points: the adapters Snakemake rules call (``run_rule``), and a small command line for people.

Every rule runs ``workflow/scripts/run_stage.py``, which calls :func:`run_rule`; it sends the job's stdout and
stderr (tqdm bars included) to the rule's log, heads the log with provenance (host, GPU, versions) and ends
it with the job's wall time. The rule name picks the stage function below; each takes plain values.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import pandas as pd

from . import __version__, store


# ------------------------------------------------------------------------------------------ job logging
@contextlib.contextmanager
def redirect_output(log_path: str | Path):
    """Send this process's fds 1 and 2 (Python and C-level writes) to ``log_path``; restore on exit."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def provenance_header() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [
        f"host: {platform.node()}",
        f"slurm_job_id: {os.environ.get('SLURM_JOB_ID', '')}",
        f"gpu: {gpu}  CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}",
        f"python {platform.python_version()}  repbench {__version__}  torch {torch.__version__}",
    ]
    return "\n".join(lines)


def run_rule(smk) -> None:
    """Run the stage named by ``smk.rule`` with the job's stdout/stderr in its log."""
    import torch

    torch.set_num_threads(max(1, int(smk.threads)))
    stage = STAGES[smk.rule]
    start = time.perf_counter()
    with redirect_output(smk.log[0]):
        print(f"== repbench rule {smk.rule} {dict(smk.wildcards)}\n{provenance_header()}", flush=True)
        try:
            stage(smk)
        except BaseException:
            traceback.print_exc()
            raise
        finally:
            print(f"wall_time_s: {time.perf_counter() - start:.3f}", flush=True)


# ------------------------------------------------------------------------------------------------ stages
def stage_extract(smk) -> None:
    from .extract import extract

    p = smk.params
    extract(
        model_name=smk.wildcards.model,
        model_spec=p.model_spec,
        revision=p.revision,
        dataset_name=smk.wildcards.dataset,
        dataset_spec=p.dataset_spec,
        options=p.options,
        output=smk.output[0],
        partial_root=p.partial_root,
    )


def layer_table(store_path: str | Path, poolings: list[str], layer_metrics, params: dict) -> pd.DataFrame:
    """Tidy rows ``dataset, model, pooling, layer, n_layers, relative_depth, metric, value`` of a per-layer family.

    ``layer_metrics(X, params) -> {metric: value}`` runs on each layer's ``(sample, feature)`` Dask array.
    """
    attrs = store.activation_attrs(store_path)
    rows = []
    for pooling in poolings:
        arr = store.pooling_array(store_path, pooling)
        n_layers = arr.shape[0]
        for layer in range(n_layers):
            for metric, value in layer_metrics(arr[layer], params).items():
                rows.append(
                    dict(dataset=attrs["dataset"], model=attrs["model"], pooling=pooling, layer=layer,
                         n_layers=n_layers, relative_depth=layer / max(1, n_layers - 1), metric=metric,
                         value=value, store_hash=attrs["config_hash"])
                )
    return pd.DataFrame(rows)


def stage_geometry(smk) -> None:
    import dask

    from .metrics import geometry

    with dask.config.set(scheduler="threads", num_workers=int(smk.threads)):
        frame = layer_table(smk.input[0], smk.params.poolings, geometry.layer_metrics, smk.params.options)
    store.write_csv_atomic(frame, smk.output[0])


def concat_tables(paths: list[str | Path]) -> pd.DataFrame:
    """Concatenate per-model tables in a stable order (sorted by every key column)."""
    frame = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    keys = [c for c in ("dataset", "model", "pooling", "layer", "metric") if c in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def stage_table(smk) -> None:
    store.write_csv_atomic(concat_tables(list(smk.input)), smk.output[0])


def stage_figure(smk) -> None:
    """Metric vs relative depth for one family on one dataset, one line per model."""
    from . import figures

    frame = pd.read_csv(smk.input[0])
    family, dataset, pooling = smk.wildcards.family, smk.wildcards.dataset, smk.params.pooling
    sub = frame[(frame["pooling"] == pooling) & (frame["dataset"] == dataset)]
    if sub.empty:
        raise ValueError(f"{smk.input[0]} has no rows for dataset {dataset!r} and pooling {pooling!r}")
    fig = figures.depth_curves(sub, sorted(sub["metric"].unique()), title=f"{family} · {dataset} · {pooling} pooling")
    figures.save(fig, list(smk.output), dpi=smk.params.dpi)


STAGES = {
    "extract": stage_extract,
    "geometry": stage_geometry,
    "table": stage_table,
    "figure": stage_figure,
}


# ------------------------------------------------------------------------------------------ command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="repbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"repbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="validate a config file and list the model instances")
    v.add_argument("config")
    i = sub.add_parser("info", help="summarise an activation store")
    i.add_argument("store")
    args = parser.parse_args(argv)
    if args.command == "validate":
        from .config import ConfigError, datasets_for, load_config

        try:
            config, instances = load_config(args.config)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for inst in instances:
            print(f"{inst.name}: {', '.join(datasets_for(inst, config))}")
        return 0
    ds = store.open_activations(args.store)
    print(ds)
    print({k: ds.attrs[k] for k in ("model", "dataset", "n_samples", "config_hash") if k in ds.attrs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
