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
        # the dataset without `views` (views are a dataset of their own: adding them never relabels)
        spec=lambda w: canonical(
            {k: v for k, v in config["datasets"][w.dataset].items() if k != "views"}
        ),
    script:
        "../repbench/stages/labels.py"
