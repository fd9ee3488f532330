"""repbench.metrics.alignment.kernels: CKA, unbiased CKA, CKNNA and SVCCA against dense formulas, invariances."""

import numpy as np
import pytest
from reference import dense_cka, dense_cknna, dense_svcca, dense_unbiased_cka, graphs, related_pair

from repbench.metrics import alignment as al


@pytest.mark.parametrize("shape", [(60, 8, 5), (40, 70, 55)])  # D < N and D > N (Gram-factor path)
def test_kernel_metrics_equal_dense_formulas(shape):
    n, da, db = shape
    A, B = related_pair(np.random.default_rng(1), n=n, da=da, db=db)
    A = A + 3.0  # not centred: CKA centres, HSIC₁ is translation invariant
    assert al.linear_cka(A, B) == pytest.approx(dense_cka(A, B), abs=1e-6)
    assert al.unbiased_cka(A, B) == pytest.approx(dense_unbiased_cka(A, B), abs=1e-6)


@pytest.mark.parametrize("k", [3, 10])
def test_cknna_equals_dense_formula(k):
    A, B = related_pair(np.random.default_rng(2), n=80)
    ga, gb = graphs(A, B)
    assert al.cknna(A, B, ga, gb, k) == pytest.approx(dense_cknna(A, B, ga, gb, k), abs=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"variance": 0.8}, {"n_components": 4}])
def test_svcca_equals_dense_cca(kwargs):
    A, B = related_pair(np.random.default_rng(3), n=200, da=10, db=8, noise=1.0)
    assert al.svcca(A, B, **kwargs) == pytest.approx(dense_svcca(A, B, **kwargs), abs=1e-6)


def test_cka_invariant_to_isotropic_scaling():
    A, B = related_pair(np.random.default_rng(7))
    reference = al.linear_cka(A, B)
    assert al.linear_cka(7.5 * A, B) == pytest.approx(reference, rel=1e-12)
    assert al.linear_cka(A, 1e-3 * B) == pytest.approx(reference, rel=1e-12)
    assert al.unbiased_cka(3.0 * A, 0.1 * B) == pytest.approx(al.unbiased_cka(A, B), rel=1e-12)
