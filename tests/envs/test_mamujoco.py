"""The Multi-Agent MuJoCo adapter: interface conformance, seeding, time limits, auto-reset,
bit-for-bit resume, agreement with the package's own parallel API, and quietness."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kl_alloc.envs import registry
from kl_alloc.envs.base import MultiAgentEnv, StepResult
from kl_alloc.envs.mamujoco import MaMuJoCoEnv

pytestmark = pytest.mark.mujoco

REPO = Path(__file__).resolve().parents[2]

# scenario, agent_conf -> per-agent observation sizes, state size, per-agent action dims
HETEROGENEOUS = {
    ("Ant", "2x4"): ([63, 63], 105, [4, 4]),
    ("HalfCheetah", "6x1"): ([9, 9, 8, 9, 9, 8], 17, [1, 1, 1, 1, 1, 1]),
}


def random_actions(env: MultiAgentEnv, rng: np.random.Generator, scale: float = 1.0):
    return [
        rng.uniform(-scale, scale, (env.num_envs, s.dim)).astype(np.float32)
        for s in env.action_specs
    ]


def assert_results_equal(a: StepResult, b: StepResult, where: str = "") -> None:
    for name in ("obs", "final_obs"):
        for i, (x, y) in enumerate(zip(getattr(a, name), getattr(b, name), strict=True)):
            np.testing.assert_array_equal(x, y, err_msg=f"{where} {name}[{i}]")
    for name in ("state", "reward", "terminated", "truncated", "final_state"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"{where} {name}")
    for key in ("episode_return", "episode_length"):
        np.testing.assert_array_equal(a.info[key], b.info[key], err_msg=f"{where} info[{key}]")


@pytest.mark.parametrize("scenario,conf", list(HETEROGENEOUS))
def test_conforms_to_the_interface(scenario, conf):
    obs_sizes, state_size, dims = HETEROGENEOUS[(scenario, conf)]
    n = 3
    env = MaMuJoCoEnv(scenario, conf, num_envs=n, seed=0)
    assert isinstance(env, MultiAgentEnv)
    assert env.n_agents == len(obs_sizes) == len(env.possible_agents)
    assert env.possible_agents == [f"agent_{i}" for i in range(env.n_agents)]
    assert env.obs_sizes == obs_sizes and env.state_size == state_size
    assert [s.dim for s in env.action_specs] == dims
    for spec in env.action_specs:
        assert spec.kind == "continuous"
        np.testing.assert_array_equal(spec.low, -np.ones(spec.dim, np.float32))
        np.testing.assert_array_equal(spec.high, np.ones(spec.dim, np.float32))

    obs, state = env.reset()
    assert [o.shape for o in obs] == [(n, s) for s in obs_sizes]
    assert all(o.dtype == np.float32 for o in obs)
    assert state.shape == (n, state_size) and state.dtype == np.float32
    # the state is env.state() of each copy (the single-agent v5 observation)
    for k, copy in enumerate(env.copies):
        np.testing.assert_array_equal(state[k], copy.state().astype(np.float32))

    res = env.step(random_actions(env, np.random.default_rng(1)))
    assert isinstance(res, StepResult)
    assert [o.shape for o in res.obs] == [(n, s) for s in obs_sizes]
    assert [o.shape for o in res.final_obs] == [(n, s) for s in obs_sizes]
    assert all(o.dtype == np.float32 for o in res.obs + res.final_obs)
    assert res.state.shape == res.final_state.shape == (n, state_size)
    assert res.state.dtype == res.final_state.dtype == np.float32
    assert res.reward.shape == (n,) and res.reward.dtype == np.float64
    assert res.terminated.dtype == res.truncated.dtype == bool
    assert res.terminated.shape == res.truncated.shape == (n,)
    assert np.all(np.isfinite(res.reward))
    # the observations are those of the package's parallel env, per copy
    for k, copy in enumerate(env.copies):
        for i in range(env.n_agents):
            np.testing.assert_array_equal(res.obs[i][k], copy._get_obs_agent(i).astype(np.float32))
    env.close()


def test_same_seed_same_observations_and_copies_differ():
    a = MaMuJoCoEnv("Ant", "2x4", num_envs=3, seed=7)
    b = MaMuJoCoEnv("Ant", "2x4", num_envs=3)
    obs_a, state_a = a.reset()
    obs_b, state_b = b.reset(seed=7)
    np.testing.assert_array_equal(state_a, state_b)
    for x, y in zip(obs_a, obs_b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(state_a[0], state_a[1])  # independent streams per copy
    _, state_c = b.reset(seed=8)
    assert not np.array_equal(state_a, state_c)
    # the action spaces are seeded from the same seed (the package's reset does not do it)
    a2 = MaMuJoCoEnv("Ant", "2x4", num_envs=2, seed=7)
    a2.reset()
    samples_a = [c.action_space("agent_1").sample() for c in a.copies[:2]]
    samples_a2 = [c.action_space("agent_1").sample() for c in a2.copies]
    for x, y in zip(samples_a, samples_a2, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(samples_a[0], samples_a[1])


def test_reset_without_seed_continues_the_streams():
    env = MaMuJoCoEnv("Hopper", "3x1", num_envs=2, seed=3)
    _, first = env.reset()
    _, second = env.reset()  # no seed: new episodes, not a replay of the first
    assert not np.array_equal(first, second)
    _, again = env.reset(seed=3)
    np.testing.assert_array_equal(first, again)


def test_bad_actions_raise():
    env = MaMuJoCoEnv("HalfCheetah", "6x1", num_envs=2, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step([np.zeros((2, 1), np.float32)] * 6)
    env.reset()
    good = [np.zeros((2, 1), np.float32)] * 6
    with pytest.raises(ValueError, match="expected 6 agents"):
        env.step(good[:5])
    with pytest.raises(ValueError, match=r"actions\[2\]: expected shape \(2, 1\)"):
        env.step(good[:2] + [np.zeros((2,), np.float32)] + good[3:])
    with pytest.raises(ValueError, match=r"actions\[0\]: contains NaN"):
        env.step([np.full((2, 1), np.nan, np.float32)] + good[1:])
    with pytest.raises(ValueError, match=r"actions\[5\]: continuous actions must be numeric"):
        env.step(good[:5] + [np.array([["a"], ["b"]])])
    env.step(good)  # still usable


def test_actions_are_clipped_to_the_bounds():
    a = MaMuJoCoEnv("Ant", "2x4", num_envs=2, seed=0)
    b = MaMuJoCoEnv("Ant", "2x4", num_envs=2, seed=0)
    c = MaMuJoCoEnv("Ant", "2x4", num_envs=2, seed=0)
    for env in (a, b, c):
        env.reset()
    big = [np.full((2, 4), 5.0, np.float32), np.full((2, 4), -7.0, np.float32)]
    at_bounds = [np.ones((2, 4), np.float32), -np.ones((2, 4), np.float32)]
    inside = [np.full((2, 4), 0.5, np.float32), np.full((2, 4), -0.5, np.float32)]
    ra, rb, rc = a.step(big), b.step(at_bounds), c.step(inside)
    assert_results_equal(ra, rb)
    assert not np.array_equal(ra.state, rc.state)


def test_truncation_at_the_time_limit_resets_in_the_same_step():
    # HalfCheetah never terminates, so every episode is cut by the time limit
    limit, n = 5, 3
    env = MaMuJoCoEnv("HalfCheetah", "6x1", num_envs=n, seed=0, max_episode_steps=limit)
    twin = MaMuJoCoEnv("HalfCheetah", "6x1", num_envs=n, seed=0, max_episode_steps=limit + 10)
    env.reset()
    twin.reset()
    rng = np.random.default_rng(0)
    rewards = []
    for t in range(limit):
        actions = random_actions(env, rng)
        res, ref = env.step(actions), twin.step(actions)
        rewards.append(res.reward)
        assert not res.terminated.any()
        if t < limit - 1:
            assert not res.truncated.any()
            assert_results_equal(res, ref, f"step {t}")
            np.testing.assert_array_equal(res.final_state, res.state)
            assert np.isnan(res.info["episode_return"]).all()
    assert res.truncated.all() and not res.terminated.any()
    # final_state/final_obs are the last state of the old episode (what the twin, whose limit is
    # later, sees), obs/state are the first of a new one
    np.testing.assert_array_equal(res.final_state, ref.state)
    for fo, ro, o in zip(res.final_obs, ref.obs, res.obs, strict=True):
        np.testing.assert_array_equal(fo, ro)
        assert not np.array_equal(fo, o)
    assert not np.array_equal(res.state, ref.state)
    assert np.abs(res.state[:, 8:]).max() < 0.5  # fresh episode: velocities are reset noise
    np.testing.assert_allclose(res.info["episode_return"], np.sum(rewards, axis=0))
    np.testing.assert_array_equal(res.info["episode_length"], np.full(n, limit))
    # the next episode runs to the limit again
    for _ in range(limit - 1):
        res = env.step(random_actions(env, rng))
        assert not res.truncated.any()
    assert env.step(random_actions(env, rng)).truncated.all()


def test_falling_over_is_termination_not_truncation():
    env = MaMuJoCoEnv("Hopper", "3x1", num_envs=4, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(200):
        res = env.step(random_actions(env, rng))
        assert not res.truncated.any()  # far from the 1000-step limit
        for k in np.flatnonzero(res.terminated):
            seen += 1
            z, angle = res.final_state[k, 0], res.final_state[k, 1]
            unhealthy = z <= 0.7 or abs(angle) >= 0.2 or np.abs(res.final_state[k, 1:]).max() > 100
            assert unhealthy, res.final_state[k]
            assert res.state[k, 0] > 1.2 and abs(res.state[k, 1]) < 0.01  # standing again
            assert 0 < res.info["episode_length"][k] <= 200
    assert seen >= 3


@pytest.mark.parametrize(
    "scenario,conf,fast_obs",
    [("Ant", "2x4", True), ("HalfCheetah", "6x1", True), ("Walker2d", "2x3", False)],
)
def test_fast_backend_matches_the_parallel_env_api(scenario, conf, fast_obs):
    """The default backend (direct MuJoCo env steps, gathered observations, own time limit) is
    bit-for-bit the package's dict API, through terminations, truncations and auto-resets."""
    kwargs = dict(num_envs=3, seed=5, max_episode_steps=25)
    fast = MaMuJoCoEnv(scenario, conf, backend="fast", **kwargs)
    ref = MaMuJoCoEnv(scenario, conf, backend="parallel", **kwargs)
    assert fast.fast_observations is fast_obs
    obs_f, state_f = fast.reset()
    obs_r, state_r = ref.reset()
    np.testing.assert_array_equal(state_f, state_r)
    rng = np.random.default_rng(1)
    ended = 0
    for t in range(60):
        actions = random_actions(fast, rng, scale=1.3)
        rf, rr = fast.step(actions), ref.step(actions)
        assert_results_equal(rf, rr, f"step {t}")
        ended += int((rf.terminated | rf.truncated).sum())
    assert ended >= 3


