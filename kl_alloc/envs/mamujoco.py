"""Multi-Agent MuJoCo (Gymnasium-Robotics ``mamujoco_v1``) behind :class:`MultiAgentEnv`.

``MaMuJoCoEnv("Ant", "2x4", num_envs=20, seed=0)`` holds ``num_envs`` independent copies of
``mamujoco_v1.parallel_env("Ant", "2x4")`` in this process and steps them in one tight loop, so
the trainer does one batched policy forward per agent per step across all copies.

Agents are ``env.possible_agents`` in order (``agent_0, agent_1, ...``): ``obs[i]``,
``action_specs[i]`` and ``actions[i]`` all refer to ``possible_agents[i]``. The global state for
the critic is ``env.state()``, the full single-agent v5 observation.

Semantics are exactly those of the parallel env (the tests compare the two bit for bit); the
default ``backend="fast"`` only removes per-step overhead:

- actions are clipped to the bounds and scattered into the single-agent action with precomputed
  index arrays (what ``map_local_actions_to_global_action`` does with dicts and loops), then the
  underlying MuJoCo env is stepped directly;
- per-agent observations are gathered from the state with the package's own
  ``observation_factorization`` (one fancy index per agent for all copies at once) when that
  mapping reproduces ``build_obs`` exactly, which is checked at construction on a randomised
  probe; otherwise (Walker2d, whose state clips velocities that the local observations do not)
  they are gathered from the unclipped joint positions and velocities when the batch step below
  is on and that gather is exact (also probe-checked), else ``build_obs`` is called per copy, as
  the parallel env does;
- each copy's MuJoCo env is stepped by :mod:`kl_alloc.envs.mamujoco_fast` where it handles the
  robot (Ant, HalfCheetah, Walker2d, Hopper of Gymnasium 1.4): the physics per copy exactly as
  Gymnasium's ``do_simulation``, then rewards, terminations and state vectors of all copies at
  once in numpy, bit for bit what each copy's own ``step`` returns; ``batch_step=False`` (or
  any other robot or setting) calls each copy's ``step`` instead;
- the episode step counter lives here: reaching ``max_episode_steps`` is *truncation*, the robot
  falling over (the env's own unhealthy check) is *termination*; if both happen on the same step,
  termination wins (no bootstrap).

Rendering (``render_mode="rgb_array"``, what ``kl-alloc evaluate --video`` builds): the
single-agent MuJoCo env's own renderer (Gymnasium's ``MujocoRenderer``, 480 x 480 unless
``width``/``height`` are passed), headless through EGL: ``MUJOCO_GL`` is set to ``"egl"`` unless
the user has set it (``"osmesa"`` needs libOSMesa, ``"glfw"`` a display). The free camera of
Gymnasium's default view follows the robot's root body in the ground plane (its look-at point is
moved to the body's x, y before each frame), so a walking robot stays in the picture. A render
env draws without multisampling and with a 1024 x 1024 shadow map instead of MuJoCo's 4 x and
4096 x 4096 (``model.vis.quality``: pictures only, never the physics): with a software
OpenGL (Mesa llvmpipe, what a machine without a GPU has) that is 0.1 s a 480 x 480 frame instead of
0.5 s (measured here on a loaded 2-core machine). ``render_fps`` is the env's ``1 / dt`` (Ant: 20).

``backend="parallel"`` calls ``parallel_env.step``/``reset``/``state`` with dicts per copy: the
package API itself, kept as the reference the fast path is tested against.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from kl_alloc.envs._quiet import MujocoWarningsToLog, stderr_to_log
from kl_alloc.envs.base import (
    ActionSpec,
    MultiAgentEnv,
    RenderError,
    StepResult,
    check_actions,
    check_frame,
)
from kl_alloc.envs.mamujoco_fast import joint_obs_index, make_batch_step

__all__ = ["BUILTIN_CONFIGS", "MaMuJoCoEnv"]

INSTALL_HINT = 'Multi-Agent MuJoCo needs the MuJoCo extra: pip install "kl_alloc[mujoco]"'

#: Built-in agent partitions of gymnasium-robotics 1.4 (``obsk.get_parts_and_edges``); ``None``
#: means one agent controlling everything. ManySegment* take any ``"{agents}x{segments}"``.
#: CoupledHalfCheetah is left out: its observation code indexes ``data.ten_J`` as a dense matrix
#: and fails with the MuJoCo in use here (``IndexError`` inside gymnasium-robotics 1.4.2).
BUILTIN_CONFIGS: dict[str, tuple[str | None, ...]] = {
    "Ant": ("2x4", "2x4d", "4x2", None),
    "HalfCheetah": ("2x3", "6x1", None),
    "Hopper": ("3x1", None),
    "Walker2d": ("2x3", None),
    "Humanoid": ("9|8", None),
    "HumanoidStandup": ("9|8", None),
    "Swimmer": ("2x1", None),
    "Reacher": ("2x1", None),
    "Pusher": ("3p", None),
    "ManySegmentSwimmer": ("NxK",),
    "ManySegmentAnt": ("NxK",),
}

#: MjData fields derived from the integration state (kinematics, velocities, forces). The
#: integration state alone makes ``mj_step`` deterministic, but the envs also read some of these
#: *before* stepping (Ant's reward uses the torso ``xpos`` left over from the previous step, which
#: MuJoCo computed before the last integration), so a bit-for-bit resume restores them too.
_DERIVED_FIELDS = (
    "xpos", "xquat", "xmat", "xipos", "ximat", "xanchor", "xaxis",
    "geom_xpos", "geom_xmat", "site_xpos", "site_xmat", "cam_xpos", "cam_xmat",
    "light_xpos", "light_xdir", "subtree_com", "cdof", "cinert", "crb",
    "ten_length", "actuator_length", "cvel", "cdof_dot", "ten_velocity", "actuator_velocity",
    "subtree_linvel", "subtree_angmom", "qfrc_bias", "qfrc_passive", "qfrc_spring",
    "qfrc_damper", "qfrc_gravcomp", "qfrc_fluid", "actuator_force", "qfrc_actuator",
    "qfrc_smooth", "qacc_smooth", "qfrc_constraint", "qacc", "cacc", "cfrc_int", "cfrc_ext",
    "sensordata", "energy",
)  # fmt: skip

_STATE_DICT_VERSION = 1

logger = logging.getLogger("kl_alloc.envs")


def _import_mamujoco() -> Any:
    """Import ``mamujoco_v1`` quietly, or fail with the pip command that fixes it."""
    try:
        import gymnasium  # noqa: F401
        import mujoco  # noqa: F401
        import pettingzoo  # noqa: F401

        with stderr_to_log("import gymnasium_robotics"):
            from gymnasium_robotics import mamujoco_v1
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return mamujoco_v1


def _format_configs() -> str:
    return "; ".join(
        f"{scenario}: " + ", ".join(repr(c) for c in confs)
        for scenario, confs in BUILTIN_CONFIGS.items()
    )


def _validate_config(mamujoco_v1: Any, scenario: str, agent_conf: str | None) -> None:
    """Check a scenario/partition pair against the package's own table, before any build."""
    if scenario not in BUILTIN_CONFIGS:
        raise ValueError(
            f"scenario: unknown MaMuJoCo scenario {scenario!r}; valid scenarios and agent_conf "
            f"values: {_format_configs()}"
        )
    try:
        mamujoco_v1.get_parts_and_edges(scenario, agent_conf)
    except Exception as err:  # the package raises bare Exception / AssertionError
        raise ValueError(
            f"agent_conf: {agent_conf!r} is not a partition of {scenario!r} ({err}); valid "
            f"values: {', '.join(repr(c) for c in BUILTIN_CONFIGS[scenario])} "
            f"(all scenarios: {_format_configs()})"
        ) from None


