"""Numba kernels of the water-filling solver (no Python-side work here).

Problem (one row): find the level mu with S(mu) = sum_i clip(w_i*mu - c_i, lo_i, hi_i) = T.
S is continuous, piecewise linear and non-decreasing; on the piece that contains mu,
S(mu) = s*mu + K with slope s = sum of w_i over the active agents (lo_i < w_i*mu - c_i < hi_i)
and K = sum of the bounds of the clipped agents - sum of c_i over the active ones.

Every parameter c, lo, hi is either a float64 scalar or a float64 array; ``_at`` specialises the
kernels for each combination at compile time, so the scalar case costs nothing per element.
All arithmetic is strict IEEE (no fastmath) so that a row gives the same bits whether it is solved
alone, inside a batch, serially or under ``prange``.
"""

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

INF = np.inf
EPS = 2.220446049250313e-16

# status codes (>= 0: a defined answer; < 0: invalid input, raised by the Python wrapper)
OK, MAXITER, SATURATED, ZERO_WEIGHTS = 0, 1, 2, 3
E_WEIGHTS, E_FLOORS, E_LOWER, E_UPPER, E_TOTAL, E_INFEASIBLE, E_TOL, E_MAXITER = range(-1, -9, -1)
E_RANGE = -9  # the level is not representable (weights tiny against total + floors)
DBL_MAX = 1.7976931348623157e308
EXACT, BISECT = 0, 1


def _at(x, i):  # pragma: no cover - the Python version is only used with NUMBA_DISABLE_JIT
    return x if np.ndim(x) == 0 else x[i]


@overload(_at, inline="always")
def _ol_at(x, i):
    if isinstance(x, types.Float):
        return lambda x, i: x
    if isinstance(x, types.Array):
        return lambda x, i: x[i]
    return None


def _row(x, b):  # pragma: no cover
    return x if np.ndim(x) == 0 else x[b]


@overload(_row, inline="always")
def _ol_row(x, b):
    if isinstance(x, types.Float):
        return lambda x, b: x
    if isinstance(x, types.Array):
        return lambda x, b: x[b]
    return None


@njit(cache=True)
def _evaluate(w, c, lo, hi, mu):
    """One pass: S(mu), and the slope s and intercept K of the piece that contains mu."""
    S = 0.0
    s = 0.0
    K = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        ci = _at(c, i)
        li = _at(lo, i)
        hi_ = _at(hi, i)
        x = wi * mu - ci
        if x <= li:
            S += li
            K += li
        elif x >= hi_:
            S += hi_
            K += hi_
        else:
            S += x
            s += wi
            K -= ci
    return S, s, K


@njit(cache=True)
def _write(w, c, lo, hi, mu, out):
    """delta = clip(w*mu - c, lo, hi) into out; returns sum(delta)."""
    S = 0.0
    for i in range(w.shape[0]):
        d = min(max(w[i] * mu - _at(c, i), _at(lo, i)), _at(hi, i))
        out[i] = d
        S += d
    return S


@njit(cache=True)
def _write_saturated(w, lo, hi, out):
    S = 0.0
    for i in range(w.shape[0]):
        d = _at(hi, i) if w[i] > 0.0 else _at(lo, i)
        out[i] = d
        S += d
    return S


@njit(cache=True)
def _upper_level(w, c, hi, T):
    """A level b with S(b) >= T whenever max S >= T: max over w_i > 0 of (min(hi_i, T) + c_i)/w_i.

    Proof: at b every positive-weight agent has w_i*b - c_i >= min(hi_i, T), so its delta is at
    least min(hi_i, T); either one of them has hi_i >= T (then S >= T) or all are saturated
    (then S = max S >= T).
    """
    b = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        if wi > 0.0:
            v = (min(_at(hi, i), T) + _at(c, i)) / wi
            if v > b:
                b = v
    return b


@njit(cache=True)
def _saturation_level(w, c, hi):
    """Smallest level at which every positive-weight agent sits at its (finite) upper bound."""
    b = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        if wi > 0.0:
            v = (_at(hi, i) + _at(c, i)) / wi
            if v > b:
                b = v
    return b


