rule invariance:
    """InfoNCE, LiDAR and DiME per layer over the augmented views of one dataset (views datasets NAME.views only)."""
    input:
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
    output:
        f"{RESULTS}/metrics/{{dataset}}/{{model}}/invariance.csv",
    log:
        f"{RESULTS}/logs/invariance/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/invariance/{{dataset}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("invariance"),
        runtime=runtime("invariance"),
    params:
        poolings=config["metrics"]["poolings"],
        info=model_info,
        options=canonical(config["metrics"]["invariance"]),
    script:
        "../repbench/stages/invariance.py"
