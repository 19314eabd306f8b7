"""kl_alloc: adaptive KL trust-region budget allocation for multi-agent RL.

The solver core is importable without torch::

    from kl_alloc import water_fill, greedy_allocate, uniform_allocate

A trained policy, exported with ``Trainer.export_policy`` or ``kl-alloc export``, loads with
torch alone::

    policy = kl_alloc.load_policy("policy.pt"); actions = policy.predict(obs)

The solver names are loaded on first use (PEP 562), so importing a torch- and numba-free part
of the package (an env, an env worker process, the run-directory format) does not pay for
numba's import.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "GreedyResult",
    "UniformResult",
    "WaterFillResult",
    "__version__",
    "greedy_allocate",
    "load_policy",
    "uniform_allocate",
    "water_fill",
]

_SOLVER_NAMES = frozenset(__all__) - {"__version__", "load_policy"}


def load_policy(path: Any, seed: int = 0) -> Any:
    """Load a policy file (``Trainer.export_policy`` / ``kl-alloc export``): an object with
    ``.predict(obs, deterministic=True)`` that needs torch only (see :mod:`kl_alloc.rl.export`)."""
    from kl_alloc.rl.export import load_policy as _load

    return _load(path, seed=seed)


def __getattr__(name: str) -> Any:
    if name in _SOLVER_NAMES:
        from kl_alloc import solvers

        return getattr(solvers, name)
    raise AttributeError(f"module 'kl_alloc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SOLVER_NAMES)
