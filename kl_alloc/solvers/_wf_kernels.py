"""Numba kernels of the water-filling solver (no Python-side work here).

Problem (one row): find the level mu with S(mu) = sum_i clip(w_i*mu - c_i, lo_i, hi_i) = T.
S is continuous, piecewise linear and non-decreasing; on the piece that contains mu,
S(mu) = s*mu + K with slope s = sum of w_i over the active agents (lo_i < w_i*mu - c_i < hi_i)
and K = sum of the bounds of the clipped agents - sum of c_i over the active ones.

Every parameter c, lo, hi is either a float64 scalar or a C-contiguous float64 array; ``_at``
specialises the kernels for each combination at compile time (a scalar costs nothing per
element).

Floating point: element-wise values (w_i*mu - c_i, the clip) are strict IEEE, no FMA contraction.
Only the reductions (sums over agents) are compiled with ``fastmath={'reassoc'}`` so that they
vectorise (4-6x faster passes); their association order is fixed by the compiled loop, so a row
gives the same bits alone or in a batch, serially or under ``prange``, but may differ in the last
bits between machines with different vector widths.
"""

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

INF = np.inf
EPS = 2.220446049250313e-16
DBL_MAX = 1.7976931348623157e308
# fastmath flags for the reductions: reassociation only (no nnan/ninf: the NaN checks must stay)
FM = {"reassoc"}
# Kernels that never allocate are compiled without NRT reference counting (_nrt=False): with it,
# every call that passes arrays costs ~90 ns of atomic incref/decref (measured), which is most of
# a small solve. Only _sample_bracket and _solve_large allocate (scratch), and they return
# scalars, so the arrays they create never outlive them.
reduction = njit(cache=True, fastmath=FM, error_model="numpy", _nrt=False)
kernel = njit(cache=True, error_model="numpy", _nrt=False)
allocating = njit(cache=True, error_model="numpy")

# status codes (>= 0: a defined answer; < 0: invalid input, raised by the Python wrapper)
OK, MAXITER, SATURATED, ZERO_WEIGHTS = 0, 1, 2, 3
E_WEIGHTS, E_FLOORS, E_LOWER, E_UPPER, E_TOTAL, E_INFEASIBLE, E_TOL, E_MAXITER = range(-1, -9, -1)
E_RANGE = -9  # the level is not representable (weights tiny against total + floors)
E_SHAPE = -10  # a parameter array's length differs from n (the wrapper's fast path then
# falls back to the general path, which broadcasts or raises)
# solve_row_entry only (the wrapper then takes the general path): a row of SAMPLE_MIN+ agents
# for the exact method (solve_row_large allocates), out overlapping an input array
E_LARGE, E_ALIAS = -11, -12
EXACT, BISECT = 0, 1

# rows at least this long start the exact method from a sample (see _newton_sampled)
SAMPLE_MIN = 16384
SAMPLE_SIZE = 16384  # at most; n // 4 for shorter rows


def _at(x, i):  # pragma: no cover - the Python version is only used with NUMBA_DISABLE_JIT
    return x if np.ndim(x) == 0 else x[i]


@overload(_at)
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


def _empty_like(x, m):  # pragma: no cover
    return x if np.ndim(x) == 0 else np.empty(m)


@overload(_empty_like)
def _ol_empty_like(x, m):
    if isinstance(x, types.Float):
        return lambda x, m: x
    if isinstance(x, types.Array):
        return lambda x, m: np.empty(m)
    return None


def _put(x, k, v):  # pragma: no cover
    if np.ndim(x):
        x[k] = v


@overload(_put)
def _ol_put(x, k, v):
    if isinstance(x, types.Float):
        return lambda x, k, v: None
    if isinstance(x, types.Array):

        def impl(x, k, v):
            x[k] = v

        return impl
    return None


def _strided(x, off, step, m):  # pragma: no cover
    return x if np.ndim(x) == 0 else np.ascontiguousarray(x[off::step][:m])


@overload(_strided)
def _ol_strided(x, off, step, m):
    if isinstance(x, types.Float):
        return lambda x, off, step, m: x
    if isinstance(x, types.Array):
        return lambda x, off, step, m: np.ascontiguousarray(x[off::step][:m])
    return None


# ------------------------------------------------------------------------------ passes


