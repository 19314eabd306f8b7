"""What a :class:`~kl_alloc.rl.trainer.Trainer` is built from: its env (by registry name, in
env worker processes, or a PettingZoo ``ParallelEnv`` instance wrapped), its torch device, and
its networks (one policy per agent and the centralised critic, seeded).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from kl_alloc.envs.base import MultiAgentEnv
from kl_alloc.rl.config import TrainerConfig
from kl_alloc.rl.critic import Critic
from kl_alloc.rl.policies import Policy, make_policy

__all__ = ["build_networks", "env_spec", "in_workers", "make_named_env", "torch_device",
           "wrap_parallel_env"]  # fmt: skip


def env_spec(env: MultiAgentEnv) -> dict[str, Any] | None:
    """The registry spec that rebuilds ``env`` (None if it was not made by ``make_env``)."""
    from kl_alloc.envs import registry

    return registry.env_spec(env)


def make_named_env(name: str, num_workers: int = 1, **kwargs: Any) -> MultiAgentEnv:
    """``make_env``, or its copies in ``num_workers`` worker processes when that is > 1."""
    if num_workers > 1:
        from kl_alloc.envs.workers import WorkerVecEnv

        num_envs = kwargs.pop("num_envs", None)
        if num_envs is None:
            num_envs = TrainerConfig().num_envs
        return WorkerVecEnv(name, num_workers, num_envs, **kwargs)
    from kl_alloc.envs.registry import make_env

    return make_env(name, **kwargs)


def in_workers(env: MultiAgentEnv, num_workers: int) -> MultiAgentEnv:
    """The env itself with ``num_workers == 1`` (or if it already runs in workers), else its
    copies rebuilt from the registry spec in worker processes (the given env is closed)."""
    from kl_alloc.envs.workers import WorkerVecEnv

    if num_workers <= 1 or isinstance(env, WorkerVecEnv):
        return env
    spec = env_spec(env)
    if spec is None:
        raise ValueError(
            f"num_workers: {type(env).__name__} was not made by make_env, so worker processes "
            "cannot rebuild it; build it with make_env(...) or set num_workers=1"
        )
    workers = WorkerVecEnv.from_spec(spec, num_workers)
    env.close()
    return workers


def torch_device(name: str) -> torch.device:
    """The learner's torch device, checked (ValueError naming ``device``)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: {name!r} is not a torch device ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} asked for, but torch.cuda.is_available() is False")
    return device


def wrap_parallel_env(env: Any, config: TrainerConfig | None, seed: int) -> MultiAgentEnv:
    """A PettingZoo ``ParallelEnv`` instance becomes a :class:`PettingZooEnv` of
    ``config.num_envs`` deep copies of it (pass ``make_env("module:factory")`` instead to have
    evaluation and resume rebuild it by name)."""
    from kl_alloc.envs.pettingzoo import PettingZooEnv, is_parallel_env

    if not is_parallel_env(env):
        return env
    n = (config or TrainerConfig()).num_envs
    return PettingZooEnv(lambda: copy.deepcopy(env), num_envs=n, seed=seed)


def build_networks(
    env: MultiAgentEnv, config: TrainerConfig, seed: int
) -> tuple[list[Policy], Critic]:
    """One policy per agent and the centralised critic, initialised from ``seed`` (torch's
    global generator, forked: the caller's stream is left alone)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        policies: list[Policy] = [
            make_policy(
                o,
                spec_i,
                hidden=config.hidden,
                activation=config.activation,
                init_log_std=config.init_log_std,
                init_mean=config.init_action_mean,
                feature_norm=config.feature_norm,
                hidden_layer_norm=config.hidden_layer_norm,
                std_param=config.std_param,
                std_max=config.std_max,
            )
            for o, spec_i in zip(env.obs_sizes, env.action_specs, strict=True)
        ]
        critic = Critic(
            env.state_size,
            config.critic_hidden,
            config.activation,
            config.critic_lr,
            config.normalize_values,
            loss=config.critic_loss,
            huber_delta=config.huber_delta,
            value_clip=config.value_clip,
            max_grad_norm=config.critic_max_grad_norm,
            adam_eps=config.critic_adam_eps,
            feature_norm=config.feature_norm,
            hidden_layer_norm=config.hidden_layer_norm,
        )
    return policies, critic
