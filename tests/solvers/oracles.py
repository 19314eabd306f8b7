"""Independent references for the solver tests: exact rational arithmetic, no numba.

Both oracles convert every float input to ``fractions.Fraction`` exactly and follow the defined
conventions of the solvers (degenerate cases included), so the only difference to the solver
under test is rounding.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def _fr(x) -> Fraction:
    return Fraction(float(x))


def _clip(x: Fraction, lo: Fraction, hi) -> Fraction:
    if x <= lo:
        return lo
    if hi is not None and x >= hi:
        return hi
    return x


def water_fill_exact(w, total, c=0.0, lo=0.0, hi=np.inf):
    """Exact sort-and-sweep water-filling. Returns (delta as Fractions, level, status).

    status: 0 solved, 2 saturated, 3 all weights zero (the solver's conventions).
    """
    w = np.asarray(w, dtype=float)
    n = w.shape[0]
    c, lo, hi = (np.broadcast_to(np.asarray(a, dtype=float), (n,)) for a in (c, lo, hi))
    W = [_fr(x) for x in w]
    C = [_fr(x) for x in c]
    LO = [_fr(x) for x in lo]
    HI = [None if np.isinf(x) else _fr(x) for x in hi]
    T = _fr(total)
    lsum = sum(LO, Fraction(0))
    # the solvers accept sum(lower) above total by a rounding allowance (then delta = lower)
    if lsum > T + 2 * (n + 1) * Fraction(np.finfo(float).eps) * lsum:
        raise ValueError("infeasible")

    def delta(mu):
        return [_clip(W[i] * mu - C[i], LO[i], HI[i]) if W[i] > 0 else LO[i] for i in range(n)]

    def S(mu):
        return sum(delta(mu), Fraction(0))

    pos = [i for i in range(n) if W[i] > 0]
    if not pos:
        return LO, Fraction(0), 3
    if sum(LO, Fraction(0)) >= T:
        return LO, Fraction(0), 0
    if all(HI[i] is not None for i in pos):
        smax = sum((HI[i] for i in pos), Fraction(0)) + sum(
            (LO[i] for i in range(n) if W[i] == 0), Fraction(0)
        )
        if smax <= T:
            mu = max((HI[i] + C[i]) / W[i] for i in pos)
            # a sum of upper bounds within rounding of total counts as solved (as in the solver)
            tiny = 2 * (n + 1) * Fraction(np.finfo(float).eps) * T
            return delta(mu), mu, (0 if smax >= T - tiny else 2)
    # breakpoints, sorted; S is linear between consecutive ones
    bps = sorted(
        {Fraction(0)}
        | {(LO[i] + C[i]) / W[i] for i in pos}
        | {(HI[i] + C[i]) / W[i] for i in pos if HI[i] is not None}
    )
    prev = bps[0]
    s_prev = S(prev)
    for b in bps[1:]:
        s_b = S(b)
        if s_b >= T:
            mu = prev + (T - s_prev) * (b - prev) / (s_b - s_prev)
            return delta(mu), mu, 0
        prev, s_prev = b, s_b
    # beyond the last breakpoint only uncapped agents move, with slope sum(w) over them
    slope = sum((W[i] for i in pos if HI[i] is None), Fraction(0))
    mu = prev + (T - s_prev) / slope
    return delta(mu), mu, 0


def greedy_exact(L, D, total, eps=1e-4, requests=None):
    """Exact greedy sweep over tie blocks of the float64 scores L/(D+eps).

    Returns (delta as Fractions, scores as floats).
    """
    L = np.asarray(L, dtype=float)
    D = np.asarray(D, dtype=float)
    n = L.shape[0]
    req = D if requests is None else np.broadcast_to(np.asarray(requests, dtype=float), (n,))
    scores = L / (D + eps)
    left = _fr(total)
    delta = [Fraction(0)] * n
    cand = [i for i in range(n) if L[i] > 0 and req[i] > 0]
    for s in sorted({scores[i] for i in cand}, reverse=True):
        block = [i for i in cand if scores[i] == s]
        R = sum((_fr(req[i]) for i in block), Fraction(0))
        if R <= left:
            for i in block:
                delta[i] = _fr(req[i])
            left -= R
        else:
            for i in block:
                delta[i] = _fr(req[i]) * left / R
            left = Fraction(0)
    return delta, scores


def to_float(xs) -> np.ndarray:
    return np.array([float(x) for x in xs], dtype=float)
