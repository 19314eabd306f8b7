"""The solver wrappers' fast path: a compiled kernel called through its numba dispatcher with
compilation disabled.

The dispatcher types the arguments in C (~20 ns each), which then is the type check: only the
variants compiled so far match (1-D float64 C-contiguous arrays, writable for outputs, float64
scalars or integers converted safely), anything else raises ``TypeError`` and the wrapper takes
its general path. That is cheaper than checking dtype, strides and flags in Python (~90 ns per
array) and calling the compiled entry point directly. With compilation disabled numba also
accepts unsafe scalar conversions (float -> int) and bool -> float, so the wrappers pin the
scalar parameters' Python types before the call. Variants are compiled (or loaded from the cache)
on a miss, by :func:`compile_variant`.
"""

from __future__ import annotations

_NOMATCH = "no compiled variant"

#: every dispatcher :func:`fast_dispatcher` disabled: a kernel may call another one (solve_fast
#: calls solve_row_entry), so compiling a variant re-enables all of them for its duration
_DISABLED: list = []


def _no_match(*args, **kwargs):
    """Replaces a dispatcher's explanation of a failed match (which formats every argument's
    type, ~10 us): the fast path only needs the TypeError."""
    raise TypeError(_NOMATCH)


def _no_conversion(*args, **kwargs) -> bool:
    """Replaces a dispatcher's search for conversions to an existing variant on a miss, which
    types every argument in Python (~100 us): on a miss the wrapper's general path converts."""
    return False


def fast_dispatcher(fn):
    """``fn`` (a numba dispatcher) with compilation disabled; None under NUMBA_DISABLE_JIT (the
    general path then runs the kernels as plain Python)."""
    if not hasattr(fn, "overloads"):
        return None
    fn._can_compile = False  # (disable_compile() insists on a loaded signature)
    fn._explain_matching_error = _no_match
    fn._search_new_conversions = _no_conversion
    _DISABLED.append(fn)
    return fn


def compile_variant(fn, *args) -> None:
    """Compile (or load from numba's cache) ``fn``'s variant for these arguments' types, and
    the variants of the disabled kernels it calls."""
    enabled = [fn, *(d for d in _DISABLED if d is not fn)]
    for d in enabled:
        d._can_compile = True
    try:
        fn(*args)
    finally:
        for d in enabled:
            d._can_compile = False
