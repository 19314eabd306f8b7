"""Environments behind one small multi-agent interface (see :mod:`kl_alloc.envs.base`)."""

from kl_alloc.envs.base import ActionSpec, MultiAgentEnv, StepResult, check_actions
from kl_alloc.envs.registry import available_envs, env_spec, make_env, register

__all__ = [
    "ActionSpec",
    "MultiAgentEnv",
    "StepResult",
    "available_envs",
    "check_actions",
    "env_spec",
    "make_env",
    "register",
]
