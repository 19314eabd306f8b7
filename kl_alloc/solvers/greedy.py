"""Greedy ratio allocation (HATRPO-G): serve agents by improvement per unit of KL.

    score_i = L_i / (D_i + eps);  agents with L_i > 0 are served in descending score order,
    each receiving min(request_i, budget left); tied scores share in proportion to request_i.

For the linear model "improvement L_i/(D_i+eps) per unit of KL, at most request_i KL" this is the
optimum of the fractional knapsack LP (Dantzig). The kernel finds the critical score by
quickselect (expected O(n)), never sorting; ``order`` is sorted on first access.
"""

from __future__ import annotations

import numba
import numpy as np

from kl_alloc.solvers import _greedy_kernels as K
from kl_alloc.solvers._dispatch import compile_variant, fast_dispatcher
from kl_alloc.solvers._errors import raise_input_error
from kl_alloc.solvers._validate import F8, as_float, as_float_array, param_nd, total_nd
from kl_alloc.solvers.results import GreedyResult, make_greedy_result

__all__ = ["greedy_allocate"]

_ND = np.ndarray
_F64 = np.float64
_EPS = 1e-4
_new_result = tuple.__new__

_ERRORS = {
    K.E_IMPROVEMENTS: ("improvements", "must be finite"),
    K.E_DIVERGENCES: ("divergences", "must be finite and >= 0"),
    K.E_REQUESTS: ("requests", "must be finite and >= 0"),
    K.E_TOTAL: ("total", "must be finite and >= 0"),
    K.E_EPS: ("eps", "must be finite and > 0"),
}


def _raise(code, bad, row, args):
    raise_input_error(*_ERRORS[code], bad, row, args)


# The fast path calls greedy_fast through its dispatcher with compilation disabled (see
# water_fill: numba's C-level typing of the arguments is the type check), with a module-level
# scratch buffer for the selection: the kernels hold the GIL, so one buffer serves every thread.
# Rows longer than half of it go through greedy_1d, which allocates its scratch.
_SCRATCH = np.empty(256)
_FAST = fast_dispatcher(K.greedy_fast)
_empty = np.empty


def _arr(x) -> bool:
    return type(x) is _ND and x.dtype is F8 and x.ndim == 1 and x.flags.c_contiguous


def _variant(L, D) -> bool:
    """Compile (or load from the cache) greedy_fast for 1-D float64 C-contiguous arrays if these
    are such and it is not loaded yet; True if it was (then the call can be repeated)."""
    if _FAST.overloads or not (_arr(L) and _arr(D)):
        return False
    one = np.ones(1)
    compile_variant(_FAST, one, one, 1.0, _EPS, np.empty(1), np.empty(1), _SCRATCH)
    return True


def greedy_allocate(improvements, divergences, total, *, eps=_EPS, requests=None):
    """Fractional-knapsack allocation of the KL budget ``total`` by ``L_i / (D_i + eps)``.

    Parameters
    ----------
    improvements : array_like, shape (..., n)
        Predicted improvements ``L_i`` (finite, any sign; ``L_i <= 0`` gets nothing). Each row of
        a (..., n) array is an independent problem.
    divergences : array_like broadcastable to improvements
        The KL ``D_i >= 0`` each agent would use; the default request.
    total : float or array_like of shape (...,)
        The budget ``T >= 0``.
    eps : float
        ``> 0``, keeps the score finite when ``D_i = 0``. An agent with ``D_i = 0`` and no explicit
        request asks for nothing, so it gets 0 however high its score.
    requests : None, float or array_like broadcastable to improvements
        Per-agent caps ``r_i >= 0`` (finite) replacing ``D_i`` as the amount an agent can take.

    Returns
    -------
    GreedyResult
        ``delta``, ``scores``, ``order`` (stable descending-score order, sorted on first access),
        ``critical`` (score of the marginal tie block, 0 if the budget is not exhausted) and
        ``residual`` (``sum(delta) - total``, negative when the requests do not use the budget).

    Raises ``ValueError`` naming the argument for NaN/inf, negative divergences/requests/total,
    non-positive eps, non-numeric dtypes or shapes that do not broadcast. Inputs are never modified.
    """
    # fast path (see _FAST); a NaN residual (a bad value, a length to broadcast, a long row) is
    # redone by the general path, which raises the error message or handles the case
    if (
        (type(total) is float or type(total) is _F64)
        and requests is None
        and (eps is _EPS or type(eps) is float)
        and _FAST is not None
    ):
        try:
            n = len(improvements)
            r = _FAST(improvements, divergences, total, eps, _empty(n), _empty(n), _SCRATCH)
        except (TypeError, ValueError):
            r = None
            if _variant(improvements, divergences):
                return greedy_allocate(improvements, divergences, total, eps=eps)
        if r is not None and r[3] == r[3]:
            return _new_result(GreedyResult, r)
    return _greedy_general(improvements, divergences, total, eps, requests)


def _greedy_general(improvements, divergences, total, eps, requests):
    L = improvements
    if not (type(L) is _ND and L.dtype is F8 and L.flags.c_contiguous):
        L = as_float_array(L, "improvements")
    D = divergences
    if not (type(D) is _ND and D.dtype is F8 and D.flags.c_contiguous and D.shape == L.shape):
        if L.ndim == 0:
            raise ValueError("improvements must have at least one dimension (shape (..., n))")
        D = param_nd(divergences, "divergences", L.shape, "improvements")
        if type(D) is float:
            D = np.full(L.shape, D)
    if type(eps) is not float:
        eps = as_float(eps, "eps")
    if requests is None:
        req = D
    else:
        req = param_nd(requests, "requests", L.shape, "improvements")
        if type(req) is float:
            req = np.full(L.shape, req)
    if L.ndim == 1:
        T = as_float(total, "total")
        n = L.shape[0]
        delta = np.empty(n)
        scores = np.empty(n)
        st, th, r, bad = K.greedy_1d(L, D, T, eps, req, delta, scores)
        if st < 0:
            args = {"improvements": L, "divergences": D, "requests": req, "total": T, "eps": eps}
            _raise(st, bad, None, args)
        return make_greedy_result(delta, scores, th, r)
    return _greedy_batched(L, D, total, eps, req)


def _greedy_batched(L, D, total, eps, req):
    shape = L.shape
    bshape = shape[:-1]
    n = shape[-1]
    B = int(np.prod(bshape))
    T = total_nd(total, "total", bshape).reshape(B)
    delta = np.empty((B, n))
    scores = np.empty((B, n))
    crit = np.empty(B)
    resid = np.empty(B)
    status = np.empty(B, dtype=np.int64)
    bad = np.empty(B, dtype=np.int64)
    args = (
        L.reshape(B, n),
        D.reshape(B, n),
        T,
        eps,
        req.reshape(B, n),
        delta,
        scores,
        crit,
        resid,
        status,
        bad,
    )
    nthreads = numba.get_num_threads()
    if B * n >= K.PARALLEL_MIN_ELEMENTS and nthreads > 1 and B > 1:
        K.greedy_2d_parallel(*args, min(nthreads, B))
    else:
        K.greedy_2d_serial(*args)
    if B and status.min() < 0:
        b = int(np.argmax(status < 0))
        row = tuple(int(i) for i in np.unravel_index(b, bshape))
        args = {
            "improvements": L,
            "divergences": D,
            "requests": req,
            "total": T.reshape(bshape)[row],
            "eps": eps,
        }
        _raise(int(status[b]), int(bad[b]), row, args)
    return make_greedy_result(
        delta.reshape(shape), scores.reshape(shape), crit.reshape(bshape), resid.reshape(bshape)
    )
