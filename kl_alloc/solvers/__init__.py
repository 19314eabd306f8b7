"""The solver core: numba kernels and their validated public wrappers (no torch, no RL).

- ``water_fill``: KKT water-filling, ``delta_i = clip(w_i*mu - c_i, lo_i, hi_i)``, sum = total.
- ``greedy_allocate``: fractional-knapsack greedy by ``L_i / (D_i + eps)``.
- ``uniform_allocate``: ``delta_i = total / n``.
"""

from kl_alloc.solvers.greedy import greedy_allocate
from kl_alloc.solvers.results import GreedyResult, UniformResult, WaterFillResult
from kl_alloc.solvers.uniform import uniform_allocate
from kl_alloc.solvers.water_fill import water_fill

__all__ = [
    "GreedyResult",
    "UniformResult",
    "WaterFillResult",
    "greedy_allocate",
    "uniform_allocate",
    "water_fill",
]
