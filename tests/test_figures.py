"""What a figure draws is its table: the plotted arrays are read back from the returned Figure and compared with
hand-built tidy tables, per model; saving gives reproducible bytes."""

import numpy as np
import pandas as pd
import pytest

from repbench import figures
from repbench.figures import alignment as fa
from repbench.figures import intrinsic_dim as fid

# Per model: its relative depths and, per metric, its values in depth order (models of different depth).
CURVES = {
    "zeta": {"depth": [0.0, 0.5, 1.0], "anisotropy": [0.1, 0.4, 0.9], "mean_norm": [3.0, 5.5, 8.25]},
    "alpha": {"depth": [0.0, 0.25, 0.5, 0.75, 1.0], "anisotropy": [0.2, 0.3, 0.35, 0.5, 0.45],
              "mean_norm": [1.0, 2.0, 4.0, 2.5, 7.0]},
}


def tidy(curves: dict, metrics=("anisotropy", "mean_norm")) -> pd.DataFrame:
    """Long table (model, relative_depth, metric, value), rows shuffled so the figure has to sort them."""
    rows = [{"model": m, "relative_depth": x, "metric": metric, "value": c[metric][i]}
            for m, c in curves.items() for metric in metrics for i, x in enumerate(c["depth"])]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


def lines_by_label(ax) -> dict[str, np.ndarray]:
    return {line.get_label(): line.get_xydata() for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_depth_curves_plot_the_table():
    metrics = ["anisotropy", "mean_norm"]
    fig = figures.depth_curves(tidy(CURVES), metrics, title="t")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == metrics
    for ax, metric in zip(axes, metrics):
        drawn = lines_by_label(ax)
        assert sorted(drawn) == sorted(CURVES) and len(ax.get_lines()) == len(CURVES)
        assert [line.get_label() for line in ax.get_lines()] == sorted(CURVES)  # name order
        for model, c in CURVES.items():
            np.testing.assert_array_equal(drawn[model], np.column_stack([c["depth"], c[metric]]))


def id_table() -> tuple[pd.DataFrame, dict]:
    """An intrinsic_dim table with twonn estimates, GRIDE at two n₁ and local-ID quartiles; and what is drawn."""
    depths = {"zeta": [0.0, 0.5, 1.0], "alpha": [0.0, 1 / 3, 2 / 3, 1.0]}
    drawn = {"twonn": {"zeta": [4.0, 9.0, 6.0], "alpha": [3.0, 5.0, 12.0, 7.0]},
             "gride": {"zeta": [5.0, 8.5, 6.5], "alpha": [2.5, 6.0, 11.0, 10.0]},
             "local_id": {"zeta": [3.5, 7.0, 7.5], "alpha": [4.0, 4.5, 9.0, 8.0]}}
    rows = []
    for model, xs in depths.items():
        for layer, x in enumerate(xs):
            base = {"model": model, "layer": layer, "relative_depth": x, "scale": np.nan, "stderr": 0.1}
            rows.append(base | {"metric": "twonn", "statistic": "estimate", "k": np.nan,
                                "value": drawn["twonn"][model][layer]})
            for k, shift in ((1, 100.0), (2, 0.0), (4, -100.0)):  # only n₁ = 2 is drawn
                rows.append(base | {"metric": "gride", "statistic": "estimate", "k": k,
                                    "value": drawn["gride"][model][layer] + shift})
            for stat, shift in (("q25", -1.0), ("median", 0.0), ("q75", 1.0), ("mean", 0.3)):
                rows.append(base | {"metric": "local_id", "statistic": stat, "k": 16,
                                    "value": drawn["local_id"][model][layer] + shift})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=1).reset_index(drop=True)
    return frame, {"depths": depths, "values": drawn}


def test_intrinsic_dim_depth_figure_plots_the_table_and_marks_the_peak():
    table, expected = id_table()
    fig = fid.depth_figure(table, gride_n1=2, title="t")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["twonn", "gride (n1=2)", "local_id"]
    for ax, est in zip(axes, ["twonn", "gride", "local_id"]):
        curves = lines_by_label(ax)
        assert sorted(curves) == sorted(expected["depths"])
        peaks = [line.get_xydata() for line in ax.get_lines() if line.get_marker() == "^"]
        assert len(peaks) == len(curves)
        for model, xs in expected["depths"].items():
            values = expected["values"][est][model]
            np.testing.assert_array_equal(curves[model], np.column_stack([xs, values]))
            top = int(np.argmax(values))
            assert any(np.array_equal(p, [[xs[top], values[top]]]) for p in peaks), (est, model)


