"""Weighted water-filling: the KKT solution of a separable concave KL-budget allocation.

    delta_i(mu) = clip(w_i * mu - c_i, lo_i, hi_i),   find mu with sum_i delta_i(mu) = total.

With f_i = w_i log(1 + delta_i / c_i) this is the optimum of max sum_i f_i s.t. sum delta <= total,
lo <= delta <= hi (mu = 1 / the budget multiplier). The budget function S(mu) is continuous,
piecewise linear and non-decreasing, so the "exact" method (safeguarded Newton: every step solves
the current linear piece, with bisection whenever the step would leave the bracket) ends on the
root of the right piece after a few passes, and "bisect" halves a bracket that provably holds it.
"""

from __future__ import annotations

import numbers

import numpy as np

from kl_alloc.solvers import _wf_kernels as K
from kl_alloc.solvers._validate import (
    F8,
    as_float,
    as_float_array,
    param_1d,
    param_nd,
    total_nd,
)
from kl_alloc.solvers.results import WaterFillResult

__all__ = ["water_fill"]

_METHODS = {"exact": K.EXACT, "bisect": K.BISECT}
_solve_1d = K.solve_row
_solve_large = K.solve_row_large
_SAMPLE_MIN = K.SAMPLE_MIN
_F64 = np.float64
_new_result = tuple.__new__
_ND = np.ndarray

_ERRORS = {
    K.E_WEIGHTS: ("weights", "must be finite and >= 0"),
    K.E_FLOORS: ("floors", "must be finite and >= 0"),
    K.E_LOWER: ("lower", "must be finite and >= 0"),
    K.E_UPPER: ("upper", "must be >= lower (and not NaN; +inf is allowed)"),
    K.E_TOTAL: ("total", "must be finite and >= 0"),
    K.E_INFEASIBLE: ("total", "is infeasible: sum(lower) > total"),
    K.E_TOL: ("tol", "must be finite and > 0"),
    K.E_MAXITER: ("max_iter", "must be >= 1"),
    K.E_RANGE: (
        "weights",
        "are too small against total + floors: the water level overflows float64 (rescale "
        "them; delta is invariant to weights -> a*weights)",
    ),
}


def _show(v) -> str:
    return repr(float(v)) if np.ndim(v) == 0 and not isinstance(v, int) else repr(v)


def _raise(code: int, bad: int, row: tuple | None, args: dict) -> None:
    name, what = _ERRORS[code]
    where = "" if row is None else f" (row {row})"
    if bad >= 0:
        v = args[name]
        val = v if np.ndim(v) == 0 else np.asarray(v)[row or ()].reshape(-1)[bad]
        raise ValueError(f"{name} {what}; {name}[{bad}] = {float(val)!r}{where}")
    if code == K.E_RANGE:
        raise ValueError(f"{name} {what}{where}")
    if code == K.E_INFEASIBLE:
        raise ValueError(f"{name} {what}{where}: sum(lower) - total = {args['_excess']!r}")
    raise ValueError(f"{name} {what}; got {_show(args[name])}{where}")