def _time_limit(env: Any) -> int | None:
    """The ``TimeLimit`` of a gymnasium wrapper chain, or ``None``."""
    from gymnasium.wrappers import TimeLimit

    while env is not None:
        if isinstance(env, TimeLimit):
            return int(env._max_episode_steps)
        env = getattr(env, "env", None)
    return None


def _set_wrapper_counters(env: Any, elapsed: int) -> None:
    """Make the wrapper chain's step counter and reset flag agree with ``elapsed`` (parallel
    backend after a load)."""
    from gymnasium.wrappers import OrderEnforcing, TimeLimit

    while env is not None:
        if isinstance(env, TimeLimit):
            env._elapsed_steps = elapsed
        elif isinstance(env, OrderEnforcing):
            env._has_reset = True
        env = getattr(env, "env", None)


def _stable_node_order(env: Any) -> None:
    """Make the order of observed joints independent of memory addresses.

    The package sorts each agent's observed joints by label, iterating a ``set`` of nodes; where
    two nodes share a label (Pusher names three joints "r_wrist_roll_joint") their order, and so
    the observation layout, follows object hashes: it differs between copies and between runs.
    Sorting by (label, ids) keeps every unique-label order the package produces and fixes the rest.
    """
    k_dicts = getattr(env, "k_dicts", None)
    if k_dicts is None:  # a single agent observes the full state
        return

    def key(node: Any) -> tuple[str, ...]:
        return (node.label, str(node.qpos_ids), str(node.qvel_ids), str(node.act_ids))

    env.k_dicts = [{k: sorted(nodes, key=key) for k, nodes in d.items()} for d in k_dicts]
    if env.observation_factorization is not None:
        env.observation_factorization = env.create_observation_mapping()


