rule jobs:
    """Every job's benchmark record and log header in one table, and where the time went per stage."""
    input:
        jobs_inputs,
    output:
        table=report(
            f"{RESULTS}/tables/jobs.csv",
            caption="../report/jobs.rst",
            category="Jobs",
        ),
        figures=[
            report(
                f"{RESULTS}/figures/jobs.{fmt}",
                caption="../report/jobs.rst",
                category="Jobs",
                labels={"figure": "jobs", "format": fmt},
            )
            for fmt in FIGURE_FORMATS
        ],
    log:
        f"{RESULTS}/logs/jobs.log",
    benchmark:
        f"{RESULTS}/benchmarks/jobs.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        records=lambda w: job_records(),
        scope=lambda w: job_scope(),
        dpi=config["figures"]["dpi"],
    script:
        "../repbench/stages/jobs.py"
