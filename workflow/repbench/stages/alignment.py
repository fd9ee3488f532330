"""Stage ``alignment`` (workflow/rules/alignment.smk): every alignment metric's layer × layer matrix for each model
pair, one job per model (its pairs with every model before it in config order), and the tables across pairs."""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class StoreLayers:
    """One pooling's layers of an activation store as a lazy sequence: ``layers[i]`` reads layer i (float32,
    or float64 clipped at the |x| quantile when configured). The alignment metrics read each layer when they
    need it, so a pair job holds a bounded number of (N, D) layers at a time, not all of them.

    ``prh=True`` (``alignment.preprocess: prh``): clipped at the PRH code's per-model threshold
    (:func:`repbench.preprocess.prh_threshold`, computed once here) and rows L2-normalised."""

    def __init__(self, store_path: str | Path, pooling: str, clip_quantile: float | None, prh: bool = False):
        import zarr

        from repbench import store
        from repbench.preprocess import prh_threshold

        group = zarr.open_group(str(store_path), mode="r")
        if pooling not in group:
            raise KeyError(f"{store_path}: no pooling {pooling!r}")
        self.path, self.array, self.clip_quantile, self.prh = store_path, group[pooling], clip_quantile, prh
        self.pooling = pooling
        self.where = f"model {group.attrs.get('model', str(store_path))!r}, pooling {pooling!r}"
        self.threshold = prh_threshold(store.pooling_array(store_path, pooling), clip_quantile) if prh else None

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getstate__(self) -> dict:  # a Dask worker process reopens the store instead of receiving the array
        return {key: value for key, value in self.__dict__.items() if key != "array"}

    def __setstate__(self, state: dict) -> None:
        import zarr

        self.__dict__.update(state)
        self.array = zarr.open_group(str(self.path), mode="r")[self.pooling]

    def __getitem__(self, layer: int) -> np.ndarray:
        from repbench import store
        from repbench.preprocess import preprocess

        X = store.read_array(self.path, self.array, layer)
        if not np.isfinite(X).all():
            raise ValueError(f"{self.where}, layer {layer}: activations contain non-finite values")
        if self.prh:
            return preprocess(X, threshold=self.threshold, normalize_rows=True)
        return preprocess(X, self.clip_quantile) if self.clip_quantile else X


@dataclass
class PreparedSide:
    """One model's side of its pairs, read and prepared once: store attributes, sample ids, graphs, the lazy layers
    and the metrics' per-layer work (``repbench.metrics.alignment.prepare_model``)."""

    activations: str
    attrs: dict
    ids: np.ndarray
    graphs: dict
    layers: StoreLayers | None
    prepared: object


def prepare_side(activations, graphs: dict, pooling: str, options: dict) -> PreparedSide:
    """``graphs``: {space: (L, N, kmax) stored graph} of the spaces the chosen metrics read (``{}`` if none)."""
    from repbench import registry, store
    from repbench.metrics import alignment as al

    start = time.perf_counter()
    metrics = tuple(options["metrics"])
    layers = None
    if registry.reads(metrics, "features"):
        layers = StoreLayers(activations, pooling, options["clip_quantile"], options["preprocess"] == "prh")
    prepared = al.prepare_model(layers, graphs or None, options["k"], metrics,
                                svcca_variance=options["svcca_variance"], options=options)
    print(f"alignment: {Path(activations).name} prepared ({pooling}, {len(prepared)} layers) in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    return PreparedSide(str(activations), store.activation_attrs(activations),
                        store.read_array(activations, "sample"), graphs, layers, prepared)


def pair_result(acts_a, acts_b, graphs_a, graphs_b, pooling: str, options: dict):
    """All alignment metrics of one model pair as an ``xarray.Dataset`` of (layer_a, layer_b) matrices
    (:func:`pair_dataset` of the two prepared sides)."""
    return pair_dataset(prepare_side(acts_a, graphs_a, pooling, options),
                        prepare_side(acts_b, graphs_b, pooling, options), pooling, options)


