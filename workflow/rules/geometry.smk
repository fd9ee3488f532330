rule geometry:
    """Per-layer mean norm and anisotropy of one model on one dataset (Dask over the store)."""
    input:
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
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
        mem_mb=mem_mb("geometry"),
        runtime=runtime("geometry"),
    params:
        poolings=config["metrics"]["poolings"],
        info=model_info,
        options=canonical(config["metrics"]["geometry"]),
    script:
        "../repbench/stages/geometry.py"
