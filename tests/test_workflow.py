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
    for model, n_layers in [("minilm", 7), ("tiny-bert", 3), ("tiny-neox", 4)]:
        ds = xr.open_zarr(res / "activations" / "docs" / f"{model}.zarr")
        assert ds["mean"].dims == ("layer", "sample", "feature")
        assert ds.sizes["layer"] == n_layers and ds.sizes["sample"] == 64
        assert (res / "metrics" / "docs" / model / "geometry.csv").is_file()
        assert (res / "logs" / "extract" / "docs" / f"{model}.log").read_text().count("wall_time_s") == 1
        assert (res / "benchmarks" / "extract" / "docs" / f"{model}.tsv").is_file()
    import pandas as pd

    table = pd.read_csv(res / "tables" / "geometry.csv")
    assert set(table["model"]) == {"minilm", "tiny-bert", "tiny-neox"}
    assert set(table["metric"]) == {"mean_norm", "anisotropy"} and set(table["pooling"]) == {"mean", "last"}
    assert table["value"].notna().all()
    assert len(table) == (7 + 3 + 4) * 2 * 2
    for fmt in ("png", "pdf"):
        assert (res / "figures" / "docs" / f"geometry.{fmt}").stat().st_size > 1000
    assert not list((res / ".partial").rglob("*.zarr")) if (res / ".partial").exists() else True


def test_rerun_runs_nothing(workflow_run):
    work, config = workflow_run
    out = snakemake(work, config, "-n").stdout
    assert "Nothing to be done" in out, out[-2000:]
    assert job_counts(out) == {}


def test_tables_and_figures_regenerate_byte_for_byte(workflow_run):
    work, config = workflow_run
    res = work / "results"
    paths = [res / "tables" / "geometry.csv", res / "figures" / "docs" / "geometry.png",
             res / "figures" / "docs" / "geometry.pdf", res / "metrics" / "docs" / "minilm" / "geometry.csv"]
    before = [p.read_bytes() for p in paths]
    snakemake(work, config, "--forcerun", "geometry", "table", "figure")
    assert [p.read_bytes() for p in paths] == before


def test_adding_a_model_runs_only_its_jobs(workflow_run):
    work, config = workflow_run
    data = yaml.safe_load(config.read_text())
    data["models"]["tiny-bert-wide"] = {**data["models"]["tiny-bert"], "config": {
        "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}}
    bigger = work / "config_plus_one.yaml"
    bigger.write_text(yaml.safe_dump(data))
    counts = job_counts(snakemake(work, bigger, "-n").stdout)
    assert counts == {"all": 1, "extract": 1, "geometry": 1, "table": 1, "figure": 1, "total": 5}, counts


def test_changing_a_figure_option_reruns_only_figures(workflow_run):
    work, config = workflow_run
    data = yaml.safe_load(config.read_text())
    data["figures"]["dpi"] = 99
    changed = work / "config_dpi.yaml"
    changed.write_text(yaml.safe_dump(data))
    counts = job_counts(snakemake(work, changed, "-n").stdout)
    assert counts == {"all": 1, "figure": 1, "total": 2}, counts


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
