"""Tidy tables: per-layer rows of one model, tables across models, and the data behind every figure.

Every per-layer family (``repbench.registry.LAYER_FAMILIES``) returns, per (pooling, layer), a list of rows
``{"metric": name, "value": float, ...}``; optional columns are ``statistic`` (what ``value`` is when a metric has
several: estimate, mean, median, quantiles), ``stderr``, ``scale``, ``k``, ``n_used``, ``n_duplicates``, ``r2`` and
``reason`` (why a value is NaN). :func:`layer_table` puts the identity and position columns in front.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

IDENTITY = ("dataset", "model", "base_model", "revision", "step", "store_hash")
POSITION = ("pooling", "layer", "n_layers", "relative_depth")


def model_identity(attrs: dict, info: dict) -> dict:
    """Identity columns of every per-model row from a store's attributes (``model``, ``dataset`` and the
    activation store's ``config_hash``, or ``activations_hash`` in derived stores) and the instance ``info``."""
    return dict(dataset=attrs["dataset"], model=attrs["model"], base_model=info["base_model"],
                revision=info["revision"] or "", step=info["step"],
                store_hash=attrs.get("config_hash", attrs.get("activations_hash")))


def layer_table(n_layers: int, poolings: list[str], layer_rows: Callable[[str, int], list[dict]],
                identity: dict) -> pd.DataFrame:
    """Tidy per-layer table: identity columns, ``pooling, layer, n_layers, relative_depth`` and the metric rows.

    ``layer_rows(pooling, layer) -> [{"metric": ..., "value": ..., ...}]`` computes one layer.
    """
    rows = []
    for pooling in poolings:
        for layer in range(n_layers):
            for row in layer_rows(pooling, layer):
                rows.append({**identity, "pooling": pooling, "layer": layer, "n_layers": n_layers,
                             "relative_depth": layer / max(1, n_layers - 1), **row})
    return pd.DataFrame(rows)


