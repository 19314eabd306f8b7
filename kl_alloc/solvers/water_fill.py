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
from kl_alloc.solvers._dispatch import compile_variant, fast_dispatcher
from kl_alloc.solvers._errors import check_out, raise_input_error, shares_memory
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
# the defaults, compared by identity first on the fast path
_EXACT = "exact"
_TOL = K.DEFAULT_TOL
_MAX_ITER = K.DEFAULT_MAX_ITER
_LOWER = 0.0
_empty = np.empty

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


def _raise(code: int, bad: int, row: tuple | None, args: dict) -> None:
    name, what = _ERRORS[code]
    detail = None
    if bad < 0 and code == K.E_RANGE:
        detail = ""
    elif bad < 0 and code == K.E_INFEASIBLE:
        detail = f": sum(lower) - total = {args['_excess']!r}"
    raise_input_error(name, what, bad, row, args, detail)


# The fast path (kl_alloc.solvers._dispatch): one call of solve_fast (the defaults) or
# solve_row_entry through its dispatcher with compilation disabled. Array lower bounds only
# with array floors and uppers (see _fewer_variants).
_FAST = fast_dispatcher(K.solve_fast)  # the defaults: lower 0, exact, default tol and max_iter
_ENTRY = fast_dispatcher(K.solve_row_entry)  # any parameters
_COMPILED: set = set()  # the variants compiled or loaded in this process


def _variant(w, c, lo, hi, out, fast):
    """Compile (or load from the cache) the variant these arguments need, if they are of a
    supported kind and it is not loaded yet; True if it was (then the call can be repeated)."""

    def arr(x):
        return type(x) is _ND and x.dtype is F8 and x.ndim == 1 and x.flags.c_contiguous

    if not (arr(w) and (out is None or (arr(out) and out.flags.writeable))):
        return False
    if not all(type(x) is float or arr(x) for x in (c, lo, hi)):
        return False
    key = (fast, type(c), type(lo), type(hi))
    if key in _COMPILED or (type(lo) is _ND and (type(c) is float or type(hi) is float)):
        return False
    one = np.ones(1)
    c1, lo1, hi1 = (one if type(x) is _ND else 0.0 for x in (c, lo, hi))
    if fast:
        compile_variant(_FAST, one, 0.0, c1, hi1, np.empty(1))
    else:
        compile_variant(_ENTRY, one, 0.0, c1, lo1, hi1, 0, _TOL, _MAX_ITER, np.empty(1))
    _COMPILED.add(key)
    return True


