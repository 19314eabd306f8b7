"""Trainer.predict, the policy-only file (Trainer.export_policy / kl-alloc export) and
kl_alloc.load_policy: the exported policy acts exactly as the trainer, and loads with torch only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import kl_alloc
from kl_alloc.envs import make_env
from kl_alloc.rl import Trainer, TrainerConfig
from kl_alloc.rl.export import PolicyFileError, load_policy
from kl_alloc.rl.policies import actions_to_numpy

SMALL = dict(hidden=(16,), critic_hidden=(16,), eval_every=0, eval_episodes=2)


def evaluation_actions(trainer: Trainer, obs: list[np.ndarray], masks=None) -> list[np.ndarray]:
    """The actions ``Trainer.evaluate`` plays for a batch of observations (its own code path:
    the collector's frozen normalisation and the distributions' mode), before any clipping."""
    n = obs[0].shape[0]
    with torch.no_grad():
        seen = trainer.collector.policy_obs(obs)
        out = []
        for i, (p, o, spec) in enumerate(
            zip(trainer.policies, seen, trainer.env.action_specs, strict=True)
        ):
            m = None if masks is None or masks[i] is None else torch.from_numpy(masks[i])
            dist = p.dist(o) if m is None else p.dist(o, m)
            out.append(actions_to_numpy(dist.mode(n), spec))
    return out


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(x, y)


def test_matrix_game_exported_policy_acts_as_the_trainer(tmp_path):
    cfg = TrainerConfig.for_env("matrix", num_envs=200, **SMALL)
    trainer = Trainer("matrix", algo="hatrpo", config=cfg, seed=0)
    trainer.learn(2000, progress=False)  # 10 iterations: the policies leave the uniform start
    n = trainer.n_agents
    modes = [int(np.argmax(p.summary())) for p in trainer.policies]
    assert trainer.predict([None] * n) == modes  # single: the most likely action of each agent
    batched = trainer.predict([np.zeros((5, 0), np.float32)] * n)
    assert [a.shape for a in batched] == [(5,)] * n and [int(a[0]) for a in batched] == modes

    rng_state = trainer.generator.get_state()
    trainer.predict([np.zeros((8, 0))] * n, deterministic=False)
    assert torch.equal(trainer.generator.get_state(), rng_state)  # training RNG untouched
    trainer.export_policy(tmp_path / "policy.pt")
    policy = kl_alloc.load_policy(tmp_path / "policy.pt", seed=3)
    assert_same(policy.predict([None] * n), trainer.predict([None] * n))
    assert policy.meta["iteration"] == 10 and policy.meta["algo"] == "hatrpo"
    # sampling: the policy's own seeded generator, at the policy's probabilities
    draws = policy.predict([np.zeros((4000, 0))] * n, deterministic=False)
    again = load_policy(tmp_path / "policy.pt", seed=3).predict(
        [np.zeros((4000, 0))] * n, deterministic=False
    )
    assert_same(draws, again)
    for p, a in zip(trainer.policies, draws, strict=True):
        freq = np.bincount(a, minlength=p.n_actions) / a.size
        np.testing.assert_allclose(freq, p.summary(), atol=0.04)


def mpe_trainer(tmp_path, **env_kwargs):
    pytest.importorskip("mpe2")
    cfg = TrainerConfig.for_env(
        "simple_speaker_listener_v4", num_envs=2, rollout_length=25, env_kwargs=env_kwargs, **SMALL
    )
    trainer = Trainer("simple_speaker_listener_v4", config=cfg, seed=0, out_dir=tmp_path / "run")
    trainer.learn(100, progress=False)  # 2 iterations: normaliser statistics are not the prior
    assert trainer.collector.obs_norms is not None
    assert trainer.collector.obs_norms[1].count > 100
    return trainer


def test_speaker_listener_discrete_list_and_dict_forms(tmp_path):
    trainer = mpe_trainer(tmp_path)
    env = make_env("simple_speaker_listener_v4", num_envs=8, seed=1)
    obs, _ = env.reset(seed=1)
    expected = evaluation_actions(trainer, obs)
    assert_same(trainer.predict(obs), expected)
    assert [a.shape for a in expected] == [(8,), (8,)]

    trainer.export_policy(tmp_path / "policy.pt")
    policy = load_policy(tmp_path / "policy.pt")
    assert policy.names == ["speaker_0", "listener_0"] and policy.obs_sizes == [3, 11]
    assert_same(policy.predict(obs), expected)
    # the env's own dicts: {agent: obs} -> {agent: action} that the ParallelEnv steps with
    from mpe2 import simple_speaker_listener_v4

    raw = simple_speaker_listener_v4.parallel_env()
    raw_obs, _ = raw.reset(seed=5)
    acts = policy.predict(raw_obs)
    assert set(acts) == {"speaker_0", "listener_0"}
    listed = policy.predict([raw_obs["speaker_0"], raw_obs["listener_0"]])
    assert acts == {"speaker_0": int(listed[0]), "listener_0": int(listed[1])}
    assert acts == trainer.predict(raw_obs)
    raw.step(acts)
    # masks: with all but one action masked out, that action is the one played
    masks = [np.eye(3, dtype=bool)[[2] * 8], np.eye(5, dtype=bool)[[4] * 8]]
    forced = policy.predict(obs, action_masks=masks)
    assert (forced[0] == 2).all() and (forced[1] == 4).all()
    assert_same(forced, evaluation_actions(trainer, obs, masks))

    # kl-alloc export RUN PATH writes the same file contents as trainer.export_policy
    from kl_alloc.cli import main

    trainer.close()
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "cli.pt")]) == 0
    assert_same(load_policy(tmp_path / "cli.pt").predict(obs), expected)


def test_speaker_listener_box_actions_rescaled_to_the_space(tmp_path):
    trainer = mpe_trainer(tmp_path, continuous_actions=True)
    env = make_env("simple_speaker_listener_v4", num_envs=4, seed=2, continuous_actions=True)
    obs, _ = env.reset(seed=2)
    trainer.export_policy(tmp_path / "policy.pt")
    policy = load_policy(tmp_path / "policy.pt")
    expected = [np.clip(a, -1, 1) for a in evaluation_actions(trainer, obs)]  # spec: [-1, 1]
    assert_same(policy.predict(obs), expected)
    assert_same(trainer.predict(obs), expected)

    from mpe2 import simple_speaker_listener_v4

    raw = simple_speaker_listener_v4.parallel_env(continuous_actions=True)
    raw_obs, _ = raw.reset(seed=5)
    acts = policy.predict(raw_obs)
    u = policy.predict([raw_obs["speaker_0"], raw_obs["listener_0"]])
    for name, ui in zip(["speaker_0", "listener_0"], u, strict=True):
        space = raw.action_space(name)
        assert acts[name].dtype == space.dtype and space.contains(acts[name])
        # the adapter's rule: a = low + (u + 1) / 2 (high - low), MPE's boxes are [0, 1]
        np.testing.assert_allclose(acts[name], (ui + 1) / 2, rtol=1e-6)
    raw.step(acts)


def test_vmas_box_actions_clipped_to_the_bounds(tmp_path):
    pytest.importorskip("vmas")
    kwargs = {"scenario": "simple_speaker_listener"}
    cfg = TrainerConfig.for_env(
        "vmas", env_kwargs=kwargs, num_envs=4, rollout_length=10, init_log_std=0.5, **SMALL
    )
    trainer = Trainer("vmas", config=cfg, seed=0)
    trainer.learn(80, progress=False)
    env = make_env("vmas", num_envs=16, seed=3, **kwargs)
    obs, _ = env.reset(seed=3)
    raw = evaluation_actions(trainer, obs)
    expected = [np.clip(a, s.low, s.high) for a, s in zip(raw, env.action_specs, strict=True)]
    trainer.export_policy(tmp_path / "policy.pt")
    policy = load_policy(tmp_path / "policy.pt")
    assert policy.native is None  # no PettingZoo spaces: the list form only
    assert_same(policy.predict(obs), expected)
    assert_same(trainer.predict(obs), expected)
    with pytest.raises(ValueError, match="PettingZoo"):
        policy.predict({"speaker": obs[0][0]})
    env.step(policy.predict(obs))


def test_shapes_are_checked_naming_the_agent(tmp_path):
    pytest.importorskip("mpe2")
    trainer = mpe_trainer(tmp_path)
    with pytest.raises(ValueError, match="expected 2 agents"):
        trainer.predict([np.zeros(3)])
    with pytest.raises(ValueError, match=r"obs\[1\]: expected shape \(11,\).*listener_0"):
        trainer.predict([np.zeros(3), np.zeros(4)])
    with pytest.raises(ValueError, match="disagree"):
        trainer.predict([np.zeros(3), np.zeros((2, 11))])
    with pytest.raises(ValueError, match=r"unknown agents \['bob'\]"):
        trainer.predict({"bob": np.zeros(3)})
    single = trainer.predict([np.zeros(3), np.zeros(11)])
    assert [np.asarray(a).shape for a in single] == [(), ()]


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(PolicyFileError, match=f"{tmp_path / 'none.pt'}: no such policy file"):
        load_policy(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(PolicyFileError, match=f"{junk}: not a readable kl_alloc policy file"):
        load_policy(junk)
    junk.write_bytes(b"junk\n")  # torch.load's legacy path: a KeyError
    with pytest.raises(PolicyFileError, match=f"{junk}: not a readable kl_alloc policy file"):
        load_policy(junk)
    with pytest.raises(PolicyFileError, match=f"{tmp_path}: a directory"):
        load_policy(tmp_path)
    other = tmp_path / "other.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(PolicyFileError, match=f"{other}: not a kl_alloc policy file"):
        load_policy(other)
    # a training checkpoint is not a policy file: the message says how to export one
    cfg = TrainerConfig.for_env("matrix", num_envs=50, **SMALL)
    trainer = Trainer("matrix", config=cfg, seed=0)
    trainer.learn(50, progress=False)
    trainer.save(tmp_path / "checkpoint.pt")
    with pytest.raises(PolicyFileError, match="checkpoint.*kl-alloc export RUN PATH"):
        load_policy(tmp_path / "checkpoint.pt")
    from kl_alloc.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["export", str(tmp_path / "missing-run"), str(tmp_path / "p.pt")])
    assert exc.value.code == 2


BLOCKED = ("mpe2", "pettingzoo", "gymnasium", "gymnasium_robotics", "vmas", "mujoco", "numba")

LOADER = textwrap.dedent(
    """
    import importlib.abc, json, sys
    import numpy as np

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ImportError(f"blocked: {{name}}")

    sys.meta_path.insert(0, Block())
    import kl_alloc

    policy = kl_alloc.load_policy(sys.argv[1])
    obs = [np.array(o, np.float32) for o in json.loads(sys.argv[2])]
    listed = [np.asarray(a).tolist() for a in policy.predict(obs)]
    raw = {{"speaker_0": obs[0][0], "listener_0": obs[1][0]}}
    native = {{k: np.asarray(v).tolist() for k, v in policy.predict(raw).items()}}
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r})
    trainer = "kl_alloc.rl.trainer" in sys.modules
    print(json.dumps({{"listed": listed, "native": native, "loaded": loaded, "trainer": trainer}}))
    """
).format(blocked=BLOCKED)


def test_loads_in_a_process_without_the_env_packages(tmp_path):
    trainer = mpe_trainer(tmp_path, continuous_actions=True)
    env = make_env("simple_speaker_listener_v4", num_envs=3, seed=4, continuous_actions=True)
    obs, _ = env.reset(seed=4)
    trainer.export_policy(tmp_path / "policy.pt")
    script = tmp_path / "load.py"
    script.write_text(LOADER)
    args = [str(tmp_path / "policy.pt"), json.dumps([o.tolist() for o in obs])]
    res = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        check=False,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and out["trainer"] is False
    np.testing.assert_array_equal(out["listed"][0], trainer.predict(obs)[0])
    np.testing.assert_array_equal(out["listed"][1], trainer.predict(obs)[1])
    raw = {"speaker_0": obs[0][0], "listener_0": obs[1][0]}
    for name, action in trainer.predict(raw).items():
        np.testing.assert_array_equal(out["native"][name], action)


def test_mamujoco_in_worker_processes_and_the_cli_export(tmp_path):
    pytest.importorskip("mujoco")
    pytest.importorskip("gymnasium_robotics")
    env_kwargs = dict(scenario="Ant", agent_conf="2x4", max_episode_steps=20)
    cfg = TrainerConfig.for_env(
        "mamujoco", num_envs=2, rollout_length=20, num_workers=2, env_kwargs=env_kwargs, **SMALL
    )
    trainer = Trainer("mamujoco", config=cfg, seed=0, out_dir=tmp_path / "run")
    try:
        trainer.learn(80, progress=False)
        assert trainer.env.native_spaces() is None  # asked of a worker: MaMuJoCo has none
        env = make_env("mamujoco", num_envs=3, seed=1, **env_kwargs)
        obs, _ = env.reset(seed=1)
        raw = evaluation_actions(trainer, obs)
        expected = [np.clip(a, s.low, s.high) for a, s in zip(raw, env.action_specs, strict=True)]
        assert any((np.abs(a) > 0).any() for a in expected)
        assert_same(trainer.predict(obs), expected)
    finally:
        trainer.close()
    from kl_alloc.cli import main

    assert main(["export", str(tmp_path / "run"), str(tmp_path / "p.pt")]) == 0
    assert_same(load_policy(tmp_path / "p.pt").predict(obs), expected)