@njit(cache=True)
def _midpoint(a, b):
    """Bisection point of [a, b]: geometric while b > 4a (so a bracket spanning hundreds of
    decades, e.g. from a tiny weight, costs a few steps, not hundreds), arithmetic after."""
    if a > 0.0 and b > 4.0 * a:
        return np.sqrt(a) * np.sqrt(b)
    if a == 0.0:
        return b * 2.0**-64
    return a + 0.5 * (b - a)  # (a + b)/2 could overflow near the largest float


@njit(cache=True)
def _newton(w, c, lo, hi, T, L, L0, C, W, tol, max_iter):
    """Safeguarded Newton on S(mu) = T: each step jumps to the root of the current linear piece
    and is taken only strictly inside the bracket [lo_b, hi_b]; otherwise a regula-falsi step
    on the bracket, alternating with bisection so that the bracket at least halves every two
    fallback steps. Ends when a Newton step lands on the piece it was computed from."""
    lo_b = 0.0
    S_lo = L  # S(0)
    hi_b = INF
    S_hi = INF
    mu = (T - L0 + C) / W  # root when every positive-weight agent is active
    newton = False
    last_secant = False
    s_prev = -1.0
    K_prev = 0.0
    it = 0
    while it < max_iter:
        it += 1
        S, s, K = _evaluate(w, c, lo, hi, mu)
        r = S - T
        if r == 0.0 or (newton and s == s_prev and K == K_prev):
            # same piece as the one whose root we stepped to: mu is that root, exactly
            return mu, it, OK
        mu_n = mu
        if s > 0.0:
            mu_n = (T - K) / s
            if abs(mu_n - mu) <= 4.0 * EPS * mu:  # mu is the root of its piece, to rounding
                return mu_n, it, OK
        if r < 0.0:
            lo_b = mu
            S_lo = S
        else:
            hi_b = mu
            S_hi = S
        if s == 0.0 and abs(r) <= tol * T:  # a flat piece at T (to tol): delta is unique
            return mu, it, OK
        newton = s > 0.0 and mu_n > lo_b and mu_n < hi_b
        if not newton:
            if hi_b == INF:  # no upper bracket yet: jump to a provable one
                hi_b = min(_upper_level(w, c, hi, T) * (1.0 + 8.0 * EPS), DBL_MAX)
                S_hi = INF
                mu_n = hi_b
                last_secant = False
            else:
                if hi_b - lo_b <= 4.5e-16 * hi_b:  # adjacent floats: cannot get closer
                    return mu, it, OK
                mu_n = -1.0
                if not last_secant and S_hi < INF:
                    mu_n = lo_b + (T - S_lo) / (S_hi - S_lo) * (hi_b - lo_b)
                    last_secant = True
                if not (mu_n > lo_b and mu_n < hi_b):
                    mu_n = _midpoint(lo_b, hi_b)
                    last_secant = False
        s_prev = s
        K_prev = K
        mu = mu_n
    return mu, it, MAXITER


@njit(cache=True)
def _bisect(w, c, lo, hi, T, L, W, tol, max_iter):
    """Bisection on [a, b] with S(a) <= T <= S(b): a = (T - sum lo)/W (S(mu) <= sum lo + W*mu),
    b from _upper_level. Stops when |S(mu) - T| <= tol*T or the bracket is two adjacent floats."""
    lo_b = (T - L) / W * (1.0 - 8.0 * EPS)
    hi_b = min(_upper_level(w, c, hi, T) * (1.0 + 8.0 * EPS), DBL_MAX)
    it = 0
    mu = lo_b
    while it < max_iter:
        mu = _midpoint(lo_b, hi_b)
        it += 1
        S, s, K = _evaluate(w, c, lo, hi, mu)
        r = S - T
        if abs(r) <= tol * T:
            return mu, it, OK
        if r < 0.0:
            lo_b = mu
        else:
            hi_b = mu
        if hi_b - lo_b <= 4.5e-16 * hi_b:
            return mu, it, OK
    return mu, it, MAXITER


