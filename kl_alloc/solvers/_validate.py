"""Python-side argument coercion for the slow path (the fast path does none of this).

The numba kernels validate values (NaN, inf, signs, bounds) themselves; here we only turn inputs
into C-contiguous float64 arrays or Python floats, and check dtypes and shapes, with errors that
name the argument.
"""

from __future__ import annotations

import numbers

import numpy as np

F8 = np.dtype(np.float64)


def as_float_array(x, name: str) -> np.ndarray:
    """A C-contiguous float64 array (a new one when x is not already such an array)."""
    if isinstance(x, np.ndarray):
        a = x
    else:
        try:
            a = np.asarray(x)
        except (ValueError, TypeError) as e:  # ragged lists and the like
            raise ValueError(f"{name} must be a real numeric array: {e}") from None
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name} must have a real numeric dtype (int or float), got {a.dtype}")
    # (np.ascontiguousarray would turn a 0-d array into shape (1,))
    return np.asarray(a, dtype=F8, order="C")


def as_float(x, name: str) -> float:
    """A Python float from a real scalar (int, float, numpy scalar or 0-d array)."""
    if isinstance(x, bool | np.bool_):
        raise ValueError(f"{name} must be a real number, got a bool")
    if isinstance(x, numbers.Real):
        return float(x)
    a = as_float_array(x, name)
    if a.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {a.shape}")
    return float(a)


def _scalar_or_array(x, name: str):
    """A float for a real number or 0-d array, else the float64 array (bools rejected)."""
    if isinstance(x, bool | np.bool_):
        raise ValueError(f"{name} must be a real number or array, got a bool")
    if isinstance(x, numbers.Real):
        return float(x)
    a = as_float_array(x, name)
    return float(a) if a.ndim == 0 else a


def param_1d(x, name: str, n: int):
    """A float, or a float64 array of shape (n,), for a parameter broadcast against (n,)."""
    a = _scalar_or_array(x, name)
    if type(a) is float:
        return a
    if a.shape == (n,):
        return a
    if a.size == 1 and a.ndim == 1:
        return float(a[0])
    raise ValueError(f"{name} of shape {a.shape} does not broadcast to the weights' shape ({n},)")


def param_nd(x, name: str, shape: tuple, like: str = "weights"):
    """A float, or a C-contiguous float64 array of exactly `shape` (broadcast, then copied)."""
    a = _scalar_or_array(x, name)
    if type(a) is float:
        return a
    if a.shape == shape:
        return a
    try:
        b = np.broadcast_to(a, shape)
    except ValueError:
        raise ValueError(
            f"{name} of shape {a.shape} does not broadcast to the {like}' shape {shape}"
        ) from None
    return np.ascontiguousarray(b)


def total_nd(x, name: str, batch_shape: tuple) -> np.ndarray:
    """The per-row budgets as a C-contiguous float64 array of shape batch_shape."""
    if isinstance(x, bool | np.bool_):
        raise ValueError(f"{name} must be a real number or array, got a bool")
    if isinstance(x, numbers.Real):
        return np.full(batch_shape, float(x))
    a = as_float_array(x, name)
    if a.shape == batch_shape:
        return a
    if a.ndim == 0:
        return np.full(batch_shape, float(a))
    raise ValueError(
        f"{name} of shape {a.shape} must be a scalar or match the batch shape {batch_shape}"
    )
