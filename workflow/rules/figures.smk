rule table:
    """One tidy table per metric family across all models and datasets."""
    input:
        lambda w: per_model_tables(w.family),
    output:
        report(
            f"{RESULTS}/tables/{{family}}.csv",
            caption="../report/table.rst",
            category="Tables",
        ),
    log:
        f"{RESULTS}/logs/table/{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/table/{{family}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
    script:
        STAGE_SCRIPT


rule figure:
    """Metric vs relative depth, one line per model (PNG/PDF/SVG as configured)."""
    input:
        f"{RESULTS}/tables/{{family}}.csv",
    output:
        [
            report(
                f"{RESULTS}/figures/{{dataset}}/{{family}}.{fmt}",
                caption="../report/depth_curves.rst",
                category="Figures",
                subcategory="{family}",
                labels={"dataset": "{dataset}", "family": "{family}", "format": fmt},
            )
            for fmt in FIGURE_FORMATS
        ],
    log:
        f"{RESULTS}/logs/figure/{{dataset}}/{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figure/{{dataset}}/{{family}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
    params:
        pooling=config["figures"]["pooling"],
        dpi=config["figures"]["dpi"],
    script:
        STAGE_SCRIPT