def water_fill(
    weights,
    total,
    *,
    floors=0.0,
    lower=0.0,
    upper=float("inf"),
    method: str = "exact",
    tol: float = 1e-12,
    max_iter: int = 200,
) -> WaterFillResult:
    """Solve ``sum_i clip(w_i*mu - c_i, lo_i, hi_i) = total`` for the level ``mu``.

    Parameters
    ----------
    weights : array_like, shape (..., n)
        Utility weights ``w_i >= 0``. Each row of a (..., n) array is an independent problem.
    total : float or array_like of shape (...,)
        The budget ``T >= 0`` (one per row for batched input).
    floors : float or array_like broadcastable to weights
        The offsets ``c_i >= 0`` (``f_i = w_i log(1 + delta_i/c_i)``); 0 gives ``delta ~ w``.
    lower, upper : float or array_like broadcastable to weights
        Bounds ``0 <= lo_i <= hi_i <= +inf`` on each ``delta_i``.
    method : {"exact", "bisect"}
        "exact" (default): safeguarded Newton on the piecewise-linear budget function; ends on
        the exact root of the active piece (``sum(delta) == total`` to rounding). "bisect":
        bisection on ``mu`` in ``[0, b]``, ``b = max_i (min(hi_i, T) + c_i) / w_i``.
    tol : float
        Budget tolerance, relative: bisection stops when ``|sum(delta) - T| <= tol*T``. The exact
        method only uses it to accept a flat piece (no agent strictly inside its bounds) lying
        within ``tol*T`` of ``T``.
    max_iter : int
        Cap on the passes over the data; ``converged`` is False (status 1) when it is hit.

    Returns
    -------
    WaterFillResult
        ``delta, level, iterations, converged, residual, status`` (see its docstring).

    Degenerate cases: ``total == 0`` or ``sum(lower) >= total`` -> ``delta = lower``, level 0; all
    weights zero -> ``delta = lower``, status 3; upper bounds of the positive-weight agents
    summing to less than ``total`` -> those agents at ``upper``, zero-weight agents at ``lower``,
    status 2; n = 0 -> empty delta (status 3). Raises ``ValueError`` naming the argument for
    NaN/inf, negative weights/floors/lower/total, ``upper < lower``, ``sum(lower) > total``, a
    non-numeric dtype or a shape that does not broadcast. Inputs are never modified.
    """
    w = weights
    # fast path: one 1-D float64 problem with the default method/tol/max_iter, parameters given
    # as floats or 1-D float64 arrays; one njit call, no numpy-side validation (the kernel checks
    # values and lengths; a length mismatch falls through to the general path)
    if (
        type(w) is _ND
        and w.dtype is F8
        and w.ndim == 1
        and w.flags.c_contiguous
        and type(lower) is float
        and method == "exact"
        and tol == 1e-12
        and max_iter == 200
        and (
            type(floors) is float
            or (
                type(floors) is _ND
                and floors.dtype is F8
                and floors.ndim == 1
                and floors.flags.c_contiguous
            )
        )
        and (
            type(upper) is float
            or (
                type(upper) is _ND
                and upper.dtype is F8
                and upper.ndim == 1
                and upper.flags.c_contiguous
            )
        )
    ):
        if type(total) is not float:
            if type(total) is not _F64:
                return _water_fill_general(
                    weights, total, floors, lower, upper, method, tol, max_iter
                )
            total = float(total)  # numba unboxes a Python float faster than an np.float64
        n = w.shape[0]
        out = np.empty(n)
        solve = _solve_1d if n < _SAMPLE_MIN else _solve_large
        st, mu, it, r, bad = solve(w, total, floors, lower, upper, 0, 1e-12, 200, out)
        if st < 0:
            if st == K.E_SHAPE:
                return _water_fill_general(
                    weights, total, floors, lower, upper, method, tol, max_iter
                )
            _raise(st, bad, None, _argdict(w, total, floors, lower, upper, tol, max_iter, r))
        return _new_result(WaterFillResult, (out, mu, it, st != 1, r, st))
    return _water_fill_general(weights, total, floors, lower, upper, method, tol, max_iter)


def _is_param(x, w) -> bool:
    return type(x) is _ND and x.dtype is F8 and x.shape == w.shape and x.flags.c_contiguous


