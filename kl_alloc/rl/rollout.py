"""Collect ``rollout_length`` steps from every env copy: ONE batched policy forward per agent per
step across all copies, under ``torch.no_grad``, in float32.

Episodes run across iteration boundaries (the collector keeps the current observations), and
the env resets finished copies itself (see :mod:`kl_alloc.envs.base`). Optional running
observation normalisation (per agent, and for the global state) is updated as data arrives;
stored observations are the normalised ones the policies actually saw.

Envs with action masks or agents that leave an episode early (``env.action_masks()`` /
``env.active_agents()``, see :mod:`kl_alloc.envs.base`) also get, per agent, the masks the
policy sampled under and a per-sample validity flag (the agent was still in the episode); the
observation normaliser of an agent only sees its valid samples. Envs without them take exactly
the code path they always took.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kl_alloc.envs.base import MultiAgentEnv
from kl_alloc.rl.normalization import RunningMeanStd
from kl_alloc.rl.policies import Policy, actions_to_numpy


def _aligned(array: np.ndarray) -> torch.Tensor:
    """A C-contiguous float32 tensor in torch's own (64-byte aligned) memory.

    MKL's small matrix products round differently depending on the input's layout (the env
    may hand over Fortran-ordered or strided views; elementwise numpy ops keep that order) and
    its alignment (numpy buffers: 16 bytes at best). A network fed such memory gives last-bit
    differences between an uninterrupted run and a resumed one, which then drift apart."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).clone()


@dataclass
class Rollout:
    """One iteration's data. Per-agent tensors are flattened over (T, N) -> T * N samples in
    time-major order; the (T, N) numpy arrays keep the layout GAE needs."""

    obs: list[torch.Tensor]  # agent i: (T*N, obs_size_i)
    actions: list[torch.Tensor]  # agent i: (T*N,) int64 or (T*N, dim) float32
    log_probs: list[torch.Tensor]  # agent i: (T*N,) log pi_old(a_i | o_i)
    states: torch.Tensor  # (T*N, state_size), normalised if enabled
    last_states: torch.Tensor  # (N, state_size): where the next rollout starts
    rewards: np.ndarray  # (T, N) float64
    terminated: np.ndarray  # (T, N) bool
    truncated: np.ndarray  # (T, N) bool
    truncated_at: np.ndarray  # (K, 2) [t, j] of truncated steps
    truncated_states: torch.Tensor  # (K, state_size): final states of those steps
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    #: agent i: (T*N, n) bool allowed actions, or None (no masks)
    action_masks: list[torch.Tensor | None] | None = None
    #: agent i: (T*N,) bool, False where the agent had left its episode; None: all valid
    valid: list[torch.Tensor | None] | None = None

    @property
    def num_samples(self) -> int:
        return int(self.rewards.size)


