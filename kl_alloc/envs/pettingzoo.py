"""Any PettingZoo ``ParallelEnv`` behind the vectorised :class:`MultiAgentEnv` interface.

``PettingZooEnv(env_fn, num_envs=8, seed=0)`` calls ``env_fn(**env_kwargs)`` ``num_envs`` times
and steps the copies in one loop, so the trainer does one batched policy forward per agent per
step. Agents are ``possible_agents`` in order: ``obs[i]``, ``action_specs[i]``, ``actions[i]``
all refer to ``possible_agents[i]``. The rules (each one a choice; the reason is given):

- **Observations** are flattened with ``gymnasium.spaces.flatten`` (Box: as is, Discrete:
  one-hot, Tuple/Dict: concatenated). A Dict observation with ``"observation"`` and
  ``"action_mask"`` keys (the PettingZoo convention) gives the flattened ``"observation"`` to
  the policy and the mask to the action distribution.
- **Box actions** (``box_actions="rescale"``, the default): the Gaussian policy's output ``u``
  is clipped to [-1, 1] and mapped affinely to the bounds, ``a = low + (u + 1) / 2 (high -
  low)``, per dimension; dimensions with an infinite bound are passed through unclipped. So the
  policy's initial mean 0 is the middle of the box and its initial std (``init_log_std``) means
  the same fraction of the range for every env, whatever the units (MPE's continuous actions
  are in [0, 1]: an unscaled mean 0 would sit on the lower bound). The log-probability is the
  Gaussian's of ``u`` (the clipping is part of the env), as for every clipped TRPO/PPO policy.
  ``box_actions="clip"`` clips ``u`` to the bounds without rescaling (for boxes already in
  policy units).
- **Discrete action masks**: from the Dict observation's ``"action_mask"``, else from
  ``info[agent]["action_mask"]``; an agent has a mask if either is present after the first
  reset. The policy is a masked Categorical (masked logits -> a large negative number, so
  probabilities are exactly 0 and log-probabilities, KL and entropy stay finite); the collector
  stores the masks with the rollout and the update uses them. ``Discrete(n, start)`` actions
  are offset by ``start``.
- **Team reward**: ``reward_reduce`` over the agents in the step's reward dict: ``"mean"``
  (default: cooperative PettingZoo envs, MPE included, give every agent the team reward, which
  ``mean`` returns unchanged whatever the number of agents; ``sum`` would scale it by that
  number), ``"sum"`` (each agent's reward counts: the team's total), ``"first"`` (the first
  agent of ``possible_agents`` still in the dict: envs that copy one team reward to everyone).
- **Episode end**: a copy's episode ends when no agent is left (every agent terminated or was
  truncated). It is *terminated* (no bootstrap) if every agent that acted on the last step
  terminated (termination wins over truncation for one agent, as in :mod:`.mamujoco`), else
  *truncated* (bootstrap from ``final_state``). Finished copies are reset within ``step``.
- **Agents that leave early**: after an agent terminates or is truncated (or is gone from
  ``env.agents``), its observation is zeros, its action is not sent to the env, and
  :meth:`active_agents` marks its samples invalid: the update leaves them out of its surrogate
  gradient and its KL (see :mod:`kl_alloc.rl.update`).
- **Global state** (``state="auto"``, the default): ``env.state()`` when the env has one (a
  ``state_space``, or ``state()`` works after reset), else the concatenated flattened
  observations of all ``possible_agents`` (zeros for absent agents). ``state="obs"`` takes the
  concatenated observations without asking the env: for envs whose ``state()`` is just that
  (MPE2's), it saves computing every observation a second time each step.
- **Seeds**: ``reset(seed)`` resets copy ``k`` with a seed from child ``copy_offset + k`` of
  ``np.random.SeedSequence(seed)`` (what ``spawn`` gives); automatic resets continue each
  copy's own generator. So copies ``[a, b)`` built with ``copy_offset=a`` step exactly as those
  copies of the whole env: env worker processes (:mod:`kl_alloc.envs.workers`) rely on it.
- **Checkpoints**: a PettingZoo env cannot save its state in general, so ``exact_state`` is
  False: a resumed run resets the copies from a seed derived from the run seed and the
  iteration (see :meth:`kl_alloc.rl.trainer.Trainer.resume`).

- **Rendering**: with ``render_mode="rgb_array"`` (added to ``env_kwargs``, so ``env_fn`` must
  take it, as PettingZoo envs do) :meth:`render_frame` returns copy ``k``'s ``render()``;
  ``render_fps`` is the env's ``metadata["render_fps"]``. MPE2 draws into an off-screen pygame
  surface: no display needed.

After each :meth:`step`, ``info["episode_return"]`` / ``info["episode_length"]`` describe the
episodes that ended on that step (NaN / 0 for copies still running).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from kl_alloc.envs.base import ActionSpec, MultiAgentEnv, StepResult, check_actions, check_frame

__all__ = [
    "REWARD_REDUCE",
    "PettingZooEnv",
    "is_parallel_env",
    "native_action",
    "pettingzoo_env",
]

logger = logging.getLogger("kl_alloc.envs")

INSTALL_HINT = 'PettingZoo environments need pettingzoo: pip install "kl_alloc[mpe]"'
REWARD_REDUCE = ("mean", "sum", "first")
BOX_ACTIONS = ("rescale", "clip")
STATES = ("auto", "obs")


def is_parallel_env(obj: Any) -> bool:
    """Duck-typed PettingZoo ``ParallelEnv``: ``possible_agents``, ``reset``, ``step``,
    ``observation_space(agent)`` and ``action_space(agent)``."""
    if isinstance(obj, MultiAgentEnv):
        return False
    return all(
        hasattr(obj, name)
        for name in ("possible_agents", "reset", "step", "observation_space", "action_space")
    )


def _is_aec_env(obj: Any) -> bool:
    return hasattr(obj, "agent_iter") and hasattr(obj, "last")


def _obs_parts(space: Any) -> tuple[Any, bool]:
    """(the space the policy sees, whether the observation carries an action mask).

    A Dict with an ``action_mask`` key: the mask is taken out, and the policy sees the
    ``observation`` subspace when that is the only other key (PettingZoo's convention), else
    a Dict of every other key, flattened. Any other space is flattened whole."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict) and "action_mask" in space.spaces:
        rest = {k: v for k, v in space.spaces.items() if k != "action_mask"}
        if set(rest) == {"observation"}:
            return space["observation"], True
        return spaces.Dict(rest), True
    return space, False


def _box_map(space: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, finite) of a Box, flattened, float64."""
    low = np.asarray(space.low, np.float64).reshape(-1)
    high = np.asarray(space.high, np.float64).reshape(-1)
    return low, high, np.isfinite(low) & np.isfinite(high)


class PettingZooEnv(MultiAgentEnv):
    """``num_envs`` copies of a PettingZoo ``ParallelEnv`` (see the module docstring).

    Args:
        env_fn: a callable returning a ``ParallelEnv`` (called once per copy with
            ``env_kwargs``), or its ``"package.module:attr"`` name.
        num_envs: number of independent copies stepped together.
        seed: default seed of the first :meth:`reset` (``None``: fresh OS entropy).
        env_kwargs: keywords for ``env_fn``.
        reward_reduce: ``"mean"`` (default), ``"sum"`` or ``"first"``: how the agents' rewards
            become the shared team reward.
        box_actions: ``"rescale"`` (default: clip to [-1, 1], then affine to the bounds) or
            ``"clip"`` (clip to the bounds).
        first: an already built copy to use as copy 0 (what ``env_fn`` returned when
            :func:`~kl_alloc.envs.registry.make_env` probed a user factory).
        copy_offset: this env's copy ``k`` is copy ``copy_offset + k`` of a larger env with the
            same seed (its reset seeds; see the module docstring).
        render_mode: if given (``"rgb_array"``), passed to ``env_fn`` as ``render_mode`` (see
            :meth:`render_frame`).
        state: ``"auto"`` (default: ``env.state()`` if the env has one, else the concatenated
            observations) or ``"obs"`` (the concatenated observations; see the module
            docstring).
    """

    exact_state = False

    def __init__(
        self,
        env_fn: Callable[..., Any] | str,
        num_envs: int = 8,
        seed: int | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
        reward_reduce: str = "mean",
        box_actions: str = "rescale",
        first: Any = None,
        copy_offset: int = 0,
        render_mode: str | None = None,
        state: str = "auto",
    ) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if int(copy_offset) < 0:
            raise ValueError(f"copy_offset must be >= 0, got {copy_offset}")
        self.copy_offset = int(copy_offset)
        if reward_reduce not in REWARD_REDUCE:
            raise ValueError(
                f"reward_reduce: expected one of {REWARD_REDUCE}, got {reward_reduce!r}"
            )
        if box_actions not in BOX_ACTIONS:
            raise ValueError(f"box_actions: expected one of {BOX_ACTIONS}, got {box_actions!r}")
        if state not in STATES:
            raise ValueError(f"state: expected one of {STATES}, got {state!r}")
        self.state_source = state
        if isinstance(env_fn, str):
            from kl_alloc.plugins import load_object

            env_fn = load_object(env_fn, "env_fn")
        if not callable(env_fn):
            raise ValueError(f"env_fn: expected a callable returning a ParallelEnv, got {env_fn!r}")
        self.env_fn = env_fn
        self.env_kwargs = dict(env_kwargs or {})
        if render_mode is not None:
            self.env_kwargs["render_mode"] = render_mode
        self.num_envs = int(num_envs)
        self.reward_reduce = reward_reduce
        self.box_actions = box_actions
        self._seed = seed
        copies = [first] if first is not None else []
        while len(copies) < self.num_envs:
            copies.append(env_fn(**self.env_kwargs))
        for k, c in enumerate(copies):
            if _is_aec_env(c) and not is_parallel_env(c):
                raise ValueError(
                    f"env_fn: returned an AEC env ({type(c).__name__}); pass its parallel_env, "
                    "or wrap it with pettingzoo.utils.conversions.aec_to_parallel"
                )
            if not is_parallel_env(c):
                raise ValueError(f"env_fn: copy {k} is not a PettingZoo ParallelEnv: {c!r}")
        self.copies = copies[: self.num_envs]
        fps = (getattr(self.copies[0], "metadata", None) or {}).get("render_fps")
        self.render_fps = float(fps) if fps else None
        self.possible_agents: list[str] = list(self.copies[0].possible_agents)
        self.n_agents = len(self.possible_agents)
        if self.n_agents < 1:
            raise ValueError("env_fn: the env has no possible_agents")
        self._spaces()
        self._probe_masks_and_state()

        n = self.num_envs
        self._obs = [np.zeros((n, s), np.float32) for s in self.obs_sizes]
        self._state = np.zeros((n, self.state_size), np.float32)
        self._masks = [None if not m else np.ones((n, s.n), bool) for m, s in
                       zip(self._has_mask, self.action_specs, strict=True)]  # fmt: skip
        self._active = np.ones((n, self.n_agents), bool)
        self._elapsed = np.zeros(n, np.int64)
        self._episode_return = np.zeros(n, np.float64)
        self._needs_reset = True
        self._missing_said: set[str] = set()  # agents whose missing observation was said
        self._seeded = False

    # ------------------------------------------------------------------ construction helpers

    def _spaces(self) -> None:
        from gymnasium import spaces

        env = self.copies[0]
        self._obs_space: list[Any] = []
        self._obs_has_mask: list[bool] = []
        self.obs_sizes = []
        self.action_specs = []
        self._act: list[dict[str, Any]] = []
        for a in self.possible_agents:
            obs_space, has_mask = _obs_parts(env.observation_space(a))
            self._obs_space.append(obs_space)
            self._obs_has_mask.append(has_mask)
            self.obs_sizes.append(int(spaces.flatdim(obs_space)))
            act = env.action_space(a)
            if isinstance(act, spaces.Discrete):
                self.action_specs.append(ActionSpec.discrete(int(act.n)))
                self._act.append({"kind": "discrete", "start": int(act.start)})
            elif isinstance(act, spaces.Box):
                low, high, finite = _box_map(act)
                if self.box_actions == "rescale":
                    plo = np.where(finite, -1.0, low)
                    phi = np.where(finite, 1.0, high)
                else:
                    plo, phi = low, high
                spec = ActionSpec.continuous(low.size, low=plo.astype(np.float32),
                                             high=phi.astype(np.float32))  # fmt: skip
                self.action_specs.append(spec)
                self._act.append({"kind": "box", "low": low, "high": high, "finite": finite,
                                  "shape": tuple(act.shape), "dtype": np.dtype(act.dtype).str,
                                  "mode": self.box_actions})  # fmt: skip
            else:
                raise ValueError(
                    f"env_fn: agent {a!r} has action space {act}; supported: Box, Discrete"
                )

    def _probe_masks_and_state(self) -> None:
        """Reset copy 0 once: which agents carry masks in ``info``, and the state's size."""
        env = self.copies[0]
        probe_seed = None if self._seed is None else int(self._seed)
        _, infos = _reset_result(env.reset(seed=probe_seed))
        infos = infos or {}
        self._has_mask = [
            spec.is_discrete
            and (own or "action_mask" in (infos.get(a) or {}))
            for a, spec, own in zip(self.possible_agents, self.action_specs,
                                    self._obs_has_mask, strict=True)
        ]  # fmt: skip
        self._state_fn = None
        space = getattr(env, "state_space", None)
        if self.state_source == "obs":
            size = None  # the observations, concatenated (below)
        elif space is not None and getattr(space, "shape", None) is not None:
            size = int(np.prod(space.shape))
        else:
            try:
                raw = env.state()
            except (NotImplementedError, AttributeError):
                raw = None
            state = None if raw is None else np.asarray(raw)
            if state is not None and not (
                np.issubdtype(state.dtype, np.number) or state.dtype == bool
            ):
                raise ValueError(
                    f"env.state() must return an array of numbers, got {state.dtype} "
                    f"({type(raw).__name__})"
                )
            size = None if state is None else int(state.size)
        if size:
            self._state_fn = "state"
            self.state_size = size
        else:
            self.state_size = int(sum(self.obs_sizes))

    # ------------------------------------------------------------------ interface

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """Reset every copy; copy ``k`` gets a seed from child ``copy_offset + k`` of
        ``SeedSequence(seed)`` (the constructor's seed on the first call)."""
        if seed is None and not self._seeded:
            seed = self._seed
        if seed is not None or not self._seeded:
            root = np.random.SeedSequence(seed)
            children = [  # == root.spawn(copy_offset + num_envs)[copy_offset:]
                np.random.SeedSequence(
                    root.entropy, spawn_key=(*root.spawn_key, self.copy_offset + k)
                )
                for k in range(self.num_envs)
            ]
            seeds = [int(c.generate_state(1, np.uint32)[0]) for c in children]
            self._seeded = True
        else:
            seeds = [None] * self.num_envs
        for k, s in enumerate(seeds):
            self._reset_copy(k, s)
        self._elapsed[:] = 0
        self._episode_return[:] = 0.0
        self._needs_reset = False
        return [o.copy() for o in self._obs], self._state.copy()

    def _reset_copy(self, k: int, seed: int | None) -> None:
        env = self.copies[k]
        obs, infos = _reset_result(env.reset(seed=seed))
        # PettingZoo lets an episode start with some of possible_agents only
        live = set(getattr(env, "agents", self.possible_agents))
        self._active[k] = [a in live for a in self.possible_agents]
        if not self._active[k].any():
            raise ValueError(f"env.reset(): no agent of {self.possible_agents} is in env.agents")
        self._read_obs(k, obs, infos or {})

    def _read_obs(
        self,
        k: int,
        obs: Mapping[str, Any],
        infos: Mapping[str, Any],
        present: np.ndarray | None = None,
    ) -> None:
        """Row ``k`` of observations, masks and state from the env's dicts; agents not
        ``present`` (default: the active ones) get zeros."""
        from gymnasium import spaces

        present = self._active[k] if present is None else present
        for i, a in enumerate(self.possible_agents):
            if present[i] and a not in obs and a not in self._missing_said:
                self._missing_said.add(a)
                logger.warning(
                    "agent %r is in play but the env returned no observation for it: it is "
                    "filled with zeros (a ParallelEnv returns one for every agent that acted, "
                    "also on its last step); said once",
                    a,
                )
            if not present[i] or a not in obs:
                self._obs[i][k] = 0.0
                if self._masks[i] is not None:
                    self._masks[i][k] = True
                continue
            o = obs[a]
            mask = None
            if self._obs_has_mask[i]:
                if not isinstance(o, Mapping):
                    raise ValueError(
                        f"observation of agent {a!r}: expected a dict with 'action_mask' (its "
                        f"observation_space is a Dict), got {type(o).__name__}"
                    )
                mask = o.get("action_mask")
                if isinstance(self._obs_space[i], spaces.Dict):
                    o = {key: v for key, v in o.items() if key != "action_mask"}
                else:
                    o = o["observation"]
            if mask is None and self._masks[i] is not None:
                mask = (infos.get(a) or {}).get("action_mask")
            try:
                self._obs[i][k] = spaces.flatten(self._obs_space[i], o)
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(
                    f"observation of agent {a!r} does not fit its observation_space "
                    f"{self._obs_space[i]} ({type(exc).__name__}: {exc})"
                ) from None
            if self._masks[i] is not None:
                m = np.ones(self.action_specs[i].n, bool) if mask is None else np.asarray(mask)
                if m.shape != (self.action_specs[i].n,):
                    raise ValueError(f"action_mask of agent {a!r}: expected shape "
                                     f"({self.action_specs[i].n},), got {m.shape}")  # fmt: skip
                m = m.astype(bool)
                if not m.any():
                    raise ValueError(f"action_mask of agent {a!r} allows no action")
                self._masks[i][k] = m
        if self._state_fn is not None:
            raw = self.copies[k].state()
            try:
                state = np.asarray(raw, np.float32).reshape(-1)
            except (TypeError, ValueError):
                raise ValueError(
                    f"env.state() must return an array of numbers, got {type(raw).__name__}"
                ) from None
            if state.shape != self._state[k].shape:
                raise ValueError(
                    f"env.state(): expected {self._state[k].size} numbers (its first call or "
                    f"state_space), got {state.size}"
                )
            self._state[k] = state
        else:
            self._state[k] = np.concatenate([o[k] for o in self._obs])

    def _env_action(self, i: int, a: np.ndarray) -> Any:
        return native_action(self._act[i], a)

    def native_spaces(self) -> list[dict[str, Any]]:
        """Per agent (``possible_agents`` order): its name, how its PettingZoo observation
        becomes the policy's input (``"obs"``: ``{"kind": "box", "shape"}``, ``{"kind":
        "discrete", "n", "start"}`` (one-hot) or ``{"kind": "other"}``, and ``"mask_in_obs"``)
        and how a policy action becomes its PettingZoo action (``"action"``: the
        :func:`native_action` spec). Used by :mod:`kl_alloc.rl.export` to predict from, and
        return, the env's own dicts."""
        from gymnasium import spaces

        out = []
        for i, a in enumerate(self.possible_agents):
            space = self._obs_space[i]
            if isinstance(space, spaces.Box):
                obs = {"kind": "box", "shape": [int(d) for d in space.shape]}
            elif isinstance(space, spaces.Discrete):
                obs = {"kind": "discrete", "n": int(space.n), "start": int(space.start)}
            else:
                obs = {"kind": "other"}
            obs["mask_in_obs"] = bool(self._obs_has_mask[i])
            act = dict(self._act[i])
            if act["kind"] == "box":
                act["shape"] = [int(d) for d in act["shape"]]
            out.append({"name": str(a), "obs": obs, "action": act})
        return out

    def _reduce(self, rewards: Mapping[str, Any]) -> float:
        values = [float(rewards[a]) for a in self.possible_agents if a in rewards]
        if not values:
            return 0.0
        if self.reward_reduce == "sum":
            return float(np.sum(values))
        if self.reward_reduce == "first":
            return values[0]
        return float(np.mean(values))

    def step(self, actions: list[np.ndarray]) -> StepResult:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        actions = check_actions(self, actions)
        n = self.num_envs
        reward = np.zeros(n, np.float64)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        final_obs = [o.copy() for o in self._obs]
        final_state = self._state.copy()
        episode_return = np.full(n, np.nan)
        episode_length = np.zeros(n, np.int64)
        for k, env in enumerate(self.copies):
            was_active = self._active[k].copy()
            acting = [a for i, a in enumerate(self.possible_agents) if was_active[i]]
            act = {a: self._env_action(i, actions[i][k])
                   for i, a in enumerate(self.possible_agents) if self._active[k, i]}  # fmt: skip
            obs, rewards, terms, truncs, infos = env.step(act)
            reward[k] = self._reduce(rewards)
            live = set(getattr(env, "agents", acting))
            for i, a in enumerate(self.possible_agents):
                done = terms.get(a) or truncs.get(a)
                if self._active[k, i] and (done or a not in live):
                    self._active[k, i] = False
                elif not was_active[i] and a in live and a in obs and not done:
                    self._active[k, i] = True  # joined the episode: it acts from the next step
            self._elapsed[k] += 1
            self._episode_return[k] += reward[k]
            if self._active[k].any():
                self._read_obs(k, obs, infos or {})
                continue
            # the episode ended: its final observations include the agents that acted last
            self._read_obs(k, obs, infos or {}, present=was_active)
            terminated[k] = all(bool(terms.get(a, False)) for a in acting)
            truncated[k] = not terminated[k]
            for o, f in zip(self._obs, final_obs, strict=True):
                f[k] = o[k]
            final_state[k] = self._state[k]
            episode_return[k] = self._episode_return[k]
            episode_length[k] = self._elapsed[k]
            self._elapsed[k] = 0
            self._episode_return[k] = 0.0
            self._reset_copy(k, None)
        ended = terminated | truncated
        for o, f in zip(self._obs, final_obs, strict=True):
            f[~ended] = o[~ended]
        final_state[~ended] = self._state[~ended]
        return StepResult(
            obs=[o.copy() for o in self._obs],
            state=self._state.copy(),
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
            final_state=final_state,
            info={"episode_return": episode_return, "episode_length": episode_length},
        )

    def action_masks(self) -> list[np.ndarray | None]:
        """Per agent: the (num_envs, n) bool mask of the current observations, or None."""
        return [None if m is None else m.copy() for m in self._masks]

    def active_agents(self) -> np.ndarray:
        """(num_envs, n_agents) bool: which agents are still in each copy's episode."""
        return self._active.copy()

    def render_frame(self, copy: int = 0) -> np.ndarray:
        """Copy ``copy``'s ``render()`` as (H, W, 3) uint8 (needs ``render_mode="rgb_array"``)."""
        if not 0 <= int(copy) < self.num_envs:
            raise ValueError(f"copy must be in [0, {self.num_envs}), got {copy}")
        if self._needs_reset:
            raise RuntimeError("call reset() before render_frame()")
        env = self.copies[int(copy)]
        return check_frame(env.render(), f"PettingZoo env {type(env).__name__}")

    def close(self) -> None:
        for c in self.copies:
            close = getattr(c, "close", None)
            if close is not None:
                close()


def _reset_result(result: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """``(observations, infos)`` of a ParallelEnv's ``reset``, or a clear error for the old API
    (observations alone)."""
    if (
        isinstance(result, tuple)
        and len(result) == 2
        and isinstance(result[0], Mapping)
        and isinstance(result[1], Mapping | None)
    ):
        return result
    raise ValueError(
        "env.reset() must return (observations, infos), two dicts keyed by agent (the "
        f"PettingZoo >= 1.22 ParallelEnv API); got {type(result).__name__}"
    )


def native_action(spec: Mapping[str, Any], a: Any) -> Any:
    """One agent's policy action ``a`` as its PettingZoo env takes it.

    ``spec["kind"] == "discrete"``: ``int(a) + start``. ``"box"`` with ``mode == "rescale"``:
    ``low + (clip(u, -1, 1) + 1) / 2 (high - low)`` on the dimensions with finite bounds
    (``finite``), ``clip(u, low, high)`` on the others; with ``mode == "clip"``: ``clip(u, low,
    high)``. The result has the space's ``shape`` and ``dtype``.
    """
    if spec["kind"] == "discrete":
        return int(a) + int(spec["start"])
    low, high = np.asarray(spec["low"], np.float64), np.asarray(spec["high"], np.float64)
    u = np.asarray(a, np.float64)
    if spec["mode"] == "rescale":
        with np.errstate(invalid="ignore"):  # inf - inf on unbounded dimensions: not used
            scaled = low + (np.clip(u, -1.0, 1.0) + 1.0) * 0.5 * (high - low)
        u = np.where(np.asarray(spec["finite"], bool), scaled, np.clip(u, low, high))
    else:
        u = np.clip(u, low, high)
    dtype = np.dtype(spec["dtype"])
    if np.issubdtype(dtype, np.integer):
        u = np.rint(u)  # the nearest integer (a cast would cut 3.9 to 3: biased low)
    return u.reshape(tuple(spec["shape"])).astype(dtype)


def pettingzoo_env(
    env_fn: str,
    num_envs: int = 8,
    seed: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    reward_reduce: str = "mean",
    box_actions: str = "rescale",
    copy_offset: int = 0,
    render_mode: str | None = None,
    state: str = "auto",
) -> PettingZooEnv:
    """The ``--env pettingzoo`` factory: ``env_fn`` is a ``"package.module:attr"`` callable
    returning a ``ParallelEnv`` (e.g. ``mpe2.simple_spread_v3:parallel_env``); ``copy_offset``
    and ``state`` as in :class:`PettingZooEnv` (``--set 'env_kwargs={"state": "obs"}'``)."""
    try:
        import pettingzoo  # noqa: F401
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    if not env_fn:
        raise ValueError("env_fn: give the ParallelEnv factory, e.g. --env-fn pkg.module:make")
    return PettingZooEnv(
        env_fn,
        num_envs,
        seed,
        env_kwargs,
        reward_reduce,
        box_actions,
        copy_offset=copy_offset,
        render_mode=render_mode,
        state=state,
    )
