"""uniform_allocate: delta_i = total / n."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from kl_alloc import UniformResult, uniform_allocate


@given(st.integers(1, 1000), st.floats(0.0, 1e6))
def test_uniform_int(n, total):
    r = uniform_allocate(n, total)
    assert isinstance(r, UniformResult)
    assert r.delta.shape == (n,) and np.all(r.delta == total / n) and r.share == total / n


@given(st.integers(0, 5), st.integers(0, 7))
def test_uniform_array_shapes(b, n):
    w = np.ones((b, 2, n))
    T = np.arange(b * 2, dtype=float).reshape(b, 2)
    r = uniform_allocate(w, T)
    assert r.delta.shape == w.shape
    if n:
        np.testing.assert_array_equal(r.delta, np.broadcast_to((T / n)[..., None], w.shape))
    r1 = uniform_allocate(np.ones(n), 0.5)
    assert r1.delta.shape == (n,)
    if n:
        assert np.all(r1.delta == 0.5 / n)
