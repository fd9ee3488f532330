rule neighbors:
    """Exact k-NN graphs for every layer (cosine for alignment, euclidean for intrinsic dimension)."""
    input:
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
    output:
        directory(f"{RESULTS}/neighbors/{{dataset}}/{{model}}.zarr"),
    params:
        poolings=config["metrics"]["poolings"],
        spaces=NEIGHBOR_SPACES,
        options=canonical(config["neighbors"]),
        clip_quantile=ALIGNMENT["clip_quantile"],
    log:
        f"{RESULTS}/logs/neighbors/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/neighbors/{{dataset}}/{{model}}.tsv"
    threads: workflow.cores
    resources:
        mem_mb=mem_mb("neighbors"),
        runtime=runtime("neighbors"),
    conda:
        CONDA_ENV
    script:
        STAGE_SCRIPT
