rule alignment:
    """Layer × layer matrices of every alignment metric for one unordered model pair (A < B by name)."""
    input:
        unpack(alignment_inputs),
    output:
        f"{RESULTS}/alignment/{{dataset}}/{{pooling}}/{{a}}__{{b}}.nc",
    log:
        f"{RESULTS}/logs/alignment/{{dataset}}/{{pooling}}/{{a}}__{{b}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/alignment/{{dataset}}/{{pooling}}/{{a}}__{{b}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("alignment"),
        runtime=runtime("alignment"),
    params:
        options=canonical(
            {
                k: v
                for k, v in ALIGNMENT.items()
                if k not in ("summary", "heatmap_metric", "models", "enabled")
            }
        ),
    script:
        STAGE_SCRIPT


rule alignment_table:
    """One row per model pair, pooling and metric: summaries, null calibration, bootstrap intervals."""
    input:
        pair_files(),
    output:
        report(
            f"{RESULTS}/tables/alignment.csv",
            caption="../report/alignment_table.rst",
            category="Tables",
        ),
    log:
        f"{RESULTS}/logs/alignment_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/alignment_table.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    script:
        STAGE_SCRIPT


rule figure_alignment:
    """The PRH plots: model × model heatmap (clustered), layer × layer grid, alignment vs model size."""
    input:
        table=f"{RESULTS}/tables/alignment.csv",
        pairs=lambda w: pair_files(w.dataset, [config["figures"]["pooling"]]),
    output:
        [
            report(
                f"{RESULTS}/figures/{{dataset}}/alignment_{name}.{fmt}",
                caption=f"../report/alignment_{name}.rst",
                category="Figures",
                subcategory="alignment",
                labels={"dataset": "{dataset}", "figure": name, "format": fmt},
            )
            for name in ("models", "layers", "size")
            for fmt in FIGURE_FORMATS
        ],
    log:
        f"{RESULTS}/logs/figure/{{dataset}}/alignment.log",
    benchmark:
        f"{RESULTS}/benchmarks/figure/{{dataset}}/alignment.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        pooling=config["figures"]["pooling"],
        dpi=config["figures"]["dpi"],
        metric=ALIGNMENT["heatmap_metric"],
        summary=ALIGNMENT["summary"],
    script:
        STAGE_SCRIPT
