"""Stage ``alignment`` (workflow/rules/alignment.smk): every alignment metric's layer × layer matrix for one model
pair, and the tables across pairs."""

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
        self.where = f"model {group.attrs.get('model', str(store_path))!r}, pooling {pooling!r}"
        self.threshold = prh_threshold(store.pooling_array(store_path, pooling), clip_quantile) if prh else None

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, layer: int) -> np.ndarray:
        from repbench import store
        from repbench.preprocess import preprocess

        X = store.read_array(self.path, self.array, layer)
        if not np.isfinite(X).all():
            raise ValueError(f"{self.where}, layer {layer}: activations contain non-finite values")
        if self.prh:
            return preprocess(X, threshold=self.threshold, normalize_rows=True)
        return preprocess(X, self.clip_quantile) if self.clip_quantile else X


def pair_result(acts_a, acts_b, graphs_a, graphs_b, pooling: str, options: dict):
    """All alignment metrics of one model pair as an ``xarray.Dataset`` of (layer_a, layer_b) matrices.

    ``graphs_*``: {space: (L, N, kmax) stored graph} of the spaces the chosen metrics read (``{}`` if none).
    Attributes carry k, N, the preprocessing, each metric's summaries (best value and its (layer_a, layer_b),
    last, matched depth), the calibration of ``null_metrics`` (null mean/std, z, τ, p-value, calibrated score per
    summary; permutation counts per metric) and bootstrap intervals of the kNN metrics' per-sample terms at the
    best layer pair.
    """
    import xarray as xr

    from repbench import __version__, registry, store
    from repbench.metrics import alignment as al

    attrs_a, attrs_b = store.activation_attrs(acts_a), store.activation_attrs(acts_b)
    ids_a, ids_b = store.read_array(acts_a, "sample"), store.read_array(acts_b, "sample")
    if len(ids_a) != len(ids_b) or (ids_a != ids_b).any():
        raise ValueError(f"{attrs_a['model']!r} and {attrs_b['model']!r} were not extracted on the same sample ids")
    k, metrics, clip = options["k"], tuple(options["metrics"]), options["clip_quantile"]
    prh = options["preprocess"] == "prh"
    needs_features = bool(registry.reads(metrics, "features"))
    layers_a = StoreLayers(acts_a, pooling, clip, prh) if needs_features else None
    layers_b = StoreLayers(acts_b, pooling, clip, prh) if needs_features else None
    prepared = [al.prepare_model(layers, graphs or None, k, metrics, svcca_variance=options["svcca_variance"],
                                 options=options)
                for layers, graphs in ((layers_a, graphs_a), (layers_b, graphs_b))]
    mats = al.pair_matrices_prepared(*prepared, metrics)
    n_a, n_b = next(iter(mats.values())).shape
    ds = xr.Dataset({m: (("layer_a", "layer_b"), v) for m, v in mats.items()},
                    coords={"layer_a": np.arange(n_a), "layer_b": np.arange(n_b)})
    ds.attrs.update(dataset=attrs_a["dataset"], pooling=pooling, model_a=attrs_a["model"], model_b=attrs_b["model"],
                    n_parameters_a=attrs_a.get("model_n_parameters", -1),
                    n_parameters_b=attrs_b.get("model_n_parameters", -1), k=k, n_samples=len(ids_a),
                    clip_quantile=clip if clip else "none", preprocess=options["preprocess"],
                    repbench_version=__version__,
                    activations_hash_a=attrs_a["config_hash"], activations_hash_b=attrs_b["config_hash"])
    if prh:
        ds.attrs.update(prh_threshold_a=layers_a.threshold, prh_threshold_b=layers_b.threshold)
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
            terms = getattr(al, per_sample)(graphs_a["cosine"][i], graphs_b["cosine"][j], k)
            low, high = al.bootstrap_ci(terms, options["bootstrap"], options["seed"])
            ds.attrs.update({f"{m}_max_ci_low": low, f"{m}_max_ci_high": high})
    for m, by_summary in calibration(prepared, mats, options).items():
        ds.attrs[f"{m}_null_permutations"] = by_summary.pop("n_permutations")
        ds.attrs[f"{m}_null_method"] = by_summary.pop("method")
        for summary, stats in by_summary.items():
            for key in al.CALIBRATION_KEYS:
                ds.attrs[f"{m}_{summary}_{key}"] = stats[key]
    return ds


CLOSED_FORM_NULL = ("cka", "rv")  # linear CKA = the RV coefficient: exact permutation moments, no passes
PEARSON3_MAX_SAMPLES = 4096  # the closed form's skewness costs O(N²·m) per layer: normal tail above this N


def calibration(prepared, mats: dict, options: dict) -> dict:
    """{metric: {summary: statistics, "n_permutations": P, "method": how}} for the metrics of ``null_metrics``.

    ``cka`` and ``rv``: the closed-form permutation null of the RV coefficient per layer pair (exact moments,
    Pearson type III tail up to ``PEARSON3_MAX_SAMPLES`` samples, normal above), no permutation pass; the best
    layer pair gets a Bonferroni-bounded p and calibrated score, ``last`` is exact, ``matched_depth`` has no
    closed form (NaN). Other dense metrics: ``null_permutations_dense`` permutations of B's samples (each a full
    pass over both models' features). Graph metrics: ``null_permutations`` (cheap: the graphs are relabelled).
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
    for metrics, permutations in (([m for m in rest if m not in dense], options["null_permutations"]),
                                  ([m for m in rest if m in dense], options["null_permutations_dense"])):
        if not metrics or not permutations:
            continue
        null = al.null_calibration_prepared(*prepared, metrics, permutations, options["seed"],
                                            observed={m: mats[m] for m in metrics}, alpha=alpha,
                                            lower_is_more_similar=registry.lower_is_more_similar(metrics))
        for m in metrics:
            out[m] = {**null[m], "n_permutations": permutations, "method": "permutation"}
    return out


def alignment(job) -> None:
    """``results/alignment/{dataset}/{pooling}/{A}__{B}.nc`` for one unordered model pair (A < B by name)."""
    from repbench import registry, store

    options, pooling = job.params.options, job.wildcards.pooling
    graphs = [{}, {}]
    for space in registry.spaces_read(options["metrics"]):
        for side, graphs_side in zip("ab", graphs, strict=True):
            path = job.input[f"{space}_{side}"]
            graphs_side[space] = store.read_layer_arrays(path, pooling, names=("indices",))["indices"]
    ds = pair_result(job.input.activations_a, job.input.activations_b, graphs[0], graphs[1], pooling, options)
    out = Path(job.output[0])
    tmp = out.with_name(f".{out.name}.partial")
    ds.to_netcdf(tmp, engine="scipy")
    store.publish(tmp, out)


def alignment_table(job) -> None:
    """``results/tables/alignment.csv`` (one row per pair, pooling and metric: summaries, null, bootstrap) and
    ``results/tables/alignment_layers.csv`` (every layer × layer value)."""
    import xarray as xr

    from repbench import store, tables

    pairs = []
    for path in job.input:
        with xr.open_dataset(path, engine="scipy") as ds:
            pairs.append(ds.load())
    store.write_csv_atomic(tables.alignment_table(pairs), job.output.summary)
    store.write_csv_atomic(tables.alignment_layers_table(pairs), job.output.layers)


if __name__ == "__main__":  # run by the rules of workflow/rules/alignment.smk (script: directive)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"alignment": alignment, "alignment_table": alignment_table})  # noqa: F821 (injected)
