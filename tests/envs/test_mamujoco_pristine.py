"""The MaMuJoCo adapter against the pristine package env, not against itself.

``make_env("mamujoco", ...)`` copy 0 is compared with a fresh
``gymnasium_robotics.mamujoco_v1.parallel_env(scenario, agent_conf)`` seeded the way the adapter
documents it seeds copy 0 (``MaMuJoCoEnv.reset``: child 0 of ``SeedSequence(seed).spawn(num_envs)``,
whose first spawned child gives the env seed and whose second seeds the action spaces). Both get
the same actions, through terminations (the robot falls) and truncations (a short
``max_episode_steps``, the time limit); the pristine env is reset without a seed after each end,
as an auto-reset continues the copy's own generator. Every step: per-agent observations,
``state()``, the reward of every agent and the termination/truncation flags are equal (the
adapter hands out float32 observations: the pristine float64 values are compared after the same
cast, bit for bit). When both flags are set the adapter reports termination only (no bootstrap).
"""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium_robotics import mamujoco_v1

from kl_alloc.envs import make_env

SEED = 123
#: scenario, agent_conf, time limit, steps, must see a termination
CASES = [
    ("Ant", "2x4", 60, 400, True),
    ("HalfCheetah", "6x1", 50, 160, False),
    ("Walker2d", "2x3", 30, 300, True),
    ("Hopper", "3x1", 30, 300, True),
]


def copy0_seeds(seed: int, num_envs: int, n_agents: int) -> tuple[int, list[int], int]:
    """(env seed, per-agent action-space seeds, single-agent action-space seed) of copy 0."""
    child = np.random.SeedSequence(seed).spawn(num_envs)[0]
    env_seq, space_seq = child.spawn(2)
    space = space_seq.generate_state(n_agents + 1, np.uint64)
    env_seed = int(env_seq.generate_state(1, np.uint64)[0])
    return env_seed, [int(s) for s in space[:n_agents]], int(space[-1])


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).astype(np.float32)


@pytest.mark.mujoco
@pytest.mark.parametrize("scenario,agent_conf,limit,steps,falls", CASES)
def test_adapter_equals_pristine_parallel_env(
    scenario, agent_conf, limit, steps, falls, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the pristine env lets MuJoCo write MUJOCO_LOG.TXT to the cwd
    num_envs = 2
    env = make_env(
        "mamujoco",
        scenario=scenario,
        agent_conf=agent_conf,
        num_envs=num_envs,
        seed=SEED,
        max_episode_steps=limit,
    )
    ref = mamujoco_v1.parallel_env(scenario, agent_conf, max_episode_steps=limit)
    agents = list(ref.possible_agents)
    assert env.n_agents == len(agents)
    env_seed, space_seeds, single_seed = copy0_seeds(SEED, num_envs, len(agents))
    for a, s in zip(agents, space_seeds, strict=True):
        ref.action_space(a).seed(s)
    ref.single_agent_env.action_space.seed(single_seed)

    obs, state = env.reset()
    ref_obs, _ = ref.reset(seed=env_seed)

    def assert_same(where, obs_a, state_a, obs_b, state_b):
        np.testing.assert_array_equal(state_a, f32(state_b), err_msg=f"{where}: state")
        for i, a in enumerate(agents):
            np.testing.assert_array_equal(obs_a[i], f32(obs_b[a]), err_msg=f"{where}: obs of {a}")

    assert_same("reset", [o[0] for o in obs], state[0], ref_obs, ref.state())

    rng = np.random.default_rng(0)
    terminations = truncations = 0
    for t in range(steps):
        actions = []
        for spec in env.action_specs:
            lo, hi = np.asarray(spec.low, np.float64), np.asarray(spec.high, np.float64)
            actions.append(rng.uniform(lo, hi, size=(num_envs, spec.dim)).astype(np.float32))
        res = env.step(actions)
        ref_obs, rewards, terms, truncs, _ = ref.step(
            {a: actions[i][0] for i, a in enumerate(agents)}
        )
        where = f"{scenario} {agent_conf} step {t}"
        for a in agents:
            assert res.reward[0] == rewards[a], f"{where}: reward of {a}"
        term, trunc = bool(terms[agents[0]]), bool(truncs[agents[0]])
        assert all(bool(terms[a]) == term and bool(truncs[a]) == trunc for a in agents)
        assert bool(res.terminated[0]) == term, f"{where}: terminated"
        assert bool(res.truncated[0]) == (trunc and not term), f"{where}: truncated"
        if term or trunc:
            terminations += term
            truncations += trunc and not term
            assert_same(where + " (final)", [o[0] for o in res.final_obs], res.final_state[0],
                        ref_obs, ref.state())  # fmt: skip
            ref_obs, _ = ref.reset()  # the adapter's auto-reset continues the copy's generator
            assert_same(where + " (after reset)", [o[0] for o in res.obs], res.state[0],
                        ref_obs, ref.state())  # fmt: skip
        else:
            assert_same(where, [o[0] for o in res.obs], res.state[0], ref_obs, ref.state())
    env.close()
    ref.close()
    print(f"{scenario} {agent_conf}: {terminations} terminations, {truncations} truncations")
    assert truncations >= 1, "no truncation seen: the time-limit path is not compared"
    if falls:
        assert terminations >= 1, "no termination seen: the falling-over path is not compared"
