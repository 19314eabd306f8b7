"""water_fill against independent references, and its invariants (solver-notes section 7)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from kl_alloc import WaterFillResult, water_fill

from .oracles import to_float, water_fill_exact
from .strategies import water_fill_instances

EPS = np.finfo(float).eps


def _atol(w, total, floors, lower, upper):
    """Rounding bound of the exact method: the level comes from sums of n terms of size up to
    total + sum(c) + sum(lo) + sum(finite hi), and delta_i = w_i*mu - c_i inherits at most
    w_i/slope <= 1 times that error."""
    n = len(w)
    c = np.broadcast_to(floors, (n,))
    lo = np.broadcast_to(lower, (n,))
    hi = np.broadcast_to(upper, (n,))
    scale = total + np.sum(c) + np.sum(lo) + np.sum(np.where(np.isfinite(hi), hi, 0.0))
    return 16 * (n + 1) * EPS * scale


def _solve(inst, **kw):
    w, total, floors, lower, upper = inst
    return water_fill(w, total, floors=floors, lower=lower, upper=upper, **kw)


@given(water_fill_instances())
def test_exact_matches_rational_oracle(inst):
    w, total, floors, lower, upper = inst
    # a subnormal budget is a known, unfixed limit (status 1 / one-ulp residual): it is pinned by
    # the strict xfails of _SUBNORMAL_TOTALS below; this property covers every other budget
    assume(not 0 < total < np.finfo(float).tiny)
    exact, mu, status = water_fill_exact(w, total, floors, lower, upper)
    res = _solve(inst)
    assert isinstance(res, WaterFillResult)
    atol = _atol(*inst)
    np.testing.assert_allclose(res.delta, to_float(exact), rtol=0, atol=atol)
    assert res.status == status
    assert res.converged
    if status == 0:
        assert abs(res.residual) <= atol


@given(water_fill_instances(), st.sampled_from([1e-6, 1e-9, 1e-12]))
def test_bisect_matches_oracle_to_tol(inst, tol):
    w, total, floors, lower, upper = inst
    exact, _, status = water_fill_exact(w, total, floors, lower, upper)
    res = _solve(inst, method="bisect", tol=tol)
    assert res.converged and res.status == status
    atol = _atol(*inst) + 2 * tol * total
    np.testing.assert_allclose(res.delta, to_float(exact), rtol=0, atol=atol)
    if status == 0:
        assert abs(res.residual) <= atol
    # and exact vs bisect agree to the same tolerance
    np.testing.assert_allclose(res.delta, _solve(inst).delta, rtol=0, atol=atol)


@given(water_fill_instances())
def test_feasibility_and_kkt(inst):
    w, total, floors, lower, upper = inst
    n = len(w)
    res = _solve(inst)
    d = res.delta
    c, lo, hi = (np.broadcast_to(a, (n,)) for a in (floors, lower, upper))
    atol = _atol(*inst)
    assert np.all(d >= lo) and np.all(d <= hi)  # clipping is exact
    if res.status == 0:
        assert abs(d.sum() - total) <= atol
    elif res.status == 2:
        assert d.sum() < total
        np.testing.assert_array_equal(d, np.where(w > 0, hi, lo))
    elif res.status == 3:
        assert not np.any(w > 0)
        np.testing.assert_array_equal(d, lo)
    # KKT: interior agents follow the level; agents at a bound are on the right side of it
    x = w * res.level - c
    interior = (d > lo) & (d < hi)
    np.testing.assert_allclose(d[interior], x[interior], rtol=0, atol=atol)
    at_lo = (d == lo) & (hi > lo)
    at_hi = (d == hi) & (hi > lo)
    assert np.all(x[at_lo] <= lo[at_lo] + atol)
    assert np.all(x[at_hi] >= hi[at_hi] - atol)


@st.composite
def _smooth_instances(draw):
    """Well-conditioned log-utility instances, SLSQP's comfort zone (it is the reference here)."""
    n = draw(st.integers(1, 8))
    el = st.floats(0.1, 10.0)
    w = np.array(draw(st.lists(el, min_size=n, max_size=n)))
    c = np.array(draw(st.lists(st.floats(0.05, 2.0), min_size=n, max_size=n)))
    lo = np.array(draw(st.lists(st.sampled_from([0.0, 0.05]), min_size=n, max_size=n)))
    hi = np.array(draw(st.lists(st.sampled_from([np.inf, 0.3, 1.0]), min_size=n, max_size=n)))
    cap = float(np.sum(np.where(np.isinf(hi), 5.0, hi)))
    total = lo.sum() + draw(st.floats(0.05, 0.95)) * (cap - lo.sum())
    return w, total, c, lo, hi


