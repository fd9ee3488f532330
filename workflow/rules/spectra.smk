rule spectra:
    """Per layer: centred-covariance eigenvalues, singular values, normalised autocorrelation eigenvalues."""
    input:
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
    output:
        directory(f"{RESULTS}/spectra/{{dataset}}/{{model}}.zarr"),
    params:
        poolings=config["metrics"]["poolings"],
    log:
        f"{RESULTS}/logs/spectra/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/spectra/{{dataset}}/{{model}}.tsv"
    threads: 2
    resources:
        mem_mb=mem_mb("spectra"),
        runtime=runtime("spectra"),
    conda:
        CONDA_ENV
    script:
        STAGE_SCRIPT
