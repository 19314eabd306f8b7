"""A name -> environment registry, so entry points stay generic (HARL-style, minus the eval()).

    env = make_env("matrix", num_envs=4000, seed=0, action_counts=(2, 3, 5, 8))

Entries are factories or lazy ``"module:attribute"`` strings, so registering an environment
costs nothing until it is made (MaMuJoCo pulls in MuJoCo and Gymnasium only when used).
:func:`make_env` records ``env.spec = {"name": ..., "kwargs": ...}`` on the made env: the trainer
writes it to ``config.json`` and uses it to rebuild the env for evaluation and ``resume``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from kl_alloc.envs.base import MultiAgentEnv

EnvFactory = Callable[..., MultiAgentEnv]

_REGISTRY: dict[str, EnvFactory | str] = {}


def register(name: str, factory: EnvFactory | str, *, overwrite: bool = False) -> None:
    """Register ``factory`` (a callable or a lazy ``"package.module:attr"``) under ``name``."""
    if not overwrite and name in _REGISTRY:
        raise ValueError(f"name: environment {name!r} is already registered")
    if isinstance(factory, str) and ":" not in factory:
        raise ValueError(f"factory: lazy entries look like 'package.module:attr', got {factory!r}")
    _REGISTRY[name] = factory


def available_envs() -> list[str]:
    return sorted(_REGISTRY)


def _resolve(name: str) -> EnvFactory:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"name: unknown environment {name!r}; known: {available_envs()}") from None
    if isinstance(factory, str):
        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory


def make_env(
    name: str, num_envs: int | None = None, seed: int | None = None, **kwargs: Any
) -> MultiAgentEnv:
    """Build a registered environment; ``num_envs``/``seed`` are passed on when given."""
    factory = _resolve(name)
    full = dict(kwargs)
    if num_envs is not None:
        full["num_envs"] = int(num_envs)
    if seed is not None:
        full["seed"] = int(seed)
    env = factory(**full)
    env.spec = {"name": name, "kwargs": {k: v for k, v in full.items() if k != "seed"}}
    return env


def env_spec(env: MultiAgentEnv) -> dict[str, Any] | None:
    """The ``{"name", "kwargs"}`` an env was made with by :func:`make_env`, else ``None``."""
    spec = getattr(env, "spec", None)
    return dict(spec) if isinstance(spec, dict) and "name" in spec else None


register("matrix", "kl_alloc.envs.matrix_game:MatrixGame")
register("differential", "kl_alloc.envs.differential_game:DifferentialGame")
# make_env("mamujoco", num_envs=20, seed=0, scenario="Ant", agent_conf="2x4")
register("mamujoco", "kl_alloc.envs.mamujoco:MaMuJoCoEnv")