@njit(cache=True)
def solve_row(w, T, c, lo, hi, method, tol, max_iter, out):
    """Validate and solve one row; write delta into out.

    Returns (status, level, iterations, residual, bad_index). For status < 0 (invalid input)
    bad_index is the offending element (-1 for a scalar argument) and out is untouched.
    """
    n = w.shape[0]
    if not (T >= 0.0 and T < INF):
        return E_TOTAL, 0.0, 0, 0.0, -1
    if not (tol > 0.0 and tol < INF):
        return E_TOL, 0.0, 0, 0.0, -1
    if max_iter < 1:
        return E_MAXITER, 0.0, 0, 0.0, -1
    # validation pass, gathering the sums the solver needs
    W = 0.0  # sum of the positive weights
    C = 0.0  # sum of c over positive weights
    L = 0.0  # sum of all lower bounds
    L0 = 0.0  # sum of lower bounds of zero-weight agents
    H = 0.0  # max of S: hi over positive weights + lo over zero weights
    for i in range(n):
        wi = w[i]
        ci = _at(c, i)
        li = _at(lo, i)
        hi_ = _at(hi, i)
        if not (wi >= 0.0 and wi < INF):
            return E_WEIGHTS, 0.0, 0, 0.0, i
        if not (ci >= 0.0 and ci < INF):
            return E_FLOORS, 0.0, 0, 0.0, i
        if not (li >= 0.0 and li < INF):
            return E_LOWER, 0.0, 0, 0.0, i
        if not (hi_ >= li):  # also catches NaN; +inf is allowed
            return E_UPPER, 0.0, 0, 0.0, i
        L += li
        if wi > 0.0:
            W += wi
            C += ci
            H += hi_
        else:
            L0 += li
            H += li
    # feasibility, with a rounding allowance on the sum of the lower bounds
    if L > T + 2.0 * (n + 1) * EPS * L:
        return E_INFEASIBLE, 0.0, 0, L - T, -1
    if W == 0.0:
        S = _write(w, c, lo, lo, 0.0, out)
        return ZERO_WEIGHTS, 0.0, 0, S - T, -1
    if L >= T:  # the lower bounds already spend the budget (to rounding)
        S = _write(w, c, lo, lo, 0.0, out)
        return OK, 0.0, 0, S - T, -1
    if H <= T:
        S = _write_saturated(w, lo, hi, out)
        mu = _saturation_level(w, c, hi)
        st = OK if S >= T - 2.0 * (n + 1) * EPS * T else SATURATED
        return st, mu, 0, S - T, -1

    # now sum(lo) = S(0) < T < max S, so a root exists and mu = 0 is a lower bracket
    status = MAXITER
    it = 0
    if method == EXACT:
        mu, it, status = _newton(w, c, lo, hi, T, L, L0, C, W, tol, max_iter)
    else:
        mu, it, status = _bisect(w, c, lo, hi, T, L, W, tol, max_iter)
    if not (mu < INF):
        return E_RANGE, mu, it, 0.0, -1
    S = _write(w, c, lo, hi, mu, out)
    if not (S < INF) or (mu > 0.5 * DBL_MAX and S < T - (tol + 64.0 * (n + 1) * EPS) * T):
        # the bracket was clamped at the largest float and the root lies beyond it
        return E_RANGE, mu, it, S - T, -1
    return status, mu, it, S - T, -1


@njit(cache=True)
def solve_1d(w, T, c, lo, hi, method, tol, max_iter, out):
    return solve_row(w, T, c, lo, hi, method, tol, max_iter, out)


# rows per call above which the batch runs under prange (B*n elements)
PARALLEL_MIN_ELEMENTS = 32768


@njit(cache=True, parallel=True)
def solve_2d(w, T, c, lo, hi, method, tol, max_iter, out, level, iters, resid, status, bad):
    """Rows of w (B, n) solved independently; c, lo, hi are floats or (B, n) arrays."""
    B = w.shape[0]
    if B * w.shape[1] >= PARALLEL_MIN_ELEMENTS:
        for b in prange(B):
            st, mu, it, r, k = solve_row(
                w[b], T[b], _row(c, b), _row(lo, b), _row(hi, b), method, tol, max_iter, out[b]
            )
            status[b] = st
            level[b] = mu
            iters[b] = it
            resid[b] = r
            bad[b] = k
    else:
        for b in range(B):
            st, mu, it, r, k = solve_row(
                w[b], T[b], _row(c, b), _row(lo, b), _row(hi, b), method, tol, max_iter, out[b]
            )
            status[b] = st
            level[b] = mu
            iters[b] = it
            resid[b] = r
            bad[b] = k
