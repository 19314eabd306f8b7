"""One MuJoCo step of all copies of a MaMuJoCo robot, with rewards, terminations and
observations computed for every copy at once.

:class:`~kl_alloc.envs.mamujoco.MaMuJoCoEnv` (``backend="fast"``) used to call each copy's
Gymnasium ``step`` (the unwrapped v5 env); about a third of that time is Gymnasium's per-copy
Python (reward properties, ``np.clip``/``np.sum`` on small arrays, ``state_vector`` twice, the
info dict). :func:`make_batch_step` builds a :class:`BatchStep` that does exactly what that
``step`` does, in two phases:

1. physics, per copy, as ``MujocoEnv.do_simulation`` -> ``_step_mujoco_simulation``
   (``gymnasium/envs/mujoco/mujoco_env.py``): ``data.ctrl[:] = a``,
   ``mj_step(model, data, nstep=frame_skip)``, ``mj_rnePostConstraint(model, data)``; the
   fields the formulae read (``qpos``, ``qvel``, Ant's ``cfrc_ext`` and main-body ``xpos``) are
   copied into ``(n, ...)`` buffers;
2. the formulae below, vectorised over the copies (``n`` rows). Every operation is elementwise
   or a sum along a row's contiguous last axis, which numpy reduces with the same pairwise
   summation as the 1-D ``np.sum`` Gymnasium calls, so the numbers are bit for bit Gymnasium's
   (``tests/envs/test_mamujoco_fast.py`` steps both side by side and compares exactly).

Formulae (Gymnasium 1.4 ``gymnasium/envs/mujoco/<robot>_v5.py``, ``step``/``_get_rew``/
``is_healthy``/``_get_obs``). ``w_*`` are the env's constructor arguments, read from the live
env object (``_forward_reward_weight``, ``_ctrl_cost_weight``, ...), ``a`` the action (the
global action, already clipped to the bounds), ``dt = model.opt.timestep * frame_skip``:

- Ant (``ant_v5.py``): ``v = (xpos[main_body, :2]_after - xpos[main_body, :2]_before) / dt``;
  ``healthy = all(isfinite([qpos, qvel])) and z_lo <= qpos[2] <= z_hi``;
  ``cf = clip(cfrc_ext, *contact_force_range)``;
  ``reward = (v_x * w_forward + healthy * w_healthy)
  - (w_ctrl * sum(a**2) + w_contact * sum(cf**2))``;
  ``terminated = not healthy and terminate_when_unhealthy``;
  ``obs = [qpos[2:] (qpos if exclude_current_positions_from_observation is False), qvel,
  cf[1:].flatten() (if include_cfrc_ext_in_observation)]``.
- HalfCheetah (``half_cheetah_v5.py``): ``v_x = (qpos[0]_after - qpos[0]_before) / dt``;
  ``reward = w_forward * v_x - w_ctrl * sum(a**2)``; never terminates;
  ``obs = [qpos[1:] (or qpos), qvel]``.
- Walker2d (``walker2d_v5.py``): ``v_x`` as HalfCheetah; ``z, angle = qpos[1:3]``;
  ``healthy = z_lo < z < z_hi and angle_lo < angle < angle_hi``;
  ``reward = (w_forward * v_x + healthy * w_healthy) - w_ctrl * sum(a**2)``;
  ``terminated = not healthy and terminate_when_unhealthy``;
  ``obs = [qpos[1:] (or qpos), clip(qvel, -10, 10)]``.
- Hopper (``hopper_v5.py``): as Walker2d, with
  ``healthy = all(s_lo < [qpos, qvel][2:] < s_hi) and z_lo < z < z_hi
  and angle_lo < angle < angle_hi`` (``healthy_state_range``).

Per-agent observations: where the adapter cannot gather them from the state (Walker2d, whose
state clips joint velocities that the agents' observations do not), :func:`joint_obs_index`
finds index arrays into the unclipped ``[qpos, qvel]`` of a copy that reproduce the package's
``build_obs`` exactly (checked on randomised probes, as the adapter checks its state gather), and
:meth:`BatchStep.gather` fills every agent's observations of all copies with one fancy index
each instead of ``build_obs`` per agent and copy.

Reset noise, seeding and resets are not touched: resets stay the env's own ``reset``.
Only the exact Gymnasium classes above (not subclasses), Gymnasium versions in
:data:`VERIFIED_GYMNASIUM`, no ``"human"`` rendering, and copies built with the same arguments
are handled; :func:`make_batch_step` returns ``None`` otherwise and the adapter steps each copy
with its own ``step``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["VERIFIED_GYMNASIUM", "BatchStep", "joint_obs_index", "make_batch_step"]

#: Gymnasium versions (major.minor) whose v5 ``step`` code the formulae were read from.
VERIFIED_GYMNASIUM = ("1.4",)

logger = logging.getLogger("kl_alloc.envs")


class BatchStep:
    """``step`` of ``n`` copies of one Gymnasium MuJoCo v5 robot; subclasses give the formulae.

    Args:
        raws: the unwrapped Gymnasium envs, one per copy (all of the same class and arguments).
        params: the constructor arguments the formulae use (attribute name -> value).
    """

    #: env attributes (constructor arguments) the formulae read
    PARAMS: tuple[str, ...] = ()
    #: where the forward velocity comes from: "qpos0" (x of the root joint) or "body_xy"
    VELOCITY = "qpos0"

    def __init__(self, raws: list[Any], params: dict[str, Any]) -> None:
        self.p = params
        self.frame_skip = int(raws[0].frame_skip)
        self._pairs = [(raw.model, raw.data) for raw in raws]
        self._raw0 = raws[0]
        n, data = len(raws), raws[0].data
        self.n = n
        self.qpos = np.empty((n, data.qpos.size))
        self.qvel = np.empty((n, data.qvel.size))
        self.before = np.empty((n, 2) if self.VELOCITY == "body_xy" else n)
        self.after = np.empty_like(self.before)

    def simulate(self, action: np.ndarray) -> None:
        """``do_simulation(action[k], frame_skip)`` for every copy, reading the buffers."""
        import mujoco

        mj_step, post = mujoco.mj_step, mujoco.mj_rnePostConstraint
        nstep = self.frame_skip
        qpos, qvel, before = self.qpos, self.qvel, self.before
        for k, (model, data) in enumerate(self._pairs):
            before[k] = data.qpos[0]
            data.ctrl[:] = action[k]
            mj_step(model, data, nstep=nstep)
            post(model, data)
            qpos[k] = data.qpos
            qvel[k] = data.qvel
        self.after[:] = qpos[:, 0]

    def __call__(
        self, action: np.ndarray, state: np.ndarray, reward: np.ndarray, terminated: np.ndarray
    ) -> None:
        """Step every copy with ``action[k]`` (float64, ``(n, nu)``); write the observation
        (cast to ``state``'s dtype), reward and termination of copy ``k`` into row ``k``."""
        action = np.ascontiguousarray(action)  # row sums = the 1-D sums (contiguous rows)
        self.simulate(action)
        dt = self._raw0.dt
        velocity = (self.after - self.before) / dt
        ctrl_cost = self.p["_ctrl_cost_weight"] * np.sum(np.square(action), axis=1)
        self.finish(velocity, ctrl_cost, state, reward, terminated)

    def gather(self, obs: list[np.ndarray], index: list[np.ndarray]) -> None:
        """``obs[i][k] = [qpos, qvel]_k[index[i]]`` for every agent ``i`` and copy ``k`` (the
        state of the last :meth:`__call__`; :func:`joint_obs_index` gives ``index``)."""
        joints = np.concatenate([self.qpos, self.qvel], axis=1)
        for out, idx in zip(obs, index, strict=True):
            out[:] = joints[:, idx]

    def finish(
        self,
        velocity: np.ndarray,
        ctrl_cost: np.ndarray,
        state: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
    ) -> None:
        raise NotImplementedError

    def _skip(self) -> int:
        return int(bool(self.p["_exclude_current_positions_from_observation"]))


class AntBatch(BatchStep):
    """``ant_v5.AntEnv.step`` (see the module docstring)."""

    PARAMS = (
        "_forward_reward_weight",
        "_ctrl_cost_weight",
        "_contact_cost_weight",
        "_healthy_reward",
        "_main_body",
        "_terminate_when_unhealthy",
        "_healthy_z_range",
        "_contact_force_range",
        "_exclude_current_positions_from_observation",
        "_include_cfrc_ext_in_observation",
    )
    VELOCITY = "body_xy"

    def __init__(self, raws: list[Any], params: dict[str, Any]) -> None:
        super().__init__(raws, params)
        self.body = int(raws[0].data.body(params["_main_body"]).id)
        self.cfrc = np.empty((self.n, *raws[0].data.cfrc_ext.shape))

    def simulate(self, action: np.ndarray) -> None:
        import mujoco

        mj_step, post = mujoco.mj_step, mujoco.mj_rnePostConstraint
        nstep, body = self.frame_skip, self.body
        qpos, qvel, cfrc, before, after = self.qpos, self.qvel, self.cfrc, self.before, self.after
        for k, (model, data) in enumerate(self._pairs):
            before[k] = data.xpos[body, :2]
            data.ctrl[:] = action[k]
            mj_step(model, data, nstep=nstep)
            post(model, data)
            after[k] = data.xpos[body, :2]
            qpos[k] = data.qpos
            qvel[k] = data.qvel
            cfrc[k] = data.cfrc_ext

    def finish(self, velocity, ctrl_cost, state, reward, terminated) -> None:
        p, qpos, n = self.p, self.qpos, self.n
        min_z, max_z = p["_healthy_z_range"]
        healthy = (
            np.isfinite(qpos).all(axis=1)
            & np.isfinite(self.qvel).all(axis=1)
            & (min_z <= qpos[:, 2])
            & (qpos[:, 2] <= max_z)
        )
        lo, hi = p["_contact_force_range"]
        forces = np.clip(self.cfrc, lo, hi)
        contact_cost = p["_contact_cost_weight"] * np.sum(np.square(forces.reshape(n, -1)), axis=1)
        forward = velocity[:, 0] * p["_forward_reward_weight"]
        reward[:] = (forward + healthy * p["_healthy_reward"]) - (ctrl_cost + contact_cost)
        terminated[:] = ~healthy & bool(p["_terminate_when_unhealthy"])
        parts = [qpos[:, 2 * self._skip() :], self.qvel]
        if p["_include_cfrc_ext_in_observation"]:
            parts.append(forces[:, 1:].reshape(n, -1))
        np.concatenate(parts, axis=1, out=state, casting="same_kind")


class HalfCheetahBatch(BatchStep):
    """``half_cheetah_v5.HalfCheetahEnv.step`` (see the module docstring)."""

    PARAMS = (
        "_forward_reward_weight",
        "_ctrl_cost_weight",
        "_exclude_current_positions_from_observation",
    )

    def finish(self, velocity, ctrl_cost, state, reward, terminated) -> None:
        reward[:] = self.p["_forward_reward_weight"] * velocity - ctrl_cost
        terminated[:] = False
        np.concatenate(
            [self.qpos[:, self._skip() :], self.qvel], axis=1, out=state, casting="same_kind"
        )


class Walker2dBatch(BatchStep):
    """``walker2d_v5.Walker2dEnv.step`` (see the module docstring)."""

    PARAMS = (
        "_forward_reward_weight",
        "_ctrl_cost_weight",
        "_healthy_reward",
        "_terminate_when_unhealthy",
        "_healthy_z_range",
        "_healthy_angle_range",
        "_exclude_current_positions_from_observation",
    )

    def healthy(self) -> np.ndarray:
        p = self.p
        z, angle = self.qpos[:, 1], self.qpos[:, 2]
        min_z, max_z = p["_healthy_z_range"]
        min_angle, max_angle = p["_healthy_angle_range"]
        return (min_z < z) & (z < max_z) & (min_angle < angle) & (angle < max_angle)

    def finish(self, velocity, ctrl_cost, state, reward, terminated) -> None:
        p = self.p
        healthy = self.healthy()
        forward = p["_forward_reward_weight"] * velocity
        reward[:] = (forward + healthy * p["_healthy_reward"]) - ctrl_cost
        terminated[:] = ~healthy & bool(p["_terminate_when_unhealthy"])
        velocities = np.clip(self.qvel, -10, 10)  # a constant of Gymnasium's _get_obs
        np.concatenate(
            [self.qpos[:, self._skip() :], velocities], axis=1, out=state, casting="same_kind"
        )


class HopperBatch(Walker2dBatch):
    """``hopper_v5.HopperEnv.step`` (see the module docstring)."""

    PARAMS = (*Walker2dBatch.PARAMS, "_healthy_state_range")

    def healthy(self) -> np.ndarray:
        min_state, max_state = self.p["_healthy_state_range"]
        rest = np.concatenate([self.qpos, self.qvel], axis=1)[:, 2:]
        in_range = np.all((min_state < rest) & (rest < max_state), axis=1)
        return in_range & super().healthy()


def _classes() -> dict[type, type[BatchStep]]:
    from gymnasium.envs.mujoco.ant_v5 import AntEnv
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
    from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

    return {
        AntEnv: AntBatch,
        HalfCheetahEnv: HalfCheetahBatch,
        Walker2dEnv: Walker2dBatch,
        HopperEnv: HopperBatch,
    }


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b))) and type(a) is type(b)
    except (TypeError, ValueError):
        return False


