"""First checks of the public API against the exact rational oracles (more in the other files)."""

import numpy as np
import pytest

from kl_alloc import greedy_allocate, uniform_allocate, water_fill

from .oracles import greedy_exact, to_float, water_fill_exact


def test_issue_example():
    res = water_fill([0.5, 0.3, 0.2], total=0.04, floors=0.001, upper=0.03)
    exact, mu, _ = water_fill_exact([0.5, 0.3, 0.2], 0.04, 0.001, 0.0, 0.03)
    np.testing.assert_allclose(res.delta, to_float(exact), rtol=0, atol=1e-17)
    assert res.converged and res.status == 0
    assert abs(res.residual) <= 1e-17
    assert res.level == pytest.approx(float(mu), rel=1e-15)


@pytest.mark.parametrize("seed", range(20))
def test_random_against_oracle(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    w, c = rng.exponential(size=(2, n))
    hi = rng.uniform(0.01, 0.5, n)
    T = 0.3 * hi.sum()
    exact = to_float(water_fill_exact(w, T, c, 0.0, hi)[0])
    for method in ("exact", "bisect"):
        res = water_fill(w, T, floors=c, upper=hi, method=method)
        np.testing.assert_allclose(res.delta, exact, rtol=0, atol=1e-11 * T)


@pytest.mark.parametrize("seed", range(20))
def test_greedy_against_oracle(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    L = np.round(rng.normal(size=n), 1)
    D = np.round(rng.exponential(size=n), 1)
    T = 0.3 * D.sum()
    g = greedy_allocate(L, D, T)
    exact, scores = greedy_exact(L, D, T)
    np.testing.assert_array_equal(g.scores, scores)
    np.testing.assert_allclose(g.delta, to_float(exact), rtol=0, atol=1e-14 * max(T, 1))
    np.testing.assert_array_equal(g.order, np.argsort(-scores, kind="stable"))


def test_uniform():
    r = uniform_allocate(4, 0.04)
    np.testing.assert_array_equal(r.delta, np.full(4, 0.01))
    r = uniform_allocate(np.ones((2, 4)), [0.04, 0.08])
    np.testing.assert_allclose(r.delta, [[0.01] * 4, [0.02] * 4])


def test_bad_input_names_argument():
    with pytest.raises(ValueError, match="weights"):
        water_fill([1.0, np.nan], 1.0)
    with pytest.raises(ValueError, match="total"):
        water_fill([1.0, 2.0], -1.0)
    with pytest.raises(ValueError, match="divergences"):
        greedy_allocate([1.0, 2.0], [1.0, -1.0], 1.0)
