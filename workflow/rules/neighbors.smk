rule neighbors:
    """Exact k-NN graphs for every layer (cosine for alignment, euclidean for intrinsic dimension)."""
    input:
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
    output:
        directory(f"{RESULTS}/neighbors/{{dataset}}/{{model}}.zarr"),
    log:
        f"{RESULTS}/logs/neighbors/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/neighbors/{{dataset}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: workflow.cores
    resources:
        mem_mb=mem_mb("neighbors"),
        runtime=runtime("neighbors"),
    params:
        poolings=config["metrics"]["poolings"],
        spaces=NEIGHBOR_SPACES,
        options=canonical(config["neighbors"]),
        clip_quantile=ALIGNMENT["clip_quantile"],
    script:
        STAGE_SCRIPT