class RolloutCollector:
    """Owns the env's current observations, the per-copy episode accumulators and the optional
    observation normalisers."""

    def __init__(
        self,
        env: MultiAgentEnv,
        policies: list[Policy],
        normalize_obs: bool = False,
        obs_clip: float = 10.0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.env = env
        self.policies = policies
        self.device = torch.device(device)
        self.obs_norms: list[RunningMeanStd] | None = None
        self.state_norm: RunningMeanStd | None = None
        if normalize_obs:
            self.obs_norms = [RunningMeanStd((o,), clip=obs_clip) for o in env.obs_sizes]
            self.state_norm = RunningMeanStd((env.state_size,), clip=obs_clip)
        self._obs: list[np.ndarray] | None = None
        self._state: np.ndarray | None = None
        self._masks: list[np.ndarray | None] | None = None
        self._active: np.ndarray | None = None
        self._ep_return = np.zeros(env.num_envs, np.float64)
        self._ep_len = np.zeros(env.num_envs, np.int64)

    def reset(self, seed: int | None) -> None:
        """Reset the env and the episode accumulators (the normalisers keep their statistics)."""
        self._obs, self._state = self.env.reset(seed=seed)
        self._read_masks()
        self._ep_return[:] = 0.0
        self._ep_len[:] = 0

    def _read_masks(self) -> None:
        masks = getattr(self.env, "action_masks", lambda: None)()
        self._masks = None if masks is None or all(m is None for m in masks) else masks
        self._active = getattr(self.env, "active_agents", lambda: None)()

    def masks_tensor(self, i: int, masks: list[np.ndarray | None] | None) -> torch.Tensor | None:
        if masks is None or masks[i] is None:
            return None
        return torch.from_numpy(np.ascontiguousarray(masks[i], dtype=bool))

    # -- normalisation --------------------------------------------------------------------------
    def _norm_obs(self, i: int, raw: np.ndarray, update: bool) -> np.ndarray:
        if self.obs_norms is None:
            return np.asarray(raw, np.float32)
        if update:
            self.obs_norms[i].update(raw)
        return self.obs_norms[i].normalize(raw)

    def norm_state(self, raw: np.ndarray, update: bool = False) -> np.ndarray:
        if self.state_norm is None:
            return np.asarray(raw, np.float32)
        if update:
            self.state_norm.update(raw)
        return self.state_norm.normalize(raw)

    def policy_obs(self, obs: list[np.ndarray]) -> list[torch.Tensor]:
        """Observations as the policies see them, without updating the statistics (evaluation)."""
        return [self._to(self._norm_obs(i, o, False)) for i, o in enumerate(obs)]

    def _to(self, array: np.ndarray) -> torch.Tensor:
        """``_aligned`` on the learner's device."""
        return _aligned(array).to(self.device)

    # -- collection -----------------------------------------------------------------------------
    @torch.no_grad()
    def collect(self, horizon: int, generator: torch.Generator) -> Rollout:
        if self._obs is None:
            raise RuntimeError("call reset(seed) before collect()")
        env, n = self.env, self.env.num_envs
        specs = env.action_specs
        dev = self.device
        obs_buf = [torch.empty(horizon, n, o, device=dev) for o in env.obs_sizes]
        act_buf = [
            torch.empty(horizon, n, dtype=torch.int64, device=dev)
            if s.is_discrete
            else torch.empty(horizon, n, s.dim, device=dev)
            for s in specs
        ]
        logp_buf = [torch.empty(horizon, n, device=dev) for _ in specs]
        state_buf = torch.empty(horizon, n, env.state_size, device=dev)
        rewards = np.empty((horizon, n), np.float64)
        terminated = np.empty((horizon, n), bool)
        truncated = np.empty((horizon, n), bool)
        trunc_at: list[np.ndarray] = []
        trunc_states: list[np.ndarray] = []
        ep_returns: list[float] = []
        ep_lengths: list[int] = []
        masked = self._masks is not None
        mask_buf = [
            torch.empty(horizon, n, s.n, dtype=torch.bool)
            if masked and self._masks[i] is not None
            else None
            for i, s in enumerate(specs)
        ]
        valid_buf = None if self._active is None else np.empty((horizon, n, env.n_agents), bool)

        for t in range(horizon):
            state_buf[t] = torch.from_numpy(self.norm_state(self._state, update=True))
            if valid_buf is not None:
                valid_buf[t] = self._active
            actions = []
            for i, policy in enumerate(self.policies):
                if valid_buf is None:
                    o = self._to(self._norm_obs(i, self._obs[i], update=True))
                else:
                    alive = self._active[:, i]
                    if self.obs_norms is not None and alive.any():
                        self.obs_norms[i].update(self._obs[i][alive])
                    o = self._to(self._norm_obs(i, self._obs[i], update=False))
                obs_buf[i][t] = o
                if mask_buf[i] is not None:
                    m = self.masks_tensor(i, self._masks)
                    mask_buf[i][t] = m
                    dist = policy.dist(o, m)
                else:
                    dist = policy.dist(o)
                a = dist.sample(n, generator)
                act_buf[i][t] = a
                logp_buf[i][t] = dist.log_prob(a)
                actions.append(actions_to_numpy(a, specs[i]))
            res = env.step(actions)
            rewards[t] = res.reward
            terminated[t] = res.terminated
            truncated[t] = res.truncated & ~res.terminated
            self._ep_return += res.reward
            self._ep_len += 1
            done = res.terminated | res.truncated
            if done.any():
                idx = np.flatnonzero(done)
                ep_returns.extend(self._ep_return[idx].tolist())
                ep_lengths.extend(self._ep_len[idx].tolist())
                self._ep_return[idx] = 0.0
                self._ep_len[idx] = 0
            if truncated[t].any():
                idx = np.flatnonzero(truncated[t])
                trunc_at.append(np.stack([np.full(idx.size, t), idx], axis=1))
                trunc_states.append(self.norm_state(res.final_state[idx]))
            self._obs, self._state = res.obs, res.state
            if masked or valid_buf is not None:
                self._read_masks()

        s = env.state_size
        return Rollout(
            obs=[b.reshape(horizon * n, -1) for b in obs_buf],
            actions=[
                b.reshape(horizon * n) if sp.is_discrete else b.reshape(horizon * n, sp.dim)
                for b, sp in zip(act_buf, specs, strict=True)
            ],
            log_probs=[b.reshape(horizon * n) for b in logp_buf],
            states=state_buf.reshape(horizon * n, s),
            last_states=self._to(self.norm_state(self._state)),
            rewards=rewards,
            terminated=terminated,
            truncated=truncated,
            truncated_at=np.concatenate(trunc_at) if trunc_at else np.zeros((0, 2), np.int64),
            truncated_states=self._to(
                np.concatenate(trunc_states) if trunc_states else np.zeros((0, s), np.float32)
            ),
            episode_returns=ep_returns,
            episode_lengths=ep_lengths,
            action_masks=None
            if not masked
            else [None if b is None else b.reshape(horizon * n, -1) for b in mask_buf],
            valid=None
            if valid_buf is None
            else [
                torch.from_numpy(valid_buf[:, :, i].reshape(horizon * n).copy())
                for i in range(env.n_agents)
            ],
        )

    # -- checkpointing --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "obs": None if self._obs is None else [o.copy() for o in self._obs],
            "state": None if self._state is None else self._state.copy(),
            "ep_return": self._ep_return.copy(),
            "ep_len": self._ep_len.copy(),
            "obs_norms": None
            if self.obs_norms is None
            else [m.state_dict() for m in self.obs_norms],
            "state_norm": None if self.state_norm is None else self.state_norm.state_dict(),
            "masks": None if self._masks is None else [None if m is None else m.copy()
                                                       for m in self._masks],
            "active": None if self._active is None else self._active.copy(),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._obs = None if state["obs"] is None else [np.array(o) for o in state["obs"]]
        self._state = None if state["state"] is None else np.array(state["state"])
        self._ep_return = np.array(state["ep_return"], np.float64)
        self._ep_len = np.array(state["ep_len"], np.int64)
        masks = state.get("masks")
        self._masks = None if masks is None else [None if m is None else np.array(m) for m in masks]
        active = state.get("active")
        self._active = None if active is None else np.array(active, bool)
        if self.obs_norms is not None and state.get("obs_norms") is not None:
            for m, s in zip(self.obs_norms, state["obs_norms"], strict=True):
                m.load_state_dict(s)
        if self.state_norm is not None and state.get("state_norm") is not None:
            self.state_norm.load_state_dict(state["state_norm"])
