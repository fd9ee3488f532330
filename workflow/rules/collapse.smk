rule collapse:
    """Neural collapse (NC1, NC2, CDNV) and the concept directions of every layer (labelled datasets only)."""
    input:
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
        labels=f"{RESULTS}/labels/{{dataset}}.zarr",
    output:
        table=f"{RESULTS}/metrics/{{dataset}}/{{model}}/collapse.csv",
        directions=directory(f"{RESULTS}/metrics/{{dataset}}/{{model}}/directions.zarr"),
    log:
        f"{RESULTS}/logs/collapse/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/collapse/{{dataset}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("collapse"),
        runtime=runtime("collapse"),
    params:
        poolings=config["metrics"]["poolings"],
        info=model_info,
        options=canonical(
            {
                k: v
                for k, v in config["metrics"]["collapse"].items()
                if k != "direction_pairs"
            }
        ),
    script:
        "../repbench/stages/collapse.py"


rule directions_table:
    """Cosines between the concept directions of instances that share a space, layer by layer."""
    input:
        [
            f"{RESULTS}/metrics/{d}/{m}/directions.zarr"
            for d, a, b in DIRECTION_PAIRS
            for m in (a, b)
        ],
    output:
        report(
            f"{RESULTS}/tables/directions.csv",
            caption="../report/table.rst",
            category="Tables",
        ),
    log:
        f"{RESULTS}/logs/directions_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/directions_table.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        pairs=DIRECTION_PAIRS,
        poolings=config["metrics"]["poolings"],
    script:
        "../repbench/stages/collapse.py"
