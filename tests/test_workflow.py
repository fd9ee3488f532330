"""Integration: the workflow on the tiny test config in a temp dir — outputs, reruns, incremental adds, report."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
import yaml
from conftest import ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "2"]


def snakemake(workdir: Path, config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(config), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Per-rule job counts from the 'Job stats' table of a dry run ({} when there is nothing to do)."""
    counts = {}
    in_table = False
    for line in dry_run_output.splitlines():
        if line.startswith("job") and "count" in line:
            in_table = True
            continue
        if in_table:
            m = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
            if m:
                counts[m.group(1)] = int(m.group(2))
            elif line.strip() and not line.startswith("-"):
                in_table = False
    return counts


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    config = work / "config.yaml"
    shutil.copy(ROOT / "tests" / "config" / "config.yaml", config)
    snakemake(work, config)
    return work, config


def test_outputs_exist_and_are_well_formed(workflow_run):
    work, _ = workflow_run
    res = work / "results"
    models = [("minilm", 7), ("tiny-bert", 3), ("tiny-neox", 4)] + [(f"tiny-lm@step{s}", 3) for s in (0, 2, 4, 8)]
    for model, n_layers in models:
        ds = xr.open_zarr(res / "activations" / "docs" / f"{model}.zarr")
        assert ds["mean"].dims == ("layer", "sample", "feature")
        assert ds.sizes["layer"] == n_layers and ds.sizes["sample"] == 64
        assert (res / "metrics" / "docs" / model / "geometry.csv").is_file()
        assert (res / "metrics" / "docs" / model / "spectral.csv").is_file()
        spectra = xr.open_zarr(res / "spectra" / "docs" / f"{model}.zarr", group="mean")
        assert spectra["cov_eigenvalues"].dims == ("layer", "rank") and spectra.sizes["layer"] == n_layers
        assert (res / "logs" / "extract" / "docs" / f"{model}.log").read_text().count("wall_time_s") == 1
        assert (res / "benchmarks" / "extract" / "docs" / f"{model}.tsv").is_file()
    import pandas as pd

    table = pd.read_csv(res / "tables" / "geometry.csv")
    assert set(table["model"]) == {m for m, _ in models}
    assert set(table["metric"]) == {"mean_norm", "anisotropy"} and set(table["pooling"]) == {"mean"}
    assert table["value"].notna().all()
    n_layer_rows = sum(n for _, n in models)  # one metric pooling
    assert len(table) == n_layer_rows * 2
    spectral = pd.read_csv(res / "tables" / "spectral.csv")
    assert len(spectral) == n_layer_rows * 5
    assert sorted(spectral.dropna(subset=["step"])["step"].unique()) == [0, 2, 4, 8]
    undefined = spectral[spectral["value"].isna()]
    assert (undefined["reason"].fillna("").astype(str).str.len() > 0).all()  # NaN only with a reason
    phases = pd.read_csv(res / "tables" / "spectral_phases.csv")
    assert set(phases["base_model"]) == {"tiny-lm"} and phases["start_step"].min() == 0
    assert phases["end_step"].max() == 8
    for name in ("geometry", "spectral", "spectral_eigenspectrum", "spectral_steps"):
        for fmt in ("png", "pdf"):
            assert (res / "figures" / "docs" / f"{name}.{fmt}").stat().st_size > 1000
    assert sorted(p.name for p in (res / "checkpoints" / "tiny-lm").glob("step*")) == ["step0", "step2", "step4", "step8"]
    ids = pd.read_csv(res / "tables" / "intrinsic_dim.csv")
    assert {"twonn", "twonn_mle", "gride", "mle_levina_bickel", "local_id"} == set(ids["metric"])
    assert ids["value"].notna().all() and (ids["n_duplicates"] >= 0).all()
    align = pd.read_csv(res / "tables" / "alignment.csv")
    pairs = {("minilm", "tiny-bert"), ("minilm", "tiny-neox"), ("tiny-bert", "tiny-neox")}
    assert set(zip(align["model_a"], align["model_b"])) == pairs
    assert len(align) == 3 * 8  # pairs × metrics
    assert align["max_p_value"].notna().sum() == 3 * 2  # null for mutual_knn and cka
    pair = xr.open_dataset(res / "alignment" / "docs" / "mean" / "minilm__tiny-neox.nc", engine="scipy")
    assert pair["mutual_knn"].dims == ("layer_a", "layer_b") and pair["mutual_knn"].shape == (7, 4)
    assert pair.attrs["k"] == 5 and pair.attrs["n_samples"] == 64
    for name in ("intrinsic_dim", "intrinsic_dim_scales", "intrinsic_dim_local", "alignment_models",
                 "alignment_layers", "alignment_size"):
        assert (res / "figures" / "docs" / f"{name}.png").stat().st_size > 1000
    assert not list((res / ".partial").rglob("*.zarr")) if (res / ".partial").exists() else True


def test_rerun_runs_nothing(workflow_run):
    work, config = workflow_run
    out = snakemake(work, config, "-n").stdout
    assert "Nothing to be done" in out, out[-2000:]
    assert job_counts(out) == {}


