rule neighbors:
    """Exact k-NN graphs of every layer in one space (cosine for alignment, euclidean for intrinsic dimension)."""
    input:
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
    output:
        directory(f"{RESULTS}/neighbors/{{dataset}}/{{space}}/{{model}}.zarr"),
    log:
        f"{RESULTS}/logs/neighbors/{{dataset}}/{{space}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/neighbors/{{dataset}}/{{space}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: config["neighbors"]["threads"] or workflow.cores
    resources:
        mem_mb=mem_mb("neighbors"),
        runtime=runtime("neighbors"),
    params:
        poolings=config["metrics"]["poolings"],
        options=neighbor_params,
        partial_root=lambda w: f"{RESULTS}/.partial/neighbors/{w.dataset}/{w.space}",
    script:
        "../repbench/stages/neighbors.py"
