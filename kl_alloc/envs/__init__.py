"""Environments behind one small multi-agent interface (see :mod:`kl_alloc.envs.base`)."""

from kl_alloc.envs.base import ActionSpec, MultiAgentEnv, StepResult, check_actions

__all__ = ["ActionSpec", "MultiAgentEnv", "StepResult", "check_actions"]
