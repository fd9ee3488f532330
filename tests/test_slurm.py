"""Cluster execution: the Slurm profile, and a real end-to-end Slurm run (estimates: test_resources.py; the jobs
table: test_jobs.py).

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

import pandas as pd
import pytest
import yaml
from conftest import ROOT

SLURM_SH = ROOT / ".ci" / "slurm.sh"
TEST_CONFIG = ROOT / "tests" / "config" / "slurm.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
ENV = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(Path.home())}


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
