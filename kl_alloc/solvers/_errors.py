"""Error messages shared by the solver wrappers.

The kernels report an invalid input as a status code plus the index of the first bad element;
the wrappers turn it into a ``ValueError`` that names the argument (and the element and row).
"""

from __future__ import annotations

import numpy as np

from kl_alloc.solvers._validate import F8


def _show(v) -> str:
    return repr(float(v)) if np.ndim(v) == 0 and not isinstance(v, int) else repr(v)


def raise_input_error(
    name: str, what: str, bad: int, row: tuple | None, args: dict, detail: str | None = None
) -> None:
    """Raise ``ValueError("<name> <what>; ...")`` for the argument ``name`` (its value in ``args``).

    ``bad >= 0``: the offending element ``name[bad]`` (of row ``row`` for batched input) is shown;
    otherwise ``detail`` when given (appended as is), else the scalar value.
    """
    where = "" if row is None else f" (row {row})"
    if bad >= 0:
        v = args[name]
        val = v if np.ndim(v) == 0 else np.asarray(v)[row or ()].reshape(-1)[bad]
        raise ValueError(f"{name} {what}; {name}[{bad}] = {float(val)!r}{where}")
    if detail is not None:
        raise ValueError(f"{name} {what}{where}{detail}")
    raise ValueError(f"{name} {what}; got {_show(args[name])}{where}")


def check_out(out, shape: tuple, like: str) -> np.ndarray:
    """``out`` if it can receive the result: a writable C-contiguous float64 ndarray of ``shape``
    (the shape of the argument named ``like``); else a ValueError saying what is wrong."""
    if type(out) is np.ndarray or isinstance(out, np.ndarray):
        problems = []
        if out.dtype != F8:
            problems.append(f"dtype {out.dtype}")
        if out.shape != shape:
            problems.append(f"shape {out.shape}")
        if not out.flags.c_contiguous:
            problems.append("not C-contiguous")
        if not out.flags.writeable:
            problems.append("read-only")
        if not problems:
            return out
        got = ", ".join(problems)
    else:
        got = type(out).__name__
    raise ValueError(
        f"out must be a writable C-contiguous float64 array of the {like}' shape {shape}; got {got}"
    )


def shares_memory(out: np.ndarray, *args) -> bool:
    """Whether out may overlap any of the array arguments (then the solve goes to a scratch array
    that is copied into out, so the result does not depend on the overlap)."""
    return any(isinstance(a, np.ndarray) and np.may_share_memory(out, a) for a in args)
