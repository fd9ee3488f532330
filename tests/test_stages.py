"""repbench.stages: the job wrapper every rule shares, and the stages' own readers."""

import platform
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from repbench import store
from repbench.stages import run_job
from repbench.stages.alignment import StoreLayers


def job(tmp_path, rule="demo"):
    return SimpleNamespace(rule=rule, threads=1, wildcards={"model": "m"}, log=[str(tmp_path / "logs" / "demo.log")])


def test_run_job_logs_provenance_output_and_wall_time(tmp_path, capfd):
    def demo(j):
        print("inside the job")

    run_job(job(tmp_path), {"demo": demo})
    log = (tmp_path / "logs" / "demo.log").read_text().splitlines()
    assert log[0] == "== repbench rule demo {'model': 'm'}" and log[1].startswith("host: ")
    assert "inside the job" in log and log[-1].startswith("wall_time_s: ")
    assert "inside the job" not in capfd.readouterr().out  # the job's output went to the log, not the terminal


def test_run_job_logs_the_traceback_of_a_failing_job_and_reraises(tmp_path):
    def broken(j):
        raise RuntimeError("model 'm', layer 3: boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_job(job(tmp_path, "broken"), {"broken": broken})
    log = (tmp_path / "logs" / "demo.log").read_text()
    assert "RuntimeError: model 'm', layer 3: boom" in log and "wall_time_s: " in log


FRAGMENT = """
import sys
import numpy as np
from repbench.stages import release_freed_arrays, trim_heap
if sys.argv[1] == "set":
    assert release_freed_arrays()
np.ones(24 * 2**20 // 8)  # a freed 24 MiB mmapped block: glibc's threshold rises to 24 MiB
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
before, kept, arrays = rss(), [], []
for _ in range(60):  # 4 MiB arrays between small survivors, so the heap cannot shrink back from its top
    arrays.append(np.ones(4 * 2**20 // 8))
    kept.append(np.ones(64))
grown = rss()
del arrays
if sys.argv[1] == "trim":
    assert trim_heap()
print((grown - rss()) / (grown - before))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_release_freed_arrays_gives_them_back_to_the_os():
    """The alignment job sets glibc's mmap threshold to 1 MiB: 4 MiB arrays freed between small survivors leave the
    resident set at once. (Without the setting they stayed in the heap on the development machine, 0 % released, but not on
    every machine, so only the setting's effect is asserted.)"""
    released = float(subprocess.run([sys.executable, "-c", FRAGMENT, "set"], capture_output=True, text=True,
                                    check=True).stdout)
    assert released > 0.9, released


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_trim_heap_gives_freed_heap_arrays_back_to_the_os():
    """With glibc's default threshold (raised to 24 MiB by a freed block), 4 MiB arrays come from the heap; freed
    between small survivors, trim_heap (what the neighbors and ID jobs run between layers) releases them."""
    released = float(subprocess.run([sys.executable, "-c", FRAGMENT, "trim"], capture_output=True, text=True,
                                    check=True).stdout)
    assert released > 0.9, released


def test_a_rule_without_a_stage_function_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="no function for rule 'other'"):
        run_job(job(tmp_path, "other"), {"demo": print})


def test_store_layers_read_lazily_and_name_model_and_layer_on_non_finite_values(tmp_path):
    path = tmp_path / "m.zarr"
    group = store.create_activation_store(path, sample_ids=[f"s{i}" for i in range(6)], n_layers=2, n_features=3,
                                          poolings=["mean"], chunk_samples=6, dtype="float32", attrs={"model": "m1"})
    values = np.arange(36, dtype=np.float32).reshape(2, 6, 3)
    values[1, 4, 2] = np.nan
    group["mean"][...] = values
    layers = StoreLayers(path, "mean", None)
    assert len(layers) == 2
    np.testing.assert_array_equal(layers[0], values[0])
    with pytest.raises(ValueError, match="model 'm1', pooling 'mean', layer 1: activations contain non-finite"):
        layers[1]


def test_calibration_routes_each_metric_to_its_null():
    """cka/rv: the closed form (no permutation); graph metrics: null_permutations; other dense metrics:
    null_permutations_dense; the statistics match null_calibration_prepared / rv_null_grid directly."""
    from reference import graphs, related_pair

    from repbench.metrics import alignment as al
    from repbench.stages.alignment import calibration

    A, B = related_pair(np.random.default_rng(2), n=60, da=6, db=5)
    ga, gb = graphs(A, B, kmax=8)
    metrics = ("mutual_knn", "cka", "rv", "procrustes")
    prepared = [al.prepare_model([X], [g], 5, metrics) for X, g in ((A, ga), (B, gb))]
    mats = al.pair_matrices_prepared(*prepared, metrics)
    options = {"null_metrics": list(metrics), "null_permutations": 7, "null_permutations_dense": 3, "seed": 1,
               "null_alpha": 0.05}
    out = calibration(prepared, mats, options)
    assert {m: (out[m]["method"].split(",")[0], out[m]["n_permutations"]) for m in metrics} == {
        "mutual_knn": ("permutation", 7), "cka": ("closed form", 0), "rv": ("closed form", 0),
        "procrustes": ("permutation", 3)}
    direct = al.null_calibration_prepared(*prepared, ("procrustes",), 3, 1, alpha=0.05,
                                          lower_is_more_similar=frozenset({"procrustes"}))
    assert out["procrustes"]["max"] == direct["procrustes"]["max"]
    grid = al.calibration.rv_null_grid(*prepared, 0.05, observed=mats["cka"])
    assert out["rv"]["last"]["p_value"] == out["cka"]["last"]["p_value"] == grid["last"]["p_value"]
    assert np.isnan(out["cka"]["matched_depth"]["p_value"])
    assert calibration(prepared, mats, options | {"null_metrics": []}) == {}


def neighbors_job(tmp_path, acts, out):
    from types import SimpleNamespace

    return SimpleNamespace(
        input=SimpleNamespace(activations=str(acts)), output=[str(out)], wildcards=SimpleNamespace(space="euclidean"),
        params=SimpleNamespace(poolings=["mean", "last"], partial_root=str(tmp_path / "partial"),
                               options={"kmax": 4, "device": "cpu", "budget_mb": 16, "clip_quantile": None}))


def test_neighbors_stream_layer_by_layer_and_resume_after_a_kill(tmp_path, monkeypatch):
    """Each layer's graph lands in the partial store as it is computed; a job killed after three layers resumes
    with the fourth and computes nothing twice; the published store equals an uninterrupted run's."""
    from repbench import neighbors as nb
    from repbench.stages.neighbors import neighbors

    rng = np.random.default_rng(0)
    acts = tmp_path / "m.zarr"
    group = store.create_activation_store(acts, sample_ids=[f"s{i}" for i in range(20)], n_layers=3, n_features=5,
                                          poolings=["mean", "last"], chunk_samples=20, dtype="float32",
                                          attrs={"model": "m", "dataset": "d", "config_hash": "h"})
    for p in ("mean", "last"):
        group[p][...] = rng.normal(size=(3, 20, 5)).astype(np.float32)
    whole = tmp_path / "whole.zarr"
    neighbors(neighbors_job(tmp_path / "a", acts, whole))

    calls, real_knn = [], nb.knn

    def dying_knn(X, *args, **kwargs):
        calls.append(X.copy())
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")  # what a SIGINT/SIGTERM'd job sees mid-layer
        return real_knn(X, *args, **kwargs)

    monkeypatch.setattr(nb, "knn", dying_knn)
    out = tmp_path / "resumed.zarr"
    with pytest.raises(KeyboardInterrupt):
        neighbors(neighbors_job(tmp_path / "b", acts, out))
    assert not out.exists()
    progress = list((tmp_path / "b" / "partial").glob("m.*/progress.json"))
    assert len(progress) == 1 and store.read_json(progress[0])["layers"] == ["mean/0", "mean/1", "mean/2"]
    calls.clear()
    monkeypatch.setattr(nb, "knn", lambda X, *a, **k: (calls.append(X), real_knn(X, *a, **k))[1])
    neighbors(neighbors_job(tmp_path / "b", acts, out))
    assert len(calls) == 3  # the last pooling's three layers only
    assert not list((tmp_path / "b" / "partial").glob("m.*"))
    for p in ("mean", "last"):
        a, b = store.read_layer_arrays(whole, p), store.read_layer_arrays(out, p)
        assert a["indices"].dtype == np.int32 and a["distances"].dtype == np.float32
        assert a["indices"].shape == (3, 20, 4)
        np.testing.assert_array_equal(a["indices"], b["indices"])
        np.testing.assert_array_equal(a["distances"], b["distances"])
    assert store.zarr.open_group(str(out)).attrs["space"] == "euclidean"
