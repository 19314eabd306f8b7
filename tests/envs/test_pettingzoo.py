"""The PettingZoo adapter's rules: spaces, Box rescaling, masks, leaving agents, episode ends,
team reward, state, seeds, the registry routes, and resume of an env without exact state."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo")
from gymnasium import spaces  # noqa: E402
from pettingzoo import ParallelEnv  # noqa: E402

from kl_alloc.envs import make_env  # noqa: E402
from kl_alloc.envs.pettingzoo import PettingZooEnv  # noqa: E402
from kl_alloc.rl.policies import CategoricalPolicy, MaskedCategorical  # noqa: E402
from kl_alloc.rl.update import AgentBatch, SequentialUpdate, TRPOSettings  # noqa: E402

USER = Path(__file__).parents[1] / "user_project"


@pytest.fixture
def my_pz(monkeypatch):
    monkeypatch.syspath_prepend(str(USER))
    sys.modules.pop("my_pz", None)
    import my_pz

    return my_pz


class Countdown(ParallelEnv):
    """Two agents, a global state, both terminate after ``length`` steps; rewards 1 and 3."""

    metadata = {"name": "countdown"}

    def __init__(self, length: int = 2):
        self.possible_agents = ["a", "b"]
        self.length = length
        self.state_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)

    def observation_space(self, agent):
        return spaces.Discrete(3)  # one-hot for the policy

    def action_space(self, agent):
        return spaces.Discrete(2, start=5)

    def _infos(self, agents):  # agent b may only take its second action (a mask in info)
        return {a: {"action_mask": np.array([0, 1], np.int8)} if a == "b" else {} for a in agents}

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.t = 0
        self.got: list = []
        return {a: 0 for a in self.agents}, self._infos(self.agents)

    def state(self):
        return np.array([self.t, 7.0, -1.0], np.float32)

    def step(self, actions):
        self.got.append(dict(actions))
        self.t += 1
        done = self.t >= self.length
        obs = {a: min(self.t, 2) for a in self.agents}
        rewards = {"a": 1.0, "b": 3.0}
        terms = {a: done for a in self.agents}
        truncs = {a: done for a in self.agents}  # both: termination wins
        if done:
            self.agents = []
        return obs, rewards, terms, truncs, self._infos(rewards)


def test_spaces_state_and_box_rescaling(my_pz):
    env = PettingZooEnv(my_pz.make_env, num_envs=3, seed=0)
    assert env.possible_agents == ["mover", "picker"]
    assert env.obs_sizes == [2, 4] and env.state_size == 6  # no state(): concatenated obs
    mover, picker = env.action_specs
    assert mover.dim == 2 and np.all(mover.low == -1) and np.all(mover.high == 1)
    assert picker.is_discrete and picker.n == 4
    # the rule: clip to [-1, 1], then affine to [low, high] = [-2, 2]
    for u, want in ((-1.0, -2.0), (0.0, 0.0), (0.5, 1.0), (7.0, 2.0), (-9.0, -2.0)):
        assert np.allclose(env._env_action(0, np.array([u, u])), [want, want])
    clip = PettingZooEnv(my_pz.make_env, num_envs=1, seed=0, box_actions="clip")
    assert np.all(clip.action_specs[0].low == -2)
    assert np.allclose(clip._env_action(0, np.array([0.5, 7.0])), [0.5, 2.0])
    with pytest.raises(ValueError, match="reward_reduce"):
        PettingZooEnv(my_pz.make_env, reward_reduce="max")


def test_masks_leaving_agents_and_truncation(my_pz):
    env = PettingZooEnv(my_pz.make_env, num_envs=4, seed=1)
    obs, state = env.reset()
    rng = np.random.default_rng(0)
    for t in range(1, 7):
        masks = env.action_masks()
        assert masks[0] is None and masks[1].shape == (4, 4)
        active = env.active_agents()
        assert active[:, 0].all() and active[:, 1].all() == (t <= 3)
        for k, c in enumerate(env.copies):  # the mask is the env's: the banned item is off
            if active[k, 1]:
                assert not masks[1][k, c._banned] and masks[1][k].sum() == 3
                assert obs[1][k].sum() == 1.0
            else:
                assert np.all(obs[1][k] == 0) and masks[1][k].all()
        assert np.array_equal(state, np.concatenate(obs, axis=1))
        picks = np.array([rng.choice(np.flatnonzero(m)) for m in masks[1]])
        res = env.step([rng.uniform(-3, 3, (4, 2)).astype(np.float32), picks])  # no raise
        if t < 6:
            assert not (res.terminated | res.truncated).any()
        obs, state = res.obs, res.state
    # the time limit cut the episode: truncated (bootstrap), not terminated
    assert res.truncated.all() and not res.terminated.any()
    assert np.isfinite(res.info["episode_return"]).all()
    assert np.all(res.info["episode_length"] == 6)
    assert env.active_agents().all()  # reset within step: both agents back
    assert np.all(res.final_obs[1] == 0)  # the picker had left before the last step
    assert not np.all(res.final_obs[0] == 0)


def test_termination_wins_reward_reduce_state_and_discrete_start():
    env = PettingZooEnv(Countdown, num_envs=2, seed=0)
    assert env.obs_sizes == [3, 3] and env.state_size == 3
    env.reset()
    masks = env.action_masks()
    assert masks[0] is None and masks[1].tolist() == [[False, True]] * 2  # from info
    res = env.step([np.array([1, 0]), np.array([0, 1])])
    assert env.copies[0].got[-1] == {"a": 6, "b": 5}  # Discrete(2, start=5)
    assert np.allclose(res.reward, 2.0)  # mean of 1 and 3
    assert np.allclose(res.state, [[1, 7, -1]] * 2)
    res = env.step([np.zeros(2, np.int64)] * 2)
    assert res.terminated.all() and not res.truncated.any()
    assert np.allclose(res.final_state[:, 0], 2) and np.allclose(res.state[:, 0], 0)
    for rule, want in (("sum", 4.0), ("first", 1.0)):
        e = PettingZooEnv(Countdown, num_envs=1, seed=0, reward_reduce=rule)
        e.reset()
        assert e.step([np.zeros(1, np.int64)] * 2).reward[0] == want


def test_seeds_make_copies_differ_and_runs_repeat(my_pz):
    def trajectory(seed):
        env = PettingZooEnv(my_pz.make_env, num_envs=3, seed=seed)
        obs, _ = env.reset()
        out = [obs[0].copy()]
        for _ in range(8):  # across an automatic reset
            res = env.step([np.zeros((3, 2), np.float32), env.action_masks()[1].argmax(1)])
            out.append(res.obs[0].copy())
        return np.stack(out)

    a, b, c = trajectory(0), trajectory(0), trajectory(1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a[:, 0], a[:, 1])  # copies get their own seeds


def test_masked_categorical_is_exact_and_finite():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, requires_grad=True)
    mask = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [0, 1, 1, 0]],
                        dtype=torch.bool)  # fmt: skip
    d = MaskedCategorical(logits, mask)
    probs = d.log_probs.exp()
    assert torch.all(probs[~mask] == 0)
    want = torch.softmax(logits.masked_fill(~mask, -float("inf")), -1)
    assert torch.allclose(probs, want)
    gen = torch.Generator().manual_seed(0)
    samples = torch.stack([d.sample(5, gen) for _ in range(4000)])  # (4000, 5)
    assert mask.gather(1, samples.T).all()  # never a masked action
    freq = torch.stack([(samples == k).float().mean(0) for k in range(4)], 1)
    assert torch.allclose(freq, want.detach(), atol=0.03)
    new = MaskedCategorical(logits.detach() + torch.randn(5, 4), mask)
    kl = d.detach().kl(new)
    assert torch.isfinite(kl).all() and (kl >= 0).all()
    assert torch.allclose(d.detach().kl(d), torch.zeros(5), atol=1e-6)
    ent = d.entropy()
    assert torch.isfinite(ent).all() and abs(float(ent[1].detach())) < 1e-6  # one allowed action
    lp = d.log_prob(d.mode(5))
    (lp.sum() + d.detach().kl(d).sum() + ent.sum()).backward()
    assert torch.isfinite(logits.grad).all() and torch.all(logits.grad[~mask] == 0)
    # the policy builds it from a mask
    pol = CategoricalPolicy(3, 4)
    assert isinstance(pol.dist(torch.zeros(5, 3), mask), MaskedCategorical)


def test_invalid_samples_do_not_move_an_agents_update():
    """Samples where the agent had left: no gradient, no KL; changing them changes nothing."""
    torch.manual_seed(0)
    pol = CategoricalPolicy(3, 4, hidden=(8,))
    obs, valid = torch.randn(64, 3), torch.arange(64) < 40
    actions = torch.randint(0, 4, (64,))
    adv = torch.randn(64)

    def direction(o, a):
        with torch.no_grad():
            d = pol.dist(o)
            batch = AgentBatch(o, a, d.log_prob(a), d.detach(), valid=valid)
        up = SequentialUpdate([pol], None, TRPOSettings())
        return up.direction(0, batch, adv), up, batch

    d1, up, batch = direction(obs, actions)
    obs2, act2 = obs.clone(), actions.clone()
    obs2[40:] = torch.randn(24, 3) * 5
    act2[40:] = (act2[40:] + 1) % 4
    d2, _, _ = direction(obs2, act2)
    assert torch.allclose(d1.g, d2.g) and torch.allclose(d1.s, d2.s, atol=1e-6)
    assert d1.base == pytest.approx(float((adv).mean()))  # ratio 1 everywhere at theta_old
    assert torch.all(up._ratio(batch, pol.dist(obs2))[40:] == 1)


def test_make_env_routes(my_pz, monkeypatch):
    monkeypatch.chdir(USER)
    env = make_env("my_pz:make_env", num_envs=3, seed=0)  # a factory returning a ParallelEnv
    assert isinstance(env, PettingZooEnv) and env.num_envs == 3 and not env.exact_state
    assert env.spec == {"name": "my_pz:make_env", "kwargs": {"num_envs": 3}}
    again = make_env(env.spec["name"], **env.spec["kwargs"])
    assert again.obs_sizes == env.obs_sizes
    routed = make_env("pettingzoo", num_envs=2, seed=0, env_fn="my_pz:make_env",
                      reward_reduce="sum")  # fmt: skip
    assert routed.num_envs == 2 and routed.reward_reduce == "sum"
    with pytest.raises(ValueError, match="env_fn"):
        make_env("pettingzoo", num_envs=2, seed=0)
    # the route that offers reward_reduce keeps the factory's own preset (it fell back to the
    # generic 16 x 50 one, so the run differed from --env my_pz:make_env in more than that)
    from kl_alloc.envs.registry import PETTINGZOO_PRESET, env_preset

    own = env_preset("my_pz:make_env")
    assert own["rollout_length"] == 24
    assert env_preset("pettingzoo", env_kwargs={"env_fn": "my_pz:make_env"}) == own
    assert env_preset("pettingzoo", env_kwargs={"env_fn": Countdown}) == PETTINGZOO_PRESET
    # ... and its default budget (it took the pettingzoo entry's 200k): the planned steps of a
    # run without --steps, as `kl-alloc train` resolves them
    from kl_alloc.lifecycle import RunSpec

    def planned(env, **kw):
        return RunSpec(env=env, algo="hatrpo", overrides={"env_kwargs": kw}).target_steps()

    assert planned("my_pz:make_env") == 4_608
    assert planned("pettingzoo", env_fn="my_pz:make_env") == 4_608
    assert planned("pettingzoo", env_fn=Countdown) == 200_000  # no default_steps of its own
    assert planned("pettingzoo") == 200_000


def test_mpe_tasks_sizes():
    pytest.importorskip("mpe2")
    spread = make_env("simple_spread_v3", num_envs=2, seed=0)
    assert spread.obs_sizes == [18, 18, 18] and spread.state_size == 54
    assert [s.n for s in spread.action_specs] == [5, 5, 5]
    sl = make_env("simple_speaker_listener_v4", num_envs=2, seed=0)
    assert sl.possible_agents == ["speaker_0", "listener_0"]
    assert sl.obs_sizes == [3, 11] and sl.state_size == 14
    assert [s.n for s in sl.action_specs] == [3, 5]
    cont = make_env("simple_speaker_listener_v4", num_envs=1, seed=0, continuous_actions=True)
    assert [s.dim for s in cont.action_specs] == [3, 5]


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("task", ["simple_speaker_listener_v4", "simple_spread_v3"])
def test_mpe_fast_path_steps_exactly_as_mpe2s_own_parallel_env(task, continuous):
    """The MPE tasks skip mpe2's checking wrappers and its state() (= the observations
    concatenated): every number of every step, resets and episode ends included, is mpe2's own."""
    pytest.importorskip("mpe2")
    import importlib

    fast = make_env(task, num_envs=3, seed=4, continuous_actions=continuous)
    assert fast.state_source == "obs"
    module = importlib.import_module(f"mpe2.{task}")
    kwargs = {"max_cycles": 25, "continuous_actions": continuous}
    slow = PettingZooEnv(module.parallel_env, 3, 4, kwargs)
    assert slow.state_source == "auto" and slow._state_fn == "state"  # asks mpe2's state()
    for x, y in zip(fast.reset(), slow.reset(), strict=True):
        for a, b in zip(x if isinstance(x, list) else [x], y if isinstance(y, list) else [y],
                        strict=True):  # fmt: skip
            np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(60):  # past two episode ends (max_cycles 25)
        if continuous:  # policy units, some beyond [-1, 1]: the adapter clips and rescales
            actions = [rng.uniform(-1.5, 1.5, (3, s.dim)) for s in fast.action_specs]
        else:
            actions = [rng.integers(0, s.n, 3) for s in fast.action_specs]
        a, b = fast.step(actions), slow.step(actions)
        for x, y in zip((*a.obs, a.state, a.reward, a.truncated, *a.final_obs, a.final_state,
                         a.info["episode_return"]),
                        (*b.obs, b.state, b.reward, b.truncated, *b.final_obs, b.final_state,
                         b.info["episode_return"]),
                        strict=True):  # fmt: skip
            np.testing.assert_array_equal(x, y)
        ended += int(a.truncated.sum())
    assert ended == 6
    if not continuous:
        with pytest.raises(ValueError, match="out of range"):
            # the adapter checks what mpe2's wrapper did
            fast.step([np.full(3, 9)] + [np.zeros(3, int)] * (fast.n_agents - 1))


