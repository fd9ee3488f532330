"""repbench.results reads back exactly what the store writers put in a (tiny, hand-built) results folder."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import ROOT

from repbench import results, store

LAYERS, SAMPLES, FEATURES, K, RANKS = 3, 5, 4, 2, 4
IDS = [f"s{i}" for i in range(SAMPLES)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A results folder with one of everything, and the arrays/frames written into it."""
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    written = {}

    acts = root / "activations" / "docs" / "alpha.zarr"
    store.create_activation_store(acts, sample_ids=IDS, n_layers=LAYERS, n_features=FEATURES,
                                  poolings=["mean", "last"], chunk_samples=2, dtype="float32",
                                  attrs={"model": "alpha", "dataset": "docs"})
    group = store.zarr.open_group(str(acts), mode="r+")
    for pooling in ("mean", "last"):
        written[pooling] = rng.standard_normal((LAYERS, SAMPLES, FEATURES)).astype(np.float32)
        group[pooling][...] = written[pooling]
    store.finalize_group(acts, {"n_samples": SAMPLES})

    for space in ("cosine", "euclidean"):
        graph = {p: {"indices": rng.integers(0, SAMPLES, (LAYERS, SAMPLES, K)).astype(np.int32),
                     "distances": rng.uniform(0, 2, (LAYERS, SAMPLES, K)).astype(np.float32)}
                 for p in ("mean", "last")}
        written[f"neighbors-{space}"] = graph
        store.write_layer_arrays(root / "neighbors" / "docs" / space / "alpha.zarr", graph,
                                 ("layer", "sample", "neighbor"), {"model": "alpha", "kmax": K, "space": space})

    written["spectra"] = {"cov_eigenvalues": np.sort(rng.uniform(0, 1, (LAYERS, RANKS)))[:, ::-1].copy(),
                          "singular_values": rng.uniform(0, 1, (LAYERS, RANKS))}
    store.write_layer_arrays(root / "spectra" / "docs" / "alpha.zarr",
                             {"mean": written["spectra"], "last": {k: v + 1 for k, v in written["spectra"].items()}},
                             ("layer", "rank"), {"model": "alpha"})

    written["pair"] = rng.uniform(0, 1, (LAYERS, 2))  # alpha has 3 layers, beta 2
    pair_ds = xr.Dataset({"cka": (("layer_a", "layer_b"), written["pair"])},
                         coords={"layer_a": np.arange(LAYERS), "layer_b": np.arange(2)},
                         attrs={"model_a": "alpha", "model_b": "beta", "k": 5})
    (root / "alignment" / "docs" / "mean").mkdir(parents=True)
    pair_ds.to_netcdf(root / "alignment" / "docs" / "mean" / "alpha__beta.nc", engine="scipy")

    written["geometry"] = pd.DataFrame({"dataset": "docs", "model": ["alpha", "alpha", "beta"], "layer": [0, 1, 0],
                                        "metric": "anisotropy", "value": [0.125, 0.5, 0.25]})
    store.write_csv_atomic(written["geometry"], root / "tables" / "geometry.csv")
    store.write_csv_atomic(written["geometry"].iloc[:1], root / "tables" / "spectral.csv")
    written["per_model"] = written["geometry"][written["geometry"]["model"] == "alpha"]
    store.write_csv_atomic(written["per_model"], root / "metrics" / "docs" / "alpha" / "geometry.csv")
    return root, written


def test_table(folder):
    root, written = folder
    pd.testing.assert_frame_equal(results.table("geometry", results=root), written["geometry"])


def test_missing_table_lists_the_tables_that_exist(folder):
    root, _ = folder
    with pytest.raises(FileNotFoundError) as err:
        results.table("alignment", results=str(root))
    assert "'alignment'" in str(err.value) and "geometry" in str(err.value) and "spectral" in str(err.value)


