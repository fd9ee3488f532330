"""Stores: every array carries a crc32c checksum, and a chunk damaged on disk is an error naming store and chunk."""

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec

from repbench import store

RNG = np.random.default_rng(0)
ACTS = RNG.standard_normal((3, 10, 4)).astype(np.float32)
EIGS = RNG.standard_normal((3, 5)).astype(np.float64)


def activation_store(path):
    group = store.create_activation_store(path, sample_ids=[f"s{i}" for i in range(10)], n_layers=3, n_features=4,
                                          poolings=["mean"], chunk_samples=4, dtype="float32", attrs={"a": 1})
    group["mean"][...] = ACTS
    store.finalize_group(path, {"b": 2})
    return path


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_every_array_has_a_checksum_after_the_compressor(tmp_path):
    acts = activation_store(tmp_path / "acts.zarr")
    store.write_layer_arrays(tmp_path / "spectra.zarr", {"mean": {"cov_eigenvalues": EIGS}}, ("layer", "rank"), {})
    for path in (acts, tmp_path / "spectra.zarr"):
        arrays = list(zarr.open_group(str(path), mode="r").arrays())
        arrays += [item for _, g in zarr.open_group(str(path), mode="r").groups() for item in g.arrays()]
        assert arrays
        for _, arr in arrays:
            codecs = arr.metadata.codecs
            assert isinstance(codecs[-1], Crc32cCodec) and type(codecs[-2]).__name__ == "ZstdCodec", (arr.path, codecs)


def test_untouched_store_reads_back_identically(tmp_path):
    path = activation_store(tmp_path / "acts.zarr")
    np.testing.assert_array_equal(store.pooling_array(path, "mean").compute(), ACTS)
    ds = store.open_activations(path)
    np.testing.assert_array_equal(ds["mean"].values, ACTS)
    assert list(ds["sample"].values) == [f"s{i}" for i in range(10)] and ds.attrs["b"] == 2
    plain = xr.open_zarr(str(path))
    np.testing.assert_array_equal(plain["mean"].values, ACTS)
    assert list(plain["layer"].values) == [0, 1, 2]
    np.testing.assert_array_equal(store.read_array(path, "mean", (1, slice(2, 7))), ACTS[1, 2:7])
    spectra = tmp_path / "spectra.zarr"
    store.write_layer_arrays(spectra, {"mean": {"cov_eigenvalues": EIGS}}, ("layer", "rank"), {})
    np.testing.assert_array_equal(store.read_layer_arrays(spectra, "mean")["cov_eigenvalues"], EIGS)
    np.testing.assert_array_equal(xr.open_zarr(str(spectra), group="mean")["cov_eigenvalues"].values, EIGS)


def assert_names_chunk(err, path, array, key):
    msg = str(err.value)
    assert isinstance(err.value, store.CorruptChunkError)
    assert f"corrupted store {path}" in msg and f"array {array!r}" in msg and f"chunk {key}" in msg, msg
    assert str(path / array / key) in msg and "checksum" in msg


def test_corrupted_chunk_names_store_and_chunk(tmp_path):
    path = activation_store(tmp_path / "acts.zarr")
    flip_byte(path / "mean" / "c" / "1" / "1" / "0")
    with pytest.raises(store.CorruptChunkError) as err:
        store.pooling_array(path, "mean").compute()
    assert_names_chunk(err, path, "mean", "c/1/1/0")
    np.testing.assert_array_equal(store.pooling_array(path, "mean")[0].compute(), ACTS[0])  # other layers still read
    with pytest.raises(store.CorruptChunkError) as err:
        store.open_activations(path)["mean"].values
    assert_names_chunk(err, path, "mean", "c/1/1/0")
    with pytest.raises(store.CorruptChunkError) as err:
        store.read_array(path, "mean")
    assert_names_chunk(err, path, "mean", "c/1/1/0")
    with pytest.raises(ValueError, match="checksum"):  # plain zarr and xarray refuse it too (without the names)
        xr.open_zarr(str(path))["mean"].values


def test_corrupted_coordinate_and_layer_array_chunks(tmp_path):
    path = activation_store(tmp_path / "acts.zarr")
    flip_byte(path / "sample" / "c" / "0")
    with pytest.raises(store.CorruptChunkError) as err:
        store.open_activations(path)
    assert_names_chunk(err, path, "sample", "c/0")
    spectra = tmp_path / "spectra.zarr"
    store.write_layer_arrays(spectra, {"mean": {"cov_eigenvalues": EIGS}}, ("layer", "rank"), {})
    flip_byte(spectra / "mean" / "cov_eigenvalues" / "c" / "2" / "0")
    with pytest.raises(store.CorruptChunkError) as err:
        store.read_layer_arrays(spectra, "mean")
    assert_names_chunk(err, spectra, "mean/cov_eigenvalues", "c/2/0")