def test_mpe_fast_path_checks_that_state_is_the_observations(monkeypatch, caplog):
    """If an mpe2 version's state() were more than the observations, the critic gets state()."""
    pytest.importorskip("mpe2")
    from mpe2._mpe_utils.simple_env import SimpleEnv

    real = SimpleEnv.state
    monkeypatch.setattr(SimpleEnv, "state", lambda self: 2 * real(self))
    with caplog.at_level(logging.WARNING, logger="kl_alloc.envs"):
        env = make_env("simple_speaker_listener_v4", num_envs=2, seed=0)
    assert env.state_source == "auto" and env._state_fn == "state"
    assert "not the agents' observations concatenated" in caplog.text
    obs, state = env.reset()
    np.testing.assert_array_equal(state, 2 * np.concatenate(obs, axis=1))


def test_render_before_reset_is_refused():
    pytest.importorskip("mpe2")
    env = make_env("simple_speaker_listener_v4", num_envs=1, seed=0, render_mode="rgb_array")
    with pytest.raises(RuntimeError, match="reset"):
        env.render_frame(0)  # mpe2's own env refuses it too (its OrderEnforcingWrapper)
    env.reset()
    assert env.render_frame(0).shape == (700, 700, 3)


def test_state_obs_concatenates_the_observations_and_bad_values_are_refused():
    env = PettingZooEnv(Countdown, 2, 0, state="obs")
    obs, state = env.reset()
    assert env.state_size == 6
    np.testing.assert_array_equal(state, np.concatenate(obs, axis=1))  # not Countdown.state()
    with pytest.raises(ValueError, match="state: expected one of"):
        PettingZooEnv(Countdown, 2, 0, state="env")
    auto = PettingZooEnv(Countdown, 2, 0)
    assert auto.state_source == "auto" and auto.state_size == 3  # Countdown.state()
    from kl_alloc.envs.pettingzoo import pettingzoo_env

    by_name = pettingzoo_env(f"{__name__}:Countdown", num_envs=2, seed=0, state="obs")
    assert by_name.state_source == "obs" and by_name.state_size == 6