def _seed_int(seq: np.random.SeedSequence) -> int:
    return int(seq.generate_state(1, np.uint64)[0])


class MaMuJoCoEnv(MultiAgentEnv):
    """``num_envs`` copies of ``mamujoco_v1.parallel_env(scenario, agent_conf, **kwargs)``.

    Args:
        scenario: the robot, e.g. ``"Ant"``, ``"HalfCheetah"``, ``"Walker2d"``, ``"Hopper"``.
        agent_conf: the partition, e.g. ``"2x4"``, ``"6x1"``, ``"2x3"``, ``"3x1"`` (see
            :data:`BUILTIN_CONFIGS`); ``None`` is a single agent controlling everything.
        num_envs: number of independent copies stepped together.
        seed: default seed of the first :meth:`reset` (``None``: fresh OS entropy).
        max_episode_steps: time limit (truncation); ``None`` keeps the env's registered limit
            (1000 for the locomotion robots, 50 for Reacher, 100 for Pusher).
        backend: ``"fast"`` (default) or ``"parallel"`` (the package API, per-step dicts).
        copy_offset: this env's copy ``k`` is copy ``copy_offset + k`` of a larger env with the
            same seed: its seeds are the ones that copy gets there, so the copies ``[a, b)`` of an
            ``n``-copy env can be stepped by an env of ``b - a`` copies with ``copy_offset=a``
            and give the same numbers (worker processes, :mod:`kl_alloc.envs.workers`).
        render_mode: ``None`` (default) or ``"rgb_array"``: :meth:`render_frame` draws a copy
            (see the module docstring).
        batch_step: ``True`` (default): with ``backend="fast"``, step the copies through
            :func:`kl_alloc.envs.mamujoco_fast.make_batch_step` when it handles the robot
            (rewards, terminations and observations of all copies at once; the same numbers);
            ``False``: call each copy's Gymnasium ``step`` (the reference the batch step is
            tested against). :attr:`batch_stepping` tells which one is in use.
        **kwargs: passed to ``parallel_env`` (``agent_obsk``, ``agent_factorization``,
            ``local_categories``, ``global_categories``) and through it to the single-agent
            Gymnasium env (``ctrl_cost_weight`` and so on).

    After each :meth:`step`, ``info["episode_return"]`` (float64, NaN for copies still running)
    and ``info["episode_length"]`` (int64, 0 for copies still running) describe the episodes that
    ended on that step.
    """

    def __init__(
        self,
        scenario: str = "Ant",
        agent_conf: str | None = "2x4",
        num_envs: int = 20,
        seed: int | None = None,
        max_episode_steps: int | None = None,
        backend: str = "fast",
        copy_offset: int = 0,
        render_mode: str | None = None,
        batch_step: bool = True,
        **kwargs: Any,
    ) -> None:
        if int(copy_offset) < 0:
            raise ValueError(f"copy_offset must be >= 0, got {copy_offset}")
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if backend not in ("fast", "parallel"):
            raise ValueError(f"backend must be 'fast' or 'parallel', got {backend!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if max_episode_steps is not None and int(max_episode_steps) < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")
        mamujoco_v1 = _import_mamujoco()
        if "agent_factorization" not in kwargs:
            _validate_config(mamujoco_v1, scenario, agent_conf)

        self.scenario = scenario
        self.agent_conf = agent_conf
        self.num_envs = int(num_envs)
        self.backend = backend
        self.copy_offset = int(copy_offset)
        self._seed = seed
        if "gym_env" in kwargs:
            raise ValueError("gym_env: one env object would be shared by all copies; unsupported")
        if max_episode_steps is not None:
            # also the wrapper's own limit, so the parallel backend agrees with ours
            kwargs["max_episode_steps"] = int(max_episode_steps)
        self.render_mode = render_mode
        if render_mode is not None:
            os.environ.setdefault("MUJOCO_GL", "egl")  # headless; the user's choice wins
            logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL's import notes
            kwargs["render_mode"] = render_mode

        with MujocoWarningsToLog(logging.DEBUG):
            self.copies = [
                mamujoco_v1.parallel_env(scenario, agent_conf, **kwargs)
                for _ in range(self.num_envs)
            ]
            for copy in self.copies:
                _stable_node_order(copy)
        self._warnings = MujocoWarningsToLog(logging.WARNING)
        first = self.copies[0]
        self._raw = [c.single_agent_env.unwrapped for c in self.copies]
        self._batch = make_batch_step(self._raw) if batch_step and backend == "fast" else None
        self.render_fps = float(self._raw[0].metadata.get("render_fps") or 1.0 / self._raw[0].dt)
        if render_mode is not None:
            for raw in self._raw:  # read when the GL context is made (first frame)
                raw.model.vis.quality.offsamples = 0
                raw.model.vis.quality.shadowsize = 1024

        self.possible_agents: list[str] = list(first.possible_agents)
        self.n_agents = len(self.possible_agents)
        self.obs_sizes = [int(first.observation_space(a).shape[0]) for a in self.possible_agents]
        self.state_size = int(first.single_agent_env.observation_space.shape[0])
        limit = _time_limit(first.single_agent_env)
        self.max_episode_steps = int(max_episode_steps or limit or 1000)

        self._action_layout(first)

        # Per-agent observations: a gather from the state where that is exact, else build_obs.
        self._obs_index: list[np.ndarray] | None = self._exact_obs_index(first)
        # else, with the batch step: a gather from the unclipped [qpos, qvel] where that is exact
        self._joint_index = (
            joint_obs_index(first) if self._obs_index is None and self._batch is not None else None
        )

        n = self.num_envs
        self._global_action = np.zeros((n, self._act_dim), dtype=np.float64)
        self._state = np.zeros((n, self.state_size), dtype=np.float32)
        self._obs = [np.zeros((n, size), dtype=np.float32) for size in self.obs_sizes]
        self._elapsed = np.zeros(n, dtype=np.int64)
        self._episode_return = np.zeros(n, dtype=np.float64)
        self._needs_reset = True
        self._seeded = False
        self.seed_entropy: int | None = None

    # ------------------------------------------------------------------ construction helpers

    def _action_layout(self, first: Any) -> None:
        """Agent i's j-th action is the single-agent action ``act_ids[i][j]``; bounds per agent."""
        single_space = first.single_agent_env.action_space
        self._act_dim = int(single_space.shape[0])
        if first.agent_obsk is None:  # agent_conf=None: one agent, identity layout
            self._act_ids = [np.arange(self._act_dim)]
        else:
            self._act_ids = [
                np.array([node.act_ids for node in part], dtype=np.int64)
                for part in first.agent_action_partitions
            ]
        covered = np.sort(np.concatenate(self._act_ids))
        if not np.array_equal(covered, np.arange(self._act_dim)):
            raise ValueError(
                f"agent partition of {self.scenario!r} {self.agent_conf!r} does not cover each "
                f"of the {self._act_dim} actuators exactly once"
            )
        low = np.asarray(single_space.low, dtype=np.float64)
        high = np.asarray(single_space.high, dtype=np.float64)
        self._low = [low[ids] for ids in self._act_ids]
        self._high = [high[ids] for ids in self._act_ids]
        self.action_specs = [
            ActionSpec.continuous(len(ids), low=lo.astype(np.float32), high=hi.astype(np.float32))
            for ids, lo, hi in zip(self._act_ids, self._low, self._high, strict=True)
        ]

    def _exact_obs_index(self, env: Any) -> list[np.ndarray] | None:
        """Index arrays with ``state[idx_i] == build_obs(agent i)``, if that holds exactly.

        The package's ``observation_factorization`` is built by running ``build_obs`` on index
        arrays, which is blind to value transforms: Walker2d's state clips joint velocities to
        [-10, 10] while the local observations do not. So the mapping is checked on a probe:
        every field the observations read is filled with values over six orders of magnitude
        (clipping at any threshold shows up), and the gather must equal ``build_obs``. The data
        are reset afterwards.
        """
        import mujoco

        factorization = env.observation_factorization
        if factorization is None:  # Reacher, Pusher: no observation structure
            return None
        index = [np.asarray(factorization[a], dtype=np.int64) for a in self.possible_agents]
        raw = env.single_agent_env.unwrapped
        data = raw.data
        rng = np.random.default_rng(0)
        exact = True
        for _ in range(3):
            for name in ("qpos", "qvel", "act", "cinert", "cvel", "qfrc_actuator", "cfrc_ext"):
                field = getattr(data, name)
                if field.size:
                    field[...] = rng.standard_normal(field.shape) * 10.0 ** rng.uniform(
                        -3, 3, field.shape
                    )
            state = np.asarray(raw._get_obs(), dtype=np.float64)
            for i, idx in enumerate(index):
                local = np.asarray(env._get_obs_agent(i), dtype=np.float64)
                if idx.shape != local.shape or not np.array_equal(state[idx], local):
                    exact = False
        mujoco.mj_resetData(raw.model, data)
        mujoco.mj_forward(raw.model, data)
        if not exact:
            logger.debug(
                "%s %s: state gather differs from build_obs; building observations per copy",
                self.scenario,
                self.agent_conf,
            )
            return None
        return index

    @property
    def batch_stepping(self) -> bool:
        """Whether :meth:`step` uses :mod:`kl_alloc.envs.mamujoco_fast` (else each copy's
        Gymnasium ``step``)."""
        return self._batch is not None

    @property
    def fast_observations(self) -> bool:
        """Whether per-agent observations are gathered from the state (else ``build_obs``)."""
        return self._obs_index is not None

    # ------------------------------------------------------------------ interface

    def reset(self, seed: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """Reset every copy.

        With a seed (or, on the first call, the constructor's seed), copy ``k`` is reset with a
        seed spawned from ``np.random.SeedSequence(seed)`` (its child number
        ``copy_offset + k``, what ``spawn`` gives) and its action spaces are seeded from the
        same child. Without one, each copy continues its own generator, like the automatic
        resets inside :meth:`step`. A copy's numbers thus depend on the seed and its own global
        index only, never on how many copies this env holds.
        """
        if seed is None and not self._seeded:
            seed = self._seed
        if seed is not None or not self._seeded:
            root = np.random.SeedSequence(seed)
            self.seed_entropy = root.entropy  # the seed actually used (useful when seed=None)
            env_seeds: list[int | None] = []
            children = [  # == root.spawn(copy_offset + num_envs)[copy_offset:]
                np.random.SeedSequence(root.entropy, spawn_key=(self.copy_offset + k,))
                for k in range(self.num_envs)
            ]
            for copy, child in zip(self.copies, children, strict=True):
                env_seq, space_seq = child.spawn(2)
                space_seeds = space_seq.generate_state(self.n_agents + 1, np.uint64)
                for a, s in zip(self.possible_agents, space_seeds, strict=False):
                    copy.action_space(a).seed(int(s))
                copy.single_agent_env.action_space.seed(int(space_seeds[-1]))
                env_seeds.append(_seed_int(env_seq))
            self._seeded = True
        else:
            env_seeds = [None] * self.num_envs
        with self._warnings:
            for k, env_seed in enumerate(env_seeds):
                self._reset_copy(k, seed=env_seed)
        self._elapsed[:] = 0
        self._episode_return[:] = 0.0
        self._needs_reset = False
        return self._current_obs(self._state), self._state.copy()

    def _reset_copy(self, k: int, seed: int | None = None) -> None:
        if self.backend == "parallel":
            self.copies[k].reset(seed=seed)
            self._state[k] = self.copies[k].state()
        else:
            self._state[k], _ = self._raw[k].reset(seed=seed)
        if self._obs_index is None:
            self._build_obs_row(k)

    def step(self, actions: list[np.ndarray]) -> StepResult:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        actions = check_actions(self, actions)
        clipped = [
            np.clip(a, lo, hi) for a, lo, hi in zip(actions, self._low, self._high, strict=True)
        ]
        n = self.num_envs
        reward = np.empty(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        time_up = np.zeros(n, dtype=bool)
        state = self._state
        build = self._obs_index is None

        with self._warnings:
            if self.backend == "parallel":
                first = self.possible_agents[0]
                for k, copy in enumerate(self.copies):
                    _, rewards, terms, truncs, _ = copy.step(
                        {a: clipped[i][k] for i, a in enumerate(self.possible_agents)}
                    )
                    state[k] = copy.state()
                    reward[k] = rewards[first]
                    terminated[k] = terms[first]
                    time_up[k] = truncs[first]  # the package's own TimeLimit
                    if build:
                        self._build_obs_row(k)
                self._elapsed += 1
            else:
                g = self._global_action
                for ids, a in zip(self._act_ids, clipped, strict=True):
                    g[:, ids] = a
                if self._batch is not None:
                    self._batch(g, state, reward, terminated)
                    if build and self._joint_index is not None:
                        self._batch.gather(self._obs, self._joint_index)
                    elif build:
                        for k in range(n):
                            self._build_obs_row(k)
                else:
                    for k, raw in enumerate(self._raw):
                        state[k], reward[k], terminated[k], _, _ = raw.step(g[k])
                        if build:
                            self._build_obs_row(k)
                self._elapsed += 1
                time_up = self._elapsed >= self.max_episode_steps

            # time limit = truncation (bootstrap); termination wins when both happen
            truncated = time_up & ~terminated
            ended = terminated | truncated
            self._episode_return += reward
            final_state = state.copy()
            final_obs = [o.copy() for o in self._obs] if build else None
            episode_return = np.full(n, np.nan)
            episode_length = np.zeros(n, dtype=np.int64)
            if ended.any():
                episode_return[ended] = self._episode_return[ended]
                episode_length[ended] = self._elapsed[ended]
                for k in np.flatnonzero(ended):
                    self._reset_copy(int(k))
                self._elapsed[ended] = 0
                self._episode_return[ended] = 0.0

        obs = self._current_obs(state)
        if final_obs is None:
            final_obs = self._current_obs(final_state) if ended.any() else [o.copy() for o in obs]
        return StepResult(
            obs=obs,
            state=state.copy(),
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
            final_state=final_state,
            info={"episode_return": episode_return, "episode_length": episode_length},
        )

    def observe(self) -> tuple[list[np.ndarray], np.ndarray]:
        """The current ``(obs, state)`` (what the last ``reset``/``step`` returned), e.g. to
        continue collecting after :meth:`load_state_dict`."""
        if self._needs_reset:
            raise RuntimeError("call reset() or load_state_dict() first")
        return self._current_obs(self._state), self._state.copy()

    # ------------------------------------------------------------------ rendering

    def render_frame(self, copy: int = 0) -> np.ndarray:
        """Copy ``copy``'s current picture, (H, W, 3) uint8 (``render_mode="rgb_array"``)."""
        if self.render_mode is None:
            raise RenderError("MaMuJoCoEnv: built without render_mode='rgb_array'")
        if not 0 <= int(copy) < self.num_envs:
            raise ValueError(f"copy must be in [0, {self.num_envs}), got {copy}")
        raw = self._raw[int(copy)]
        viewer = raw.mujoco_renderer.viewer
        if viewer is not None:  # follow the root body in the ground plane
            viewer.cam.lookat[:2] = raw.data.xpos[1][:2]
        try:
            with self._warnings:
                frame = raw.render()
        except Exception as err:  # no GL: say which backend failed and the alternatives
            raise RenderError(
                f"MaMuJoCo rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} "
                f"({type(err).__name__}: {err}); egl needs libEGL, osmesa libOSMesa, glfw a "
                "display"
            ) from err
        return check_frame(frame, f"MaMuJoCo {self.scenario}")

    # ------------------------------------------------------------------ observations

    def _current_obs(self, state: np.ndarray) -> list[np.ndarray]:
        if self._obs_index is not None:
            return [state[:, idx] for idx in self._obs_index]
        return [o.copy() for o in self._obs]

    def _build_obs_row(self, k: int) -> None:
        """``build_obs`` for every agent of copy ``k`` (what ``parallel_env`` returns)."""
        copy = self.copies[k]
        for i in range(self.n_agents):
            self._obs[i][k] = copy._get_obs_agent(i)

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Physics (MuJoCo integration state plus derived fields), RNG states (each copy's env
        generator and action spaces), episode counters and the current observations."""
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        copies = []
        for copy, raw in zip(self.copies, self._raw, strict=True):
            model, data = raw.model, raw.data
            physics = np.empty(mujoco.mj_stateSize(model, spec), dtype=np.float64)
            mujoco.mj_getState(model, data, physics, spec)
            copies.append(
                {
                    "physics": physics,
                    "derived": {
                        name: np.array(getattr(data, name))
                        for name in _DERIVED_FIELDS
                        if hasattr(data, name)
                    },
                    "np_random": raw.np_random.bit_generator.state,
                    "np_random_seed": getattr(raw, "_np_random_seed", None),
                    "action_spaces": [
                        copy.action_space(a).np_random.bit_generator.state
                        for a in self.possible_agents
                    ],
                    "single_action_space": (
                        copy.single_agent_env.action_space.np_random.bit_generator.state
                    ),
                }
            )
        return {
            "version": _STATE_DICT_VERSION,
            "scenario": self.scenario,
            "agent_conf": self.agent_conf,
            "num_envs": self.num_envs,
            "max_episode_steps": self.max_episode_steps,
            "needs_reset": self._needs_reset,
            "seeded": self._seeded,
            "elapsed": self._elapsed.copy(),
            "episode_return": self._episode_return.copy(),
            "state": self._state.copy(),
            "obs": [o.copy() for o in self._obs],
            "copies": copies,
        }

    #: the per-copy entries of a state_dict (leading axis / list index = copy)
    _PER_COPY = ("elapsed", "episode_return", "state")

    @classmethod
    def merge_state_dicts(cls, states: list[dict[str, Any]]) -> dict[str, Any]:
        """The :meth:`state_dict` of one env holding the copies of ``states`` in order (what
        env worker processes give back: the same bytes as the one-process env's)."""
        first = states[0]
        merged = dict(first)
        merged["num_envs"] = sum(int(s["num_envs"]) for s in states)
        merged["needs_reset"] = any(s["needs_reset"] for s in states)
        merged["seeded"] = all(s["seeded"] for s in states)
        for key in cls._PER_COPY:
            merged[key] = np.concatenate([s[key] for s in states])
        merged["obs"] = [
            np.concatenate([s["obs"][i] for s in states]) for i in range(len(first["obs"]))
        ]
        merged["copies"] = [c for s in states for c in s["copies"]]
        return merged

    @classmethod
    def split_state_dict(
        cls, state: dict[str, Any], bounds: list[tuple[int, int]]
    ) -> list[dict[str, Any]]:
        """Inverse of :meth:`merge_state_dicts`: the states of copies ``[a, b)`` per bound."""
        if bounds[-1][1] != int(state["num_envs"]):
            raise ValueError(
                f"state: saved with {state['num_envs']} copies, split into {bounds[-1][1]}"
            )
        out = []
        for lo, hi in bounds:
            part = dict(state)
            part["num_envs"] = hi - lo
            for key in cls._PER_COPY:
                part[key] = np.array(state[key][lo:hi])
            part["obs"] = [np.array(o[lo:hi]) for o in state["obs"]]
            part["copies"] = state["copies"][lo:hi]
            out.append(part)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import mujoco

        if state.get("version") != _STATE_DICT_VERSION:
            raise ValueError(f"state: unsupported state_dict version {state.get('version')!r}")
        for key in ("scenario", "agent_conf", "num_envs"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"state: saved {key}={state[key]!r} but this env has {getattr(self, key)!r}"
                )
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        for k, (copy, raw, saved) in enumerate(
            zip(self.copies, self._raw, state["copies"], strict=True)
        ):
            model, data = raw.model, raw.data
            physics = np.asarray(saved["physics"], dtype=np.float64)
            if physics.shape != (mujoco.mj_stateSize(model, spec),):
                raise ValueError(f"state: copy {k} physics has the wrong size {physics.shape}")
            mujoco.mj_setState(model, data, physics, spec)
            for name, value in saved["derived"].items():
                field = getattr(data, name, None)
                if field is not None and field.shape == np.shape(value):
                    field[...] = value
            raw.np_random.bit_generator.state = saved["np_random"]  # (created if never seeded)
            if hasattr(raw, "_np_random_seed"):
                raw._np_random_seed = saved["np_random_seed"]
            for a, rng_state in zip(self.possible_agents, saved["action_spaces"], strict=True):
                copy.action_space(a).np_random.bit_generator.state = rng_state
            copy.single_agent_env.action_space.np_random.bit_generator.state = saved[
                "single_action_space"
            ]
            _set_wrapper_counters(copy.single_agent_env, int(state["elapsed"][k]))
            copy.agents = list(copy.possible_agents)
        self.max_episode_steps = int(state["max_episode_steps"])
        self._elapsed[:] = state["elapsed"]
        self._episode_return[:] = state["episode_return"]
        self._state[:] = state["state"]
        for o, saved_obs in zip(self._obs, state["obs"], strict=True):
            o[:] = saved_obs
        self._needs_reset = bool(state["needs_reset"])
        self._seeded = bool(state["seeded"])

    def close(self) -> None:
        for copy in self.copies:
            copy.close()
