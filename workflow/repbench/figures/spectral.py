"""Spectral figures: metrics against training step with phases shaded, and eigenspectra with their power law."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import STYLE, legend_and_title, model_colors, plt

PHASE_COLORS = {"warm-up": "#fde0c5", "entropy-seeking": "#c6e2ff", "compression-seeking": "#d5f5d5",
                "ambiguous": "#eeeeee"}
STEP_METRICS = ("rankme_sigma", "alpha_req")
NUMERICAL_ZERO = 1e-12  # eigenvalues below this fraction of λ₁ are rounding (e.g. the direction LayerNorm removes)


def steps_figure(table: pd.DataFrame, phases: pd.DataFrame, layer: int, title: str):
    """RankMe (σ) and α-ReQ against training step (log x, step+1) per base model, phases shaded.

    ``table``: the spectral table of one dataset and pooling; ``phases``: the matching phase segments.
    """
    table = table.dropna(subset=["step"])
    bases = sorted(table["base_model"].unique())
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(bases), len(STEP_METRICS), figsize=(7.2, 2.6 * len(bases)), squeeze=False)
        for row, base in enumerate(bases):
            sub = table[table["base_model"] == base]
            chosen = layer % int(sub["n_layers"].iloc[0])
            sub = sub[sub["layer"] == chosen]
            for ax, metric in zip(axes[row], STEP_METRICS):
                for seg in phases[phases["base_model"] == base].itertuples():
                    ax.axvspan(seg.start_step + 1, seg.end_step + 1, color=PHASE_COLORS[seg.phase], lw=0,
                               label=seg.phase)
                curve = sub[sub["metric"] == metric].sort_values("step")
                ax.plot(curve["step"] + 1, curve["value"], marker="o", ms=3, color="k", lw=1.2)
                ax.set_xscale("log")
                ax.set_xlabel("training step + 1")
                ax.set_title(f"{base} · layer {chosen} · {metric}")
            handles, labels = axes[row][0].get_legend_handles_labels()
            unique = dict(zip(labels, handles))
            if unique:
                axes[row][0].legend(unique.values(), unique.keys(), fontsize=7, frameon=False)
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def power_law_line(eigenvalues: np.ndarray, alpha: float, rank_min: int, rank_max: int):
    """The α-ReQ fit drawn over its rank window: log λ_r = b − α log r with the weighted-LS intercept.

    For the fixed slope −α, the weighted least-squares intercept (weights 1/r) is b = Σ w (log λ_r + α log r) / Σ w.
    """
    ranks = np.arange(rank_min, rank_max + 1)
    lam = eigenvalues[rank_min - 1 : rank_max]
    w = 1.0 / ranks
    b = np.sum(w * (np.log(lam) + alpha * np.log(ranks))) / np.sum(w)
    return ranks, np.exp(b - alpha * np.log(ranks))


def eigenspectrum_figure(spectra: dict[str, np.ndarray], alphas: pd.DataFrame, depths: list[float],
                         rank_min: int, rank_max: int, title: str):
    """One panel per relative depth: λ_r vs r (log–log) per model, with the fitted α-ReQ power law dashed.

    ``spectra``: model → ``(layer, rank)`` covariance eigenvalues; ``alphas``: rows model, layer, value.
    """
    colors = model_colors(list(spectra))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(depths), figsize=(3.4 * len(depths) + 1.6, 3.2), squeeze=False,
                                 layout="constrained")
        for ax, depth in zip(axes[0], depths):
            for model in sorted(spectra):
                lam = spectra[model]
                layer = int(round(depth * (lam.shape[0] - 1)))
                values = lam[layer][lam[layer] > NUMERICAL_ZERO * lam[layer][0]]
                ax.loglog(np.arange(1, len(values) + 1), values, color=colors[model], lw=1, label=model)
                fit = alphas[(alphas["model"] == model) & (alphas["layer"] == layer)]["value"]
                if len(fit) and np.isfinite(fit.iloc[0]) and len(values) >= rank_max:
                    r, line = power_law_line(values, float(fit.iloc[0]), rank_min, rank_max)
                    ax.loglog(r, line, color=colors[model], lw=1, ls="--")
            ax.set_title(f"relative depth {depth:g}")
            ax.set_xlabel("rank r")
        axes[0][0].set_ylabel("eigenvalue λ_r")
        legend_and_title(fig, axes[0][0], title)
    return fig
