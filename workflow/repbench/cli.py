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

import numpy as np
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


TORCH_STAGES = {"extract", "train", "neighbors", "spectra", "intrinsic_dim"}  # the others never import torch (it costs seconds)


def provenance_header(uses_torch: bool) -> str:
    lines = [
        f"host: {platform.node()}",
        f"slurm_job_id: {os.environ.get('SLURM_JOB_ID', '')}",
        f"python {platform.python_version()}  repbench {__version__}",
    ]
    if uses_torch:
        import torch
        import transformers

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        lines.append(f"gpu: {gpu}  CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}")
        lines.append(f"torch {torch.__version__}  transformers {transformers.__version__}")
    return "\n".join(lines)


def run_rule(smk) -> None:
    """Run the stage named by ``smk.rule`` with the job's stdout/stderr in its log."""
    stage = STAGES[smk.rule]
    uses_torch = smk.rule in TORCH_STAGES
    if uses_torch:
        import torch

        torch.set_num_threads(max(1, int(smk.threads)))
    start = time.perf_counter()
    with redirect_output(smk.log[0]):
        print(f"== repbench rule {smk.rule} {dict(smk.wildcards)}\n{provenance_header(uses_torch)}", flush=True)
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


def model_columns(store_path: str | Path, info: dict) -> dict:
    """Identity columns of every per-model row: dataset, model, base_model, revision, step, store_hash."""
    attrs = store.activation_attrs(store_path)
    return dict(dataset=attrs["dataset"], model=attrs["model"], base_model=info["base_model"],
                revision=info["revision"] or "", step=info["step"], store_hash=attrs["config_hash"])


def layer_table(n_layers: int, poolings: list[str], layer_rows, identity: dict) -> pd.DataFrame:
    """Tidy per-layer table: identity columns, ``pooling, layer, n_layers, relative_depth`` and the metric rows.

    ``layer_rows(pooling, layer) -> [{"metric": ..., "value": ..., ...}]`` computes one layer.
    """
    rows = []
    for pooling in poolings:
        for layer in range(n_layers):
            for row in layer_rows(pooling, layer):
                rows.append({**identity, "pooling": pooling, "layer": layer, "n_layers": n_layers,
                             "relative_depth": layer / max(1, n_layers - 1), **row})
    return pd.DataFrame(rows)


def n_layers_of(store_path: str | Path) -> int:
    return int(store.zarr.open_group(str(store_path), mode="r")["layer"].shape[0])


def stage_geometry(smk) -> None:
    import dask

    from .metrics import geometry

    acts = smk.input.activations
    arrays = {p: store.pooling_array(acts, p) for p in smk.params.poolings}

    def rows(pooling, layer):
        values = geometry.layer_metrics(arrays[pooling][layer], smk.params.options)
        return [{"metric": m, "value": v} for m, v in values.items()]

    with dask.config.set(scheduler="threads", num_workers=int(smk.threads)):
        frame = layer_table(n_layers_of(acts), smk.params.poolings, rows, model_columns(acts, smk.params.info))
    store.write_csv_atomic(frame, smk.output[0])


def stage_spectra(smk) -> None:
    """Per pooling and layer the spectra of :mod:`repbench.spectra`, stacked to ``(layer, rank)`` arrays."""
    from tqdm.auto import tqdm

    from .spectra import SpectrumInputError, spectra_from_dask

    acts = smk.input.activations
    attrs = store.activation_attrs(acts)
    groups = {}
    for pooling in smk.params.poolings:
        arr = store.pooling_array(acts, pooling)
        per_layer = []
        for layer in tqdm(range(arr.shape[0]), desc=f"spectra {pooling}", mininterval=2):
            try:
                per_layer.append(spectra_from_dask(arr[layer]))
            except SpectrumInputError as exc:
                raise SpectrumInputError(f"model {attrs['model']!r}, layer {layer}, pooling {pooling!r}: {exc}",
                                         exc.rows) from None
        groups[pooling] = {k: np.stack([s[k] for s in per_layer]) for k in per_layer[0]}
    provenance = {"model": attrs["model"], "dataset": attrs["dataset"], "activations_hash": attrs["config_hash"],
                  "repbench_version": __version__}
    store.write_layer_arrays(smk.output[0], groups, ("layer", "rank"), provenance)


