"""Numba kernels of the greedy ratio allocation (fractional knapsack).

One row: score_i = L_i / (D_i + eps); agents with L_i > 0 are served in descending score order,
each receiving min(r_i, what is left) of the budget T, where r_i is its request (D_i by default).
Agents with equal scores form a tie block that shares what is left in proportion to r_i, so the
answer does not depend on the input order.

The served set is found without sorting: a three-way quickselect on the scores finds the critical
score theta, the largest block score with sum_{s_i >= theta} r_i > T (expected O(n)). Then every
candidate with s_i > theta gets r_i, the block s_i == theta shares T - sum_{s_i > theta} r_i, the
rest get 0. This is exactly the greedy sweep (Dantzig's fractional-knapsack rule).
"""

import numpy as np
from numba import njit, prange

INF = np.inf

OK = 0
E_IMPROVEMENTS, E_DIVERGENCES, E_REQUESTS, E_TOTAL, E_EPS = -1, -2, -3, -4, -5


@njit(cache=True)
def greedy_row(L, D, T, eps, req, delta, scores, idx):
    """Validate and solve one row into delta and scores; idx is int64 scratch of length >= n.

    Returns (status, critical, residual, bad_index).
    """
    n = L.shape[0]
    if not (T >= 0.0 and T < INF):
        return E_TOTAL, 0.0, 0.0, -1
    if not (eps > 0.0 and eps < INF):
        return E_EPS, 0.0, 0.0, -1
    for i in range(n):
        li = L[i]
        di = D[i]
        ri = req[i]
        if not (li > -INF and li < INF):
            return E_IMPROVEMENTS, 0.0, 0.0, i
        if not (di >= 0.0 and di < INF):
            return E_DIVERGENCES, 0.0, 0.0, i
        if not (ri >= 0.0 and ri < INF):
            return E_REQUESTS, 0.0, 0.0, i
    # scores, the candidate list and their total request
    m = 0
    R = 0.0
    for i in range(n):
        s = L[i] / (D[i] + eps)
        scores[i] = s
        r = req[i]
        if L[i] > 0.0 and r > 0.0:
            idx[m] = i
            m += 1
            R += r
    if R <= T:  # everyone is served in full
        S = 0.0
        for i in range(n):
            d = req[i] if (L[i] > 0.0 and req[i] > 0.0) else 0.0
            delta[i] = d
            S += d
        return OK, 0.0, S - T, -1
    # quickselect for theta on idx[a:b]; A = requests strictly above the current range
    a = 0
    b = m
    A = 0.0
    theta = 0.0
    R_eq = 0.0
    while True:
        # median-of-three pivot score
        p0 = scores[idx[a]]
        p1 = scores[idx[(a + b - 1) >> 1]]
        p2 = scores[idx[b - 1]]
        if p0 > p1:
            p0, p1 = p1, p0
        if p1 > p2:
            p1 = p2
            if p0 > p1:
                p1 = p0
        p = p1
        # three-way partition of idx[a:b]: [a, gt) > p, [gt, lt) == p, [lt, b) < p
        gt = a
        i = a
        lt = b
        R_gt = 0.0
        R_eq = 0.0
        while i < lt:
            k = idx[i]
            s = scores[k]
            if s > p:
                idx[i] = idx[gt]
                idx[gt] = k
                gt += 1
                i += 1
                R_gt += req[k]
            elif s < p:
                lt -= 1
                idx[i] = idx[lt]
                idx[lt] = k
            else:
                i += 1
                R_eq += req[k]
        if A + R_gt > T:
            b = gt
        elif A + R_gt + R_eq > T or lt == b:  # (lt == b: nothing below, rounding)
            A += R_gt
            theta = p
            break
        else:
            A += R_gt + R_eq
            a = lt
    frac = min((T - A) / R_eq, 1.0)
    S = 0.0
    for i in range(n):
        d = 0.0
        if L[i] > 0.0:
            s = scores[i]
            if s > theta:
                d = req[i]
            elif s == theta:
                d = req[i] * frac
        delta[i] = d
        S += d
    return OK, theta, S - T, -1


@njit(cache=True)
def greedy_1d(L, D, T, eps, req, delta, scores):
    idx = np.empty(L.shape[0], dtype=np.int64)
    return greedy_row(L, D, T, eps, req, delta, scores, idx)


PARALLEL_MIN_ELEMENTS = 32768


@njit(cache=True, parallel=True)
def greedy_2d(L, D, T, eps, req, delta, scores, crit, resid, status, bad, nchunks):
    """Rows of (B, n) inputs solved independently, in nchunks contiguous chunks of rows."""
    B, n = L.shape
    if B * n >= PARALLEL_MIN_ELEMENTS and nchunks > 1:
        for t in prange(nchunks):
            idx = np.empty(n, dtype=np.int64)
            for b in range(t * B // nchunks, (t + 1) * B // nchunks):
                st, th, r, k = greedy_row(L[b], D[b], T[b], eps, req[b], delta[b], scores[b], idx)
                status[b] = st
                crit[b] = th
                resid[b] = r
                bad[b] = k
    else:
        idx = np.empty(n, dtype=np.int64)
        for b in range(B):
            st, th, r, k = greedy_row(L[b], D[b], T[b], eps, req[b], delta[b], scores[b], idx)
            status[b] = st
            crit[b] = th
            resid[b] = r
            bad[b] = k
