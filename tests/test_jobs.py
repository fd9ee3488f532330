"""repbench.jobs: what jobs used, gathered from benchmark records and log headers into a table and a figure."""

from repbench import jobs


def test_records_go_to_the_most_specific_pattern_and_leave_out_removed_models(tmp_path):
    bench = tmp_path / "results" / "benchmarks"
    files = {"figure/docs/geometry.tsv": 2.5, "figure/docs/spectral_steps.tsv": 1.5,
             "extract/docs/kept.tsv": 10.0, "extract/docs/removed.tsv": 99.0, "alignment/docs/mean/a__kept.tsv": 3.0}
    for rel, seconds in files.items():
        (bench / rel).parent.mkdir(parents=True, exist_ok=True)
        (bench / rel).write_text(f"s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                                 f"{seconds}\t0:00:01\t100.5\t1\t1\t1\t0\t0\t50\t1.0\n")
    log = tmp_path / "results" / "logs" / "extract" / "docs" / "kept.log"
    log.parent.mkdir(parents=True)
    log.write_text("== repbench rule extract {}\nhost: old\nslurm_job_id: 1\nwall_time_s: 1\n"
                   "== repbench rule extract {}\nhost: node7\nslurm_job_id: 4242\n"
                   "gpu: NVIDIA H100  CUDA_VISIBLE_DEVICES=0\n")
    records = {
        "extract": ["results/benchmarks/extract/{dataset}/{model}.tsv", "results/logs/extract/{dataset}/{model}.log"],
        "alignment": ["results/benchmarks/alignment/{dataset}/{pooling}/{a}__{b}.tsv", ""],
        "figure": ["results/benchmarks/figure/{dataset}/{family}.tsv", ""],
        "figure_spectral_steps": ["results/benchmarks/figure/{dataset}/spectral_steps.tsv", ""],
    }
    scope = {"dataset": ["docs"], "model": ["kept", "a"], "a": ["kept", "a"], "b": ["kept", "a"]}
    table = jobs.jobs_table(records, scope, root=tmp_path)
    assert list(table["stage"]) == ["extract", "alignment", "figure", "figure_spectral_steps"]
    assert list(table["seconds"]) == [10.0, 3.0, 2.5, 1.5]
    extract = table.iloc[0]
    assert (extract["host"], str(extract["slurm_job_id"]), extract["gpu"]) == ("node7", "4242", "NVIDIA H100")
    assert table.iloc[1]["model"] == "a__kept" and table.iloc[2]["wildcards"] == "dataset=docs,family=geometry"
    fig = jobs.jobs_figure(table)
    assert len(fig.axes) == 2