def stage_spectral(smk) -> None:
    from .metrics import spectral

    config = smk.params.options
    fit_config = {"metrics": config["metrics"], "alpha_req": config["alpha_req"]}
    spectra = {p: store.read_layer_arrays(smk.input.spectra, p) for p in smk.params.poolings}

    def rows(pooling, layer):
        return spectral.layer_metrics({k: v[layer] for k, v in spectra[pooling].items()}, fit_config)

    acts = smk.input.activations
    frame = layer_table(n_layers_of(acts), smk.params.poolings, rows, model_columns(acts, smk.params.info))
    store.write_csv_atomic(frame, smk.output[0])


def stage_neighbors(smk) -> None:
    """Exact k-NN graphs of every layer, per pooling and space: ``indices`` int32, ``distances`` float32."""
    from tqdm.auto import tqdm

    from .preprocess import preprocess
    from .neighbors import knn

    acts, p = smk.input.activations, smk.params
    attrs = store.activation_attrs(acts)
    device = None if p.options["device"] == "auto" else p.options["device"]
    groups = {}
    for pooling in p.poolings:
        arr = store.pooling_array(acts, pooling)
        for space in p.spaces:
            idx, dist = [], []
            clip = p.clip_quantile if space == "cosine" else None  # alignment's preprocessing, recorded below
            for layer in tqdm(range(arr.shape[0]), desc=f"neighbors {pooling}-{space}", mininterval=2):
                X = arr[layer].compute()
                try:
                    i, d = knn(preprocess(X, clip) if clip else X, p.options["kmax"], space=space, device=device,
                               budget_bytes=p.options["budget_mb"] * 2**20)
                except ValueError as exc:
                    raise ValueError(f"model {attrs['model']!r}, layer {layer}, pooling {pooling!r}: {exc}") from None
                idx.append(i)
                dist.append(d)
            groups[f"{pooling}-{space}"] = {"indices": np.stack(idx), "distances": np.stack(dist)}
    provenance = {"model": attrs["model"], "dataset": attrs["dataset"], "activations_hash": attrs["config_hash"],
                  "kmax": p.options["kmax"], "repbench_version": __version__,
                  "cosine_clip_quantile": p.clip_quantile if p.clip_quantile else "none",
                  "tie_break": "ascending distance, then lower index; self excluded"}
    store.write_layer_arrays(smk.output[0], groups, ("layer", "sample", "neighbor"), provenance)


def stage_intrinsic_dim(smk) -> None:
    """Every configured ID estimator per layer, on the raw vectors' exact euclidean graph."""
    from .metrics.intrinsic_dim import estimate_layer

    acts = smk.input.activations
    attrs = store.activation_attrs(acts)
    config = {k: v for k, v in smk.params.options.items() if k not in ("figure_gride_n1", "scale_figure_layers")}
    graphs = {p: store.read_layer_arrays(smk.input.neighbors, f"{p}-euclidean") for p in smk.params.poolings}
    arrays = {p: store.pooling_array(acts, p) for p in smk.params.poolings}

    def rows(pooling, layer):
        X = np.asarray(arrays[pooling][layer])
        graph = graphs[pooling]
        try:
            out = estimate_layer(X, graph["indices"][layer], graph["distances"][layer], config)
        except ValueError as exc:
            raise ValueError(f"model {attrs['model']!r}, layer {layer}, pooling {pooling!r}: {exc}") from None
        return [{"metric": r.pop("estimator"), **r} for r in out]

    frame = layer_table(n_layers_of(acts), smk.params.poolings, rows, model_columns(acts, smk.params.info))
    store.write_csv_atomic(frame, smk.output[0])


class StoreLayers:
    """One pooling's layers of an activation store as a lazy sequence: ``layers[i]`` reads layer i (float32,
    or float64 clipped at the |x| quantile when configured). The alignment metrics read each layer when they
    need it, so a pair job holds a bounded number of (N, D) layers at a time, not all of them."""

    def __init__(self, store_path: str | Path, pooling: str, clip_quantile: float | None):
        group = store.zarr.open_group(str(store_path), mode="r")
        if pooling not in group:
            raise KeyError(f"{store_path}: no pooling {pooling!r}")
        self.array, self.clip_quantile = group[pooling], clip_quantile
        self.where = f"model {group.attrs.get('model', str(store_path))!r}, pooling {pooling!r}"

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, layer: int) -> np.ndarray:
        from .preprocess import preprocess

        X = self.array[layer]
        if not np.isfinite(X).all():
            raise ValueError(f"{self.where}, layer {layer}: activations contain non-finite values")
        return preprocess(X, self.clip_quantile) if self.clip_quantile else X