def test_resume_without_exact_state_resets_from_a_derived_seed(my_pz, tmp_path, caplog):
    from kl_alloc.rl import Trainer
    from kl_alloc.rl.config import TrainerConfig

    def trainer(out):
        env = PettingZooEnv(my_pz.make_env, num_envs=4, seed=0)
        cfg = TrainerConfig(num_envs=4, rollout_length=8, hidden=(8,), critic_hidden=(8,),
                            checkpoint_every=2)  # fmt: skip
        return Trainer(env, config=cfg, seed=0, out_dir=out)

    full = trainer(tmp_path / "full").learn(32 * 4, progress=False)
    cut = trainer(tmp_path / "cut").learn(32 * 2, progress=False)
    cut.close()
    outcomes = []
    for _ in range(2):  # two resumes from the same checkpoint continue the same way
        env = PettingZooEnv(my_pz.make_env, num_envs=4, seed=0)
        with caplog.at_level(logging.WARNING, logger="kl_alloc.rl.trainer"):
            t = Trainer.load(tmp_path / "cut" / "checkpoint.pt", env=env)
            assert "continuation differs" not in caplog.text  # loading to evaluate: quiet
            t.learn(32 * 4, progress=False)
        assert "continuation differs from an uninterrupted run" in caplog.text
        caplog.clear()
        outcomes.append([h["mean_reward"] for h in t.history])
    assert outcomes[0] == outcomes[1] and len(outcomes[0]) == 2
    assert [h["mean_reward"] for h in full.history[2:]] != outcomes[0]  # fresh episodes