def test_alignment_model_heatmap_is_the_pair_table():
    scores = {("alpha", "beta"): 0.9, ("alpha", "gamma"): 0.2, ("beta", "gamma"): 0.35, ("delta", "alpha"): 0.5,
              ("beta", "delta"): 0.6, ("delta", "gamma"): 0.7}
    table = pd.DataFrame([{"model_a": a, "model_b": b, "max": v, "last": -v} for (a, b), v in scores.items()])
    fig = fa.model_heatmap(table, "max", title="t")
    ax = fig.axes[0]
    mat = ax.images[0].get_array()
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert rows == cols and sorted(rows) == ["alpha", "beta", "delta", "gamma"]
    for i, a in enumerate(rows):
        for j, b in enumerate(cols):
            if a == b:
                assert np.ma.is_masked(mat[i, j]) or np.isnan(mat[i, j])
            else:
                assert mat[i, j] == scores.get((a, b), scores.get((b, a)))
    # clustered: the most aligned pair sits side by side
    assert abs(rows.index("alpha") - rows.index("beta")) == 1


def test_scores_that_do_not_beat_their_null_are_marked():
    """Heatmap: a hatched patch on both cells of every pair whose calibrated score is 0; size plot: those models
    hollow, and the chance level (mean null score) drawn."""
    rows = [("a", "b", 0.9, 0.95, 0.2), ("a", "c", 0.1, 0.0, 0.12), ("b", "c", 0.15, 0.0, 0.12)]
    table = pd.DataFrame([{"model_a": a, "model_b": b, "max": v, "max_calibrated": c, "max_null_mean": m,
                           "max_tau": m + 0.05, "n_parameters_a": 10, "n_parameters_b": 100, "better": "higher"}
                          for a, b, v, c, m in rows])
    heatmap = fa.model_heatmap(table, "max", title="t")
    hatched = [p for p in heatmap.axes[0].patches if p.get_hatch()]
    assert len(hatched) == 4  # (a, c) and (b, c), each drawn in both triangles
    size = fa.size_plot(table, "max", title="t")
    ax = size.axes[0]
    assert [line.get_ydata()[0] for line in ax.get_lines()] == [pytest.approx(np.mean([0.2, 0.12, 0.12]))]
    filled = {c.get_label(): len(c.get_facecolor()) > 0 and c.get_facecolor()[0][3] > 0 for c in ax.collections}
    assert filled == {"a": True, "b": True, "c": False}  # c's mean 0.125 is below its mean τ 0.17


@pytest.mark.parametrize("build", ["depth_curves", "depth_figure", "model_heatmap"])
def test_saving_is_byte_reproducible(tmp_path, build):
    def make():
        if build == "depth_curves":
            return figures.depth_curves(tidy(CURVES), ["anisotropy", "mean_norm"], title="t")
        if build == "depth_figure":
            return fid.depth_figure(id_table()[0], gride_n1=2, title="t")
        table = pd.DataFrame({"model_a": ["a", "a", "b"], "model_b": ["b", "c", "c"], "max": [0.1, 0.5, 0.9]})
        return fa.model_heatmap(table, "max", title="t")

    fig = make()
    figures.save(fig, [tmp_path / "one.png", tmp_path / "one.pdf"], dpi=60)
    figures.save(fig, [tmp_path / "two.png", tmp_path / "two.pdf"], dpi=60)
    figures.save(make(), [tmp_path / "again.png", tmp_path / "again.pdf"], dpi=60)  # rebuilt from the table
    for ext in ("png", "pdf"):
        one = (tmp_path / f"one.{ext}").read_bytes()
        assert len(one) > 1000
        assert (tmp_path / f"two.{ext}").read_bytes() == one
        assert (tmp_path / f"again.{ext}").read_bytes() == one
    assert b"CreationDate" not in (tmp_path / "one.pdf").read_bytes()
    assert not list(tmp_path.glob(".*"))  # no temporary files left
