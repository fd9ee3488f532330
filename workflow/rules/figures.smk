rule table:
    """One tidy table per metric family across all models and datasets."""
    input:
        lambda w: per_model_tables(w.family),
    output:
        report(
            f"{RESULTS}/tables/{{family}}.csv",
            caption="../report/table.rst",
            category="Tables",
        ),
    log:
        f"{RESULTS}/logs/table/{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/table/{{family}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    script:
        STAGE_SCRIPT


rule figure:
    """Metric vs relative depth, one line per model (PNG/PDF/SVG as configured)."""
    input:
        f"{RESULTS}/tables/{{family}}.csv",
    output:
        [
            report(
                f"{RESULTS}/figures/{{dataset}}/{{family}}.{fmt}",
                caption="../report/depth_curves.rst",
                category="Figures",
                subcategory="{family}",
                labels={"dataset": "{dataset}", "family": "{family}", "format": fmt},
            )
            for fmt in FIGURE_FORMATS
        ],
    log:
        f"{RESULTS}/logs/figure/{{dataset}}/{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figure/{{dataset}}/{{family}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        pooling=config["figures"]["pooling"],
        dpi=config["figures"]["dpi"],
        options=lambda w: canonical(config["metrics"].get(w.family, {})),
    script:
        STAGE_SCRIPT


rule figure_spectral_steps:
    """RankMe and α-ReQ against training step per model with checkpoints, phases shaded."""
    input:
        table=f"{RESULTS}/tables/spectral.csv",
        phases=f"{RESULTS}/tables/spectral_phases.csv",
    output:
        [
            report(
                f"{RESULTS}/figures/{{dataset}}/spectral_steps.{fmt}",
                caption="../report/spectral_steps.rst",
                category="Figures",
                subcategory="spectral",
                labels={"dataset": "{dataset}", "figure": "steps", "format": fmt},
            )
            for fmt in FIGURE_FORMATS
        ],
    log:
        f"{RESULTS}/logs/figure/{{dataset}}/spectral_steps.log",
    benchmark:
        f"{RESULTS}/benchmarks/figure/{{dataset}}/spectral_steps.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        pooling=config["figures"]["pooling"],
        dpi=config["figures"]["dpi"],
        layer=config["metrics"]["spectral"]["phases"]["layer"],
    script:
        STAGE_SCRIPT


rule figure_eigenspectrum:
    """Eigenspectra (log–log) at chosen relative depths with the fitted α-ReQ power law."""
    input:
        table=f"{RESULTS}/tables/spectral.csv",
        spectra=lambda w: expand(
            f"{RESULTS}/spectra/{w.dataset}/{{model}}.zarr",
            model=dataset_models(w.dataset),
        ),
    output:
        [
            report(
                f"{RESULTS}/figures/{{dataset}}/spectral_eigenspectrum.{fmt}",
                caption="../report/eigenspectrum.rst",
                category="Figures",
                subcategory="spectral",
                labels={
                    "dataset": "{dataset}",
                    "figure": "eigenspectrum",
                    "format": fmt,
                },
            )
            for fmt in FIGURE_FORMATS
        ],
    log:
        f"{RESULTS}/logs/figure/{{dataset}}/spectral_eigenspectrum.log",
    benchmark:
        f"{RESULTS}/benchmarks/figure/{{dataset}}/spectral_eigenspectrum.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        pooling=config["figures"]["pooling"],
        dpi=config["figures"]["dpi"],
        depths=config["metrics"]["spectral"]["eigenspectrum_layers"],
        alpha_req=canonical(config["metrics"]["spectral"]["alpha_req"]),
    script:
        STAGE_SCRIPT


rule figure_id_scales:
    """GRIDE ID vs scale at chosen depths, and local-ID distributions per layer."""
    input:
        f"{RESULTS}/tables/intrinsic_dim.csv",
    output:
        [
            report(
                f"{RESULTS}/figures/{{dataset}}/intrinsic_dim_{name}.{fmt}",
                caption=f"../report/intrinsic_dim_{name}.rst",
                category="Figures",
                subcategory="intrinsic_dim",
                labels={"dataset": "{dataset}", "figure": name, "format": fmt},
            )
            for name in ("scales", "local")
            for fmt in FIGURE_FORMATS
        ],
    log:
        f"{RESULTS}/logs/figure/{{dataset}}/intrinsic_dim_scales.log",
    benchmark:
        f"{RESULTS}/benchmarks/figure/{{dataset}}/intrinsic_dim_scales.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        pooling=config["figures"]["pooling"],
        dpi=config["figures"]["dpi"],
        depths=config["metrics"]["intrinsic_dim"]["scale_figure_layers"],
    script:
        STAGE_SCRIPT
