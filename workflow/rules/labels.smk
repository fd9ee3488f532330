rule labels:
    """The labels of one labelled dataset, apart from the activations (adding labels never reruns extraction)."""
    output:
        directory(f"{RESULTS}/labels/{{dataset}}.zarr"),
    log:
        f"{RESULTS}/logs/labels/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/labels/{{dataset}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        spec=lambda w: canonical(config["datasets"][w.dataset]),
    script:
        "../repbench/stages/labels.py"