@reduction
def _scan(w, c, lo, hi):
    """Validation and the sums the solver needs, branch-free so it vectorises.

    Returns (nbad, W, C, L, L0, H): bad elements, sum w, sum of c over w > 0, sum lo, sum of lo
    over w == 0, and max S = sum of hi over w > 0 + sum of lo over w == 0.
    """
    nbad = 0
    W = 0.0
    C = 0.0
    L = 0.0
    L0 = 0.0
    H = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        ci = _at(c, i)
        li = _at(lo, i)
        hi_ = _at(hi, i)
        ok = (wi >= 0.0) & (wi < INF) & (ci >= 0.0) & (ci < INF) & (li >= 0.0) & (li < INF)
        ok = ok & (hi_ >= li)
        nbad += 0 if ok else 1
        pos = wi > 0.0
        W += wi
        C += ci if pos else 0.0
        L += li
        L0 += 0.0 if pos else li
        H += hi_ if pos else li
    return nbad, W, C, L, L0, H


@kernel
def _first_bad(w, c, lo, hi):
    """(code, index) of the first invalid element (only called when _scan found one)."""
    for i in range(w.shape[0]):
        wi = w[i]
        ci = _at(c, i)
        li = _at(lo, i)
        hi_ = _at(hi, i)
        if not (wi >= 0.0 and wi < INF):
            return E_WEIGHTS, i
        if not (ci >= 0.0 and ci < INF):
            return E_FLOORS, i
        if not (li >= 0.0 and li < INF):
            return E_LOWER, i
        if not (hi_ >= li):
            return E_UPPER, i
    return 0, -1


@reduction
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
        d = min(max(x, li), hi_)
        act = (x > li) & (x < hi_)
        S += d
        s += wi if act else 0.0
        K += -ci if act else d
    return S, s, K


@reduction
def _evaluate_sq(w, c, lo, hi, mu):
    """S(mu), its slope, and sum of delta_i(mu)^2 (for the sampling error of the sample)."""
    S = 0.0
    s = 0.0
    Q = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        x = wi * mu - _at(c, i)
        li = _at(lo, i)
        hi_ = _at(hi, i)
        d = min(max(x, li), hi_)
        S += d
        s += wi if (x > li) & (x < hi_) else 0.0
        Q += d * d
    return S, s, Q


@reduction
def _scan_evaluate2(w, c, lo, hi, mu_a, mu_b, flag):
    """_scan fused with S and its piece at two levels, and the classification on [mu_a, mu_b]:
    one read of the data instead of four.

    Every agent whose regime cannot change for mu in [mu_a, mu_b] is fixed (flag 0) and summed
    into S(mu) = s_fix*mu + K_fix + S_undetermined(mu), exact as a function on the bracket (at
    its ends an agent touching a bound has the same value either way); the m others get flag 1.
    """
    nbad = 0
    W = 0.0
    C = 0.0
    L = 0.0
    L0 = 0.0
    H = 0.0
    Sa = 0.0
    sa = 0.0
    Ka = 0.0
    Sb = 0.0
    sb = 0.0
    Kb = 0.0
    m = 0
    s_fix = 0.0
    K_fix = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        ci = _at(c, i)
        li = _at(lo, i)
        hi_ = _at(hi, i)
        ok = (wi >= 0.0) & (wi < INF) & (ci >= 0.0) & (ci < INF) & (li >= 0.0) & (li < INF)
        ok = ok & (hi_ >= li)
        nbad += 0 if ok else 1
        pos = wi > 0.0
        W += wi
        C += ci if pos else 0.0
        L += li
        L0 += 0.0 if pos else li
        H += hi_ if pos else li
        xa = wi * mu_a - ci
        da = min(max(xa, li), hi_)
        acta = (xa > li) & (xa < hi_)
        Sa += da
        sa += wi if acta else 0.0
        Ka += -ci if acta else da
        xb = wi * mu_b - ci
        db = min(max(xb, li), hi_)
        actb = (xb > li) & (xb < hi_)
        Sb += db
        sb += wi if actb else 0.0
        Kb += -ci if actb else db
        at_lo = xb <= li
        at_hi = xa >= hi_
        active = (xa >= li) & (xb <= hi_)
        fixed = at_lo | at_hi | active
        s_fix += wi if (active & ~at_lo & ~at_hi) else 0.0
        K_fix += li if at_lo else (hi_ if at_hi else (-ci if active else 0.0))
        flag[i] = 0 if fixed else 1
        m += 0 if fixed else 1
    return nbad, W, C, L, L0, H, Sa, sa, Ka, Sb, sb, Kb, m, s_fix, K_fix