@pytest.mark.parametrize("backend", ["fast", "parallel"])
def test_state_dict_round_trip_is_bit_for_bit(backend):
    n, limit = 3, 20
    env = MaMuJoCoEnv("Ant", "2x4", num_envs=n, seed=0, max_episode_steps=limit, backend=backend)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(27):  # mid-episode, after one auto-reset
        env.step(random_actions(env, rng))
    saved = pickle.loads(pickle.dumps(env.state_dict()))  # as through a checkpoint file

    other = MaMuJoCoEnv(
        "Ant", "2x4", num_envs=n, seed=123, max_episode_steps=limit, backend=backend
    )
    other.reset()
    other.load_state_dict(saved)
    for x, y in zip(env.observe()[0], other.observe()[0], strict=True):
        np.testing.assert_array_equal(x, y)
    ended = 0
    for t in range(45):  # crosses more auto-resets: the copies' generators must match too
        actions = random_actions(env, rng)
        ra, rb = env.step(actions), other.step(actions)
        assert_results_equal(ra, rb, f"step {t} after load")
        ended += int((ra.terminated | ra.truncated).sum())
    assert ended >= n


def test_resume_needs_the_derived_physics_fields():
    """Control for the round trip above: with only MuJoCo's integration state, Ant's first reward
    differs (it uses the torso position MuJoCo left from before the last integration)."""
    env = MaMuJoCoEnv("Ant", "2x4", num_envs=2, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(random_actions(env, rng))
    saved = env.state_dict()
    for copy in saved["copies"]:
        copy["derived"] = {}
    other = MaMuJoCoEnv("Ant", "2x4", num_envs=2, seed=1)
    other.reset()
    other.load_state_dict(saved)
    actions = random_actions(env, rng)
    ra, rb = env.step(actions), other.step(actions)
    np.testing.assert_array_equal(ra.state, rb.state)  # physics continue exactly...
    assert not np.array_equal(ra.reward, rb.reward)  # ...but the reward needs the derived fields


def test_load_state_dict_rejects_another_configuration():
    a = MaMuJoCoEnv("HalfCheetah", "6x1", num_envs=2, seed=0)
    a.reset()
    with pytest.raises(ValueError, match="num_envs"):
        MaMuJoCoEnv("HalfCheetah", "6x1", num_envs=3).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="agent_conf"):
        MaMuJoCoEnv("HalfCheetah", "2x3", num_envs=2).load_state_dict(a.state_dict())