def test_rollout_stores_masks_and_validity_for_the_update(my_pz):
    from kl_alloc.rl import Trainer
    from kl_alloc.rl.config import TrainerConfig

    env = PettingZooEnv(my_pz.make_env, num_envs=4, seed=0)
    cfg = TrainerConfig(num_envs=4, rollout_length=12, hidden=(8,), critic_hidden=(8,))
    trainer = Trainer(env, config=cfg, seed=0)
    trainer.collector.reset(0)
    ro = trainer.collector.collect(12, trainer.generator)
    assert ro.action_masks[0] is None and ro.action_masks[1].shape == (48, 4)
    assert ro.action_masks[1].gather(1, ro.actions[1][:, None]).all()  # sampled under masks
    assert ro.valid[0].all() and ro.valid[1].float().mean() == 0.5  # picker: 3 of 6 steps
    assert torch.isfinite(ro.log_probs[1]).all()


def test_trainer_takes_a_parallel_env_instance():
    pytest.importorskip("mpe2")
    from mpe2 import simple_speaker_listener_v4

    from kl_alloc.rl import Trainer
    from kl_alloc.rl.config import TrainerConfig

    cfg = TrainerConfig(num_envs=2, rollout_length=25, hidden=(8,), critic_hidden=(8,))
    trainer = Trainer(simple_speaker_listener_v4.parallel_env(), config=cfg, seed=0)
    assert isinstance(trainer.env, PettingZooEnv) and trainer.env.num_envs == 2
    trainer.learn(50, progress=False)
    assert trainer.history[-1]["episodes"] == 2 and trainer.last_eval["episodes"] == 10