def joint_obs_index(env: Any) -> list[np.ndarray] | None:
    """Index arrays ``idx_i`` with ``[qpos, qvel][idx_i] == env._get_obs_agent(i)`` for every
    agent of the MaMuJoCo parallel env ``env``, or ``None`` where its observations are not such
    a gather (other fields, transforms).

    The positions are read off a probe whose ``qpos``/``qvel`` entries are all different and
    whose other fields the observations may read (``act``, ``cinert``, ``cvel``,
    ``qfrc_actuator``, ``cfrc_ext``) are NaN; then three probes with every field random over six
    orders of magnitude must give the gather exactly. The data are reset afterwards
    (``mj_resetData`` + ``mj_forward``, what the adapter's own probe leaves).
    """
    import mujoco

    if getattr(env, "agent_obsk", None) is None:
        return None
    raw = env.single_agent_env.unwrapped
    data = raw.data
    nq, nv = data.qpos.size, data.qvel.size
    others = ("act", "cinert", "cvel", "qfrc_actuator", "cfrc_ext")
    agents = range(len(env.possible_agents))
    index: list[np.ndarray] | None = []
    try:
        for name in others:
            getattr(data, name)[...] = np.nan
        data.qpos[:] = 1.0 + np.arange(nq)
        data.qvel[:] = -1.0 - np.arange(nv)
        joints = np.concatenate([data.qpos, data.qvel])
        for i in agents:
            local = np.asarray(env._get_obs_agent(i))
            hits = local[:, None] == joints[None, :] if local.ndim == 1 else None
            if hits is None or local.dtype != np.float64 or not hits.any(axis=1).all():
                index = None
                break
            index.append(np.argmax(hits, axis=1))
        rng = np.random.default_rng(0)
        for _ in range(3 if index is not None else 0):
            for name in ("qpos", "qvel", *others):
                field = getattr(data, name)
                if field.size:
                    field[...] = rng.standard_normal(field.shape) * 10.0 ** rng.uniform(
                        -3, 3, field.shape
                    )
            joints = np.concatenate([data.qpos, data.qvel])
            for i, idx in zip(agents, index, strict=True):
                if not np.array_equal(joints[idx], np.asarray(env._get_obs_agent(i))):
                    index = None
                    break
            if index is None:
                break
    finally:
        mujoco.mj_resetData(raw.model, data)
        mujoco.mj_forward(raw.model, data)
    return index


