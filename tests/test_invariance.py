"""Invariance metrics (InfoNCE, LiDAR, DiME): direct dense formulas, planted truth and the peer's own values."""

import json
import math
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

from repbench.metrics import invariance as inv

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from make_invariance_reference import DATASETS, dime_input, make_views, unit_rows  # noqa: E402

REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "invariance_reference.json").read_text())


def views(seed=0, n=30, k=3, d=12, noise=0.5):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d)) * 2
    return base[:, None, :] + noise * rng.normal(size=(n, k, d))


# ------------------------------------------------------------------ direct dense formulas (loops, numpy)
def dense_infonce_loss(a, b, tau):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(a)):
        scores = np.array([a[i] @ b[j] / tau for j in range(len(b))])
        total += -(scores[i] - math.log(np.exp(scores).sum()))
    return total / len(a)


def dense_lda(v, delta):
    n, k, d = v.shape
    mu_i = v.mean(axis=1)
    mu = mu_i.mean(axis=0)
    s_b = sum(np.outer(m - mu, m - mu) for m in mu_i) / n
    s_w = sum(np.outer(v[i, j] - mu_i[i], v[i, j] - mu_i[i]) for i in range(n) for j in range(k)) / (n * k)
    s_w = s_w + delta * np.eye(d)
    lam, vec = np.linalg.eigh(s_w)
    root = vec @ np.diag(lam ** -0.5) @ vec.T
    return root @ s_b @ root


def dense_entropy(matrix, alpha):
    lam = np.linalg.eigvalsh(matrix)
    p = lam[lam > 0] / lam[lam > 0].sum()
    return -(p * np.log(p)).sum() if alpha == 1 else math.log((p ** alpha).sum()) / (1 - alpha)


def test_infonce_equals_its_formula():
    v = views()
    for tau in (0.1, 0.5):
        assert inv.infonce_loss(v[:, 0], v[:, 1], tau) == pytest.approx(dense_infonce_loss(v[:, 0], v[:, 1], tau),
                                                                         abs=1e-9)
    rows = {r["metric"]: r["value"] for r in inv.layer_metrics(v, {"temperature": 0.1})}
    loss = dense_infonce_loss(v[:, 0], v[:, 1], 0.1)
    assert rows["infonce"] == pytest.approx(math.log(len(v)) - loss, abs=1e-9)
    assert rows["infonce_normalized"] == pytest.approx(1 - loss / math.log(len(v)), abs=1e-9)


def test_infonce_without_normalisation_uses_the_rows_as_given():
    v = views(1) * 0.2
    a, b = v[:, 0], v[:, 1]
    logits = a @ b.T / 0.1
    expected = np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(logits)])
    assert inv.infonce_loss(a, b, 0.1, normalize=False) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("k", [2, 5])
def test_lidar_equals_its_formula(k):
    v = views(2, n=25, k=k, d=8)
    m = dense_lda(v, 1e-4)
    assert np.allclose(inv.lda_matrix(v, 1e-4).numpy(), m, atol=1e-9)
    lam = np.clip(np.linalg.eigvalsh(m), 0, None)
    p = lam / lam.sum() + 1e-7
    assert inv.lidar(v) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-9)
    for alpha in (1.0, 2.0, 0.5):
        assert inv.lidar_entropy(torch.as_tensor(v), alpha) == pytest.approx(
            dense_entropy(m, alpha) / math.log(min(25, 8)), abs=1e-9)


def test_dime_equals_its_formula_with_its_permutations():
    v = views(3, n=20, k=2, d=30)
    a, b = v[:, 0], v[:, 1]

    def gram(x):
        x = x - x.mean(axis=0)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return x @ x.T

    ka, kb = gram(a), gram(b)
    for alpha in (1.0, 2.0):
        rng = np.random.default_rng(7)
        expected_perm = []
        for _ in range(10):
            p = rng.permutation(20)
            expected_perm.append(dense_entropy(ka * kb[np.ix_(p, p)], alpha))
        expected = (np.mean(expected_perm) - dense_entropy(ka * kb, alpha)) / math.log(20)
        assert inv.dime(a, b, alpha, n_permutations=10, seed=7) == pytest.approx(expected, abs=1e-9)


# ------------------------------------------------------------------ planted truth
def test_identical_views_of_orthogonal_samples_give_the_maxima():
    n, d = 16, 64
    v = np.repeat((np.eye(d)[:n] * 3)[:, None, :], 4, axis=1)
    rows = {r["metric"]: r["value"] for r in inv.layer_metrics(v, {"temperature": 0.05})}
    # softmax over one logit of 1/τ = 20 against N − 1 logits of 0: L = ln(1 + (N − 1)e^{−20}), bound → ln N
    assert rows["infonce"] == pytest.approx(math.log(n), abs=1e-6)
    assert rows["infonce_normalized"] == pytest.approx(1, abs=1e-6)
    # Σ_w = δI, Σ_b has N − 1 equal eigenvalues: the effective rank is the class count minus one
    assert rows["lidar"] == pytest.approx(n - 1, rel=1e-4)
    assert rows["lidar_entropy"] == pytest.approx(math.log(n - 1) / math.log(n), abs=1e-6)


