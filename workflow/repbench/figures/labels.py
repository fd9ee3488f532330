"""Figures of the label families: probe accuracy vs relative depth with its chance band, concept depth and
neural collapse over training steps, and the cosine of concept directions between instances that share a space.
Each reads only tables (``probes``, ``concept_depth``, ``collapse``, ``directions``) of one dataset and pooling.
"""

from __future__ import annotations

import pandas as pd

from . import STYLE, legend_and_title, model_colors, plt

CLASSIFICATION = ("probe_accuracy", "probe_balanced_accuracy", "probe_macro_f1", "probe_transfer_accuracy")
REGRESSION = ("probe_r2", "probe_transfer_r2")


def probe_figure(frame: pd.DataFrame, title: str):
    """One panel per probe score: mean over folds vs relative depth (± one fold std shaded), one line per model;
    the grey band is the label-permutation chance level (mean ± std, averaged over models)."""
    metrics = [m for m in CLASSIFICATION + REGRESSION if (frame["metric"] == m).any()]
    chance = "probe_chance_r2" if "probe_r2" in metrics else "probe_chance_accuracy"
    wide = frame.pivot_table(index=["model", "relative_depth", "metric"], columns="statistic", values="value")
    wide = wide.reset_index()
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 1.6, 3.0), squeeze=False,
                                 layout="constrained")
        colors = model_colors(sorted(wide["model"].unique()))
        band = wide[wide["metric"] == chance].groupby("relative_depth")[["mean", "std"]].mean().reset_index()
        for ax, metric in zip(axes[0], metrics, strict=True):
            if not band.empty and metric not in ("probe_macro_f1", "probe_transfer_accuracy"):
                ax.fill_between(band["relative_depth"], band["mean"] - band["std"], band["mean"] + band["std"],
                                color="0.85", lw=0, label="chance (permuted labels)")
                ax.plot(band["relative_depth"], band["mean"], color="0.6", lw=0.8, ls="--")
            for model, rows in wide[wide["metric"] == metric].groupby("model", sort=True):
                rows = rows.sort_values("relative_depth")
                ax.plot(rows["relative_depth"], rows["mean"], marker="o", ms=3, lw=1.2, color=colors[model],
                        label=model)
                ax.fill_between(rows["relative_depth"], rows["mean"] - rows["std"], rows["mean"] + rows["std"],
                                color=colors[model], alpha=0.15, lw=0)
            ax.set_title(metric)
            ax.set_xlabel("relative depth")
        legend_and_title(fig, axes[0][0], title)
    return fig


def per_layer_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with several values per (model, layer, metric) — one per concept direction — averaged."""
    keys = [c for c in ("dataset", "model", "pooling", "layer", "relative_depth", "metric") if c in frame]
    return frame.groupby(keys, sort=True, dropna=False)["value"].mean().reset_index()


def steps_figure(depth: pd.DataFrame, collapse: pd.DataFrame, title: str):
    """Per model with checkpoints (a ``step``): concept depth, best probe accuracy and NC1 of the last layer
    against training step."""
    depth = depth[depth["step"].notna()]
    collapse = collapse[collapse["step"].notna() & (collapse["metric"] == "nc1")]
    collapse = collapse[collapse["layer"] == collapse["n_layers"] - 1]
    panels = (("relative_depth", depth, "concept depth (relative)"), ("max_accuracy", depth, "best probe score"),
              ("value", collapse, "NC1, last layer"))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(11.2, 3.0), squeeze=False, layout="constrained")
        colors = model_colors(sorted(set(depth["base_model"])))
        for ax, (column, table, label) in zip(axes[0], panels, strict=True):
            for base, rows in table.groupby("base_model", sort=True):
                rows = rows.sort_values("step")
                ax.plot(rows["step"], rows[column], marker="o", ms=3, lw=1.2, color=colors[base], label=base)
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlabel("training step")
            ax.set_title(label)
        axes[0][0].set_ylim(-0.05, 1.05)
        axes[0][2].set_yscale("log")
        legend_and_title(fig, axes[0][0], title)
    return fig


def directions_figure(frame: pd.DataFrame, title: str):
    """Cosine between the concept directions of two instances at each matched layer, one line per pair (one
    panel per direction)."""
    directions = sorted(frame["direction"].unique())
    frame = frame.assign(pair=frame["model_a"] + " ↔ " + frame["model_b"])
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(directions), figsize=(3.6 * len(directions) + 1.8, 3.0), squeeze=False,
                                 layout="constrained")
        colors = model_colors(sorted(frame["pair"].unique()))
        for ax, direction in zip(axes[0], directions, strict=True):
            for pair, rows in frame[frame["direction"] == direction].groupby("pair", sort=True):
                rows = rows.sort_values("relative_depth")
                ax.plot(rows["relative_depth"], rows["cosine"], marker="o", ms=3, lw=1.2, color=colors[pair],
                        label=pair)
            ax.axhline(0.0, color="0.7", lw=0.8)
            ax.set_ylim(-1.05, 1.05)
            ax.set_title(f"direction {direction}")
            ax.set_xlabel("relative depth")
            ax.set_ylabel("cosine")
        legend_and_title(fig, axes[0][0], title)
    return fig