@reduction
def _write(w, c, lo, hi, mu, out):
    """delta = clip(w*mu - c, lo, hi) into out; returns sum(delta)."""
    S = 0.0
    for i in range(w.shape[0]):
        d = min(max(w[i] * mu - _at(c, i), _at(lo, i)), _at(hi, i))
        out[i] = d
        S += d
    return S


@reduction
def _write_fixed(w, lo, hi, saturated, out):
    """delta = lo (or, if saturated, hi where w > 0) into out; returns sum(delta)."""
    S = 0.0
    for i in range(w.shape[0]):
        d = _at(hi, i) if (saturated and w[i] > 0.0) else _at(lo, i)
        out[i] = d
        S += d
    return S


@kernel
def _upper_level(w, c, hi, T):
    """A level b with S(b) >= T whenever max S >= T: max over w_i > 0 of (min(hi_i, T) + c_i)/w_i.

    Proof: at b every positive-weight agent has w_i*b - c_i >= min(hi_i, T), so its delta is at
    least min(hi_i, T); either one of them has hi_i >= T (then S >= T) or all are saturated
    (then S = max S >= T).
    """
    b = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        v = (min(_at(hi, i), T) + _at(c, i)) / wi if wi > 0.0 else 0.0
        b = max(b, v)
    return b


@kernel
def _saturation_level(w, c, hi):
    """Smallest level at which every positive-weight agent sits at its (finite) upper bound."""
    b = 0.0
    for i in range(w.shape[0]):
        wi = w[i]
        v = (_at(hi, i) + _at(c, i)) / wi if wi > 0.0 else 0.0
        b = max(b, v)
    return b


@kernel
def _gather_flagged(w, c, lo, hi, flag, flag64, sw, sc, slo, shi):
    """Copy the agents flagged 1 into sw/sc/slo/shi (length >= m + 8); skips 8 flags at a time
    (flag64 is flag viewed as uint64), since only a few percent of the agents are flagged.
    Returns m."""
    n = w.shape[0]
    m = 0
    for j in range(flag64.shape[0]):
        if flag64[j] != 0:
            # branch-free inside a block (a flagged agent is unpredictable): always write,
            # advance only on a flag (the outputs have 8 spare slots for the overshoot)
            for i in range(8 * j, min(8 * j + 8, n)):
                sw[m] = w[i]
                _put(sc, m, _at(c, i))
                _put(slo, m, _at(lo, i))
                _put(shi, m, _at(hi, i))
                m += 1 if flag[i] != 0 else 0  # (an int: uint8 + int stays uint8 in numpy)
    return m


# ------------------------------------------------------------------------------ root finding


@kernel
def _midpoint(a, b):
    """Bisection point of [a, b]: geometric while b > 4a (so a bracket spanning hundreds of
    decades, e.g. from a tiny weight, costs a few steps, not hundreds), arithmetic after."""
    if a > 0.0 and b > 4.0 * a:
        return np.sqrt(a) * np.sqrt(b)
    if a == 0.0:
        return b * 2.0**-64
    return a + 0.5 * (b - a)  # (a + b)/2 could overflow near the largest float


@kernel
def _newton(w, c, lo, hi, T, s_fix, K_fix, mu, lo_b, S_lo, hi_b, S_hi, tol, max_iter, it0):
    """Safeguarded Newton on s_fix*mu + K_fix + S(mu) = T in the bracket [lo_b, hi_b].

    Each step jumps to the root of the current linear piece and is taken only strictly inside
    the bracket; otherwise a regula-falsi step on the bracket, alternating with bisection so
    that the bracket at least halves every two fallback steps. Ends when a Newton step lands on
    the piece it was computed from (its root is then the root of S), when S(mu) == T exactly,
    or when the Newton step from mu moves mu by less than 4 ulps.
    Returns (mu, iterations, status).
    """
    newton = False
    last_secant = False
    s_prev = -1.0
    K_prev = 0.0
    it = it0
    while it < max_iter:
        it += 1
        S, s, K = _evaluate(w, c, lo, hi, mu)
        S += s_fix * mu + K_fix
        s += s_fix
        K += K_fix
        r = S - T
        if r == 0.0 or (newton and s == s_prev and K == K_prev):
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
                hi_b = min(_upper_level(w, c, hi, T - K_fix) * (1.0 + 8.0 * EPS), DBL_MAX)
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


