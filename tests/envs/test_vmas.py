"""The VMAS adapter: one batched vmas env behind the vectorised numpy interface."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("vmas", reason='needs the vmas extra: pip install "kl_alloc[vmas]"')
torch = pytest.importorskip("torch")

from kl_alloc.envs.base import MultiAgentEnv, StepResult  # noqa: E402
from kl_alloc.envs.vmas import VMASEnv  # noqa: E402

#: measured sizes (also in the module docs and docs/envs.md): obs sizes, continuous action dims,
#: discrete action counts
SIZES = {
    "balance": ([16, 16, 16], [2, 2, 2], [9, 9, 9]),
    "simple_speaker_listener": ([3, 11], [5, 2], [27, 9]),
    "het_mass": ([4, 4], [2, 2], [9, 9]),
}


def random_actions(env: VMASEnv, rng: np.random.Generator, scale: float = 1.0) -> list:
    return [
        rng.integers(0, s.n, env.num_envs)
        if s.is_discrete
        else rng.uniform(-scale, scale, (env.num_envs, s.dim))
        for s in env.action_specs
    ]


@pytest.mark.parametrize("scenario", list(SIZES))
@pytest.mark.parametrize("continuous", [True, False])
def test_conforms_to_the_interface(scenario, continuous):
    obs_sizes, dims, counts = SIZES[scenario]
    env = VMASEnv(scenario, num_envs=3, seed=0, continuous_actions=continuous)
    assert isinstance(env, MultiAgentEnv)
    assert env.n_agents == len(obs_sizes) and env.obs_sizes == obs_sizes
    assert env.state_size == sum(obs_sizes)
    if continuous:
        assert [s.dim for s in env.action_specs] == dims
    else:
        assert [s.n for s in env.action_specs] == counts
    obs, state = env.reset()
    assert [o.shape for o in obs] == [(3, s) for s in obs_sizes]
    assert all(o.dtype == np.float32 for o in obs)
    assert state.dtype == np.float32 and state.shape == (3, sum(obs_sizes))
    np.testing.assert_array_equal(state, np.concatenate(obs, axis=1))
    res = env.step(random_actions(env, np.random.default_rng(0)))
    assert isinstance(res, StepResult)
    assert res.reward.dtype == np.float64 and res.reward.shape == (3,)
    assert res.terminated.dtype == bool and res.truncated.dtype == bool
    assert [o.shape for o in res.final_obs] == [(3, s) for s in obs_sizes]
    assert res.final_state.shape == state.shape
    assert np.all(np.isnan(res.info["episode_return"]))  # nothing ended on the first step


def test_speaker_action_bounds_include_the_communication_part():
    env = VMASEnv("simple_speaker_listener", num_envs=2, seed=0)
    speaker, listener = env.action_specs
    np.testing.assert_array_equal(speaker.low, [-1, -1, 0, 0, 0])
    np.testing.assert_array_equal(speaker.high, [1, 1, 1, 1, 1])
    np.testing.assert_array_equal(listener.low, [-1, -1])
    env.reset()
    env.step(random_actions(env, np.random.default_rng(0), scale=5.0))  # clipped, vmas accepts


def test_bad_actions_and_arguments_raise():
    env = VMASEnv("simple_speaker_listener", num_envs=2, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(random_actions(env, np.random.default_rng(0)))
    env.reset()
    with pytest.raises(ValueError, match=r"actions\[1\]"):
        env.step([np.zeros((2, 5)), np.zeros((2, 3))])
    with pytest.raises(ValueError, match="NaN"):
        env.step([np.full((2, 5), np.nan), np.zeros((2, 2))])
    with pytest.raises(ValueError, match="not_a_scenario"):
        VMASEnv("not_a_scenario", num_envs=1)
    with pytest.raises(ValueError, match="continuous_actions"):
        VMASEnv("simple_speaker_listener", num_envs=1, continuous_actions="False")
    with pytest.raises(ValueError, match="reward"):
        VMASEnv("simple_speaker_listener", num_envs=1, reward="max")
    with pytest.raises(ValueError, match="max_steps"):
        VMASEnv("simple_speaker_listener", num_envs=1, max_steps=0)


def play(env: VMASEnv, steps: int, seed: int = 1) -> list[np.ndarray]:
    if env._needs_reset:
        env.reset()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        res = env.step(random_actions(env, rng))
        out += [res.reward, res.state, res.final_state]
    return out


def test_same_seed_same_trajectory_even_interleaved():
    a = VMASEnv("simple_speaker_listener", num_envs=4, seed=7, max_steps=5)
    b = VMASEnv("simple_speaker_listener", num_envs=4, seed=7, max_steps=5)
    c = VMASEnv("simple_speaker_listener", num_envs=4, seed=8, max_steps=5)
    np.testing.assert_array_equal(a.reset()[1], b.reset()[1])
    assert not np.array_equal(a.observe()[1], c.reset()[1])
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(12):  # interleaved: each env keeps its own generators across resets
        ra = a.step(random_actions(a, rng_a))
        c.step(random_actions(c, np.random.default_rng(2)))
        rb = b.step(random_actions(b, rng_b))
        np.testing.assert_array_equal(ra.state, rb.state)
        np.testing.assert_array_equal(ra.reward, rb.reward)
    # a new reset seed restarts the stream
    np.testing.assert_array_equal(a.reset(seed=3)[1], b.reset(seed=3)[1])
    for x, y in zip(play(a, 7), play(b, 7), strict=True):
        np.testing.assert_array_equal(x, y)


def test_time_limit_is_truncation_and_resets_in_the_same_step():
    env = VMASEnv("simple_speaker_listener", num_envs=3, seed=0, max_steps=4)
    env.reset()
    rng = np.random.default_rng(0)
    total = np.zeros(3)
    for t in range(4):
        before = env.observe()[1]
        res = env.step(random_actions(env, rng))
        total += res.reward
        assert not res.terminated.any()
        if t < 3:
            assert not res.truncated.any()
            np.testing.assert_array_equal(res.final_state, res.state)
            assert not np.array_equal(res.state, before)
    assert res.truncated.all()
    np.testing.assert_array_equal(res.info["episode_length"], [4, 4, 4])
    np.testing.assert_allclose(res.info["episode_return"], total)
    # the listener's row moved during the episode; the new episode starts from fresh positions
    assert not np.array_equal(res.final_state, res.state)
    np.testing.assert_array_equal(res.final_state, np.concatenate(res.final_obs, axis=1))
    np.testing.assert_array_equal(res.state, env.observe()[1])
    res = env.step(random_actions(env, rng))
    assert not (res.terminated | res.truncated).any()


def test_scenario_done_is_termination_and_only_those_copies_reset():
    env = VMASEnv("simple_speaker_listener", num_envs=3, seed=0, max_steps=3)
    env.reset()
    scenario = env.env.scenario
    flags = {"done": torch.tensor([False, True, False])}
    scenario.done = lambda: flags["done"]
    rng = np.random.default_rng(0)
    res = env.step(random_actions(env, rng))
    np.testing.assert_array_equal(res.terminated, [False, True, False])
    assert not res.truncated.any()
    np.testing.assert_array_equal(res.info["episode_length"], [0, 1, 0])
    # the untouched copies continue: their rows equal final_state; copy 1 starts afresh
    np.testing.assert_array_equal(res.state[[0, 2]], res.final_state[[0, 2]])
    assert not np.array_equal(res.state[1], res.final_state[1])
    flags["done"] = torch.tensor([False, False, False])
    res = env.step(random_actions(env, rng))
    flags["done"] = torch.tensor([True, False, False])
    res = env.step(random_actions(env, rng))
    # copy 0 hits the time limit and the scenario's done together: termination wins
    np.testing.assert_array_equal(res.terminated, [True, False, False])
    np.testing.assert_array_equal(res.truncated, [False, False, True])
    np.testing.assert_array_equal(res.info["episode_length"], [3, 0, 3])


def test_balance_ends_by_termination_when_the_package_falls():
    env = VMASEnv("balance", num_envs=4, seed=0, continuous_actions=False, max_steps=100)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(100):
        res = env.step(random_actions(env, rng))
        if res.terminated.any():
            break
    assert res.terminated.any() and not res.truncated[res.terminated].any()
    k = int(np.flatnonzero(res.terminated)[0])
    assert res.info["episode_length"][k] < 100
    assert res.info["episode_return"][k] < -5  # the -10 ground penalty is in it


def test_reward_reductions_of_a_shared_reward():
    means, sums, firsts = (
        play(VMASEnv("simple_speaker_listener", num_envs=2, seed=0, reward=r), 3)[::3]
        for r in ("mean", "sum", "first")
    )
    for m, s, f in zip(means, sums, firsts, strict=True):
        np.testing.assert_allclose(s, 2 * m)
        np.testing.assert_array_equal(f, m)  # both agents get the same (shared) reward


def test_state_dict_declares_a_non_exact_state():
    env = VMASEnv("simple_speaker_listener", num_envs=2, seed=0)
    assert VMASEnv.exact_state is False
    env.reset()
    saved = json.loads(json.dumps(env.state_dict()))  # plain data
    assert saved["exact_state"] is False
    other = VMASEnv("simple_speaker_listener", num_envs=2, seed=1)
    other.reset()
    other.load_state_dict(saved)
    with pytest.raises(RuntimeError, match="exact_state = False"):
        other.step(random_actions(other, np.random.default_rng(0)))
    other.reset(seed=5)
    other.step(random_actions(other, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="num_envs"):
        VMASEnv("simple_speaker_listener", num_envs=3).load_state_dict(saved)


def test_registered_as_vmas_with_per_scenario_presets():
    from kl_alloc.envs.registry import env_preset, get_env_entry, make_env

    entry = get_env_entry("vmas")
    assert [o.name for o in entry.options] == ["scenario"]
    env = make_env("vmas", num_envs=2, seed=0, scenario="simple_speaker_listener")
    assert isinstance(env, VMASEnv) and env.obs_sizes == [3, 11]
    assert env.spec == {
        "name": "vmas",
        "kwargs": {"scenario": "simple_speaker_listener", "num_envs": 2},
    }
    sl = env_preset("vmas", env_kwargs={"scenario": "simple_speaker_listener"})
    assert sl["rollout_length"] == 25  # one MPE-length episode per copy per iteration
    assert env_preset("vmas")["rollout_length"] == 100  # balance, the default scenario


def test_cli_train_then_evaluate(tmp_path, capsys):
    from kl_alloc.cli import main
    from kl_alloc.rundir import read_progress

    out = tmp_path / "run"
    args = ["train", "--env", "vmas", "--scenario", "simple_speaker_listener", "--steps", "200"]
    args += ["--set", "num_envs=4", "--set", "eval_episodes=4", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    rows = read_progress(out)
    assert [r["env_steps"] for r in rows] == [100, 200]  # 4 copies x 25 steps per iteration
    assert all(np.isfinite(r["episode_return"]) for r in rows)
    spec = json.loads((out / "spec.json").read_text())
    assert spec["env"] == "vmas"
    capsys.readouterr()
    assert main(["evaluate", str(out), "--episodes", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert np.isfinite(result["return_mean"]) and result["return_mean"] < 0  # minus a distance