@pytest.mark.parametrize(
    "scenario,conf,match",
    [("Ant", "3x3", r"'3x3' is not a partition of 'Ant'.*'2x4'"), ("Foo", "2x4", "unknown")],
)
def test_bad_scenario_or_partition_is_a_value_error(scenario, conf, match):
    with pytest.raises(ValueError, match=match):
        MaMuJoCoEnv(scenario, conf, num_envs=1)


@pytest.mark.parametrize(
    "scenario,conf,obs_sizes,state_size",
    [("Walker2d", "2x3", [12, 12], 17), ("Hopper", "3x1", [8, 9, 8], 11)],
)
def test_other_scenarios(scenario, conf, obs_sizes, state_size):
    env = MaMuJoCoEnv(scenario, conf, num_envs=2, seed=0)
    assert env.obs_sizes == obs_sizes and env.state_size == state_size
    assert env.max_episode_steps == 1000
    obs, state = env.reset()
    res = env.step(random_actions(env, np.random.default_rng(0)))
    assert [o.shape[1] for o in res.obs] == obs_sizes and res.state.shape == (2, state_size)


def test_missing_extra_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)  # makes the import fail
    with pytest.raises(ImportError, match=r'pip install "kl_alloc\[mujoco\]"'):
        MaMuJoCoEnv("Ant", "2x4", num_envs=1)


def test_quiet_import_and_build(tmp_path):
    """A fresh interpreter: importing, building HalfCheetah 6x1 (whose model triggers a MuJoCo
    deprecation warning) and stepping print nothing and leave no MUJOCO_LOG.TXT in the cwd."""
    script = textwrap.dedent(
        """
        import numpy as np
        from kl_alloc.envs.mamujoco import MaMuJoCoEnv
        env = MaMuJoCoEnv("HalfCheetah", "6x1", num_envs=2, seed=0)
        env.reset()
        env.step([np.zeros((2, 1), np.float32)] * 6)
        import gymnasium_robotics  # imported by now, through the adapter
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout == ""
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_quiet_in_process(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    env = MaMuJoCoEnv("HalfCheetah", "6x1", num_envs=2, seed=0)
    env.reset()
    env.step([np.zeros((2, 1), np.float32)] * 6)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_registered_as_mamujoco():
    env = registry.make_env("mamujoco", num_envs=2, seed=0, scenario="Hopper", agent_conf="3x1")
    assert isinstance(env, MaMuJoCoEnv) and env.num_envs == 2 and env.obs_sizes == [8, 9, 8]
