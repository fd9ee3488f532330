rule train:
    """Checkpoints of a small causal LM trained offline on a dataset of the config (source: trained)."""
    output:
        directory(f"{RESULTS}/checkpoints/{{model}}"),
    log:
        f"{RESULTS}/logs/train/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: workflow.cores
    resources:
        mem_mb=mem_mb("train"),
        runtime=runtime("train"),
    params:
        model_spec=lambda w: train_params(w)["model_spec"],
        dataset_name=lambda w: train_params(w)["dataset_name"],
        dataset_spec=lambda w: train_params(w)["dataset_spec"],
    script:
        "../repbench/stages/train.py"