def test_tables_and_figures_regenerate_byte_for_byte(workflow_run):
    work, config = workflow_run
    res = work / "results"
    paths = [res / "tables" / "geometry.csv", res / "tables" / "spectral.csv", res / "tables" / "spectral_phases.csv",
             res / "metrics" / "docs" / "minilm" / "geometry.csv", res / "metrics" / "docs" / "minilm" / "spectral.csv"]
    paths += [res / "tables" / "intrinsic_dim.csv", res / "tables" / "alignment.csv"]
    paths += [res / "figures" / "docs" / f"{n}.{f}" for n in (
        "geometry", "spectral", "spectral_eigenspectrum", "spectral_steps", "intrinsic_dim", "intrinsic_dim_scales",
        "intrinsic_dim_local", "alignment_models", "alignment_layers", "alignment_size") for f in ("png", "pdf")]
    before = [p.read_bytes() for p in paths]
    snakemake(work, config, "--forcerun", "geometry", "spectra", "spectral", "table", "phases", "figure",
              "figure_eigenspectrum", "figure_spectral_steps", "neighbors", "intrinsic_dim", "alignment",
              "alignment_table", "figure_alignment", "figure_id_scales")
    assert [p.read_bytes() for p in paths] == before


def test_adding_a_model_runs_only_its_jobs(workflow_run):
    work, config = workflow_run
    data = yaml.safe_load(config.read_text())
    data["models"]["tiny-bert-wide"] = {**data["models"]["tiny-bert"], "config": {
        "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}}
    data["alignment"]["models"].append("tiny-bert-wide")  # the (M+1)-th model of the pairs, M = 3
    bigger = work / "config_plus_one.yaml"
    bigger.write_text(yaml.safe_dump(data))
    counts = job_counts(snakemake(work, bigger, "-n").stdout)
    # the new model's own jobs, its M = 3 new pairs (one metric pooling), then the aggregates that read every model
    # (tables, figures, phases, and the jobs table that gathers every job's record)
    assert counts == {"all": 1, "extract": 1, "geometry": 1, "spectra": 1, "spectral": 1, "neighbors": 1,
                      "intrinsic_dim": 1, "alignment": 3, "alignment_table": 1, "figure_alignment": 1,
                      "table": 3, "figure": 3, "figure_eigenspectrum": 1, "figure_id_scales": 1, "phases": 1,
                      "figure_spectral_steps": 1, "jobs": 1, "total": 23}, counts


def test_changing_a_figure_option_reruns_only_figures(workflow_run):
    work, config = workflow_run
    data = yaml.safe_load(config.read_text())
    data["figures"]["dpi"] = 99
    changed = work / "config_dpi.yaml"
    changed.write_text(yaml.safe_dump(data))
    counts = job_counts(snakemake(work, changed, "-n").stdout)
    assert counts == {"all": 1, "figure": 3, "figure_eigenspectrum": 1, "figure_spectral_steps": 1,
                      "figure_id_scales": 1, "figure_alignment": 1, "jobs": 1, "total": 9}, counts


def test_changing_alignment_k_recomputes_no_graph(workflow_run):
    work, config = workflow_run
    data = yaml.safe_load(config.read_text())
    data["alignment"]["k"] = 3
    changed = work / "config_k.yaml"
    changed.write_text(yaml.safe_dump(data))
    counts = job_counts(snakemake(work, changed, "-n").stdout)
    assert counts == {"all": 1, "alignment": 3, "alignment_table": 1, "figure_alignment": 1, "jobs": 1,
                      "total": 7}, counts


def test_changing_the_alpha_rank_window_reruns_only_spectral_metrics(workflow_run):
    work, config = workflow_run
    data = yaml.safe_load(config.read_text())
    data["metrics"]["spectral"]["alpha_req"]["rank_max"] = 15
    changed = work / "config_alpha.yaml"
    changed.write_text(yaml.safe_dump(data))
    counts = job_counts(snakemake(work, changed, "-n").stdout)
    assert "spectra" not in counts and "extract" not in counts and "train" not in counts, counts
    assert counts["spectral"] == 7 and counts["figure_eigenspectrum"] == 1, counts


def test_report_contains_figures(workflow_run):
    work, config = workflow_run
    report = work / "report.zip"
    snakemake(work, config, "--report", str(report))
    import zipfile

    names = zipfile.ZipFile(report).namelist()
    assert any(n.endswith("geometry.png") for n in names), names[:20]
    assert any(n.endswith("geometry.csv") for n in names)


def test_invalid_config_stops_before_any_job(tmp_path):
    config = tmp_path / "bad.yaml"
    data = yaml.safe_load((ROOT / "tests" / "config" / "config.yaml").read_text())
    data["models"]["tiny-bert"]["source"] = "s3"
    config.write_text(yaml.safe_dump(data))
    proc = snakemake(tmp_path, config, check=False)
    assert proc.returncode != 0
    assert "models.tiny-bert.source" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
