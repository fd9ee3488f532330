"""All file I/O of repbench: Zarr v3 stores with named dimensions, atomic publishing, tidy CSV/JSON.

Activation store ``{dataset}/{model}.zarr`` (a Zarr v3 group, readable with ``xr.open_zarr``):
one array per pooling (``mean``, ``last``, ``first``) with dims ``(layer, sample, feature)`` and chunks
``(1, chunk_samples, feature)``; coordinates ``layer`` (0 = embeddings) and ``sample`` (ids); provenance in
the group attributes. Stores are built under ``results/.partial/`` and moved into place when complete.
"""

from __future__ import annotations

import json
import os
import warnings
import shutil
import tempfile
from pathlib import Path

import numpy as np
import zarr

POOLING_DIMS = ("layer", "sample", "feature")


def create_array(group: zarr.Group, name: str, data_or_shape, dims: tuple[str, ...], chunks=None, dtype=None):
    """Create array ``name`` in ``group`` with xarray-readable ``dimension_names``; fill it if data is given."""
    if isinstance(data_or_shape, tuple):
        return group.create_array(
            name, shape=data_or_shape, chunks=chunks, dtype=dtype, dimension_names=dims, fill_value=0
        )
    data = np.asarray(data_or_shape)
    arr = group.create_array(
        name,
        shape=data.shape,
        chunks=chunks or data.shape or None,
        dtype=str if data.dtype.kind in "US" else data.dtype,
        dimension_names=dims,
        fill_value="" if data.dtype.kind in "US" else 0,
    )
    arr[...] = data
    return arr


def chunk_samples_for(n_features: int, itemsize: int, chunk_mb: float, n_samples: int) -> int:
    """Samples per chunk so one ``(1, samples, feature)`` chunk holds about ``chunk_mb`` MiB (≥ 1 sample)."""
    per_sample = n_features * itemsize
    return int(min(n_samples, max(1, round(chunk_mb * 2**20 / per_sample))))


def create_activation_store(
    path: str | Path,
    *,
    sample_ids: list[str],
    n_layers: int,
    n_features: int,
    poolings: list[str],
    chunk_samples: int,
    dtype: str,
    attrs: dict,
) -> zarr.Group:
    """Create an empty activation store (arrays filled as chunks complete)."""
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    n = len(sample_ids)
    create_array(group, "layer", np.arange(n_layers, dtype=np.int32), ("layer",))
    create_array(group, "sample", np.asarray(sample_ids, dtype=str), ("sample",))
    for pooling in poolings:
        create_array(
            group, pooling, (n_layers, n, n_features), POOLING_DIMS, chunks=(1, chunk_samples, n_features), dtype=dtype
        )
    group.attrs.update(attrs)
    return group


def finalize_group(path: str | Path, attrs: dict) -> None:
    """Add final attributes and consolidate metadata (one read opens the store)."""
    group = zarr.open_group(str(path), mode="r+")
    group.attrs.update(attrs)
    zarr.consolidate_metadata(str(path))


warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", category=UserWarning)


def publish(partial: str | Path, final: str | Path) -> None:
    """Move a completed directory or file into place atomically (same file system)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final) if final.is_dir() else final.unlink()
    os.replace(partial, final)


def write_json_atomic(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_json(path: str | Path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def write_csv_atomic(frame, path: str | Path) -> None:
    """Write a pandas frame as CSV via a temporary file (float format fixed for reproducible bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    frame.to_csv(tmp, index=False, float_format="%.10g")
    os.replace(tmp, path)


def open_activations(path: str | Path):
    """The activation store as an ``xarray.Dataset`` (lazy, Dask-backed)."""
    import xarray as xr

    return xr.open_zarr(str(path), consolidated=True)


def activation_attrs(path: str | Path) -> dict:
    return dict(zarr.open_group(str(path), mode="r").attrs)


def pooling_array(path: str | Path, pooling: str):
    """One pooling's ``(layer, sample, feature)`` array as a Dask array (chunks as stored)."""
    import dask.array as da

    group = zarr.open_group(str(path), mode="r")
    if pooling not in group:
        raise KeyError(f"{path}: no pooling {pooling!r} (has {sorted(k for k in group.array_keys())})")
    return da.from_zarr(group[pooling])


def write_layer_arrays(path: str | Path, groups: dict[str, dict[str, np.ndarray]], dims: tuple[str, str], attrs: dict) -> None:
    """Write ``{group: {name: (layer, k) array}}`` as a Zarr v3 store with one subgroup per pooling, atomically.

    Used for spectra (dims ``(layer, rank)``) and neighbour graphs (``(layer, sample, k)``).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    root.attrs.update(attrs)
    for gname, arrays in groups.items():
        group = root.create_group(gname)
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            chunks = (1, *arr.shape[1:])
            create_array(group, name, arr.shape, dims[: arr.ndim], chunks=chunks, dtype=arr.dtype)[...] = arr
    zarr.consolidate_metadata(str(tmp))
    publish(tmp, path)


def read_layer_arrays(path: str | Path, group: str, names=None) -> dict[str, np.ndarray]:
    """The arrays of one subgroup (e.g. one pooling) of a store written by :func:`write_layer_arrays`: all of
    them, or those in ``names``."""
    g = zarr.open_group(str(path), mode="r")
    if group not in g:
        raise KeyError(f"{path}: no group {group!r} (has {sorted(g.group_keys())})")
    return {name: arr[...] for name, arr in g[group].arrays() if names is None or name in names}
