"""All file I/O of repbench: Zarr v3 stores with named dimensions, atomic publishing, tidy CSV/JSON.

Activation store ``{dataset}/{model}.zarr`` (a Zarr v3 group, readable with ``xr.open_zarr``):
one array per pooling (``mean``, ``last``, ``first``) with dims ``(layer, sample, feature)`` and chunks
``(1, chunk_samples, feature)``; coordinates ``layer`` (0 = embeddings) and ``sample`` (ids); provenance in
the group attributes. A labelled dataset adds the coordinate ``label`` (dim ``sample``; int64 class index or
float64 regression target) and one string coordinate per extra sample column (``groups``, e.g. ``template``), and
the attributes ``label_names``, ``label_type`` and ``label_groups`` (see :func:`read_labels`). Stores are built under ``results/.partial/`` and moved into place when complete.

Every array repbench writes ends its codec chain with a crc32c checksum (after the zstd compressor), so a chunk
corrupted on disk is an error, never silent garbage; the readers here (:func:`read_array`,
:func:`read_layer_arrays`, :func:`pooling_array`, :func:`open_activations`) turn zarr's bare checksum error into
a :class:`CorruptChunkError` naming the store, the array and the chunk file.
"""

from __future__ import annotations

import json
import os
import warnings
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import zarr

POOLING_DIMS = ("layer", "sample", "feature")


