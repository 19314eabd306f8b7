"""greedy_allocate against the exact sweep, the LP optimum (scipy linprog), and its invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from kl_alloc import GreedyResult, greedy_allocate

from .oracles import greedy_exact, to_float
from .strategies import greedy_instances

EPS = np.finfo(float).eps


def _req(D, requests):
    return D if requests is None else np.broadcast_to(requests, D.shape)


def _atol(D, total, requests):
    return 8 * (len(D) + 1) * EPS * (total + float(np.sum(_req(D, requests))))


@given(greedy_instances())
def test_matches_exact_sweep(inst):
    L, D, total, eps, requests = inst
    g = greedy_allocate(L, D, total, eps=eps, requests=requests)
    assert isinstance(g, GreedyResult)
    exact, scores = greedy_exact(L, D, total, eps, requests)
    np.testing.assert_array_equal(g.scores, scores)  # the documented formula, bitwise
    np.testing.assert_allclose(g.delta, to_float(exact), rtol=0, atol=_atol(D, total, requests))
    np.testing.assert_array_equal(g.order, np.argsort(-scores, kind="stable"))
    assert g.residual == pytest.approx(g.delta.sum() - total, abs=_atol(D, total, requests))


@settings(max_examples=60)
@given(greedy_instances(max_n=24))
def test_equals_fractional_knapsack_lp_optimum(inst):
    """max sum s_i delta_i s.t. sum delta <= total, 0 <= delta_i <= r_i (r_i = 0 when L_i <= 0)."""
    L, D, total, eps, requests = inst
    g = greedy_allocate(L, D, total, eps=eps, requests=requests)
    r = np.where(L > 0, _req(D, requests), 0.0)
    s = g.scores
    # the LP in units of the budget (HiGHS tolerances are absolute, ~1e-7; a bound above the
    # budget is the same as the budget), over the agents
    # that can take something
    k = r > 0
    if not k.any():
        assert np.all(g.delta == 0)
        return
    unit = total if total > 0 else 1.0
    cunit = float(np.max(np.abs(s[k]))) or 1.0  # and costs of order 1
    lp = linprog(
        -s[k] / cunit,
        A_ub=np.ones((1, int(k.sum()))),
        b_ub=[total / unit],
        bounds=list(zip(np.zeros(int(k.sum())), np.minimum(r[k], total) / unit, strict=True)),
        method="highs",
    )
    lp_x = np.zeros(len(L))
    lp_x[k] = lp.x * unit
    lp_fun = lp.fun * unit * cunit
    assert lp.status == 0, lp.message
    atol = _atol(D, total, requests)
    assert np.all(g.delta >= 0) and np.all(g.delta <= r)
    assert g.delta.sum() <= total + atol
    scale = float(np.sum(np.abs(s) * r)) + 1.0
    # HiGHS stops once scaled reduced costs are within its dual tolerance (1e-7): with two
    # scores closer than 1e-7 * cunit it may fill either first, so its optimum is exact only to
    # 1e-7 * cunit per unit of budget moved (test_matches_exact_sweep checks exact optimality)
    highs_tol = 1e-7 * cunit * unit * int(k.sum())
    assert s @ g.delta == pytest.approx(-lp_fun, rel=1e-9, abs=1e-9 * scale + highs_tol)
    assert s @ g.delta >= -lp_fun - 1e-9 * scale  # never worse than the LP's own point
    sp = np.sort(s[r > 0])
    # well-separated scores (HiGHS rounds costs below ~1e-9 relative): the optimum is unique
    if sp.size and sp[0] > 1e-6 * sp[-1] and np.all(np.diff(sp) > 1e-6 * sp[-1]):
        np.testing.assert_allclose(g.delta, lp_x, rtol=0, atol=1e-9 * total)


@given(greedy_instances())
def test_greedy_structure(inst):
    """Everything scoring above the marginal block is full, everything below is zero, and at most
    one tie block is partially served (KKT of the LP)."""
    L, D, total, eps, requests = inst
    g = greedy_allocate(L, D, total, eps=eps, requests=requests)
    r = np.where(L > 0, _req(D, requests), 0.0)
    s = g.scores
    if g.residual < -_atol(D, total, requests):  # budget not exhausted: everyone served in full
        np.testing.assert_array_equal(g.delta, r)
        assert g.critical == 0.0
        return
    th = g.critical
    above = (s > th) & (r > 0)
    below = (s < th) | (r == 0)
    np.testing.assert_array_equal(g.delta[above], r[above])
    assert np.all(g.delta[below] == 0)
    block = (s == th) & (r > 0)
    if block.any():  # the block shares in proportion to the requests
        frac = g.delta[block] / r[block]
        np.testing.assert_allclose(frac, frac[0], rtol=1e-14, atol=0)


@given(greedy_instances(), st.randoms(use_true_random=False))
def test_permutation_equivariance_with_ties(inst, rnd):
    L, D, total, eps, requests = inst
    n = len(L)
    p = np.arange(n)
    rnd.shuffle(p)
    g = greedy_allocate(L, D, total, eps=eps, requests=requests)
    gp = greedy_allocate(
        L[p], D[p], total, eps=eps, requests=None if requests is None else _req(D, requests)[p]
    )
    np.testing.assert_allclose(gp.delta, g.delta[p], rtol=0, atol=_atol(D, total, requests))
    np.testing.assert_array_equal(gp.scores, g.scores[p])


@given(greedy_instances(), st.floats(0.0, 1.0))
def test_monotone_in_total(inst, f):
    L, D, total, eps, requests = inst
    g1 = greedy_allocate(L, D, f * total, eps=eps, requests=requests)
    g2 = greedy_allocate(L, D, total, eps=eps, requests=requests)
    assert np.all(g1.delta <= g2.delta + _atol(D, total, requests))


@given(greedy_instances(), st.integers(-30, 30), st.integers(-30, 30))
def test_scale_invariance_bitwise_powers_of_two(inst, ka, kb):
    """L -> a*L leaves delta unchanged; (D, total, eps, requests) -> b*(...) scales it by b."""
    L, D, total, eps, requests = inst
    a, b = 2.0**ka, 2.0**kb
    g = greedy_allocate(L, D, total, eps=eps, requests=requests)
    gs = greedy_allocate(
        L * a, D * b, total * b, eps=eps * b, requests=None if requests is None else requests * b
    )
    np.testing.assert_array_equal(gs.delta, g.delta * b)
    np.testing.assert_array_equal(gs.scores, g.scores * a / b)


@given(st.lists(greedy_instances(min_n=6, max_n=12), min_size=1, max_size=6))
def test_batched_rows_equal_single_solves_bitwise(insts):
    n = min(len(i[0]) for i in insts)
    L = np.stack([i[0][:n] for i in insts])
    D = np.stack([i[1][:n] for i in insts])
    T = np.array([i[2] for i in insts])
    R = np.stack([_req(i[1], i[4])[:n] for i in insts])
    g = greedy_allocate(L, D, T, requests=R)
    for k in range(len(insts)):
        s = greedy_allocate(L[k], D[k], T[k], requests=R[k])
        np.testing.assert_array_equal(g.delta[k], s.delta)
        np.testing.assert_array_equal(g.scores[k], s.scores)
        np.testing.assert_array_equal(g.order[k], s.order)
        assert g.critical[k] == s.critical and g.residual[k] == s.residual


@pytest.mark.parametrize("n", [4, 300, 5000])
def test_batched_parallel_path_equals_single(n):
    rng = np.random.default_rng(n)
    B = max(8, 60000 // n)
    L = np.round(rng.normal(size=(B, n)), 1)
    D = np.round(rng.exponential(size=(B, n)), 1)
    T = 0.3 * D.sum(axis=1)
    g = greedy_allocate(L, D, T)
    for k in range(0, B, max(1, B // 7)):
        s = greedy_allocate(L[k], D[k], T[k])
        np.testing.assert_array_equal(g.delta[k], s.delta)


@pytest.mark.parametrize("n", [1000, 200_000])
def test_large_n_matches_sort_and_sweep(n):
    """The quickselect kernel against a numpy sort-and-sweep at sizes the Fraction oracle can't."""
    rng = np.random.default_rng(n)
    L = np.round(rng.normal(size=n), 2)
    D = np.round(rng.exponential(size=n), 2)
    T = 0.3 * D.sum()
    g = greedy_allocate(L, D, T)
    s = L / (D + 1e-4)
    r = np.where(L > 0, D, 0.0)
    order = np.argsort(-s, kind="stable")
    cum = np.cumsum(r[order])
    ref = np.zeros(n)
    full = cum <= T
    ref[order[full]] = r[order[full]]
    # the marginal tie block shares what is left
    k = int(np.argmax(~full))
    th = s[order[k]]
    blk = (s == th) & (r > 0)
    left = T - (cum[k - 1] if k else 0.0) + r[blk & (ref > 0)].sum()
    ref[blk] = r[blk] * left / r[blk].sum()
    np.testing.assert_allclose(g.delta, ref, rtol=0, atol=1e-9 * T)
    assert g.critical == th