@kernel
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


@allocating
def _sample_bracket(w, c, lo, hi, T):
    """Guess a narrow bracket [mu_a, mu_b] for the root from a strided sample of m = SAMPLE_SIZE
    agents: solve the sample problem (budget scaled by m/n), then widen by 4 standard errors of
    the sample sum, converted to a level width through the sample slope. Returns (0, 0) when
    the sample problem is degenerate."""
    n = w.shape[0]
    m = min(SAMPLE_SIZE, n // 4)
    step = n // m
    off = step // 2
    ws = np.ascontiguousarray(w[off::step][:m])
    cs = _strided(c, off, step, m)
    los = _strided(lo, off, step, m)
    his = _strided(hi, off, step, m)
    nbad, W, C, L, L0, H = _scan(ws, cs, los, his)
    Ts = T * m / n
    if nbad > 0 or W == 0.0 or not (L < Ts and H > Ts):
        return 0.0, 0.0
    mu0 = (Ts - L0 + C) / W
    mu, it, st = _newton(ws, cs, los, his, Ts, 0.0, 0.0, mu0, 0.0, L, INF, INF, 1e-12, 60, 0)
    if st != OK or not (mu < INF):
        return 0.0, 0.0
    S, s, Q = _evaluate_sq(ws, cs, los, his, mu)
    var = max(Q / m - (S / m) ** 2, 0.0)
    se = 4.0 * np.sqrt(var * m) + 4.0 * EPS * Ts  # 4 standard errors of the sample sum
    if not (s > 0.0):
        return 0.0, 0.0
    dmu = se / s
    return max(mu - dmu, 0.0), mu + dmu


@allocating
def _solve_large(w, c, lo, hi, T, tol, max_iter):
    """Exact method for long rows: a sample guesses a bracket; one fused pass validates, checks
    the bracket and fixes every agent whose regime cannot change inside it; the undetermined
    few are gathered and the Newton iteration runs on them only. Falls back to plain Newton on
    the full row when the sample's bracket misses the root.

    Returns (code, mu, iterations, status, W, L, L0, H, C) where code < 0 is an input error and
    code == 1 means "degenerate: let the caller handle it" (the sums are valid then)."""
    n = w.shape[0]
    mu_a, mu_b = _sample_bracket(w, c, lo, hi, T)
    flag = np.zeros(8 * ((n + 7) // 8), dtype=np.uint8)
    out2 = _scan_evaluate2(w, c, lo, hi, mu_a, mu_b, flag)
    nbad, W, C, L, L0, H, Sa, sa, Ka, Sb, sb, Kb, m, s_fix, K_fix = out2
    if nbad > 0:
        return -1, 0.0, 0, MAXITER, W, L, L0, H, C
    if W == 0.0 or L >= T or H <= T:
        return 1, 0.0, 0, MAXITER, W, L, L0, H, C
    it = 1
    if mu_b > mu_a and Sa <= T and T <= Sb:
        sw = np.empty(m + 8)
        sc = _empty_like(c, m + 8)
        slo = _empty_like(lo, m + 8)
        shi = _empty_like(hi, m + 8)
        _gather_flagged(w, c, lo, hi, flag, flag.view(np.uint64), sw, sc, slo, shi)
        # start from the Newton point of the end closer to T
        mu = mu_a + (T - Sa) / (Sb - Sa) * (mu_b - mu_a) if Sb > Sa else mu_a
        if not (mu >= mu_a and mu <= mu_b):
            mu = 0.5 * (mu_a + mu_b)
        mu, it, st = _newton(
            sw[:m],
            _take(sc, m),
            _take(slo, m),
            _take(shi, m),
            T,
            s_fix,
            K_fix,
            mu,
            mu_a,
            Sa,
            mu_b,
            Sb,
            tol,
            max_iter,
            it,
        )
        return 0, mu, it, st, W, L, L0, H, C
    # the sample missed: keep what the fused pass learnt as the starting bracket
    lo_b = 0.0
    S_lo = L
    hi_b = INF
    S_hi = INF
    if mu_b > mu_a:
        if Sa <= T:
            lo_b = mu_a
            S_lo = Sa
        else:
            hi_b = mu_a
            S_hi = Sa
        if Sb <= T:
            lo_b = mu_b
            S_lo = Sb
        elif mu_b < hi_b:
            hi_b = mu_b
            S_hi = Sb
    mu = (T - L0 + C) / W
    if not (mu > lo_b and mu < hi_b):
        mu = _midpoint(lo_b, hi_b) if hi_b < INF else max(mu, 2.0 * lo_b)
    mu, it, st = _newton(w, c, lo, hi, T, 0.0, 0.0, mu, lo_b, S_lo, hi_b, S_hi, tol, max_iter, it)
    return 0, mu, it, st, W, L, L0, H, C


def _take(x, m):  # pragma: no cover
    return x if np.ndim(x) == 0 else x[:m]


@overload(_take, inline="always")
def _ol_take(x, m):
    if isinstance(x, types.Float):
        return lambda x, m: x
    if isinstance(x, types.Array):
        return lambda x, m: x[:m]
    return None


# ------------------------------------------------------------------------------ one row


def _len_ok(x, n):  # pragma: no cover
    return np.ndim(x) == 0 or x.shape[0] == n


@overload(_len_ok)
def _ol_len_ok(x, n):
    if isinstance(x, types.Float):
        return lambda x, n: True
    if isinstance(x, types.Array):
        return lambda x, n: x.shape[0] == n
    return None


@kernel
def _check_scalars(w, c, lo, hi, out, T, tol, max_iter):
    n = w.shape[0]
    if not (_len_ok(c, n) and _len_ok(lo, n) and _len_ok(hi, n) and out.shape[0] == n):
        return E_SHAPE
    if not (T >= 0.0 and T < INF):
        return E_TOTAL
    if not (tol > 0.0 and tol < INF):
        return E_TOL
    if max_iter < 1:
        return E_MAXITER
    return OK


@kernel
def _degenerate(w, c, lo, hi, T, nbad, W, L, H, out):
    """Input errors and the cases with a closed-form answer (written into out).

    Returns (done, status, level, iterations, residual, bad_index)."""
    n = w.shape[0]
    if nbad > 0:
        code, i = _first_bad(w, c, lo, hi)
        return True, code, 0.0, 0, 0.0, i
    # feasibility, with a rounding allowance on the sum of the lower bounds
    if L > T + 2.0 * (n + 1) * EPS * L:
        return True, E_INFEASIBLE, 0.0, 0, L - T, -1
    if W == 0.0:
        S = _write_fixed(w, lo, hi, False, out)
        return True, ZERO_WEIGHTS, 0.0, 0, S - T, -1
    if L >= T:  # the lower bounds already spend the budget (to rounding)
        S = _write_fixed(w, lo, hi, False, out)
        return True, OK, 0.0, 0, S - T, -1
    if H <= T:
        S = _write_fixed(w, lo, hi, True, out)
        mu = _saturation_level(w, c, hi)
        st = OK if S >= T - 2.0 * (n + 1) * EPS * T else SATURATED
        return True, st, mu, 0, S - T, -1
    return False, OK, 0.0, 0, 0.0, -1


@kernel
def _finish(w, c, lo, hi, T, tol, mu, it, status, out):
    """Write delta at the level found; flag a level beyond the largest float."""
    n = w.shape[0]
    if not (mu < INF):
        return E_RANGE, mu, it, 0.0, -1
    S = _write(w, c, lo, hi, mu, out)
    if not (S < INF) or (mu > 0.5 * DBL_MAX and S < T - (tol + 64.0 * (n + 1) * EPS) * T):
        # the bracket was clamped at the largest float and the root lies beyond it
        return E_RANGE, mu, it, S - T, -1
    return status, mu, it, S - T, -1


@kernel
def solve_row(w, T, c, lo, hi, method, tol, max_iter, out):
    """Validate and solve one row (any length; long rows are faster through solve_row_large);
    write delta into out.

    Returns (status, level, iterations, residual, bad_index). For status < 0 (invalid input)
    bad_index is the offending element (-1 for a scalar argument) and out is untouched.
    """
    code = _check_scalars(w, c, lo, hi, out, T, tol, max_iter)
    if code < 0:
        return code, 0.0, 0, 0.0, -1
    nbad, W, C, L, L0, H = _scan(w, c, lo, hi)
    done, st, mu, it, r, bad = _degenerate(w, c, lo, hi, T, nbad, W, L, H, out)
    if done:
        return st, mu, it, r, bad
    # now sum(lo) = S(0) < T < max S: a root exists and mu = 0 is a lower bracket
    if method == EXACT:
        mu0 = (T - L0 + C) / W  # the root when every positive-weight agent is active
        mu, it, st = _newton(w, c, lo, hi, T, 0.0, 0.0, mu0, 0.0, L, INF, INF, tol, max_iter, 0)
    else:
        mu, it, st = _bisect(w, c, lo, hi, T, L, W, tol, max_iter)
    return _finish(w, c, lo, hi, T, tol, mu, it, st, out)


@allocating
def solve_row_large(w, T, c, lo, hi, method, tol, max_iter, out):
    """solve_row for rows of at least SAMPLE_MIN agents: the exact method starts from a sampled
    bracket (_solve_large). Compiled with NRT (it allocates scratch), so it is a separate entry
    point: short rows never pay for reference counting."""
    if method != EXACT or w.shape[0] < SAMPLE_MIN:
        return solve_row(w, T, c, lo, hi, method, tol, max_iter, out)
    code = _check_scalars(w, c, lo, hi, out, T, tol, max_iter)
    if code < 0:
        return code, 0.0, 0, 0.0, -1
    code, mu, it, st, W, L, L0, H, C = _solve_large(w, c, lo, hi, T, tol, max_iter)
    nbad = 1 if code < 0 else 0
    done, st2, mu2, it2, r, bad = _degenerate(w, c, lo, hi, T, nbad, W, L, H, out)
    if done:
        return st2, mu2, it2, r, bad
    return _finish(w, c, lo, hi, T, tol, mu, it, st, out)


def _overlaps(out, x):  # pragma: no cover
    if np.ndim(x) == 0 or out.size == 0 or x.size == 0:
        return False
    a, b = out.ctypes.data, x.ctypes.data
    return a < b + x.nbytes and b < a + out.nbytes


@overload(_overlaps)
def _ol_overlaps(out, x):
    if isinstance(x, types.Float):
        return lambda out, x: False

    if isinstance(x, types.Array):

        def impl(out, x):
            a = out.ctypes.data
            b = x.ctypes.data
            return a < b + 8 * x.shape[0] and b < a + 8 * out.shape[0]

        return impl
    return None


@kernel
def solve_row_entry(w, T, c, lo, hi, method, tol, max_iter, out):
    """solve_row for the wrapper's fast path (1-D float64 C-contiguous arrays; the wrapper calls
    the compiled entry point directly). Returns the fields of WaterFillResult in order,
    (delta, level, iterations, converged, residual, status), so the result is built from the
    returned tuple. status < 0 means "take the general path": an invalid input (reported there
    with its message), a parameter length to broadcast (E_SHAPE), a long row for the exact
    method (E_LARGE) or out overlapping an input (E_ALIAS); out is untouched then."""
    if method == EXACT and w.shape[0] >= SAMPLE_MIN:
        return out, 0.0, 0, False, 0.0, E_LARGE
    if _overlaps(out, w) or _overlaps(out, c) or _overlaps(out, lo) or _overlaps(out, hi):
        return out, 0.0, 0, False, 0.0, E_ALIAS
    st, mu, it, r, bad = solve_row(w, T, c, lo, hi, method, tol, max_iter, out)
    return out, mu, it, st != MAXITER, r, st


# the defaults of the public call, baked into solve_fast
DEFAULT_TOL = 1e-12
DEFAULT_MAX_ITER = 200


@kernel
def solve_fast(w, T, c, hi, out):
    """solve_row_entry with the public call's defaults (lower = 0, the exact method, tol and
    max_iter at DEFAULT_TOL / DEFAULT_MAX_ITER): five arguments instead of nine, since every
    argument costs ~10-25 ns to type and unbox. The wrapper calls it through its dispatcher
    with compilation disabled, so that numba's C-level typing of the arguments (1-D, float64,
    C-contiguous, writable) is the type check; same numbers as solve_row_entry."""
    return solve_row_entry(w, T, c, 0.0, hi, EXACT, DEFAULT_TOL, DEFAULT_MAX_ITER, out)


# batches of at least this many elements (B*n) run under prange (serial below: a parallel
# region costs 1-2 us hot and far more after the pool idled, see solver-notes section 8)
PARALLEL_MIN_ELEMENTS = 32768


def _solve_row_b(w, T, c, lo, hi, method, tol, max_iter, out, b):  # pragma: no cover
    return solve_row(
        w[b], T[b], _row(c, b), _row(lo, b), _row(hi, b), method, tol, max_iter, out[b]
    )


@overload(_solve_row_b, inline="always")
def _ol_solve_row_b(w, T, c, lo, hi, method, tol, max_iter, out, b):
    """Row b of a batch, with the row slicing written out per parameter variant: a helper that
    returned the row view of an array parameter would need NRT, and NRT reference counting
    costs ~40 ns per row here (measured)."""
    ca, la, ha = (isinstance(x, types.Array) for x in (c, lo, hi))
    if not ca and not la and not ha:
        return lambda w, T, c, lo, hi, method, tol, max_iter, out, b: solve_row(
            w[b], T[b], c, lo, hi, method, tol, max_iter, out[b]
        )
    if ca and not la and not ha:
        return lambda w, T, c, lo, hi, method, tol, max_iter, out, b: solve_row(
            w[b], T[b], c[b], lo, hi, method, tol, max_iter, out[b]
        )
    if not ca and not la and ha:
        return lambda w, T, c, lo, hi, method, tol, max_iter, out, b: solve_row(
            w[b], T[b], c, lo, hi[b], method, tol, max_iter, out[b]
        )
    if ca and not la and ha:
        return lambda w, T, c, lo, hi, method, tol, max_iter, out, b: solve_row(
            w[b], T[b], c[b], lo, hi[b], method, tol, max_iter, out[b]
        )
    if ca and la and ha:
        return lambda w, T, c, lo, hi, method, tol, max_iter, out, b: solve_row(
            w[b], T[b], c[b], lo[b], hi[b], method, tol, max_iter, out[b]
        )
    return None  # (array lower bounds always come with array floors and uppers)


@kernel
def solve_2d_serial(w, T, c, lo, hi, method, tol, max_iter, out, level, iters, resid, status, bad):
    """Rows of w (B, n) solved independently; c, lo, hi are floats or (B, n) arrays."""
    for b in range(w.shape[0]):
        st, mu, it, r, k = _solve_row_b(w, T, c, lo, hi, method, tol, max_iter, out, b)
        status[b] = st
        level[b] = mu
        iters[b] = it
        resid[b] = r
        bad[b] = k


@njit(cache=True, error_model="numpy", parallel=True, _nrt=False)
def solve_2d_parallel(
    w, T, c, lo, hi, method, tol, max_iter, out, level, iters, resid, status, bad
):
    """solve_2d_serial with the rows under prange (a separate function, so that serial-only use
    never pays for compiling the parallel one)."""
    for b in prange(w.shape[0]):
        st, mu, it, r, k = _solve_row_b(w, T, c, lo, hi, method, tol, max_iter, out, b)
        status[b] = st
        level[b] = mu
        iters[b] = it
        resid[b] = r
        bad[b] = k


@njit(cache=True, error_model="numpy", parallel=True)
def solve_2d_large(w, T, c, lo, hi, method, tol, max_iter, out, level, iters, resid, status, bad):
    """Rows of at least SAMPLE_MIN agents, under prange (with NRT: the sampled path allocates)."""
    for b in prange(w.shape[0]):
        st, mu, it, r, k = solve_row_large(
            w[b], T[b], _row(c, b), _row(lo, b), _row(hi, b), method, tol, max_iter, out[b]
        )
        status[b] = st
        level[b] = mu
        iters[b] = it
        resid[b] = r
        bad[b] = k
