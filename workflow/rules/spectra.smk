rule spectra:
    """Per layer: centred-covariance eigenvalues, singular values, normalised autocorrelation eigenvalues."""
    input:
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
    output:
        directory(f"{RESULTS}/spectra/{{dataset}}/{{model}}.zarr"),
    log:
        f"{RESULTS}/logs/spectra/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/spectra/{{dataset}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=mem_mb("spectra"),
        runtime=runtime("spectra"),
    params:
        poolings=config["metrics"]["poolings"],
    script:
        STAGE_SCRIPT