@settings(max_examples=40)
@given(_smooth_instances())
def test_agrees_with_slsqp(inst):
    """scipy SLSQP on max sum w log(1 + delta/c) s.t. sum delta = total, lo <= delta <= hi."""
    w, total, c, lo, hi = inst
    n = len(w)
    res = water_fill(w, total, floors=c, lower=lo, upper=hi)
    bounds = [(a, None if np.isinf(b) else b) for a, b in zip(lo, hi, strict=True)]
    room = np.minimum(hi - lo, 1.0)
    x0 = lo + (total - lo.sum()) * room / room.sum()
    sl = minimize(
        lambda d: -np.sum(w * np.log1p(d / c)),
        x0,
        jac=lambda d: -w / (c + d),
        bounds=bounds,
        constraints=[{"type": "eq", "fun": lambda d: d.sum() - total, "jac": lambda d: np.ones(n)}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 500},
    )
    # status 8 ("positive directional derivative") is SLSQP stalling at its optimum
    assert sl.status in (0, 8), sl.message
    assert abs(sl.x.sum() - total) <= 1e-8 * total
    # SLSQP is accurate to ~1e-6 here; the objective comparison is the sharp check
    np.testing.assert_allclose(res.delta, sl.x, rtol=0, atol=1e-4 * total)
    ours = np.sum(w * np.log1p(res.delta / c))
    assert ours >= -sl.fun - 1e-12 * abs(sl.fun)


@given(water_fill_instances(), st.floats(0.0, 1.0))
def test_monotone_in_total(inst, f):
    w, total, floors, lower, upper = inst
    lo_sum = float(np.sum(np.broadcast_to(lower, (len(w),))))
    t1 = lo_sum + f * (total - lo_sum)
    r1 = _solve((w, t1, floors, lower, upper))
    r2 = _solve(inst)
    assert np.all(r1.delta <= r2.delta + _atol(*inst))
    assert r1.level <= r2.level * (1 + 1e-12) or r2.status != 0 or r1.status != 0


@given(water_fill_instances(), st.randoms(use_true_random=False))
def test_permutation_equivariance(inst, rnd):
    w, total, floors, lower, upper = inst
    n = len(w)
    p = np.arange(n)
    rnd.shuffle(p)

    def perm(a):
        return a[p] if np.ndim(a) else a

    r = _solve(inst)
    rp = _solve((w[p], total, perm(floors), perm(lower), perm(upper)))
    np.testing.assert_allclose(rp.delta, r.delta[p], rtol=0, atol=_atol(*inst))
    assert rp.status == r.status


# Counterexamples to the bitwise property above that random (not derandomized) hypothesis runs
# found; known limitations, kept here so they stay visible (strict: a fix makes them pass and
# must then remove the marker). delta stays correct to the budget tolerance in both.
_SCALE_COUNTEREXAMPLES = [
    # subnormal total: subnormals lose bits, so 2 * solve(T) != solve(2 T) (off by one ulp)
    ((np.array([3.0]), 5e-323, 0.0, 0.0, np.inf), 0, 1),
    # total 1e-205 against floors 1 and upper 1e-203: the solve ends in ~100 safeguard steps whose
    # midpoints do not scale exactly (level 0.4000000000000002 vs 2 * 0.20000000000000004)
    ((np.array([5.0, 1.0]), 2.110721123343366e-205, 1.0, 0.0, 1.3508615189397543e-203), 0, 1),
]