def pair_result(acts_a, acts_b, graphs_a, graphs_b, pooling: str, options: dict):
    """All alignment metrics of one model pair as an ``xarray.Dataset`` of (layer_a, layer_b) matrices.

    Attributes carry k, N, the preprocessing, each metric's summaries (max and its (layer_a, layer_b), last,
    matched depth), the permutation-null statistics of ``null_metrics`` and bootstrap intervals of the kNN
    metrics' per-sample terms at the maximising layer pair.
    """
    import xarray as xr

    from .metrics import alignment as al

    attrs_a, attrs_b = store.activation_attrs(acts_a), store.activation_attrs(acts_b)
    ids_a = store.zarr.open_group(str(acts_a), mode="r")["sample"][...]
    ids_b = store.zarr.open_group(str(acts_b), mode="r")["sample"][...]
    if len(ids_a) != len(ids_b) or (ids_a != ids_b).any():
        raise ValueError(f"{attrs_a['model']!r} and {attrs_b['model']!r} were not extracted on the same sample ids")
    k, metrics, clip = options["k"], options["metrics"], options["clip_quantile"]
    needs_features = any(al.METRICS[m].uses_features for m in metrics)
    layers_a = StoreLayers(acts_a, pooling, clip) if needs_features else None
    layers_b = StoreLayers(acts_b, pooling, clip) if needs_features else None
    prepared = [al.prepare_model(layers, graphs, k, metrics, svcca_variance=options["svcca_variance"])
                for layers, graphs in ((layers_a, graphs_a), (layers_b, graphs_b))]
    mats = al.pair_matrices_prepared(*prepared, metrics)
    n_a, n_b = next(iter(mats.values())).shape
    ds = xr.Dataset({m: (("layer_a", "layer_b"), v) for m, v in mats.items()},
                    coords={"layer_a": np.arange(n_a), "layer_b": np.arange(n_b)})
    ds.attrs.update(dataset=attrs_a["dataset"], pooling=pooling, model_a=attrs_a["model"], model_b=attrs_b["model"],
                    n_parameters_a=attrs_a.get("model_n_parameters", -1),
                    n_parameters_b=attrs_b.get("model_n_parameters", -1), k=k, n_samples=len(ids_a),
                    clip_quantile=clip if clip else "none", repbench_version=__version__,
                    activations_hash_a=attrs_a["config_hash"], activations_hash_b=attrs_b["config_hash"])
    per_sample = {"mutual_knn": al.mutual_knn_per_sample, "cycle_knn_ab": al.cycle_knn_per_sample,
                  "cycle_knn_ba": lambda a, b, k: al.cycle_knn_per_sample(b, a, k), "lcs_knn": al.lcs_knn_per_sample}
    for m, mat in mats.items():
        summary = al.summarize(mat)
        ds.attrs.update({f"{m}_max": summary["max"], f"{m}_argmax_a": summary["argmax"][0],
                         f"{m}_argmax_b": summary["argmax"][1], f"{m}_last": summary["last"],
                         f"{m}_matched_depth": summary["matched_depth"]})
        if m in per_sample and options["bootstrap"] and summary["argmax"][0] >= 0:
            i, j = summary["argmax"]
            low, high = al.bootstrap_ci(per_sample[m](graphs_a[i], graphs_b[j], k), options["bootstrap"], options["seed"])
            ds.attrs.update({f"{m}_max_ci_low": low, f"{m}_max_ci_high": high})
    if options["null_permutations"] and options["null_metrics"]:
        null = al.null_calibration_prepared(*prepared, options["null_metrics"], options["null_permutations"],
                                            options["seed"], observed=mats)
        for m, by_summary in null.items():
            for summary, stats in by_summary.items():
                for key in ("null_mean", "null_std", "z", "p_value"):
                    ds.attrs[f"{m}_{summary}_{key}"] = stats[key]
        ds.attrs["null_permutations"] = options["null_permutations"]
    return ds