def _water_fill_general(weights, total, floors, lower, upper, method, tol, max_iter):
    m = _METHODS.get(method) if type(method) is str else None
    if m is None:
        raise ValueError(f"method must be 'exact' or 'bisect', got {method!r}")
    w = weights
    if not (type(w) is _ND and w.dtype is F8 and w.flags.c_contiguous):
        w = as_float_array(w, "weights")
    if type(tol) is not float:
        tol = as_float(tol, "tol")
    if type(max_iter) is not int:
        if not isinstance(max_iter, numbers.Integral) or isinstance(max_iter, bool | np.bool_):
            raise ValueError(f"max_iter must be an integer, got {max_iter!r}")
        max_iter = int(max_iter)
    if w.ndim == 1:
        n = w.shape[0]
        T = as_float(total, "total")
        c = param_1d(floors, "floors", n)
        lo = param_1d(lower, "lower", n)
        hi = param_1d(upper, "upper", n)
        c, lo, hi = _fewer_variants(c, lo, hi, (n,))
        out = np.empty(n)
        solve = _solve_1d if n < _SAMPLE_MIN else _solve_large
        st, mu, it, r, bad = solve(w, T, c, lo, hi, m, tol, max_iter, out)
        if st < 0:
            _raise(st, bad, None, _argdict(weights, T, floors, lower, upper, tol, max_iter, r))
        return _new_result(WaterFillResult, (out, mu, it, st != 1, r, st))
    if w.ndim == 0:
        raise ValueError("weights must have at least one dimension (shape (..., n))")
    return _water_fill_batched(weights, w, total, floors, lower, upper, m, tol, max_iter)


def _fewer_variants(c, lo, hi, shape):
    """Array lower bounds come with array floors and uppers: each (float | array)^3 combination
    is a separate compiled kernel (5-10 s of JIT each on this machine), and per-agent lower
    bounds are rare, so they share the all-array variant; 5 variants instead of 8."""
    if type(lo) is not float:
        if type(c) is float:
            c = np.full(shape, c)
        if type(hi) is float:
            hi = np.full(shape, hi)
    return c, lo, hi


def _argdict(weights, T, floors, lower, upper, tol, max_iter, excess):
    return {
        "weights": weights,
        "total": T,
        "floors": floors,
        "lower": lower,
        "upper": upper,
        "tol": tol,
        "max_iter": max_iter,
        "_excess": excess,
    }


def _water_fill_batched(weights, w, total, floors, lower, upper, m, tol, max_iter):
    shape = w.shape
    bshape = shape[:-1]
    n = shape[-1]
    B = int(np.prod(bshape))
    T = total_nd(total, "total", bshape).reshape(B)
    c = param_nd(floors, "floors", shape)
    lo = param_nd(lower, "lower", shape)
    hi = param_nd(upper, "upper", shape)
    c, lo, hi = _fewer_variants(c, lo, hi, shape)
    w2 = w.reshape(B, n)
    c2 = c if type(c) is float else c.reshape(B, n)
    lo2 = lo if type(lo) is float else lo.reshape(B, n)
    hi2 = hi if type(hi) is float else hi.reshape(B, n)
    out = np.empty((B, n))
    level = np.empty(B)
    iters = np.empty(B, dtype=np.int64)
    resid = np.empty(B)
    status = np.empty(B, dtype=np.int64)
    bad = np.empty(B, dtype=np.int64)
    if n >= K.SAMPLE_MIN:
        solve = K.solve_2d_large
    elif B * n >= K.PARALLEL_MIN_ELEMENTS:
        solve = K.solve_2d_parallel
    else:
        solve = K.solve_2d_serial
    solve(w2, T, c2, lo2, hi2, m, tol, max_iter, out, level, iters, resid, status, bad)
    if B and status.min() < 0:
        b = int(np.argmax(status < 0))
        row = np.unravel_index(b, bshape)
        args = _argdict(w, T.reshape(bshape)[row], c, lo, hi, tol, max_iter, resid[b])
        _raise(int(status[b]), int(bad[b]), tuple(int(i) for i in row), args)
    status = status.reshape(bshape)
    return _new_result(
        WaterFillResult,
        (
            out.reshape(shape),
            level.reshape(bshape),
            iters.reshape(bshape),
            status != 1,
            resid.reshape(bshape),
            status,
        ),
    )
