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
        options=alignment_params(),
    script:
        "../repbench/stages/alignment.py"


rule alignment_table:
    """One row per model pair, pooling and metric (summaries, null calibration, bootstrap intervals), and every
    layer × layer matrix as a tidy table."""
    input:
        pair_files(),
    output:
        summary=report(
            f"{RESULTS}/tables/alignment.csv",
            caption="../report/alignment_table.rst",
            category="Tables",
        ),
        layers=report(
            f"{RESULTS}/tables/alignment_layers.csv",
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
        "../repbench/stages/alignment.py"
