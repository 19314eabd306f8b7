"""The HARL options of TrainerConfig / policies / critic, and the HARL MaMuJoCo presets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kl_alloc.envs.mamujoco_presets import HARL_TUNED, harl_preset
from kl_alloc.envs.registry import registered_entries
from kl_alloc.rl.config import TrainerConfig
from kl_alloc.rl.critic import Critic
from kl_alloc.rl.policies import GaussianPolicy, mlp

ROOT = Path(__file__).resolve().parents[2]


# -- defaults ----------------------------------------------------------------------------------


def test_defaults_are_the_old_behaviour():
    cfg = TrainerConfig()
    assert not cfg.feature_norm and not cfg.hidden_layer_norm
    assert cfg.std_param == "exp"
    assert cfg.critic_loss == "mse" and cfg.value_clip is None
    assert cfg.critic_max_grad_norm is None and cfg.critic_adam_eps == 1e-8
    for entry in registered_entries():
        c = TrainerConfig.for_env(entry.name)
        assert (c.critic_loss, c.value_clip, c.feature_norm, c.std_param) == (
            "mse",
            None,
            False,
            "exp",
        )


def test_mlp_off_is_unchanged_and_draws_the_same():
    torch.manual_seed(3)
    a = mlp(5, (8, 8), 2)
    after_a = torch.rand(1)
    torch.manual_seed(3)
    b = mlp(5, (8, 8), 2, feature_norm=True, hidden_layer_norm=True)
    after_b = torch.rand(1)
    assert len(a) == 5 and not any(isinstance(m, nn.LayerNorm) for m in a)
    # LayerNorms draw nothing: same Linear weights, same RNG stream afterwards
    lin_a = [m for m in a if isinstance(m, nn.Linear)]
    lin_b = [m for m in b if isinstance(m, nn.Linear)]
    for x, y in zip(lin_a, lin_b, strict=True):
        assert torch.equal(x.weight, y.weight)
    assert torch.equal(after_a, after_b)


def test_old_config_dict_loads_with_new_defaults():
    old = TrainerConfig.for_env("mamujoco").to_dict()
    for key in (
        "feature_norm",
        "hidden_layer_norm",
        "std_param",
        "std_max",
        "critic_loss",
        "huber_delta",
        "value_clip",
        "critic_max_grad_norm",
        "critic_adam_eps",
    ):
        old.pop(key)
    assert TrainerConfig.stored_as(old) == TrainerConfig.stored_as(
        TrainerConfig.for_env("mamujoco").to_dict()
    )


# -- each option does what it says -------------------------------------------------------------


def test_layer_norms_present():
    net = mlp(5, (8, 8), 2, activation="relu", feature_norm=True, hidden_layer_norm=True)
    kinds = [type(m).__name__ for m in net]
    assert kinds == [
        "LayerNorm",
        "Linear",
        "ReLU",
        "LayerNorm",
        "Linear",
        "ReLU",
        "LayerNorm",
        "Linear",
    ]
    assert net[0].normalized_shape == (5,)
    x = torch.randn(64, 5) * 100 + 7
    assert torch.allclose(net[0](x).mean(-1), torch.zeros(64), atol=1e-5)


def test_critic_feature_norm_and_policy():
    critic = Critic(6, (8,), "relu", feature_norm=True)
    assert isinstance(critic.net[0], nn.LayerNorm)
    pol = GaussianPolicy(4, 2, (8,), "relu", feature_norm=True, hidden_layer_norm=True)
    assert sum(isinstance(m, nn.LayerNorm) for m in pol.net) == 2


def test_sigmoid_std():
    init = math.log(0.5 / (1 + math.exp(-1)))
    pol = GaussianPolicy(3, 2, (8,), init_log_std=init, std_param="sigmoid", std_max=0.5)
    assert not hasattr(pol, "log_std")
    std = pol.dist(torch.zeros(1, 3)).log_std.exp()
    assert torch.allclose(std, torch.full((1, 2), 0.5 * torch.sigmoid(torch.tensor(1.0))))
    assert torch.allclose(pol.std_logit, torch.ones(2))  # HARL's parameter starts at 1
    with torch.no_grad():
        pol.std_logit.fill_(50.0)
    assert float(pol.dist(torch.zeros(1, 3)).log_std.exp().max().detach()) <= 0.5
    with pytest.raises(ValueError):
        GaussianPolicy(3, 2, (8,), init_log_std=0.0, std_param="sigmoid", std_max=0.5)
    with pytest.raises(ValueError):
        TrainerConfig(std_param="sigmoid", init_log_std=0.0)


def _fit_one_step(critic, states, returns):
    return critic.fit(states, returns, 1, 1, torch.Generator().manual_seed(0))


def test_huber_equals_torch():
    torch.manual_seed(0)
    critic = Critic(3, (8,), loss="huber", huber_delta=1.5)
    states = torch.randn(32, 3)
    returns = np.linspace(-10, 10, 32)
    with torch.no_grad():
        expected = nn.functional.huber_loss(
            critic(states), torch.as_tensor(returns, dtype=torch.float32), delta=1.5
        )
        # HARL's huber_loss (harl/utils/models_tools.py)
        e = torch.as_tensor(returns, dtype=torch.float32) - critic(states)
        harl = ((e.abs() <= 1.5) * e**2 / 2 + (e.abs() > 1.5) * 1.5 * (e.abs() - 0.75)).mean()
    assert math.isclose(_fit_one_step(critic, states, returns), float(expected), rel_tol=1e-6)
    assert torch.allclose(expected, harl)


def test_value_clip_clips():
    torch.manual_seed(0)
    states = torch.randn(16, 3)
    returns = np.full(16, 100.0)  # far from V_old ~ 0: the clipped branch dominates
    old = Critic(3, (8,))
    clipped = Critic(3, (8,), value_clip=0.2)
    clipped.load_state_dict(old.state_dict())
    with torch.no_grad():
        v_old = clipped(states)
        pred = v_old + 0.5
        loss = clipped._loss(pred, torch.full((16,), 100.0), v_old, torch.arange(16))
        expected = torch.mean((100.0 - (v_old + 0.2)) ** 2)
    assert torch.allclose(loss, expected)
    # the plain MSE loss of the same step is smaller: the clip only ever raises the loss
    assert float(torch.mean((100.0 - pred) ** 2)) < float(loss)
    assert _fit_one_step(clipped, states, returns) > 0


def test_grad_clipping_bounds_the_norm(monkeypatch):
    norms = []
    real_step = torch.optim.Adam.step

    def spy(self, *a, **k):
        total = torch.sqrt(sum((p.grad**2).sum() for p in self.param_groups[0]["params"]))
        norms.append(float(total))
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    torch.manual_seed(0)
    states = torch.randn(64, 3) * 10
    returns = np.full(64, 1e4)
    _fit_one_step(Critic(3, (8,)), states, returns)
    _fit_one_step(Critic(3, (8,), max_grad_norm=1.0), states, returns)
    assert norms[0] > 1.0
    assert norms[1] <= 1.0 + 1e-4


def test_adam_eps():
    assert Critic(3, (8,), adam_eps=1e-5).optimizer.param_groups[0]["eps"] == 1e-5
    assert Critic(3, (8,)).optimizer.param_groups[0]["eps"] == 1e-8


def test_validation():
    for bad in (
        dict(critic_loss="l1"),
        dict(huber_delta=0.0),
        dict(value_clip=0.0),
        dict(critic_max_grad_norm=-1.0),
        dict(critic_adam_eps=0.0),
        dict(std_param="softplus"),
    ):
        with pytest.raises(ValueError):
            TrainerConfig(**bad)


# -- the presets -------------------------------------------------------------------------------


def test_harl_presets():
    ant = harl_preset("Ant", "2x4")
    assert ant["delta"] == 0.01 and ant["hidden"] == (128, 128) == ant["critic_hidden"]
    assert harl_preset("Ant", "4x2")["delta"] == 0.005
    assert harl_preset("Hopper", "3x1")["delta"] == 0.001
    assert harl_preset("Walker2d", "2x3")["hidden"] == (128, 128, 128)
    assert harl_preset("Walker2d", "2x3")["critic_hidden"] == (128, 128, 128)
    assert harl_preset("HalfCheetah", "6x1")["hidden"] == (128, 128)
    assert set(HARL_TUNED) >= {("Ant", "4x2"), ("HalfCheetah", "2x3"), ("Walker2d", "6x1")}
    for (scenario, conf), _ in HARL_TUNED.items():
        cfg = TrainerConfig.for_env("mamujoco", **harl_preset(scenario, conf))
        assert cfg.activation == "relu" and cfg.feature_norm and cfg.hidden_layer_norm
        assert cfg.critic_loss == "huber" and cfg.value_clip == 0.2
        assert cfg.critic_max_grad_norm == 10.0 and cfg.critic_adam_eps == 1e-5
    # the settings the module docstring says already match
    base = TrainerConfig.for_env("mamujoco")
    assert (base.gamma, base.gae_lambda, base.critic_lr) == (0.99, 0.95, 5e-4)
    assert (base.critic_epochs, base.critic_minibatches, base.cg_iters) == (5, 1, 10)
    assert (base.cg_damping, base.ls_steps, base.ls_backtrack, base.accept_ratio) == (
        0.1,
        10,
        0.8,
        0.5,
    )
    assert base.num_envs * base.rollout_length == 4000 and base.eval_every == 25
    assert base.normalize_values


def test_the_harl_preset_is_selectable_by_name():
    """``--preset harl`` (CLI, sweep files, RunSpec) = the mamujoco preset + harl_preset."""
    cfg = TrainerConfig.for_env(
        "mamujoco", preset="harl", env_kwargs={"scenario": "Walker2d", "agent_conf": "2x3"}
    )
    for key, value in harl_preset("Walker2d", "2x3").items():
        assert getattr(cfg, key) == value, key
    assert cfg.num_envs == 20 and cfg.rollout_length == 200


def test_evidence_sweep_uses_the_presets():
    """Every evidence trial's config is the mamujoco "harl" preset plus only the sweep's
    evaluation protocol, its Fisher product and the task's own control; the MPE2 task is its
    registered preset with the same protocol."""
    from kl_alloc.envs.mpe import MPE_PRESET
    from kl_alloc.experiments.spec import load_spec

    spec = load_spec(ROOT / "benchmarks" / "sweeps" / "evidence.toml")
    controls = {"ant-2x4-damping": {"cg_damping"}, "ant-2x4-carry": {"carry"}}
    assert {t.task for t in spec.trials} == {
        "ant-2x4", "halfcheetah-6x1", "ant-2x4-damping", "ant-2x4-carry", "walker2d-2x3",
        "speaker-listener",
    }  # fmt: skip
    assert {t.method for t in spec.trials if t.task == "ant-2x4-carry"} == {"hatrpo"}
    for t in spec.trials:
        kw = t.spec.env_kwargs
        config = t.spec.config()
        assert config.fvp == "gauss_newton", t.task  # the same for every method
        if t.task == "speaker-listener":
            for key, value in MPE_PRESET.items():
                if key not in ("eval_every", "eval_episodes", "checkpoint_every"):
                    assert getattr(config, key) == value, (t.task, key)
            assert config.eval_every * config.num_envs * config.rollout_length == 49_600
            assert config.eval_episodes == 10
            continue
        preset = harl_preset(kw["scenario"], kw["agent_conf"])
        for key, value in preset.items():
            if key == "eval_episodes":
                assert config.eval_episodes == 10  # the sweep's own evaluation protocol
            elif key not in controls.get(t.task, ()):
                assert getattr(config, key) == value, (t.task, key)
        assert config.eval_every == 12 and config.num_envs == 20
