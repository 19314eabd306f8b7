"""Result records of the solvers.

``WaterFillResult`` and ``UniformResult`` are immutable ``NamedTuple`` records: creating one
costs ~0.1 us, against ~0.5 us for a frozen dataclass, and the water-filling call is budgeted at
well under a microsecond. ``GreedyResult`` is a frozen slotted class because its ``order`` field
is computed on first access (a sort, O(n log n), while the solve itself is O(n)).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["GreedyResult", "UniformResult", "WaterFillResult", "STATUS_MESSAGES"]

#: status codes shared by the results (``status`` field) and their meaning
STATUS_MESSAGES = {
    0: "solved: sum(delta) == total to rounding",
    1: "max_iter reached before convergence",
    2: "saturated: every positive-weight agent sits at its upper bound, sum(delta) < total",
    3: "all weights are zero: every agent sits at its lower bound",
}


def _fmt(x) -> str:
    if isinstance(x, np.ndarray):
        with np.printoptions(precision=6, threshold=8, edgeitems=3):
            return np.array2string(x, separator=", ")
    return repr(x)


class WaterFillResult(NamedTuple):
    """Solution of ``water_fill``.

    Attributes
    ----------
    delta : ndarray
        The allocation, same shape as ``weights``: ``delta_i = clip(w_i*level - c_i, lo_i, hi_i)``.
    level : float or ndarray
        The water level ``mu`` (one per row for batched input). When the level is not unique (a
        flat stretch of the budget function) it is one of the valid levels; ``delta`` is unique.
        0.0 when all weights are zero or when the lower bounds already use the whole budget; for
        ``status == 2`` the smallest level at which every positive-weight agent is saturated.
    iterations : int or ndarray
        Evaluations of the budget function ``S(mu) = sum_i delta_i(mu)`` (passes over the data),
        not counting the validation pass and the final pass that writes ``delta``.
    converged : bool or ndarray
        False only when ``max_iter`` was reached (``status == 1``). The defined degenerate answers
        (``status`` 2 and 3) count as converged: the returned ``delta`` is the exact answer.
    residual : float or ndarray
        ``sum(delta) - total``: rounding-level for ``status == 0`` with ``method="exact"``,
        ``<= tol*total`` for ``method="bisect"``, negative for ``status`` 2 and 3 when the budget
        cannot be spent.
    status : int or ndarray
        0 solved, 1 max_iter reached, 2 saturated (the upper bounds of the positive-weight agents
        sum to less than ``total``), 3 all weights zero. See ``message``.
    """

    delta: np.ndarray
    level: float | np.ndarray
    iterations: int | np.ndarray
    converged: bool | np.ndarray
    residual: float | np.ndarray
    status: int | np.ndarray

    @property
    def message(self) -> str:
        """Human-readable meaning of ``status`` (the worst row for batched results)."""
        st = np.asarray(self.status)
        worst = int(st.max()) if st.size else 0
        return STATUS_MESSAGES[worst]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={_fmt(getattr(self, k))}" for k in self._fields)
        return f"WaterFillResult({fields})"


class UniformResult(NamedTuple):
    """Solution of ``uniform_allocate``.

    Attributes
    ----------
    delta : ndarray
        ``total / n`` for every agent, shape ``(n,)`` or the shape of the given array.
    share : float or ndarray
        ``total / n`` (one per row for batched input).
    """

    delta: np.ndarray
    share: float | np.ndarray

    def __repr__(self) -> str:
        return f"UniformResult(delta={_fmt(self.delta)}, share={_fmt(self.share)})"


class GreedyResult:
    """Solution of ``greedy_allocate`` (immutable).

    Attributes
    ----------
    delta : ndarray
        The allocation, same shape as ``improvements``.
    scores : ndarray
        ``improvements / (divergences + eps)``, same shape.
    order : ndarray of int64
        Agent indices by descending score, ties in index order (a stable sort), per row. Computed
        on first access (O(n log n)) and cached; the allocation itself never needs a full sort.
    critical : float or ndarray
        The score of the marginal (partially served) tie block, i.e. the LP multiplier of the
        budget; 0.0 when the budget is not exhausted.
    residual : float or ndarray
        ``sum(delta) - total``: 0 to rounding when the budget is exhausted, negative when the
        requests of the agents with a positive improvement sum to less than ``total``.
    """

    __slots__ = ("delta", "scores", "critical", "residual", "_order")

    def __setattr__(self, name, value):
        raise AttributeError(f"GreedyResult is immutable (cannot set {name!r})")

    @property
    def order(self) -> np.ndarray:
        o = self._order
        if o is None:
            s = self.scores
            o = np.argsort(-s, axis=-1, kind="stable")
            o.flags.writeable = False
            _SET_ORDER(self, o)
        return o

    def __repr__(self) -> str:
        return (
            f"GreedyResult(delta={_fmt(self.delta)}, scores={_fmt(self.scores)}, "
            f"critical={_fmt(self.critical)}, residual={_fmt(self.residual)}, order=<lazy>)"
            if self._order is None
            else f"GreedyResult(delta={_fmt(self.delta)}, order={_fmt(self._order)}, "
            f"scores={_fmt(self.scores)}, critical={_fmt(self.critical)}, "
            f"residual={_fmt(self.residual)})"
        )


_NEW = object.__new__
_SET_DELTA = GreedyResult.__dict__["delta"].__set__
_SET_SCORES = GreedyResult.__dict__["scores"].__set__
_SET_CRITICAL = GreedyResult.__dict__["critical"].__set__
_SET_RESIDUAL = GreedyResult.__dict__["residual"].__set__
_SET_ORDER = GreedyResult.__dict__["_order"].__set__


def make_greedy_result(delta, scores, critical, residual) -> GreedyResult:
    """Build a GreedyResult without going through the (blocked) ``__setattr__``."""
    r = _NEW(GreedyResult)
    _SET_DELTA(r, delta)
    _SET_SCORES(r, scores)
    _SET_CRITICAL(r, critical)
    _SET_RESIDUAL(r, residual)
    _SET_ORDER(r, None)
    return r
