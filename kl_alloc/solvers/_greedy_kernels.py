"""Numba kernels of the greedy ratio allocation (fractional knapsack).

One row: score_i = L_i / (D_i + eps); agents with L_i > 0 are served in descending score order,
each receiving min(r_i, what is left) of the budget T, where r_i is its request (D_i by default).
Agents with equal scores form a tie block that shares what is left in proportion to r_i, so the
answer does not depend on the input order.

The served set is found without sorting: theta, the largest block score with
sum_{s_i >= theta} r_i > T, splits the candidates; every candidate with s_i > theta gets r_i, the
block s_i == theta shares T - sum_{s_i > theta} r_i, the rest get 0. This is exactly the greedy
sweep (Dantzig's fractional-knapsack rule). theta comes from a three-way quickselect over
(score, request) pairs (expected O(n)); long rows first narrow the candidates to a thin score
band around theta estimated from a sorted sample (Floyd-Rivest style), so the selection only
touches a few percent of them.

Reductions use fastmath={'reassoc'} (vectorised sums; the order is fixed by the compiled loop,
so a row gives the same bits alone or in a batch).
"""

import numpy as np
from numba import njit, prange

INF = np.inf
FM = {"reassoc"}
# See _wf_kernels: kernels that do not allocate skip NRT reference counting (~90 ns per call).
reduction = njit(cache=True, fastmath=FM, error_model="numpy", _nrt=False)
kernel = njit(cache=True, error_model="numpy", _nrt=False)
allocating = njit(cache=True, error_model="numpy")

OK = 0
E_IMPROVEMENTS, E_DIVERGENCES, E_REQUESTS, E_TOTAL, E_EPS = -1, -2, -3, -4, -5
E_SHAPE = -6  # an array's length differs from n (the wrapper's fast path then falls back)
E_LARGE = -7  # greedy_entry only: the row is longer than its scratch (the wrapper falls back)

# rows at least this long narrow the candidates with a sample first
SAMPLE_MIN = 8192
SAMPLE_SIZE = 2048  # (the band search needs 2*SAMPLE_SIZE <= SAMPLE_MIN of scratch)


@reduction
def _scores(L, D, eps, req, scores):
    """Validation count, scores, and the total request of the candidates (L > 0)."""
    nbad = 0
    R = 0.0
    for i in range(L.shape[0]):
        li = L[i]
        di = D[i]
        ri = req[i]
        ok = (li > -INF) & (li < INF) & (di >= 0.0) & (di < INF) & (ri >= 0.0) & (ri < INF)
        nbad += 0 if ok else 1
        scores[i] = li / (di + eps)
        R += ri if li > 0.0 else 0.0
    return nbad, R


@kernel
def _first_bad(L, D, req):
    for i in range(L.shape[0]):
        if not (L[i] > -INF and L[i] < INF):
            return E_IMPROVEMENTS, i
        if not (D[i] >= 0.0 and D[i] < INF):
            return E_DIVERGENCES, i
        if not (req[i] >= 0.0 and req[i] < INF):
            return E_REQUESTS, i
    return 0, -1


@reduction
def _assign(L, req, scores, theta, frac, full, delta):
    """delta from theta (full: everyone with L > 0 gets its request); returns sum(delta)."""
    S = 0.0
    for i in range(L.shape[0]):
        s = scores[i]
        r = req[i]
        d = r if (full or s > theta) else (r * frac if s == theta else 0.0)
        d = d if L[i] > 0.0 else 0.0
        delta[i] = d
        S += d
    return S


@kernel
def _gather(L, req, scores, lo, hi, sc, rq):
    """Copy the candidates with lo <= score <= hi into (sc, rq); sum the requests above hi.
    Returns (m, A_above)."""
    m = 0
    A = 0.0
    for i in range(L.shape[0]):
        s = scores[i]
        r = req[i]
        cand = (L[i] > 0.0) & (r > 0.0)
        A += r if (cand and s > hi) else 0.0
        sc[m] = s
        rq[m] = r
        m += 1 if (cand and s >= lo and s <= hi) else 0
    return m, A


