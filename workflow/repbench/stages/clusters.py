"""Stage ``clusters`` (workflow/rules/clusters.smk): how the classes sit in each layer (label overlap on the
euclidean graph, silhouette, Calinski–Harabasz, Davies–Bouldin, Dunn, Xie–Beni), and the AQI composite."""

from pathlib import Path


def clusters(job) -> None:
    """``results/metrics/{dataset}/{model}/clusters.csv`` on the raw vectors and their exact euclidean graph."""
    import numpy as np

    from repbench import store, tables
    from repbench.metrics import clusters as family

    acts = job.input.activations
    attrs = store.activation_attrs(acts)
    labels, _, label_type, _ = store.aligned_labels(job.input.labels, acts)
    if labels is None:
        raise ValueError(f"dataset {attrs['dataset']!r} has no labels (set label_field, labels_path or labels)")
    params = {"k": job.params.options["k"], "budget_bytes": job.params.options["budget_mb"] * 2**20}
    graphs = {p: store.read_layer_arrays(job.input.neighbors, p, names=("indices",)) for p in job.params.poolings}
    arrays = {p: store.pooling_array(acts, p) for p in job.params.poolings}
    n_layers = next(iter(arrays.values())).shape[0]

    def rows(pooling, layer):
        if label_type == "regression":
            return [{"metric": m, "value": float("nan"), "reason": "numeric target: no classes"}
                    for m in family.METRICS]
        try:
            return family.layer_metrics(np.asarray(arrays[pooling][layer]), labels, params,
                                        graph=graphs[pooling]["indices"][layer])
        except ValueError as exc:
            raise ValueError(f"model {attrs['model']!r}, layer {layer}, pooling {pooling!r}: {exc}") from None

    identity = tables.model_identity(attrs, job.params.info)
    store.write_csv_atomic(tables.layer_table(n_layers, job.params.poolings, rows, identity), job.output[0])


def aqi_table(job) -> None:
    """``results/tables/aqi.csv``: the AQI composite over the set of every model's last layer, per dataset and
    pooling, from the raw Calinski–Harabasz and Xie–Beni indices of ``tables/clusters.csv``."""
    import pandas as pd

    from repbench import store
    from repbench.metrics import clusters as family

    frame = pd.read_csv(job.input[0])
    last = frame[frame["layer"] == frame["n_layers"] - 1]
    wide = last.pivot_table(index=["dataset", "pooling", "model", "layer"], columns="metric", values="value")
    wide = wide.reset_index()[["dataset", "pooling", "model", "layer", "calinski_harabasz", "xie_beni"]]
    parts = []
    for _, sub in wide.groupby(["dataset", "pooling"], sort=True):
        sub = sub.sort_values("model").copy()
        sub["gamma"] = job.params.gamma
        try:
            sub["aqi"] = family.aqi(sub["calinski_harabasz"].to_numpy(), sub["xie_beni"].to_numpy(),
                                    gamma=job.params.gamma)
            sub["reason"] = ""
        except ValueError as exc:  # fewer than 2 models, or a degenerate set: no composite
            sub["aqi"], sub["reason"] = float("nan"), str(exc)
        parts.append(sub)
    store.write_csv_atomic(pd.concat(parts, ignore_index=True), job.output[0])


if __name__ == "__main__":  # run by the rules of workflow/rules/clusters.smk (script: directive)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"clusters": clusters, "aqi_table": aqi_table})  # noqa: F821 (injected by Snakemake)
