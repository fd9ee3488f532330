rule extract:
    """Every layer's pooled activations of one model on one dataset (Zarr v3, resumable, atomic)."""
    input:
        extract_inputs,
    output:
        directory(f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr"),
    log:
        f"{RESULTS}/logs/extract/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract/{{dataset}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: config["extract"]["threads"] or workflow.cores
    resources:
        gpu=EXTRACT_GPUS,
        mem_mb=mem_mb("extract"),
        runtime=runtime("extract"),
    params:
        model_spec=lambda w: extract_params(w)["model_spec"],
        revision=lambda w: extract_params(w)["revision"],
        dataset_spec=lambda w: extract_params(w)["dataset_spec"],
        options=lambda w: extract_params(w)["options"],
        partial_root=lambda w: f"{RESULTS}/.partial/activations/{w.dataset}",
    script:
        "../repbench/stages/extract.py"