@kernel
def _select(sc, rq, m, T, A):
    """Three-way quickselect for theta on the pairs (sc, rq)[:m], where A is the request of
    the candidates above all of them and A <= T < A + sum(rq[:m]). Returns (theta, A_gt, R_eq):
    the requests strictly above theta and in its block."""
    a = 0
    b = m
    while True:
        # median-of-three pivot score
        p0 = sc[a]
        p1 = sc[(a + b - 1) >> 1]
        p2 = sc[b - 1]
        if p0 > p1:
            p0, p1 = p1, p0
        if p1 > p2:
            p1 = p2
            if p0 > p1:
                p1 = p0
        p = p1
        # three-way partition of [a, b): [a, gt) > p, [gt, lt) == p, [lt, b) < p
        gt = a
        i = a
        lt = b
        R_gt = 0.0
        R_eq = 0.0
        while i < lt:
            s = sc[i]
            r = rq[i]
            if s > p:
                sc[i] = sc[gt]
                rq[i] = rq[gt]
                sc[gt] = s
                rq[gt] = r
                gt += 1
                i += 1
                R_gt += r
            elif s < p:
                lt -= 1
                sc[i] = sc[lt]
                rq[i] = rq[lt]
                sc[lt] = s
                rq[lt] = r
            else:
                i += 1
                R_eq += r
        if A + R_gt > T:
            b = gt
        elif A + R_gt + R_eq > T or lt == b:  # (lt == b: nothing below, rounding)
            return p, A + R_gt, R_eq
        else:
            A += R_gt + R_eq
            a = lt


@kernel
def _sample_band(L, req, scores, T, sc, rq):
    """Score band [lo, hi] that should hold theta, from a strided sample of the candidates: the
    sample's own critical scores for its budget (T scaled to the sample) minus and plus 4
    standard errors of the sample's served request; a side that runs out of sample stays open.
    Uses sc, rq (length >= 3*SAMPLE_SIZE) as scratch. (0, -1) when the sample is unusable."""
    n = L.shape[0]
    step = n // SAMPLE_SIZE
    k = 0
    R = 0.0
    for j in range(SAMPLE_SIZE):
        i = j * step + step // 2
        if L[i] > 0.0 and req[i] > 0.0:
            sc[k] = scores[i]
            rq[k] = req[i]
            R += req[i]
            k += 1
    Ts = T * SAMPLE_SIZE / n
    if k < 64 or R <= Ts:
        return 0.0, -1.0
    # the request of the sample's served set is a sum of ~p draws: its error ~ sqrt(sum r^2)
    Q = 0.0
    for j in range(k):
        Q += rq[j] * rq[j]
    delta = 4.0 * np.sqrt(Q * min(Ts / R, 1.0)) + 4.0 * R / k
    hi = INF
    lo = -INF
    if Ts - delta > 0.0:
        for j in range(k):  # (a slice assignment may allocate: no NRT here)
            sc[k + j] = sc[j]
            rq[k + j] = rq[j]
        hi, _, _ = _select(sc[k : 2 * k], rq[k : 2 * k], k, Ts - delta, 0.0)
    if Ts + delta < R:
        lo, _, _ = _select(sc[:k], rq[:k], k, Ts + delta, 0.0)
    if hi == INF and lo == -INF:
        return 0.0, -1.0
    return lo, hi


