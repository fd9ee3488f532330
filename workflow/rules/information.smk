rule information:
    """Prompt entropy, dataset entropy and curvature per layer from the token level of one store."""
    input:
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
    output:
        f"{RESULTS}/metrics/{{dataset}}/{{model}}/information.csv",
    log:
        f"{RESULTS}/logs/information/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/information/{{dataset}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("information"),
        runtime=runtime("information"),
    params:
        info=model_info,
        options=canonical(config["metrics"]["information"]),
    script:
        "../repbench/stages/information.py"