class Relay(ParallelEnv):
    """Agent 'c' is not in play at reset and joins at step 2 (PettingZoo allows an episode to
    start with some of possible_agents); observations are Dicts with an action mask and an
    extra 'goal' key; agent 'b' acts in a Box(0, 5) of integers. Episodes last 4 steps."""

    metadata = {"name": "relay"}

    def __init__(self):
        self.possible_agents = ["a", "b", "c"]

    def observation_space(self, agent):
        return spaces.Dict(
            {
                "observation": spaces.Box(-1, 1, (2,), np.float32),
                "goal": spaces.Box(-10, 10, (3,), np.float32),
                "action_mask": spaces.Box(0, 1, (2,), np.int8),
            }
        )

    def action_space(self, agent):
        return spaces.Box(0, 5, (1,), np.int64) if agent == "b" else spaces.Discrete(2)

    def _obs(self):
        return {
            a: {
                "observation": np.full(2, 0.5, np.float32),
                "goal": np.array([self.t, 2, 3], np.float32),
                "action_mask": np.array([1, 1], np.int8),
            }
            for a in self.agents
        }

    def reset(self, seed=None, options=None):
        self.t = 0
        self.agents = ["a", "b"]
        self.got: list = []
        return self._obs(), {}

    def step(self, actions):
        unknown = set(actions) - set(self.agents)
        if unknown:
            raise KeyError(f"actions for agents not in play: {unknown}")
        self.got.append(dict(actions))
        self.t += 1
        if self.t == 2:
            self.agents = ["a", "b", "c"]
        done = self.t >= 4
        obs = self._obs()
        rewards = {a: 1.0 for a in self.agents}
        terms = {a: False for a in self.agents}
        truncs = {a: done for a in self.agents}
        if done:
            self.agents = []
        return obs, rewards, terms, truncs, {}


