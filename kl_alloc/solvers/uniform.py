"""The HATRPO baseline: every agent gets the same share, delta_i = total / n."""

from __future__ import annotations

import numbers

import numpy as np

from kl_alloc.solvers._validate import as_float, as_float_array, total_nd
from kl_alloc.solvers.results import UniformResult

__all__ = ["uniform_allocate"]


def uniform_allocate(n_or_weights, total) -> UniformResult:
    """``delta_i = total / n``.

    Parameters
    ----------
    n_or_weights : int or array_like of shape (..., n)
        The number of agents (>= 1), or an array whose last axis lists the agents (its values
        are ignored beyond shape and dtype; this lets it stand in for the other allocators).
    total : float or array_like of shape (...,)
        The budget ``T >= 0`` (one per row for an array of shape (..., n)).

    Returns
    -------
    UniformResult
        ``delta`` (shape (n,) or the array's shape) and ``share = total / n``. An array with
        n = 0 gives an empty ``delta`` and ``share = 0``.
    """
    x = n_or_weights
    if isinstance(x, numbers.Integral) and not isinstance(x, bool | np.bool_):
        n = int(x)
        if n < 1:
            raise ValueError(f"n_or_weights as an agent count must be >= 1, got {n}")
        T = as_float(total, "total")
        if not (0.0 <= T < np.inf):
            raise ValueError(f"total must be finite and >= 0; got {T!r}")
        share = T / n
        return UniformResult(np.full(n, share), share)
    if isinstance(x, bool | np.bool_ | float):
        raise ValueError(f"n_or_weights must be an int or an array, got {x!r}")
    a = as_float_array(x, "n_or_weights")
    if a.ndim == 0:
        raise ValueError("n_or_weights as an array must have at least one dimension")
    n = a.shape[-1]
    if a.ndim == 1:
        T = as_float(total, "total")
        if not (0.0 <= T < np.inf):
            raise ValueError(f"total must be finite and >= 0; got {T!r}")
        share = T / n if n else 0.0
        return UniformResult(np.full(n, share), share)
    T = total_nd(total, "total", a.shape[:-1])
    if not np.all((T >= 0.0) & (T < np.inf)):
        raise ValueError("total must be finite and >= 0 in every row")
    share = T / n if n else np.zeros_like(T)
    return UniformResult(np.repeat(share[..., None], n, axis=-1), share)
