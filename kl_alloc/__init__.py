"""kl_alloc: adaptive KL trust-region budget allocation for multi-agent RL.

The solver core is importable without torch::

    from kl_alloc import water_fill, greedy_allocate, uniform_allocate
"""

from kl_alloc.solvers import (
    GreedyResult,
    UniformResult,
    WaterFillResult,
    greedy_allocate,
    uniform_allocate,
    water_fill,
)

__version__ = "0.1.0"

__all__ = [
    "GreedyResult",
    "UniformResult",
    "WaterFillResult",
    "__version__",
    "greedy_allocate",
    "uniform_allocate",
    "water_fill",
]
