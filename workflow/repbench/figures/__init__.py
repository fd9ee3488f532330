"""Figures: each takes a tidy table and returns a matplotlib figure; ``save`` writes it reproducibly.

Reproducible bytes: a fixed style, no timestamps in PDF/PNG/SVG metadata and a fixed SVG hash salt, so the same
table gives byte-identical files.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "figure.dpi": 100,
    "savefig.bbox": "standard",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "repbench",
    "pdf.compression": 6,
}
METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
    "svg": {"Date": None, "Creator": None},
}


def settle_layout(fig) -> None:
    """Run the figure's layout engine to its fixed point, then freeze the axes where it put them.

    Constrained layout moves a colorbar a little between the first and the second draw, so without this the
    first file saved differs from the next ones (and the PNG and PDF of one figure have different layouts).
    """
    if fig.get_layout_engine() is None:
        return
    fig.draw_without_rendering()
    fig.draw_without_rendering()
    fig.set_layout_engine("none")


def save(fig, paths: list[str | Path], dpi: int = 150) -> None:
    """Save ``fig`` to every path (format from the suffix) atomically, without volatile metadata.

    The layout is settled once first (:func:`settle_layout`), so every file of the figure has the same layout
    and saving it again gives the same bytes.
    """
    settle_layout(fig)
    for path in map(Path, paths):
        fmt = path.suffix.lstrip(".")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
        os.close(fd)
        fig.savefig(tmp, format=fmt, dpi=dpi, metadata=METADATA.get(fmt))
        os.replace(tmp, path)
    plt.close(fig)


def legend_and_title(fig, ax, title: str) -> None:
    """One legend for the figure (from ``ax``'s lines), outside on the right, and the figure's title."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=7, frameon=False)
    fig.suptitle(title)


def model_colors(models: list[str]) -> dict[str, tuple]:
    """A stable colour per model (sorted order), from a qualitative map."""
    cmap = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(sorted(models))}


def depth_curves(frame, metrics: list[str], title: str):
    """One panel per metric: value vs relative depth (layer / last layer), one line per model.

    ``frame`` columns: model, relative_depth, metric, value (one dataset and pooling).
    """
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 1.6, 3.0), squeeze=False,
                                 layout="constrained")
        colors = model_colors(list(frame["model"].unique()))
        for ax, metric in zip(axes[0], metrics):
            sub = frame[frame["metric"] == metric]
            for model, rows in sorted(sub.groupby("model"), key=lambda kv: kv[0]):
                rows = rows.sort_values("relative_depth")
                ax.plot(rows["relative_depth"], rows["value"], marker="o", ms=3, lw=1.2,
                        color=colors[model], label=model)
            ax.set_title(metric)
            ax.set_xlabel("relative depth")
        legend_and_title(fig, axes[0][0], title)
    return fig
