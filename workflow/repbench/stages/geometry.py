"""Stage ``geometry`` (workflow/rules/geometry.smk): per-layer mean norm and anisotropy of one model."""


def geometry(job) -> None:
    """``results/metrics/{dataset}/{model}/geometry.csv`` from the activation store (Dask: the job's threads or
    the configured cluster)."""
    from repbench import parallel, store, tables
    from repbench.metrics import geometry as family

    import dask

    acts = job.input.activations
    arrays = {p: store.pooling_array(acts, p) for p in job.params.poolings}
    n_layers = next(iter(arrays.values())).shape[0]
    # one task per (pooling, layer), reading that layer's chunks: the independent units of the job as one graph
    units = [(p, layer) for p in job.params.poolings for layer in range(n_layers)]
    tasks = [dask.delayed(family.layer_metrics)(arrays[p][layer], job.params.options) for p, layer in units]
    cluster = job.config["dask"]  # the job's threads, or the configured dask.distributed cluster
    with parallel.scheduler(job.threads, cluster["scheduler_address"], cluster["connect_timeout_s"]):
        computed = dict(zip(units, dask.compute(*tasks), strict=True))
    identity = tables.model_identity(store.activation_attrs(acts), job.params.info)
    frame = tables.layer_table(n_layers, job.params.poolings, lambda p, layer: computed[(p, layer)], identity)
    store.write_csv_atomic(frame, job.output[0])


if __name__ == "__main__":  # run by the rules of workflow/rules/geometry.smk (script: directive)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repbench package this file belongs to
    from repbench.stages import run_job

    run_job(snakemake, {"geometry": geometry})  # noqa: F821 (injected by Snakemake)
