"""The built-in MPE2 tasks (``pip install "kl_alloc[mpe]"``): PettingZoo's multi-particle
environments, now in the ``mpe2`` package, through :class:`~kl_alloc.envs.pettingzoo.PettingZooEnv`.

Discrete actions (the scenarios' own default, ``Discrete(5)``: no-op and four pushes; the
speaker's ``Discrete(3)`` is its message): the MPE results HARL and MAPPO report on these two
tasks use them, and a categorical policy needs no bound rescaling. ``continuous_actions=True``
works too (Box [0, 1] actions, rescaled by the adapter). Sizes (measured with mpe2 1.1.1):

======================================  ==============================  ===================
task                                    obs per agent                   actions / state
======================================  ==============================  ===================
``simple_spread_v3`` (N=3)              18 each                         Discrete(5) each; 54
``simple_speaker_listener_v4``          speaker 3, listener 11          Discrete(3), (5); 14
======================================  ==============================  ===================

Speed (the same numbers, bit for bit, as ``mpe2.<task>.parallel_env``): each copy is the
scenario's ``raw_env`` under PettingZoo's ``aec_to_parallel`` alone, without the checking
wrappers mpe2 adds (``OrderEnforcingWrapper``: reset before step and render, which the adapter
enforces; ``AssertOutOfBoundsWrapper`` / ``ClipOutOfBoundsWrapper``: the action in its space,
which the adapter's checks and rescaling already guarantee), and the global state is the agents'
observations concatenated, which is what mpe2's ``state()`` returns (``state="obs"``: not
computed a second time; checked once on the first copy, with a warning and ``state()`` if an
mpe2 version ever returns something else). Together they cut the env's time per step by a
third (spread) to a half (speaker-listener) (``benchmarks/mpe_step.py``).

Every agent gets the same team reward in both (``reward_reduce="mean"`` returns it as is);
episodes are ``max_cycles`` = 25 steps, cut by the time limit (truncation). ``copy_offset``: see
:class:`~kl_alloc.envs.pettingzoo.PettingZooEnv` (env worker processes).
``render_mode="rgb_array"``: 700 x 700 pictures at the scenarios' 10 frames per second
(``kl-alloc evaluate --video``).
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import Any

import numpy as np

from kl_alloc.envs.pettingzoo import PettingZooEnv
from kl_alloc.rundir import dist_version

__all__ = ["MPE_PRESET", "simple_speaker_listener_v4", "simple_spread_v3"]

logger = logging.getLogger("kl_alloc.envs")

INSTALL_HINT = 'the MPE tasks need mpe2: pip install "kl_alloc[mpe]"'

#: TrainerConfig overrides of the MPE tasks (see docs/envs.md for the learning numbers)
MPE_PRESET: dict[str, Any] = dict(
    num_envs=16,
    rollout_length=50,
    hidden=(64, 64),
    critic_hidden=(64, 64),
    normalize_obs=True,
    normalize_values=True,
    eval_every=10,
    eval_episodes=8,
    checkpoint_every=10,
)


def _module(task: str):
    try:
        return importlib.import_module(f"mpe2.{task}")
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err


def _bare_parallel_env(task: str, **kwargs: Any):
    """``mpe2.<task>.parallel_env(**kwargs)`` without its checking wrappers (module docstring)."""
    from pettingzoo.utils.conversions import aec_to_parallel

    return aec_to_parallel(_module(task).raw_env(**kwargs))


def _state_is_obs(env: Any) -> bool:
    """Whether ``env.state()`` is the agents' observations concatenated (after a reset)."""
    obs, _ = env.reset(seed=0)
    if set(obs) != set(env.possible_agents):
        return False
    parts = [np.asarray(obs[a], np.float32).reshape(-1) for a in env.possible_agents]
    state = np.asarray(env.state(), np.float32).reshape(-1)
    return bool(np.array_equal(np.concatenate(parts), state))


def _mpe_env(task: str, num_envs, seed, kwargs, reward_reduce, copy_offset, render_mode):
    env_fn = functools.partial(_bare_parallel_env, task)
    first = env_fn(**kwargs, **({} if render_mode is None else {"render_mode": render_mode}))
    state = "obs"
    if not _state_is_obs(first):  # the PettingZooEnv resets every copy with its own seeds
        logger.warning(
            "mpe2 %s: %s's state() is not the agents' observations concatenated; the critic "
            "gets state() (the MPE fast path assumed it was)", dist_version("mpe2") or "?", task,
        )  # fmt: skip
        state = "auto"
    return PettingZooEnv(
        env_fn, num_envs, seed, kwargs, reward_reduce, first=first,
        copy_offset=copy_offset, render_mode=render_mode, state=state,
    )  # fmt: skip


def simple_spread_v3(
    num_envs: int = 16,
    seed: int | None = None,
    N: int = 3,  # noqa: N803 (the scenario's own keyword)
    local_ratio: float = 0.5,
    max_cycles: int = 25,
    continuous_actions: bool = False,
    reward_reduce: str = "mean",
    copy_offset: int = 0,
    render_mode: str | None = None,
) -> PettingZooEnv:
    """N agents cover N landmarks without colliding (homogeneous agents)."""
    kwargs = dict(N=int(N), local_ratio=float(local_ratio), max_cycles=int(max_cycles),
                  continuous_actions=bool(continuous_actions))  # fmt: skip
    return _mpe_env("simple_spread_v3", num_envs, seed, kwargs, reward_reduce, copy_offset,
                    render_mode)  # fmt: skip


def simple_speaker_listener_v4(
    num_envs: int = 16,
    seed: int | None = None,
    max_cycles: int = 25,
    continuous_actions: bool = False,
    reward_reduce: str = "mean",
    copy_offset: int = 0,
    render_mode: str | None = None,
) -> PettingZooEnv:
    """A speaker that sees the goal colour tells a listener that moves (heterogeneous agents)."""
    kwargs = dict(max_cycles=int(max_cycles), continuous_actions=bool(continuous_actions))
    return _mpe_env("simple_speaker_listener_v4", num_envs, seed, kwargs, reward_reduce,
                    copy_offset, render_mode)  # fmt: skip
