"""Stage ``probes`` (workflow/rules/probes.smk): cross-validated linear probes of the labels at every layer, and
the concept depth of every model."""

from pathlib import Path


def probes(job) -> None:
    """``results/metrics/{dataset}/{model}/probes.csv``: probe scores and their chance baseline per layer.

    Layers are probed in order, each warm-started from the previous layer's solution (same folds, same
    standardised problems: only the iteration count changes). Classes → logistic probe; a numeric target → ridge.
    With the dataset's ``transfer_by`` column, every layer also gets the leave-one-value-out transfer probe.
    """
    from repbench import store, tables
    from repbench.metrics import probes as family

    acts, options = job.input.activations, dict(job.params.options)
    attrs = store.activation_attrs(acts)
    labels, names, label_type, columns = store.aligned_labels(job.input.labels, acts)
    if labels is None:
        raise ValueError(f"dataset {attrs['dataset']!r} has no labels (set label_field, labels_path or labels)")
    transfer_by = job.params.transfer_by
    if transfer_by is not None and transfer_by not in columns:
        raise ValueError(f"dataset {attrs['dataset']!r}: transfer_by column {transfer_by!r} is not in the label "
                         f"store {job.input.labels} (its columns: {sorted(columns) or 'none'}); rerun the labels job")
    options.pop("concept_depth")
    if options["device"] == "auto":
        import torch

        options["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    rows_by = {}
    for pooling in job.params.poolings:
        layers = store.pooling_array(acts, pooling)
        try:
            per_layer = family.layer_rows(layers, labels, options)
            if transfer_by is not None:
                transfer = family.transfer_rows(layers, labels, columns[transfer_by], transfer_by, options)
                per_layer = [rows + extra for rows, extra in zip(per_layer, transfer, strict=True)]
        except ValueError as exc:
            raise ValueError(f"model {attrs['model']!r}, dataset {attrs['dataset']!r}, pooling {pooling!r}: "
                             f"{exc}") from None
        rows_by[pooling] = per_layer
    n_layers = len(next(iter(rows_by.values())))
    identity = tables.model_identity(attrs, job.params.info)
    frame = tables.layer_table(n_layers, job.params.poolings, lambda p, layer: rows_by[p][layer], identity)
    frame["label_names"] = "|".join(names)
    store.write_csv_atomic(frame, job.output[0])


def concept_depth_table(job) -> None:
    """``results/tables/concept_depth.csv``: per (dataset, model, pooling) the first relative depth at which the
    probe accuracy reaches the configured share of its best (``metrics.probes.concept_depth``)."""
    import pandas as pd

    from repbench import store
    from repbench.metrics import probes as family

    frame = pd.read_csv(job.input[0])
    rule = dict(job.params.rule)
    rows = []
    keys = ["dataset", "model", "base_model", "revision", "step", "pooling"]
    metric = "probe_accuracy" if (frame["metric"] == "probe_accuracy").any() else "probe_r2"
    for key, sub in frame.groupby(keys, dropna=False, sort=True):
        depth = family.concept_depth_from_rows(sub, metric=metric, **rule)
        rows.append(dict(zip(keys, key, strict=True)) | {"metric": metric, "rule": rule["rule"],
                                                         "rule_value": rule[rule["rule"]]} | depth)
    store.write_csv_atomic(pd.DataFrame(rows), job.output[0])


if __name__ == "__main__":  # run by the rules of workflow/rules/probes.smk (script: directive)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"probes": probes, "concept_depth_table": concept_depth_table},  # noqa: F821 (injected)
            torch_rules=("probes",))
