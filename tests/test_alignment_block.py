"""One alignment job per model: its pairs with the models before it, computed once, resumed, reused, and the same on
a Dask cluster of processes; the scheduler context that decides where a job's Dask graph runs."""

import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from repbench import parallel, store
from repbench.config import alignment_blocks, alignment_pairs, load_config, pair_input_markers
from repbench.neighbors import knn
from repbench.stages import alignment as stage

N, LAYERS = 48, 2
METRICS = ["mutual_knn", "cycle_knn_ab", "cka", "rsa", "jaccard_knn"]


def write_model(root, name: str, latent: np.ndarray, seed: int) -> stage.ModelInputs:
    """An activation store (a noisy linear image of a shared latent per layer) and its cosine graph store."""
    rng = np.random.default_rng(seed)
    dim = 6 + seed
    values = np.stack([latent @ rng.normal(size=(latent.shape[1], dim)) + 0.3 * rng.normal(size=(N, dim))
                       for _ in range(LAYERS)]).astype(np.float32)
    acts = root / f"{name}.zarr"
    group = store.create_activation_store(acts, sample_ids=[f"s{i}" for i in range(N)], n_layers=LAYERS,
                                          n_features=dim, poolings=["mean"], chunk_samples=N, dtype="float32",
                                          attrs={"model": name, "dataset": "d", "config_hash": f"h-{name}"})
    group["mean"][...] = values
    indices = np.stack([knn(layer, 12, space="cosine")[0] for layer in values])
    graphs = root / f"{name}.cosine.zarr"
    store.write_layer_arrays(graphs, {"mean": {"indices": indices}}, ("layer", "sample", "neighbor"),
                             {"model": name, "activations_hash": f"h-{name}", "kmax": 12})
    return stage.ModelInputs(name, str(acts), {"cosine": str(graphs)})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    latent = np.random.default_rng(0).normal(size=(N, 4))
    return [write_model(root, name, latent, seed) for seed, name in enumerate(["zeta", "alpha", "mid"])]


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    config, _ = load_config_with(METRICS, tmp_path_factory.mktemp("config"))
    return {**{k: v for k, v in config["alignment"].items() if k not in ("models", "enabled", "threads")},
            "clip_quantile": None, "null_permutations": 9, "null_permutations_dense": 0, "bootstrap": 20}


def load_config_with(metrics, tmp):
    """The test config with these alignment metrics."""
    import yaml
    from conftest import ROOT

    data = yaml.safe_load((ROOT / "tests" / "config" / "config.yaml").read_text())
    data["alignment"]["metrics"] = metrics
    (tmp / "config.yaml").write_text(yaml.safe_dump(data))
    return load_config(tmp / "config.yaml")


def counted(monkeypatch) -> list[str]:
    """Record which pairs ``compute_pair`` is asked for."""
    calls, original = [], stage.compute_pair

    def spy(other, own, own_is_a, pooling, options, path, key, workers=1):
        calls.append(path.rsplit("/", 1)[-1])
        return original(other, own, own_is_a, pooling, options, path, key, workers)

    monkeypatch.setattr(stage, "compute_pair", spy)
    return calls


def test_a_block_writes_each_pair_as_the_pair_function_computes_it(models, options, tmp_path):
    zeta, alpha, mid = models
    rows = stage.alignment_block(mid, [zeta, alpha], "mean", options, tmp_path)
    # files named A__B with A < B by name, whichever model the job belongs to
    assert [(r["model_a"], r["model_b"], r["file"]) for r in rows] == [
        ("mid", "zeta", "mid__zeta.nc"), ("alpha", "mid", "alpha__mid.nc")]
    for row, (a, b) in zip(rows, [(mid, zeta), (alpha, mid)], strict=True):
        graphs = [{s: store.read_layer_arrays(p, "mean", names=("indices",))["indices"] for s, p in m.graphs.items()}
                  for m in (a, b)]
        direct = stage.pair_result(a.activations, b.activations, *graphs, "mean", options)
        with xr.open_dataset(tmp_path / row["file"], engine="scipy") as written:
            assert written.attrs.pop("pair_key") == row["pair_key"]
            xr.testing.assert_identical(written.load(), direct)
    assert not list(tmp_path.glob(".*"))  # no partial file left behind


def test_a_killed_block_resumes_at_the_missing_pairs_and_new_options_recompute(models, options, tmp_path,
                                                                               monkeypatch):
    zeta, alpha, mid = models
    real, started = stage.pair_dataset, []

    def dies_on_the_second_pair(side_a, side_b, pooling, opts, workers=1):
        started.append(1)
        if len(started) == 2:
            raise KeyboardInterrupt  # the job is killed while computing its second pair
        return real(side_a, side_b, pooling, opts, workers)

    monkeypatch.setattr(stage, "pair_dataset", dies_on_the_second_pair)
    with pytest.raises(KeyboardInterrupt):
        stage.alignment_block(mid, [zeta, alpha], "mean", options, tmp_path)
    (finished,) = tmp_path.glob("*.nc")
    written = finished.stat().st_mtime_ns
    monkeypatch.setattr(stage, "pair_dataset", real)
    calls = counted(monkeypatch)
    stage.alignment_block(mid, [zeta, alpha], "mean", options, tmp_path)
    assert calls == list({"alpha__mid.nc", "mid__zeta.nc"} - {finished.name}) and finished.stat().st_mtime_ns == written
    calls.clear()
    stage.alignment_block(mid, [zeta, alpha], "mean", options, tmp_path)  # everything current: nothing computed
    assert calls == []
    stage.alignment_block(mid, [zeta, alpha], "mean", {**options, "k": options["k"] - 1}, tmp_path)
    assert sorted(calls) == ["alpha__mid.nc", "mid__zeta.nc"]


