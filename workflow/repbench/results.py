"""Read a finished (or partial) results folder from Python: tables, stores and pair files as pandas/xarray objects.

Every function takes the results folder as ``results`` (default ``"results"``, the workflow's default) and
returns lazily loaded xarray objects for the Zarr stores, so opening a large store costs little until values are
used. Nothing here imports torch.

Example::

    from repbench import results
    geometry = results.table("geometry")                                # pandas.DataFrame
    acts = results.activations("docs", "minilm", pooling="mean")        # (layer, sample, feature), lazy
    graph = results.neighbors("docs", "minilm", "cosine", "mean")       # indices, distances (layer, sample, neighbor)
    cka = results.pair("docs", "mean", "tiny-bert", "minilm")["cka"]    # (layer_a, layer_b) of the sorted pair
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import xarray as xr

__all__ = ["table", "activations", "neighbors", "spectra", "pair", "per_model"]


def _root(results: str | Path) -> Path:
    return Path(results)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"no {what} at {path}")
    return path


def _open_group(path: Path, group: str, what: str) -> xr.Dataset:
    """One subgroup of a layer-array store (``repbench.store.write_layer_arrays``) with the root's attributes."""
    import zarr

    from . import store

    _require(path, what)
    root = zarr.open_group(str(path), mode="r")
    if group not in root:
        raise KeyError(f"{path}: no group {group!r} (has {sorted(root.group_keys())})")
    ds = store.open_dataset(path, group)  # a chunk damaged on disk is an error naming store and chunk
    ds.attrs = {**dict(root.attrs), **ds.attrs}
    return ds


def table(name: str, results: str | Path = "results") -> pd.DataFrame:
    """A combined tidy table, ``{results}/tables/{name}.csv``.

    Parameters
    ----------
    name : str
        Table name without suffix: ``geometry``, ``spectral``, ``intrinsic_dim``, ``alignment``, ``jobs``, …
    results : str or Path, optional
        The results folder.

    Returns
    -------
    pandas.DataFrame
        The table as written by the workflow.

    Raises
    ------
    FileNotFoundError
        If the table does not exist; the message lists the tables that do.
    """
    folder = _root(results) / "tables"
    path = folder / f"{name}.csv"
    if not path.is_file():
        have = sorted(p.stem for p in folder.glob("*.csv")) if folder.is_dir() else []
        raise FileNotFoundError(f"no table {name!r} at {path}; tables in {folder}: {have or 'none'}")
    return pd.read_csv(path)


def activations(dataset: str, model: str, pooling: str | None = None,
                results: str | Path = "results") -> xr.Dataset | xr.DataArray:
    """The activation store ``{results}/activations/{dataset}/{model}.zarr``, opened lazily.

    Parameters
    ----------
    dataset, model : str
        Dataset name and model instance name (e.g. ``pythia-70m@step1000``).
    pooling : str, optional
        ``mean``, ``last`` or ``first``: return that pooling's array only.
    results : str or Path, optional
        The results folder.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Without ``pooling``: the Dataset with one variable per pooling, coordinates ``layer`` (0 = embeddings) and
        ``sample`` (ids) and the provenance in ``attrs``. With ``pooling``: the DataArray
        ``(layer, sample, feature)``.
    """
    from . import store

    path = _require(_root(results) / "activations" / dataset / f"{model}.zarr", "activation store")
    ds = store.open_activations(path)  # a chunk damaged on disk is an error naming store and chunk
    if pooling is None:
        return ds
    if pooling not in ds.data_vars:
        raise KeyError(f"{path}: no pooling {pooling!r} (has {sorted(ds.data_vars)})")
    return ds[pooling]


def neighbors(dataset: str, model: str, space: str, pooling: str, results: str | Path = "results") -> xr.Dataset:
    """The exact k-NN graph of every layer: ``{results}/neighbors/{dataset}/{space}/{model}.zarr``, group
    ``{pooling}``.

    Parameters
    ----------
    dataset, model : str
        Dataset and model instance names.
    space : str
        ``cosine`` or ``euclidean``.
    pooling : str
        ``mean``, ``last`` or ``first``.
    results : str or Path, optional
        The results folder.

    Returns
    -------
    xarray.Dataset
        ``indices`` (int32) and ``distances`` (float32) with dims ``(layer, sample, neighbor)``: neighbours in
        ascending distance, self excluded; the store's provenance (``kmax``, …) in ``attrs``.
    """
    path = _root(results) / "neighbors" / dataset / space / f"{model}.zarr"
    return _open_group(path, pooling, f"{space} neighbour graph")


def spectra(dataset: str, model: str, pooling: str, results: str | Path = "results") -> xr.Dataset:
    """The per-layer spectra: ``{results}/spectra/{dataset}/{model}.zarr``, group ``{pooling}``.

    Parameters
    ----------
    dataset, model, pooling : str
        Dataset, model instance and pooling names.
    results : str or Path, optional
        The results folder.

    Returns
    -------
    xarray.Dataset
        One variable per spectrum (e.g. ``cov_eigenvalues``) with dims ``(layer, rank)``; provenance in ``attrs``.
    """
    path = _root(results) / "spectra" / dataset / f"{model}.zarr"
    return _open_group(path, pooling, "spectra store")


def pair(dataset: str, pooling: str, model_a: str, model_b: str, results: str | Path = "results") -> xr.Dataset:
    """The alignment of one model pair: ``{results}/alignment/{dataset}/{pooling}/{A}__{B}.nc``.

    The two models may be given in either order: ``A, B = sorted((model_a, model_b))``, the order the workflow
    names pair files by. The matrices are therefore ``(layer_a, layer_b)`` of the sorted pair — rows are the
    layers of the model whose name sorts first, whichever order the models were given in; ``attrs["model_a"]``
    and ``attrs["model_b"]`` say which is which.

    Parameters
    ----------
    dataset, pooling : str
        Dataset and pooling names.
    model_a, model_b : str
        The two model instance names, in any order.
    results : str or Path, optional
        The results folder.

    Returns
    -------
    xarray.Dataset
        One ``(layer_a, layer_b)`` matrix per alignment metric; summaries, null statistics and bootstrap
        intervals in ``attrs``. Loaded into memory (the file is closed).
    """
    a, b = sorted((model_a, model_b))
    path = _require(_root(results) / "alignment" / dataset / pooling / f"{a}__{b}.nc", "pair file")
    with xr.open_dataset(path, engine="scipy") as ds:
        return ds.load()


def per_model(dataset: str, model: str, family: str, results: str | Path = "results") -> pd.DataFrame:
    """One model's metric table: ``{results}/metrics/{dataset}/{model}/{family}.csv``.

    Parameters
    ----------
    dataset, model : str
        Dataset and model instance names.
    family : str
        ``geometry``, ``spectral`` or ``intrinsic_dim``.
    results : str or Path, optional
        The results folder.

    Returns
    -------
    pandas.DataFrame
        Tidy rows: identity columns, ``pooling, layer, n_layers, relative_depth, metric, value`` (and the
        family's extra columns).
    """
    path = _require(_root(results) / "metrics" / dataset / model / f"{family}.csv", f"{family} table")
    return pd.read_csv(path)
