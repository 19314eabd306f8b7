"""The sparse heterogeneous matrix game (experiments.md section 1).

n agents, agent i picks one of K_i actions; the shared reward is ``payoff`` when every agent
picks its paying action, else 0. With the defaults K = (2, 3, 5, 8) and the all-zeros paying
joint action, 1 joint action in 240 pays. One step per episode, no observations, no state.

The expected reward of a factorised policy is exact:

    E[R] = payoff * prod_i pi_i(paying_i)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kl_alloc.envs.base import ActionSpec, MultiAgentEnv, StepResult, check_actions


class MatrixGame(MultiAgentEnv):
    """Vectorised one-step matrix game: ``num_envs`` independent plays per :meth:`step`.

    Args:
        num_envs: plays per step (the batch size of an iteration).
        action_counts: K_i per agent.
        paying_action: the one joint action that pays (default all zeros).
        payoff: its reward.
        seed: default seed for :meth:`reset` (the game itself has no randomness).
        copy_offset: the index of copy 0 in a larger env (:mod:`kl_alloc.envs.workers`); the
            game has no randomness, so no number depends on it.
    """

    def __init__(
        self,
        num_envs: int = 4000,
        action_counts: Sequence[int] = (2, 3, 5, 8),
        paying_action: Sequence[int] | None = None,
        payoff: float = 1.0,
        seed: int | None = None,
        copy_offset: int = 0,
    ) -> None:
        if int(copy_offset) < 0:
            raise ValueError(f"copy_offset must be >= 0, got {copy_offset}")
        counts = [int(k) for k in action_counts]
        if not counts or min(counts) < 1:
            raise ValueError(f"action_counts: need at least one agent, each K_i >= 1, got {counts}")
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        paying = [0] * len(counts) if paying_action is None else [int(a) for a in paying_action]
        if len(paying) != len(counts) or any(
            not 0 <= a < k for a, k in zip(paying, counts, strict=True)
        ):
            raise ValueError(
                f"paying_action: expected one index in [0, K_i) per agent, got {paying_action}"
            )
        if not np.isfinite(payoff):
            raise ValueError(f"payoff must be finite, got {payoff}")
        self.n_agents = len(counts)
        self.num_envs = int(num_envs)
        self.action_counts = counts
        self.paying_action = paying
        self.payoff = float(payoff)
        self.seed = seed
        self.obs_sizes = [0] * self.n_agents
        self.state_size = 0
        self.action_specs = [ActionSpec.discrete(k) for k in counts]
        self._empty_obs = [np.zeros((self.num_envs, 0), np.float32) for _ in counts]
        self._empty_state = np.zeros((self.num_envs, 0), np.float32)

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        return [o.copy() for o in self._empty_obs], self._empty_state.copy()

    def step(self, actions: list[np.ndarray]) -> StepResult:
        acts = check_actions(self, actions)
        pays = np.ones(self.num_envs, dtype=bool)
        for a, target in zip(acts, self.paying_action, strict=True):
            pays &= a == target
        reward = pays * self.payoff
        obs = [o.copy() for o in self._empty_obs]
        return StepResult(
            obs=obs,
            state=self._empty_state.copy(),
            reward=reward.astype(np.float64),
            terminated=np.ones(self.num_envs, dtype=bool),
            truncated=np.zeros(self.num_envs, dtype=bool),
            final_obs=[o.copy() for o in self._empty_obs],
            final_state=self._empty_state.copy(),
        )

    def expected_reward(self, policy_probs: Any) -> float:
        """Exact E[R] for per-agent action probabilities ``policy_probs[i]`` of shape (K_i,)."""
        if len(policy_probs) != self.n_agents:
            raise ValueError(
                f"policy_probs: expected {self.n_agents} agents' probabilities, "
                f"got {len(policy_probs)}"
            )
        p = 1.0
        for i, (probs, k, target) in enumerate(
            zip(policy_probs, self.action_counts, self.paying_action, strict=True)
        ):
            probs = np.asarray(probs, dtype=np.float64).reshape(-1)
            if probs.shape != (k,) or not np.all(np.isfinite(probs)):
                raise ValueError(f"policy_probs[{i}]: expected {k} finite probabilities")
            p *= float(probs[target])
        return self.payoff * p

    @property
    def max_reward(self) -> float:
        return max(self.payoff, 0.0)