def compressors() -> tuple:
    """The bytes-to-bytes codecs of every array: zarr's default zstd, then a crc32c checksum of the result."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return (ZstdCodec(), Crc32cCodec())


def create_array(group: zarr.Group, name: str, data_or_shape, dims: tuple[str, ...], chunks=None, dtype=None):
    """Create array ``name`` in ``group`` with xarray-readable ``dimension_names`` and checksummed chunks; fill
    it if data is given."""
    if isinstance(data_or_shape, tuple):
        return group.create_array(
            name, shape=data_or_shape, chunks=chunks, dtype=dtype, dimension_names=dims, fill_value=0,
            compressors=compressors(),
        )
    data = np.asarray(data_or_shape)
    arr = group.create_array(
        name,
        shape=data.shape,
        chunks=chunks or data.shape or None,
        dtype=str if data.dtype.kind in "US" else data.dtype,
        dimension_names=dims,
        fill_value="" if data.dtype.kind in "US" else 0,
        compressors=compressors(),
    )
    arr[...] = data
    return arr


class CorruptChunkError(ValueError):
    """A chunk of a store fails its checksum (or cannot be decoded): the file on disk is damaged."""


def _is_checksum_error(exc: BaseException) -> bool:
    return isinstance(exc, ValueError) and not isinstance(exc, CorruptChunkError) and "checksum" in str(exc).lower()


def _corrupt(path, arr: zarr.Array, coords: tuple[int, ...] | None, exc: BaseException) -> CorruptChunkError:
    if coords is None:
        where = "a chunk"
    else:
        key = arr.metadata.encode_chunk_key(tuple(coords))
        where = f"chunk {key} (file {Path(path) / arr.path / key})"
    return CorruptChunkError(
        f"corrupted store {path}: array {arr.path!r}, {where} fails its crc32c checksum ({exc}); the file was "
        f"damaged on disk: delete {path} and rerun the job that wrote it"
    )


def _bad_chunk(arr: zarr.Array) -> tuple[int, ...] | None:
    """Coordinates of the first chunk of ``arr`` that fails its checksum (reads chunk by chunk: error path only)."""
    import itertools

    for coords in itertools.product(*(range(n) for n in arr.cdata_shape)):
        try:
            arr.get_block_selection(coords)
        except ValueError as exc:
            if _is_checksum_error(exc):
                return coords
            raise
    return None


def _chunk_of(arr: zarr.Array, selection) -> tuple[int, ...] | None:
    """Coordinates of the chunk a selection of one slice per dimension starts in (Dask asks for whole chunks),
    else None."""
    if isinstance(selection, tuple) and len(selection) == arr.ndim and all(isinstance(s, slice) for s in selection):
        return tuple((s.start or 0) // c for s, c in zip(selection, arr.chunks))
    return None


def read_array(path: str | Path, arr: zarr.Array | str, selection=Ellipsis) -> np.ndarray:
    """``arr[selection]`` (an array of the store at ``path``, or its name there); a chunk that fails its checksum
    raises :class:`CorruptChunkError` naming the store, the array and the chunk file."""
    if isinstance(arr, str):
        arr = zarr.open_group(str(path), mode="r")[arr]
    try:
        return arr[selection]
    except ValueError as exc:
        if not _is_checksum_error(exc):
            raise
        coords = _chunk_of(arr, selection)
        raise _corrupt(path, arr, coords if coords is not None else _bad_chunk(arr), exc) from exc


class _CheckedZarr:
    """Array-like view of a zarr array for ``dask.array.from_array``: each block read is one aligned chunk, so a
    checksum failure names exactly that chunk."""

    def __init__(self, path, arr: zarr.Array):
        self.path, self.arr = str(path), arr
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim

    def __getitem__(self, selection):
        return read_array(self.path, self.arr, selection)


def checked_dask(path: str | Path, arr: zarr.Array):
    """``arr`` as a Dask array with its stored chunks whose reads raise :class:`CorruptChunkError`."""
    import dask.array as da
    from dask.base import tokenize

    name = f"repbench-zarr-{tokenize(str(Path(path).resolve()), arr.path, arr.shape, arr.chunks, str(arr.dtype))}"
    return da.from_array(_CheckedZarr(path, arr), chunks=arr.chunks, name=name, lock=False,
                         meta=np.empty((0,) * arr.ndim, dtype=arr.dtype))


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
    sample_columns: dict[str, list] | None = None,
) -> zarr.Group:
    """Create an empty activation store (arrays filled as chunks complete).

    ``sample_columns``: extra per-sample columns (a views dataset's ``view_of`` and ``view``), stored along
    ``sample`` and named in every pooling array's ``coordinates`` attribute, so xarray reads them as coordinates.
    """
    n = len(sample_ids)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    create_array(group, "layer", np.arange(n_layers, dtype=np.int32), ("layer",))
    create_array(group, "sample", np.asarray(sample_ids, dtype=str), ("sample",))
    for name, values in (sample_columns or {}).items():
        create_array(group, name, np.asarray(values), ("sample",))
    for pooling in poolings:
        arr = create_array(
            group, pooling, (n_layers, n, n_features), POOLING_DIMS, chunks=(1, chunk_samples, n_features), dtype=dtype
        )
        if sample_columns:
            arr.attrs["coordinates"] = " ".join(sample_columns)
    group.attrs.update(attrs)
    return group


def write_labels(path: str | Path, *, sample_ids: list[str], labels: np.ndarray, label_names: list[str],
                 label_type: str, groups: dict[str, list[str]] | None = None, attrs: dict | None = None) -> None:
    """The label store of one dataset (``results/labels/{dataset}.zarr``), atomically: arrays ``sample`` (ids),
    ``label`` (int64 class indices into the attribute ``label_names``, or float64 targets) and one string array per
    ``groups`` column (e.g. ``template``), all along ``sample``; attributes ``label_names``, ``label_type``,
    ``label_groups`` and ``attrs``. Readable with ``xr.open_zarr`` and :func:`read_labels`.

    Labels live apart from the activations so that adding or changing labels reruns the label families only,
    never an extraction; :func:`aligned_labels` joins them to an activation store by sample id.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    groups = dict(groups or {})
    columns = _sample_coordinates(len(sample_ids), labels, label_type, groups)
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    create_array(root, "sample", np.asarray(sample_ids, dtype=str), ("sample",))
    for name, values in columns.items():
        create_array(root, name, values, ("sample",))
    root.attrs.update(attrs or {})
    root.attrs.update(label_names=list(label_names), label_type=label_type, label_groups=list(groups))
    zarr.consolidate_metadata(str(tmp))
    publish(tmp, path)


def aligned_labels(labels_path: str | Path, activations_path: str | Path):
    """:func:`read_labels` of a label store in the sample order of an activation store; a sample of the activations
    without a label (or a label store of other samples) is an error naming both stores."""
    labels, names, label_type, groups = read_labels(labels_path)
    ids = [str(v) for v in read_array(labels_path, "sample").tolist()]
    wanted = [str(v) for v in read_array(activations_path, "sample").tolist()]
    position = {sample: i for i, sample in enumerate(ids)}
    missing = [sample for sample in wanted if sample not in position]
    if missing or len(ids) != len(wanted):
        raise ValueError(f"{activations_path} holds {len(wanted)} samples and {labels_path} labels {len(ids)}; "
                         f"{len(missing)} samples have no label (first: {missing[:3]}); rerun the labels job")
    order = np.fromiter((position[sample] for sample in wanted), dtype=np.int64, count=len(wanted))
    return labels[order], names, label_type, {name: column[order] for name, column in groups.items()}


#: Names a ``groups`` column cannot take (arrays of the label store).
RESERVED_SAMPLE_COLUMNS = ("sample", "label")


def _sample_coordinates(n: int, labels, label_type, groups: dict) -> dict[str, np.ndarray]:
    if labels is None:
        raise ValueError("a label store needs labels")
    if label_type not in ("class", "regression"):
        raise ValueError(f"label_type must be 'class' or 'regression', not {label_type!r}")
    labels = np.asarray(labels, dtype=np.int64 if label_type == "class" else np.float64)
    if labels.shape != (n,):
        raise ValueError(f"labels have shape {labels.shape}, but the store has {n} samples")
    coords = {"label": labels}
    for name, values in groups.items():
        if name in RESERVED_SAMPLE_COLUMNS or not name.isidentifier():
            raise ValueError(f"sample column {name!r} cannot be stored (an identifier, not one of "
                             f"{', '.join(RESERVED_SAMPLE_COLUMNS)})")
        if len(values) != n:
            raise ValueError(f"sample column {name!r} has {len(values)} values, but the store has {n} samples")
        coords[name] = np.asarray(values, dtype=str)
    return coords


def read_labels(path: str | Path) -> tuple[np.ndarray | None, list[str], str | None, dict[str, np.ndarray]]:
    """The labels of a label store (:func:`write_labels`): ``(labels, label_names, label_type, groups)``.

    ``labels`` is ``(sample,)`` int64 class indices into ``label_names`` (``label_type == "class"``) or float64
    targets (``"regression"``, ``label_names`` empty), in the store's sample order; ``groups`` maps each extra
    sample column (e.g. ``template``) to a ``(sample,)`` string array. An unlabelled store gives
    ``(None, [], None, {})`` (e.g. an activation store). Checked reads: a damaged chunk raises
    :class:`CorruptChunkError`.
    """
    group = zarr.open_group(str(path), mode="r")
    attrs = group.attrs
    if "label" not in group.array_keys() or "label_type" not in attrs:
        return None, [], None, {}
    label_type = attrs["label_type"]
    labels = read_array(path, group["label"]).astype(np.int64 if label_type == "class" else np.float64)
    columns = {name: np.asarray([str(v) for v in read_array(path, group[name]).tolist()], dtype=str)
               for name in attrs.get("label_groups", [])}
    return labels, list(attrs.get("label_names", [])), label_type, columns


def sample_tokens(path: str | Path, sample: str, layer: int) -> dict[str, np.ndarray]:
    """One sample's token block of one layer from an activation store with token level (``extract.tokens``):
    ``{"vectors": (token, feature) float32, "token_id", "position", "word", "prefix": (token,)}`` (see
    :mod:`repbench.extract.tokens`). Unknown samples and layers are a ``KeyError`` naming what the store has."""
    group = zarr.open_group(str(path), mode="r")
    if "tokens" not in group.array_keys():
        raise KeyError(f"{path}: no token level (extract.tokens.enabled was off for this store)")
    ids = [str(v) for v in read_array(path, group["token_sample"]).tolist()]
    if sample not in ids:
        raise KeyError(f"{path}: sample {sample!r} has no stored tokens ({len(ids)} samples have, e.g. {ids[:3]})")
    layers = read_array(path, group["token_layer"]).tolist()
    if layer not in layers:
        raise KeyError(f"{path}: layer {layer} has no stored tokens (token layers: {layers})")
    j = ids.index(sample)
    a, b = (int(v) for v in read_array(path, group["token_offsets"], slice(j, j + 2)))
    out = {"vectors": read_array(path, group["tokens"], (layers.index(layer), slice(a, b))).astype(np.float32)}
    for name, key in (("token_id", "token_id"), ("position", "position"), ("word", "word"), ("prefix", "token_prefix")):
        out[name] = read_array(path, group[key], slice(a, b))
    return out


def token_layers(path: str | Path) -> Iterator[tuple[int, np.ndarray]]:
    """``(layer, tokens (token, feature))`` for each layer of an activation store's token level, in stored order,
    each cut to that layer's true width (padded convolutional stages); a store without a token level is a
    ``ValueError`` naming the key that turns it on."""
    group = zarr.open_group(str(path), mode="r")
    if "tokens" not in group.array_keys():
        raise ValueError(f"{path} has no token level: turn on extract.tokens (or the model's `tokens`)")
    widths = group.attrs["layer_widths"]
    layers = read_array(path, group["token_layer"]).tolist()
    # checked now, read lazily: one layer's tokens in memory at a time
    return ((layer, read_array(path, group["tokens"], (i, slice(None), slice(0, int(widths[layer])))))
            for i, layer in enumerate(layers))


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


def open_dataset(path: str | Path, group: str | None = None):
    """A store written by repbench (or one ``group`` of it, e.g. a pooling of a graph or spectra store) as an
    ``xarray.Dataset`` (lazy, Dask-backed; a corrupted chunk raises :class:`CorruptChunkError` when read)."""
    import xarray as xr

    node = zarr.open_group(str(path), mode="r")
    if group is not None:
        node = node[group]
    try:  # loads the index coordinates (layer, sample); groups are read without the root's consolidated metadata
        ds = xr.open_zarr(str(path), group=group, consolidated=group is None)
    except ValueError as exc:
        if not _is_checksum_error(exc):
            raise
        for _, arr in sorted(node.arrays(), key=lambda item: item[1].size):
            coords = _bad_chunk(arr)
            if coords is not None:
                raise _corrupt(path, arr, coords, exc) from exc
        raise
    for name, var in list(ds.data_vars.items()):
        if name in node and var.chunks is not None:  # Dask-backed with the stored chunks: read them checked
            ds[name] = var.copy(data=checked_dask(path, node[name]))
    return ds


def open_activations(path: str | Path):
    """The activation store as an ``xarray.Dataset`` (see :func:`open_dataset`)."""
    return open_dataset(path)


def activation_attrs(path: str | Path) -> dict:
    return dict(zarr.open_group(str(path), mode="r").attrs)


def pooling_array(path: str | Path, pooling: str):
    """One pooling's ``(layer, sample, feature)`` array as a Dask array (chunks as stored; a corrupted chunk raises
    :class:`CorruptChunkError` naming store, array and chunk when it is computed)."""
    group = zarr.open_group(str(path), mode="r")
    if pooling not in group:
        raise KeyError(f"{path}: no pooling {pooling!r} (has {sorted(k for k in group.array_keys())})")
    return checked_dask(path, group[pooling])


def write_layer_arrays(path: str | Path, groups: dict[str, dict[str, np.ndarray]], dims: tuple[str, str], attrs: dict) -> None:
    """Write ``{group: {name: (layer, k) array}}`` as a Zarr v3 store with one subgroup per pooling, atomically.

    Used for spectra (dims ``(layer, rank)``) and neighbour graphs (``(layer, sample, k)``).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    shapes = {g: {name: (np.shape(a), np.asarray(a).dtype) for name, a in arrays.items()} for g, arrays in groups.items()}
    root = create_layer_store(tmp, shapes, dims)
    for gname, arrays in groups.items():
        for name, arr in arrays.items():
            root[gname][name][...] = np.asarray(arr)
    finish_layer_store(tmp, path, attrs)


def create_layer_store(path: str | Path, shapes: dict[str, dict[str, tuple]], dims: tuple[str, ...]) -> zarr.Group:
    """An empty store in :func:`write_layer_arrays`'s layout, to be filled one layer at a time: ``shapes`` is
    ``{group: {name: (shape, dtype)}}``, each array chunked one layer per chunk."""
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    for gname, arrays in shapes.items():
        group = root.create_group(gname)
        for name, (shape, dtype) in arrays.items():
            create_array(group, name, tuple(shape), dims[: len(shape)], chunks=(1, *shape[1:]), dtype=dtype)
    return root


def finish_layer_store(partial: str | Path, final: str | Path, attrs: dict) -> None:
    """Add ``attrs`` to a store of :func:`create_layer_store`, consolidate it and move it to ``final`` atomically."""
    zarr.open_group(str(partial), mode="r+").attrs.update(attrs)
    zarr.consolidate_metadata(str(partial))
    publish(partial, final)


def read_layer_arrays(path: str | Path, group: str, names=None) -> dict[str, np.ndarray]:
    """The arrays of one subgroup (e.g. one pooling) of a store written by :func:`write_layer_arrays`: all of
    them, or those in ``names``."""
    g = zarr.open_group(str(path), mode="r")
    if group not in g:
        raise KeyError(f"{path}: no group {group!r} (has {sorted(g.group_keys())})")
    return {name: read_array(path, arr) for name, arr in g[group].arrays() if names is None or name in names}
