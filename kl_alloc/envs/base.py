"""The one small multi-agent environment interface the RL layer talks to.

Every environment is *vectorised*: it holds ``num_envs`` independent copies and steps them all
at once, so the trainer does ONE batched policy forward per agent per step. One-step games use
``num_envs`` = the batch size and a single step per iteration; MuJoCo adapters use a handful of
copies stepped for a few hundred steps.

Conventions (all arrays are numpy, leading axis = env copy):

- ``obs[i]``: float32 array ``(num_envs, obs_sizes[i])`` for agent i (sizes may differ).
  ``obs_sizes[i] == 0`` means the agent sees nothing (stateless game): its policy is a free
  parameter vector.
- ``state``: float32 ``(num_envs, state_size)``, the global state for the centralised critic;
  ``state_size == 0`` means a stateless game (the critic is a learned constant).
- ``actions[i]``: int64 ``(num_envs,)`` for a discrete agent, float32 ``(num_envs, dim)`` for a
  continuous one. Wrong shape, wrong dtype kind or non-finite values raise ``ValueError``.
- reward is shared by all agents: float64 ``(num_envs,)``.
- ``terminated``: the episode ended for real (no bootstrap). ``truncated``: cut by a time limit
  (bootstrap from the value of ``final_state``). A copy that ended is reset automatically within
  the same ``step``; the returned ``obs``/``state`` are then the first ones of the new episode and
  ``final_obs``/``final_state`` hold the last ones of the old episode (rows of copies that did not
  end are copies of ``obs``/``state``).

Optional, for envs that have them (both return None by default, and the RL layer then takes the
exact code path it always took):

- ``action_masks()``: per agent, a bool ``(num_envs, n)`` array of the actions allowed in the
  current observations (discrete agents), or None for an agent without masks. The policy gives
  masked actions probability 0; the masks are stored with the rollout and used by the update.
- ``active_agents()``: bool ``(num_envs, n_agents)``: which agents are still in each copy's
  episode at the current observations. The samples of an inactive agent are left out of its own
  update (its surrogate gradient and its KL); their actions are ignored by the env.
- ``native_spaces()``: per agent, how a wrapped env's own observations and actions map to the
  policy's (used by policy exports, :mod:`kl_alloc.rl.export`).

Rendering (``kl-alloc evaluate --video``): an env that can draw itself takes a ``render_mode``
keyword in its factory (the Gymnasium / PettingZoo convention); built with
``render_mode="rgb_array"`` its :meth:`MultiAgentEnv.render_frame` returns copy ``k``'s current
picture as an ``(H, W, 3)`` uint8 array, and ``render_fps`` is the env's real-time frame rate
(one frame per :meth:`MultiAgentEnv.step`). Rendering never changes the simulation: the frames
are drawn from the current state only. Envs without a picture (the matrix and differential
games) keep the default, which raises :class:`RenderError`.

``exact_state``: whether :meth:`MultiAgentEnv.state_dict` captures everything needed to continue
bit for bit (the games: they keep no state between steps; MaMuJoCo: physics and RNGs). An env
that cannot save its state (any PettingZoo env) sets it to False: a resumed run then resets its
copies from a seed derived from the run seed and the iteration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ActionSpec:
    """An agent's action space: ``Discrete(n)`` or a continuous box of ``dim`` dimensions."""

    kind: str  # "discrete" | "continuous"
    n: int = 0  # number of actions (discrete)
    dim: int = 0  # action dimension (continuous)
    low: float | np.ndarray = -np.inf  # bounds (continuous); informative, the env clips
    high: float | np.ndarray = np.inf

    @staticmethod
    def discrete(n: int) -> ActionSpec:
        if int(n) < 1:
            raise ValueError(f"discrete action count must be >= 1, got {n}")
        return ActionSpec("discrete", n=int(n))

    @staticmethod
    def continuous(dim: int, low: Any = -np.inf, high: Any = np.inf) -> ActionSpec:
        if int(dim) < 1:
            raise ValueError(f"continuous action dim must be >= 1, got {dim}")
        return ActionSpec("continuous", dim=int(dim), low=low, high=high)

    @property
    def is_discrete(self) -> bool:
        return self.kind == "discrete"


@dataclass
class StepResult:
    obs: list[np.ndarray]
    state: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: list[np.ndarray]
    final_state: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


