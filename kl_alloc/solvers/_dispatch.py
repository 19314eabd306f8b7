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


def _no_match(*args, **kwargs):
    """Replaces a dispatcher's explanation of a failed match (which formats every argument's
    type, ~10 us): the fast path only needs the TypeError."""
    raise TypeError(_NOMATCH)


def fast_dispatcher(fn):
    """``fn`` (a numba dispatcher) with compilation disabled; None under NUMBA_DISABLE_JIT (the
    general path then runs the kernels as plain Python)."""
    if not hasattr(fn, "overloads"):
        return None
    fn._can_compile = False  # (disable_compile() insists on a loaded signature)
    fn._explain_matching_error = _no_match
    return fn


def compile_variant(fn, *args) -> None:
    """Compile (or load from numba's cache) ``fn``'s variant for these arguments' types."""
    fn._can_compile = True
    try:
        fn(*args)
    finally:
        fn._can_compile = False
