"""Stage ``geometry`` (workflow/rules/geometry.smk): per-layer mean norm and anisotropy of one model."""


def geometry(job) -> None:
    """``results/metrics/{dataset}/{model}/geometry.csv`` from the activation store (Dask, threads)."""
    import dask

    from repbench import store, tables
    from repbench.metrics import geometry as family

    acts = job.input.activations
    arrays = {p: store.pooling_array(acts, p) for p in job.params.poolings}
    n_layers = next(iter(arrays.values())).shape[0]

    def rows(pooling, layer):
        return family.layer_metrics(arrays[pooling][layer], job.params.options)

    with dask.config.set(scheduler="threads", num_workers=int(job.threads)):
        identity = tables.model_identity(store.activation_attrs(acts), job.params.info)
        frame = tables.layer_table(n_layers, job.params.poolings, rows, identity)
    store.write_csv_atomic(frame, job.output[0])


if __name__ == "__main__":  # run by the rules of workflow/rules/geometry.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"geometry": geometry})  # noqa: F821 (injected by Snakemake)
