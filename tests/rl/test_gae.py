"""GAE: the numba kernel against a pure-Python reference, and the trainer's bootstrapping
(V(final_state) on truncation, nothing on termination) on a toy env with a time limit."""

import numpy as np
import pytest
import torch

from kl_alloc.envs.base import ActionSpec, MultiAgentEnv, StepResult, check_actions
from kl_alloc.rl import Trainer, TrainerConfig
from kl_alloc.rl.gae import compute_gae, normalize_advantages


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    horizon, n = rewards.shape
    adv = np.zeros((horizon, n))
    for j in range(n):
        running = 0.0
        for t in reversed(range(horizon)):
            if terminated[t, j]:
                delta = rewards[t, j] - values[t, j]
                running = delta
            elif truncated[t, j]:
                delta = rewards[t, j] + gamma * next_values[t, j] - values[t, j]
                running = delta
            else:
                delta = rewards[t, j] + gamma * next_values[t, j] - values[t, j]
                running = delta + gamma * lam * running
            adv[t, j] = running
    return adv, adv + values


@pytest.mark.parametrize("seed", range(5))
def test_gae_matches_reference(seed):
    rng = np.random.default_rng(seed)
    horizon, n = 17, 5
    rewards = rng.normal(size=(horizon, n))
    values = rng.normal(size=(horizon, n))
    next_values = rng.normal(size=(horizon, n))
    terminated = rng.random((horizon, n)) < 0.15
    truncated = (rng.random((horizon, n)) < 0.15) & ~terminated
    gamma, lam = 0.97, 0.9
    adv, ret = compute_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    ref_adv, ref_ret = reference_gae(
        rewards, values, next_values, terminated, truncated, gamma, lam
    )
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-12, atol=1e-12)


def test_gae_termination_ignores_bootstrap_truncation_uses_it():
    r = np.array([[1.0], [1.0]])
    v = np.zeros((2, 1))
    nv = np.array([[5.0], [7.0]])
    term = np.array([[False], [True]])
    adv, _ = compute_gae(r, v, nv, term, np.zeros_like(term), 0.5, 1.0)
    assert adv[1, 0] == 1.0  # terminated: no V(next)
    assert adv[0, 0] == pytest.approx(1.0 + 0.5 * 5.0 + 0.5 * 1.0 * 1.0)
    trunc = np.array([[True], [False]])
    adv, _ = compute_gae(r, v, nv, np.zeros_like(trunc), trunc, 0.5, 1.0)
    assert adv[0, 0] == pytest.approx(1.0 + 0.5 * 5.0)  # truncated: bootstrap, no carry


def test_gae_validates_shapes():
    with pytest.raises(ValueError, match="values"):
        compute_gae(
            np.zeros((3, 2)),
            np.zeros((3, 3)),
            np.zeros((3, 2)),
            np.zeros((3, 2), bool),
            np.zeros((3, 2), bool),
            0.9,
            0.9,
        )


def test_normalize_advantages():
    a = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 4))
    z = normalize_advantages(a)
    assert abs(z.mean()) < 1e-12 and z.std() == pytest.approx(1.0, rel=1e-6)


class TimeLimitEnv(MultiAgentEnv):
    """One agent walks a counter; state = (counter,). Episodes terminate when the agent picks
    action 1 and are truncated after ``limit`` steps; final_state differs from the reset state."""

    def __init__(self, num_envs=3, limit=3, seed=None):
        self.n_agents, self.num_envs, self.limit = 1, num_envs, limit
        self.obs_sizes, self.state_size = [1], 1
        self.action_specs = [ActionSpec.discrete(2)]
        self.t = np.zeros(num_envs)

    def _obs(self):
        s = (self.t[:, None] + 1.0).astype(np.float32)
        return [s.copy()], s.copy()

    def reset(self, seed=None):
        self.t[:] = 0
        return self._obs()

    def state_dict(self):
        return {"t": self.t.copy()}

    def load_state_dict(self, state):
        self.t = state["t"].copy()

    def step(self, actions):
        (a,) = check_actions(self, actions)
        self.t += 1
        terminated = a == 1
        truncated = (self.t >= self.limit) & ~terminated
        final_obs, final_state = self._obs()
        self.t[terminated | truncated] = 0
        obs, state = self._obs()
        return StepResult(
            obs, state, self.t * 0 + 1.0, terminated, truncated, final_obs, final_state
        )


def test_trainer_bootstraps_truncation_from_final_state():
    cfg = TrainerConfig(
        num_envs=3, rollout_length=7, hidden=(4,), critic_hidden=(4,), gamma=0.9, gae_lambda=0.8
    )
    trainer = Trainer(TimeLimitEnv(), algo="hatrpo", config=cfg, seed=0)
    trainer.collector.reset(0)
    rollout = trainer.collector.collect(cfg.rollout_length, trainer.generator)
    assert rollout.truncated.any() and rollout.terminated.any()
    adv, _ = trainer.advantages(rollout)

    def value(state_rows):
        return trainer.critic.values(torch.as_tensor(np.asarray(state_rows, np.float32)))

    horizon, n = rollout.rewards.shape
    states = rollout.states.numpy().reshape(horizon, n, 1)
    values = value(states.reshape(-1, 1)).reshape(horizon, n)
    next_values = np.zeros((horizon, n))
    for t in range(horizon):
        for j in range(n):
            if rollout.truncated[t, j]:
                # the episode's last state: counter == limit (the state before reset)
                next_values[t, j] = value([[trainer.env.limit + 1.0]])[0]
            elif t + 1 < horizon:
                next_values[t, j] = values[t + 1, j]
            else:
                next_values[t, j] = value(rollout.last_states.numpy()[j : j + 1])[0]
    ref, _ = reference_gae(
        rollout.rewards, values, next_values, rollout.terminated, rollout.truncated, 0.9, 0.8
    )
    np.testing.assert_allclose(adv, ref, rtol=1e-6, atol=1e-6)