def test_blocks_pair_each_model_with_those_before_it_in_config_order(tmp_path):
    config, instances = load_config_with(METRICS, tmp_path)
    blocks = alignment_blocks(config, instances)
    members = [m for _, m, _ in blocks]
    assert blocks[0][2] == (config["alignment"]["models"][0],) and len(blocks) == len(config["alignment"]["models"]) - 1
    for n, (_, model, earlier) in enumerate(blocks):
        assert earlier == (blocks[0][2][0], *members[:n])
    pairs = alignment_pairs(config, instances)
    assert pairs == sorted(pairs) and {(a, b) for _, a, b in pairs} == {
        tuple(sorted((m, e))) for _, m, earlier in blocks for e in earlier}


def test_a_metric_undefined_on_every_layer_pair_is_reported_in_the_log(models, options, tmp_path, monkeypatch, capsys):
    zeta, alpha, _ = models
    real = stage.pair_dataset

    def with_undefined_pwcca(side_a, side_b, pooling, opts, workers=1):
        ds = real(side_a, side_b, pooling, opts, workers)
        ds["pwcca"] = xr.full_like(ds["cka"], np.nan)
        return ds

    monkeypatch.setattr(stage, "pair_dataset", with_undefined_pwcca)
    stage.alignment_block(alpha, [zeta], "mean", options, tmp_path)
    log = capsys.readouterr().out
    assert "alpha__zeta.nc: pwcca is undefined (NaN) on every layer pair" in log and "more samples" in log
    assert "cka is undefined" not in log


@pytest.mark.parametrize("per_marker", [1, 2, 3, 10])
def test_pair_input_markers_stand_for_every_earlier_model_with_linear_edges(per_marker):
    """Each alignment job waits, directly or through the chain of markers, for exactly the models before it; each
    marker lists at most `per_marker` models' stores and one previous marker."""
    models = [f"m{i}" for i in range(23)]
    blocks = [("d", m, tuple(models[:i])) for i, m in enumerate(models) if i]
    waits, markers = pair_input_markers(blocks, per_marker)

    def covered(marker):  # every model whose stores a marker stands for, following the chain
        if marker is None:
            return []
        members, previous = markers[("d", marker)]
        assert members[-1] == marker and len(members) <= per_marker
        return covered(previous) + list(members)

    assert set(waits) == {("d", m) for m in models[1:]}
    for i, model in enumerate(models[1:], start=1):
        direct, marker = waits[("d", model)]
        assert covered(marker) + list(direct) == models[:i], model
        assert len(direct) < per_marker
    edges = sum(len(d) + (m is not None) for d, m in waits.values()) + sum(
        len(ms) + (p is not None) for ms, p in markers.values())
    assert edges <= 2 * len(models) * (per_marker + 1)
    # appending a model changes nothing that was there: no job's inputs, no marker's
    more = blocks + [("d", "m23", tuple(models))]
    waits_more, markers_more = pair_input_markers(more, per_marker)
    assert {k: v for k, v in waits_more.items() if k != ("d", "m23")} == waits
    assert {k: v for k, v in markers_more.items() if k in markers} == markers
    assert len(markers_more) - len(markers) <= 1
    with pytest.raises(ValueError, match="per_marker"):
        pair_input_markers(blocks, 0)


def test_the_pairs_and_a_family_on_a_cluster_of_processes_equal_the_threaded_run(models, options, tmp_path):
    import distributed

    from repbench.stages.geometry import geometry

    zeta, alpha, mid = models
    threaded, clustered = tmp_path / "threads", tmp_path / "cluster"
    rows = stage.alignment_block(mid, [zeta, alpha], "mean", options, threaded, threads=2)

    def geometry_job(out, address):
        return SimpleNamespace(input=SimpleNamespace(activations=mid.activations), output=[str(out)], threads=2,
                               params=SimpleNamespace(poolings=["mean"], info={"base_model": "mid", "revision": None, "step": None},
                                                      options={"anisotropy_pairs": 64, "seed": 0}),
                               config={"dask": {"scheduler_address": address, "connect_timeout_s": 10}})

    geometry(geometry_job(threaded / "geometry.csv", None))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        on_cluster = stage.alignment_block(mid, [zeta, alpha], "mean", options, clustered,
                                           scheduler_address=cluster.scheduler_address)
        geometry(geometry_job(clustered / "geometry.csv", cluster.scheduler_address))
        # the scheduler (in this process) handed these tasks to the worker processes
        assert {"load_side", "compute_pair", "layer_metrics"} <= set(cluster.scheduler.task_prefixes)
    assert on_cluster == rows
    for row in rows:
        with xr.open_dataset(threaded / row["file"], engine="scipy") as a, \
                xr.open_dataset(clustered / row["file"], engine="scipy") as b:
            xr.testing.assert_identical(a.load(), b.load())
    pd.testing.assert_frame_equal(pd.read_csv(threaded / "geometry.csv"), pd.read_csv(clustered / "geometry.csv"))


def test_a_scheduler_that_does_not_answer_fails_within_seconds_naming_the_key():
    start = time.perf_counter()
    with pytest.raises(parallel.SchedulerUnreachable, match=r"dask\.scheduler_address: no Dask scheduler answered"):
        with parallel.scheduler(1, "tcp://127.0.0.1:9", timeout_s=2):
            pass
    assert time.perf_counter() - start < 15
