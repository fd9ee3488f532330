# Tables across models and the figures drawn from them. A figure reads only tables (every figure has its data
# table) and gets only figure options (figures.*), so a figure tweak reruns figures only.


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
        "../repbench/stages/figures.py"


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
        options=lambda w: figure_options("figure", w.family),
    script:
        "../repbench/stages/figures.py"


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
        "../repbench/stages/figures.py"


rule figure_eigenspectrum:
    """Eigenspectra (log–log) at chosen relative depths with the fitted α-ReQ power law."""
    input:
        table=f"{RESULTS}/tables/spectral.csv",
        spectra=f"{RESULTS}/tables/spectra.csv",
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
        options=figure_options("figure_eigenspectrum", "spectral"),
        alpha_req=canonical(config["metrics"]["spectral"]["alpha_req"]),
    script:
        "../repbench/stages/figures.py"


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
        options=figure_options("figure_id_scales", "intrinsic_dim"),
    script:
        "../repbench/stages/figures.py"


rule figure_alignment:
    """The PRH plots: model × model heatmap (clustered), layer × layer grid, alignment vs model size."""
    input:
        table=f"{RESULTS}/tables/alignment.csv",
        layers=f"{RESULTS}/tables/alignment_layers.csv",
    output:
        [
            report(
                f"{RESULTS}/figures/{{dataset}}/alignment_{name}.{fmt}",
                caption=f"../report/alignment_{name}.rst",
                category="Figures",
                subcategory="alignment",
                labels={"dataset": "{dataset}", "figure": name, "format": fmt},
            )
            for name in ("models", "layers", "size")
            for fmt in FIGURE_FORMATS
        ],
    log:
        f"{RESULTS}/logs/figure/{{dataset}}/alignment.log",
    benchmark:
        f"{RESULTS}/benchmarks/figure/{{dataset}}/alignment.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        pooling=config["figures"]["pooling"],
        dpi=config["figures"]["dpi"],
        options=figure_options("figure_alignment", "alignment"),
    script:
        "../repbench/stages/figures.py"


rule figure_label_steps:
    """Concept depth, best probe score and last-layer NC1 against training step (models with checkpoints)."""
    input:
        depth=f"{RESULTS}/tables/concept_depth.csv",
        collapse=f"{RESULTS}/tables/collapse.csv",
    output:
        [
            report(
                f"{RESULTS}/figures/{{dataset}}/label_steps.{fmt}",
                caption="../report/labels.rst",
                category="Figures",
                subcategory="labels",
                labels={"dataset": "{dataset}", "figure": "steps", "format": fmt},
            )
            for fmt in FIGURE_FORMATS
        ],
    log:
        f"{RESULTS}/logs/figure/{{dataset}}/label_steps.log",
    benchmark:
        f"{RESULTS}/benchmarks/figure/{{dataset}}/label_steps.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        pooling=config["figures"]["pooling"],
        dpi=config["figures"]["dpi"],
    script:
        "../repbench/stages/figures.py"


rule figure_directions:
    """Cosine of the concept directions of instances that share a space, by relative depth."""
    input:
        f"{RESULTS}/tables/directions.csv",
    output:
        [
            report(
                f"{RESULTS}/figures/{{dataset}}/directions.{fmt}",
                caption="../report/labels.rst",
                category="Figures",
                subcategory="labels",
                labels={"dataset": "{dataset}", "figure": "directions", "format": fmt},
            )
            for fmt in FIGURE_FORMATS
        ],
    log:
        f"{RESULTS}/logs/figure/{{dataset}}/directions.log",
    benchmark:
        f"{RESULTS}/benchmarks/figure/{{dataset}}/directions.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        pooling=config["figures"]["pooling"],
        dpi=config["figures"]["dpi"],
    script:
        "../repbench/stages/figures.py"
