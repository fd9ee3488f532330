"""Wiring of the spectral family: phase table from a tidy spectral table, training blocks, power-law line."""

import numpy as np
import pandas as pd
import pytest

from repbench.tables import phase_table
from repbench.figures.spectral import power_law_line
from repbench.metrics.spectral import alpha_req
from repbench.train import token_blocks


def synthetic_table(steps, rankme, alpha, n_layers=3, layer=2):
    rows = []
    for s, r, a in zip(steps, rankme, alpha):
        for metric, value in (("rankme_sigma", r), ("alpha_req", a)):
            rows.append(dict(dataset="d", model=f"m@step{s}", base_model="m", step=s, pooling="mean", layer=layer,
                             n_layers=n_layers, metric=metric, value=value))
        # another layer with opposite trends must not influence the result
        rows.append(dict(dataset="d", model=f"m@step{s}", base_model="m", step=s, pooling="mean", layer=0,
                         n_layers=n_layers, metric="rankme_sigma", value=-r))
        rows.append(dict(dataset="d", model=f"m@step{s}", base_model="m", step=s, pooling="mean", layer=0,
                         n_layers=n_layers, metric="alpha_req", value=-a))
    rows.append(dict(dataset="d", model="other", base_model="other", step=np.nan, pooling="mean", layer=2,
                     n_layers=3, metric="rankme_sigma", value=1.0))
    return pd.DataFrame(rows)


def test_phase_table_labels_a_planted_trajectory():
    steps = np.array([0, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000])
    t = np.log1p(steps)
    # RankMe falls until t≈2.5 (warm-up), rises until t≈6 while α falls (entropy), then falls while α rises
    rankme = np.where(t < 2.5, 50 - 10 * t, np.where(t < 6, 25 + 8 * (t - 2.5), 53 - 6 * (t - 6)))
    alpha = np.where(t < 2.5, 1.0, np.where(t < 6, 1.0 - 0.1 * (t - 2.5), 0.65 + 0.1 * (t - 6)))
    phases = phase_table(synthetic_table(steps, rankme, alpha), layer=-1, smooth=0.02, flat_tol=0.01)
    assert list(phases["phase"]) == ["warm-up", "entropy-seeking", "compression-seeking"], phases
    assert phases["start_step"].iloc[0] == 0 and phases["end_step"].iloc[-1] == 30000
    assert set(phases["layer"]) == {2} and set(phases["base_model"]) == {"m"}


def test_phase_table_skips_models_without_enough_checkpoints():
    phases = phase_table(synthetic_table([0, 10], [3.0, 2.0], [1.0, 1.1]), layer=-1, smooth=0.05, flat_tol=0.05)
    assert phases.empty and list(phases.columns)[-1] == "phase"


def test_power_law_line_recovers_planted_spectrum():
    ranks = np.arange(1, 201)
    lam = 3.0 * ranks ** -1.3
    fit = alpha_req(lam, 12, 100)
    r, line = power_law_line(lam, fit.alpha, 12, 100)
    np.testing.assert_allclose(line, lam[11:100], rtol=1e-9)


class _Tok:
    eos_token_id, sep_token_id = 0, None

    def __call__(self, texts, add_special_tokens):
        return {"input_ids": [[len(w) for w in t.split()] for t in texts]}


def test_token_blocks_concatenate_with_separators():
    blocks = token_blocks(["a bb ccc", "dddd"], _Tok(), seq_len=3)
    assert blocks.tolist() == [[1, 2, 3], [0, 4, 0]]
    with pytest.raises(ValueError, match="fewer than one block"):
        token_blocks(["a"], _Tok(), seq_len=10)


# ------------------------------------------------------------------------------------- alignment twin columns
def direct_summaries(m: np.ndarray) -> dict:
    """max, last and matched depth of a layer × layer matrix straight from their definitions (not summarize)."""
    la, lb = m.shape
    matched = [m[i, int(np.floor(i * (lb - 1) / (la - 1) + 0.5)) if la > 1 else 0] for i in range(la)]
    return {"max": float(np.max(m)), "last": float(m[-1, -1]), "matched_depth": float(np.mean(matched))}


