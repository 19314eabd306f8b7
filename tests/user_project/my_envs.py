"""A user's own environment, outside the package: each agent sees a random target in [-1, 1]^2
and is paid for hitting it; the team reward is minus the mean squared miss (one step per
episode). Plugged in as ``--env my_envs:make_env``."""

import numpy as np

from kl_alloc.envs.base import ActionSpec, MultiAgentEnv, StepResult, check_actions


class TargetGame(MultiAgentEnv):
    def __init__(self, num_envs: int = 256, n_agents: int = 2, seed: int | None = None):
        self.num_envs, self.n_agents = int(num_envs), int(n_agents)
        self.obs_sizes = [2] * self.n_agents
        self.state_size = 2 * self.n_agents
        self.action_specs = [ActionSpec.continuous(2) for _ in range(self.n_agents)]
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._targets = None

    def _draw(self):
        self._targets = self._rng.uniform(-1, 1, size=(self.n_agents, self.num_envs, 2))
        obs = [t.copy() for t in self._targets]
        return obs, np.concatenate(obs, axis=1)

    def reset(self, seed=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        return self._draw()

    def step(self, actions):
        actions = check_actions(self, actions)
        pairs = zip(actions, self._targets, strict=True)
        miss = np.mean([np.sum((a - t) ** 2, axis=1) for a, t in pairs], axis=0)
        final_obs = [t.copy() for t in self._targets]
        final_state = np.concatenate(final_obs, axis=1)
        obs, state = self._draw()
        done = np.ones(self.num_envs, dtype=bool)
        return StepResult(obs, state, -miss, done, np.zeros_like(done), final_obs, final_state)

    def state_dict(self):
        return {"rng": self._rng.bit_generator.state, "targets": self._targets}

    def load_state_dict(self, state):
        self._rng.bit_generator.state = state["rng"]
        self._targets = state["targets"]


def make_env(num_envs: int = 256, n_agents: int = 2, seed: int | None = None) -> TargetGame:
    return TargetGame(num_envs=num_envs, n_agents=n_agents, seed=seed)


make_env.default_steps = 20_000
make_env.preset = {"num_envs": 256, "rollout_length": 1, "hidden": (16,), "critic_hidden": (16,)}