def stage_alignment(smk) -> None:
    from .metrics import alignment as al

    options, pooling = smk.params.options, smk.wildcards.pooling
    graphs = [None, None]
    if any(al.METRICS[m].uses_graphs for m in options["metrics"]):
        graphs = [store.read_layer_arrays(g, f"{pooling}-cosine", names=("indices",))["indices"]
                  for g in (smk.input.neighbors_a, smk.input.neighbors_b)]
    ds = pair_result(smk.input.activations_a, smk.input.activations_b, graphs[0], graphs[1], pooling, options)
    out = Path(smk.output[0])
    tmp = out.with_name(f".{out.name}.partial")
    ds.to_netcdf(tmp, engine="scipy")
    store.publish(tmp, out)


ALIGNMENT_COLUMNS = ["dataset", "pooling", "model_a", "model_b", "n_parameters_a", "n_parameters_b", "metric", "k",
                     "n_samples", "max", "argmax_a", "argmax_b", "last", "matched_depth", "max_ci_low", "max_ci_high"]


def alignment_table(paths: list[str | Path]) -> pd.DataFrame:
    """One row per (pair, metric) with the summaries and null statistics from the pair files' attributes."""
    import xarray as xr

    rows = []
    for path in paths:
        with xr.open_dataset(path, engine="scipy") as ds:
            a = ds.attrs
            for m in ds.data_vars:
                row = {c: a.get(c) for c in ALIGNMENT_COLUMNS[:6]} | {"metric": m, "k": a["k"], "n_samples": a["n_samples"]}
                for key in ALIGNMENT_COLUMNS[9:]:
                    row[key] = a.get(f"{m}_{key}", np.nan)
                for summary in ("max", "last", "matched_depth"):
                    for key in ("null_mean", "null_std", "z", "p_value"):
                        row[f"{summary}_{key}"] = a.get(f"{m}_{summary}_{key}", np.nan)
                rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values(["dataset", "pooling", "model_a", "model_b", "metric"], kind="stable").reset_index(drop=True)


def stage_alignment_table(smk) -> None:
    store.write_csv_atomic(alignment_table(list(smk.input)), smk.output[0])


def stage_figure_alignment(smk) -> None:
    """The PRH plots: model × model heatmap (clustered), layer × layer grid, alignment vs model size."""
    import xarray as xr

    from . import figures
    from .figures import alignment as fa

    dataset, pooling, metric, summary = (smk.wildcards.dataset, smk.params.pooling, smk.params.metric,
                                         smk.params.summary)
    table = pd.read_csv(smk.input.table)
    table = table[(table["dataset"] == dataset) & (table["pooling"] == pooling) & (table["metric"] == metric)]
    outputs = list(smk.output)
    n = len(outputs) // 3
    title = f"{metric} ({summary}) · {dataset} · {pooling}"
    figures.save(fa.model_heatmap(table, summary, title=title), outputs[:n], dpi=smk.params.dpi)
    matrices = {}
    for path in smk.input.pairs:
        with xr.open_dataset(path, engine="scipy") as ds:
            matrices[(ds.attrs["model_a"], ds.attrs["model_b"])] = ds[metric].values
    figures.save(fa.layer_grid(matrices, title=f"{metric} layer × layer · {dataset} · {pooling}"), outputs[n : 2 * n],
                 dpi=smk.params.dpi)
    figures.save(fa.size_plot(table, summary, title=title), outputs[2 * n :], dpi=smk.params.dpi)


def stage_train(smk) -> None:
    from .data import load_samples
    from .train import train_checkpoints

    samples = load_samples(smk.params.dataset_name, smk.params.dataset_spec)
    train_checkpoints(smk.wildcards.model, smk.params.model_spec, samples, smk.output[0])


def phase_table(spectral_table: pd.DataFrame, layer: int, smooth: float, flat_tol: float) -> pd.DataFrame:
    """Training phases per (dataset, base model, pooling) from RankMe (σ) and α-ReQ at one layer vs step.

    Only models with at least three checkpoints that carry a step take part; see
    :func:`repbench.metrics.spectral.detect_phases` for the rule.
    """
    from .metrics.spectral import detect_phases

    columns = ["dataset", "base_model", "pooling", "layer", "start_step", "end_step", "phase"]
    frame = spectral_table.dropna(subset=["step"])
    out = []
    for (dataset, base, pooling), group in frame.groupby(["dataset", "base_model", "pooling"], sort=True):
        n_layers = int(group["n_layers"].iloc[0])
        chosen = layer % n_layers
        at_layer = group[group["layer"] == chosen]
        wide = at_layer.pivot_table(index="step", columns="metric", values="value").sort_index()
        if len(wide) < 3 or not {"rankme_sigma", "alpha_req"} <= set(wide.columns):
            continue
        if wide[["rankme_sigma", "alpha_req"]].isna().any().any():
            continue
        for seg in detect_phases(wide.index.to_numpy(), wide["rankme_sigma"].to_numpy(),
                                 wide["alpha_req"].to_numpy(), smooth=smooth, flat_tol=flat_tol):
            out.append(dict(dataset=dataset, base_model=base, pooling=pooling, layer=chosen, **seg))
    return pd.DataFrame(out, columns=columns)