@pytest.mark.xfail(strict=True, reason="known: bitwise scaling fails at extreme magnitudes")
@pytest.mark.parametrize("inst,ka,kb", _SCALE_COUNTEREXAMPLES)
def test_scale_invariance_bitwise_known_counterexamples(inst, ka, kb):
    w, total, floors, lower, upper = inst
    a, b = 2.0**ka, 2.0**kb
    r = _solve(inst)
    rs = _solve((w * a, total * b, np.multiply(floors, b), np.multiply(lower, b), upper * b))
    assert np.array_equal(rs.delta, r.delta * b) and rs.level == r.level * b / a


@given(water_fill_instances(), st.integers(-20, 20), st.integers(-20, 20))
def test_scale_invariance_bitwise_powers_of_two(inst, ka, kb):
    """w -> a*w leaves delta unchanged; (c, lo, hi, total) -> b*(...) scales it by b. With powers
    of two every operation of the solver scales exactly, so the answers are bitwise equal, with
    two known exceptions (see _SCALE_COUNTEREXAMPLES): subnormal values, which lose bits, and
    long safeguard walks (> 40 passes). There the answers agree to rounding instead."""
    w, total, floors, lower, upper = inst
    a, b = 2.0**ka, 2.0**kb
    r = _solve(inst)
    rs = _solve((w * a, total * b, np.multiply(floors, b), np.multiply(lower, b), upper * b))
    values = np.abs(np.concatenate([np.ravel(x) for x in (w, total, floors, lower, r.delta)]))
    subnormal = np.any((values > 0) & (values < np.finfo(float).tiny * max(1.0, 1 / b) * 2**60))
    if subnormal or max(r.iterations, rs.iterations) > 40:
        atol = (_atol(*inst) + 8 * np.finfo(float).smallest_subnormal) * b
        np.testing.assert_allclose(rs.delta, r.delta * b, rtol=1e-12, atol=atol)
        return
    np.testing.assert_array_equal(rs.delta, r.delta * b)
    assert rs.level == r.level * b / a
    assert rs.iterations == r.iterations


@given(water_fill_instances(), st.floats(0.1, 10.0), st.floats(0.1, 10.0))
def test_scale_invariance_any_factor(inst, a, b):
    w, total, floors, lower, upper = inst
    r = _solve(inst)
    rs = _solve((w * a, total * b, np.multiply(floors, b), np.multiply(lower, b), upper * b))
    # the scaled instance rounds differently: compare against its own bound
    atol = _atol(w, total * b, np.multiply(floors, b), np.multiply(lower, b), upper * b)
    np.testing.assert_allclose(rs.delta, r.delta * b, rtol=0, atol=8 * atol + 8 * EPS * total * b)


@given(
    st.lists(water_fill_instances(max_n=12, min_n=5), min_size=1, max_size=6),
    st.sampled_from(["exact", "bisect"]),
)
def test_batched_rows_equal_single_solves_bitwise(insts, method):
    n = min(len(i[0]) for i in insts)
    rows = [(w[:n], *rest) for w, *rest in insts]

    def arr(a):
        return np.broadcast_to(a[:n] if np.ndim(a) else a, (n,))

    W = np.stack([r[0] for r in rows])
    C = np.stack([arr(r[2]) for r in rows])
    LO = np.stack([arr(r[3]) for r in rows])
    HI = np.maximum(np.stack([arr(r[4]) for r in rows]), LO)
    T = np.array([max(r[1], LO[i].sum()) for i, r in enumerate(rows)])
    batch = water_fill(W, T, floors=C, lower=LO, upper=HI, method=method)
    for i in range(len(rows)):
        single = water_fill(W[i], T[i], floors=C[i], lower=LO[i], upper=HI[i], method=method)
        np.testing.assert_array_equal(batch.delta[i], single.delta)
        assert batch.level[i] == single.level
        assert batch.iterations[i] == single.iterations
        assert batch.status[i] == single.status
        assert batch.converged[i] == single.converged
        # residual = sum(delta) - total: its last bits depend on where the output array lies
        # relative to the inputs (the compiler's overlap check picks a scalar or a vector sum),
        # so rows of a batch and single calls agree to rounding; delta, level and status bitwise
        scale = abs(T[i]) + float(np.sum(np.abs(single.delta)))
        assert batch.residual[i] == pytest.approx(single.residual, rel=0, abs=8 * EPS * scale)