def make_batch_step(raws: list[Any]) -> BatchStep | None:
    """A :class:`BatchStep` for these unwrapped envs (one per copy), or ``None`` when they are
    not a robot and setting handled here (the caller then steps each copy itself); the reason
    is logged at DEBUG level."""
    import gymnasium

    def no(reason: str) -> None:
        logger.debug("MaMuJoCo batch step off: %s; stepping each copy", reason)

    version = ".".join(gymnasium.__version__.split(".")[:2])
    if version not in VERIFIED_GYMNASIUM:
        return no(f"gymnasium {gymnasium.__version__} not in {VERIFIED_GYMNASIUM}")
    cls = type(raws[0])
    batch = _classes().get(cls)
    if batch is None:
        return no(f"{cls.__module__}.{cls.__qualname__} is not handled")
    if any(type(raw) is not cls for raw in raws):
        return no("copies of different classes")
    if any(raw.render_mode == "human" for raw in raws):
        return no("render_mode='human' renders inside step")
    params = {}
    for name in batch.PARAMS:
        values = [getattr(raw, name, None) for raw in raws]
        if values[0] is None or not all(_same(values[0], v) for v in values[1:]):
            return no(f"{name} missing or different between copies")
        params[name] = values[0]
    if len({int(raw.frame_skip) for raw in raws}) != 1 or len({raw.dt for raw in raws}) != 1:
        return no("frame_skip or timestep different between copies")
    return batch(raws, params)
