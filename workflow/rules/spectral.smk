rule spectral:
    """RankMe (σ and λ), α-ReQ with R², participation ratio, von Neumann entropy from stored spectra."""
    input:
        spectra=f"{RESULTS}/spectra/{{dataset}}/{{model}}.zarr",
    output:
        f"{RESULTS}/metrics/{{dataset}}/{{model}}/spectral.csv",
    log:
        f"{RESULTS}/logs/spectral/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/spectral/{{dataset}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("spectral"),
        runtime=runtime("spectral"),
    params:
        poolings=config["metrics"]["poolings"],
        options=canonical(
            {k: config["metrics"]["spectral"][k] for k in ("metrics", "alpha_req")}
        ),
        info=model_info,
    script:
        "../repbench/stages/spectral.py"


rule phases:
    """Training phases (warm-up, entropy-seeking, compression-seeking) of every model with checkpoints."""
    input:
        f"{RESULTS}/tables/spectral.csv",
    output:
        report(
            f"{RESULTS}/tables/spectral_phases.csv",
            caption="../report/phases.rst",
            category="Tables",
        ),
    log:
        f"{RESULTS}/logs/phases.log",
    benchmark:
        f"{RESULTS}/benchmarks/phases.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        options=canonical(config["metrics"]["spectral"]["phases"]),
    script:
        "../repbench/stages/spectral.py"
