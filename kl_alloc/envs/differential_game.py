"""The two-peak differential game (experiments.md section 2).

n agents (default 2), each with one continuous scalar action. Actions are clipped to
[low, high] = [0, 7] before the reward is computed:

    R(a) = sum_p w_p * N(a; m_p, s_p) + sum_i tilt_i * a_i
    N(a; m, s) = exp(-0.5 * sum_i ((a_i - m_i) / s_i)^2) / ((2 pi)^(n/2) prod_i s_i)

Published defaults: a wide peak of weight 10 at (5, 5) with stds (1, 3), a narrow one of weight 5.3
at (1, 1) with stds (1, 1), and a tilt 0.1 on a1. The global maximum is about 1.04 near (5.2, 5.0);
a local maximum of about 0.95 sits near (1.1, 1.0).

:meth:`DifferentialGame.expected_reward` is EXACT for independent Gaussian policies
a_i ~ N(mu_i, sigma_i^2), including the clipping: the expectation factorises over agents, and
each factor is a Gaussian-times-Gaussian integral over [low, high] (closed form with the normal
CDF) plus the probability mass clipped onto each bound. With sigma_i = 0 it is R(clip(mu)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

from kl_alloc.envs.base import ActionSpec, MultiAgentEnv, StepResult, check_actions


@dataclass(frozen=True)
class Peak:
    """One Gaussian bump: ``weight * N(a; centre, std)`` with independent axes."""

    centre: tuple[float, ...]
    std: tuple[float, ...]
    weight: float


DEFAULT_PEAKS: tuple[Peak, ...] = (
    Peak(centre=(5.0, 5.0), std=(1.0, 3.0), weight=10.0),
    Peak(centre=(1.0, 1.0), std=(1.0, 1.0), weight=5.3),
)


def _as_peak(p: Any, n: int) -> Peak:
    if isinstance(p, dict):
        p = Peak(tuple(p["centre"]), tuple(p["std"]), float(p["weight"]))
    elif not isinstance(p, Peak):
        centre, std, weight = p
        p = Peak(tuple(centre), tuple(std), float(weight))
    centre = tuple(float(c) for c in p.centre)
    std = tuple(float(s) for s in p.std)
    if len(centre) != n or len(std) != n:
        raise ValueError(f"peaks: centre and std need {n} entries (one per agent), got {p}")
    if not all(np.isfinite(centre)) or not all(s > 0 and np.isfinite(s) for s in std):
        raise ValueError(f"peaks: centre must be finite and std positive, got {p}")
    if not np.isfinite(p.weight):
        raise ValueError(f"peaks: weight must be finite, got {p.weight}")
    return Peak(centre, std, float(p.weight))


class DifferentialGame(MultiAgentEnv):
    """Vectorised one-step continuous game with Gaussian peaks and a linear tilt.

    Args:
        num_envs: plays per step.
        n_agents: number of agents (one scalar action each).
        peaks: ``Peak`` objects, ``(centre, std, weight)`` tuples or dicts.
        tilt: linear coefficient per agent (default 0.1 on a1, 0 elsewhere).
        low, high: the action clip range used for the reward.
        seed: default seed for :meth:`reset` (the game itself has no randomness).
        copy_offset: the index of copy 0 in a larger env (:mod:`kl_alloc.envs.workers`); the
            game has no randomness, so no number depends on it.
    """

    def __init__(
        self,
        num_envs: int = 400,
        n_agents: int = 2,
        peaks: Sequence[Any] = DEFAULT_PEAKS,
        tilt: Sequence[float] | None = None,
        low: float = 0.0,
        high: float = 7.0,
        seed: int | None = None,
        copy_offset: int = 0,
    ) -> None:
        if int(copy_offset) < 0:
            raise ValueError(f"copy_offset must be >= 0, got {copy_offset}")
        n = int(n_agents)
        if n < 1 or int(num_envs) < 1:
            raise ValueError(f"need n_agents >= 1 and num_envs >= 1, got {n_agents}, {num_envs}")
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"low/high: need finite low < high, got {low}, {high}")
        self.peaks = tuple(_as_peak(p, n) for p in peaks)
        tilt = (0.1,) + (0.0,) * (n - 1) if tilt is None else tuple(float(t) for t in tilt)
        if len(tilt) != n or not all(np.isfinite(tilt)):
            raise ValueError(f"tilt: expected {n} finite coefficients, got {tilt}")
        self.tilt = tilt
        self.low, self.high = float(low), float(high)
        self.n_agents = n
        self.num_envs = int(num_envs)
        self.seed = seed
        self.obs_sizes = [0] * n
        self.state_size = 0
        self.action_specs = [ActionSpec.continuous(1, self.low, self.high) for _ in range(n)]
        self._centres = np.array([p.centre for p in self.peaks]).reshape(-1, n)
        self._stds = np.array([p.std for p in self.peaks]).reshape(-1, n)
        self._scales = np.array(
            [p.weight / ((2 * np.pi) ** (n / 2) * np.prod(p.std)) for p in self.peaks]
        )

    # -- the reward surface -------------------------------------------------------------------
    def reward_at(self, actions: np.ndarray) -> np.ndarray:
        """R at joint actions of shape (..., n_agents) (clipped first); for heatmaps."""
        a = np.clip(np.asarray(actions, dtype=np.float64), self.low, self.high)
        if a.shape[-1] != self.n_agents:
            raise ValueError(f"actions: last axis must be {self.n_agents}, got {a.shape}")
        z = (a[..., None, :] - self._centres) / self._stds  # (..., peaks, n)
        bumps = np.exp(-0.5 * np.sum(z * z, axis=-1)) @ self._scales
        return bumps + a @ np.asarray(self.tilt)

    # -- the env interface --------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        obs = [np.zeros((self.num_envs, 0), np.float32) for _ in range(self.n_agents)]
        return obs, np.zeros((self.num_envs, 0), np.float32)

    def step(self, actions: list[np.ndarray]) -> StepResult:
        acts = check_actions(self, actions)
        joint = np.concatenate(acts, axis=1)  # (num_envs, n_agents)
        obs, state = self.reset()
        final_obs, final_state = self.reset()
        return StepResult(
            obs=obs,
            state=state,
            reward=self.reward_at(joint),
            terminated=np.ones(self.num_envs, dtype=bool),
            truncated=np.zeros(self.num_envs, dtype=bool),
            final_obs=final_obs,
            final_state=final_state,
        )

    def expected_reward(self, policy_probs: Any) -> float:
        """Exact E[R] when agent i plays N(mean_i, std_i^2); ``policy_probs[i]`` is a
        ``(mean, std)`` pair (scalars or length-1 arrays) or a dict with those keys."""
        if len(policy_probs) != self.n_agents:
            raise ValueError(
                f"policy_probs: expected {self.n_agents} (mean, std) pairs, got {len(policy_probs)}"
            )
        mus, sigmas = np.empty(self.n_agents), np.empty(self.n_agents)
        for i, p in enumerate(policy_probs):
            mean, std = (p["mean"], p["std"]) if isinstance(p, dict) else p
            mus[i] = float(np.asarray(mean, dtype=np.float64).reshape(-1)[0])
            sigmas[i] = float(np.asarray(std, dtype=np.float64).reshape(-1)[0])
            if not (np.isfinite(mus[i]) and np.isfinite(sigmas[i]) and sigmas[i] >= 0):
                raise ValueError(f"policy_probs[{i}]: need a finite mean and std >= 0, got {p}")
        total = float(np.dot(self.tilt, _clipped_mean(mus, sigmas, self.low, self.high)))
        for centre, std, scale in zip(self._centres, self._stds, self._scales, strict=True):
            factors = _clipped_bump_mean(mus, sigmas, centre, std, self.low, self.high)
            total += scale * float(np.prod(factors))
        return total


def _clipped_mean(mu: np.ndarray, sigma: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """E[clip(x, lo, hi)] for x ~ N(mu, sigma^2), elementwise."""
    out = np.clip(mu, lo, hi).astype(np.float64)
    s = sigma > 0
    m, sd = mu[s], sigma[s]
    alpha, beta = (lo - m) / sd, (hi - m) / sd
    pdf = lambda z: np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)  # noqa: E731
    inner = m * (ndtr(beta) - ndtr(alpha)) - sd * (pdf(beta) - pdf(alpha))
    out[s] = inner + lo * ndtr(alpha) + hi * (1.0 - ndtr(beta))
    return out


def _clipped_bump_mean(
    mu: np.ndarray, sigma: np.ndarray, m: np.ndarray, s: np.ndarray, lo: float, hi: float
) -> np.ndarray:
    """E[exp(-(clip(x) - m)^2 / (2 s^2))] for x ~ N(mu, sigma^2), elementwise.

    Inside [lo, hi] the integrand times the normal density is C * N(x; mu_c, sigma_c^2) with
    v = s^2 + sigma^2, C = s / sqrt(v) exp(-(m - mu)^2 / (2 v)), mu_c = (m sigma^2 + mu s^2) / v,
    sigma_c = s sigma / sqrt(v); the clipped mass adds bump(lo) P(x < lo) + bump(hi) P(x > hi).
    """
    bump = lambda x: np.exp(-0.5 * ((x - m) / s) ** 2)  # noqa: E731
    out = bump(np.clip(mu, lo, hi))
    sd = np.where(sigma > 0, sigma, 1.0)
    v = s * s + sd * sd
    c = s / np.sqrt(v) * np.exp(-0.5 * (m - mu) ** 2 / v)
    mu_c = (m * sd * sd + mu * s * s) / v
    sd_c = s * sd / np.sqrt(v)
    inner = c * (ndtr((hi - mu_c) / sd_c) - ndtr((lo - mu_c) / sd_c))
    tails = bump(lo) * ndtr((lo - mu) / sd) + bump(hi) * (1.0 - ndtr((hi - mu) / sd))
    return np.where(sigma > 0, inner + tails, out)