def test_views_independent_of_their_sample_give_no_information():
    rng = np.random.default_rng(5)
    n, d = 200, 4096
    v = rng.normal(size=(n, 2, d))  # view 1 has nothing to do with view 0
    loss = inv.infonce_loss(v[:, 0], v[:, 1], 0.1)
    assert abs(math.log(n) - loss) < 0.05  # cosines ~ N(0, 1/D): logits ~ ±0.16, the bound ≈ 0
    assert abs(inv.dime(v[:, 0], v[:, 1])) < 1e-3


def test_dime_sees_shared_structure_that_permutation_destroys():
    rng = np.random.default_rng(6)
    clusters = rng.normal(size=(4, 40)) * 3
    base = clusters[rng.integers(0, 4, 60)] + 0.3 * rng.normal(size=(60, 40))
    same = inv.dime(base + 0.1 * rng.normal(size=base.shape), base + 0.1 * rng.normal(size=base.shape))
    other = inv.dime(base, clusters[rng.integers(0, 4, 60)] + 0.3 * rng.normal(size=(60, 40)))
    assert same > 0.05 and same > 5 * abs(other)


def test_matrix_entropy_of_planted_spectra():
    assert inv.matrix_entropy(torch.eye(8, dtype=torch.float64)) == pytest.approx(math.log(8), abs=1e-12)
    assert inv.matrix_entropy(torch.ones(8, 8, dtype=torch.float64)) == pytest.approx(0, abs=1e-12)
    assert inv.matrix_entropy(torch.eye(8, dtype=torch.float64), 2.0) == pytest.approx(math.log(8), abs=1e-12)


# ------------------------------------------------------------------ the peer's values
@pytest.mark.parametrize("name", [n for n, s in DATASETS.items() if s["N"] > s["D"]])
def test_lidar_entropy_matches_the_information_flow_code(name):
    entry = REFERENCE["datasets"][name]
    v = make_views(name)
    assert np.allclose([v.sum(), (v ** 2).sum()], entry["checksum"], rtol=1e-12)
    ours = [inv.lidar_entropy(torch.as_tensor(layer), 1.0) for layer in v]
    # the peer accumulates its scatter matrices in float32 (float64 outer products added into float32 zeros)
    assert np.allclose(ours, entry["lidar_entropy_alpha1"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("alpha", [1, 2])
def test_dime_matches_the_information_flow_code_on_its_permutations(alpha):
    entry = REFERENCE["datasets"]["pair_views"]
    u = dime_input(make_views("pair_views"))
    ours = [inv.dime_from_grams(u[l, :, 0] @ u[l, :, 0].T, u[l, :, 1] @ u[l, :, 1].T, u.shape[-1], alpha,
                                entry[f"dime_alpha{alpha}_permutations"][l]) for l in range(len(u))]
    assert np.allclose(ours, entry[f"dime_alpha{alpha}"], atol=1e-10, rtol=0)


def test_nt_xent_matches_the_information_flow_code():
    entry = REFERENCE["datasets"]["pair_views"]
    w = unit_rows(make_views("pair_views")[:, :, :2])
    ours = [inv.nt_xent_loss(layer[:, 0], layer[:, 1], 0.1) for layer in w]
    assert np.allclose(ours, entry["nt_xent_tau0.1"], atol=1e-10, rtol=0)


# ------------------------------------------------------------------ grouping and bad input
def test_grouped_views_joins_views_to_their_sample_by_id():
    x = np.arange(12, dtype=float).reshape(6, 2)
    view_of = ["b", "a", "a", "b", "c", "c"]
    grouped, bases = inv.grouped_views(x, view_of, [1, 0, 1, 0, 1, 0])
    assert bases == ["b", "a", "c"]
    assert np.array_equal(grouped[0], x[[3, 0]]) and np.array_equal(grouped[1], x[[1, 2]])
    with pytest.raises(ValueError, match="lacks view 1"):
        inv.grouped_views(x[:5], view_of[:5], [1, 0, 1, 0, 0])
    with pytest.raises(ValueError, match="at least 2 views"):
        inv.grouped_views(x, view_of, [0] * 6)


def test_non_finite_views_are_refused():
    v = views()
    v[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        inv.layer_metrics(v)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_equals_cpu_path():
    v = views(8, n=40, k=3, d=16)
    cpu = inv.layer_metrics(v, device="cpu")
    gpu = inv.layer_metrics(v, device="cuda")
    assert [r["metric"] for r in cpu] == [r["metric"] for r in gpu]
    assert np.allclose([r["value"] for r in cpu], [r["value"] for r in gpu], atol=1e-9)
