"""The batch step (kl_alloc.envs.mamujoco_fast) against each copy's own Gymnasium ``step``.

Two adapters with the same seed, one with ``batch_step=True`` (the default) and one with
``batch_step=False``, get the same random actions (a little outside the bounds, so clipping
is exercised) for a few hundred steps, through terminations (the robot falls), truncations (a
short time limit) and the automatic resets; every step, observations, states, rewards and the
termination/truncation flags must be equal bit for bit (``np.array_equal``, no tolerance).
"""

from __future__ import annotations

import numpy as np
import pytest

from kl_alloc.envs.mamujoco import MaMuJoCoEnv
from kl_alloc.envs.mamujoco_fast import VERIFIED_GYMNASIUM, joint_obs_index

pytestmark = pytest.mark.mujoco

gymnasium = pytest.importorskip("gymnasium")
if ".".join(gymnasium.__version__.split(".")[:2]) not in VERIFIED_GYMNASIUM:
    pytest.skip(
        f"the batch step is verified for gymnasium {VERIFIED_GYMNASIUM}, not "
        f"{gymnasium.__version__} (the adapter steps each copy)",
        allow_module_level=True,
    )

#: scenario, agent_conf, time limit, extra env kwargs, must see a termination (the time limits
#: are short enough for random actions to reach them: Walker2d and Hopper fall within ~20 steps)
CASES = [
    ("Ant", "2x4", 40, {}, True),
    ("HalfCheetah", "6x1", 40, {}, False),
    ("Walker2d", "2x3", 12, {}, True),
    ("Hopper", "3x1", 12, {}, True),
    # non-default constructor arguments are read from the env objects, not assumed
    ("Ant", "2x4", 40, {"ctrl_cost_weight": 0.3, "contact_cost_weight": 2e-3,
                        "healthy_z_range": (0.3, 0.95), "healthy_reward": 0.5}, True),
    ("Walker2d", "2x3", 12, {"healthy_angle_range": (-0.5, 0.5),
                             "forward_reward_weight": 2.0}, True),
]  # fmt: skip


def equal(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("scenario,conf,limit,extra,falls", CASES)
def test_batch_step_equals_per_copy_step(scenario, conf, limit, extra, falls):
    n, steps = 4, 300
    kwargs = dict(num_envs=n, seed=11, max_episode_steps=limit, **extra)
    fast = MaMuJoCoEnv(scenario, conf, **kwargs)
    ref = MaMuJoCoEnv(scenario, conf, batch_step=False, **kwargs)
    assert fast.batch_stepping and not ref.batch_stepping
    # Walker2d: per-agent observations gathered from [qpos, qvel] instead of build_obs per copy
    assert (fast._joint_index is not None) == (not fast.fast_observations)
    obs_f, state_f = fast.reset()
    obs_r, state_r = ref.reset()
    assert equal(state_f, state_r)
    rng = np.random.default_rng(2)
    terminations = truncations = 0
    for t in range(steps):
        actions = [
            rng.uniform(-1.3, 1.3, (n, spec.dim)).astype(np.float32) for spec in fast.action_specs
        ]
        a, b = fast.step(actions), ref.step(actions)
        where = f"{scenario} {conf} step {t}"
        for name in ("state", "final_state", "reward", "terminated", "truncated"):
            assert equal(getattr(a, name), getattr(b, name)), f"{where}: {name}"
        for name in ("obs", "final_obs"):
            for i, (x, y) in enumerate(zip(getattr(a, name), getattr(b, name), strict=True)):
                assert equal(x, y), f"{where}: {name}[{i}]"
        for key in ("episode_return", "episode_length"):
            np.testing.assert_array_equal(a.info[key], b.info[key], err_msg=f"{where}: {key}")
        terminations += int(a.terminated.sum())
        truncations += int(a.truncated.sum())
    assert truncations >= n, "the time-limit path was not compared"
    if falls:
        assert terminations >= n, "the falling-over path was not compared"
    # the two adapters' checkpoints agree too (physics, RNG streams, counters)
    sa, sb = fast.state_dict(), ref.state_dict()
    assert equal(sa["elapsed"], sb["elapsed"]) and equal(sa["state"], sb["state"])
    for ca, cb in zip(sa["copies"], sb["copies"], strict=True):
        assert equal(ca["physics"], cb["physics"])
        assert ca["np_random"] == cb["np_random"]
        for name, value in ca["derived"].items():
            assert equal(value, cb["derived"][name]), name


def test_batch_step_resumes_a_per_copy_checkpoint():
    """A checkpoint written by the per-copy step continues identically under the batch step."""
    n = 3
    ref = MaMuJoCoEnv("Ant", "2x4", num_envs=n, seed=0, max_episode_steps=30, batch_step=False)
    ref.reset()
    rng = np.random.default_rng(0)
    for _ in range(37):
        ref.step([rng.uniform(-1, 1, (n, s.dim)).astype(np.float32) for s in ref.action_specs])
    fast = MaMuJoCoEnv("Ant", "2x4", num_envs=n, seed=99, max_episode_steps=30)
    fast.reset()
    fast.load_state_dict(ref.state_dict())
    for t in range(40):
        actions = [rng.uniform(-1, 1, (n, s.dim)).astype(np.float32) for s in ref.action_specs]
        a, b = fast.step(actions), ref.step(actions)
        for name in ("state", "reward", "terminated", "truncated"):
            assert equal(getattr(a, name), getattr(b, name)), f"step {t}: {name}"


def test_unhandled_robots_and_settings_step_each_copy():
    assert not MaMuJoCoEnv("Swimmer", "2x1", num_envs=2, seed=0).batch_stepping
    assert not MaMuJoCoEnv("Ant", "2x4", num_envs=2, seed=0, backend="parallel").batch_stepping
    assert not MaMuJoCoEnv("Ant", "2x4", num_envs=2, seed=0, batch_step=False).batch_stepping
    assert MaMuJoCoEnv("Ant", "2x4", num_envs=2, seed=0).batch_stepping


def test_joint_gather_only_where_observations_are_joint_values():
    """Walker2d's agents observe joint positions and velocities only: a gather; Ant's agents
    also observe contact forces: not one (the adapter gathers those from the state)."""
    walker = MaMuJoCoEnv("Walker2d", "2x3", num_envs=1, seed=0)
    index = joint_obs_index(walker.copies[0])
    assert index is not None and [len(i) for i in index] == walker.obs_sizes
    assert joint_obs_index(MaMuJoCoEnv("Ant", "2x4", num_envs=1, seed=0).copies[0]) is None