def test_agents_absent_at_reset_join_later_and_dict_observations_keep_every_key():
    env = PettingZooEnv(Relay, num_envs=1, seed=0, box_actions="clip")
    assert env.obs_sizes == [5, 5, 5]  # observation (2) + goal (3); the mask taken out
    obs, _ = env.reset()
    assert env.active_agents()[0].tolist() == [True, True, False]
    assert obs[0][0].tolist() == pytest.approx([0, 2, 3, 0.5, 0.5])  # flatten orders keys
    assert np.all(obs[2][0] == 0)
    b = np.array([[3.6]], np.float32)  # an integer Box action is rounded, not cut to 3
    for t in range(1, 5):
        res = env.step([np.array([1]), b, np.array([0])])
        sent = env.copies[0].got[-1] if t < 4 else None
        if t == 1:
            assert set(env.copies[0].got[-1]) == {"a", "b"} and sent["b"].tolist() == [4]
        if t == 2:  # c joined at this step: it acts from the next one
            assert env.active_agents()[0].tolist() == [True, True, True]
            assert res.obs[2][0].tolist() == pytest.approx([2, 2, 3, 0.5, 0.5])
        if t == 3:
            assert set(env.copies[0].got[-1]) == {"a", "b", "c"}
    assert res.truncated.all()
    assert env.active_agents()[0].tolist() == [True, True, False]  # reset: c out again


class OldApi(Countdown):
    def reset(self, seed=None, options=None):
        obs, _ = super().reset(seed, options)
        return obs  # PettingZoo < 1.22: observations alone


class DictState(Countdown):
    def state(self):
        return {"t": self.t}


class WrongShape(Countdown):
    def observation_space(self, agent):
        return spaces.Box(-1, 1, (4,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed, options)
        return {a: np.zeros(3, np.float32) for a in self.agents}, {}


@pytest.mark.parametrize(
    "cls, message",
    [
        (OldApi, "env.reset() must return (observations, infos)"),
        (DictState, "env.state() must return an array of numbers"),
        (WrongShape, "observation of agent 'a' does not fit its observation_space Box"),
    ],
)
def test_a_users_env_mistake_is_one_clear_error(cls, message):
    with pytest.raises(ValueError) as info:
        PettingZooEnv(cls, num_envs=1, seed=0).reset()
    assert message in str(info.value)


class SilentAtTheEnd(Countdown):
    """Returns no observation on the last step (agents already removed): filled with zeros,
    and said once."""

    def step(self, actions):
        obs, rewards, terms, truncs, infos = super().step(actions)
        return ({} if not self.agents else obs), rewards, terms, truncs, infos


def test_a_missing_observation_is_said_once(caplog):
    env = PettingZooEnv(SilentAtTheEnd, num_envs=1, seed=0)
    env.reset()
    with caplog.at_level(logging.WARNING, logger="kl_alloc.envs"):
        for _ in range(4):  # two episodes
            env.step([np.array([0]), np.array([1])])
    said = [r for r in caplog.records if "returned no observation" in r.getMessage()]
    assert len(said) == 2  # once per agent, not once per step
