"""Alignment figures (the PRH plots): model × model heatmap, layer × layer grid, alignment vs model size.

Input is the tidy ``alignment`` table (one dataset, pooling and metric): one row per unordered pair with the
summaries ``max``, ``last``, ``matched_depth``, their calibration columns (``{summary}_tau``,
``{summary}_null_mean``, ``{summary}_calibrated``) and the models' parameter counts. Scores that do not beat their
null (calibrated score 0, i.e. not beyond the threshold τ) are hatched in the heatmap and drawn hollow in the size
plot, which also draws the chance level (the mean null score).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator, NullFormatter

from . import STYLE, model_colors, plt


def pair_matrix(table: pd.DataFrame, summary: str) -> tuple[list[str], np.ndarray]:
    """Symmetric model × model matrix of one column (diagonal NaN), models in name order."""
    models = sorted(set(table["model_a"]) | set(table["model_b"]))
    pos = {m: i for i, m in enumerate(models)}
    mat = np.full((len(models), len(models)), np.nan)
    for row in table.itertuples():
        mat[pos[row.model_a], pos[row.model_b]] = mat[pos[row.model_b], pos[row.model_a]] = getattr(row, summary)
    return models, mat


def _lower_is_better(table: pd.DataFrame) -> bool:
    return bool("better" in table and (table["better"] == "lower").all() and len(table))


def not_beating_null(table: pd.DataFrame, summary: str) -> pd.Series:
    """Rows whose score does not beat its null (calibrated score 0); all False when the table has no calibration."""
    column = f"{summary}_calibrated"
    if column not in table:
        return pd.Series(False, index=table.index)
    return table[column].fillna(1.0) <= 0


def clustered_order(mat: np.ndarray, lower_is_better: bool = False) -> np.ndarray:
    """Leaf order of average-linkage clustering on distance 1 − score (the score itself for distances;
    deterministic; identity for < 3 models)."""
    if len(mat) < 3 or np.isnan(mat[~np.eye(len(mat), dtype=bool)]).any():
        return np.arange(len(mat))
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    if lower_is_better:
        dist = np.where(np.eye(len(mat), dtype=bool), 0.0, mat)
    else:
        dist = 1.0 - np.where(np.eye(len(mat), dtype=bool), 1.0, mat)
    dist = np.clip((dist + dist.T) / 2, 0, None)
    return leaves_list(linkage(squareform(dist, checks=False), method="average"))


def model_heatmap(table: pd.DataFrame, summary: str, title: str):
    """Model × model matrix of one summary, clustered; cells that do not beat their null are hatched."""
    models, mat = pair_matrix(table, summary)
    _, weak = pair_matrix(table.assign(weak=not_beating_null(table, summary).astype(float)), "weak")
    lower = _lower_is_better(table)
    order = clustered_order(mat, lower)
    mat, weak, models = mat[np.ix_(order, order)], weak[np.ix_(order, order)], [models[i] for i in order]
    with plt.rc_context(STYLE | {"axes.grid": False, "hatch.color": "0.85", "hatch.linewidth": 0.6}):
        size = 1.6 + 0.45 * len(models)
        fig, ax = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
        im = ax.imshow(mat, cmap="viridis_r" if lower else "viridis")
        for i, j in zip(*np.nonzero(weak == 1), strict=True):
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="////", linewidth=0))
        ax.set_xticks(range(len(models)), models, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(models)), models, fontsize=7)
        if len(models) <= 16:
            for i in range(len(models)):
                for j in range(len(models)):
                    if np.isfinite(mat[i, j]):
                        ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
        fig.colorbar(im, ax=ax, shrink=0.8)
        if np.any(weak == 1):
            title += "\n(hatched: not beyond the permutation null's threshold τ)"
        ax.set_title(title)
    return fig


def layer_grid(matrices: dict[tuple[str, str], np.ndarray], title: str, max_pairs: int = 36):
    """Layer × layer matrix of every pair (rows: A's layers, columns: B's), the first ``max_pairs`` by name."""
    pairs = sorted(matrices)[:max_pairs]
    cols = int(np.ceil(np.sqrt(len(pairs))))
    rows = int(np.ceil(len(pairs) / cols))
    vmax = max(np.nanmax(matrices[p]) for p in pairs)
    vmin = min(np.nanmin(matrices[p]) for p in pairs)
    with plt.rc_context(STYLE | {"axes.grid": False}):
        fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols + 1, 2.2 * rows), squeeze=False, layout="constrained")
        im = None
        for ax, pair in zip(axes.flat, pairs):
            im = ax.imshow(matrices[pair], cmap="viridis", vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
            ax.set_title(f"{pair[0]}\nvs {pair[1]}", fontsize=6)
            ax.set_xlabel(f"layer of {pair[1]}", fontsize=6)
            ax.set_ylabel(f"layer of {pair[0]}", fontsize=6)
            ax.tick_params(labelsize=6)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in list(axes.flat)[len(pairs) :]:
            ax.axis("off")
        fig.colorbar(im, ax=axes, shrink=0.6)
        suffix = f" (first {max_pairs} of {len(matrices)} pairs)" if len(matrices) > max_pairs else ""
        fig.suptitle(title + suffix)
    return fig


def size_plot(table: pd.DataFrame, summary: str, title: str):
    """Each model's mean alignment to all other models against its parameter count (log x).

    A model is drawn hollow when its mean score does not beat the mean threshold τ of its pairs; the dashed line
    is the chance level (mean null score over all pairs) when the table has a calibration.
    """
    per_model: dict[str, list[float]] = {}
    thresholds: dict[str, list[float]] = {}
    params: dict[str, int] = {}
    lower = _lower_is_better(table)
    tau = f"{summary}_tau"
    for row in table.itertuples():
        for m, n in ((row.model_a, row.n_parameters_a), (row.model_b, row.n_parameters_b)):
            per_model.setdefault(m, []).append(getattr(row, summary))
            thresholds.setdefault(m, []).append(getattr(row, tau) if tau in table else np.nan)
            params[m] = int(n)
    colors = model_colors(list(per_model))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
        for m in sorted(per_model):
            score, threshold = np.nanmean(per_model[m]), np.nanmean(thresholds[m]) if np.any(
                np.isfinite(thresholds[m])) else np.nan
            beats = not np.isfinite(threshold) or (score < threshold if lower else score > threshold)
            ax.scatter(params[m], score, label=m, s=25, color=colors[m] if beats else "none",
                       edgecolors=colors[m], linewidths=1.2)
        chance = f"{summary}_null_mean"
        if chance in table and table[chance].notna().any():
            ax.axhline(float(table[chance].mean()), color="0.4", linestyle="--", linewidth=1,
                       label="chance (null mean)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("parameters")
        ax.set_ylabel(f"mean {summary} alignment to the other models")
        fig.legend(fontsize=7, frameon=False, loc="outside right center")
        ax.set_title(title)
    return fig