def water_fill(
    weights,
    total,
    *,
    floors=0.0,
    lower=_LOWER,
    upper=float("inf"),
    method: str = _EXACT,
    tol: float = _TOL,
    max_iter: int = _MAX_ITER,
    out=None,
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
    out : ndarray, optional
        Where to write ``delta``: a writable C-contiguous float64 array of the weights' shape,
        returned as ``result.delta``. Reusing one saves the allocation (~0.1 us of a small call);
        it may be one of the inputs (the solve then goes through a scratch copy). Its contents are
        unspecified when the call raises.

    Returns
    -------
    WaterFillResult
        ``delta, level, iterations, converged, residual, status`` (see its docstring).

    Degenerate cases: ``total == 0`` or ``sum(lower) >= total`` (within rounding: up to
    ``2 (n + 1) eps sum(lower)`` above ``total``, eps = 2**-52) -> ``delta = lower``, level 0; all
    weights zero -> ``delta = lower``, status 3; upper bounds of the positive-weight agents
    summing to less than ``total`` -> those agents at ``upper``, zero-weight agents at ``lower``,
    status 2; n = 0 -> empty delta (status 3). Raises ``ValueError`` naming the argument for
    NaN/inf, negative weights/floors/lower/total, ``upper < lower``, ``sum(lower) > total``
    beyond that rounding allowance, a non-numeric dtype or a shape that does not broadcast.
    Inputs are never modified.
    """
    # fast path: see _FAST above; a status < 0 (a bad value, a length to broadcast, a long row,
    # out overlapping an input) is redone by the general path, which raises the error message or
    # handles the case
    if type(total) is float or type(total) is _F64:
        tc = type(floors)
        th = type(upper)
        if (tc is float or tc is _ND) and (th is float or th is _ND):
            if (
                lower is _LOWER
                and method is _EXACT
                and tol is _TOL
                and max_iter is _MAX_ITER
                and _FAST is not None
            ):
                try:
                    o = _empty(len(weights)) if out is None else out
                    r = _FAST(weights, total, floors, upper, o)
                except (TypeError, ValueError):  # (typeof: "empty list" is a ValueError)
                    r = None
                    if _variant(weights, floors, 0.0, upper, out, True):
                        return water_fill(weights, total, floors=floors, upper=upper, out=out)
                if r is not None and r[5] >= 0:
                    return _new_result(WaterFillResult, r)
            elif (
                (type(lower) is float or type(lower) is _ND)
                and (type(tol) is float)
                and (type(max_iter) is int)
                and _ENTRY is not None
            ):
                m = 0 if method is _EXACT or method == "exact" else 1 if method == "bisect" else -1
                if m >= 0:
                    try:
                        o = _empty(len(weights)) if out is None else out
                        r = _ENTRY(weights, total, floors, lower, upper, m, tol, max_iter, o)
                    except (TypeError, ValueError):  # (typeof: "empty list" is a ValueError)
                        r = None
                        if _variant(weights, floors, lower, upper, out, False):
                            return water_fill(weights, total, floors=floors, lower=lower,
                                              upper=upper, method=method, tol=tol,
                                              max_iter=max_iter, out=out)  # fmt: skip
                    if r is not None and r[5] >= 0:
                        return _new_result(WaterFillResult, r)
    return _water_fill_general(weights, total, floors, lower, upper, method, tol, max_iter, out)


def _water_fill_general(weights, total, floors, lower, upper, method, tol, max_iter, out=None):
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
        if out is not None:
            out = check_out(out, w.shape, "weights")
        o = np.empty(n) if out is None or shares_memory(out, w, c, lo, hi) else out
        solve = _solve_1d if n < _SAMPLE_MIN else _solve_large
        st, mu, it, r, bad = solve(w, T, c, lo, hi, m, tol, max_iter, o)
        if st < 0:
            _raise(st, bad, None, _argdict(weights, T, floors, lower, upper, tol, max_iter, r))
        if out is not None and o is not out:
            out[...] = o
            o = out
        return _new_result(WaterFillResult, (o, mu, it, st != 1, r, st))
    if w.ndim == 0:
        raise ValueError("weights must have at least one dimension (shape (..., n))")
    return _water_fill_batched(weights, w, total, floors, lower, upper, m, tol, max_iter, out)


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


def _water_fill_batched(weights, w, total, floors, lower, upper, m, tol, max_iter, out=None):
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
    if out is not None:
        out = check_out(out, shape, "weights")
    o = np.empty((B, n)) if out is None or shares_memory(out, w, T, c, lo, hi) else out
    out2 = o.reshape(B, n)
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
    solve(w2, T, c2, lo2, hi2, m, tol, max_iter, out2, level, iters, resid, status, bad)
    if B and status.min() < 0:
        b = int(np.argmax(status < 0))
        row = np.unravel_index(b, bshape)
        args = _argdict(w, T.reshape(bshape)[row], c, lo, hi, tol, max_iter, resid[b])
        _raise(int(status[b]), int(bad[b]), tuple(int(i) for i in row), args)
    status = status.reshape(bshape)
    if out is None:
        out = o.reshape(shape)
    elif o is not out:
        out[...] = o.reshape(shape)
    return _new_result(
        WaterFillResult,
        (
            out,
            level.reshape(bshape),
            iters.reshape(bshape),
            status != 1,
            resid.reshape(bshape),
            status,
        ),
    )