def test_degenerate_cases():
    # nobody improves: nothing is allocated
    g = greedy_allocate([-1.0, 0.0], [0.1, 0.1], 1.0)
    assert g.delta.tolist() == [0.0, 0.0] and g.residual == -1.0 and g.critical == 0.0
    # D_i = 0 with no explicit request: the agent asks for nothing
    g = greedy_allocate([1.0, 1.0], [0.0, 0.5], 1.0)
    assert g.delta.tolist() == [0.0, 0.5]
    # ... with an explicit request it is served first (score L/eps)
    g = greedy_allocate([1.0, 1.0], [0.0, 0.5], 0.3, requests=[0.2, 0.5])
    assert g.delta[0] == 0.2 and g.delta[1] == pytest.approx(0.1)
    # total = 0
    g = greedy_allocate([1.0, 2.0], [0.1, 0.1], 0.0)
    assert g.delta.tolist() == [0.0, 0.0]
    # n = 1, n = 0
    g = greedy_allocate([2.0], [0.5], 0.2)
    assert g.delta.tolist() == [0.2] and g.order.tolist() == [0]
    g = greedy_allocate(np.empty(0), np.empty(0), 1.0)
    assert g.delta.shape == (0,) and g.order.shape == (0,)
    # all tied: shares in proportion to the requests, whatever the order
    g = greedy_allocate([1.0, 2.0, 4.0], [1.0, 2.0, 4.0], 3.5, eps=1e-300)
    np.testing.assert_allclose(g.delta, [0.5, 1.0, 2.0], rtol=1e-15)
    assert g.order.tolist() == [0, 1, 2]
    # the budget exactly covers the first block
    g = greedy_allocate([4.0, 1.0], [0.5, 0.5], 0.5, eps=0.5)
    assert g.delta.tolist() == [0.5, 0.0]