@kernel
def greedy_row(L, D, T, eps, req, delta, scores, sc, rq):
    """Validate and solve one row into delta and scores; sc, rq: float scratch, length >= n.

    Returns (status, critical, residual, bad_index).
    """
    n = L.shape[0]
    if not (D.shape[0] == n and req.shape[0] == n and delta.shape[0] == n):
        return E_SHAPE, 0.0, 0.0, -1
    if not (T >= 0.0 and T < INF):
        return E_TOTAL, 0.0, 0.0, -1
    if not (eps > 0.0 and eps < INF):
        return E_EPS, 0.0, 0.0, -1
    nbad, R = _scores(L, D, eps, req, scores)
    if nbad > 0:
        code, i = _first_bad(L, D, req)
        return code, 0.0, 0.0, i
    if R <= T:  # everyone is served in full
        S = _assign(L, req, scores, 0.0, 1.0, True, delta)
        return OK, 0.0, S - T, -1
    m = 0
    A = 0.0
    if n >= SAMPLE_MIN:
        lo, hi = _sample_band(L, req, scores, T, sc, rq)
        if lo <= hi:
            m, A = _gather(L, req, scores, lo, hi, sc, rq)
            R_mid = 0.0
            for j in range(m):
                R_mid += rq[j]
            if not (A <= T and A + R_mid > T and m > 0):
                m = 0  # the band missed theta: select over all the candidates
    if m == 0:
        m, A = _gather(L, req, scores, -INF, INF, sc, rq)
    theta, A_gt, R_eq = _select(sc, rq, m, T, A)
    frac = min((T - A_gt) / R_eq, 1.0)
    S = _assign(L, req, scores, theta, frac, False, delta)
    return OK, theta, S - T, -1


@kernel
def greedy_entry(L, D, T, eps, delta, scores, scratch):
    """greedy_row for the wrapper's fast path (requests = divergences; the wrapper calls the
    compiled entry point directly): the selection scratch is the first 2n elements of
    ``scratch`` (a buffer the wrapper keeps, so nothing is allocated and no NRT reference
    counting runs). Returns (status, critical, residual); E_LARGE when 2n > len(scratch)."""
    n = L.shape[0]
    if 2 * n > scratch.shape[0]:
        return E_LARGE, 0.0, 0.0
    st, th, r, bad = greedy_row(L, D, T, eps, D, delta, scores, scratch[:n], scratch[n : 2 * n])
    return st, th, r


@kernel
def greedy_fast(L, D, T, eps, delta, scores, scratch):
    """greedy_entry returning the fields of GreedyResult in order, (delta, scores, critical,
    residual), so the wrapper builds the result from the returned tuple; a residual of NaN
    (never a valid one: the inputs are finite) means "take the general path". The wrapper calls
    it through its dispatcher with compilation disabled (numba's C-level typing of the
    arguments is the type check)."""
    st, th, r = greedy_entry(L, D, T, eps, delta, scores, scratch)
    if st < 0:
        return delta, scores, 0.0, np.nan
    return delta, scores, th, r


@allocating
def greedy_1d(L, D, T, eps, req, delta, scores):
    n = L.shape[0]
    return greedy_row(L, D, T, eps, req, delta, scores, np.empty(n), np.empty(n))


@kernel
def _greedy_rows(L, D, T, eps, req, delta, scores, crit, resid, status, bad, b0, b1, sc, rq):
    for b in range(b0, b1):
        st, th, r, k = greedy_row(L[b], D[b], T[b], eps, req[b], delta[b], scores[b], sc, rq)
        status[b] = st
        crit[b] = th
        resid[b] = r
        bad[b] = k


@allocating
def greedy_2d_serial(L, D, T, eps, req, delta, scores, crit, resid, status, bad):
    """Rows of (B, n) inputs solved independently, scratch shared across rows."""
    B, n = L.shape
    sc = np.empty(n)
    rq = np.empty(n)
    _greedy_rows(L, D, T, eps, req, delta, scores, crit, resid, status, bad, 0, B, sc, rq)


@njit(cache=True, parallel=True)
def greedy_2d_parallel(L, D, T, eps, req, delta, scores, crit, resid, status, bad, nchunks):
    """greedy_2d_serial over nchunks contiguous chunks of rows under prange (scratch per chunk)."""
    B, n = L.shape
    for t in prange(nchunks):
        sc = np.empty(n)
        rq = np.empty(n)
        _greedy_rows(
            L,
            D,
            T,
            eps,
            req,
            delta,
            scores,
            crit,
            resid,
            status,
            bad,
            t * B // nchunks,
            (t + 1) * B // nchunks,
            sc,
            rq,
        )


PARALLEL_MIN_ELEMENTS = 32768
