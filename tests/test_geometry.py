"""Geometry metrics on planted data whose answers follow by hand.

Planted set: the 2D rows ±cᵢ·eᵢ (i = 1..D, cᵢ = i) in R^D. Two distinct rows have cosine 0, except a row and
its antipode (cosine −1). Pairs are drawn as i uniform, j = (i + U{1..N−1}) mod N: uniform over the N − 1 rows
j ≠ i, so with N = 2D the antipode is drawn with probability p = 1/(N − 1) and every pair cosine is −1 with
probability p, else 0. Hence

- anisotropy = −(number of antipodal pairs)/P exactly (a multiple of 1/P), and
- its expectation is −1/(N − 1) (≈ 0: isotropic up to the finite-sample term), standard deviation √(p(1−p)/P).

With D = 64 and P = 20 000 pairs: p = 1/127, σ ≈ 6.2·10⁻⁴, so the 5σ band is [−0.0110, −0.0048] — it excludes
0 and every value a wrong implementation gives (unnormalised dot products: −cᵢ², i.e. ≈ −11; self-pairs
included: positive contributions; a shared direction: 1).
"""

import dask.array as da
import numpy as np
import pytest

from repbench.metrics.geometry import anisotropy, layer_metrics, mean_norm, random_pairs

D = 64
N = 2 * D
PAIRS = 20_000


def planted_axes(d: int = D) -> np.ndarray:
    """Rows c₁e₁, …, c_D e_D, −c₁e₁, …, −c_D e_D with cᵢ = i."""
    scaled = np.diag(np.arange(1, d + 1, dtype=np.float64))
    return np.concatenate([scaled, -scaled])


def test_pairs_are_distinct_and_cover_every_offset():
    i, j = random_pairs(N, PAIRS, seed=0)
    assert (i != j).all()
    assert i.min() == 0 and i.max() == N - 1
    offsets = (j - i) % N
    assert set(np.unique(offsets)) == set(range(1, N))  # every j ≠ i is reachable


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_anisotropy_of_planted_axes_is_zero_up_to_the_antipode_term(seed):
    X = planted_axes()
    value = anisotropy(X, n_pairs=PAIRS, seed=seed)
    # exact: each pair is −1 (antipodes) or 0
    i, j = random_pairs(N, PAIRS, seed)
    antipodal = int(((i - j) % N == D).sum())
    assert value == pytest.approx(-antipodal / PAIRS, abs=1e-15)
    # statistical: within 5σ of the expectation −1/(N − 1)
    p = 1 / (N - 1)
    sigma = np.sqrt(p * (1 - p) / PAIRS)
    assert abs(value + p) < 5 * sigma
    assert abs(value) < p + 5 * sigma < 0.012


def test_anisotropy_of_orthogonal_rows_is_exactly_zero():
    """Without the antipodes every pair is orthogonal, whichever pairs are drawn."""
    assert anisotropy(planted_axes()[:D], n_pairs=PAIRS, seed=3) == 0.0


def test_anisotropy_of_one_shared_direction_is_one():
    rng = np.random.default_rng(0)
    u = rng.standard_normal(D)
    c = rng.uniform(0.1, 10.0, N)
    assert anisotropy(c[:, None] * u, n_pairs=PAIRS, seed=0) == pytest.approx(1.0, abs=1e-12)


def test_anisotropy_of_two_opposite_rows_is_minus_one():
    assert anisotropy(np.array([[2.0, 0.0], [-0.5, 0.0]]), n_pairs=10, seed=0) == pytest.approx(-1.0, abs=1e-15)


def test_mean_norm_by_hand():
    # ‖±cᵢeᵢ‖ = i, each twice: mean (D + 1)/2
    assert mean_norm(planted_axes()) == pytest.approx((D + 1) / 2, rel=1e-15)
    # rows cᵢ·u with ‖u‖ = 5: mean 5·mean(c) = 5·(1 + 2 + 3)/3 = 10
    u = np.array([3.0, 4.0, 0.0])
    assert mean_norm(np.array([1.0, 2.0, 3.0])[:, None] * u) == pytest.approx(10.0, rel=1e-15)


def test_dask_input_gives_the_same_values():
    X = planted_axes()
    lazy = da.from_array(X, chunks=(17, D))
    assert mean_norm(lazy) == mean_norm(X)
    assert anisotropy(lazy, n_pairs=PAIRS, seed=2) == anisotropy(X, n_pairs=PAIRS, seed=2)
    assert layer_metrics(lazy, {"anisotropy_pairs": PAIRS, "seed": 2}) == [
        {"metric": "mean_norm", "value": (D + 1) / 2}, {"metric": "anisotropy", "value": anisotropy(X, PAIRS, 2)}]


def test_errors():
    with pytest.raises(ValueError, match="at least 2 samples"):
        anisotropy(np.ones((1, 3)))
    with pytest.raises(ValueError, match="zero vectors"):
        anisotropy(np.array([[1.0, 0.0], [0.0, 0.0]]), n_pairs=50)