def concat_tables(paths: list[str | Path]) -> pd.DataFrame:
    """Concatenate per-model tables in a stable order (sorted by every key column)."""
    frame = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    keys = [c for c in ("dataset", "model", "pooling", "layer", "metric") if c in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- alignment
ALIGNMENT_COLUMNS = ["dataset", "pooling", "model_a", "model_b", "n_parameters_a", "n_parameters_b", "metric", "k",
                     "n_samples", "max", "argmax_a", "argmax_b", "last", "matched_depth", "max_ci_low", "max_ci_high"]
NULL_SUMMARIES = ("max", "last", "matched_depth")
NULL_STATISTICS = ("null_mean", "null_std", "z", "tau", "p_value", "calibrated")
PAIR_KEYS = ["dataset", "pooling", "model_a", "model_b", "metric"]


TWIN_SUMMARIES = ("max", "last", "matched_depth")
TWIN_COLUMNS = ["twin_pair", *(f"twin_{summary}" for summary in TWIN_SUMMARIES)]
# metrics whose (B, A) matrix, transposed, is the other one's (A, B) matrix: cycle_knn_ab(B', A')[j, i] is the
# cycle from B' through A', i.e. cycle_knn_ba(A', B')[i, j]; every other metric is symmetric
MIRRORED_METRICS = {"cycle_knn_ab": "cycle_knn_ba", "cycle_knn_ba": "cycle_knn_ab"}


def alignment_table(pairs: list) -> pd.DataFrame:
    """One row per (pair, metric) with the summaries and null statistics from the pair files' attributes, and the
    same summaries of the pair's random twins.

    ``pairs``: ``xarray.Dataset`` pair results (see :mod:`repbench.stages.alignment`). Columns: the pair and
    metric, ``better`` (``higher`` or ``lower``: distances and imbalances are lower when more alike, and their
    ``max`` is the best = smallest value), the summaries, and per summary S ∈ {max, last, matched_depth} the
    calibration ``S_null_mean, S_null_std, S_z, S_tau, S_p_value, S_calibrated``; ``null_method`` says how
    (``permutation`` with ``null_permutations`` permutations, ``closed form`` for cka/rv, ``none`` when the
    metric is not in ``alignment.null_metrics``: NaN statistics).

    Twin columns: for the row of pair (A, B), ``twin_pair`` = ``"A'__B'"`` and ``twin_max``, ``twin_last``,
    ``twin_matched_depth`` = the summaries of the same metric on (A', B'), where X' = ``BASE@random`` is the random
    twin of instance X = ``BASE`` or ``BASE@REVISION`` (one twin per model serves all its revisions). They are NaN
    when (A', B') is not among ``pairs`` (a model without ``random_twin``, another dataset or pooling, A and B
    revisions of one model: a twin is not paired with itself) and on every row whose pair involves a twin. The
    twin values are oriented like the row, A' in A's place: the pair file stores (A', B') in name order, which
    can be (B', A'); its matrix is then transposed, and cycle_knn_ab and cycle_knn_ba (the directional metrics)
    trade places, before :func:`repbench.metrics.alignment.summarize` (the summaries of the pair files), so a
    directional metric and ``matched_depth`` (which follows A's layers) compare like with like.
    """
    from . import registry

    by_pair = {(ds.attrs["dataset"], ds.attrs["pooling"], ds.attrs["model_a"], ds.attrs["model_b"]): ds
               for ds in pairs}
    rows = []
    for ds in pairs:
        a = ds.attrs
        for m in ds.data_vars:
            row = {c: a.get(c) for c in ALIGNMENT_COLUMNS[:6]} | {"metric": m, "k": a["k"], "n_samples": a["n_samples"]}
            row["better"] = "lower" if registry.METRICS[m].lower_is_more_similar else "higher"
            row["null_method"] = a.get(f"{m}_null_method", "none")
            row["null_permutations"] = int(a.get(f"{m}_null_permutations", 0))
            for key in ALIGNMENT_COLUMNS[9:]:
                row[key] = a.get(f"{m}_{key}", np.nan)
            for summary in NULL_SUMMARIES:
                for key in NULL_STATISTICS:
                    row[f"{summary}_{key}"] = a.get(f"{m}_{summary}_{key}", np.nan)
            rows.append(row | _twin_columns(by_pair, a["dataset"], a["pooling"], a["model_a"], a["model_b"], m))
    frame = pd.DataFrame(rows)
    return frame.sort_values(PAIR_KEYS, kind="stable").reset_index(drop=True)


def random_twin(model: str) -> str | None:
    """The random twin ``BASE@random`` of model instance ``BASE`` or ``BASE@REVISION``; None for a twin itself
    (model names cannot contain '@', so the base is everything before the first '@')."""
    from .config import TWIN_REVISION

    twin = f"{model.split('@', 1)[0]}@{TWIN_REVISION}"
    return None if model == twin else twin


def _twin_columns(by_pair: dict, dataset: str, pooling: str, model_a: str, model_b: str, metric: str) -> dict:
    """``twin_pair`` and ``twin_<summary>`` of one row (see :func:`alignment_table`)."""
    from . import registry
    from .metrics.alignment.summaries import summarize

    empty = {"twin_pair": None} | {f"twin_{s}": np.nan for s in TWIN_SUMMARIES}
    twin_a, twin_b = random_twin(model_a), random_twin(model_b)
    if twin_a is None or twin_b is None or twin_a == twin_b:
        return empty
    if (ds := by_pair.get((dataset, pooling, twin_a, twin_b))) is not None:
        name, transpose = metric, False
    elif (ds := by_pair.get((dataset, pooling, twin_b, twin_a))) is not None:
        name, transpose = MIRRORED_METRICS.get(metric, metric), True
    else:
        return empty
    if name not in ds.data_vars:
        return empty
    matrix = np.asarray(ds[name].values, dtype=np.float64)
    summary = summarize(matrix.T if transpose else matrix,
                        lower_is_more_similar=registry.METRICS[metric].lower_is_more_similar)
    return {"twin_pair": f"{twin_a}__{twin_b}"} | {f"twin_{s}": summary[s] for s in TWIN_SUMMARIES}


def alignment_layers_table(pairs: list) -> pd.DataFrame:
    """Every pair's layer × layer matrices as rows ``dataset, pooling, model_a, model_b, metric, layer_a, layer_b,
    value`` (the data behind the layer-grid figure)."""
    frames = []
    for ds in pairs:
        a = ds.attrs
        for m in ds.data_vars:
            mat = np.asarray(ds[m].values)
            la, lb = np.meshgrid(np.arange(mat.shape[0]), np.arange(mat.shape[1]), indexing="ij")
            frames.append(pd.DataFrame({"dataset": a["dataset"], "pooling": a["pooling"], "model_a": a["model_a"],
                                        "model_b": a["model_b"], "metric": m, "layer_a": la.ravel(),
                                        "layer_b": lb.ravel(), "value": mat.ravel()}))
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values([*PAIR_KEYS, "layer_a", "layer_b"], kind="stable").reset_index(drop=True)


def layer_matrices(layers: pd.DataFrame, metric: str) -> dict[tuple[str, str], np.ndarray]:
    """``{(model_a, model_b): (layer_a, layer_b) matrix}`` of one metric from :func:`alignment_layers_table` rows
    (one dataset and pooling)."""
    out = {}
    for (a, b), sub in layers[layers["metric"] == metric].groupby(["model_a", "model_b"], sort=True):
        mat = np.full((sub["layer_a"].max() + 1, sub["layer_b"].max() + 1), np.nan)
        mat[sub["layer_a"].to_numpy(), sub["layer_b"].to_numpy()] = sub["value"].to_numpy()
        out[(a, b)] = mat
    return out


# ------------------------------------------------------------------------------------------------- spectra
def spectra_table(spectra: dict[tuple[str, str, str], np.ndarray]) -> pd.DataFrame:
    """``{(dataset, model, pooling): (layer, rank) covariance eigenvalues}`` as rows ``dataset, model, pooling,
    layer, rank, eigenvalue`` (rank from 1; the data behind the eigenspectrum figure)."""
    frames = []
    for (dataset, model, pooling), lam in sorted(spectra.items()):
        layer, rank = np.meshgrid(np.arange(lam.shape[0]), np.arange(1, lam.shape[1] + 1), indexing="ij")
        frames.append(pd.DataFrame({"dataset": dataset, "model": model, "pooling": pooling, "layer": layer.ravel(),
                                    "rank": rank.ravel(), "eigenvalue": lam.ravel()}))
    return pd.concat(frames, ignore_index=True)


def eigenvalue_matrices(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """``{model: (layer, rank) eigenvalues}`` from :func:`spectra_table` rows of one dataset and pooling."""
    out = {}
    for model, sub in table.groupby("model", sort=True):
        lam = np.full((sub["layer"].max() + 1, sub["rank"].max()), np.nan)
        lam[sub["layer"].to_numpy(), sub["rank"].to_numpy() - 1] = sub["eigenvalue"].to_numpy()
        out[model] = lam
    return out


# -------------------------------------------------------------------------------------------------- phases
PHASE_COLUMNS = ["dataset", "base_model", "pooling", "layer", "start_step", "end_step", "phase"]


def phase_table(spectral_table: pd.DataFrame, layer: int, smooth: float, flat_tol: float) -> pd.DataFrame:
    """Training phases per (dataset, base model, pooling) from RankMe (σ) and α-ReQ at one layer vs step.

    Only models with at least three checkpoints that carry a step take part; see
    :func:`repbench.metrics.spectral.detect_phases` for the rule.
    """
    from .metrics.spectral import detect_phases

    frame = spectral_table.dropna(subset=["step"])
    out = []
    for (dataset, base, pooling), group in frame.groupby(["dataset", "base_model", "pooling"], sort=True):
        n_layers = int(group["n_layers"].iloc[0])
        chosen = layer % n_layers
        at_layer = group[group["layer"] == chosen]
        wide = at_layer.pivot_table(index="step", columns="metric", values="value").sort_index()
        if len(wide) < 3 or not {"rankme_sigma", "alpha_req"} <= set(wide.columns):
            continue
        if wide[["rankme_sigma", "alpha_req"]].isna().any().any():
            continue
        for seg in detect_phases(wide.index.to_numpy(), wide["rankme_sigma"].to_numpy(),
                                 wide["alpha_req"].to_numpy(), smooth=smooth, flat_tol=flat_tol):
            out.append(dict(dataset=dataset, base_model=base, pooling=pooling, layer=chosen, **seg))
    return pd.DataFrame(out, columns=PHASE_COLUMNS)
