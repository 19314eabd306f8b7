"""Hypothesis strategies for solver instances: ties, zeros, bounds and both budget regimes."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays


def _values(n, lo, hi, *, zero_prob=True):
    """float64 arrays in [lo, hi], sometimes rounded to one decimal (ties, repeated
    breakpoints), sometimes with exact zeros."""
    el = st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    return st.tuples(
        arrays(np.float64, n, elements=el),
        st.sampled_from(["raw", "round", "zeros"] if zero_prob else ["raw", "round"]),
    ).map(lambda t: _shape(t[0], t[1], lo))


def _shape(a, mode, lo):
    if mode == "round":
        return np.maximum(np.round(a, 1), lo)
    if mode == "zeros":
        a = a.copy()
        a[::3] = max(lo, 0.0)
        return a
    return a


@st.composite
def water_fill_instances(draw, max_n=24, min_n=1):
    """(weights, total, floors, lower, upper) with a feasible total in [sum(lower), 1.5*max S]."""
    n = draw(st.integers(min_n, max_n))
    w = draw(_values(n, 0.0, 100.0))
    # weights below 1e-280 would put the level beyond the largest float (a ValueError, tested
    # on its own); smaller-but-representable ones stay in
    w = np.where(w < 1e-280, 0.0, w)
    floors = draw(st.one_of(st.just(0.0), st.floats(0.0, 10.0), _values(n, 0.0, 10.0)))
    lower = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.5), _values(n, 0.0, 0.5)))
    upper_kind = draw(st.sampled_from(["inf", "scalar", "array", "array_inf"]))
    lo_arr = np.broadcast_to(lower, (n,))
    if upper_kind == "inf":
        upper = np.inf
    elif upper_kind == "scalar":
        upper = float(np.max(lo_arr)) + draw(st.floats(0.0, 5.0))
    else:
        upper = lo_arr + draw(_values(n, 0.0, 5.0))
        if upper_kind == "array_inf":
            upper = np.where(np.arange(n) % 2 == 0, np.inf, upper)
    hi_arr = np.broadcast_to(upper, (n,))
    smin = float(np.sum(lo_arr))
    smax_terms = np.where(w > 0, hi_arr, lo_arr)
    smax = float(np.sum(smax_terms))
    if not np.isfinite(smax):
        smax = smin + 10.0 * n
    frac = draw(st.sampled_from([0.0, 0.3, 1.0, 1.3]) | st.floats(0.0, 1.5))
    total = smin + frac * (smax - smin)
    return w, total, floors, lower, upper


@st.composite
def greedy_instances(draw, max_n=32, min_n=1):
    """(improvements, divergences, total, eps, requests)."""
    n = draw(st.integers(min_n, max_n))
    L = draw(_values(n, -5.0, 5.0))
    D = draw(_values(n, 0.0, 3.0))
    eps = draw(st.sampled_from([1e-4, 1e-2, 1.0]))
    requests = draw(st.one_of(st.none(), st.floats(0.0, 2.0), _values(n, 0.0, 2.0)))
    R = D if requests is None else np.broadcast_to(requests, (n,))
    total = draw(st.floats(0.0, 1.3)) * float(np.sum(R[L > 0]))
    return L, D, total, eps, requests