def stage_phases(smk) -> None:
    p = smk.params.options
    frame = phase_table(pd.read_csv(smk.input[0]), p["layer"], p["smooth"], p["flat_tol"])
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
    title = f"{family} · {dataset} · {pooling} pooling"
    if family == "intrinsic_dim":
        from .figures.intrinsic_dim import depth_figure

        fig = depth_figure(sub, gride_n1=smk.params.options["figure_gride_n1"], title=title)
    else:
        fig = figures.depth_curves(sub, sorted(sub["metric"].unique()), title=title)
    figures.save(fig, list(smk.output), dpi=smk.params.dpi)


def stage_figure_id_scales(smk) -> None:
    from . import figures
    from .figures.intrinsic_dim import local_id_figure, scale_figure

    dataset, pooling = smk.wildcards.dataset, smk.params.pooling
    table = pd.read_csv(smk.input[0])
    table = table[(table["dataset"] == dataset) & (table["pooling"] == pooling)]
    scales, local = list(smk.output)[: len(smk.output) // 2], list(smk.output)[len(smk.output) // 2 :]
    figures.save(scale_figure(table, smk.params.depths, title=f"GRIDE ID vs scale · {dataset} · {pooling}"),
                 scales, dpi=smk.params.dpi)
    figures.save(local_id_figure(table, title=f"local ID per layer · {dataset} · {pooling}"), local,
                 dpi=smk.params.dpi)


def stage_figure_spectral_steps(smk) -> None:
    from . import figures
    from .figures.spectral import steps_figure

    dataset, pooling = smk.wildcards.dataset, smk.params.pooling
    table = pd.read_csv(smk.input.table)
    phases = pd.read_csv(smk.input.phases)
    table = table[(table["dataset"] == dataset) & (table["pooling"] == pooling)]
    phases = phases[(phases["dataset"] == dataset) & (phases["pooling"] == pooling)]
    fig = steps_figure(table, phases, smk.params.layer, title=f"spectral phases · {dataset} · {pooling} pooling")
    figures.save(fig, list(smk.output), dpi=smk.params.dpi)


def stage_figure_eigenspectrum(smk) -> None:
    from . import figures
    from .figures.spectral import eigenspectrum_figure

    dataset, pooling = smk.wildcards.dataset, smk.params.pooling
    spectra = {}
    for path in smk.input.spectra:
        model = Path(path).name.removesuffix(".zarr")
        spectra[model] = store.read_layer_arrays(path, pooling)["cov_eigenvalues"]
    table = pd.read_csv(smk.input.table)
    alphas = table[(table["dataset"] == dataset) & (table["pooling"] == pooling) & (table["metric"] == "alpha_req")]
    fit = smk.params.alpha_req
    fig = eigenspectrum_figure(spectra, alphas, smk.params.depths, fit["rank_min"], fit["rank_max"],
                               title=f"eigenspectra · {dataset} · {pooling} pooling")
    figures.save(fig, list(smk.output), dpi=smk.params.dpi)


STAGES = {
    "extract": stage_extract,
    "train": stage_train,
    "geometry": stage_geometry,
    "spectra": stage_spectra,
    "neighbors": stage_neighbors,
    "intrinsic_dim": stage_intrinsic_dim,
    "spectral": stage_spectral,
    "phases": stage_phases,
    "table": stage_table,
    "figure": stage_figure,
    "figure_spectral_steps": stage_figure_spectral_steps,
    "figure_eigenspectrum": stage_figure_eigenspectrum,
    "figure_id_scales": stage_figure_id_scales,
    "alignment": stage_alignment,
    "alignment_table": stage_alignment_table,
    "figure_alignment": stage_figure_alignment,
    "jobs": lambda smk: __import__(f"{__package__}.jobs", fromlist=["stage_jobs"]).stage_jobs(smk),  # repbench.jobs
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