def pair_dataset(side_a: PreparedSide, side_b: PreparedSide, pooling: str, options: dict, workers: int = 1):
    """All alignment metrics of one model pair as an ``xarray.Dataset`` of (layer_a, layer_b) matrices.

    Attributes carry k, N, the preprocessing, each metric's summaries (best value and its (layer_a, layer_b),
    last, matched depth), the calibration of ``null_metrics`` (null mean/std, z, τ, p-value, calibrated score per
    summary; permutation counts per metric) and bootstrap intervals of the kNN metrics' per-sample terms at the
    best layer pair. ``workers``: threads for the kNN metrics' permutation null (see :func:`calibration`).
    """
    import xarray as xr

    from repbench import __version__, registry
    from repbench.metrics import alignment as al

    attrs_a, attrs_b, ids_a = side_a.attrs, side_b.attrs, side_a.ids
    start = time.perf_counter()
    if len(ids_a) != len(side_b.ids) or (ids_a != side_b.ids).any():
        raise ValueError(f"{attrs_a['model']!r} and {attrs_b['model']!r} were not extracted on the same sample ids")
    k, metrics, clip = options["k"], tuple(options["metrics"]), options["clip_quantile"]
    prepared = [side_a.prepared, side_b.prepared]
    mats = al.pair_matrices_prepared(*prepared, metrics)
    n_a, n_b = next(iter(mats.values())).shape
    label = f"alignment: {attrs_a['model']} × {attrs_b['model']} ({pooling})"
    print(f"{label}: {n_a} × {n_b} layer pairs of {len(mats)} metrics in {time.perf_counter() - start:.1f} s",
          flush=True)
    ds = xr.Dataset({m: (("layer_a", "layer_b"), v) for m, v in mats.items()},
                    coords={"layer_a": np.arange(n_a), "layer_b": np.arange(n_b)})
    ds.attrs.update(dataset=attrs_a["dataset"], pooling=pooling, model_a=attrs_a["model"], model_b=attrs_b["model"],
                    n_parameters_a=attrs_a.get("model_n_parameters", -1),
                    n_parameters_b=attrs_b.get("model_n_parameters", -1), k=k, n_samples=len(ids_a),
                    clip_quantile=clip if clip else "none", preprocess=options["preprocess"],
                    repbench_version=__version__,
                    activations_hash_a=attrs_a["config_hash"], activations_hash_b=attrs_b["config_hash"])
    if options["preprocess"] == "prh" and side_a.layers is not None:
        ds.attrs.update(prh_threshold_a=side_a.layers.threshold, prh_threshold_b=side_b.layers.threshold)
    from repbench.metrics.alignment import dense

    subset = dense.pairwise_subset(len(ids_a), options) if set(metrics) & {"rsa", "cka_rbf"} else None
    ds.attrs["pairwise_samples"] = len(ids_a) if subset is None else len(subset)
    lower = registry.lower_is_more_similar(metrics)
    for m, mat in mats.items():
        summary = al.summarize(mat, lower_is_more_similar=m in lower)
        ds.attrs.update({f"{m}_max": summary["max"], f"{m}_argmax_a": summary["argmax"][0],
                         f"{m}_argmax_b": summary["argmax"][1], f"{m}_last": summary["last"],
                         f"{m}_matched_depth": summary["matched_depth"]})
        per_sample = registry.METRICS[m].per_sample
        if per_sample and options["bootstrap"] and summary["argmax"][0] >= 0:
            i, j = summary["argmax"]
            terms = getattr(al, per_sample)(side_a.graphs["cosine"][i], side_b.graphs["cosine"][j], k)
            low, high = al.bootstrap_ci(terms, options["bootstrap"], options["seed"])
            ds.attrs.update({f"{m}_max_ci_low": low, f"{m}_max_ci_high": high})
    start = time.perf_counter()
    calibrated = calibration(prepared, mats, options, workers)
    if calibrated:
        print(f"{label}: null of {len(calibrated)} metrics in {time.perf_counter() - start:.1f} s", flush=True)
    for m, by_summary in calibrated.items():
        ds.attrs[f"{m}_null_permutations"] = by_summary.pop("n_permutations")
        ds.attrs[f"{m}_null_method"] = by_summary.pop("method")
        for summary, stats in by_summary.items():
            for key in al.CALIBRATION_KEYS:
                ds.attrs[f"{m}_{summary}_{key}"] = stats[key]
    return ds


CLOSED_FORM_NULL = ("cka", "rv")  # linear CKA = the RV coefficient: exact permutation moments, no passes
PEARSON3_MAX_SAMPLES = 4096  # the closed form's skewness costs O(N²·m) per layer: normal tail above this N


