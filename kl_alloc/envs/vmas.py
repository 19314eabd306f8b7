"""VMAS (Vectorized Multi-Agent Simulator) behind :class:`MultiAgentEnv`, through its native
batched torch API.

``VMASEnv("balance", num_envs=100, seed=0)`` builds ONE ``vmas.make_env(scenario,
num_envs=100)``: every :meth:`step` is a single ``env.step`` on all copies (torch tensors of shape
``(num_envs, ...)``), converted to numpy at the boundary (the trainer is numpy at the env).

Conventions (all checked against vmas 1.5 ``vmas/simulator/environment/environment.py``):

- agents are ``env.agents`` in order (``obs[i]``, ``action_specs[i]``, ``actions[i]``); their
  observation sizes may differ (``simple_speaker_listener``: speaker 3, listener 11).
- continuous actions: ``Box`` of the agent's ``u_range`` for the physical part and ``[0, 1]``
  for a communication part (agents that are not silent when ``world.dim_c > 0``). The
  :class:`ActionSpec` carries these bounds per dimension and actions are *clipped* to them here
  (vmas asserts on out-of-range actions). Discrete actions (``continuous_actions=False``): one
  ``Discrete(n)`` per agent, the flattened product of its physical and communication choices.
- reward: vmas returns one reward tensor per agent. The shared team reward is their ``"mean"``
  (default), ``"sum"``, or agent 0's (``"first"``): ``r_t = reduce_i r_t^i``. The built-in
  scenarios registered here give every agent the same (shared) reward, where all three agree.
- global state (vmas has no ``state()``): the concatenation of all agents' observations,
  ``s_t = [o_t^0, o_t^1, ...]``, of size ``sum(obs_sizes)``.
- ``max_steps`` reached = *truncation* (bootstrap); the scenario's ``done()`` = *termination*;
  termination wins when both happen on the same step. Copies that ended are reset in the same
  :meth:`step` with ``env.reset_at(k)`` (one ``env.reset()`` when all ended together, the usual
  case with a common time limit); ``final_obs``/``final_state`` keep their last observations.

Registered scenarios (``--env vmas --scenario NAME``; sizes measured with vmas 1.5.2, state =
sum of the observation sizes; continuous action bounds ``[-1, 1]`` except the speaker's three
communication dimensions ``[0, 1]``):

========================  =================================  ===========  =========  =========
scenario                  agents                             obs sizes    act dims   discrete
========================  =================================  ===========  =========  =========
balance                   3 alike, carry a package on a      16, 16, 16   2, 2, 2    9, 9, 9
                          line to a goal (shaped by the
                          package's progress; -10 and the
                          end when it falls; ends at goal)
het_mass                  2 of different mass (4 +- 1,       4, 4         2, 2       9, 9
                          2 +- 1): reward = the larger
                          speed minus 0.17 x the sum of
                          the normalised force norms
simple_speaker_listener   speaker (sees the goal colour,     3, 11        5, 2       27, 9
                          cannot move, speaks 3 channels),
                          listener (moves, hears)
========================  =================================  ===========  =========  =========

In all three every agent gets the same reward. het_mass is a vmas debug scenario
(``vmas/scenarios/debug``) and moves along x only (its ``process_action`` zeroes the y action);
its two masses are plain floats redrawn at every reset, including ``reset_at`` of one copy, and
shared by all copies.
In simple_speaker_listener vmas draws ONE goal landmark for the whole batch at each full
``reset()`` (``reset_at`` keeps it), so all copies share the goal of an episode.

Seeding. vmas draws from the *global* torch / numpy / ``random`` generators, swapped in and out
around each call from one state list shared by every vmas env in the process
(``Environment.vmas_random_state``). Each :class:`VMASEnv` keeps its own copy of those three
generator states and swaps it in around its calls, so envs in one process (training and
evaluation) do not disturb each other and two envs with the same seed step identically.

Rendering. :meth:`render_frame` is vmas's own ``env.render(mode="rgb_array", env_index=k)``
(pyglet; 700 x 700 for the scenarios above, the camera zoomed out to fit every agent), drawn at
``render_fps = 1 / world.dt`` (10 for these scenarios). vmas renders off-screen (pyglet's
``headless`` option) only when EGL reports a device, which Mesa's software EGL does (this machine
has no GPU and no display, and renders); without EGL devices pyglet needs an X display
(``DISPLAY``, e.g. from ``Xvfb``). ``render_mode`` is accepted for the convention of
:mod:`kl_alloc.envs.base` (vmas draws on demand either way).

Checkpoints. vmas cannot save its world state: the state is spread over entity states and
arbitrary scenario attributes (tensors, and plain floats such as het_mass's masses drawn at each
reset), and the env cannot be pickled (vmas loads scenario files as a module named ``""``, so
``torch.save(env)`` fails with "Can't pickle <class '.Scenario'>"). Hence
``exact_state = False``: :meth:`state_dict` holds only the configuration, and a resumed run
resets its copies from a seed derived from the run (the trainer's rule for such envs).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from kl_alloc.envs.base import (
    ActionSpec,
    MultiAgentEnv,
    RenderError,
    StepResult,
    check_actions,
    check_frame,
)

__all__ = ["SCENARIO_DEFAULTS", "VMASEnv"]

INSTALL_HINT = 'VMAS needs the vmas extra: pip install "kl_alloc[vmas]"'

#: default time limits of the registered scenarios: BenchMARL's vmas task configs use 100 steps;
#: the MPE scenarios keep MPE's 25
SCENARIO_DEFAULTS: dict[str, dict[str, Any]] = {
    "balance": {"max_steps": 100},
    "het_mass": {"max_steps": 100},
    "simple_speaker_listener": {"max_steps": 25},
}
DEFAULT_MAX_STEPS = 100
REWARD_REDUCTIONS = ("mean", "sum", "first")

_STATE_DICT_VERSION = 1

logger = logging.getLogger("kl_alloc.envs")


def _import_vmas() -> Any:
    try:
        import torch  # noqa: F401
        import vmas
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return vmas


def _seed32(seq: np.random.SeedSequence) -> int:
    """A seed in [0, 2**32) (``np.random.seed`` refuses larger ones)."""
    return int(seq.generate_state(1, np.uint32)[0])


class VMASEnv(MultiAgentEnv):
    """``num_envs`` copies of the VMAS ``scenario`` in one batched vmas env.

    Args:
        scenario: a vmas scenario name (``"balance"``, ``"simple_speaker_listener"``,
            ``"navigation"``, ...; any file in ``vmas/scenarios``).
        num_envs: number of copies simulated in one batch.
        seed: seed of the first :meth:`reset` (``None``: fresh OS entropy).
        continuous_actions: ``Box`` actions (default) or ``Discrete`` ones.
        max_steps: time limit (truncation); ``None`` takes :data:`SCENARIO_DEFAULTS` (100 for
            unlisted scenarios). vmas's own default, an infinite horizon, is not offered: the
            trainer needs episodes to end.
        reward: how per-agent rewards become the team reward: ``"mean"``, ``"sum"``, ``"first"``.
        device: torch device of the simulation (numpy in and out either way).
        render_mode: ``None`` or ``"rgb_array"`` (:meth:`render_frame` works with both).
        **scenario_kwargs: passed to the scenario (``n_agents``, ``package_mass``, ...).

    After each :meth:`step`, ``info["episode_return"]`` (float64, NaN for copies still running)
    and ``info["episode_length"]`` (int64, 0 for copies still running) describe the episodes that
    ended on that step.
    """

    #: vmas's world cannot be saved and restored exactly: resume resets from a derived seed
    exact_state = False

    def __init__(
        self,
        scenario: str = "balance",
        num_envs: int = 100,
        seed: int | None = None,
        continuous_actions: bool = True,
        max_steps: int | None = None,
        reward: str = "mean",
        device: str = "cpu",
        render_mode: str | None = None,
        **scenario_kwargs: Any,
    ) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if not isinstance(continuous_actions, bool | np.bool_):  # "False" would be truthy
            raise ValueError(f"continuous_actions must be a bool, got {continuous_actions!r}")
        if reward not in REWARD_REDUCTIONS:
            raise ValueError(f"reward must be one of {REWARD_REDUCTIONS}, got {reward!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if max_steps is None:
            max_steps = SCENARIO_DEFAULTS.get(scenario, {}).get("max_steps", DEFAULT_MAX_STEPS)
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        vmas = _import_vmas()
        from vmas.simulator.environment import Environment

        self.scenario = str(scenario)
        self.num_envs = int(num_envs)
        self.continuous_actions = bool(continuous_actions)
        self.max_steps = int(max_steps)
        self.reward_reduction = reward
        self._seed = seed
        self._shared_rng: list[Any] = Environment.vmas_random_state
        root = np.random.SeedSequence(seed)
        self.seed_entropy: int | None = root.entropy
        self._rng_state = self._fresh_rng_state(_seed32(root))
        with self._own_rng():
            try:
                self.env = vmas.make_env(
                    self.scenario,
                    num_envs=self.num_envs,
                    device=device,
                    continuous_actions=self.continuous_actions,
                    max_steps=self.max_steps,
                    seed=None,
                    dict_spaces=False,
                    terminated_truncated=True,
                    **scenario_kwargs,
                )
            except AssertionError as err:  # vmas reports a bad name / kwarg by assert
                raise ValueError(f"scenario {self.scenario!r}: {err}") from None
        self._describe_spaces()
        self.render_mode = render_mode
        self.render_fps = 1.0 / float(self.env.world.dt)
        n = self.num_envs
        self._elapsed = np.zeros(n, dtype=np.int64)
        self._episode_return = np.zeros(n, dtype=np.float64)
        self._obs: list[np.ndarray] = [np.zeros((n, s), np.float32) for s in self.obs_sizes]
        self._needs_reset = True
        self._loaded = False  # load_state_dict() was called and no reset() since
        self._seeded = False

    # ------------------------------------------------------------------ construction helpers

    @staticmethod
    def _fresh_rng_state(seed: int) -> list[Any]:
        """The (torch, numpy, random) generator states vmas would hold after ``_seed(seed)``."""
        import random

        import torch

        gen = torch.Generator().manual_seed(seed)
        np_state = np.random.RandomState(seed).get_state()
        py = random.Random(seed)
        return [gen.get_state(), np_state, py.getstate()]

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Swap this env's generator states into vmas's shared state list for one call."""
        shared = self._shared_rng
        saved = list(shared)
        shared[:] = self._rng_state
        try:
            yield
        finally:
            self._rng_state = list(shared)
            shared[:] = saved

    def _describe_spaces(self) -> None:
        env = self.env
        self.agent_names: list[str] = [a.name for a in env.agents]
        self.n_agents = len(self.agent_names)
        obs_space = env.observation_space.spaces
        self.obs_sizes = []
        for name, space in zip(self.agent_names, obs_space, strict=True):
            shape = getattr(space, "shape", None)
            if shape is None or len(shape) != 1:
                raise ValueError(
                    f"scenario {self.scenario!r}: agent {name!r} has a non-flat observation "
                    f"({space}); only flat Box observations are supported"
                )
            self.obs_sizes.append(int(shape[0]))
        self.state_size = int(sum(self.obs_sizes))
        self.action_specs = []
        self._low: list[np.ndarray] = []
        self._high: list[np.ndarray] = []
        for space in env.action_space.spaces:
            if self.continuous_actions:
                low = np.asarray(space.low, np.float32)
                high = np.asarray(space.high, np.float32)
                self.action_specs.append(ActionSpec.continuous(low.size, low=low, high=high))
                self._low.append(low)
                self._high.append(high)
            else:
                self.action_specs.append(ActionSpec.discrete(int(space.n)))

    # ------------------------------------------------------------------ interface

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """Reset every copy.

        With a seed (or, on the first call, the constructor's seed), vmas's generators are
        re-seeded with a 32-bit seed derived from ``np.random.SeedSequence(seed)``; without one
        they continue, like the automatic resets inside :meth:`step`.
        """
        if seed is None and not self._seeded:
            seed = self._seed
        vmas_seed = None
        if seed is not None or not self._seeded:
            root = np.random.SeedSequence(seed)
            self.seed_entropy = root.entropy
            vmas_seed = _seed32(root)
            self._seeded = True
        with self._own_rng():
            obs = self.env.reset(seed=vmas_seed)
        self._store_obs(obs)
        self._elapsed[:] = 0
        self._episode_return[:] = 0.0
        self._needs_reset = False
        self._loaded = False
        return self._current()

    def step(self, actions: list[np.ndarray]) -> StepResult:
        import torch

        if self._needs_reset:
            if self._loaded:
                raise RuntimeError(
                    "VMASEnv cannot restore its world from a state_dict (exact_state = False): "
                    "reset() it, e.g. from a seed derived from the run, before step()"
                )
            raise RuntimeError("call reset() before step()")
        actions = check_actions(self, actions)
        if self.continuous_actions:
            tensors = [
                torch.from_numpy(np.clip(a, lo, hi).astype(np.float32))
                for a, lo, hi in zip(actions, self._low, self._high, strict=True)
            ]
        else:
            tensors = [torch.from_numpy(a).unsqueeze(-1) for a in actions]
        with self._own_rng():
            obs, rewards, terminated, truncated, _ = self.env.step(tensors)
        self._store_obs(obs)
        reward = self._reduce(rewards)
        terminated = terminated.cpu().numpy().astype(bool)
        # vmas: steps >= max_steps; the time limit is truncation, termination wins
        truncated = truncated.cpu().numpy().astype(bool) & ~terminated
        ended = terminated | truncated
        self._elapsed += 1
        self._episode_return += reward
        final_obs, final_state = self._current()
        n = self.num_envs
        episode_return = np.full(n, np.nan)
        episode_length = np.zeros(n, dtype=np.int64)
        if ended.any():
            episode_return[ended] = self._episode_return[ended]
            episode_length[ended] = self._elapsed[ended]
            self._reset_copies(np.flatnonzero(ended))
            self._elapsed[ended] = 0
            self._episode_return[ended] = 0.0
        obs_now, state_now = self._current()
        return StepResult(
            obs=obs_now,
            state=state_now,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
            final_state=final_state,
            info={"episode_return": episode_return, "episode_length": episode_length},
        )

    def observe(self) -> tuple[list[np.ndarray], np.ndarray]:
        """The current ``(obs, state)`` (what the last ``reset``/``step`` returned)."""
        if self._needs_reset:
            raise RuntimeError("call reset() first")
        return self._current()

    def render_frame(self, copy: int = 0) -> np.ndarray:
        """Copy ``copy``'s current picture from vmas's renderer, (H, W, 3) uint8."""
        if not 0 <= int(copy) < self.num_envs:
            raise ValueError(f"copy must be in [0, {self.num_envs}), got {copy}")
        try:
            with self._own_rng():
                frame = self.env.render(mode="rgb_array", env_index=int(copy))
        except Exception as err:  # pyglet without EGL devices and without a display
            raise RenderError(
                f"VMAS rendering failed ({type(err).__name__}: {err}); vmas renders off-screen "
                "through EGL, else it needs an X display (DISPLAY, e.g. Xvfb)"
            ) from err
        return check_frame(frame, f"VMAS {self.scenario}")

    # ------------------------------------------------------------------ helpers

    def _reset_copies(self, idx: np.ndarray) -> None:
        """Reset the copies ``idx``: one batched ``reset`` when all ended, else ``reset_at``."""
        with self._own_rng():
            if idx.size == self.num_envs:
                obs = self.env.reset()
            else:
                for k in idx:
                    obs = self.env.reset_at(int(k))
        # both return every copy's observations: the untouched copies are unchanged
        self._store_obs(obs)

    def _store_obs(self, obs: list[Any]) -> None:
        for i, o in enumerate(obs):
            self._obs[i] = o.detach().cpu().numpy().astype(np.float32, copy=True)

    def _current(self) -> tuple[list[np.ndarray], np.ndarray]:
        obs = [o.copy() for o in self._obs]
        return obs, np.concatenate(obs, axis=1)

    def _reduce(self, rewards: list[Any]) -> np.ndarray:
        """Team reward ``reduce_i r^i`` in float64 (``mean``, ``sum`` or agent 0's)."""
        r = np.stack([x.detach().cpu().numpy().astype(np.float64) for x in rewards])
        if self.reward_reduction == "first":
            return r[0].copy()
        return r.sum(axis=0) if self.reward_reduction == "sum" else r.mean(axis=0)

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """The configuration only (``exact_state = False``: vmas cannot save its world)."""
        return {
            "version": _STATE_DICT_VERSION,
            "exact_state": False,
            "scenario": self.scenario,
            "num_envs": self.num_envs,
            "continuous_actions": self.continuous_actions,
            "max_steps": self.max_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Check the saved configuration; the copies must then be :meth:`reset` (from a derived
        seed): :meth:`step` refuses until then."""
        if state.get("version") != _STATE_DICT_VERSION:
            raise ValueError(f"state: unsupported state_dict version {state.get('version')!r}")
        for key in ("scenario", "num_envs", "continuous_actions"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"state: saved {key}={state[key]!r} but this env has {getattr(self, key)!r}"
                )
        self._needs_reset = True
        self._loaded = True

    def close(self) -> None:
        viewer = getattr(self.env, "viewer", None)
        if viewer is not None:
            viewer.close()