def test_activations(folder):
    root, written = folder
    ds = results.activations("docs", "alpha", results=root)
    assert isinstance(ds, xr.Dataset) and set(ds.data_vars) == {"mean", "last"}
    assert ds.attrs["model"] == "alpha" and ds.attrs["n_samples"] == SAMPLES
    assert list(ds["sample"].values) == IDS and list(ds["layer"].values) == list(range(LAYERS))
    arr = results.activations("docs", "alpha", pooling="last", results=root)
    assert isinstance(arr, xr.DataArray) and arr.dims == ("layer", "sample", "feature")
    np.testing.assert_array_equal(arr.values, written["last"])
    np.testing.assert_array_equal(ds["mean"].values, written["mean"])
    with pytest.raises(KeyError, match="first"):
        results.activations("docs", "alpha", pooling="first", results=root)


@pytest.mark.parametrize("space", ["cosine", "euclidean"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_neighbors_new_layout(folder, space, pooling):
    root, written = folder
    ds = results.neighbors("docs", "alpha", space, pooling, results=root)
    expected = written[f"neighbors-{space}"][pooling]
    assert set(ds.data_vars) == {"indices", "distances"}
    for name in ("indices", "distances"):
        assert ds[name].dims == ("layer", "sample", "neighbor")
        assert ds[name].dtype == expected[name].dtype
        np.testing.assert_array_equal(ds[name].values, expected[name])
    assert ds.attrs["kmax"] == K and ds.attrs["space"] == space  # the store's provenance


def test_neighbors_reads_only_the_new_layout(folder, tmp_path):
    root, written = folder
    old = tmp_path / "neighbors" / "docs" / "alpha.zarr"  # old layout: one store, groups "{pooling}-{space}"
    store.write_layer_arrays(old, {"mean-cosine": written["neighbors-cosine"]["mean"]},
                             ("layer", "sample", "neighbor"), {})
    with pytest.raises(FileNotFoundError, match="cosine"):
        results.neighbors("docs", "alpha", "cosine", "mean", results=tmp_path)
    with pytest.raises(KeyError, match="first"):
        results.neighbors("docs", "alpha", "cosine", "first", results=root)


def test_spectra(folder):
    root, written = folder
    for pooling, shift in (("mean", 0), ("last", 1)):
        ds = results.spectra("docs", "alpha", pooling, results=root)
        assert set(ds.data_vars) == set(written["spectra"])
        for name, values in written["spectra"].items():
            assert ds[name].dims == ("layer", "rank")
            np.testing.assert_array_equal(ds[name].values, values + shift)


@pytest.mark.parametrize("order", [("alpha", "beta"), ("beta", "alpha")])
def test_pair_in_either_order(folder, order):
    root, written = folder
    ds = results.pair("docs", "mean", *order, results=root)
    assert ds["cka"].dims == ("layer_a", "layer_b") and ds["cka"].shape == (LAYERS, 2)
    np.testing.assert_array_equal(ds["cka"].values, written["pair"])
    assert (ds.attrs["model_a"], ds.attrs["model_b"]) == ("alpha", "beta")
    with pytest.raises(FileNotFoundError):
        results.pair("docs", "last", *order, results=root)


def test_per_model(folder):
    root, written = folder
    pd.testing.assert_frame_equal(results.per_model("docs", "alpha", "geometry", results=root),
                                  written["per_model"].reset_index(drop=True))
    with pytest.raises(FileNotFoundError, match="spectral"):
        results.per_model("docs", "alpha", "spectral", results=root)


def test_results_api_does_not_import_torch():
    code = "import sys; import repbench.results; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT / "workflow")


def test_a_damaged_chunk_read_through_the_api_names_store_and_chunk(tmp_path):
    """The API reads stores through repbench's checked readers, not bare zarr: a flipped byte is an error."""
    path = tmp_path / "neighbors" / "docs" / "cosine" / "alpha.zarr"
    graph = {"mean": {"indices": np.arange(LAYERS * SAMPLES * K, dtype=np.int32).reshape(LAYERS, SAMPLES, K)}}
    store.write_layer_arrays(path, graph, ("layer", "sample", "neighbor"), {"model": "alpha"})
    chunk = path / "mean" / "indices" / "c" / "1" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    ds = results.neighbors("docs", "alpha", "cosine", "mean", results=tmp_path)
    np.testing.assert_array_equal(ds["indices"][0].values, graph["mean"]["indices"][0])  # intact chunks read
    with pytest.raises(store.CorruptChunkError, match=r"alpha\.zarr: array 'mean/indices', chunk c/1/0/0"):
        ds["indices"].values
