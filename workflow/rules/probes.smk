rule probes:
    """Cross-validated linear probes of the labels at every layer of one model (labelled datasets only)."""
    input:
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
        labels=f"{RESULTS}/labels/{{dataset}}.zarr",
    output:
        f"{RESULTS}/metrics/{{dataset}}/{{model}}/probes.csv",
    log:
        f"{RESULTS}/logs/probes/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/probes/{{dataset}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=mem_mb("probes"),
        runtime=runtime("probes"),
    params:
        poolings=config["metrics"]["poolings"],
        info=model_info,
        options=canonical(config["metrics"]["probes"]),
        transfer_by=lambda w: config["datasets"][w.dataset].get("transfer_by"),
    script:
        "../repbench/stages/probes.py"


rule concept_depth_table:
    """The concept depth of every model: the first relative depth where the probe reaches the configured share
    of its best accuracy."""
    input:
        f"{RESULTS}/tables/probes.csv",
    output:
        report(
            f"{RESULTS}/tables/concept_depth.csv",
            caption="../report/table.rst",
            category="Tables",
        ),
    log:
        f"{RESULTS}/logs/concept_depth_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/concept_depth_table.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        rule=canonical(config["metrics"]["probes"]["concept_depth"]),
    script:
        "../repbench/stages/probes.py"
