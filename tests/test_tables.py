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
