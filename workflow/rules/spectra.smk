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
        "../repbench/stages/spectra.py"


rule spectra_table:
    """Every model's covariance eigenvalues per pooling and layer as one tidy table (behind the eigenspectrum figure)."""
    input:
        lambda w: [
            f"{RESULTS}/spectra/{d}/{m}.zarr"
            for d, m in MODEL_DATASETS
            if d not in VIEWS
        ],
    output:
        report(
            f"{RESULTS}/tables/spectra.csv",
            caption="../report/table.rst",
            category="Tables",
        ),
    log:
        f"{RESULTS}/logs/spectra_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/spectra_table.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        poolings=config["metrics"]["poolings"],
    script:
        "../repbench/stages/spectra.py"
