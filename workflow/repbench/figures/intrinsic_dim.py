"""Intrinsic-dimension figures: ID vs depth with its peak, GRIDE ID vs scale, local-ID distributions per layer.

Input is the tidy ``intrinsic_dim`` table (one dataset and pooling): columns ``model, layer, relative_depth,
metric`` (the estimator), ``statistic`` (estimate, or mean/median/q25/q75 for local ID), ``k`` (n₁ for GRIDE),
``scale``, ``value``, ``stderr``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from . import STYLE, legend_and_title, model_colors, plt

ESTIMATOR_ORDER = ("twonn", "twonn_mle", "gride", "mle_levina_bickel", "local_id")


def depth_series(table: pd.DataFrame, estimator: str, gride_n1: int) -> pd.DataFrame:
    """The rows drawn for one estimator: its estimate (GRIDE at n₁ = ``gride_n1``; local ID: the median)."""
    rows = table[table["metric"] == estimator]
    if estimator == "gride":
        rows = rows[rows["k"] == gride_n1]
    elif estimator == "local_id":
        rows = rows[rows["statistic"] == "median"]
    return rows.sort_values("relative_depth")


def depth_figure(table: pd.DataFrame, gride_n1: int, title: str):
    """One panel per estimator: ID vs relative depth per model; the peak (the abstraction phase) marked ▲."""
    estimators = [e for e in ESTIMATOR_ORDER if e in set(table["metric"])]
    colors = model_colors(list(table["model"].unique()))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(estimators), figsize=(3.0 * len(estimators) + 1.6, 3.0), squeeze=False,
                                 layout="constrained")
        for ax, est in zip(axes[0], estimators):
            for model, rows in sorted(depth_series(table, est, gride_n1).groupby("model"), key=lambda kv: kv[0]):
                ax.plot(rows["relative_depth"], rows["value"], marker="o", ms=2.5, lw=1.1, color=colors[model],
                        label=model)
                peak = rows.loc[rows["value"].idxmax()]
                ax.plot([peak["relative_depth"]], [peak["value"]], marker="^", ms=7, color=colors[model], mec="k")
            ax.set_title(est if est != "gride" else f"gride (n1={gride_n1})")
            ax.set_xlabel("relative depth")
        axes[0][0].set_ylabel("intrinsic dimension")
        legend_and_title(fig, axes[0][0], title)
    return fig


def scale_figure(table: pd.DataFrame, depths: list[float], title: str):
    """GRIDE ID vs scale (mean neighbour distance of r_{n₁}, r_{2n₁}) at chosen relative depths, ±1 s.e."""
    gride = table[table["metric"] == "gride"]
    colors = model_colors(list(table["model"].unique()))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(depths), figsize=(3.2 * len(depths) + 1.6, 3.0), squeeze=False,
                                 layout="constrained")
        for ax, depth in zip(axes[0], depths):
            for model, rows in sorted(gride.groupby("model"), key=lambda kv: kv[0]):
                n_layers = int(rows["n_layers"].iloc[0])
                layer = int(round(depth * (n_layers - 1)))
                at = rows[rows["layer"] == layer].sort_values("scale")
                ax.errorbar(at["scale"], at["value"], yerr=at["stderr"], marker="o", ms=2.5, lw=1, capsize=2,
                            color=colors[model], label=model)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"relative depth {depth:g}")
            ax.set_xlabel("scale (neighbour distance)")
        axes[0][0].set_ylabel("GRIDE intrinsic dimension")
        legend_and_title(fig, axes[0][0], title)
    return fig


def local_id_figure(table: pd.DataFrame, title: str):
    """Per model, the distribution of local ID across samples at every layer: quartile box and median."""
    local = table[table["metric"] == "local_id"]
    models = sorted(local["model"].unique())
    colors = model_colors(models)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 3.2), layout="constrained")
        width = 0.8 / max(1, len(models))
        for j, model in enumerate(models):
            wide = local[local["model"] == model].pivot_table(index="relative_depth", columns="statistic",
                                                                values="value")
            x = np.arange(len(wide)) + j * width
            ax.bar(x, wide["q75"] - wide["q25"], bottom=wide["q25"], width=width * 0.9, color=colors[model],
                   alpha=0.5, label=model)
            ax.scatter(x, wide["median"], color=colors[model], marker="_", s=60)
        ax.set_xlabel("layer (per model, in depth order)")
        ax.set_ylabel("local ID (q25–q75, median)")
        fig.legend(fontsize=7, frameon=False, loc="outside right center")
        fig.suptitle(title)
    return fig
