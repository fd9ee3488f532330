rule clusters:
    """Label overlap, silhouette, Calinski–Harabasz, Davies–Bouldin, Dunn and Xie–Beni per layer (labelled
    datasets only)."""
    input:
        neighbors=f"{RESULTS}/neighbors/{{dataset}}/euclidean/{{model}}.zarr",
        activations=f"{RESULTS}/activations/{{dataset}}/{{model}}.zarr",
        labels=f"{RESULTS}/labels/{{dataset}}.zarr",
    output:
        f"{RESULTS}/metrics/{{dataset}}/{{model}}/clusters.csv",
    log:
        f"{RESULTS}/logs/clusters/{{dataset}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/clusters/{{dataset}}/{{model}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("clusters"),
        runtime=runtime("clusters"),
    params:
        poolings=config["metrics"]["poolings"],
        info=model_info,
        options=canonical(config["metrics"]["clusters"]),
    script:
        "../repbench/stages/clusters.py"


rule aqi_table:
    """The AQI composite (Calinski–Harabasz and Xie–Beni, normalised over the set of every model's last layer)."""
    input:
        f"{RESULTS}/tables/clusters.csv",
    output:
        report(
            f"{RESULTS}/tables/aqi.csv",
            caption="../report/table.rst",
            category="Tables",
        ),
    log:
        f"{RESULTS}/logs/aqi_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/aqi_table.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("aggregate"),
        runtime=runtime("aggregate"),
    params:
        gamma=0.5,
    script:
        "../repbench/stages/clusters.py"
