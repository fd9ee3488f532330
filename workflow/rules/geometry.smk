rule geometry:
    """Per-layer mean norm and anisotropy of one model on one dataset (Dask over the store)."""
    input:
        f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
    output:
        f"{RESULTS}/metrics/{{dataset}}/{{model}}/geometry.csv",
    log:
        f"{RESULTS}/logs/geometry/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/geometry/{{dataset}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
    params:
        poolings=config["extract"]["poolings"],
        options=canonical(config["metrics"]["geometry"]),
    script:
        STAGE_SCRIPT
