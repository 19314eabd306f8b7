"""What every command shares: the user-error type and how errors become one line, the help
formatter, the progress bar and the one-line run summary."""

from __future__ import annotations

import argparse
import logging
import time
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
    if type(exc).__name__ in ("CheckpointError", "RunDirError", "SpecError", "RayMissingError"):
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


class Progress:
    """The training progress bar (steps/s, iteration, expected reward or latest return);
    with ``enabled=False``, a log line about every tenth of the run instead."""

    def __init__(self, total: int, start: int, desc: str, enabled: bool) -> None:
        self.total = int(total)
        self.enabled = enabled
        self.last_return: float | None = None
        self._next_log = start + self.total / 10
        self._t0 = time.perf_counter()
        self._start = start
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=min(start, self.total),
                unit="step",
                unit_scale=True,
                dynamic_ncols=True,
                desc=desc,
            )

    def __call__(self, trainer: Any, record: dict[str, Any]) -> None:
        steps = int(record["env_steps"])
        if record.get("episode_return") is not None:
            self.last_return = float(record["episode_return"])
        post: dict[str, Any] = {"it": record["iteration"]}
        if record.get("expected_reward") is not None:
            post["E[R]"] = f"{record['expected_reward']:.4f}"
        elif self.last_return is not None:
            post["return"] = f"{self.last_return:.1f}"
        else:
            post["reward"] = f"{record['mean_reward']:.4g}"
        if self.bar is not None:
            self.bar.update(min(steps, self.total) - self.bar.n)
            self.bar.set_postfix(post, refresh=False)
        elif steps >= self._next_log or steps >= self.total:
            rate = (steps - self._start) / max(time.perf_counter() - self._t0, 1e-9)
            details = ", ".join(f"{k} {v}" for k, v in post.items())
            logger.info("%d/%d env steps (%.0f steps/s): %s", steps, self.total, rate, details)
            self._next_log = steps + self.total / 10

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def chain(*callbacks: Any) -> Any:
    callbacks = tuple(c for c in callbacks if c is not None)

    def run(trainer: Any, record: dict[str, Any]) -> bool | None:
        stop = False
        for c in callbacks:
            stop = (c(trainer, record) is False) or stop
        return False if stop else None

    return run


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
    last = getattr(trainer, "_last_eval", None)
    if last and last.get("return_mean") is not None:
        parts.append(f"eval return {last['return_mean']:.4g} +- {last['return_std']:.2g}")
    return ", ".join(parts)
