"""Deterministic evaluation: play the mode (discrete) / mean (continuous) action of every
agent's policy for a number of whole episodes on a separate env.

Every env copy plays the same number of episodes, and the first ``episodes`` of those are kept:
counting "the first episodes to finish" instead would favour short (often bad) episodes.
Action masks (``env.action_masks()``) hold here too: the mode is over the allowed actions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from kl_alloc.envs.base import MultiAgentEnv
from kl_alloc.rl.policies import Policy, actions_to_numpy


def default_eval_seed(run_seed: int, iteration: int) -> int:
    """The evaluation env's seed when none is given: ``SeedSequence([run_seed, iteration, 7])``'s
    first word (a fresh but reproducible seed at every iteration)."""
    return int(np.random.SeedSequence([int(run_seed), int(iteration), 7]).generate_state(1)[0])


@torch.no_grad()
def deterministic_actions(
    env: MultiAgentEnv,
    policies: list[Policy],
    policy_obs: Callable[[list[np.ndarray]], list[torch.Tensor]],
    obs: list[np.ndarray],
) -> list[np.ndarray]:
    """Every agent's mode (discrete, over the allowed actions) / mean (continuous) action for
    the env's current observations ``obs``, one row per copy."""
    n = env.num_envs
    masks = getattr(env, "action_masks", lambda: None)() or [None] * len(policies)
    return [
        actions_to_numpy((p.dist(o) if m is None else p.dist(o, torch.from_numpy(m))).mode(n), spec)
        for p, o, m, spec in zip(policies, policy_obs(obs), masks, env.action_specs, strict=True)
    ]


@torch.no_grad()
def deterministic_returns(
    env: MultiAgentEnv,
    policies: list[Policy],
    policy_obs: Callable[[list[np.ndarray]], list[torch.Tensor]],
    episodes: int,
    seed: int,
    max_steps: int = 1_000_000,
) -> list[float]:
    """Returns of ``episodes`` deterministic episodes; ``policy_obs`` maps raw observations to
    what the policies see (e.g. frozen observation normalisation)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    n = env.num_envs
    per_copy = math.ceil(episodes / n)
    obs, _ = env.reset(seed=seed)
    returns: list[list[float]] = [[] for _ in range(n)]
    acc = np.zeros(n)
    for _ in range(max_steps):
        if min(len(r) for r in returns) >= per_copy:
            break
        res = env.step(deterministic_actions(env, policies, policy_obs, obs))
        acc += res.reward
        for j in np.flatnonzero(res.terminated | res.truncated):
            returns[j].append(float(acc[j]))
            acc[j] = 0.0
        obs = res.obs
    else:
        raise RuntimeError(f"evaluate: episodes did not end within {max_steps} steps")
    return [r for copy_returns in returns for r in copy_returns[:per_copy]][:episodes]