LAYERS = {"ab": 3, "ab-c": 5, "m": 4, "n": 2}  # layers per base model (a twin has its model's)
TWIN_METRICS = ("cka", "cycle_knn_ab", "cycle_knn_ba")


def pair_file(a: str, b: str, pooling: str = "mean", seed: int = 0):
    """A hand-made pair result (A < B by name) with random matrices and their summaries in the attributes."""
    import xarray as xr

    assert a < b
    rng = np.random.default_rng(seed)
    shape = (LAYERS[a.split("@")[0]], LAYERS[b.split("@")[0]])
    ds = xr.Dataset({m: (("layer_a", "layer_b"), rng.random(shape)) for m in TWIN_METRICS})
    ds.attrs.update(dataset="d", pooling=pooling, model_a=a, model_b=b, n_parameters_a=1, n_parameters_b=1, k=5,
                    n_samples=50)
    for m in TWIN_METRICS:
        ds.attrs.update({f"{m}_{s}": v for s, v in direct_summaries(ds[m].values).items()})
    return ds


def test_alignment_table_twin_columns():
    from repbench.tables import alignment_table

    pairs = [pair_file("ab", "ab-c", seed=1), pair_file("ab-c@random", "ab@random", seed=2),  # twins sort reversed
             pair_file("ab", "m@s1", seed=3), pair_file("ab@random", "m@random", seed=4),
             pair_file("m@s1", "m@s2", seed=5), pair_file("m@s1", "n", seed=6),
             pair_file("ab", "m@s1", pooling="last", seed=7)]
    table = alignment_table(pairs).set_index(["pooling", "model_a", "model_b", "metric"])
    twin_cols = ["twin_max", "twin_last", "twin_matched_depth"]

    # same name order: the twin values are the twin row's own summaries
    for m in TWIN_METRICS:
        row, twin_row = table.loc[("mean", "ab", "m@s1", m)], table.loc[("mean", "ab@random", "m@random", m)]
        assert row["twin_pair"] == "ab@random__m@random"
        np.testing.assert_allclose(row[twin_cols].to_numpy(float),
                                   twin_row[["max", "last", "matched_depth"]].to_numpy(float), rtol=1e-12)
        assert row["max"] != row["twin_max"]

    # reversed name order: the twin matrix is turned to (ab@random, ab-c@random); cycle_knn_ab and _ba trade places
    stored = pairs[1]
    for m, other in (("cka", "cka"), ("cycle_knn_ab", "cycle_knn_ba"), ("cycle_knn_ba", "cycle_knn_ab")):
        row = table.loc[("mean", "ab", "ab-c", m)]
        assert row["twin_pair"] == "ab@random__ab-c@random"
        expected = direct_summaries(stored[other].values.T)
        np.testing.assert_allclose(row[twin_cols].to_numpy(float), [expected[s] for s in ("max", "last",
                                                                                        "matched_depth")], rtol=1e-12)
    # (3 × 5 oriented vs 5 × 3 stored: matched depth follows A's layers, so orientation matters)
    assert table.loc[("mean", "ab", "ab-c", "cka"), "twin_matched_depth"] != \
        table.loc[("mean", "ab-c@random", "ab@random", "cka"), "matched_depth"]

    # no twin pair: revisions of one model, a model without a twin, another pooling; rows of twins themselves
    for key in [("mean", "m@s1", "m@s2"), ("mean", "m@s1", "n"), ("last", "ab", "m@s1"),
                ("mean", "ab@random", "m@random"), ("mean", "ab-c@random", "ab@random")]:
        rows = table.loc[key]
        assert rows["twin_pair"].isna().all() and rows[twin_cols].isna().all().all(), key
    assert len(table) == len(pairs) * len(TWIN_METRICS)


def test_random_twin_names():
    from repbench.tables import random_twin

    assert random_twin("m") == "m@random" and random_twin("m@step10") == "m@random"
    assert random_twin("m@random") is None
