"""Information-flow metrics (prompt entropy, dataset entropy, curvature): dense formulas, planted truth, peer values."""

import json
import math
import sys

import numpy as np
import pytest
from conftest import ROOT

from repbench.metrics import information as info

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from make_information_reference import PROMPTS, make_prompt, normalise_tokens  # noqa: E402

REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "information_reference.json").read_text())


def dense_entropy(z, alpha):
    """S_α of the Gram of Z centred over its rows and row-normalised, from the T×T Gram (no shortcut)."""
    zc = z - z.mean(axis=0)
    zc = zc / np.linalg.norm(zc, axis=1, keepdims=True)
    lam = np.linalg.eigvalsh(zc @ zc.T)
    lam = lam[lam > 1e-12 * lam.max()]
    p = lam / lam.sum()
    return -(p * np.log(p)).sum() if alpha == 1 else math.log((p ** alpha).sum()) / (1 - alpha)


def dense_curvature(z):
    angles = []
    for k in range(len(z) - 2):
        a, b = z[k + 1] - z[k], z[k + 2] - z[k + 1]
        angles.append(math.acos(max(-1.0, min(1.0, a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))))
    return sum(angles) / len(angles)


@pytest.mark.parametrize("t,d", [(7, 20), (20, 7), (12, 12)])
@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5])
def test_entropies_equal_their_formula(t, d, alpha):
    z = np.random.default_rng(t * d).normal(size=(t, d)) + 2
    assert info.prompt_entropy(z, alpha) == pytest.approx(dense_entropy(z, alpha) / math.log(min(t, d)), abs=1e-10)
    assert info.prompt_entropy(z, alpha, normalise=False) == pytest.approx(dense_entropy(z, alpha), abs=1e-10)


def test_curvature_equals_its_formula():
    z = np.random.default_rng(1).normal(size=(15, 9)).cumsum(axis=0)
    assert info.curvature(z) == pytest.approx(dense_curvature(z), abs=1e-12)


def test_layer_metrics_average_the_prompts_and_use_the_pooled_samples():
    rng = np.random.default_rng(2)
    lengths = [5, 1, 2, 8]
    tokens = rng.normal(size=(sum(lengths), 6))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    pooled = rng.normal(size=(10, 6))
    rows = {r["metric"]: r for r in info.layer_metrics(tokens, offsets, pooled, {"alpha": 1})}
    prompts = [tokens[offsets[s]:offsets[s + 1]] for s in range(4)]
    ent = [dense_entropy(z, 1) / math.log(min(len(z), 6)) for z in prompts if len(z) >= 2]
    assert rows["prompt_entropy"]["value"] == pytest.approx(np.mean(ent), abs=1e-10)
    assert rows["prompt_entropy"]["n_prompts"] == 3  # the 1-token prompt is skipped
    assert rows["curvature"]["value"] == pytest.approx(np.mean([dense_curvature(z) for z in prompts if len(z) >= 3]))
    assert rows["curvature"]["n_prompts"] == 2
    assert rows["dataset_entropy"]["value"] == pytest.approx(dense_entropy(pooled, 1) / math.log(6), abs=1e-10)
    short = {r["metric"]: r for r in info.layer_metrics(tokens[:1], np.array([0, 1]), None)}
    assert math.isnan(short["prompt_entropy"]["value"]) and short["prompt_entropy"]["reason"]
    assert math.isnan(short["curvature"]["value"]) and "3 tokens" in short["curvature"]["reason"]


# ------------------------------------------------------------------ planted truth
def test_identical_tokens_have_zero_entropy_and_orthonormal_tokens_the_maximum():
    same = np.tile(np.arange(1.0, 9.0), (6, 1))
    assert info.prompt_entropy(same) == 0.0 and info.prompt_entropy(same, 2.0) == 0.0
    # orthonormal tokens: centring leaves T − 1 equal directions, the most a T-token prompt can have
    assert info.prompt_entropy(np.eye(10)[:6] * 5) == pytest.approx(math.log(5) / math.log(6), abs=1e-12)
    for alpha in (1.0, 2.0, 0.5):
        assert info.prompt_entropy(np.eye(12)[:8], alpha, normalise=False) == pytest.approx(math.log(7), abs=1e-12)


def test_curvature_of_planted_paths():
    t = np.arange(10.0)[:, None]
    line = t * np.array([[1.0, 2.0, -1.0]]) + 4
    assert info.curvature(line) == pytest.approx(0, abs=1e-7)
    u = np.array([1.0, 0.0, 0.0])
    zigzag = np.array([u * (k % 2) for k in range(12)])  # z, z + u, z, …: every step reverses
    assert info.curvature(zigzag) == pytest.approx(math.pi, abs=1e-12)
    gauss = np.random.default_rng(3).normal(size=(400, 4000))
    assert info.curvature(gauss) == pytest.approx(2 * math.pi / 3, abs=0.01)  # consecutive steps: cos → −1/2
    with pytest.raises(ValueError, match="zero step"):
        info.curvature(np.array([[0.0, 1], [0, 1], [1, 1]]))


# ------------------------------------------------------------------ the peers' values
@pytest.mark.parametrize("name", list(PROMPTS))
@pytest.mark.parametrize("alpha", [1, 2])
def test_entropy_matches_repitl_and_differs_from_the_harness_only_by_its_clamp(name, alpha):
    entry = REFERENCE["prompts"][name]
    z = make_prompt(name)
    assert np.allclose([z.sum(), (z ** 2).sum()], entry["checksum"], rtol=1e-12)
    t, d = z.shape[1:]
    ours = [info.prompt_entropy(layer, alpha, normalise=False) for layer in z]
    assert np.allclose(ours, entry[f"repitl_entropy_alpha{alpha}"], atol=1e-9, rtol=0)
    # the harness: Gram of the normalised tokens (ZᵀZ when T > D), negative entries clamped to 0, divided by
    # min(ln T, ln D); with alpha = 2 repitl's shortcut ΣK²/n² assumes tr K = n (false for ZᵀZ when T > D)
    zn = normalise_tokens(z)
    for layer, peer, peer_raw in zip(zn, entry[f"peer_entropy_alpha{alpha}"], entry[f"peer_entropy_raw_alpha{alpha}"]):
        gram = np.clip(layer @ layer.T if t <= d else layer.T @ layer, 0, None)
        if alpha == 2:
            value = -math.log((gram ** 2).sum() / len(gram) ** 2)
        else:
            lam = np.linalg.eigvalsh(gram)
            p = lam[lam > 0] / lam[lam > 0].sum()
            value = -(p * np.log(p)).sum()
        assert value == pytest.approx(peer_raw, abs=1e-6)
        assert value / min(math.log(t), math.log(d)) == pytest.approx(peer, abs=1e-6)


@pytest.mark.parametrize("name", list(PROMPTS))
def test_curvature_2024_is_the_angle_between_normalised_tokens(name):
    entry = REFERENCE["prompts"][name]
    zn = normalise_tokens(make_prompt(name))
    for layer, peer in zip(zn, entry["peer_curvature_2024"]):
        cos = np.clip(np.einsum("kd,kd->k", layer[:-1], layer[1:]), -1, 1)
        assert float(np.arccos(cos).mean()) == pytest.approx(peer, abs=1e-9)
        assert abs(info.curvature(layer) - peer) > 0.1  # steps, not tokens: a different quantity