class MultiAgentEnv(ABC):
    """Vectorised cooperative multi-agent environment with a shared reward."""

    n_agents: int
    num_envs: int
    obs_sizes: list[int]
    state_size: int
    action_specs: list[ActionSpec]
    #: ``{"name", "kwargs"}`` set by :func:`~kl_alloc.envs.registry.make_env`: how to build
    #: this env again (evaluation, resume, worker processes); None for envs made by hand
    spec: dict[str, Any] | None = None
    #: whether state_dict/load_state_dict continue the env bit for bit (see the module docstring)
    exact_state: bool = True
    #: frames per second of real time when one frame is drawn per step (None: unknown)
    render_fps: float | None = None

    @abstractmethod
    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """Reset every copy; returns ``(obs, state)``. A seed makes everything after it
        deterministic (copies get independent streams derived from it)."""

    @abstractmethod
    def step(self, actions: list[np.ndarray]) -> StepResult:
        """Step every copy with the agents' actions (see module docstring)."""

    def expected_reward(self, policy_probs: Any) -> float | None:
        """Exact expected reward of a joint policy, where the env can compute it (games);
        ``None`` otherwise."""
        return None

    def action_masks(self) -> list[np.ndarray | None] | None:
        """Per-agent allowed-action masks of the current observations (None: no masks)."""
        return None

    def active_agents(self) -> np.ndarray | None:
        """(num_envs, n_agents) bool: agents still in each copy's episode (None: all, always)."""
        return None

    def render_frame(self, copy: int = 0) -> np.ndarray:
        """Copy ``copy``'s current picture, ``(H, W, 3)`` uint8, for envs built with
        ``render_mode="rgb_array"`` (see the module docstring); :class:`RenderError` here."""
        raise RenderError(f"{type(self).__name__} cannot render frames")

    def native_spaces(self) -> list[dict[str, Any]] | None:
        """Per agent, how the wrapped env's own observations and actions map to the policy's
        (PettingZoo: :meth:`~kl_alloc.envs.pettingzoo.PettingZooEnv.native_spaces`); None: the
        env has no other form (policy exports then predict from and return lists only)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit after a restart (RNG and physics state)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Inverse of :meth:`state_dict`."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release resources."""


class RenderError(RuntimeError):
    """An env cannot render frames (or was not built with ``render_mode="rgb_array"``)."""


def check_frame(frame: Any, who: str) -> np.ndarray:
    """A renderer's picture as a contiguous ``(H, W, 3)`` uint8 array (RGBA loses its alpha);
    :class:`RenderError` naming ``who`` if it is anything else (e.g. ``None``)."""
    if frame is None:
        raise RenderError(f"{who}: render() returned no picture (built without "
                          "render_mode='rgb_array'?)")  # fmt: skip
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise RenderError(f"{who}: expected an (H, W, 3) uint8 picture, got {arr.dtype} "
                          f"{arr.shape}")  # fmt: skip
    return np.ascontiguousarray(arr[:, :, :3])


def check_actions(env: MultiAgentEnv, actions: list[np.ndarray]) -> list[np.ndarray]:
    """Validate and normalise a list of per-agent actions; raise ``ValueError`` naming the agent."""
    if len(actions) != env.n_agents:
        raise ValueError(f"actions: expected {env.n_agents} agents' actions, got {len(actions)}")
    out = []
    for i, (a, spec) in enumerate(zip(actions, env.action_specs, strict=True)):
        a = np.asarray(a)
        if spec.is_discrete:
            if a.shape != (env.num_envs,):
                raise ValueError(
                    f"actions[{i}]: expected shape ({env.num_envs},) of action indices, "
                    f"got {a.shape}"
                )
            if a.dtype.kind == "f":
                if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
                    raise ValueError(f"actions[{i}]: discrete actions must be integers")
            elif a.dtype.kind not in "iu":
                raise ValueError(f"actions[{i}]: discrete actions must be integers, got {a.dtype}")
            a = a.astype(np.int64)
            if a.size and (a.min() < 0 or a.max() >= spec.n):
                raise ValueError(f"actions[{i}]: action index out of range [0, {spec.n})")
        else:
            if a.shape != (env.num_envs, spec.dim):
                raise ValueError(
                    f"actions[{i}]: expected shape ({env.num_envs}, {spec.dim}), got {a.shape}"
                )
            if a.dtype.kind not in "fiu":
                raise ValueError(f"actions[{i}]: continuous actions must be numeric, got {a.dtype}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"actions[{i}]: contains NaN or inf")
            a = a.astype(np.float64, copy=False)
        out.append(a)
    return out
