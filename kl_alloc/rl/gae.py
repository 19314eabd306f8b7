"""Generalised advantage estimation (Schulman et al. 2016) over a (T, N) rollout, numba-compiled.

For step t of env copy j, with next_values[t] the value to bootstrap from:

    delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},   done = terminated | truncated

``next_values[t]`` is V(s_{t+1}) inside an episode, V(final_state) when the episode was TRUNCATED
at t (time limit: the future still counts), and ignored when it TERMINATED (no future). The
rollout builds it; this kernel only does the backward recursion. Returns are A + V (the critic's
regression targets, before advantages are normalised).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _gae_kernel(rewards, values, next_values, terminated, dones, gamma, lam, out):
    horizon, n = rewards.shape
    for j in range(n):
        last = 0.0
        for t in range(horizon - 1, -1, -1):
            bootstrap = 0.0 if terminated[t, j] else gamma * next_values[t, j]
            delta = rewards[t, j] + bootstrap - values[t, j]
            carry = 0.0 if dones[t, j] else gamma * lam * last
            last = delta + carry
            out[t, j] = last


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns, both float64 (T, N). All inputs are (T, N)."""
    rewards = np.ascontiguousarray(rewards, dtype=np.float64)
    shape = rewards.shape
    if rewards.ndim != 2:
        raise ValueError(f"rewards: expected shape (T, N), got {shape}")
    values = np.ascontiguousarray(values, dtype=np.float64)
    next_values = np.ascontiguousarray(next_values, dtype=np.float64)
    terminated = np.ascontiguousarray(terminated, dtype=np.bool_)
    dones = np.ascontiguousarray(terminated | np.asarray(truncated, dtype=np.bool_))
    for name, arr in (("values", values), ("next_values", next_values), ("dones", dones)):
        if arr.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    adv = np.empty(shape, np.float64)
    _gae_kernel(rewards, values, next_values, terminated, dones, float(gamma), float(lam), adv)
    return adv, adv + values


def normalize_advantages(adv: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """(A - mean) / (std + eps) over the whole batch, once per iteration."""
    return (adv - adv.mean()) / (adv.std() + eps)
