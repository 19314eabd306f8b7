"""What every command shares: the user-error type and how errors become one line, the help
formatter and the one-line run summary (the progress bar: :mod:`kl_alloc.rl.callbacks`)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger("kl_alloc.cli")


class CLIError(Exception):
    """A user error: printed as ``kl-alloc: error: ...`` with exit status 2."""


def user_error(exc: BaseException) -> str | None:
    """The one line to print for an error the user can act on, or None for a bug (traceback)."""
    from kl_alloc.config import ConfigError
    from kl_alloc.lifecycle import RunError, io_error
    from kl_alloc.plugins import PluginError

    if isinstance(exc, CLIError | RunError | ConfigError | PluginError):
        return str(exc)
    if type(exc).__name__ in (
        "CheckpointError",
        "PolicyFileError",
        "RunDirError",
        "SpecError",
        "RayMissingError",
    ):
        return str(exc)
    if isinstance(exc, OSError):
        return str(io_error(getattr(exc, "filename", None) or "?", exc))
    if isinstance(exc, ImportError):  # a missing extra: the message says what to install
        return str(exc)
    return None


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows ``(default: X)`` for options that have a real default (not None / a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def summary_line(trainer: Any) -> str:
    spec = getattr(trainer.env, "spec", None) or {}
    parts = [
        f"{trainer.algo} on {spec.get('name', type(trainer.env).__name__)}",
        f"seed {trainer.seed}",
        f"{trainer.iteration} iterations",
        f"{trainer.env_steps} env steps",
        f"{trainer.wall_time:.1f} s",
    ]
    reward = trainer.expected_reward()
    if reward is not None:
        parts.append(f"expected reward {reward:.4f}")
    last = trainer.last_eval
    if last and last.get("return_mean") is not None:
        parts.append(f"eval return {last['return_mean']:.4g} +- {last['return_std']:.2g}")
    return ", ".join(parts)
