rule contextuality:
    """Self-similarity, intra-sentence similarity, MEV and token anisotropy per layer from the token level."""
    input:
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
    output:
        f"{RESULTS}/metrics/{{dataset}}/{{model}}/contextuality.csv",
    log:
        f"{RESULTS}/logs/contextuality/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/contextuality/{{dataset}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("contextuality"),
        runtime=runtime("contextuality"),
    params:
        info=model_info,
        options=canonical(config["metrics"]["contextuality"]),
    script:
        "../repbench/stages/contextuality.py"
