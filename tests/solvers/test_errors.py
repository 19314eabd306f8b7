"""Every bad input raises ValueError naming the argument, for single and batched calls, and the
inputs are left untouched even when the call fails."""

from __future__ import annotations

import numpy as np
import pytest

from kl_alloc import greedy_allocate, uniform_allocate, water_fill

W = np.array([0.5, 0.3, 0.2])
W2 = np.stack([W, W, W])
NAN, INF = np.nan, np.inf


def _with(arr, i, v):
    a = np.array(arr, dtype=float)
    a.reshape(-1)[i] = v
    return a


WATER_FILL_CASES = [
    # (weights, total, kwargs, name in the message)
    (_with(W, 1, NAN), 1.0, {}, "weights"),
    (_with(W, 1, INF), 1.0, {}, "weights"),
    (_with(W, 1, -1.0), 1.0, {}, "weights"),
    (W, NAN, {}, "total"),
    (W, INF, {}, "total"),
    (W, -1.0, {}, "total"),
    (W, 1.0, {"floors": -1.0}, "floors"),
    (W, 1.0, {"floors": _with(W, 2, NAN)}, "floors"),
    (W, 1.0, {"floors": INF}, "floors"),
    (W, 1.0, {"lower": -0.1}, "lower"),
    (W, 1.0, {"lower": _with(np.zeros(3), 0, INF)}, "lower"),
    (W, 1.0, {"lower": NAN}, "lower"),
    (W, 1.0, {"lower": 0.2, "upper": 0.1}, "upper"),
    (W, 1.0, {"upper": _with(np.ones(3), 1, NAN)}, "upper"),
    (W, 1.0, {"upper": -1.0}, "upper"),
    (W, 0.5, {"lower": 0.2}, "total"),  # sum(lower) = 0.6 > total: infeasible
    (W, 1.0, {"tol": 0.0}, "tol"),
    (W, 1.0, {"tol": NAN}, "tol"),
    (W, 1.0, {"max_iter": 0}, "max_iter"),
    (W, 1.0, {"max_iter": 2.5}, "max_iter"),
    (W, 1.0, {"method": "newton"}, "method"),
    (W, 1.0, {"floors": np.ones(4)}, "floors"),
    (W, 1.0, {"upper": np.ones((2, 3))}, "upper"),
    (W, np.ones(3), {}, "total"),
    (np.float64(1.0), 1.0, {}, "weights"),
    (W.astype(complex), 1.0, {}, "weights"),
    (np.array([True, False]), 1.0, {}, "weights"),
    (np.array(["a", "b"]), 1.0, {}, "weights"),
    ([[1.0, 2.0], [3.0]], 1.0, {}, "weights"),
    (W, "1.0", {}, "total"),
    (W, 1.0, {"floors": "x"}, "floors"),
    (W, 1.0, {"lower": True}, "lower"),
    # batched
    (_with(W2, 4, NAN), 1.0, {}, "weights"),
    (W2, np.array([1.0, -1.0, 1.0]), {}, "total"),
    (W2, np.ones(4), {}, "total"),
    (W2, 1.0, {"floors": _with(W2, 7, -1.0)}, "floors"),
    (W2, 1.0, {"lower": np.full((3, 3), 0.5)}, "total"),
    (W2, 1.0, {"upper": np.ones((2, 3))}, "upper"),
]


@pytest.mark.parametrize("weights, total, kwargs, name", WATER_FILL_CASES)
def test_water_fill_bad_input(weights, total, kwargs, name):
    snapshot = [np.array(a, copy=True) for a in (weights, total, *kwargs.values()) if _arr(a)]
    with pytest.raises(ValueError, match=name):
        water_fill(weights, total, **kwargs)
    after = [a for a in (weights, total, *kwargs.values()) if _arr(a)]
    for a, b in zip(snapshot, after, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))


def _arr(a):
    return isinstance(a, np.ndarray) and a.dtype.kind in "f"


def test_water_fill_error_points_at_element_and_row():
    with pytest.raises(ValueError, match=r"weights\[1\] = -1\.0"):
        water_fill(_with(W, 1, -1.0), 1.0)
    with pytest.raises(ValueError, match=r"floors\[1\] = -1\.0 \(row \(2,\)\)"):
        water_fill(W2, 1.0, floors=_with(W2, 7, -1.0))


GREEDY_CASES = [
    # (improvements, divergences, total, kwargs, name)
    (_with(W, 0, NAN), W, 1.0, {}, "improvements"),
    (_with(W, 0, INF), W, 1.0, {}, "improvements"),
    (W, _with(W, 2, -0.1), 1.0, {}, "divergences"),
    (W, _with(W, 2, NAN), 1.0, {}, "divergences"),
    (W, _with(W, 2, INF), 1.0, {}, "divergences"),
    (W, W, -1.0, {}, "total"),
    (W, W, NAN, {}, "total"),
    (W, W, 1.0, {"eps": 0.0}, "eps"),
    (W, W, 1.0, {"eps": -1e-4}, "eps"),
    (W, W, 1.0, {"eps": INF}, "eps"),
    (W, W, 1.0, {"requests": _with(W, 1, -1.0)}, "requests"),
    (W, W, 1.0, {"requests": _with(W, 1, INF)}, "requests"),
    (W, W, 1.0, {"requests": np.ones(4)}, "requests"),
    (W, np.ones(4), 1.0, {}, "divergences"),
    (W, W, np.ones(2), {}, "total"),
    (np.float64(1.0), 1.0, 1.0, {}, "improvements"),
    (W.astype(complex), W, 1.0, {}, "improvements"),
    (W, np.array(["a", "b", "c"]), 1.0, {}, "divergences"),
    (W2, _with(W2, 5, -1.0), 1.0, {}, "divergences"),
    (W2, W2, np.array([1.0, NAN, 1.0]), {}, "total"),
]


@pytest.mark.parametrize("L, D, total, kwargs, name", GREEDY_CASES)
def test_greedy_bad_input(L, D, total, kwargs, name):
    snapshot = [np.array(a, copy=True) for a in (L, D, total, *kwargs.values()) if _arr(a)]
    with pytest.raises(ValueError, match=name):
        greedy_allocate(L, D, total, **kwargs)
    after = [a for a in (L, D, total, *kwargs.values()) if _arr(a)]
    for a, b in zip(snapshot, after, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))


@pytest.mark.parametrize(
    "n, total, name",
    [
        (0, 1.0, "n_or_weights"),
        (-2, 1.0, "n_or_weights"),
        (True, 1.0, "n_or_weights"),
        (2.0, 1.0, "n_or_weights"),
        (np.float64(1.0), 1.0, "n_or_weights"),
        (np.ones(2, complex), 1.0, "n_or_weights"),
        (3, -1.0, "total"),
        (3, NAN, "total"),
        (3, INF, "total"),
        (np.ones((2, 3)), np.ones(3), "total"),
        (np.ones((2, 3)), np.array([1.0, -1.0]), "total"),
    ],
)
def test_uniform_bad_input(n, total, name):
    with pytest.raises(ValueError, match=name):
        uniform_allocate(n, total)
