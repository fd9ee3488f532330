rule intrinsic_dim:
    """TwoNN, TwoNN-MLE, GRIDE (multi-scale), Levina–Bickel MLE and local ID per layer."""
    input:
        neighbors=f"{RESULTS}/neighbors/{{dataset}}/euclidean/{{model}}.zarr",
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
    output:
        f"{RESULTS}/metrics/{{dataset}}/{{model}}/intrinsic_dim.csv",
    log:
        f"{RESULTS}/logs/intrinsic_dim/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/intrinsic_dim/{{dataset}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("intrinsic_dim"),
        runtime=runtime("intrinsic_dim"),
    params:
        poolings=config["metrics"]["poolings"],
        options=canonical(config["metrics"]["intrinsic_dim"]),
        info=model_info,
    script:
        "../repbench/stages/intrinsic_dim.py"
