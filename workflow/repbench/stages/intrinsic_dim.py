"""Stage ``intrinsic_dim`` (workflow/rules/intrinsic_dim.smk): every configured ID estimator per layer."""


def intrinsic_dim(job) -> None:
    """``results/metrics/{dataset}/{model}/intrinsic_dim.csv`` on the raw vectors' exact euclidean graph."""
    import numpy as np

    from repbench import store, tables
    from repbench.metrics.intrinsic_dim import estimate_layer
    from repbench.stages import trim_heap

    acts = job.input.activations
    attrs = store.activation_attrs(acts)
    graphs = {p: store.read_layer_arrays(job.input.neighbors, p) for p in job.params.poolings}
    arrays = {p: store.pooling_array(acts, p) for p in job.params.poolings}
    n_layers = next(iter(arrays.values())).shape[0]

    def rows(pooling, layer):
        X = np.asarray(arrays[pooling][layer])
        trim_heap()  # the chunks the layer was assembled from (and the previous layer's work) leave the heap
        graph = graphs[pooling]
        try:
            return estimate_layer(X, graph["indices"][layer], graph["distances"][layer], job.params.options)
        except ValueError as exc:
            raise ValueError(f"model {attrs['model']!r}, layer {layer}, pooling {pooling!r}: {exc}") from None

    identity = tables.model_identity(attrs, job.params.info)
    store.write_csv_atomic(tables.layer_table(n_layers, job.params.poolings, rows, identity), job.output[0])


if __name__ == "__main__":  # run by the rules of workflow/rules/intrinsic_dim.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    functions = {"intrinsic_dim": intrinsic_dim}
    run_job(snakemake, functions, torch_rules=("intrinsic_dim",))  # noqa: F821 (injected by Snakemake)
