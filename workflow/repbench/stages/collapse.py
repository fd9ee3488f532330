"""Stage ``collapse`` (workflow/rules/collapse.smk): neural collapse of the class means per layer and the
classes' concept directions, and the cosines of the directions of models that share a space."""

from pathlib import Path


def collapse(job) -> None:
    """``results/metrics/{dataset}/{model}/collapse.csv`` (NC1, NC2, CDNV, direction accuracy per layer) and
    ``results/metrics/{dataset}/{model}/directions.zarr`` (the unit concept directions (layer, direction, feature)
    per pooling, their names in the attribute ``directions``)."""
    import numpy as np

    from repbench import store, tables
    from repbench.metrics import collapse as family

    acts = job.input.activations
    attrs = store.activation_attrs(acts)
    labels, label_names, label_type, _ = store.aligned_labels(job.input.labels, acts)
    if labels is None:
        raise ValueError(f"dataset {attrs['dataset']!r} has no labels (set label_field, labels_path or labels)")
    arrays = {p: store.pooling_array(acts, p) for p in job.params.poolings}
    n_layers = next(iter(arrays.values())).shape[0]
    regression = label_type == "regression"

    def rows(pooling, layer):
        if regression:
            return [{"metric": m, "value": float("nan"), "reason": "numeric target: no classes"}
                    for m in family.METRICS]
        try:
            rows_ = family.layer_metrics(np.asarray(arrays[pooling][layer]), labels, job.params.options)
        except ValueError as exc:
            raise ValueError(f"model {attrs['model']!r}, layer {layer}, pooling {pooling!r}: {exc}") from None
        return [row | {"concept": _readable(row["concept"], label_names)} if "concept" in row else row
                for row in rows_]

    identity = tables.model_identity(attrs, job.params.info)
    frame = tables.layer_table(n_layers, job.params.poolings, rows, identity)
    groups, names = {}, []
    if not regression:
        for pooling, layers in arrays.items():
            names, directions = family.concept_directions_by_layer(layers, labels)
            groups[pooling] = {"directions": directions.astype(np.float32)}
            names = [_readable(n, label_names) for n in names]
    provenance = {"model": attrs["model"], "dataset": attrs["dataset"], "activations_hash": attrs["config_hash"],
                  "directions": names, "label_names": list(label_names)}
    store.write_layer_arrays(job.output.directions, groups, ("layer", "direction", "feature"), provenance)
    store.write_csv_atomic(frame, job.output.table)


def _readable(name: str, label_names) -> str:
    """A direction name with class indices replaced by class names ("1_vs_0" → "true_vs_false")."""
    parts = name.split("_vs_")
    return "_vs_".join(label_names[int(p)] if p.isdigit() and int(p) < len(label_names) else p for p in parts)


def directions_table(job) -> None:
    """``results/tables/directions.csv``: for each pair of instances that share a space, the cosine between
    their concept directions at every matched layer (same index; same depth and width required)."""
    import pandas as pd
    import zarr

    from repbench import store
    from repbench.metrics import collapse as family

    rows = []
    for n, (dataset, a, b) in enumerate(job.params.pairs):
        stores = list(job.input)[2 * n: 2 * n + 2]  # the rule lists both stores of each pair, in pair order
        attrs = [zarr.open_group(str(s), mode="r").attrs for s in stores]
        for pooling in job.params.poolings:
            dirs = [store.read_layer_arrays(s, pooling, names=("directions",))["directions"] for s in stores]
            if dirs[0].shape != dirs[1].shape:
                raise ValueError(f"dataset {dataset!r}: {a!r} and {b!r} do not share a space (directions "
                                 f"{dirs[0].shape} vs {dirs[1].shape}); list only same-width, same-depth pairs")
            for d, name in enumerate(attrs[0]["directions"]):
                cosines = family.direction_cosines(dirs[0][:, d, :], dirs[1][:, d, :])
                for layer in range(len(cosines)):
                    rows.append({"dataset": dataset, "pooling": pooling, "model_a": a, "model_b": b,
                                 "direction": name, "layer": layer, "n_layers": len(cosines),
                                 "relative_depth": layer / max(1, len(cosines) - 1),
                                 "cosine": float(cosines[layer, layer])})
    columns = ["dataset", "pooling", "model_a", "model_b", "direction", "layer", "n_layers", "relative_depth",
               "cosine"]
    store.write_csv_atomic(pd.DataFrame(rows, columns=columns), job.output[0])


if __name__ == "__main__":  # run by the rules of workflow/rules/collapse.smk (script: directive)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"collapse": collapse, "directions_table": directions_table})  # noqa: F821 (injected)
