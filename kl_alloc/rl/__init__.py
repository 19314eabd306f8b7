"""The thin torch layer: TRPO maths, per-agent policies, a centralised critic, GAE, the
allocators, the sequential HATRPO update and the training loop.

    from kl_alloc.envs import make_env
    from kl_alloc.rl import Trainer

    Trainer(make_env("matrix", num_envs=4000), algo="hatrpo-w").learn(200_000)

What a run writes, and the readers, are in :mod:`kl_alloc.rundir` (torch-free). The names below
are loaded on first use (PEP 562): importing one module of the package (e.g.
:mod:`kl_alloc.rl.export`, to load an exported policy) does not import the trainer, the
allocators or numba.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_NAMES = {
    "make_allocator": "kl_alloc.methods",  # a method name -> its allocator, for a config
    "Allocation": "kl_alloc.rl.allocators",
    "AllocationError": "kl_alloc.rl.allocators",
    "AllocationSignals": "kl_alloc.rl.allocators",
    "Allocator": "kl_alloc.rl.allocators",
    "BudgetTracker": "kl_alloc.rl.allocators",
    "GreedyAllocator": "kl_alloc.rl.allocators",
    "UniformAllocator": "kl_alloc.rl.allocators",
    "WaterFillAllocator": "kl_alloc.rl.allocators",
    "TrainerConfig": "kl_alloc.rl.config",
    "Trainer": "kl_alloc.rl.trainer",
    "load_policy": "kl_alloc.rl.export",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'kl_alloc.rl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))