def test_result_is_immutable_and_repr_readable():
    g = greedy_allocate([1.0, 2.0], [0.1, 0.2], 0.25)
    with pytest.raises(AttributeError):
        g.delta = None
    assert "order=<lazy>" in repr(g)
    assert g.order.tolist() == [1, 0]
    assert "order=[1, 0]" in repr(g)
    assert not g.order.flags.writeable


def test_inputs_not_modified_and_read_only_ok():
    rng = np.random.default_rng(0)
    L, D, R = rng.normal(size=(3, 4, 50))
    D, R = np.abs(D), np.abs(R)
    arrs = [L, D, R]
    copies = [a.copy() for a in arrs]
    for a in arrs:
        a.flags.writeable = False
    greedy_allocate(L, D, 3.0, requests=R)
    greedy_allocate(L[0], D[0], 3.0, requests=R[0])
    greedy_allocate(L[0], D[0], 3.0)
    for a, b in zip(arrs, copies, strict=True):
        np.testing.assert_array_equal(a, b)


def test_dtype_and_broadcasting():
    ref = greedy_allocate(np.array([1.0, 3.0, 2.0]), np.array([0.5, 0.5, 0.5]), 1.0)
    for L, D in (([1, 3, 2], 0.5), (np.array([1, 3, 2], np.float32), [0.5, 0.5, 0.5])):
        np.testing.assert_array_equal(greedy_allocate(L, D, 1.0).delta, ref.delta)
    g = greedy_allocate(np.ones((2, 3)), [0.1, 0.2, 0.3], [0.3, 0.6], requests=0.2)
    assert g.delta.shape == (2, 3) and g.critical.shape == (2,)
    np.testing.assert_allclose(g.delta.sum(axis=1), [0.3, 0.6])
