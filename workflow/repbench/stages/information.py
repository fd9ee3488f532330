"""Stage ``information`` (workflow/rules/information.smk): token-level prompt entropy, dataset entropy, curvature."""


def information(job) -> None:
    """``results/metrics/{dataset}/{model}/information.csv`` from the token level of one activation store (the
    ``mean`` pooling of every sample for the dataset entropy)."""
    import numpy as np
    from tqdm import tqdm

    from repbench import store, tables
    from repbench.metrics import information as family

    acts = job.input.activations
    attrs = store.activation_attrs(acts)
    layers = store.token_layers(acts)
    offsets = store.read_array(acts, "token_offsets")
    group = store.zarr.open_group(str(acts), mode="r")
    pooled = store.pooling_array(acts, "mean") if "mean" in group.array_keys() else None
    rows_by_layer = {}
    for layer, tokens in tqdm(layers, desc=f"information {job.wildcards.dataset}/{job.wildcards.model}"):
        means = None if pooled is None else np.asarray(pooled[layer])[:, : tokens.shape[1]]
        try:
            rows_by_layer[layer] = family.layer_metrics(tokens, offsets, means, job.params.options)
        except ValueError as exc:
            raise ValueError(f"model {attrs['model']!r}, layer {layer}: {exc}") from None
    identity = tables.model_identity(attrs, job.params.info)
    n_layers = len(attrs["layer_widths"])
    frame = tables.layer_table(n_layers, ["tokens"], lambda pooling, layer: rows_by_layer.get(layer, []), identity)
    store.write_csv_atomic(frame, job.output[0])


if __name__ == "__main__":  # run by the rules of workflow/rules/information.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"information": information})  # noqa: F821 (injected by Snakemake)