def calibration(prepared, mats: dict, options: dict, workers: int = 1) -> dict:
    """{metric: {summary: statistics, "n_permutations": P, "method": how}} for the metrics of ``null_metrics``.

    ``cka`` and ``rv``: the closed-form permutation null of the RV coefficient per layer pair (exact moments,
    Pearson type III tail up to ``PEARSON3_MAX_SAMPLES`` samples, normal above), no permutation pass; the best
    layer pair gets a Bonferroni-bounded p and calibrated score, ``last`` is exact, ``matched_depth`` has no
    closed form (NaN). Other dense metrics: ``null_permutations_dense`` permutations of B's samples (each a full
    pass over both models' features). Graph metrics: ``null_permutations`` (cheap: the graphs are relabelled),
    on ``workers`` threads (the dense metrics' permutations run one at a time: their products use every core).
    """
    from repbench import registry
    from repbench.metrics import alignment as al

    chosen = [m for m in options["null_metrics"] if m in mats]
    alpha = options["null_alpha"]
    out = {}
    closed = [m for m in chosen if m in CLOSED_FORM_NULL]
    if closed:
        n = prepared[0].n_samples
        grid = al.calibration.rv_null_grid(*prepared, alpha, observed=mats[closed[0]],
                                           skewness=n <= PEARSON3_MAX_SAMPLES)
        method = "closed form, " + ("Pearson III tail" if n <= PEARSON3_MAX_SAMPLES else "normal tail")
        nan = {key: float("nan") for key in al.CALIBRATION_KEYS}
        for m in closed:
            out[m] = {"max": {**nan, "p_value": grid["max"]["p_value"], "calibrated": grid["max"]["calibrated"]},
                      "last": {key: grid["last"][key] for key in al.CALIBRATION_KEYS},
                      "matched_depth": nan, "n_permutations": 0, "method": method}
    rest = [m for m in chosen if m not in CLOSED_FORM_NULL]
    dense = set(registry.dense(rest))
    for metrics, permutations, threads in (
            ([m for m in rest if m not in dense], options["null_permutations"], workers),
            ([m for m in rest if m in dense], options["null_permutations_dense"], 1)):
        if not metrics or not permutations:
            continue
        start = time.perf_counter()
        null = al.null_calibration_prepared(*prepared, metrics, permutations, options["seed"],
                                            observed={m: mats[m] for m in metrics}, alpha=alpha,
                                            lower_is_more_similar=registry.lower_is_more_similar(metrics),
                                            workers=threads)
        on = f", on {threads} threads" if threads > 1 else ""
        print(f"alignment: permutation null of {', '.join(metrics)} (P = {permutations}{on}) in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        for m in metrics:
            out[m] = {**null[m], "n_permutations": permutations, "method": "permutation"}
    return out


@dataclass(frozen=True)
class ModelInputs:
    """Where one model's side of its pairs comes from: its activation store and {space: graph store}."""

    model: str
    activations: str
    graphs: dict


def load_side(inputs: ModelInputs, pooling: str, options: dict) -> PreparedSide:
    """Read the model's graphs of ``pooling`` and prepare its layers (:func:`prepare_side`)."""
    from repbench import store

    graphs = {space: store.read_layer_arrays(path, pooling, names=("indices",))["indices"]
              for space, path in inputs.graphs.items()}
    return prepare_side(inputs.activations, graphs, pooling, options)


def provenance(side: ModelInputs) -> dict:
    """What one side contributes to a pair's key: its store's ``config_hash`` and its graph stores' attributes."""
    from repbench import store

    return {"activations": store.activation_attrs(side.activations).get("config_hash"),
            "graphs": {space: store.activation_attrs(path) for space, path in sorted(side.graphs.items())}}


def pair_key(provenance_a: dict, provenance_b: dict, pooling: str, options: dict) -> str:
    """What decides a pair file: both sides' :func:`provenance`, the pooling, the alignment options and the
    repbench version. A pair file carrying the same key is reused, not recomputed."""
    from repbench import __version__
    from repbench.config import fingerprint

    return fingerprint({"a": provenance_a, "b": provenance_b, "pooling": pooling, "options": options,
                        "repbench": __version__})


def is_current(path: Path, key: str) -> bool:
    """Whether ``path`` is a finished pair file computed from the inputs and options that ``key`` names."""
    import xarray as xr

    if not path.exists():
        return False
    try:
        with xr.open_dataset(path, engine="scipy") as ds:
            return ds.attrs.get("pair_key") == key
    except (OSError, ValueError, TypeError):
        return False


def compute_pair(other: ModelInputs, own: PreparedSide, own_is_a: bool, pooling: str, options: dict, path: str,
                 key: str, workers: int = 1) -> str:
    """One pair of a block: prepare ``other``, compute every metric against the already prepared ``own`` (as side A
    when ``own_is_a``), write ``path`` atomically (a finished pair survives a killed job). Returns the file name.
    ``workers``: threads of the pair's kNN permutation null."""
    import os
    import tempfile

    from repbench import store

    start = time.perf_counter()
    side = load_side(other, pooling, options)
    ds = pair_dataset(*((own, side) if own_is_a else (side, own)), pooling, options, workers)
    ds.attrs["pair_key"] = key
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    ds.to_netcdf(tmp, engine="scipy")
    store.publish(tmp, path)
    print(f"alignment: {path.name} in {time.perf_counter() - start:.1f} s", flush=True)
    for name in sorted(ds.data_vars):
        values = ds[name].values
        if values.size and np.isnan(values).all():  # a metric undefined on every layer pair: say so, not only NaN
            print(f"alignment: {path.name}: {name} is undefined (NaN) on every layer pair"
                  + (" — CCA is degenerate where a layer is at least as wide as the samples are many; use more "
                     "samples than the widest layer" if name == "pwcca" else ""), flush=True)
    return path.name


def alignment_block(own: ModelInputs, earlier: list[ModelInputs], pooling: str, options: dict, out_dir: str | Path,
                    threads: int = 1, scheduler_address: str | None = None, timeout_s: float = 10.0) -> list[dict]:
    """Every pair of ``own`` with the models of ``earlier``, as one Dask graph: ``own`` is read and prepared once
    and shared by its pairs; each pair prepares the other model and writes ``{A}__{B}.nc`` (A < B by name) into
    ``out_dir``. Pair files already computed from the same inputs and options (:func:`pair_key`) are kept: a killed
    job resumes at the missing pairs, and a rerun caused by a model removed before ``own`` recomputes nothing.

    Returns one row per pair: ``model_a``, ``model_b``, ``file``, ``pair_key``.
    """
    import dask

    from repbench import parallel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, todo = [], []
    own_provenance = provenance(own)  # read once, not once per pair
    for other in earlier:
        a, b = sorted((own, other), key=lambda side: side.model)
        sides = {own.model: own_provenance, other.model: provenance(other)}
        path, key = out_dir / f"{a.model}__{b.model}.nc", pair_key(sides[a.model], sides[b.model], pooling, options)
        rows.append({"model_a": a.model, "model_b": b.model, "file": path.name, "pair_key": key})
        if not is_current(path, key):
            todo.append((other, a is own, str(path), key))
    print(f"alignment {own.model} ({pooling}): pairs {len(rows)}, already computed {len(rows) - len(todo)}, "
          f"to compute {len(todo)}", flush=True)
    if todo:
        prepared = dask.delayed(load_side, pure=False)(own, pooling, options)  # once, shared by every pair
        # fewer pairs than threads: the rest serve each pair's kNN null (counted over the whole block, as the
        # job's memory request is: repbench.resources)
        workers = max(1, threads // len(rows))
        tasks = [dask.delayed(compute_pair, pure=False)(other, prepared, own_is_a, pooling, options, path, key,
                                                        workers)
                 for other, own_is_a, path, key in todo]
        with parallel.scheduler(threads, scheduler_address, timeout_s):
            dask.compute(*tasks)
    return rows


def alignment(job) -> None:
    """``results/alignment/{dataset}/{pooling}/{model}.pairs.json``: the pairs of one model with every model before
    it (config order), each written to ``results/alignment/{dataset}/{pooling}/{A}__{B}.nc`` (A < B by name)."""
    from repbench import registry, store
    from repbench.stages import release_freed_arrays

    release_freed_arrays()  # freed arrays leave the resident set: memory follows what the job holds
    options, pooling = job.params.options, job.wildcards.pooling
    spaces = registry.spaces_read(options["metrics"])

    own = ModelInputs(job.wildcards.model, job.input.activations, {s: job.input[s] for s in spaces})
    # the earlier models' paths come as params: the job's inputs list those of its run, a `pair_inputs` marker the rest
    earlier = [ModelInputs(e["model"], e["activations"], {s: e["graphs"][s] for s in spaces})
               for e in job.params.earlier]
    out = Path(job.output[0])
    cluster = job.config["dask"]  # how the pairs run, not what they are: not a param (changing it reruns nothing)
    rows = alignment_block(own, earlier, pooling, options, out.parent, threads=job.threads,
                           scheduler_address=cluster["scheduler_address"], timeout_s=cluster["connect_timeout_s"])
    store.write_json_atomic(out, {"dataset": job.wildcards.dataset, "pooling": pooling, "model": own.model,
                                  "pairs": rows})


def alignment_table(job) -> None:
    """``results/tables/alignment.csv`` (one row per pair, pooling and metric: summaries, null, bootstrap) and
    ``results/tables/alignment_layers.csv`` (every layer × layer value), from the pairs the jobs' lists name."""
    import xarray as xr

    from repbench import store, tables

    pairs = []
    for manifest in job.input:
        for row in store.read_json(manifest)["pairs"]:
            with xr.open_dataset(Path(manifest).parent / row["file"], engine="scipy") as ds:
                pairs.append(ds.load())
    store.write_csv_atomic(tables.alignment_table(pairs), job.output.summary)
    store.write_csv_atomic(tables.alignment_layers_table(pairs), job.output.layers)


if __name__ == "__main__":  # run by the rules of workflow/rules/alignment.smk (script: directive)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"alignment": alignment, "alignment_table": alignment_table})  # noqa: F821 (injected)
