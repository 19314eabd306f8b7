"""HATRPO on Multi-Agent MuJoCo as its reference code runs it: per-task TrainerConfig overrides
taken from HARL (https://github.com/PKU-MARL/HARL, read at commit d539bad, 2025-03-15).

    from kl_alloc.envs.mamujoco_presets import harl_preset
    overrides = harl_preset("Ant", "2x4")           # TrainerConfig overrides (plain dict)
    cfg = TrainerConfig.for_env("mamujoco", env_kwargs={...}, **overrides)

The mamujoco env's ``"harl"`` preset is this module's overrides on top of its default preset::

    kl-alloc train --env mamujoco --scenario Ant --agent-conf 2x4 --preset harl
    kl-alloc config --env mamujoco --preset harl          # every value

and a sweep task takes ``preset = "harl"`` (``benchmarks/sweeps/evidence.toml``);
every method (hatrpo, hatrpo-w, hatrpo-g) gets the same network and the same total budget
(``delta_total`` = n_agents * delta). Torch-free: only plain data lives here.

Sources (HARL paths; ``hatrpo.yaml`` = ``harl/configs/algos_cfgs/hatrpo.yaml``, ``tuned`` =
``tuned_configs/mamujoco/<Scenario>-v2-<conf>/hatrpo/config.json``):

=========================  =============================================  ========================
HARL setting               source                                         here
=========================  =============================================  ========================
hidden_sizes [128, 128]    hatrpo.yaml model.hidden_sizes                 hidden, critic_hidden
  [128, 128, 128] tuned    tuned model.hidden_sizes (all 5 tuned tasks)   hidden, critic_hidden
activation_func relu       hatrpo.yaml model.activation_func              activation="relu"
                           (critic: same args, v_net.py -> MLPBase)       (shared by the critic)
use_feature_normalization  hatrpo.yaml model; mlp.py MLPBase:             feature_norm=True
  True                     nn.LayerNorm(obs_dim) on the input
LayerNorm after each       mlp.py MLPLayer: Linear -> act -> LayerNorm,   hidden_layer_norm=True
  hidden activation        in every hidden layer, not switchable
std = std_y_coef *         distributions.py DiagGaussian; hatrpo.yaml     std_param="sigmoid",
  sigmoid(p / std_x_coef)  std_x_coef 1, std_y_coef 0.5; p starts at      std_max=0.5,
                           std_x_coef: std0 = 0.5 * sigmoid(1) = 0.3655   init_log_std=log(std0)
kl_threshold 0.01          hatrpo.yaml algo.kl_threshold                  delta (per task below)
use_huber_loss, delta 10   hatrpo.yaml algo.use_huber_loss/huber_delta;   critic_loss="huber",
                           v_critic.py cal_value_loss, models_tools.py    huber_delta=10.0
use_clipped_value_loss,    hatrpo.yaml algo; v_critic.py cal_value_loss   value_clip=0.2
  clip_param 0.2
use_max_grad_norm,         hatrpo.yaml algo; v_critic.py update           critic_max_grad_norm=10
  max_grad_norm 10.0       (clip_grad_norm_ on the critic only)
opti_eps 1e-5              hatrpo.yaml model.opti_eps (critic Adam)       critic_adam_eps=1e-5
no input normalisation     on_policy_base_runner.py (none for MaMuJoCo)   normalize_obs=False
  other than the LayerNorm
eval_episodes 20 / 40      hatrpo.yaml eval.eval_episodes / tuned         eval_episodes
=========================  =============================================  ========================

Already the same in the ``"mamujoco"`` preset (no override needed): gamma 0.99 and gae_lambda
0.95 (hatrpo.yaml algo); critic_lr 5e-4, weight_decay 0 (model); critic_epoch 5,
critic_num_mini_batch 1 (algo); n_rollout_threads 20 x episode_length 200 = 4000 samples per
iteration (train); eval_interval 25 iterations (train) = eval_every 25; deterministic evaluation
(on_policy_base_runner.py eval, deterministic=True); ls_step 10, backtrack_coeff 0.8,
accept_ratio 0.5 (algo); CG 10 iterations and Fisher damping 0.1 (trpo_util.py
conjugate_gradient nsteps=10 in hatrpo.py, fisher_vector_product adds 0.1 * p); step size
sqrt(2 delta / s^T (F + 0.1 I) s) (hatrpo.py); orthogonal init with gain
calculate_gain("relu") = sqrt(2) on hidden layers, 0.01 on the action mean, 1 on the value
head, zero biases (models_tools.py init, mlp.py, act.py, v_net.py); advantage normalisation
(mean/std over the batch: on_policy_ha_runner.py for FP, hatrpo.py train for EP; eps 1e-5 there,
1e-8 here); a random agent order every iteration for HATRPO (fixed_order False); ratio of the
joint action = product over action dimensions (action_aggregation prod); bootstrapping at
time-limit truncation (use_proper_time_limits True); use_valuenorm True ~ normalize_values True
(see below).

Not reproduced (no equivalent here; nothing invented):

- ValueNorm (harl/common/valuenorm.py) is an EMA (beta 0.99999, debiased, var clamped >= 1e-2)
  updated at every critic minibatch; ``normalize_values`` is an exact running mean/std updated
  once per iteration. Same role, different numbers.
- HARL's MaMuJoCo is its own ``multiagent_mujoco`` on the gym ``-v2`` robots (mujoco-py) with
  ``agent_obsk`` 0 and ``episode_limit`` 1000; here it is gymnasium-robotics ``mamujoco_v1`` on
  the v5 robots: observations and rewards differ in detail, so scores are not comparable 1:1.
- Recurrent policies (use_recurrent_policy / use_naive_recurrent_policy, data_chunk_length,
  recurrent_n): off in HARL's MaMuJoCo configs, absent here.
- n_eval_rollout_threads (10 / 20), torch_threads 4, CUDA: execution details, not settings.
- HARL draws one env seed per run; ``kl-alloc`` seeds networks, sampling and envs from ``seed``.
- HARL normalises the advantages per agent inside each actor's update (EP state: the same
  advantages for every agent, so the same numbers up to eps); here once per iteration.

Tuned HATRPO configs exist for Ant 4x2, HalfCheetah 2x3, Hopper 3x1, Walker2d 2x3 and Walker2d
6x1 (the last is not a built-in partition of gymnasium-robotics, see
``kl_alloc.envs.mamujoco.BUILTIN_CONFIGS``). Everything else, Ant 2x4 and HalfCheetah 6x1
included, gets hatrpo.yaml's defaults.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["HARL_COMMIT", "HARL_DEFAULTS", "HARL_TUNED", "harl_preset"]

HARL_COMMIT = "d539bad20f677bc4ce9fa200fa5de31b5f0b9d37"

#: HARL's initial std: std_y_coef * sigmoid(std_x_coef / std_x_coef) = 0.5 * sigmoid(1)
_HARL_INIT_STD = 0.5 / (1.0 + math.exp(-1.0))

#: harl/configs/algos_cfgs/hatrpo.yaml (+ mlp.py / distributions.py) as TrainerConfig
#: overrides of the "mamujoco" env preset; see the module docstring for each source.
HARL_DEFAULTS: dict[str, Any] = {
    "delta": 0.01,  # algo.kl_threshold
    "hidden": (128, 128),  # model.hidden_sizes (actor)
    "critic_hidden": (128, 128),  # model.hidden_sizes (critic: the same args)
    "activation": "relu",  # model.activation_func (actor and critic)
    "feature_norm": True,  # model.use_feature_normalization (mlp.py MLPBase)
    "hidden_layer_norm": True,  # mlp.py MLPLayer: LayerNorm after every hidden activation
    "std_param": "sigmoid",  # distributions.py DiagGaussian
    "std_max": 0.5,  # model.std_y_coef
    "init_log_std": math.log(_HARL_INIT_STD),  # log(0.5 * sigmoid(1)) = -1.0064
    "normalize_obs": False,  # HARL has no running observation normalisation
    "critic_loss": "huber",  # algo.use_huber_loss
    "huber_delta": 10.0,  # algo.huber_delta
    "value_clip": 0.2,  # algo.use_clipped_value_loss + algo.clip_param
    "critic_max_grad_norm": 10.0,  # algo.use_max_grad_norm + algo.max_grad_norm
    "critic_adam_eps": 1e-5,  # model.opti_eps
    "eval_episodes": 20,  # eval.eval_episodes
}

#: tuned_configs/mamujoco/<Scenario>-v2-<conf>/hatrpo/config.json: what differs from
#: HARL_DEFAULTS (model.hidden_sizes, algo.kl_threshold, eval.eval_episodes; all else equal).
HARL_TUNED: dict[tuple[str, str], dict[str, Any]] = {
    ("Ant", "4x2"): {"delta": 0.005, "hidden": (128, 128, 128), "eval_episodes": 40},
    ("HalfCheetah", "2x3"): {"delta": 0.01, "hidden": (128, 128, 128), "eval_episodes": 40},
    ("Hopper", "3x1"): {"delta": 0.001, "hidden": (128, 128, 128), "eval_episodes": 40},
    ("Walker2d", "2x3"): {"delta": 0.01, "hidden": (128, 128, 128), "eval_episodes": 40},
    ("Walker2d", "6x1"): {"delta": 0.005, "hidden": (128, 128, 128), "eval_episodes": 40},
}


def harl_preset(scenario: str, agent_conf: str | None) -> dict[str, Any]:
    """TrainerConfig overrides (on top of the "mamujoco" preset) that make HATRPO run as HARL
    runs it on ``scenario`` / ``agent_conf``: the tuned config if HARL has one, else its
    defaults. A new dict each call; the critic gets the same hidden sizes as the policies."""
    out = dict(HARL_DEFAULTS)
    tuned = HARL_TUNED.get((scenario, str(agent_conf)), {})
    out.update(tuned)
    out["critic_hidden"] = out["hidden"]
    return out