#: budgets in the subnormal range (total < 2.2e-308): the exact method does not converge there
#: (status 1 after max_iter, or a residual of one subnormal ulp). Found by hypothesis (its
#: local example database replays them); the solver is not fixed yet: kept as strict xfails so a
#: fix shows up.
_SUBNORMAL_TOTALS = [
    (np.array([1.0, 1.0]), 5e-324, 0.0, 0.0, 5e-324),
    (np.array([2.0, 2.0]), 5e-324, 0.0, 0.0, 5e-324),
    (np.array([3.0]), 5e-323, 0.0, 0.0, np.inf),
]


@pytest.mark.xfail(strict=True, reason="known: subnormal budgets (noted in docs/solvers.md)")
@pytest.mark.parametrize("inst", _SUBNORMAL_TOTALS)
def test_subnormal_budget_solves_exactly(inst):
    w, total, floors, lower, upper = inst
    res = water_fill(w, total, floors=floors, lower=lower, upper=upper)
    assert res.status == 0 and res.residual == 0.0


@pytest.mark.parametrize("n", [3, 64, 1500])
def test_batched_parallel_and_serial_paths_equal_single(n):
    """Large batches take the prange path; every row still equals its own single solve."""
    rng = np.random.default_rng(n)
    B = max(8, 40000 // n)
    W = rng.exponential(size=(B, n))
    C = rng.exponential(size=(B, n))
    HI = rng.uniform(0.01, 0.5, size=(B, n))
    T = 0.3 * HI.sum(axis=1)
    for Bs in (B, 4):  # above and below the parallel threshold
        batch = water_fill(W[:Bs], T[:Bs], floors=C[:Bs], upper=HI[:Bs])
        for i in range(0, Bs, max(1, Bs // 7)):
            single = water_fill(W[i], T[i], floors=C[i], upper=HI[i])
            np.testing.assert_array_equal(batch.delta[i], single.delta)
            assert batch.level[i] == single.level


def test_batched_shapes_and_broadcasting():
    rng = np.random.default_rng(1)
    W = rng.exponential(size=(2, 3, 4))
    res = water_fill(W, 1.0, floors=np.arange(4) * 0.1, upper=2.0)
    assert res.delta.shape == (2, 3, 4)
    for name in ("level", "iterations", "converged", "residual", "status"):
        assert np.shape(getattr(res, name)) == (2, 3)
    single = water_fill(W[1, 2], 1.0, floors=np.arange(4) * 0.1, upper=2.0)
    np.testing.assert_array_equal(res.delta[1, 2], single.delta)
    T = np.arange(6.0).reshape(2, 3)
    res = water_fill(W, T)
    np.testing.assert_allclose(res.delta.sum(-1), T, rtol=1e-14, atol=1e-15)
    empty = water_fill(np.empty((0, 4)), 1.0)
    assert empty.delta.shape == (0, 4) and empty.level.shape == (0,)


@pytest.mark.parametrize("method", ["exact", "bisect"])
def test_iterations_bounded(method):
    rng = np.random.default_rng(7)
    worst = 0
    for _ in range(300):
        n = int(rng.integers(1, 200))
        w = np.round(rng.exponential(size=n), 1)
        c = np.round(rng.exponential(size=n), 1)
        hi = np.round(rng.uniform(0.0, 0.5, n), 1)
        res = water_fill(w, 0.3 * hi.sum(), floors=c, upper=hi, method=method)
        assert res.converged
        worst = max(worst, res.iterations)
    assert worst <= (40 if method == "exact" else 120)


# ---------------------------------------------------------------- degenerate, defined answers


def test_degenerate_cases():
    # n = 1: the single agent takes the budget (inside its bounds)
    r = water_fill([2.0], 0.3, floors=0.1)
    assert r.delta[0] == pytest.approx(0.3, rel=1e-15) and r.status == 0
    assert r.level == pytest.approx(0.2, rel=1e-15)
    # total = 0: everything at the lower bound
    r = water_fill([1.0, 2.0], 0.0)
    assert r.delta.tolist() == [0.0, 0.0] and r.status == 0 and r.converged
    # all weights zero: lower bounds, flagged
    r = water_fill([0.0, 0.0], 1.0, lower=[0.1, 0.2])
    assert r.delta.tolist() == [0.1, 0.2] and r.status == 3 and r.residual == pytest.approx(-0.7)
    assert "zero" in r.message
    # n = 0
    r = water_fill(np.empty(0), 1.0)
    assert r.delta.shape == (0,) and r.status == 3
    # sum(upper) < total: saturated, flagged
    r = water_fill([1.0, 3.0], 1.0, upper=[0.25, 0.25])
    assert r.delta.tolist() == [0.25, 0.25] and r.status == 2 and r.converged
    assert r.residual == -0.5 and r.level == 0.25
    # sum(upper) == total exactly: solved
    r = water_fill([1.0, 3.0], 0.75, upper=[0.25, 0.5])
    assert r.delta.tolist() == [0.25, 0.5] and r.status == 0
    # zero-weight agents stay at their lower bound even with budget to spare
    r = water_fill([0.0, 1.0], 1.0, lower=[0.1, 0.0], upper=[0.5, 0.5])
    assert r.delta.tolist() == [0.1, 0.5] and r.status == 2
    # caps = 0 pin an agent
    r = water_fill([1.0, 1.0], 1.0, upper=[0.0, np.inf])
    assert r.delta.tolist() == [0.0, 1.0]
    # ties: identical agents get identical shares
    r = water_fill(np.full(7, 0.3), 0.7, floors=0.01)
    assert np.all(r.delta == r.delta[0]) and r.delta.sum() == pytest.approx(0.7, rel=1e-15)
    # floors = 0: delta proportional to w
    r = water_fill([1.0, 3.0], 1.0)
    assert r.delta.tolist() == [0.25, 0.75]
    # sum(lower) == total: lower bounds
    r = water_fill([1.0, 1.0], 0.3, lower=[0.1, 0.2])
    np.testing.assert_array_equal(r.delta, [0.1, 0.2])


def test_max_iter_reported():
    w = np.random.default_rng(0).exponential(size=100)
    r = water_fill(w, 1.0, floors=0.5, method="bisect", tol=1e-15, max_iter=3)
    assert not r.converged and r.status == 1 and r.iterations == 3 and "max_iter" in r.message


def test_wide_dynamic_range():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        w = 10.0 ** rng.uniform(-150, 150, n)
        c = 10.0 ** rng.uniform(-150, 150, n) * (rng.random(n) < 0.7)
        T = 10.0 ** rng.uniform(-150, 150)
        exact, _, status = water_fill_exact(w, T, c)
        r = water_fill(w, T, floors=c)
        assert r.status == status
        np.testing.assert_allclose(r.delta, to_float(exact), rtol=1e-12, atol=_atol(w, T, c, 0, 1))


def test_level_overflow_raises():
    for method in ("exact", "bisect"):
        with pytest.raises(ValueError, match="weights.*overflows"):
            water_fill([1e-300, 0.0], 1e10, method=method)
    # representable, if barely: fine
    r = water_fill([2.2250738585072014e-308], 3.0, method="bisect")
    assert r.delta[0] == pytest.approx(3.0, rel=1e-6) and r.converged


def test_inputs_not_modified_and_read_only_ok():
    rng = np.random.default_rng(0)
    arrs = [rng.exponential(size=(3, 5)) for _ in range(4)]
    copies = [a.copy() for a in arrs]
    for a in arrs:
        a.flags.writeable = False
    W, C, LO, HI = arrs
    water_fill(W, 10.0, floors=C, lower=LO * 0.01, upper=HI + 1)
    water_fill(W, 10.0, floors=C, lower=LO * 0.01, upper=HI + 1, method="bisect")
    water_fill(W[0], 10.0, floors=C[0], lower=LO[0] * 0.01, upper=HI[0] + 1)
    for a, b in zip(arrs, copies, strict=True):
        np.testing.assert_array_equal(a, b)


def test_dtype_and_layout_coercion():
    w = np.array([3, 1, 2])
    ref = water_fill(w.astype(float), 0.5, floors=0.1)
    strided = np.array([3, 9, 1, 9, 2])[::2]
    for variant in (w, w.astype(np.float32), [3, 1, 2], (3.0, 1.0, 2.0), strided):
        r = water_fill(variant, 0.5, floors=0.1)
        np.testing.assert_array_equal(r.delta, ref.delta)
    r = water_fill(w.astype(float), np.float32(0.5), floors=np.float64(0.1), upper=np.int64(1))
    np.testing.assert_array_equal(r.delta, ref.delta)


def _unsampled(w, T, c, hi):
    """The same problem through the plain Newton kernel (the path rows shorter than
    SAMPLE_MIN take), as a cross-check of the sampled path."""
    import sys

    K = sys.modules["kl_alloc.solvers._wf_kernels"]
    nbad, W, C, L, L0, H = K._scan(w, c, 0.0, hi)
    mu0 = (T - L0 + C) / W
    mu, it, st = K._newton(w, c, 0.0, hi, T, 0.0, 0.0, mu0, 0.0, L, np.inf, np.inf, 1e-12, 200, 0)
    assert st == 0
    return np.clip(w * mu - c, 0.0, hi)


@pytest.mark.parametrize("case", ["random", "sorted", "ties", "off_sample", "sparse", "uncapped"])
def test_long_rows_sampled_path(case):
    """Rows >= SAMPLE_MIN start from a sampled bracket; check it against bisection and the
    unsampled Newton, including data built to make the sample miss."""
    import sys

    K = sys.modules["kl_alloc.solvers._wf_kernels"]
    n = K.SAMPLE_MIN + 1234
    # a stable seed per case (hash(str) changes with PYTHONHASHSEED, i.e. per process)
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    w, c = rng.exponential(size=(2, n))
    hi = rng.uniform(0.01, 0.5, n)
    T = 0.3 * hi.sum()
    if case == "sorted":
        w, c = np.sort(w), np.sort(c)[::-1].copy()
    elif case == "ties":
        w, c, hi = np.round(w, 1), np.round(c, 1), np.round(hi, 1)
        T = 0.3 * hi.sum()
    elif case == "off_sample":  # every sampled agent has weight zero
        step = n // min(K.SAMPLE_SIZE, n // 4)
        w[step // 2 :: step] = 0.0
    elif case == "sparse":  # few agents get anything
        T = 1e-4 * hi.sum()
    elif case == "uncapped":
        hi = np.full(n, np.inf)
        T = 0.1 * n
    res = water_fill(w, T, floors=c, upper=hi)
    assert res.converged and res.status == 0
    atol = 16 * (n + 1) * EPS * (T + c.sum())
    assert abs(res.residual) <= atol
    np.testing.assert_allclose(res.delta, _unsampled(w, T, c, hi), rtol=0, atol=atol)
    bis = water_fill(w, T, floors=c, upper=hi, method="bisect", tol=1e-14)
    np.testing.assert_allclose(res.delta, bis.delta, rtol=0, atol=atol + 2e-14 * T)
    # the batched path gives the same bits for the same long row
    both = water_fill(
        np.stack([w, w[::-1]]),
        np.array([T, T]),
        floors=np.stack([c, c[::-1]]),
        upper=np.stack([hi, hi[::-1]]),
    )
    np.testing.assert_array_equal(both.delta[0], res.delta)
