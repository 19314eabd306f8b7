"""A user's own PettingZoo ParallelEnv, outside the package, plugged in as
``--env my_pz:make_env`` (no kl_alloc code: ``make_env`` returns the PettingZoo env).

Two agents of different kinds, 6 steps per episode (then truncated by the time limit):

- ``mover``: sees a target t in [-1, 1]^2, acts in Box([-2, 2]^2) and is paid -|a - 2t|^2 / 4
  (so it must use the whole box: the adapter rescales the policy's [-1, 1] output to it);
- ``picker``: sees which of 4 items is the good one (one-hot) in a Dict observation with an
  ``action_mask`` that forbids one other item; paid 1 for the good item. Picking a masked item
  raises (the adapter must respect masks). It leaves (terminates) after step 3, and acting
  after it left raises too.

No ``state()``: the critic gets the concatenated observations.
"""

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

EPISODE = 6
PICKER_STEPS = 3


class MoverPicker(ParallelEnv):
    metadata = {"name": "mover_picker_v0"}

    def __init__(self):
        self.possible_agents = ["mover", "picker"]
        self.agents = []
        self._rng = np.random.default_rng()

    def observation_space(self, agent):
        if agent == "mover":
            return spaces.Box(-1.0, 1.0, (2,), np.float32)
        return spaces.Dict(
            {
                "observation": spaces.Box(0.0, 1.0, (4,), np.float32),
                "action_mask": spaces.MultiBinary(4),
            }
        )

    def action_space(self, agent):
        if agent == "mover":
            return spaces.Box(-2.0, 2.0, (2,), np.float32)
        return spaces.Discrete(4)

    def _observe(self):
        self._target = self._rng.uniform(-1, 1, 2).astype(np.float32)
        self._good = int(self._rng.integers(4))
        self._banned = int((self._good + 1 + self._rng.integers(3)) % 4)
        one_hot = np.zeros(4, np.float32)
        one_hot[self._good] = 1.0
        mask = np.ones(4, np.int8)
        mask[self._banned] = 0
        obs = {"mover": self._target.copy()}
        if "picker" in self.agents:
            obs["picker"] = {"observation": one_hot, "action_mask": mask}
        return obs

    def reset(self, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._t = 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions):
        if set(actions) != set(self.agents):
            raise ValueError(f"actions for {sorted(actions)}, but the agents are {self.agents}")
        a = np.asarray(actions["mover"], np.float64)
        if a.shape != (2,) or np.any(np.abs(a) > 2.0):
            raise ValueError(f"mover action out of its box: {a}")
        rewards = {"mover": -float(np.sum((a - 2 * self._target) ** 2)) / 4.0}
        if "picker" in self.agents:
            pick = int(actions["picker"])
            if pick == self._banned:
                raise ValueError(f"picker chose the masked item {pick}")
            rewards["picker"] = float(pick == self._good)
        self._t += 1
        terms = {a: a == "picker" and self._t >= PICKER_STEPS for a in self.agents}
        truncs = {a: self._t >= EPISODE for a in self.agents}
        infos = {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        return self._observe(), rewards, terms, truncs, infos


def make_env():
    return MoverPicker()


make_env.default_steps = 4_608  # 12 iterations of 16 x 24
make_env.preset = {
    "num_envs": 16,
    "rollout_length": 24,
    "hidden": (32,),
    "critic_hidden": (32,),
    "delta": 0.05,
    "checkpoint_every": 5,
    "eval_every": 5,
    "eval_episodes": 4,
}
