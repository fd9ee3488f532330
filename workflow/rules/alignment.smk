rule alignment:
    """Layer × layer matrices of every alignment metric for each pair of one model with the models before it in
    config order: one job per model, each pair written to its own file {A}__{B}.nc (A < B by name), listed in the
    job's output."""
    input:
        unpack(alignment_inputs),
    output:
        f"{RESULTS}/alignment/{{dataset}}/{{pooling}}/{{model}}.pairs.json",
    log:
        f"{RESULTS}/logs/alignment/{{dataset}}/{{pooling}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/alignment/{{dataset}}/{{pooling}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: ALIGNMENT["threads"]
    resources:
        mem_mb=mem_mb("alignment"),
        runtime=runtime("alignment"),
    params:
        options=alignment_params(),
        earlier=block_earlier,
    script:
        "../repbench/stages/alignment.py"


rule pair_inputs:
    """A marker: this model and every model before it in config order have their stores and graphs. Its inputs are
    the stores of its run of models (10 in config order) and the previous run's marker; the alignment jobs of the
    next run wait for this one file instead of listing every earlier model's stores, so the DAG grows linearly, not
    quadratically, with the models. Rewritten whenever a store before it changes, which reruns the alignment jobs
    after it (they keep every pair whose inputs did not change)."""
    input:
        unpack(pair_inputs_inputs),
    output:
        f"{RESULTS}/alignment/{{dataset}}/inputs/{{model}}.ready",
    log:
        f"{RESULTS}/logs/pair_inputs/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pair_inputs/{{dataset}}/{{model}}.tsv"
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=100,
        runtime=1,
    shell:
        "touch {output} 2> {log}"


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
