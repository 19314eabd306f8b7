"""The thin torch layer: TRPO maths, per-agent policies, a centralised critic, GAE, the
allocators, the sequential HATRPO update and the training loop.

    from kl_alloc.envs import make_env
    from kl_alloc.rl import Trainer

    Trainer(make_env("matrix", num_envs=4000), algo="hatrpo-w").learn(200_000)

What a run writes, and the readers, are in :mod:`kl_alloc.rundir` (torch-free).
"""

from kl_alloc.methods import make_allocator  # a method name -> its allocator, for a config
from kl_alloc.rl.allocators import (
    AllocationSignals,
    Allocator,
    BudgetTracker,
    GreedyAllocator,
    UniformAllocator,
    WaterFillAllocator,
)
from kl_alloc.rl.config import TrainerConfig
from kl_alloc.rl.trainer import Trainer

__all__ = [
    "AllocationSignals",
    "Allocator",
    "BudgetTracker",
    "GreedyAllocator",
    "Trainer",
    "TrainerConfig",
    "UniformAllocator",
    "WaterFillAllocator",
    "make_allocator",
]
