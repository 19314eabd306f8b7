"""Warm the solver kernels once per session so that JIT compilation (or loading the numba cache)
never lands inside a timed hypothesis example."""

import numpy as np
import pytest

from kl_alloc import greedy_allocate, uniform_allocate, water_fill


@pytest.fixture(scope="session", autouse=True)
def warm_kernels():
    w = np.array([0.5, 0.3, 0.2])
    a = np.array([0.01, 0.02, 0.03])
    for floors in (0.0, a):
        for lower in (0.0, a * 0.1):
            for upper in (np.inf, a * 2):
                for method in ("exact", "bisect"):
                    water_fill(w, 0.01, floors=floors, lower=lower, upper=upper, method=method)
                    water_fill(
                        np.stack([w, w]),
                        0.01,
                        floors=floors,
                        lower=lower,
                        upper=upper,
                        method=method,
                    )
    greedy_allocate(w, a, 0.01)
    greedy_allocate(np.stack([w, w]), np.stack([a, a]), 0.01)
    uniform_allocate(3, 0.01)
